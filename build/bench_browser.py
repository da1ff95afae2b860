"""Benchmark the built site in headless Chromium with a fake webcam (not a test: it prints numbers).

For each execution-provider setting it starts a fresh browser (empty cache), opens the page, presses
"Start camera" as soon as the page is ready, lets N frames through the whole chain and reads the page's
own per-frame timings from window.__emotionApp. It prints:
  - cold start: navigation -> ready, and -> first prediction (ready + Start camera -> first result),
  - per-frame latency: detect / Python pre / classify / Python post / total (median and p90), FPS,
  - page weight: manifest.json totals and groups, and the bytes this EP setting actually fetched.

Usage (repo root, venv with playwright; /usr/bin/chromium and ffmpeg installed):
    python build/bench_browser.py                      # builds dist/site if missing; wasm and auto
    python build/bench_browser.py --eps wasm,auto,webgl,webgpu --frames 200 --json bench.json
    python build/bench_browser.py --site /path/to/site --no-build
    python build/bench_browser.py --eps wasm --camera-detector full_range   # the full-range detector's cost
EP settings: wasm (?ep=wasm), auto (the page's default chain), webgl / webgpu (?ep=..., software GPUs
allowed, so headless SwiftShader is measured too; add --webgpu-flag for WebGPU in headless Chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

STAGES = ("capture", "detect", "pre", "classify", "post", "total")
QUERIES = {"wasm": "?ep=wasm", "auto": "", "webgl": "?ep=webgl", "webgpu": "?ep=webgpu"}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def ensure_site(site: Path, build: bool) -> dict:
    manifest = site / "manifest.json"
    if build and not manifest.is_file():
        print(f"building {site} ...", flush=True)
        subprocess.run([sys.executable, str(ROOT / "build/build_site.py"), "--out", str(site)], check=True)
    if not manifest.is_file():
        raise SystemExit(f"{manifest} missing: build the site (python build/build_site.py)")
    return json.loads(manifest.read_text())


def bench_one(playwright, url: str, setting: str, video: Path, frames: int, webgpu_flag: bool,
              timeout_s: float, camera_detector: str = "short_range") -> dict:
    from fixtures.e2e import launch_app_browser, status, wait_for

    extra = ["--enable-unsafe-webgpu"] if webgpu_flag else []
    browser = launch_app_browser(playwright, *extra, fake_video=video)
    try:
        page = browser.new_page()
        t0 = time.perf_counter()
        page.goto(url + QUERIES[setting])
        wait_for(page, "() => window.__emotionApp && ['ready', 'error'].includes(window.__emotionApp.state)",
                 int(timeout_s * 1000))
        s = status(page)
        if s["state"] != "ready":
            return {"setting": setting, "error": s["error"]}
        if camera_detector != "short_range":  # the page's settings form, as a user would pick it (issue 10)
            page.click(".settings summary")
            page.select_option("#camera-detector", camera_detector)
            page.click("#settings-form button[type=submit]")
        page.click("#start-camera")
        wait_for(page, f"() => window.__emotionApp.frames >= {frames} || window.__emotionApp.error !== null",
                 int(timeout_s * 1000))
        wall = time.perf_counter() - t0
        s = status(page)
        if s["error"]:
            return {"setting": setting, "error": s["error"]}
        history = s["history"][-frames:]
        fetched = [u[len(url):].split("?")[0] for u in browser.requests if u.startswith(url)]
        return {
            "setting": setting,
            "ep": s["ep"],
            "ep_attempts": s["epAttempts"],
            "load_ms": s["loadMs"],
            "first_prediction_ms": s["loadMs"] + (s["firstFrameMs"] - s["cameraClickMs"]),
            "frames": len(history),
            "faces": statistics.median(h["faces"] for h in history),
            "fps": s["fps"],
            "dropped": s["dropped"],
            "stages": {k: {"median": statistics.median(h[k] for h in history),
                           "p90": percentile([h[k] for h in history], 90)} for k in STAGES},
            "fetched_paths": sorted(set(fetched)),
            "wall_s": wall,
        }
    finally:
        browser.close()


def fetched_bytes(manifest: dict, paths: list[str]) -> int:
    files = manifest["files"]
    return sum(files[p]["bytes"] for p in paths if p in files)


def print_report(manifest: dict, runs: list[dict], frames: int, video: Path) -> None:
    mb = lambda n: f"{n / 1e6:.1f}"  # noqa: E731
    t = manifest["totals"]
    cpu = os.cpu_count()
    chromium = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"\n{chromium}, {cpu} CPU cores, fake webcam {video.name}, {frames} frames per run\n")
    print(f"Page weight (manifest.json): {t['files']} files, {mb(t['bytes'])} MB raw, {mb(t['gzip_bytes'])} MB gzip")
    for name, g in manifest["groups"].items():
        print(f"  {name:14s} {mb(g['bytes']):>6s} MB raw {mb(g['gzip_bytes']):>6s} MB gzip")
    print()
    head = (f"{'setting':8s} {'EP det/emo':13s} {'ready s':>7s} {'1st pred s':>10s} {'FPS':>5s} "
            + " ".join(f"{k + ' med/p90 ms':>18s}" for k in ("detect", "pre", "classify", "post", "total"))
            + f" {'fetched MB':>10s}")
    print(head)
    print("-" * len(head))
    for r in runs:
        if "error" in r:
            print(f"{r['setting']:8s} error: {r['error']}")
            continue
        ep = f"{r['ep']['detector']}/{r['ep']['emotion']}"
        cells = " ".join(
            f"{r['stages'][k]['median']:>8.1f} / {r['stages'][k]['p90']:<7.1f}"
            for k in ("detect", "pre", "classify", "post", "total"))
        fps = f"{r['fps']:.1f}" if r["fps"] else "-"
        print(f"{r['setting']:8s} {ep:13s} {r['load_ms'] / 1000:>7.2f} {r['first_prediction_ms'] / 1000:>10.2f} "
              f"{fps:>5s} {cells} {mb(fetched_bytes(manifest, r['fetched_paths'])):>10s}")
    print("\npre = detector_input + decode_faces + emotion_input (Python); post = update (Python);"
          " detect / classify = onnxruntime-web runs; total also includes reading the video frame.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=ROOT / "dist/site")
    parser.add_argument("--no-build", action="store_true", help="do not build the site when it is missing")
    parser.add_argument("--eps", default="wasm,auto", help="comma list of: wasm, auto, webgl, webgpu")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--webgpu-flag", action="store_true", help="launch Chromium with --enable-unsafe-webgpu")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--camera-detector", choices=("short_range", "full_range"), default="short_range",
                        help="the page's camera face detector setting")
    args = parser.parse_args(argv)

    from fixtures import videos
    from fixtures.e2e import serve_dir
    from playwright.sync_api import sync_playwright

    problem = videos.tools_problem()
    if problem:
        raise SystemExit(problem)
    settings = [s.strip() for s in args.eps.split(",") if s.strip()]
    unknown = [s for s in settings if s not in QUERIES]
    if unknown:
        raise SystemExit(f"unknown EP settings {unknown}; use {sorted(QUERIES)}")
    manifest = ensure_site(args.site, not args.no_build)
    video = videos.y4m(videos.HAPPY)
    server, url = serve_dir(args.site)
    runs = []
    try:
        with sync_playwright() as p:
            for setting in settings:
                print(f"running {setting} ...", flush=True)
                runs.append(bench_one(p, url, setting, video, args.frames,
                                      args.webgpu_flag or setting == "webgpu", args.timeout, args.camera_detector))
    finally:
        server.shutdown()
        server.server_close()
    print(f"camera face detector: {args.camera_detector}")
    print_report(manifest, runs, args.frames, video)
    if args.json:
        args.json.write_text(json.dumps({"manifest_totals": manifest["totals"], "groups": manifest["groups"],
                                         "runs": runs}, indent=1))
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
