"""Measure roll alignment (not a test: it prints numbers): FER+ test faces pasted into webcam-sized frames at
known head rolls, through the real face detector, the real pipeline and the shipped emotion model, classified
with and without `FramePipeline(align=...)`.

For each face of a fixed subset of the FER+ test split (seeded), and each roll angle: the 48x48 face is
upscaled (bicubic) to --face-px, turned by the roll (positive = clockwise on screen, like
`detector.eye_roll`), and pasted at a seeded spot of a 640x480 frame of grey noise. The frame goes through
`FramePipeline.detector_input` -> face_detector.onnx -> `decode_faces`; the detection nearest the pasted centre
is cropped twice (`align=False`: the axis-aligned crop; `align=True`: turned by the eye keypoints' roll) and
both crops are classified. Printed per roll: detection rate, accuracy (majority FER+ label) of each crop on the
detected faces, and the measured eye roll. Also printed: the model's accuracy on the same faces as plain 48x48
images, split by whether its top probability reaches `postprocess.UNCERTAIN_BELOW` (the "uncertain"
threshold), and the median crop time per face (CPython, this machine).

Usage (repo root, project venv; needs onnxruntime, Pillow and the FER+ zip):
    python build/measure_alignment.py                     # 1000 faces, rolls 0 +-15 +-30, a few minutes
    python build/measure_alignment.py --n 200 --model web/models/emotion/<id>/model.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "py_src"))

from emotion_runtime import FramePipeline, eye_roll, postprocess  # noqa: E402
from emotion_runtime.preprocess import normalise  # noqa: E402
from model_export.onnx_edit import emotion_feeds  # noqa: E402

FRAME_W, FRAME_H = 640, 480
# Same place the tests look (tests/dataset_paths.py): $EMOTION_DATASETS, else /work/shared/datasets.
FERPLUS_ZIP = Path(os.environ.get("EMOTION_DATASETS", "/work/shared/datasets")) / "ferplus.zip"


def find_model(given: Path | None) -> tuple[Path, Path]:
    """(model.onnx, sidecar.json): --model (its sidecar beside it), else web/models/emotion.onnx, else the
    shipped FER+ model (web/models/emotion/<id>.ferplus/model.onnx: the faces here are FER+ test faces), else the
    first web/models/emotion/<id>/model.onnx."""
    shipped = sorted((ROOT / "web/models/emotion").glob("*/model.onnx"), key=lambda m: (m.parent.suffix != ".ferplus", m))
    candidates = [given] if given else [ROOT / "web/models/emotion.onnx", *shipped]
    for model in candidates:
        if model and model.is_file():
            sidecar = model.with_suffix(".json")
            if not sidecar.is_file():
                sidecar = next(iter(sorted(model.parent.glob("*.json"))), sidecar)
            if sidecar.is_file():
                return model, sidecar
    raise SystemExit(f"no emotion model (with a JSON sidecar) found among {candidates}")


def ferplus_test_subset(dataset: Path, labels: list[str], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded subset of n FER+ test faces (48x48 uint8) and their majority labels; the model's `labels` must be the
    dataset's classes."""
    from model_export.data import load_dataset

    test = load_dataset("ferplus", dataset).split("test")
    if tuple(test.classes) != tuple(labels):
        raise SystemExit(f"model labels {labels} != FER+ classes {test.classes}")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(test.images), size=min(n, len(test.images)), replace=False))
    return test.images[pick], test.labels[pick]


def make_frame(face48: np.ndarray, roll: float, face_px: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    """RGBA frame with the face pasted (turned by `roll` degrees clockwise) on grey noise; returns the frame and
    the pasted centre."""
    from PIL import Image

    face = Image.fromarray(face48).resize((face_px, face_px), Image.BICUBIC).convert("RGBA")
    turned = face.rotate(-roll, resample=Image.BICUBIC, expand=True)  # PIL turns counter-clockwise
    bg = np.clip(rng.normal(128, 20, (FRAME_H, FRAME_W)), 0, 255).astype(np.uint8)
    canvas = Image.fromarray(bg).convert("RGBA")
    tw, th = turned.size
    cx = int(rng.integers(tw // 2 + 10, FRAME_W - tw // 2 - 10))
    cy = int(rng.integers(th // 2 + 10, FRAME_H - th // 2 - 10))
    canvas.paste(turned, (cx - tw // 2, cy - th // 2), turned)  # alpha: the corners outside the face stay noise
    return np.asarray(canvas), (cx, cy)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=FERPLUS_ZIP)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--detector", type=Path, default=ROOT / "web/models/face_detector.onnx")
    ap.add_argument("--n", type=int, default=1000, help="faces from the FER+ test split (seeded subset)")
    ap.add_argument("--rolls", default="0,15,-15,30,-30")
    ap.add_argument("--face-px", type=int, default=180)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    model, sidecar_path = find_model(args.model)
    labels = json.loads(sidecar_path.read_text())["labels"]
    images, truth = ferplus_test_subset(args.dataset, labels, args.n, args.seed)
    rolls = [float(r) for r in args.rolls.split(",")]

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    det = ort.InferenceSession(str(args.detector), opts, providers=["CPUExecutionProvider"])
    emo = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])

    def classify(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([emo.run(None, emotion_feeds(emo, batch[i:i + 256]))[0] for i in range(0, len(batch), 256)])

    print(f"model {model.relative_to(ROOT) if model.is_relative_to(ROOT) else model}; detector {args.detector.name}")
    print(f"{len(images)} FER+ test faces (seed {args.seed}), upscaled to {args.face_px} px, pasted into "
          f"{FRAME_W}x{FRAME_H} grey-noise frames; rolls {rolls} deg (positive = clockwise)")

    plain = postprocess.softmax(classify(normalise(images)[:, None]))
    top = plain.max(axis=1)
    right = plain.argmax(axis=1) == truth
    sure = top >= postprocess.UNCERTAIN_BELOW
    print(f"plain 48x48 faces: accuracy {right.mean():.2%}; top prob >= {postprocess.UNCERTAIN_BELOW}: "
          f"{sure.mean():.1%} of faces, accuracy {right[sure].mean():.2%}; below: {(~sure).mean():.1%} of faces, "
          f"accuracy {right[~sure].mean():.2%}")

    pipe = FramePipeline(labels, smoothing="none", max_faces=None)
    figures = {"n": int(len(images)), "face_px": args.face_px, "plain_accuracy": float(right.mean()), "rolls": {}}
    crop_ms = {False: [], True: []}
    print(f"{'roll':>6} {'detected':>9} {'acc no-align':>13} {'acc aligned':>12} {'eye roll (median)':>18}")
    for roll in rolls:
        crops = {False: [], True: []}
        found, measured = [], []
        frame_rng = np.random.default_rng([args.seed, int(roll * 10) % 100000])
        for img in images:
            frame, (cx, cy) = make_frame(img, roll, args.face_px, frame_rng)
            x = pipe.detector_input(frame, FRAME_W, FRAME_H)
            n = pipe.decode_faces(*det.run(["regressors", "classificators"], {"input": x}))
            if n == 0:
                found.append(False)
                continue
            best = min(range(n), key=lambda i: np.hypot(pipe.faces[i].box[0] + pipe.faces[i].box[2] / 2 - cx,
                                                        pipe.faces[i].box[1] + pipe.faces[i].box[3] / 2 - cy))
            face = pipe.faces[best]
            ok = abs(face.box[0] + face.box[2] / 2 - cx) < args.face_px / 2 and \
                abs(face.box[1] + face.box[3] / 2 - cy) < args.face_px / 2
            found.append(ok)
            if not ok:
                continue
            pipe.faces = [face]
            measured.append(eye_roll(face.keypoints))
            for align in (False, True):
                pipe.align = align
                t0 = time.perf_counter()
                crops[align].append(pipe.emotion_input()[0])
                crop_ms[align].append((time.perf_counter() - t0) * 1e3)
        found = np.asarray(found)
        gt = truth[found]
        acc = {a: float((classify(np.stack(crops[a])).argmax(axis=1) == gt).mean()) if found.any() else float("nan")
               for a in (False, True)}
        med_roll = statistics.median(measured) if measured else float("nan")
        print(f"{roll:>6.0f} {found.mean():>9.1%} {acc[False]:>13.2%} {acc[True]:>12.2%} {med_roll:>18.1f}")
        figures["rolls"][str(roll)] = {"detected": float(found.mean()), "accuracy_no_align": acc[False],
                                       "accuracy_aligned": acc[True], "eye_roll_median": med_roll}
    for align in (False, True):
        print(f"crop time per face ({'aligned' if align else 'axis-aligned'}): median "
              f"{statistics.median(crop_ms[align]):.2f} ms (CPython, this machine, all rolls)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
