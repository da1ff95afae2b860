"""End to end in the other two browser engines: Firefox (Debian's firefox-esr, WebDriver BiDi) and WebKit (WebKitGTK's
MiniBrowser under Xvfb, WebKitWebDriver), the engines of Firefox users and of every browser on an iPhone.

In each engine: the page gets ready in a worker and reports its isolation (cross-origin isolated through the service
worker, onnxruntime's WASM threads: one on WebKit); the group photo gives the faces and labels Chromium gives (Chromium
runs the same photo in this module); the camera (the engine's fake device, no face in it) runs without error; the page
reloads and works with its server gone; and a copy served without COOP/COEP under a sub-path, as GitHub Pages serves
it, gets isolated through the service worker and works. No console errors (WebKitGTK's driver passes no console on:
there the page's own errors are watched, see fixtures/engines.py).

Run: pytest -m browser tests/test_e2e_engines.py -s   (-s prints each engine's load and capture times)
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import pytest

from emotion_runtime.postprocess import box_iou_xywh
from fixtures import engines
from fixtures.e2e import (
    LOAD_TIMEOUT_MS,
    SETTLED_STATUS,
    app_server,  # noqa: F401 - fixture
    group_photo,  # noqa: F401 - fixture
    launch_app_browser,
    need_real_model,
    open_app,
    run_group_photo,
    serve_dir,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def stop_server(server) -> None:
    server.shutdown()
    server.server_close()


# Where a page that never settles stands (a rare Firefox hang in the full suite left nothing to go on).
STUCK_STATE = """() => ({
  url: location.href, state: window.__emotionApp?.state ?? null, reloading: Boolean(window.emotionLensReloading),
  controlled: Boolean(navigator.serviceWorker?.controller), isolated: window.crossOriginIsolated,
  phases: performance.getEntriesByType('measure').filter((m) => m.name.startsWith('lens:'))
    .map((m) => `${m.name.slice(5)} ${Math.round(m.startTime)}+${Math.round(m.duration)}`),
})"""


def open_in(browser: engines.EngineBrowser, url: str) -> dict:
    browser.goto(url)
    try:
        return browser.wait_for(SETTLED_STATUS, LOAD_TIMEOUT_MS / 1000)
    except TimeoutError as err:
        try:
            where = browser.call(STUCK_STATE, timeout_s=10)
        except Exception as why:  # noqa: BLE001 - the page itself may be what is stuck
            where = f"(not readable: {why})"
        raise TimeoutError(f"{err}; the page: {where}") from err


def upload_in(browser: engines.EngineBrowser, photo: Path) -> dict:
    """Choose `photo` in the page's photo input; the status once the page has analysed it or shown an error."""
    before = browser.call("() => window.__emotionApp.history.length")
    browser.set_file("#upload", photo)
    return browser.wait_for(f"""() => (window.__emotionApp.error !== null || (window.__emotionApp.state === 'still'
      && window.__emotionApp.history.length > {before})) && window.__emotionApp.snapshot()""", 120)


def assert_same_faces(faces: list[dict], reference: list[dict], engine: str) -> None:
    """Each of Chromium's faces is found again (box overlap >= 0.9) with the same label and near-equal probabilities."""
    assert len(faces) == len(reference), (engine, [f["box"] for f in faces])
    for ref in reference:
        best = max(faces, key=lambda f: box_iou_xywh(f["box"], ref["box"]))
        assert box_iou_xywh(best["box"], ref["box"]) >= 0.9, (engine, best["box"], ref["box"])
        assert best["label"] == ref["label"], (engine, best["label"], ref["label"], best["probs"], ref["probs"])
        assert max(abs(p - q) for p, q in zip(best["probs"], ref["probs"])) <= 0.02, (engine, best["probs"], ref["probs"])


@pytest.fixture(scope="module")
def chromium_group(playwright_driver, app_server, group_photo):  # noqa: F811
    """The group photo's faces as Chromium gives them: what the other engines must give."""
    browser = launch_app_browser(playwright_driver, fake_device=False, fake_ui=False)
    try:
        page = browser.new_page()
        s = open_app(page, app_server.url, "?ep=wasm")
        assert s["state"] == "ready", s["error"]
        return run_group_photo(page, group_photo)["lastResults"]
    finally:
        browser.close()


@pytest.fixture(scope="module", params=engines.ENGINES)
def engine(request, app_server):  # noqa: F811
    """One engine's browser with the app loaded from a server of its own (the offline test stops it)."""
    problem = engines.engine_problem(request.param)
    if problem:
        pytest.skip(f"{request.param}: {problem}")
    server, url = serve_dir(app_server.dir)
    browser = engines.launch(request.param)
    held = {"server": server}
    try:
        loaded = open_in(browser, url)
        print(f"\n{engines.engine_version(request.param)}: ready in {loaded['loadMs']} ms (navigation start -> ready)")
        yield {"name": request.param, "browser": browser, "url": url, "load": loaded, "held": held}
    finally:
        browser.close()
        if held["server"] is not None:
            stop_server(held["server"])


def test_ready_in_a_worker_and_reports_isolation(engine):
    s, browser = engine["load"], engine["browser"]
    assert s["state"] == "ready", s["error"]
    assert s["thread"] == "worker" and s["inference"] == "worker", (s["thread"], s["threadReason"])
    assert s["ep"] == {"detector": "wasm", "emotion": "wasm"}
    # Isolated through the service worker's headers, and onnxruntime single-threaded on WebKit (iPhones' failure).
    assert s["runtime"]["crossOriginIsolated"] is True
    assert browser.call("() => window.crossOriginIsolated") is True
    threads = s["runtime"]["wasmThreads"]
    assert threads == 1 if engine["name"] == "webkit" else threads >= 1, s["runtime"]
    shown = browser.call("() => document.querySelector('#ro-runtime').textContent")
    assert shown == f"on · {threads} WASM thread{'' if threads == 1 else 's'}", shown
    assert "Ready" in browser.call("() => document.querySelector('#load-status').textContent")
    assert browser.errors() == []


def test_load_order(engine):
    """Chromium and Firefox start Python and the models side by side; WebKit, where JavaScriptCore starts two
    WebAssembly runtimes faster one after the other, the models first, with Python's files downloading meanwhile
    (runtime.prefetchPython), so a slow network is not paid twice."""
    spans = engine["browser"].call("""() => Object.fromEntries(performance.getEntriesByType('measure')
      .filter((m) => m.name.startsWith('lens:')).map((m) => [m.name.slice(5), [m.startTime, m.startTime + m.duration]]))""")
    python, models = spans["python branch"], spans["models branch"]
    stdlib = spans["download vendor/pyodide/python_stdlib.zip.gz"]
    if engine["name"] == "webkit":
        assert python[0] >= models[1] - 1, spans  # 1 ms: the clocks' rounding
        assert stdlib[0] < models[1], spans
    else:
        assert python[0] < models[1] and models[0] < python[1], spans


def test_group_photo_as_in_chromium(engine, app_server, group_photo, chromium_group):  # noqa: F811
    need_real_model(app_server)
    browser = engine["browser"]
    browser.watch_errors()
    s = upload_in(browser, group_photo)
    assert s["error"] is None, s["error"]
    assert_same_faces(s["lastResults"], chromium_group, engine["name"])
    assert browser.errors() == []


def test_camera_runs(engine):
    """The engine's fake camera (a synthetic picture, no face) runs frame after frame without an error."""
    browser = engine["browser"]
    browser.watch_errors()
    browser.call("() => document.querySelector('#start-camera').click()")
    s = browser.wait_for("""() => (window.__emotionApp.frames >= 30 || window.__emotionApp.error !== null)
      && window.__emotionApp.snapshot()""", 120)
    assert s["error"] is None, s["error"]
    assert s["state"] == "running" and s["source"] == "camera"
    captures = [t["capture"] for t in s["history"][-20:] if "capture" in t]
    print(f"\n{engine['name']} camera: {s['fps']} FPS, capture median {statistics.median(captures):.1f} ms a frame "
          f"(no face in the fake picture)")
    browser.call("() => document.querySelector('#stop-camera').click()")
    browser.wait_for("() => window.__emotionApp.state === 'ready'", 30)
    assert browser.errors() == []


def test_reload_works_offline(engine, group_photo):  # noqa: F811
    browser, held = engine["browser"], engine["held"]
    stop_server(held["server"])
    held["server"] = None
    s = open_in(browser, engine["url"])
    assert s["state"] == "ready", s["error"]
    browser.watch_errors()
    s = upload_in(browser, group_photo)
    assert s["error"] is None and s["faceCount"] == 4, (s["error"], s["faceCount"])
    assert browser.errors() == []


@pytest.mark.parametrize("name", engines.ENGINES)
def test_served_without_headers_under_a_sub_path(name, app_server, group_photo):  # noqa: F811
    """As GitHub Pages serves a project site: no COOP/COEP, the site under /<repo>/. The service worker reloads the
    page once into isolation."""
    problem = engines.engine_problem(name)
    if problem:
        pytest.skip(f"{name}: {problem}")
    with tempfile.TemporaryDirectory(prefix="pages-") as root:
        Path(root, "repo").symlink_to(app_server.dir, target_is_directory=True)
        server, url = serve_dir(Path(root), pages_like=True)
        browser = engines.launch(name)
        try:
            s = open_in(browser, url + "repo/")
            assert s["state"] == "ready", s["error"]
            assert browser.call("() => window.crossOriginIsolated") is True
            assert s["runtime"]["crossOriginIsolated"] is True
            browser.watch_errors()
            s = upload_in(browser, group_photo)
            assert s["error"] is None and s["faceCount"] == 4, (s["error"], s["faceCount"])
            assert browser.errors() == []
        finally:
            browser.close()
            stop_server(server)


# In the page: the frames (BGRA, as Firefox's camera hands them out) through an engine resampling with numpy and one
# resampling in the browser; each frame's faces from both.
BOTH_RESAMPLERS = """async ({ frames, w, h }) => {
  const { createEmotionLens } = await import('../js/emotion-lens.js');
  const out = { numpy: [], browser: [] };
  for (const resample of ['numpy', 'browser']) {
    const lens = createEmotionLens({ resample: { video: resample, image: resample }, smoothing: { mode: 'none', k: 1 },
      executionProviders: ['wasm'], detectEvery: 1, warmup: false });
    await lens.load();
    for (const b64 of frames) {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const r = await lens.detect(new VideoFrame(bytes, { format: 'BGRA', codedWidth: w, codedHeight: h, timestamp: 0 }));
      out[resample].push(r.faces.map((f) => ({ box: f.box, label: f.label, probs: f.raw_probs })));
    }
    lens.dispose();
  }
  return out;
}"""


def test_firefox_rgb_camera_frames_are_resampled_like_numpy(app_server):  # noqa: F811
    """Firefox's canvas ignores imageSmoothingQuality, so its 5x downscale into the detector's square aliased: boxes
    off by up to 10 px from numpy's (IoU 0.69 on a face of the three-face frame). The engine draws from halved copies
    of the frame there; the boxes and labels of Firefox's RGB camera frames now follow the numpy path's."""
    import base64

    import numpy as np
    from PIL import Image

    from fixtures import videos

    problem = engines.engine_problem("firefox") or videos.tools_problem()
    if problem:
        pytest.skip(problem)
    need_real_model(app_server)
    frames = []
    for clip, scale in ((videos.TRIO, 1.0), (videos.GROUP, 1.0), (videos.HAPPY, 0.6)):
        picture = Image.open(videos.still_png(clip)).convert("RGB")
        w, h = picture.size
        frame = np.full((h, w, 3), 110, np.uint8)  # the picture shrunk into the top-left corner of a grey frame
        small = np.asarray(picture.resize((int(w * scale), int(h * scale)), Image.LANCZOS))
        frame[:small.shape[0], :small.shape[1]] = small
        bgra = np.dstack([frame[..., 2], frame[..., 1], frame[..., 0], np.full((h, w), 255, np.uint8)])
        frames.append(base64.b64encode(bgra.tobytes()).decode())
    server, url = serve_dir(app_server.dir)
    try:
        with engines.launch("firefox") as browser:
            browser.goto(url + "example/")
            got = browser.call(BOTH_RESAMPLERS, {"frames": frames, "w": videos.WIDTH, "h": videos.HEIGHT}, timeout_s=300)
            assert browser.errors() == []
    finally:
        stop_server(server)
    for i, (by_numpy, by_browser) in enumerate(zip(got["numpy"], got["browser"])):
        assert len(by_browser) == len(by_numpy) > 0, (i, by_numpy, by_browser)
        for face in by_numpy:
            best = max(by_browser, key=lambda f: box_iou_xywh(f["box"], face["box"]))
            assert box_iou_xywh(best["box"], face["box"]) >= 0.85, (i, face["box"], best["box"])
            assert best["label"] == face["label"], (i, face["label"], best["label"])
