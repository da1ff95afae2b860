"""Speed and reach of the two face detectors (not a test: it prints numbers), in CPython with onnxruntime (CPU).

For each detector (short-range 128 px, full-range 192 px): the median time per frame of the three detector
steps the page runs (`FramePipeline.detector_input` -> the ONNX model -> `decode_faces`) on 640x480 webcam-sized
frames and on the six face-api demo photos at the 1280 px the page analyses photos at, and how many of the 22
hand-annotated faces of the full-size photos it finds (tests/fixtures/videos.PHOTO_FACES).

Usage (repo root, project venv; node_modules installed):
    python build/measure_detectors.py [--repeat 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "py_src"))
sys.path.insert(0, str(ROOT / "tests"))

from emotion_runtime import FramePipeline  # noqa: E402
from fixtures.videos import PHOTO_FACES, SAMPLES  # noqa: E402

MODELS = {"short_range": ROOT / "web/models/face_detector.onnx",
          "full_range": ROOT / "web/models/face_detector_full_range.onnx"}


def load(i: int, side: int | None = None) -> np.ndarray:
    from PIL import Image

    with Image.open(SAMPLES / f"sample{i}.jpg") as im:
        im = im.convert("RGBA")
        if side:
            k = side / max(im.size)
            im = im.resize((round(im.width * k), round(im.height * k)), Image.BILINEAR)
        return np.asarray(im)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30, help="timed runs per frame")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (ort-web WASM: 1-4)")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    webcam = [np.ascontiguousarray(load(i, 640)[:480]) for i in PHOTO_FACES]  # 640 px wide, cut to 4:3
    photos = [load(i, 1280) for i in PHOTO_FACES]
    print(f"onnxruntime {ort.__version__} CPU, {args.threads} thread(s); median of {args.repeat} runs per frame, "
          "then the median over frames")
    print(f"{'detector':<12} {'640x480: pre':>13} {'model':>7} {'decode':>7} {'total':>7}   "
          f"{'1280 px photo: total':>20}   faces found (22, full-size photos)")
    for name, path in MODELS.items():
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        pipe = FramePipeline(["a"], detector=name, max_faces=None)

        def timed(frame: np.ndarray) -> tuple[float, float, float]:
            h, w = frame.shape[:2]
            runs = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                x = pipe.detector_input(frame, w, h)
                t1 = time.perf_counter()
                out = sess.run(["regressors", "classificators"], {"input": x})
                t2 = time.perf_counter()
                pipe.decode_faces(*out)
                t3 = time.perf_counter()
                runs.append((t1 - t0, t2 - t1, t3 - t2))
            return tuple(statistics.median(r[k] for r in runs) * 1e3 for k in range(3))

        cam = [timed(f) for f in webcam]
        pre, model, decode = (statistics.median(c[k] for c in cam) for k in range(3))
        photo_total = statistics.median(sum(timed(f)) for f in photos)
        found = 0
        for i, faces in PHOTO_FACES.items():
            frame = load(i)
            h, w = frame.shape[:2]
            pipe.decode_faces(*sess.run(["regressors", "classificators"], {"input": pipe.detector_input(frame, w, h)}))
            hit = {j for f in pipe.faces for j, (cx, cy, _) in enumerate(faces)
                   if f.box[0] <= cx <= f.box[0] + f.box[2] and f.box[1] <= cy <= f.box[1] + f.box[3]}
            found += len(hit)
        print(f"{name:<12} {pre:>10.2f} ms {model:>4.2f} ms {decode:>4.2f} ms {pre + model + decode:>4.2f} ms   "
              f"{photo_total:>17.2f} ms   {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
