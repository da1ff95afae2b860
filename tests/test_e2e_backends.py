"""End to end in headless Chromium: execution-provider fallback, and failures while loading.

- the default chain (WebGPU -> WebGL -> WASM) without WebGPU, a forced ?ep=wasm run, and a run with
  --enable-unsafe-webgpu: each reports its EP, finds the faces, and all agree on the boxes;
- a model file that fails its sha256 check, a runtime that never arrives (timeout), a browser without
  WebAssembly: each gives its message, and the first two recover with "Retry loading".
Run: pytest -m browser tests/test_e2e_backends.py
"""

from __future__ import annotations

import base64

import pytest

from fixtures import videos
from fixtures.e2e import (
    PACED_FRAMES,
    app_server,  # noqa: F401 - fixture
    group_photo,  # noqa: F401 - fixture
    launch_app_browser,
    open_app,
    run_group_photo,
    status,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EP_TEXT = {"webgpu": "WebGPU", "webgl": "WebGL", "wasm": "WASM"}
RESULTS: dict[str, list[dict]] = {}  # EP run name -> faces found on the group photo


def check_ep_readout(page, ep: dict) -> None:
    text = page.inner_text("#ro-ep")
    for which in ("detector", "emotion"):
        assert EP_TEXT[ep[which]] in text, (text, ep)


def test_default_chain_without_webgpu(playwright_driver, app_server, group_photo):  # noqa: F811
    browser = launch_app_browser(playwright_driver)
    try:
        page = browser.new_page()
        s = open_app(page, app_server.url)
        assert s["state"] == "ready", s["error"]
        attempts = s["epAttempts"]["detector"]
        assert [a["ep"] for a in attempts][0] == "webgpu" and not attempts[0]["ok"], attempts
        assert s["ep"]["detector"] in ("webgl", "wasm")
        assert attempts[-1]["ok"] and attempts[-1]["ep"] == s["ep"]["detector"]
        check_ep_readout(page, s["ep"])
        RESULTS[f"default:{s['ep']['detector']}"] = run_group_photo(page, group_photo)["lastResults"]
    finally:
        browser.close()


def test_forced_wasm(playwright_driver, app_server, group_photo):  # noqa: F811
    browser = launch_app_browser(playwright_driver)
    try:
        page = browser.new_page()
        fetched = []
        page.on("request", lambda r: fetched.append(r.url))
        s = open_app(page, app_server.url, "?ep=wasm")
        assert s["state"] == "ready", s["error"]
        assert s["ep"] == {"detector": "wasm", "emotion": "wasm"}
        assert s["epFullRange"] is None  # its session starts with the first photo
        assert not [u for u in fetched if "model.webgl.onnx" in u or "ort.webgl" in u]  # WebGL files only for WebGL
        assert page.inner_text("#ro-ep") == "WASM"
        s = run_group_photo(page, group_photo)
        assert s["epFullRange"] == "wasm"
        RESULTS["wasm"] = s["lastResults"]
    finally:
        browser.close()


def test_software_webgl_when_allowed(playwright_driver, app_server, group_photo):  # noqa: F811
    """?softgpu=1 lets the chain use SwiftShader's WebGL (skipped by default: WASM is faster there)."""
    browser = launch_app_browser(playwright_driver)
    try:
        page = browser.new_page()
        s = open_app(page, app_server.url, "?softgpu=1")
        assert s["state"] == "ready", s["error"]
        has_webgl = page.evaluate("() => !!document.createElement('canvas').getContext('webgl2')")
        if not has_webgl:
            pytest.skip("no WebGL in this Chromium")
        assert s["ep"]["detector"] == "webgl", s["epAttempts"]
        # WebGL takes only fixed shapes: the emotion model runs from its batch-1 copy, one face per run.
        assert s["ep"]["emotion"] == "webgl", s["epAttempts"]["emotion"]
        check_ep_readout(page, s["ep"])
        webgl_fetches = []
        page.on("request", lambda r: webgl_fetches.append(r.url) if "model.webgl.onnx" in r.url else None)
        s = run_group_photo(page, group_photo)
        RESULTS["softgpu:webgl"] = s["lastResults"]  # 4 faces: 4 batch-1 runs
        assert not webgl_fetches  # fetched once while loading, not per frame
        assert s["epFullRange"] == "wasm"  # kept off WebGL: its boxes were up to 6 px off there (app-boot.js)
    finally:
        browser.close()


@pytest.fixture(scope="module")
def int8_site(tmp_path_factory):
    """A site whose default emotion model ships as a large model does (model_export.export, over SHIP_MAX_BYTES):
    int8 weights in model.onnx and no WebGL copy, since WebGL's Conv misreads weights the graph computes."""
    import hashlib
    import json

    import onnx

    from browser_fixtures import default_model_dir, site_problem
    from fixtures.e2e import build_site_copy, serve_dir
    from model_export.export import NO_WEBGL_INT8
    from model_export.onnx_edit import int8_weights

    problem = site_problem()
    source = default_model_dir()
    if problem or source is None:
        pytest.skip(problem or "web/models/emotion/ holds no trained model")

    def ship_int8(web):
        folder = web / "models" / "emotion" / source.name
        model = folder / "model.onnx"
        onnx.save(int8_weights(onnx.load(str(source / "model.onnx"))), str(model))
        (folder / "model.webgl.onnx").unlink()
        sidecar = json.loads((source / "model.json").read_text())
        sidecar.update(bytes=model.stat().st_size, sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
                       weights={"dtype": "int8"})
        sidecar["variants"]["webgl"] = {"shipped": False, "reason": NO_WEBGL_INT8}
        (folder / "model.json").write_text(json.dumps(sidecar))

    site = tmp_path_factory.mktemp("int8-site") / "site"
    build_site_copy(site, ship_int8)
    server, url = serve_dir(site)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def test_a_model_without_a_webgl_copy_runs_on_wasm_beside_a_webgl_detector(playwright_driver, int8_site, group_photo):  # noqa: F811
    browser = launch_app_browser(playwright_driver)
    try:
        page = browser.new_page()
        s = open_app(page, int8_site, "?softgpu=1")
        assert s["state"] == "ready", s["error"]
        if not page.evaluate("() => !!document.createElement('canvas').getContext('webgl2')"):
            pytest.skip("no WebGL in this Chromium")
        assert s["ep"]["detector"] == "webgl", s["epAttempts"]
        assert s["ep"]["emotion"] == "wasm" and "webgl" not in [a["ep"] for a in s["epAttempts"]["emotion"]]
        check_ep_readout(page, s["ep"])
        faces = run_group_photo(page, group_photo)["lastResults"]
        fp32 = RESULTS.get("softgpu:webgl")  # the same faces through the fp32 model, from the test above
        if fp32:
            for a, b in zip(sorted(fp32, key=lambda f: f["box"][0]), sorted(faces, key=lambda f: f["box"][0])):
                assert max(abs(p - q) for p, q in zip(a["probs"], b["probs"])) < 0.05
    finally:
        browser.close()


def test_webgpu_flag(playwright_driver, app_server, group_photo):  # noqa: F811
    browser = launch_app_browser(playwright_driver, "--enable-unsafe-webgpu")
    try:
        page = browser.new_page()
        has_adapter = None
        s = open_app(page, app_server.url)
        assert s["state"] == "ready", s["error"]
        attempts = s["epAttempts"]["detector"]
        assert attempts[0]["ep"] == "webgpu"
        has_adapter = page.evaluate("async () => !!(navigator.gpu && await navigator.gpu.requestAdapter())")
        if not has_adapter:
            pytest.skip(f"no WebGPU adapter even with --enable-unsafe-webgpu: {attempts[0]}")
        if not attempts[0]["ok"]:
            # Headless here the adapter is SwiftShader: skipped on purpose, and the page says why.
            assert "software" in attempts[0]["reason"], attempts[0]
            assert s["ep"]["detector"] == "wasm"
        # Allowed to use the software adapter, the detector must really run on WebGPU and give the same faces.
        s = open_app(page, app_server.url, "?softgpu=1")
        assert s["state"] == "ready", s["error"]
        assert s["ep"]["detector"] == "webgpu", s["epAttempts"]
        check_ep_readout(page, s["ep"])
        s = run_group_photo(page, group_photo)
        assert s["epFullRange"] == "webgpu"
        RESULTS["webgpu"] = s["lastResults"]
        # The emotion model on WebGPU, with camera frames over budget: the face alone (its int64 views input) there too.
        png = base64.b64encode(videos.still_png(videos.HAPPY).read_bytes()).decode()
        got = page.evaluate(PACED_FRAMES, {"adapt": {"budgetMs": 1}, "frames": 40, "png": png, "eps": ["webgpu"],
                                           "allowSoftwareGpu": True})
        assert got["ep"]["emotion"] == "webgpu" and got["pace"]["views"] == 1 and got["last"]["views"] == 1, got
        assert got["last"]["labels"] == got["photo"]["labels"] == ["happiness"] and got["photo"]["views"] == 2, got
    finally:
        browser.close()


def test_backends_agree():
    if len(RESULTS) < 2:
        pytest.skip("needs at least two EP runs from this module")
    runs = list(RESULTS.items())
    base_name, base = runs[0]
    for name, faces in runs[1:]:
        assert len(faces) == len(base), (base_name, name)
        for a, b in zip(sorted(base, key=lambda f: f["box"][0]), sorted(faces, key=lambda f: f["box"][0])):
            assert max(abs(p - q) for p, q in zip(a["box"], b["box"])) < 3.0, (base_name, name, a["box"], b["box"])
            assert max(abs(p - q) for p, q in zip(a["probs"], b["probs"])) < 0.05, (base_name, name)


# ---------------------------------------------------------------- loading failures

def test_model_failing_its_hash_check(playwright_driver, app_server, group_photo):  # noqa: F811
    browser = launch_app_browser(playwright_driver, service_workers="block")  # page.route below
    try:
        page = browser.new_page()

        def corrupt(route):
            response = route.fetch()
            body = bytearray(response.body())
            body[len(body) // 2] ^= 0xFF  # one flipped byte, same size
            route.fulfill(response=response, body=bytes(body))

        page.route("**/models/face_detector.onnx*", corrupt)  # the page fetches its gzipped copy
        s = open_app(page, app_server.url)
        assert s["state"] == "error"
        assert s["error"]["code"] == "integrity"
        text = page.inner_text("#error")
        assert "integrity check" in text and "face_detector.onnx" in text
        assert page.get_attribute('#load-steps li[data-step="verify"]', "data-state") == "failed"
        assert page.is_visible("#retry-load")
        assert not page.is_enabled("#start-camera")
        # The file is fine again: Retry recovers without a reload.
        page.unroute("**/models/face_detector.onnx*")
        page.click("#retry-load")
        wait_for(page, "() => ['ready', 'error'].includes(window.__emotionApp.state)")
        assert status(page)["state"] == "ready", status(page)["error"]
        assert not page.is_visible("#error")
        run_group_photo(page, group_photo)
    finally:
        browser.close()


def test_runtime_load_timeout(playwright_driver, app_server):  # noqa: F811
    browser = launch_app_browser(playwright_driver, service_workers="block")  # page.route below
    try:
        page = browser.new_page()
        page.route("**/vendor/pyodide/pyodide.asm.wasm", lambda route: None)  # never answered
        s = open_app(page, app_server.url, "?loadTimeout=3000")
        assert s["state"] == "error"
        assert s["error"]["code"] == "timeout", s["error"]
        assert "did not start within 3 s" in page.inner_text("#error")
        assert page.is_visible("#retry-load")
        assert page.get_attribute('#load-steps li[data-step="python"]', "data-state") == "failed"
    finally:
        browser.close()


@pytest.mark.parametrize("missing, script", [
    ("WebAssembly SIMD", "WebAssembly.validate = () => false;"),  # the check compiles a one-instruction SIMD module
    ("OffscreenCanvas", "delete globalThis.OffscreenCanvas;"),
])
def test_an_older_browser_is_told_which_versions_work(playwright_driver, app_server, missing, script):  # noqa: F811
    browser = launch_app_browser(playwright_driver)
    try:
        page = browser.new_page()
        page.add_init_script(script)
        s = open_app(page, app_server.url)
        assert s["state"] == "error" and s["error"]["code"] == "unsupported"
        text = page.inner_text("#error")
        assert f"lacks {missing}" in text and "Safari 16.4" in text and "Firefox 105" in text, text
    finally:
        browser.close()


def test_browser_without_webassembly(playwright_driver, app_server):  # noqa: F811
    browser = launch_app_browser(playwright_driver)
    try:
        page = browser.new_page()
        page.add_init_script("delete globalThis.WebAssembly;")
        s = open_app(page, app_server.url)
        assert s["state"] == "error" and s["error"]["code"] == "unsupported"
        assert "Unsupported browser" in page.inner_text("#error")
        # The rest of the page is still there.
        assert page.is_visible("#start-camera") and page.is_visible(".privacy")
    finally:
        browser.close()
