"""The three browser engines side by side (not a test: it prints numbers): Chromium, Firefox and WebKit(GTK).

For each engine, `--runs` fresh browsers (fresh profiles) open the built site, and print the median of: navigation
start -> ready (cold visit, through the service worker as a visitor gets it), whether the page is cross-origin
isolated, onnxruntime's execution provider and WASM threads; then, in a test page of the same origin, the engine
(web/js/emotion-lens.js) reads a <video> playing a VP8 clip of one smiling face (made with ffmpeg from the e2e
fixture, so every engine decodes real video rather than its own fake camera) for 60 frames: the frames' format, the
ms to read a frame's pixels (capture) on the frames where the face detector runs and on the others, and the ms a frame
in all. Each engine through tests/fixtures/engines.py (Chromium: Playwright).

Usage (repo root, project venv, `make site` and `make browser-deps` done):
    python build/bench_engines.py                   # 3 runs per engine, ~3 min on 2 cores
    python build/bench_engines.py --engines webkit --runs 5 --phases   # and where each engine's load time went
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "build"))

from bench_browser import LOAD_PHASES_JS, med, native_ms_per_face, phase_table  # noqa: E402
from fixtures import engines  # noqa: E402
from fixtures.e2e import SETTLED_STATUS, serve_dir  # noqa: E402

ENGINES = ("chromium", "firefox", "webkit")
VIDEO_PAGE = """<!doctype html><meta charset="utf-8"><title>engine bench</title>
<video id="clip" src="clip.webm" muted loop playsinline></video><script type="module" src="bench.js"></script>"""
# Reads the clip through the engine, one frame at a time as a camera loop would, ~30 ms apart.
VIDEO_SCRIPT = """import { createEmotionLens } from '../js/emotion-lens.js';
window.benchVideo = async (frames) => {
  const video = document.getElementById('clip');
  await video.play();
  const lens = createEmotionLens({ executionProviders: ['wasm'] });
  await lens.load();
  const probe = new VideoFrame(video);
  const format = probe.format;
  probe.close();
  const rows = [];
  for (let i = 0; i < frames; i++) {
    const r = await lens.detect(video);
    if (r) rows.push({ capture: r.timings.capture, total: r.timings.total, faces: r.faces.length, ran: r.detectorRan });
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
  lens.dispose();
  return { format, rows };
};
"""


def make_clip(out: Path) -> None:
    from fixtures import videos

    problem = videos.tools_problem()
    if problem:
        raise SystemExit(problem)
    source = videos.y4m(videos.HAPPY)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", "40", "-i", str(source), "-t", "8",
                    "-c:v", "libvpx", "-b:v", "1M", str(out)], check=True)


def one_run(engine: str, url: str, frames: int) -> dict:
    browser = engines.launch(engine)
    try:
        browser.goto(url)
        s = browser.wait_for(SETTLED_STATUS, 300)
        if s["state"] != "ready":
            raise RuntimeError(f"not ready: {s['error']}")
        isolated = browser.call("() => window.crossOriginIsolated")
        phases = browser.call(LOAD_PHASES_JS)
        browser.goto(url + "__bench__/index.html")
        browser.wait_for("() => typeof window.benchVideo === 'function'", 60)
        video = browser.call(f"() => window.benchVideo({frames})", timeout_s=600)
    finally:
        browser.close()
    rows = video["rows"]
    return {
        "ready_s": s["loadMs"] / 1000, "isolated": isolated, "phases": phases, "ep": s["ep"]["detector"],
        "threads": s["runtime"]["wasmThreads"], "format": video["format"],
        "faces": med([r["faces"] for r in rows]),
        "capture_detector_ms": med([r["capture"] for r in rows if r["ran"]]),
        "capture_other_ms": med([r["capture"] for r in rows if not r["ran"]]),
        "frame_ms": med([r["total"] for r in rows]),
    }


def print_phases(runs: list[dict]) -> None:
    """The cold visit's load phases, median start (ms after the navigation) and length over the runs."""
    print(f"  {'load phase (engine measures)':56s} {'at':>6s} {'ms':>6s}")
    for name, (start, ms) in sorted(phase_table(runs, "phases").items(), key=lambda kv: kv[1][0]):
        print(f"  {name[:56]:56s} {start:6.0f} {ms:6.0f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", type=Path, default=ROOT / "dist/site")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--phases", action="store_true", help="also print each engine's load phases (medians)")
    args = ap.parse_args(argv)

    names = args.engines.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        site = Path(tmp) / "site"
        shutil.copytree(args.site, site)
        bench = site / "__bench__"  # outside manifest.json: never deployed, not in the service worker's shell
        bench.mkdir()
        make_clip(bench / "clip.webm")
        (bench / "index.html").write_text(VIDEO_PAGE)
        (bench / "bench.js").write_text(VIDEO_SCRIPT)
        server, url = serve_dir(site)
        native_ms = native_ms_per_face(site, json.loads((site / "manifest.json").read_text()))
        print(f"native onnxruntime {native_ms or float('nan'):.2f} ms a face (the default emotion model, 1 thread); "
              f"{args.runs} fresh browsers per engine, medians")
        try:
            for name in names:
                problem = engines.engine_problem(name)
                if problem:
                    print(f"{name}: skipped ({problem})")
                    continue
                runs = [one_run(name, url, args.frames) for _ in range(args.runs)]
                ready = sorted(r["ready_s"] for r in runs)
                first = runs[0]
                print(f"{engines.engine_version(name)}: ready {med(ready):.2f} s (runs "
                      f"{', '.join(f'{v:.2f}' for v in ready)}); isolated {first['isolated']}; EP {first['ep']}, "
                      f"{first['threads']} WASM thread(s); frames {first['format']}, "
                      f"{med([r['faces'] for r in runs]):.0f} face; capture "
                      f"{med([r['capture_detector_ms'] for r in runs]):.1f} ms on detector frames, "
                      f"{med([r['capture_other_ms'] for r in runs]):.1f} ms on the others; "
                      f"{med([r['frame_ms'] for r in runs]):.1f} ms a frame in all", flush=True)
                if args.phases:
                    print_phases(runs)
        finally:
            server.shutdown()
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
