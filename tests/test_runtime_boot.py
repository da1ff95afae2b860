"""The browser bootstrap in real headless Chromium: web/js/runtime.js starts Pyodide + numpy + emotion_runtime
from the built site, web/js/inference.js runs the face detector through the EP fallback chain, and the numbers
match CPython (numpy + onnxruntime) on the same input.

The harness page is tests/fixtures/boot/ (served at <site>/__test__/); boot_check.py is the code run on both sides.
Timings are printed (pytest -s) for the report; nothing asserts on speed.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from browser_fixtures import BOOT_PAGES, WEBGPU_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FRAME = (96, 160)  # h, w of the synthetic frame: letterboxed into the detector's 128 x 128
DETECTOR_DIMS = [1, 128, 128, 3]
EPS = ("webgpu", "webgl", "wasm")


def _boot_check():
    spec = importlib.util.spec_from_file_location("boot_check", BOOT_PAGES / "boot_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cpython_reference(site_server) -> dict:
    """Same computation in CPython; the detector run by onnxruntime's CPU EP on the site's own model file."""
    import onnxruntime as ort

    det, probs = _boot_check().compute(*FRAME)
    session = ort.InferenceSession(str(site_server.dir / "models" / "face_detector.onnx"),
                                   providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: det.reshape(DETECTOR_DIMS)})
    names = [o.name for o in session.get_outputs()]
    return {"detIn": det, "probs": probs, "outputs": dict(zip(names, outputs))}


def _open_boot_page(context, url: str, page_name: str = "boot.html"):
    page = context.new_page()
    page.goto(url + "__test__/" + page_name)
    page.wait_for_function("() => document.getElementById('status')?.textContent === 'ready'", timeout=30_000)
    return page


def _boot(page, **options) -> dict:
    return page.evaluate("(o) => window.bootTest(o)", options)


def _report(label: str, result: dict) -> None:
    t = result["timings"]
    print(f"\n[{label}] ep={result['ep']} python cold start {t['totalMs']:.0f} ms "
          f"(pyodide {t['pyodideMs']:.0f}, numpy {t['numpyMs']:.0f}, runtime {t['runtimeMs']:.0f}); "
          f"session create {result['createMs']:.0f} ms + warm-up {result['warmupMs']:.0f} ms; "
          f"first real run {result['inferMs']:.0f} ms; threads {result['ort']['wasmThreads']}")
    for a in result["attempts"]:
        print(f"    {a['ep']:6s} ok={a['ok']!s:5s} {a['ms']:7.0f} ms {a.get('reason', '')}")


def _assert_matches_cpython(result: dict, reference: dict, atol: float) -> None:
    det = np.asarray(result["detIn"], np.float32)
    np.testing.assert_allclose(det, reference["detIn"], rtol=0, atol=1e-6,
                               err_msg="detector_input differs between Pyodide and CPython")
    np.testing.assert_allclose(np.asarray(result["probs"], np.float32), reference["probs"], rtol=0, atol=1e-6)
    assert set(result["outputs"]) == set(reference["outputs"])
    for name, expected in reference["outputs"].items():
        got = result["outputs"][name]
        assert list(got["dims"]) == list(expected.shape), name
        np.testing.assert_allclose(np.asarray(got["data"], np.float32).reshape(expected.shape), expected,
                                   rtol=1e-3, atol=atol, err_msg=f"{name} on {result['ep']}")


@pytest.fixture(scope="module")
def webgpu_page(site_server, playwright_driver):
    """One page with WebGPU enabled (SwiftShader adapter in headless): Python boots once for all EP tests."""
    import tempfile

    from browser_fixtures import CHROMIUM, CHROMIUM_ARGS

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        context = playwright_driver.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, *WEBGPU_ARGS])
        try:
            yield _open_boot_page(context, site_server.url)
        finally:
            context.close()


def test_default_chain_in_headless_chromium(site_server, browser_context, cpython_reference):
    """No GPU flags: the chain skips what is unavailable or software-emulated and says why, then runs."""
    context = browser_context()
    page = _open_boot_page(context, site_server.url)
    result = _boot(page)
    _report("default flags", result)

    attempts = result["attempts"]
    assert [a["ep"] for a in attempts] == list(EPS[: len(attempts)]), "tried out of order"
    assert attempts[-1]["ok"] and attempts[-1]["ep"] == result["ep"]
    for skipped in attempts[:-1]:
        assert not skipped["ok"] and skipped["reason"], skipped
    assert result["progress"] == ["python", "numpy", "runtime", "ready"]
    assert result["runtimeVersion"] == result["manifestVersions"]["emotion_runtime"]
    assert result["numpyVersion"] == result["manifestVersions"]["numpy"]
    # Trimmed to what the runtime imports: linalg (and ma) stay, fft and random are not shipped; linalg's LAPACK
    # kernels are a placeholder that names what is missing.
    assert result["numpyModules"][:4] == [True, False, False, True]
    assert "numpy.linalg (det) is not available here" in result["numpyModules"][4]
    assert result["pythonFlags"] == {"optimize": 2, "docstrings": [False, False]}
    assert result["runtimeCompiledInPage"] == [], "emotion_runtime compiled in the page, not loaded from its pycs"
    assert result["ort"]["crossOriginIsolated"] is True, "serve.py's COOP/COEP should isolate the page"
    _assert_matches_cpython(result, cpython_reference, atol=1e-3)
    # The standard library arrives as its gzipped copy (build_site.precompressed), not as the zip itself.
    stdlib = [u for u in context.requested_urls if "/python_stdlib.zip" in u]
    assert stdlib and all(u.endswith("/vendor/pyodide/python_stdlib.zip.gz") for u in stdlib), stdlib

    foreign = [u for u in context.requested_urls if not u.startswith(site_server.url) and not u.startswith("data:")]
    assert foreign == [], f"requests left the site's origin: {foreign}"


@pytest.mark.parametrize("ep", EPS)
def test_each_execution_provider_matches_cpython(ep, webgpu_page, cpython_reference):
    """Each EP on its own (software GPUs allowed), same numbers as onnxruntime on the CPU."""
    result = _boot(webgpu_page, preferred=[ep], allowSoftwareGpu=True)
    _report(f"{ep} only, --enable-unsafe-webgpu", result)
    (attempt,) = result["attempts"]
    assert attempt["ok"], attempt
    assert result["ep"] == ep
    # GPU backends compute in float32 with other kernels (and reduction orders): looser than wasm.
    _assert_matches_cpython(result, cpython_reference, atol=1e-3 if ep == "wasm" else 2e-2)


def test_webgpu_flag_chain_prefers_wasm_over_software_gpu(webgpu_page):
    """With --enable-unsafe-webgpu headless Chromium has a SwiftShader adapter: software, so WASM is chosen."""
    result = _boot(webgpu_page)
    _report("default chain, --enable-unsafe-webgpu", result)
    first = result["attempts"][0]
    assert first["ep"] == "webgpu"
    if first["ok"]:
        pytest.skip("this machine has a hardware WebGPU adapter")
    assert "software" in first["reason"] or "adapter" in first["reason"], first


def test_csp_without_wasm_unsafe_eval_fails_fast_with_a_message(site_server, browser_context):
    page = _open_boot_page(browser_context(), site_server.url, "boot_nowasm.html")
    message = page.evaluate("window.bootError('python')")
    assert message is not None, "Pyodide should not start without 'wasm-unsafe-eval'"
    assert "wasm-unsafe-eval" in message


def test_tampered_model_is_rejected_naming_the_file(site_server, browser_context):
    context = browser_context(service_workers="block")  # page.route cannot see what the service worker answers
    page = _open_boot_page(context, site_server.url)
    original = (site_server.dir / "models" / "face_detector.onnx").read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF  # same size, one byte flipped
    asked = []
    # The page downloads the gzipped copy (build_site.precompressed); served as the plain file (as a host that adds
    # Content-Encoding: gzip hands it over) or as gzip, a flipped byte is caught all the same.
    def serve(body: bytes):
        def handler(route):
            asked.append(route.request.url)
            route.fulfill(status=200, body=body, headers={"Content-Type": "application/gzip"})
        return handler

    for body in (bytes(tampered), gzip.compress(bytes(tampered)), gzip.compress(original)[:-9]):
        page.route("**/models/face_detector.onnx*", serve(body))
        message = page.evaluate("window.bootError('models/face_detector.onnx')")
        assert message is not None
        assert "models/face_detector.onnx" in message and "integrity check" in message
        page.unroute("**/models/face_detector.onnx*")
    assert asked and all(u.endswith("/models/face_detector.onnx.gz") for u in asked), asked
    assert page.evaluate("window.bootError('manifest.json')") is not None, "manifest.json is not in itself"
    # The untouched file passes.
    assert page.evaluate("window.bootError('models/face_detector.onnx')") is None


def test_tampered_standard_library_is_rejected_naming_the_file(site_server, browser_context):
    """Pyodide would start on any zip it is handed; the page checks the library's sha256 first and says which file
    failed, instead of a Python that cannot import."""
    context = browser_context(service_workers="block")
    page = _open_boot_page(context, site_server.url)
    original = (site_server.dir / "vendor/pyodide/python_stdlib.zip").read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    page.route("**/vendor/pyodide/python_stdlib.zip*", lambda route: route.fulfill(
        status=200, body=gzip.compress(bytes(tampered)), headers={"Content-Type": "application/gzip"}))
    message = page.evaluate("window.bootError('python')")
    assert message is not None and "vendor/pyodide/python_stdlib.zip" in message and "integrity check" in message


def test_manifest_served_matches_build(site_server, browser_context):
    page = _open_boot_page(browser_context(), site_server.url)
    served = page.evaluate("fetch('../manifest.json').then((r) => r.json())")
    assert served == json.loads((site_server.dir / "manifest.json").read_text())
    assert Path(site_server.dir / served["runtime_wheel"]).is_file()


@pytest.fixture(scope="module")
def pages_like_server(site_server):
    """The same site served like GitHub Pages serves it: right MIME types, no COOP/COEP/CSP headers."""
    from fixtures.e2e import serve_dir

    server, url = serve_dir(site_server.dir, pages_like=True)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def test_github_pages_mode_service_worker_isolates_and_runtime_boots(pages_like_server, browser_context):
    """Without headers the site's service worker (sw.js, at the root) reloads the page once, cross-origin isolated."""
    context = browser_context()
    page = context.new_page()
    page.goto(pages_like_server + "__test__/boot.html")
    page.wait_for_function("() => window.crossOriginIsolated === true && document.getElementById('status')?.textContent "
                           "=== 'ready'", timeout=30_000)
    result = _boot(page, preferred=["wasm"])
    _report("GitHub Pages mode (service worker)", result)
    assert result["ep"] == "wasm" and result["ort"]["crossOriginIsolated"] is True
    assert result["ort"]["wasmThreads"] >= 1
    assert result["runtimeVersion"] == result["manifestVersions"]["emotion_runtime"]


def test_sessions_asked_for_at_once_are_created_one_at_a_time(site_server, browser_context):
    """A page without workers asks for its three sessions at once on its own thread; creating them overlapped there
    and, under CPU load, a warm-up failed ("Cannot read properties of null (reading '3')"). Each creation (and its
    warm-up) now starts only when the one before has ended."""
    page = _open_boot_page(browser_context(), site_server.url)
    spans = page.evaluate("() => window.sessionOverlap()")
    assert len(spans) == 3 and all(s["ended"] is not None for s in spans), spans
    for before, after in zip(spans, spans[1:]):
        assert after["started"] >= before["ended"] - 1, spans  # 1 ms: the clocks' rounding


def test_a_backend_that_never_answers_gives_way_after_its_time_limit(site_server, browser_context):
    """Every EP has a time limit (inference.EP_TIME_LIMIT_MS): a hang (Safari 26's WebGPU has run away) moves the
    chain on to the next EP instead of leaving the page loading; here WebGL's model file never arrives."""
    page = _open_boot_page(browser_context(), site_server.url)
    result = page.evaluate("() => window.hangingBackend(1500)")
    assert result["ep"] == "wasm", result
    webgl = result["attempts"][0]
    assert webgl["ep"] == "webgl" and not webgl["ok"] and webgl["reason"] == "no answer within 1.5 s", result
    assert 1500 <= webgl["ms"] < 10_000


SAFARI_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Version/18.1 Mobile/15E148 Safari/604.1")


@pytest.mark.parametrize("user_agent, threads", [(None, 3), (SAFARI_UA, 1)])
def test_onnxruntime_runs_single_threaded_on_webkit(site_server, browser_context, user_agent, threads):
    """On an isolated 4-core device onnxruntime takes 3 threads, except on WebKit (Safari, every iOS browser), whose
    threaded WebAssembly memory has failed with "Out of memory": one thread there."""
    context = browser_context(**({"user_agent": user_agent} if user_agent else {}))
    context.add_init_script("Object.defineProperty(Navigator.prototype, 'hardwareConcurrency', { get: () => 4 });")
    page = _open_boot_page(context, site_server.url)
    assert page.evaluate("() => crossOriginIsolated") is True
    assert page.evaluate("() => window.ortThreads()") == threads
