"""End to end in headless Chromium: the service worker (web/sw.js).

- after one online visit, the page reloads and analyses a photo with its server gone (offline use);
- served like GitHub Pages (no COOP/COEP headers), the app reloads itself once through the worker and ends up
  cross-origin isolated (WASM threads), without a reload loop.
Run: pytest -m browser tests/test_e2e_offline.py
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from fixtures.e2e import (
    app_server,  # noqa: F401 - fixture
    group_photo,  # noqa: F401 - fixture
    launch_app_browser,
    open_app,
    run_group_photo,
    serve_dir,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def stop_server(server) -> None:
    server.shutdown()
    server.server_close()


def test_reload_works_offline_after_first_visit(playwright_driver, app_server, group_photo):  # noqa: F811
    server, url = serve_dir(app_server.dir)
    browser = launch_app_browser(playwright_driver)
    try:
        page = browser.new_page()
        s = open_app(page, url, "?ep=wasm")
        assert s["state"] == "ready", s["error"]
        assert page.evaluate("() => navigator.serviceWorker.controller !== null"), "the worker should control the page"
        stop_server(server)
        server = None
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url + "manifest.json", timeout=5)  # really offline
        s = open_app(page, url, "?ep=wasm")  # a fresh navigation, served by the worker alone
        assert s["state"] == "ready", (s["error"], browser.console[-10:])
        assert s["ep"] == {"detector": "wasm", "emotion": "wasm"}
        run_group_photo(page, group_photo)
    finally:
        browser.close()
        if server is not None:
            stop_server(server)


def test_github_pages_mode_reloads_once_into_isolation(playwright_driver, app_server, group_photo):  # noqa: F811
    server, url = serve_dir(app_server.dir, pages_like=True)
    browser = launch_app_browser(playwright_driver)
    try:
        page = browser.new_page()
        navigations = []
        page.on("framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None)
        s = open_app(page, url)
        assert s["state"] == "ready", s["error"]
        assert page.evaluate("() => window.crossOriginIsolated") is True
        assert len(navigations) == 2, navigations  # the first visit, then exactly one reload through the worker
        run_group_photo(page, group_photo)
    finally:
        browser.close()
        stop_server(server)


STORED_RUNTIME = """async () => {
  const manifest = await (await fetch('manifest.json')).json();
  const cache = await caches.open('emotion-lens-v1');
  const out = {};
  for (const path of Object.keys(manifest.files).filter((p) => p.startsWith('vendor/'))) {
    const stored = await cache.match(new URL(path, location.href).href);
    if (stored) out[path] = { sha: stored.headers.get('X-Emotion-Lens-Sha256'), expected: manifest.files[path].sha256 };
  }
  return out;
}"""


def test_runtime_is_stored_verified_and_a_stale_copy_is_replaced(playwright_driver, app_server):  # noqa: F811
    """The service worker keeps the runtime (vendor/) only with the sha256 manifest.json lists, answers from the cache
    while that still matches, and fetches again when it does not (a new deploy): the page never runs a stale runtime
    from the cache."""
    server, url = serve_dir(app_server.dir)
    browser = launch_app_browser(playwright_driver)
    try:
        page = browser.new_page()
        s = open_app(page, url, "?ep=wasm")
        assert s["state"] == "ready", s["error"]
        stored = page.evaluate(STORED_RUNTIME)
        for path in ("vendor/pyodide/pyodide.asm.wasm", "vendor/pyodide/python_stdlib.zip.gz",
                     "vendor/ort/ort-wasm-simd-threaded.wasm", "vendor/ort/ort.wasm.min.mjs"):
            assert path in stored, sorted(stored)
        assert all(v["sha"] == v["expected"] for v in stored.values()), stored
        # A copy left by another deploy (its sha256 is not this manifest's): replaced, not served.
        page.evaluate("""async () => {
          const cache = await caches.open('emotion-lens-v1');
          const url = new URL('vendor/pyodide/pyodide.mjs', location.href).href;
          await cache.put(url, new Response('throw new Error("stale runtime");', { headers: {
            'Content-Type': 'text/javascript', 'X-Emotion-Lens-Sha256': '0'.repeat(64) } }));
        }""")
        s = open_app(page, url, "?ep=wasm")
        assert s["state"] == "ready", (s["error"], browser.console[-10:])
        fresh = page.evaluate(STORED_RUNTIME)["vendor/pyodide/pyodide.mjs"]
        assert fresh["sha"] == fresh["expected"]
    finally:
        browser.close()
        stop_server(server)
