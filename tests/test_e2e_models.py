"""End to end in headless Chromium: choosing the emotion model (manifest.json's catalog, models.emotion).

The site under test is a copy of web/ with one more model folder written by this module into its temporary copy
(never committed): the default FER+ network with its labels renamed and reversed, marked as a test fixture in its
sidecar, so the test does not depend on which other models ship. Its classes are not real; what is tested is the plumbing: the
page lists every catalog entry, switching loads (and sha256-checks) the other folder's files without reloading
Python or the face detector, shows the other label set, survives a failed switch, and is remembered.
Run: pytest -m browser tests/test_e2e_models.py
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from fixtures import videos
from fixtures.e2e import (
    SHIPPED_MODELS,
    build_site_copy,
    launch_app_browser,
    open_app,
    serve_dir,
    status,
    upload,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIXTURE_ID = "test-fixture.reversed"


@pytest.fixture(scope="module")
def two_model_site(tmp_path_factory):
    from browser_fixtures import default_model_dir, site_problem

    problem = site_problem()
    if problem:
        pytest.skip(problem)
    source = default_model_dir()  # the network the fixture reuses, and the model that must stay the default
    if source is None:
        pytest.skip("web/models/emotion/ holds no trained model to copy")

    def add_fixture_model(web):
        folder = web / "models" / "emotion" / FIXTURE_ID
        folder.mkdir()
        for name in ("model.onnx", "model.webgl.onnx"):
            if (source / name).is_file():
                shutil.copyfile(source / name, folder / name)
        sidecar = json.loads((source / "model.json").read_text())
        sidecar.update({
            "id": FIXTURE_ID,
            "title": "TEST FIXTURE (labels renamed and reversed)",
            "dataset": "test-fixture",
            "labels": [f"fixture_{label}" for label in reversed(sidecar["labels"])],
            "test_fixture": True,
            "note": f"Written by tests/test_e2e_models.py into a temporary site copy: the network of {source.name} with "
                    "its labels renamed and reversed. Its classes mean nothing.",
        })
        (folder / "model.json").write_text(json.dumps(sidecar))

    out = tmp_path_factory.mktemp("two-models") / "site"
    manifest = build_site_copy(out, add_fixture_model)
    server, url = serve_dir(out)
    try:
        yield {"url": url, "dir": out, "manifest": manifest, "source": source.name}
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def app(playwright_driver, two_model_site):
    # page.route (the failed switch below) cannot see requests the site's service worker answers.
    browser = launch_app_browser(playwright_driver, service_workers="block")
    page = browser.new_page()
    s = open_app(page, two_model_site["url"], "?ep=wasm")
    assert s["state"] == "ready", s["error"]
    yield {"browser": browser, "page": page, **two_model_site}
    browser.close()


def options(page) -> list[str]:
    return page.eval_on_selector_all("#model-select option", "(os) => os.map((o) => o.value)")


def card_labels(page) -> list[str]:
    return page.eval_on_selector_all("#face-list li.face-card:first-child dt", "(dts) => dts.map((d) => d.textContent)")


def switch_to(page, model_id: str) -> dict:
    page.select_option("#model-select", model_id)
    wait_for(page, f"() => window.__emotionApp.model?.id === {json.dumps(model_id)} || "
                   "window.__emotionApp.error !== null")
    wait_for(page, "() => !document.getElementById('model-select').disabled")
    return status(page)


def test_selector_lists_the_whole_catalog(app):
    page, catalog = app["page"], app["manifest"]["models"]["emotion"]
    shipped = sorted(p.parent.name for p in SHIPPED_MODELS.glob("*/model.onnx"))
    assert [m["id"] for m in catalog if m["id"] in shipped] == shipped and len(catalog) == len(shipped) + 1  # + the fixture
    assert options(page) == [m["id"] for m in catalog]
    s = status(page)
    assert [m["id"] for m in s["models"]] == [m["id"] for m in catalog]
    default = app["manifest"]["models"]["emotion_default"]
    assert default == app["source"]  # the FER+ model stays the default
    assert page.input_value("#model-select") == default and s["model"]["id"] == default
    assert page.is_enabled("#model-select")


def test_a_failed_switch_keeps_the_current_model(app):
    page = app["page"]
    before = status(page)

    def corrupt(route):
        response = route.fetch()
        body = bytearray(response.body())
        body[len(body) // 2] ^= 0xFF
        route.fulfill(response=response, body=bytes(body))

    pattern = f"**/models/emotion/{FIXTURE_ID}/model.onnx*"  # the file or its gzipped copy, whichever is fetched
    page.route(pattern, corrupt)
    try:
        page.select_option("#model-select", FIXTURE_ID)
        wait_for(page, "() => window.__emotionApp.error !== null")
        wait_for(page, "() => !document.getElementById('model-select').disabled")
    finally:
        page.unroute(pattern)
    s = status(page)
    assert s["error"]["code"] == "integrity", s["error"]
    assert f"models/emotion/{FIXTURE_ID}/model.onnx" in page.inner_text("#error")
    assert s["model"] == before["model"] and s["labels"] == before["labels"]
    assert page.input_value("#model-select") == before["model"]["id"]
    # Still usable, with the same model.
    s = upload(page, videos.still_png(videos.HAPPY))
    assert s["error"] is None and s["faceCount"] == 1
    shown = card_labels(page)
    assert len(shown) == len(before["labels"]) and not [label for label in shown if label.startswith("Fixture")]


def test_switching_loads_the_other_files_and_labels_without_reloading_python(app):
    page, browser, site = app["page"], app["browser"], app["dir"]
    first = status(page)
    upload(page, videos.still_png(videos.HAPPY))
    labels_before = card_labels(page)
    n = len(browser.requests)
    s = switch_to(page, FIXTURE_ID)
    assert s["error"] is None, s["error"]
    fetched = [u.split("?")[0].removeprefix(app["url"]) for u in browser.requests[n:]]
    model = f"models/emotion/{FIXTURE_ID}/model.onnx"
    assert app["manifest"]["files"][model].get("gzip", model) in fetched  # its gzipped copy where the build made one
    assert f"models/emotion/{FIXTURE_ID}/model.json" in fetched
    # Nothing else was loaded again: not Pyodide, not numpy, not the runtime wheel, not the face detector.
    assert not [u for u in fetched if u.startswith(("vendor/", "wheels/")) or "face_detector" in u], fetched
    # What was fetched is what the build lists (the page checked the same sha256 before using it).
    meta = f"models/emotion/{FIXTURE_ID}/model.json"
    assert hashlib.sha256((site / meta).read_bytes()).hexdigest() == app["manifest"]["files"][meta]["sha256"]
    fixture_sidecar = json.loads((site / meta).read_text())
    assert s["labels"] == fixture_sidecar["labels"] and s["labels"] != first["labels"]
    assert s["model"] == {"id": FIXTURE_ID, "title": fixture_sidecar["title"], "dataset": "test-fixture"}
    assert s["ep"] == first["ep"]
    assert "TEST FIXTURE" in page.inner_text("#model-status")
    # The same photo now shows the fixture's label set.
    s = upload(page, videos.still_png(videos.HAPPY))
    assert s["faceCount"] == 1 and len(s["lastResults"][0]["probs"]) == len(fixture_sidecar["labels"])
    shown = card_labels(page)
    assert shown != labels_before and all(label.startswith("Fixture ") for label in shown), shown


def test_the_choice_is_remembered(app):
    page = app["page"]
    if status(page)["model"]["id"] != FIXTURE_ID:  # the switching test above leaves it so; alone, choose it here
        assert switch_to(page, FIXTURE_ID)["error"] is None
    s = open_app(page, app["url"], "?ep=wasm")  # a fresh load of the page
    assert s["state"] == "ready", s["error"]
    assert s["model"]["id"] == FIXTURE_ID
    assert page.input_value("#model-select") == FIXTURE_ID
    # And back to the default, which is remembered too.
    default = app["manifest"]["models"]["emotion_default"]
    assert switch_to(page, default)["model"]["id"] == default
    s = open_app(page, app["url"], "?ep=wasm")
    assert s["model"]["id"] == default
    # A link may name the model (?model=<id>) without changing what the visitor chose.
    s = open_app(page, app["url"], f"?ep=wasm&model={FIXTURE_ID}")
    assert s["state"] == "ready" and s["model"]["id"] == FIXTURE_ID and page.input_value("#model-select") == FIXTURE_ID
    assert open_app(page, app["url"], "?ep=wasm")["model"]["id"] == default


def test_no_request_leaves_the_site(app):
    assert [u for u in app["browser"].requests if not u.startswith((app["url"], "data:", "blob:"))] == []
