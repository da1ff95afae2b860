"""End to end in headless Chromium: where the engine (web/js/emotion-lens.js) runs its pipeline.

- by default in a module Web Worker, and the page says so;
- in a browser that cannot start a worker, the page says why and runs the same pipeline on the main thread, with
  the same faces and probabilities as the worker;
- ?worker=0 (a demo-page override) runs it on the main thread too.
Run: pytest -m browser tests/test_e2e_engine.py
"""

from __future__ import annotations

import pytest

from fixtures import videos
from fixtures.e2e import (
    app_server,  # noqa: F401 - fixture
    group_photo,  # noqa: F401 - fixture
    launch_app_browser,
    open_app,
    run_group_photo,
    wait_frames,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RESULTS: dict[str, list[dict]] = {}  # thread -> faces of the group photo


def by_x(faces: list[dict]) -> list[dict]:
    return sorted(faces, key=lambda f: f["box"][0])


def test_pipeline_runs_in_a_worker(playwright_driver, app_server, group_photo):  # noqa: F811
    browser = launch_app_browser(playwright_driver)
    try:
        page = browser.new_page()
        s = open_app(page, app_server.url, "?ep=wasm")
        assert s["state"] == "ready", s["error"]
        assert s["thread"] == "worker" and s["threadReason"] is None
        assert "background thread" in page.inner_text("#load-status")
        # Python and onnxruntime live in the worker: the page's own global scope has neither.
        assert page.evaluate("() => typeof globalThis.loadPyodide === 'undefined' && !('pyodide' in globalThis)")
        RESULTS["worker"] = run_group_photo(page, group_photo)["lastResults"]
    finally:
        browser.close()


def test_without_workers_the_same_pipeline_runs_on_the_main_thread(playwright_driver, app_server,  # noqa: F811
                                                                     group_photo):
    browser = launch_app_browser(playwright_driver, fake_video=videos.y4m(videos.HAPPY))
    try:
        page = browser.new_page()
        page.add_init_script("delete globalThis.Worker;")  # a browser without (usable) Web Workers
        s = open_app(page, app_server.url, "?ep=wasm")
        assert s["state"] == "ready", s["error"]
        assert s["thread"] == "main" and "no Web Workers" in s["threadReason"]
        text = page.inner_text("#load-status")
        assert "main thread" in text and "no Web Workers" in text, text
        RESULTS["main"] = run_group_photo(page, group_photo)["lastResults"]
        page.click("#start-camera")
        s = wait_frames(page, 10)
        assert s["error"] is None and s["faceCount"] == 1
    finally:
        browser.close()


def test_worker_and_main_thread_agree():
    if len(RESULTS) < 2:
        pytest.skip("needs both runs of this module")
    for a, b in zip(by_x(RESULTS["worker"]), by_x(RESULTS["main"]), strict=True):
        assert a["box"] == b["box"]
        assert max(abs(p - q) for p, q in zip(a["probs"], b["probs"])) < 1e-3


def test_worker_option_off(playwright_driver, app_server):  # noqa: F811
    browser = launch_app_browser(playwright_driver)
    try:
        page = browser.new_page()
        s = open_app(page, app_server.url, "?ep=wasm&worker=0")
        assert s["state"] == "ready", s["error"]
        assert s["thread"] == "main" and "worker option" in s["threadReason"]
    finally:
        browser.close()
