"""Benchmark the peers issue 23 compares this page with: face-api 1.7.15 and human 3.3.6 (not a test: it prints
numbers, beside the figures build/bench_browser.py prints for this page, measured the same way).

Each library comes from the npm registry (`npm pack`, cached in .cache/peers/; the versions, tarballs' sha512 and the
files used are printed), with its own models from its package and TensorFlow.js's WebAssembly backend
(@tensorflow/tfjs-backend-wasm 4.22.0, the tfjs both bundle). A small harness page per library does what this page
does for a person: it starts the camera at once (beside the load), loads the library on its WASM backend with a face
detector and its expression model only (face-api: TinyFaceDetector + FaceExpressionNet, its lightest path to an
expression; human: BlazeFace + its emotion model, face mesh, iris, description, body, hand, object, gesture off),
runs one detection on a blank frame (ready: the next frame is labelled at speed, as this page's warm-ups do), then
labels each new camera frame. Served like GitHub Pages (gzip, no COOP/COEP: neither library isolates the page, so
their WASM runs without threads). Per fresh browser: ready cold and on a second visit, open -> first labelled face,
bytes on the wire, FPS and main-thread long tasks over a camera run, and the peak PSS of all the browser's processes
(beside a camera-only page's, as in bench_browser.py). --cpu-cores 0.5 runs every browser under phone-cpu.

Usage (repo root, project venv; npm reaches the registry once, then the cache is used):
    python build/bench_peers.py --runs 3 --camera-seconds 20
    python build/bench_peers.py --runs 3 --camera-seconds 20 --cpu-cores 0.5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "build"))

from bench_browser import (  # noqa: E402
    LONG_TASK_MS, PROBES, bare_camera_pss, browser_pss_bytes, chromium_under_quota, machine_line, med,
)

CACHE = ROOT / ".cache" / "peers"
PACKAGES = {"face-api": "@vladmandic/face-api@1.7.15", "human": "@vladmandic/human@3.3.6",
            "tfjs-wasm": "@tensorflow/tfjs-backend-wasm@4.22.0"}
# package -> {path in the package: path on the harness site}
FILES = {
    "face-api": {"dist/face-api.esm.js": "face-api/face-api.esm.js",
                 **{f"model/{m}": f"face-api/model/{m}" for m in (
                     "tiny_face_detector_model-weights_manifest.json", "tiny_face_detector_model.bin",
                     "face_expression_model-weights_manifest.json", "face_expression_model.bin")}},
    "human": {"dist/human.esm.js": "human/human.esm.js",
              **{f"models/{m}": f"human/models/{m}" for m in (
                  "blazeface.json", "blazeface.bin", "emotion.json", "emotion.bin")}},
    "tfjs-wasm": {f"dist/{w}": f"wasm/{w}" for w in (
        "tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm", "tfjs-backend-wasm-threaded-simd.wasm")},
}

HARNESS_HTML = """<!doctype html><meta charset="utf-8"><title>peer</title>
<video id="video" playsinline muted autoplay width="640" height="480"></video>
<script type="module" src="peer.js"></script>"""

# window.__peer: {readyMs, firstLabelMs (ms from navigation), frames, labelled, error}
HARNESS_JS = """
const lib = new URLSearchParams(location.search).get('lib');
const state = window.__peer = { lib, readyMs: null, firstLabelMs: null, frames: 0, labelled: 0, error: null };
const video = document.getElementById('video');
const cameraOn = navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } })
  .then((stream) => { video.srcObject = stream; return video.play(); });

async function faceApi() {
  const faceapi = await import('./face-api/face-api.esm.js');
  faceapi.tf.setWasmPaths(new URL('wasm/', location.href).href);
  await faceapi.tf.setBackend('wasm');
  await faceapi.tf.ready();
  await Promise.all([faceapi.nets.tinyFaceDetector.loadFromUri('face-api/model'),
                     faceapi.nets.faceExpressionNet.loadFromUri('face-api/model')]);
  const options = new faceapi.TinyFaceDetectorOptions();
  return async (input) => (await faceapi.detectAllFaces(input, options).withFaceExpressions())
    .filter((f) => f.expressions).length;
}

async function human() {
  const { Human } = await import('./human/human.esm.js');
  const off = { enabled: false };
  const h = new Human({
    backend: 'wasm', wasmPath: new URL('wasm/', location.href).href, modelBasePath: new URL('human/models/', location.href).href,
    warmup: 'none', debug: false, filter: off, gesture: off, body: off, hand: off, object: off, segmentation: off,
    face: { enabled: true, detector: { rotation: false }, mesh: off, iris: off, description: off, emotion: { enabled: true },
            antispoof: off, liveness: off, attention: off },
  });
  await h.load();
  return async (input) => (await h.detect(input)).face.filter((f) => f.emotion && f.emotion.length).length;
}

(async () => {
  const detect = await (lib === 'face-api' ? faceApi() : human());
  const blank = document.createElement('canvas');
  blank.width = 640; blank.height = 480;
  blank.getContext('2d').fillRect(0, 0, 640, 480);
  await detect(blank);
  state.readyMs = performance.now();
  await cameraOn;
  for (;;) {
    await new Promise((resolve) => video.requestVideoFrameCallback(resolve));  // a new camera frame
    const faces = await detect(video);
    state.frames += 1;
    if (faces > 0) {
      state.labelled += 1;
      if (state.firstLabelMs === null) state.firstLabelMs = performance.now();
    }
  }
})().catch((err) => { state.error = String(err?.stack ?? err); console.error(err); });
"""


def fetch_packages() -> dict[str, Path]:
    """Each package's tarball from the npm registry (cached): {name: tarball path}."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, spec in PACKAGES.items():
        scope, version = spec.lstrip("@").split("@")
        tarball = CACHE / f"{scope.replace('/', '-')}-{version}.tgz"
        if not tarball.is_file():
            subprocess.run(["npm", "pack", spec, "--pack-destination", str(CACHE)], check=True, capture_output=True)
        out[name] = tarball
    return out


def build_harness(tarballs: dict[str, Path], folder: Path) -> list[str]:
    """The harness site in `folder`; returns a provenance line per package."""
    lines = []
    for name, tarball in tarballs.items():
        with tarfile.open(tarball) as tar:
            for member, dest in FILES[name].items():
                target = folder / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(f"package/{member}")
                target.write_bytes(source.read())
        digest = hashlib.sha512(tarball.read_bytes()).hexdigest()[:16]
        lines.append(f"{PACKAGES[name]} ({tarball.name}, sha512 {digest}...): {', '.join(FILES[name])}")
    (folder / "index.html").write_text(HARNESS_HTML)
    (folder / "peer.js").write_text(HARNESS_JS)
    return lines


def bench_one(playwright, server, url: str, lib: str, video: Path, args) -> dict:
    from fixtures.e2e import launch_app_browser, wait_for

    browser = launch_app_browser(playwright, fake_video=video, executable=args.executable)
    try:
        browser.context.add_init_script(PROBES)
        page = browser.new_page()
        sent0 = server.bytes_sent
        page.goto(f"{url}?lib={lib}")
        wait_for(page, "() => window.__peer && (window.__peer.firstLabelMs !== null || window.__peer.error !== null)",
                 int(args.timeout * 1000))
        state = page.evaluate("() => window.__peer")
        if state["error"]:
            return {"lib": lib, "error": state["error"]}
        out = {"lib": lib, "cold_ready_ms": state["readyMs"], "first_label_ms": state["firstLabelMs"],
               "wire_bytes": server.bytes_sent - sent0}
        page.wait_for_timeout(2000)  # settle, as bench_browser.py waits for 5 frames
        start = page.evaluate("() => ({ now: performance.now(), ...window.__peer })")
        t0 = time.perf_counter()
        pss = [browser_pss_bytes(browser._profile.name)]
        while time.perf_counter() - t0 < args.camera_seconds:
            page.wait_for_timeout(1000)
            pss.append(browser_pss_bytes(browser._profile.name))
        seconds = time.perf_counter() - t0
        state = page.evaluate("() => window.__peer")
        long_tasks = page.evaluate(f"() => window.__bench.longTasks.filter((t) => t.start >= {start['now']} && "
                                   f"t.ms > {LONG_TASK_MS}).length")
        frames = state["frames"] - start["frames"]
        out.update(fps=frames / seconds, labelled_share=(state["labelled"] - start["labelled"]) / max(1, frames),
                   long_tasks_per_min=long_tasks * 60 / seconds, peak_pss=max(pss),
                   steady_pss=statistics.median(pss[len(pss) // 2:]))
        page.goto("about:blank")
        page.goto(f"{url}?lib={lib}")  # a second visit: the HTTP cache warm
        wait_for(page, "() => window.__peer && (window.__peer.readyMs !== null || window.__peer.error !== null)",
                 int(args.timeout * 1000))
        out["warm_ready_ms"] = page.evaluate("() => window.__peer.readyMs")
        return out
    finally:
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libs", default="face-api,human")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--camera-seconds", type=float, default=20.0)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--cpu-cores", type=float, help="hold every browser to this CPU quota (phone-cpu; e.g. 0.5)")
    parser.add_argument("--link", help="serve through an emulated network link, e.g. 20mbit,40ms")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from fixtures import videos
    from fixtures.e2e import serve_dir
    from serve import Link

    if shutil.which("npm") is None:
        raise SystemExit("npm is needed to fetch the peers from the registry")
    libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    video = videos.y4m(videos.HAPPY)
    runs, baseline = [], None
    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder) / "site"
        provenance = build_harness(fetch_packages(), site)
        server, url = serve_dir(site, pages_like=True, gzip=True, link=Link.parse(args.link) if args.link else None)
        try:
            with sync_playwright() as p:
                args.executable = chromium_under_quota(args.cpu_cores, Path(folder)) if args.cpu_cores else None
                if args.baseline_seconds > 0:
                    print("running the camera-only page (memory baseline) ...", flush=True)
                    baseline = bare_camera_pss(p, video, args, args.baseline_seconds)
                for i in range(args.runs):
                    for lib in libs:  # interleaved, so a drift of the machine touches both alike
                        print(f"running {lib} ({i + 1}/{args.runs}) ...", flush=True)
                        runs.append(bench_one(p, server, url, lib, video, args))
        finally:
            server.shutdown()
            server.server_close()

    print()
    print(machine_line())
    print(f"{'CPU quota ' + str(args.cpu_cores) + ' cores (phone-cpu)' if args.cpu_cores else 'full CPU'}"
          f"{', link ' + args.link if args.link else ''}; fake webcam {video.name}; camera run {args.camera_seconds:.0f} s;"
          " served like GitHub Pages (gzip, no COOP/COEP)")
    for line in provenance:
        print(f"  {line}")
    if baseline:
        print(f"camera-only page: peak PSS {baseline / 1e6:.0f} MB")
    print(f"\n{'library':9s} {'run':>3s} {'cold s':>6s} {'warm s':>6s} {'label s':>7s} {'FPS':>5s} {'faces':>5s} "
          f"{'long/min':>8s} {'wire MB':>7s} {'peak PSS MB':>11s} {'share MB':>8s}")
    widths = ((6, 2), (6, 2), (7, 2), (5, 1), (5, 2), (8, 1), (7, 2), (11, 0), (8, 0))
    for lib in libs:
        rows = [r for r in runs if r["lib"] == lib]
        for i, r in enumerate(rows, 1):
            if "error" in r:
                print(f"{lib:9s} {i:3d} error: {r['error'][:300]}")
        good = [r for r in rows if "error" not in r]

        def figures(r):
            share = (r["peak_pss"] - baseline) / 1e6 if baseline else float("nan")
            return [r["cold_ready_ms"] / 1000, (r["warm_ready_ms"] or float("nan")) / 1000,
                    r["first_label_ms"] / 1000, r["fps"], r["labelled_share"], r["long_tasks_per_min"],
                    r["wire_bytes"] / 1e6, r["peak_pss"] / 1e6, share]

        for i, r in enumerate(good, 1):
            vals = figures(r)
            print(f"{lib:9s} {i:3d} " + " ".join(f"{v:{w}.{d}f}" for v, (w, d) in zip(vals, widths)))
        if good:
            cols = list(zip(*(figures(r) for r in good)))
            print(f"{lib:9s} {'med':>3s} " + " ".join(f"{med(list(c)):{w}.{d}f}" for c, (w, d) in zip(cols, widths)))
    print("\ncold / warm s = navigation -> ready (library, backend and models loaded, one detection done), first and "
          "second visit; label s = navigation -> the first labelled face (camera started at once); faces = share of "
          "processed frames with a labelled face; share = peak PSS minus the camera-only page's.")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_line(), "baseline_pss": baseline, "runs": runs,
                                         "provenance": provenance}, indent=1))
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
