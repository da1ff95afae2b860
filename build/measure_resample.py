"""Measure what the browser's resampling does to accuracy (not a test: it prints numbers).

The engine can leave the pixel work of a frame to the browser's canvas (resample 'browser': the frame fitted into the
face detector's square and each face's crop drawn upright at 48 px, smoothing quality high) or to emotion_runtime's
numpy code (resample 'numpy': the same numbers as CPython and the tests). This runs FER+ test faces through both, in
headless Chromium (or Firefox / WebKit: --browser), through the real engine (web/js/emotion-lens.js in its worker:
Pyodide, onnxruntime-web WASM, the short-range detector, the site's default emotion model), and compares with the
model's accuracy on the same faces as the plain 48x48 test images (the training crop).

Each face (a seeded subset of the FER+ test split) is upscaled to a face size, turned by a roll and pasted on grey
noise in a 640x480 frame (build/measure_alignment.make_frame), encoded as PNG and handed to the engine as a camera
frame (an I420 VideoFrame, as Chromium's camera frames are: the camera's path, `resample.video`; the browser path reads
the detector's square and the crops from its planes; or, --frame-format BGRA, the RGB frames Firefox's camera hands
out, which the browser path leaves to the canvas). Printed per face size and roll: faces detected, accuracy
through each path (majority FER+ label, on the faces both paths detected), how often the two paths agree on the top
class, and the largest probability difference. Smoothing is off; each frame's own probabilities are compared.

Usage (repo root, project venv; Chromium, the built site and the FER+ zip):
    python build/measure_resample.py                          # 400 faces x 5 settings, ~10 min on 2 cores
    python build/measure_resample.py --n 100 --settings 180:0
    python build/measure_resample.py --browser firefox --frame-format BGRA   # Firefox's canvas (no smoothing quality)
"""

from __future__ import annotations

import argparse
import base64
import io
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
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "build"))

from measure_alignment import FRAME_H, FRAME_W, ferplus_test_subset, make_frame  # noqa: E402
from model_export.onnx_edit import emotion_feeds  # noqa: E402

FERPLUS_ZIP = Path(os.environ.get("EMOTION_DATASETS", "/work/shared/datasets")) / "ferplus.zip"
PATHS = ("numpy", "browser")
BATCH = 16  # frames per call into the page

# In the page: one engine with the given resampling for camera frames; frames arrive as PNG (base64) and go in as
# VideoFrames, as a camera's do.
LOAD_ENGINE = """async ({resample, model}) => {
  const { createEmotionLens } = await import('../js/emotion-lens.js');
  window.__lens?.dispose();
  // detectEvery 1: every frame is another face, each through the detector as a camera's first frame is.
  const lens = createEmotionLens({ resample: { video: resample, image: resample }, smoothing: { mode: 'none', k: 1 },
                                   executionProviders: ['wasm'], model, detectEvery: 1 });
  await lens.load();
  window.__lens = lens;
  return lens.info.model.id;
}"""
# Each frame becomes an I420 VideoFrame (BT.601, video range, chroma averaged over 2x2), the format of the camera
# frames Chromium hands out; the engine then cuts the browser path's crops from its luma plane (js/frame-planes.js).
DETECT_FRAMES = """async ({pngs, format}) => {
  const out = [];
  const i420 = (rgba, w, h) => {
    const buf = new Uint8Array(w * h * 3 / 2);
    const [uOff, vOff, cw] = [w * h, w * h + (w / 2) * (h / 2), w / 2];
    for (let p = 0, j = 0; p < w * h; p++, j += 4) {
      buf[p] = 16 + (65.481 * rgba[j] + 128.553 * rgba[j + 1] + 24.966 * rgba[j + 2]) / 255;
    }
    for (let y = 0; y < h; y += 2) for (let x = 0; x < w; x += 2) {
      let [r, g, b] = [0, 0, 0];
      for (const [dx, dy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
        const j = ((y + dy) * w + x + dx) * 4;
        r += rgba[j] / 4; g += rgba[j + 1] / 4; b += rgba[j + 2] / 4;
      }
      const c = (y / 2) * cw + x / 2;
      buf[uOff + c] = 128 + (-37.797 * r - 74.203 * g + 112 * b) / 255;
      buf[vOff + c] = 128 + (112 * r - 93.786 * g - 18.214 * b) / 255;
    }
    return buf;
  };
  for (const [i, b64] of pngs.entries()) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
    const [w, h] = [bitmap.width, bitmap.height];
    const ctx = new OffscreenCanvas(w, h).getContext('2d');
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const rgba = ctx.getImageData(0, 0, w, h).data;
    const bgra = () => {
      const buf = new Uint8Array(rgba.length);
      for (let j = 0; j < rgba.length; j += 4) [buf[j], buf[j + 1], buf[j + 2], buf[j + 3]] = [rgba[j + 2], rgba[j + 1], rgba[j], 255];
      return buf;
    };
    const frame = format === 'BGRA'
      ? new VideoFrame(bgra(), { format: 'BGRA', codedWidth: w, codedHeight: h, timestamp: i })
      : new VideoFrame(i420(rgba, w, h), { format: 'I420', codedWidth: w, codedHeight: h, timestamp: i,
        colorSpace: { matrix: 'smpte170m', primaries: 'smpte170m', transfer: 'smpte170m', fullRange: false } });
    const r = await window.__lens.detect(frame);
    out.push({ faces: r.faces.map((f) => ({ box: f.box, probs: f.raw_probs })), ms: r.timings.total });
  }
  return out;
}"""


def png_b64(rgba: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def nearest_face(faces: list[dict], centre: tuple[int, int], face_px: int) -> dict | None:
    """The detection whose box centre is nearest the pasted centre, if within half a face of it."""
    def dist(f: dict) -> float:
        x, y, w, h = f["box"]
        return float(np.hypot(x + w / 2 - centre[0], y + h / 2 - centre[1]))

    best = min(faces, key=dist, default=None)
    return best if best is not None and dist(best) < face_px / 2 else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=FERPLUS_ZIP)
    ap.add_argument("--site", type=Path, default=ROOT / "dist/site")
    ap.add_argument("--n", type=int, default=400, help="faces from the FER+ test split (seeded subset)")
    ap.add_argument("--settings", default="180:0,100:0,320:0,180:20,180:-20",
                    help="comma list of face_px:roll_degrees (positive roll = clockwise)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--browser", choices=("chromium", "firefox", "webkit"), default="chromium")
    ap.add_argument("--frame-format", choices=("I420", "BGRA"), default="I420",
                    help="the camera frames' format (Chromium's: I420; Firefox's here: BGRA)")
    args = ap.parse_args(argv)

    import onnxruntime as ort
    from fixtures import engines
    from fixtures.e2e import serve_dir

    from emotion_runtime.preprocess import normalise

    manifest = json.loads((args.site / "manifest.json").read_text())
    model_id = manifest["models"]["emotion_default"]
    model_dir = args.site / "models" / "emotion" / model_id
    labels = json.loads((model_dir / "model.json").read_text())["labels"]
    images, truth = ferplus_test_subset(args.dataset, labels, args.n, args.seed)
    settings = [tuple(int(v) for v in s.split(":")) for s in args.settings.split(",")]

    emo = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    plain = emo.run(None, emotion_feeds(emo, normalise(images)[:, None]))[0].argmax(axis=1) == truth
    print(f"model {model_id}; {len(images)} FER+ test faces (seed {args.seed}) pasted into {FRAME_W}x{FRAME_H} "
          f"grey-noise frames; the training crop (plain 48x48 images): accuracy {plain.mean():.2%}")
    print(f"{args.browser}, camera frames as {args.frame_format} VideoFrames")

    frames = {s: [make_frame(img, s[1], s[0], np.random.default_rng([args.seed, s[0], s[1] % 360]))
                  for img in images] for s in settings}
    results: dict[str, dict] = {}
    server, url = serve_dir(args.site)
    try:
        problem = engines.engine_problem(args.browser)
        if problem:
            raise SystemExit(f"{args.browser}: {problem}")
        with engines.launch(args.browser) as browser:
            browser.goto(url + "example/")
            for path in PATHS:
                t0 = time.perf_counter()
                browser.call(LOAD_ENGINE, {"resample": path, "model": model_id}, timeout_s=600)
                results[path] = {}
                for s in settings:
                    got = []
                    for i in range(0, len(images), BATCH):
                        pngs = [png_b64(f) for f, _ in frames[s][i:i + BATCH]]
                        got += browser.call(DETECT_FRAMES, {"pngs": pngs, "format": args.frame_format}, timeout_s=600)
                    results[path][s] = got
                print(f"  {path}: {time.perf_counter() - t0:.0f} s", flush=True)
            browser.call("() => window.__lens.dispose()")
    finally:
        server.shutdown()
        server.server_close()

    figures = {"model": model_id, "n": int(len(images)), "plain_accuracy": float(plain.mean()), "settings": {}}
    print(f"{'face px':>7} {'roll':>5} {'detected np/br':>15} {'acc numpy':>10} {'acc browser':>12} "
          f"{'plain (same faces)':>19} {'same top':>9} {'max |dp|':>9} {'ms/frame np/br':>15}")
    for s in settings:
        chosen = {path: [nearest_face(r["faces"], centre, s[0]) for r, (_, centre) in
                         zip(results[path][s], frames[s])] for path in PATHS}
        both = np.array([a is not None and b is not None for a, b in zip(chosen["numpy"], chosen["browser"])])
        top = {path: np.array([int(np.argmax(f["probs"])) if f else -1 for f in chosen[path]]) for path in PATHS}
        acc = {path: float((top[path][both] == truth[both]).mean()) for path in PATHS}
        agree = float((top["numpy"][both] == top["browser"][both]).mean())
        dp = max((float(np.max(np.abs(np.subtract(a["probs"], b["probs"]))))
                  for a, b in zip(chosen["numpy"], chosen["browser"]) if a and b), default=float("nan"))
        det = {path: float(np.mean([f is not None for f in chosen[path]])) for path in PATHS}
        ms = {path: statistics.median(r["ms"] for r in results[path][s]) for path in PATHS}
        print(f"{s[0]:>7} {s[1]:>5} {det['numpy']:>7.1%}/{det['browser']:<7.1%} {acc['numpy']:>10.2%} "
              f"{acc['browser']:>12.2%} {float(plain[both].mean()):>19.2%} {agree:>9.1%} {dp:>9.3f} "
              f"{ms['numpy']:>7.1f}/{ms['browser']:<7.1f}")
        figures["settings"][f"{s[0]}:{s[1]}"] = {
            "face_px": s[0], "roll": s[1], "detected": det, "accuracy": acc, "plain_accuracy_same_faces":
            float(plain[both].mean()), "faces_compared": int(both.sum()), "same_top": agree, "max_prob_diff": dp,
            "median_ms_per_frame": ms}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
