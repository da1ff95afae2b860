"""The three browser engines side by side (not a test: it prints numbers): Chromium, Firefox and WebKit(GTK).

For each engine, `--runs` fresh browsers (fresh profiles) open the built site, and print the median of: navigation
start -> ready (cold visit, through the service worker as a visitor gets it), whether the page is cross-origin
isolated, onnxruntime's execution provider and WASM threads; then, in a test page of the same origin, the engine
(web/js/emotion-lens.js) reads a <video> playing a VP8 clip of one smiling face (made with ffmpeg from the e2e
fixture, so every engine decodes real video rather than its own fake camera) for 60 frames: the frames' format, the
ms to read a frame's pixels (capture) on the frames where the face detector runs and on the others, and the ms a frame
in all. Chromium through Playwright, Firefox and WebKit through tests/fixtures/engines.py.

Usage (repo root, project venv, `make site` and `make browser-deps` done):
    python build/bench_engines.py                   # 3 runs per engine, ~3 min on 2 cores
    python build/bench_engines.py --engines webkit --runs 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "build"))

ENGINES = ("chromium", "firefox", "webkit")
READY = """() => window.__emotionApp && ['ready', 'error'].includes(window.__emotionApp.state)
  && window.__emotionApp.snapshot()"""
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


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def make_clip(out: Path) -> None:
    from fixtures import videos

    problem = videos.tools_problem()
    if problem:
        raise SystemExit(problem)
    source = videos.y4m(videos.HAPPY)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", "40", "-i", str(source), "-t", "8",
                    "-c:v", "libvpx", "-b:v", "1M", str(out)], check=True)


class ChromiumPage:
    """Chromium through Playwright, with the same two calls as tests/fixtures/engines.py's browsers."""

    def __init__(self, playwright):
        from fixtures.e2e import launch_app_browser

        self.browser = launch_app_browser(playwright, fake_device=False, fake_ui=False)
        self.page = self.browser.new_page()

    def goto(self, url: str) -> None:
        self.page.goto(url)

    def wait_for(self, predicate: str, timeout_s: float):
        return self.page.wait_for_function(predicate, timeout=timeout_s * 1000, polling=100).json_value()

    def call(self, function: str, *args, timeout_s: float = 120):
        return self.page.evaluate(function, *args)

    def close(self) -> None:
        self.browser.close()


def one_run(open_browser, url: str, frames: int) -> dict:
    browser = open_browser()
    try:
        browser.goto(url)
        s = browser.wait_for(READY, 300)
        if s["state"] != "ready":
            raise RuntimeError(f"not ready: {s['error']}")
        isolated = browser.call("() => window.crossOriginIsolated")
        browser.goto(url + "__bench__/index.html")
        browser.wait_for("() => typeof window.benchVideo === 'function'", 60)
        video = browser.call(f"() => window.benchVideo({frames})", timeout_s=600)
    finally:
        browser.close()
    rows = video["rows"]
    return {
        "ready_s": s["loadMs"] / 1000, "isolated": isolated, "ep": s["ep"]["detector"],
        "threads": s["runtime"]["wasmThreads"], "format": video["format"],
        "faces": median([r["faces"] for r in rows]),
        "capture_detector_ms": median([r["capture"] for r in rows if r["ran"]]),
        "capture_other_ms": median([r["capture"] for r in rows if not r["ran"]]),
        "frame_ms": median([r["total"] for r in rows]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", type=Path, default=ROOT / "dist/site")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args(argv)

    import json

    from bench_browser import native_ms_per_face
    from fixtures import engines
    from fixtures.e2e import serve_dir

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
                if name == "chromium":
                    from playwright.sync_api import sync_playwright

                    with sync_playwright() as p:
                        runs = [one_run(lambda: ChromiumPage(p), url, args.frames) for _ in range(args.runs)]
                    version = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True,
                                             text=True).stdout.strip()
                else:
                    problem = engines.engine_problem(name)
                    if problem:
                        print(f"{name}: skipped ({problem})")
                        continue
                    runs = [one_run(lambda: engines.launch(name), url, args.frames) for _ in range(args.runs)]
                    version = engines.engine_version(name)
                ready = sorted(r["ready_s"] for r in runs)
                first = runs[0]
                print(f"{version}: ready {median(ready):.2f} s (runs {', '.join(f'{v:.2f}' for v in ready)}); "
                      f"isolated {first['isolated']}; EP {first['ep']}, {first['threads']} WASM thread(s); "
                      f"frames {first['format']}, {median([r['faces'] for r in runs]):.0f} face; capture "
                      f"{median([r['capture_detector_ms'] for r in runs]):.1f} ms on detector frames, "
                      f"{median([r['capture_other_ms'] for r in runs]):.1f} ms on the others; "
                      f"{median([r['frame_ms'] for r in runs]):.1f} ms a frame in all", flush=True)
        finally:
            server.shutdown()
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
