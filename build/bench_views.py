"""What the engine's one-view mode buys (not a test: it prints numbers): camera frames through the engine in headless
Chromium with the emotion model on all of its views (face and mirror, the default) and on the face alone (what the
engine switches to on a device too slow for its frames, js/pace.js), at full CPU and under the phone-class proxy.

Both modes run the detector every 30th frame (config.detectEvery 30; the face alone forced by an adapt budget of
1 ms), so they differ only in the emotion model's views. Frames are VideoFrames of a still picture (one face: the
happy clip; four: the group photo), fed one after another as fast as the engine takes them; after --warmup frames,
--frames are timed. Printed per setting, median of --runs fresh browsers (the two modes interleaved): the emotion
model's ms a frame (timings.classify, frames without a detector run) and a frame's cost from taking it to its result
(timings.roundTrip, all frames), beside native onnxruntime's ms a face for each mode (the machine's speed).

    python build/bench_views.py [--runs 3] [--cpu-cores 0.5] [--site dist/site]
"""
from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "build"))

from bench_browser import chromium_under_quota, machine_line, native_ms_per_face  # noqa: E402

# In the page: `frames` VideoFrames of the picture through an engine with the given options, after `warmup` untimed.
TIMED = """async ({ png, options, warmup, frames }) => {
  const { createEmotionLens } = await import('../js/emotion-lens.js');
  const lens = createEmotionLens({ executionProviders: ['wasm'], ...options });
  await lens.load();
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const picture = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
  const rows = [];
  for (let i = 0; i < warmup + frames; i++) {
    const r = await lens.detect(new VideoFrame(picture, { timestamp: i * 33_000 }));
    if (i >= warmup) rows.push({ views: r.views, faces: r.faces.length, ran: r.detectorRan, ...r.timings });
  }
  lens.dispose();
  return rows;
}"""

MODES = {"all views": {"detectEvery": 30, "adapt": {"enabled": False}},
         "face alone": {"detectEvery": 30, "adapt": {"budgetMs": 1}}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, default=ROOT / "dist/site")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--cpu-cores", type=float, help="hold every browser to this CPU quota (phone-cpu; e.g. 0.5)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from fixtures import videos
    from fixtures.e2e import launch_app_browser, serve_dir

    pictures = {1: videos.still_png(videos.HAPPY), 4: videos.still_png(videos.GROUP)}
    pngs = {n: base64.b64encode(p.read_bytes()).decode() for n, p in pictures.items()}
    results: dict[tuple[int, str], list[dict]] = {}
    server, url = serve_dir(args.site)
    try:
        with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
            executable = chromium_under_quota(args.cpu_cores, Path(folder)) if args.cpu_cores else None
            for run in range(args.runs):
                for faces, png in pngs.items():
                    for mode, options in MODES.items():
                        browser = launch_app_browser(playwright, executable=executable)
                        try:
                            page = browser.new_page()
                            page.goto(url + "example/")
                            rows = page.evaluate(TIMED, {"png": png, "options": options, "warmup": args.warmup,
                                                         "frames": args.frames})
                        finally:
                            browser.close()
                        seen = {(r["views"], r["faces"]) for r in rows}
                        if len({v for v, _ in seen}) != 1 or {f for _, f in seen} != {faces}:
                            raise SystemExit(f"{mode}, {faces} face(s): frames ran as (views, faces) {sorted(seen)}")
                        classify = statistics.median(r["classify"] for r in rows if not r["ran"])
                        trip = statistics.median(r["roundTrip"] for r in rows)
                        results.setdefault((faces, mode), []).append(
                            {"views": rows[0]["views"], "classify": classify, "roundTrip": trip})
                        print(f"run {run + 1}: {faces} face(s), {mode} ({rows[0]['views']} view(s)): emotion model "
                              f"{classify:.2f} ms a frame, frame {trip:.2f} ms", flush=True)
    finally:
        server.shutdown()
        server.server_close()
    manifest = json.loads((args.site / "manifest.json").read_text())
    native = {mode: native_ms_per_face(args.site, manifest, views)
              for mode, views in (("all views", None), ("face alone", 1))}
    cpu = f"under phone-cpu --cores {args.cpu_cores}" if args.cpu_cores else "full CPU"
    print(f"\n{machine_line()}\n{cpu}; native onnxruntime ms a face: "
          + ", ".join(f"{m} {ms:.2f}" for m, ms in native.items()))
    print(f"median of {args.runs} fresh browsers, {args.frames} frames each, detector every 30th frame")
    print(f"{'faces':>5s} {'mode':<11s} {'views':>5s} {'emotion model ms':>16s} {'frame ms':>9s}")
    for (faces, mode), rs in results.items():
        print(f"{faces:5d} {mode:<11s} {rs[0]['views']:5d} {statistics.median(r['classify'] for r in rs):16.2f} "
              f"{statistics.median(r['roundTrip'] for r in rs):9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
