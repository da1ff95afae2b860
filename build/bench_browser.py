"""Benchmark the built site in headless Chromium with a fake webcam (not a test: it prints numbers).

Each run starts a fresh browser (empty cache) and measures, reading the page's own figures from window.__emotionApp:
  - page ready: cold (first visit) and warm (a second visit, cached), first navigation -> ready (with --pages-like
    the site is served without COOP/COEP like GitHub Pages, and the service worker's one isolation reload counts);
    and where that time went: the engine's `lens:<phase>` User Timing measures (js/load-timing.js), per visit;
  - open -> first labelled face (cold visit): the camera is started as soon as the page allows it;
  - bytes of the cold visit: on the wire as served (serve.py gzips like GitHub Pages unless --no-gzip), and the
    same files' bytes from a host that gzips and from one that does not;
  - a camera run of --camera-seconds: per-frame stages (grab on the main thread; capture, detect, Python pre,
    classify, Python post, total in the engine; the frame's lag = grab -> result), processed FPS, dropped frames,
    main-thread long tasks (> 50 ms, PerformanceObserver), main-thread busy time per processed frame (Chromium's
    TaskDuration metric over the run, divided by the frames processed; and the main thread's CPU time, from /proc),
    --clicks clicks' response latency (the event -> the next animation frame after it was handled), and the peak
    memory of all the browser's processes (PSS, sampled every second), beside a page that only shows the camera.
Slow devices: --cpu-cores 0.5 runs every browser under ../shared/tools/phone-cpu (a CPU quota over the whole process
tree, workers included; DevTools CPU throttling slows the page's main thread only, so it is not used). --link
20mbit,40ms serves through an emulated network link. Every figure is printed per run and as the median of --runs
runs, beside native onnxruntime's ms per face for the default emotion model on this machine (machines of this kind
differ ~2x). --soak-seconds N adds one long camera run that prints, every --soak-interval s, the main thread's JS
heap, Python's WebAssembly heap (in the engine's worker), the renderer processes' resident memory, FPS and frame
lag, and their growth after warm-up. --trace FILE adds, in the first run, a few seconds of camera with a Chrome
trace (written to FILE, for chrome://tracing or ui.perfetto.dev) and prints where the page's main thread spent them.

Usage (repo root, venv with playwright; /usr/bin/chromium and ffmpeg installed):
    python build/bench_browser.py                          # builds dist/site if missing; wasm, 3 runs
    python build/bench_browser.py --cpu-cores 0.5 --camera-seconds 60     # the phone-class proxy
    python build/bench_browser.py --cpu-cores 0.5 --link 20mbit,40ms      # ... on a mobile-like link
    python build/bench_browser.py --eps wasm,auto --runs 3 --camera-seconds 60 --json bench.json
    python build/bench_browser.py --runs 0 --soak-seconds 600
    python build/bench_browser.py --query worker=0         # the main-thread fallback, for comparison
    python build/bench_browser.py --camera-detector full_range   # the full-range face detector's cost
    python build/bench_browser.py --pages-like --camera-seconds 5  # as on GitHub Pages (isolation reload)
    python build/bench_browser.py --runs 1 --trace main.json     # where the main thread's time goes
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

STAGES = ("grab", "capture", "detect", "pre", "preDetector", "classify", "post", "total", "roundTrip")
QUERIES = {"wasm": "ep=wasm", "auto": "", "webgl": "ep=webgl", "webgpu": "ep=webgpu"}
LONG_TASK_MS = 50
PHONE_CPU = ROOT.parent / "shared" / "tools" / "phone-cpu"
# A page with nothing but the camera: the memory baseline the engine's share is measured against.
BARE_CAMERA_HTML = """<!doctype html><meta charset="utf-8"><title>camera only</title>
<video id="video" playsinline muted autoplay width="640" height="480"></video><script src="bare.js"></script>"""
BARE_CAMERA_JS = """navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } }).then((stream) => {
  const video = document.getElementById('video'); video.srcObject = stream; return video.play();
}).then(() => { window.cameraOn = true; });"""

# Installed before any page script: long tasks and click latency, recorded where the benchmark can read them.
PROBES = """
window.__bench = { longTasks: [], clicks: [] };
// The visit's first navigation (an isolation reload starts a second one, with its own time origin).
if (!sessionStorage.getItem('bench:origin')) sessionStorage.setItem('bench:origin', String(performance.timeOrigin));
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__bench.longTasks.push({ start: e.startTime, ms: e.duration });
  }).observe({ type: 'longtask', buffered: true });
} catch (err) { window.__bench.longTasks = null; }
addEventListener('click', (e) => {
  const t = e.timeStamp;
  requestAnimationFrame(() => setTimeout(() => window.__bench.clicks.push(performance.now() - t), 0));
}, true);
"""


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


def query_string(setting: str, extra: str) -> str:
    parts = [p for p in (QUERIES[setting], extra) if p]
    return "?" + "&".join(parts) if parts else ""


# ---------------------------------------------------------------- process memory (Linux /proc)

def _proc(pid: int, name: str) -> str:
    return (Path("/proc") / str(pid) / name).read_text(errors="replace")


def process_table() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, command line)."""
    procs: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            pid = int(entry.name)
            procs[pid] = (int(_proc(pid, "stat").rsplit(")", 1)[1].split()[1]), _proc(pid, "cmdline").replace("\0", " "))
        except (OSError, IndexError, ValueError):
            continue
    return procs


def browser_pids(profile_dir: str, procs: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """The browser process of the Chromium using `profile_dir` and every process below it (renderers, GPU,
    utility, zygotes): what the device's memory holds for the page. Empty when no such browser runs."""
    procs = process_table() if procs is None else procs
    found = {pid for pid, (_, cmd) in procs.items() if f"--user-data-dir={profile_dir}" in cmd and "--type=" not in cmd}
    changed = bool(found)
    while changed:
        changed = False
        for pid, (ppid, _) in procs.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return sorted(found)


def renderers(profile_dir: str) -> list[int] | None:
    """Pids of the renderer processes (the page and its workers) of the Chromium using `profile_dir`; None when no
    such browser runs."""
    procs = process_table()
    pids = browser_pids(profile_dir, procs)
    return [pid for pid in pids if "--type=renderer" in procs[pid][1]] if pids else None


def _summed_kib_bytes(pids: list[int], name: str, field: str) -> int:
    """The `field:` line (in kB) of /proc/<pid>/<name>, summed over `pids`, in bytes; processes gone meanwhile count 0."""
    total = 0
    for pid in pids:
        try:
            line = next(line for line in _proc(pid, name).splitlines() if line.startswith(field + ":"))
            total += int(line.split()[1]) * 1024
        except (OSError, StopIteration):
            pass
    return total


def browser_pss_bytes(profile_dir: str) -> int:
    """Proportional set size of all the browser's processes (shared pages split among their sharers)."""
    return _summed_kib_bytes(browser_pids(profile_dir), "smaps_rollup", "Pss")


def renderer_rss_bytes(profile_dir: str) -> int | None:
    """Resident memory of the renderer processes of the Chromium using `profile_dir` (the page and its workers)."""
    pids = renderers(profile_dir)
    return None if pids is None else _summed_kib_bytes(pids, "status", "VmRSS")


def renderer_main_cpu_s(profile_dir: str) -> float | None:
    """CPU time (user + system, s) of the renderers' main threads so far: the page's main thread (a worker-only or
    idle renderer adds next to nothing). Unlike TaskDuration it does not grow while the thread waits for a core,
    so it compares runs on a busy machine."""
    pids = renderers(profile_dir)
    if not pids:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = _proc(pid, f"task/{pid}/stat").rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


# ---------------------------------------------------------------- one run

# The engine's load measures (web/js/load-timing.js) as [{name, start, ms}], ms from the page's navigation.
LOAD_PHASES_JS = """() => performance.getEntriesByType('measure').filter((m) => m.name.startsWith('lens:'))
  .map((m) => ({ name: m.name.slice(5), start: m.startTime, ms: m.duration }))"""


def open_ready(page, url: str | None, timeout_s: float) -> dict:
    """Open `url` as a new visit and wait until the page is ready (or failed). Adds `readyMs` (the visit's first
    navigation -> ready, an isolation reload included) and `phases` (the engine's load measures, ms from the last
    navigation: [{name, start, ms}])."""
    from fixtures.e2e import status, wait_for

    if url is not None:  # a new visit (None: the visit in progress)
        if page.url.startswith("http"):
            page.evaluate("() => sessionStorage.removeItem('bench:origin')")
        page.goto(url)
    wait_for(page, "() => window.__emotionApp && (window.__emotionApp.loadMs !== null || "
                   "window.__emotionApp.state === 'error')", int(timeout_s * 1000))
    s = status(page)
    timing = page.evaluate("""() => ({
      firstOrigin: Number(sessionStorage.getItem('bench:origin')) || performance.timeOrigin,
      origin: performance.timeOrigin,
      phases: (""" + LOAD_PHASES_JS + """)(),
    })""")
    if s["loadMs"] is not None:
        s["readyMs"] = timing["origin"] - timing["firstOrigin"] + s["loadMs"]
    s["phases"] = timing["phases"]
    return s


def choose_camera_detector(page, detector: str) -> None:
    """Pick the camera's face detector in the page's settings form, as a user would (before the camera starts)."""
    from fixtures.e2e import wait_for

    if detector == "short_range":  # the page's default
        return
    page.click(".settings summary")
    page.select_option("#camera-detector", detector)
    page.click("#settings-form button[type=submit]")
    wait_for(page, f"() => window.__emotionApp.cameraDetector === '{detector}'")
    page.click(".settings summary")


def task_seconds(cdp) -> float:
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return metrics["TaskDuration"]


def camera_window(page, cdp, seconds: float, profile_dir: str, clicks: int) -> dict:
    """Run the camera for `seconds` (after a short settling time) and measure the main thread, `clicks` clicks'
    response and the browser's memory (PSS every second) meanwhile."""
    from fixtures.e2e import status, wait_for

    page.click("#start-camera")
    wait_for(page, "() => window.__emotionApp.frames >= 5 || window.__emotionApp.error !== null", 180_000)
    s0 = status(page)
    busy0, cpu0, t0 = task_seconds(cdp), renderer_main_cpu_s(profile_dir), time.perf_counter()
    page_t0 = page.evaluate("() => { window.__bench.clicks = []; return performance.now(); }")
    pss = [browser_pss_bytes(profile_dir)]
    next_click = seconds / (clicks + 1)
    while (elapsed := time.perf_counter() - t0) < seconds:
        page.wait_for_timeout(min(1000, max(1, (seconds - elapsed) * 1000)))
        pss.append(browser_pss_bytes(profile_dir))
        if clicks and time.perf_counter() - t0 >= next_click:
            page.click(".settings summary")  # opens / closes the settings: a visible answer to the click
            next_click += seconds / (clicks + 1)
    busy1, cpu1, t1 = task_seconds(cdp), renderer_main_cpu_s(profile_dir), time.perf_counter()
    s1 = status(page)
    long_tasks = page.evaluate(f"() => window.__bench.longTasks && window.__bench.longTasks.filter("
                               f"(t) => t.start >= {page_t0} && t.ms > {LONG_TASK_MS})")
    click_ms = page.evaluate("() => window.__bench.clicks")
    frames = s1["frames"] - s0["frames"]
    history = s1["history"][-max(1, min(frames, 300)):]
    ran = [h for h in history if h.get("detectorRan", True)]  # frames the face detector ran on
    kept = [h for h in history if not h.get("detectorRan", True)]
    page.click("#stop-camera")
    wait_for(page, "() => window.__emotionApp.state === 'ready'")
    return {
        "frames": frames,
        "seconds": t1 - t0,
        "fps": frames / (t1 - t0),
        "dropped": s1["dropped"] - s0["dropped"],
        "faces": statistics.median(h["faces"] for h in history) if history else 0,
        "main_busy_ms_per_frame": (busy1 - busy0) * 1000 / max(1, frames),
        "main_cpu_ms_per_frame": None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) * 1000 / max(1, frames),
        "long_tasks": long_tasks,
        "click_ms": click_ms,
        "peak_pss": max(pss),
        # the run's second half: past the ~1 s transient right after a first visit's load
        "steady_pss": statistics.median(pss[len(pss) // 2:]),
        "stages": {k: {"median": statistics.median(h[k] for h in history),
                       "p90": percentile([h[k] for h in history], 90)}
                   for k in STAGES if history and all(k in h for h in history)},
        "detector_share": len(ran) / len(history) if history else None,
        # the engine's total per frame, split by whether the face detector ran (config.detectEvery)
        "total_by_detector": {name: statistics.median(h["total"] for h in part)
                              for name, part in (("ran", ran), ("kept", kept)) if part},
        "error": s1["error"],
    }


def first_label(page, url: str, timeout_s: float) -> dict:
    """A cold visit as a person makes it: open the page, start the camera as soon as the page allows, and wait for
    the first labelled face. Returns {firstLabelMs (the visit's first navigation -> the first result with a face, an
    isolation reload included; None if none came), error (the page's, or None)}."""
    from fixtures.e2e import wait_for

    page.goto(url)
    wait_for(page, "() => window.__emotionApp && (window.__emotionApp.state === 'error' || "
                   "!document.getElementById('start-camera').disabled)", int(timeout_s * 1000))
    page.click("#start-camera")
    wait_for(page, "() => window.__emotionApp.error !== null || window.__emotionApp.history.some((h) => h.faces > 0)",
             int(timeout_s * 1000))
    out = page.evaluate("""() => {
      const first = window.__emotionApp.history.find((h) => h.faces > 0);
      const firstOrigin = Number(sessionStorage.getItem('bench:origin')) || performance.timeOrigin;
      return { error: window.__emotionApp.error, at: first ? first.at : null,
               offset: performance.timeOrigin - firstOrigin };
    }""")
    return {"firstLabelMs": None if out["at"] is None else out["offset"] + out["at"], "error": out["error"]}


TRACE_CATEGORIES = ["toplevel", "devtools.timeline", "disabled-by-default-devtools.timeline", "v8.execute", "blink",
                    "cc", "disabled-by-default-devtools.timeline.frame"]


def traced_camera(page, cdp, seconds: float, path: Path) -> dict:
    """A camera run with a Chrome trace of `seconds` (after a short settling time), written to `path`."""
    from fixtures.e2e import status, wait_for

    page.click("#start-camera")
    wait_for(page, "() => window.__emotionApp.frames >= 5 || window.__emotionApp.error !== null", 120_000)
    page.wait_for_timeout(2000)
    events, done = [], []
    cdp.on("Tracing.dataCollected", lambda p: events.extend(p["value"]))
    cdp.on("Tracing.tracingComplete", lambda p: done.append(True))
    cdp.send("Tracing.start", {"traceConfig": {"includedCategories": TRACE_CATEGORIES}, "transferMode": "ReportEvents"})
    f0 = status(page)["frames"]
    page.wait_for_timeout(seconds * 1000)
    frames = status(page)["frames"] - f0
    cdp.send("Tracing.end")
    while not done:
        page.wait_for_timeout(100)
    page.click("#stop-camera")
    wait_for(page, "() => window.__emotionApp.state === 'ready'")
    path.write_text(json.dumps({"traceEvents": events}))
    return {"frames": frames, **main_thread_breakdown(events)}


def main_thread_breakdown(events: list[dict]) -> dict:
    """The page's main thread in a trace: its tasks by kind (the first event inside each), and events by exclusive
    time (their own time, less the events nested in them), both in ms."""
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
    counts: dict = {}
    for e in events:
        if names.get((e["pid"], e["tid"])) == "CrRendererMain":
            counts[(e["pid"], e["tid"])] = counts.get((e["pid"], e["tid"]), 0) + 1
    if not counts:
        return {"tasks": {}, "exclusive": {}, "busy_ms": 0.0}
    main = max(counts, key=counts.get)
    xs = sorted((e for e in events if (e["pid"], e["tid"]) == main and e.get("ph") == "X" and "dur" in e),
                key=lambda e: (e["ts"], -e["dur"]))
    tasks: dict[str, list[float]] = {}
    exclusive: dict[str, float] = {}
    stack: list[dict] = []
    task_end, task_kind = -1.0, None
    for e in xs:
        is_task = e["name"] == "ThreadControllerImpl::RunTask"
        if is_task and e["ts"] >= task_end:
            task_end, task_kind = e["ts"] + e["dur"], None
            tasks.setdefault("(task)", [0, 0.0])
            tasks["(task)"][0] += 1
            tasks["(task)"][1] += e["dur"] / 1000
        elif task_kind is None and e["ts"] < task_end and e["name"] not in ("RunTask", "ThreadControllerImpl::RunTask"):
            task_kind = e["name"]
            data = e.get("args", {}).get("data", {})
            kind = f"{task_kind} {data.get('type', '')}".strip()
            tasks.setdefault(kind, [0, 0.0])
            tasks[kind][0] += 1
            tasks[kind][1] += e["dur"] / 1000
        while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
            stack.pop()
        if stack:
            exclusive[stack[-1]["name"]] = exclusive.get(stack[-1]["name"], 0.0) - e["dur"] / 1000
        exclusive[e["name"]] = exclusive.get(e["name"], 0.0) + e["dur"] / 1000
        stack.append(e)
    busy = tasks.pop("(task)", [0, 0.0])
    return {"busy_ms": busy[1], "tasks": tasks, "exclusive": exclusive}


def print_trace(trace: dict, path: Path) -> None:
    n = max(1, trace["frames"])
    print(f"\nTrace of the camera ({path}): {trace['frames']} frames processed; main thread busy "
          f"{trace['busy_ms']:.0f} ms ({trace['busy_ms'] / n:.2f} ms/frame; tracing itself adds to it)")
    print(f"{'tasks by kind':44s} {'count':>6s} {'ms':>8s} {'ms/frame':>8s}")
    for kind, (count, ms) in sorted(trace["tasks"].items(), key=lambda kv: -kv[1][1])[:8]:
        print(f"{kind[:44]:44s} {count:6d} {ms:8.1f} {ms / n:8.2f}")
    print(f"{'events by exclusive time':44s} {'':>6s} {'ms':>8s} {'ms/frame':>8s}")
    for name, ms in sorted(trace["exclusive"].items(), key=lambda kv: -kv[1])[:15]:
        print(f"{name[:44]:44s} {'':6s} {ms:8.1f} {ms / n:8.2f}")


def chromium_under_quota(cores: float, folder: Path) -> Path:
    """A Chromium launcher that runs the whole browser (every process and worker) under phone-cpu's CPU quota."""
    if not PHONE_CPU.exists():
        raise SystemExit(f"{PHONE_CPU} missing: --cpu-cores needs the shared phone-cpu tool")
    from browser_fixtures import CHROMIUM

    launcher = folder / "chromium-quota"
    launcher.write_text(f"#!/bin/sh\nexec {PHONE_CPU} --cores {cores} -- {CHROMIUM} \"$@\" 2>/dev/null\n")
    launcher.chmod(0o755)
    return launcher


def bench_one(playwright, server, url: str, setting: str, extra_query: str, video: Path, args,
              first: bool = False) -> dict:
    from fixtures.e2e import launch_app_browser

    flags = ["--enable-unsafe-webgpu"] if args.webgpu_flag or setting == "webgpu" else []
    browser = launch_app_browser(playwright, *flags, *args.browser_arg, fake_video=video, executable=args.executable)
    try:
        browser.context.add_init_script(PROBES)
        page = browser.new_page()
        cdp = browser.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        address = url + query_string(setting, extra_query)
        sent0 = server.bytes_sent
        opened = first_label(page, address, args.timeout)
        if opened["error"]:
            return {"setting": setting, "error": opened["error"]}
        wire = server.bytes_sent - sent0
        s = open_ready(page, None, args.timeout)  # the same visit: its ready time and load phases
        out = {"setting": setting, "ep": s["ep"], "thread": s["thread"], "cold_ready_ms": s["readyMs"],
               "cold_phases": s["phases"], "first_label_ms": opened["firstLabelMs"], "wire_bytes": wire}
        fetched = [u[len(url):].split("?")[0] for u in browser.requests if u.startswith(url)]
        out["fetched_paths"] = sorted(set(fetched))
        page.click("#stop-camera")
        choose_camera_detector(page, args.camera_detector)
        out["camera"] = camera_window(page, cdp, args.camera_seconds, browser._profile.name, args.clicks)
        if args.trace and first:
            out["trace"] = traced_camera(page, cdp, args.trace_seconds, args.trace)
        s = open_ready(page, address, args.timeout)  # a second visit: HTTP cache and service worker warm
        out["warm_ready_ms"] = s["readyMs"]
        out["warm_phases"] = s["phases"]
        return out
    finally:
        browser.close()


def bare_camera_pss(playwright, video: Path, args, seconds: float = 10.0) -> int:
    """Peak PSS of a fresh browser showing only the camera (the same fake webcam and flags): the baseline the
    engine's own memory is the difference to."""
    from fixtures.e2e import launch_app_browser, serve_dir, wait_for

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "index.html").write_text(BARE_CAMERA_HTML)
        (Path(folder) / "bare.js").write_text(BARE_CAMERA_JS)
        server, url = serve_dir(Path(folder))
        browser = launch_app_browser(playwright, fake_video=video, executable=args.executable)
        try:
            page = browser.new_page()
            page.goto(url)
            wait_for(page, "() => window.cameraOn === true", 120_000)
            peak, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                page.wait_for_timeout(1000)
                peak = max(peak, browser_pss_bytes(browser._profile.name))
            return peak
        finally:
            browser.close()
            server.shutdown()
            server.server_close()


# ---------------------------------------------------------------- soak

def soak(playwright, url: str, setting: str, extra_query: str, video: Path, args) -> list[dict]:
    from fixtures.e2e import launch_app_browser, status, wait_for

    browser = launch_app_browser(playwright, fake_video=video)
    samples = []
    try:
        page = browser.new_page()
        cdp = browser.context.new_cdp_session(page)
        s = open_ready(page, url + query_string(setting, extra_query), args.timeout)
        if s["state"] != "ready":
            raise SystemExit(f"soak: page did not load: {s['error']}")
        choose_camera_detector(page, args.camera_detector)
        page.click("#start-camera")
        wait_for(page, "() => window.__emotionApp.frames >= 3", 120_000)
        start = time.perf_counter()
        last_frames, last_t = status(page)["frames"], start
        print(f"\nSoak: {args.soak_seconds} s camera run ({setting}, {s['thread']} thread), a sample every "
              f"{args.soak_interval} s")
        print(f"{'t s':>6s} {'frames':>7s} {'FPS':>5s} {'dropped':>7s} {'lag med/p90 ms':>15s} "
              f"{'main JS heap MB':>15s} {'Python wasm MB':>14s} {'renderer RSS MB':>15s}")
        while time.perf_counter() - start < args.soak_seconds:
            page.wait_for_timeout(args.soak_interval * 1000)
            cdp.send("HeapProfiler.collectGarbage")
            heap = cdp.send("Runtime.getHeapUsage")["usedSize"]
            memory = page.evaluate("() => window.__emotionApp.memory()")
            st = status(page)
            now = time.perf_counter()
            new = st["frames"] - last_frames
            lags = [h["roundTrip"] for h in st["history"][-max(1, min(new, 300)):]]
            sample = {
                "t": now - start, "frames": st["frames"], "fps": new / (now - last_t), "dropped": st["dropped"],
                "lag_median": statistics.median(lags), "lag_p90": percentile(lags, 90),
                "js_heap": heap, "python_wasm": memory["pythonWasmBytes"],
                "renderer_rss": renderer_rss_bytes(browser._profile.name), "error": st["error"],
            }
            samples.append(sample)
            last_frames, last_t = st["frames"], now
            rss = sample["renderer_rss"]
            print(f"{sample['t']:6.0f} {sample['frames']:7d} {sample['fps']:5.1f} {sample['dropped']:7d} "
                  f"{sample['lag_median']:7.1f} / {sample['lag_p90']:<6.1f} {heap / 1e6:15.1f} "
                  f"{sample['python_wasm'] / 1e6:14.1f} {(rss or 0) / 1e6:15.1f}", flush=True)
            if st["error"]:
                print(f"soak: the page reported an error: {st['error']}")
                break
    finally:
        browser.close()
    warm = [s for s in samples if s["t"] >= args.soak_seconds * 0.2] or samples
    if len(warm) >= 2:
        first, last = warm[0], warm[-1]

        def growth(key: str) -> str:
            a, b = first[key], last[key]
            return f"{100 * (b - a) / a:+.1f}%" if a else "n/a"

        print(f"after warm-up (t >= {first['t']:.0f} s): JS heap {growth('js_heap')}, Python wasm "
              f"{growth('python_wasm')}, renderer RSS {growth('renderer_rss')}, frame lag median "
              f"{first['lag_median']:.1f} -> {last['lag_median']:.1f} ms, FPS {first['fps']:.1f} -> {last['fps']:.1f}")
    return samples


# ---------------------------------------------------------------- report

def fetched_bytes(manifest: dict, paths: list[str]) -> int:
    files = manifest["files"]
    return sum(files[p]["bytes"] for p in paths if p in files)


def gzip_host_bytes(site: Path, paths: list[str]) -> int:
    """What the fetched files weigh from a host that gzips what GitHub Pages gzips (as serve.py does)."""
    from serve import gzipped, host_gzips

    files = [site / (rel or "index.html") for rel in paths]
    return sum(len(gzipped(f)) if host_gzips(f) else f.stat().st_size for f in files if f.is_file())


def native_ms_per_face(site: Path, manifest: dict, views: int | None = None) -> float | None:
    """Native onnxruntime's median ms for one face through the site's default emotion model (1 thread; all its views,
    or the first `views`): the figure that says how fast this machine is, printed beside every absolute time."""
    try:
        from model_export.bench import bench
    except ImportError:
        return None
    default = next(m for m in manifest["models"]["emotion"] if m["id"] == manifest["models"]["emotion_default"])
    return bench(site / default["model"], runs=300, threads=1, views=views)["median_ms"]


def machine_line() -> str:
    chromium = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout.strip()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{chromium}, {os.cpu_count()} CPU cores, load average at the end {load}"


def med(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def phase_table(runs: list[dict], key: str) -> dict[str, tuple[float, float]]:
    """Each `lens:` phase of the runs' `key` list ([{name, start, ms}]): (median start, median length), taking each
    name's first occurrence in a run."""
    per_name: dict[str, list[dict]] = {}
    for r in runs:
        seen = set()
        for p in r[key]:
            if p["name"] not in seen:
                seen.add(p["name"])
                per_name.setdefault(p["name"], []).append(p)
    return {n: (med([p["start"] for p in ps]), med([p["ms"] for p in ps])) for n, ps in per_name.items()}


def print_phases(rs: list[dict]) -> None:
    """Where the load time went: each `lens:` phase's start (ms after its page's navigation) and length, median over
    the runs, cold and warm. Phases overlap: the Python runtime and the models load side by side."""
    cold, warm = phase_table(rs, "cold_phases"), phase_table(rs, "warm_phases")
    names = sorted(set(cold) | set(warm), key=lambda n: cold.get(n, warm.get(n))[0])
    nan = (float("nan"), float("nan"))
    print(f"\n{'load phase (engine measures)':58s} {'cold at':>7s} {'ms':>6s} {'warm at':>7s} {'ms':>6s}")
    for n in names:
        (c0, c1), (w0, w1) = cold.get(n, nan), warm.get(n, nan)
        print(f"{n[:58]:58s} {c0:7.0f} {c1:6.0f} {w0:7.0f} {w1:6.0f}")


def print_report(manifest: dict, runs: list[dict], args, video: Path, native_ms: float | None,
                 baseline: int | None) -> None:
    mb = lambda n: f"{n / 1e6:.1f}"  # noqa: E731
    t = manifest["totals"]
    cpu = f"every browser held to {args.cpu_cores:g} core(s) by phone-cpu" if args.cpu_cores else "full CPU"
    print(f"\n{machine_line()}\n{cpu}; native onnxruntime {native_ms or float('nan'):.2f} ms a face (default emotion "
          f"model, 1 thread, idle conditions assumed)\nfake webcam {video.name}; camera face detector "
          f"{args.camera_detector}; camera run {args.camera_seconds:g} s with {args.clicks} clicks; served "
          f"{'like GitHub Pages (no COOP/COEP: the isolation reload counts)' if args.pages_like else 'by serve.py'}"
          f"{', uncompressed' if args.no_gzip else ', gzip like GitHub Pages'}"
          f"{f', through a {args.link} link' if args.link else ''}\n")
    print(f"Site weight (manifest.json): {t['files']} files, {mb(t['bytes'])} MB raw, {mb(t['gzip_bytes'])} MB gzip")
    if baseline:
        print(f"Memory baseline: a page showing only the camera peaks at {baseline / 1e6:.0f} MB PSS (all processes)")
    ok = [r for r in runs if "error" not in r and not r["camera"]["error"]]
    for r in runs:
        if r not in ok:
            print(f"{r['setting']}: error {r.get('error') or r['camera']['error']}")
    for setting in dict.fromkeys(r["setting"] for r in ok):
        rs = [r for r in ok if r["setting"] == setting]
        print(f"\n== {setting}: EP {rs[0]['ep']['detector']}/{rs[0]['ep']['emotion']}, pipeline in the "
              f"{rs[0]['thread']} thread, {len(rs)} run(s); per run, then the median")
        head = (f"{'run':>4s} {'cold s':>6s} {'warm s':>6s} {'label s':>7s} {'FPS':>5s} {'dropped':>7s} "
                f"{'long tasks':>10s} {'main ms/frame':>13s} {'main CPU':>8s} {'click med/max ms':>16s} "
                f"{'wire MB':>7s} {'gzip MB':>7s} {'raw MB':>6s} {'peak PSS MB':>11s}")
        print(head)
        rows = []
        for i, r in enumerate(rs, 1):
            c = r["camera"]
            n_long = None if c["long_tasks"] is None else len(c["long_tasks"])
            cpu = c.get("main_cpu_ms_per_frame")
            row = [r["cold_ready_ms"] / 1000, r["warm_ready_ms"] / 1000, (r["first_label_ms"] or float("nan")) / 1000,
                   c["fps"], c["dropped"], n_long, c["main_busy_ms_per_frame"], cpu, med(c["click_ms"]),
                   max(c["click_ms"], default=None), r["wire_bytes"] / 1e6,
                   gzip_host_bytes(args.site, r["fetched_paths"]) / 1e6,
                   fetched_bytes(manifest, r["fetched_paths"]) / 1e6, c["peak_pss"] / 1e6]
            rows.append(row)
            print(f"{i:>4d} {row[0]:6.2f} {row[1]:6.2f} {row[2]:7.2f} {row[3]:5.1f} {row[4]:7d} {str(row[5]):>10s} "
                  f"{row[6]:13.2f} {row[7] if row[7] is not None else float('nan'):8.2f} "
                  f"{row[8]:7.0f} / {row[9] or float('nan'):<6.0f} {row[10]:7.1f} {row[11]:7.1f} {row[12]:6.1f} "
                  f"{row[13]:11.0f}")
        m = [med([row[k] for row in rows]) for k in range(len(rows[0]))]
        print(f"{'med':>4s} {m[0]:6.2f} {m[1]:6.2f} {m[2]:7.2f} {m[3]:5.1f} {m[4]:7.0f} {m[5]:>10.0f} {m[6]:13.2f} "
              f"{m[7]:8.2f} {m[8]:7.0f} / {m[9]:<6.0f} {m[10]:7.1f} {m[11]:7.1f} {m[12]:6.1f} {m[13]:11.0f}")
        if baseline:
            steady = med([r["camera"]["steady_pss"] for r in rs]) / 1e6
            print(f"the page's share of memory (peak PSS - camera-only baseline): {m[13] - baseline / 1e6:.0f} MB; in "
                  f"the run's second half (median PSS {steady:.0f} MB): {steady - baseline / 1e6:.0f} MB")
        longest = max((t["ms"] for r in rs for t in (r["camera"]["long_tasks"] or [])), default=0)
        print(f"longest main-thread task during the camera runs: {longest:.0f} ms")
        print(f"\n{'stage':10s} {'median ms':>9s} {'p90 ms':>7s}   (median over runs of each run's median / p90)")
        for k in STAGES:
            if all(k in r["camera"]["stages"] for r in rs):
                print(f"{k:10s} {med([r['camera']['stages'][k]['median'] for r in rs]):9.1f} "
                      f"{med([r['camera']['stages'][k]['p90'] for r in rs]):7.1f}")
        shares = [r["camera"]["detector_share"] for r in rs if r["camera"].get("detector_share") is not None]
        if shares:
            split = {ran: [r["camera"]["total_by_detector"][ran] for r in rs if ran in r["camera"]["total_by_detector"]]
                     for ran in ("ran", "kept")}
            print(f"face detector ran on {100 * med(shares):.0f}% of the frames (median over runs); total per frame "
                  f"where it ran {med(split['ran']) if split['ran'] else float('nan'):.1f} ms, where the last "
                  f"detection's faces were kept {med(split['kept']) if split['kept'] else float('nan'):.1f} ms")
        print_phases(rs)
    print("\ncold / warm s = first navigation -> ready, first and second visit; label s = first navigation -> the first"
          " labelled face, the camera started as soon as the page allows; wire MB = bytes the server sent for the cold"
          " visit; gzip MB / raw MB = the same files from a host that gzips like GitHub Pages / one that does not;"
          " peak PSS = all the browser's processes during the camera run (the largest of its once-a-second samples; on a"
          " first visit it falls in the first second after ready, ~200 MB above what stays: the second half's median is"
          " printed under the table).")
    print("grab = taking the frame on the main thread; capture = reading its pixels (engine); pre = detector_input +"
          " decode_faces + emotion_input (Python; preDetector: detector_input alone); post = update (Python); detect / classify = onnxruntime-web;"
          " total = the engine's whole frame; roundTrip = grab -> result on the main thread (the frame's lag)."
          " main ms/frame = Chromium's main-thread TaskDuration over the camera run / frames processed;"
          " main CPU = the page's main thread's CPU time (/proc) over the same run / frames processed (on a busy"
          " machine TaskDuration also counts the time the thread waits for a core; CPU time does not).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=ROOT / "dist/site")
    parser.add_argument("--no-build", action="store_true", help="do not build the site when it is missing")
    parser.add_argument("--eps", default="wasm", help="comma list of: wasm, auto, webgl, webgpu")
    parser.add_argument("--runs", type=int, default=3, help="fresh-browser runs per EP setting (median printed)")
    parser.add_argument("--query", default="", help="extra page parameters, e.g. worker=0")
    parser.add_argument("--camera-seconds", type=float, default=20.0)
    parser.add_argument("--clicks", type=int, default=8, help="clicks during the camera run (response latency)")
    parser.add_argument("--cpu-cores", type=float, help="hold every browser to this CPU quota (phone-cpu; e.g. 0.5)")
    parser.add_argument("--link", help="serve through an emulated network link, e.g. 20mbit,40ms")
    parser.add_argument("--no-gzip", action="store_true", help="serve every file uncompressed")
    parser.add_argument("--baseline-seconds", type=float, default=10.0,
                        help="the camera-only page's run, for the memory baseline (0: skip)")
    parser.add_argument("--soak-seconds", type=float, default=0.0, help="add a long camera run (e.g. 600)")
    parser.add_argument("--soak-interval", type=float, default=30.0, help="seconds between soak samples")
    parser.add_argument("--webgpu-flag", action="store_true", help="launch Chromium with --enable-unsafe-webgpu")
    parser.add_argument("--browser-arg", action="append", default=[],
                        help="extra Chromium switch for a diagnosis, e.g. --browser-arg=--js-flags=--no-wasm-tier-up")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for a page to get ready")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--pages-like", action="store_true",
                        help="serve like GitHub Pages (no COOP/COEP): the service worker's isolation reload counts")
    parser.add_argument("--trace", type=Path, help="first run: trace a camera run into this file and print where "
                        "the main thread's time went")
    parser.add_argument("--trace-seconds", type=float, default=5.0)
    parser.add_argument("--camera-detector", choices=("short_range", "full_range"), default="short_range",
                        help="the page's camera face detector setting")
    parser.add_argument("--camera-clip", choices=("still", "moving"), default="still",
                        help="the fake webcam: a still face (HAPPY, the detector runs on every third frame) or the "
                        "same face swinging left and right (HAPPY_MOVING, up to 4 px a frame)")
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
    video = videos.y4m(videos.HAPPY) if args.camera_clip == "still" else videos.y4m(videos.HAPPY_MOVING, frames=60)
    from serve import Link

    native_ms = native_ms_per_face(args.site, manifest)
    server, url = serve_dir(args.site, pages_like=args.pages_like, gzip=not args.no_gzip,
                            link=Link.parse(args.link) if args.link else None)
    runs, soak_samples, baseline = [], [], None
    try:
        with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
            args.executable = chromium_under_quota(args.cpu_cores, Path(folder)) if args.cpu_cores else None
            if args.baseline_seconds > 0 and args.runs > 0:
                print("running the camera-only page (memory baseline) ...", flush=True)
                baseline = bare_camera_pss(p, video, args, args.baseline_seconds)
            for setting in settings:
                for i in range(args.runs):
                    print(f"running {setting} ({i + 1}/{args.runs}) ...", flush=True)
                    runs.append(bench_one(p, server, url, setting, args.query, video, args, first=not runs))
            if args.soak_seconds > 0:
                soak_samples = soak(p, url, settings[0], args.query, video, args)
    finally:
        server.shutdown()
        server.server_close()
    if runs:
        print_report(manifest, runs, args, video, native_ms, baseline)
        traced = next((r for r in runs if "trace" in r), None)
        if traced:
            print_trace(traced["trace"], args.trace)
    if args.json:
        args.json.write_text(json.dumps({"manifest_totals": manifest["totals"], "groups": manifest["groups"],
                                         "machine": machine_line(), "native_ms_per_face": native_ms,
                                         "baseline_pss": baseline, "runs": runs, "soak": soak_samples}, indent=1))
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
