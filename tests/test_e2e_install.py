"""The page as an installable app, in headless Chromium: the web app manifest parses (Chromium's own parser, over
CDP), its icons load and are the sizes it declares, Chromium reports no installability error, and the service
worker keeps the manifest and icons for offline use.

Run: pytest -m browser tests/test_e2e_install.py
"""

from __future__ import annotations

import io
import json
import urllib.request

import pytest
from PIL import Image

from fixtures.e2e import (
    app_server,  # noqa: F401 - fixture
    launch_app_browser,
    open_app,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MANIFEST = "manifest.webmanifest"


@pytest.fixture(scope="module")
def app(playwright_driver, app_server):  # noqa: F811
    browser = launch_app_browser(playwright_driver, fake_device=False, fake_ui=False)
    page = browser.new_page()
    s = open_app(page, app_server.url)
    assert s["state"] == "ready", s["error"]
    cdp = browser.context.new_cdp_session(page)
    yield {"browser": browser, "page": page, "cdp": cdp, "url": app_server.url}
    browser.close()


def served_manifest(url: str) -> dict:
    with urllib.request.urlopen(url + MANIFEST, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/manifest+json"
        return json.loads(response.read())


def test_manifest_is_linked_and_parses(app):
    page, cdp = app["page"], app["cdp"]
    href = page.evaluate("() => document.querySelector('link[rel=manifest]').href")
    assert href == app["url"] + MANIFEST
    result = cdp.send("Page.getAppManifest")
    assert result["url"] == href
    assert result["errors"] == [], result["errors"]
    parsed = result.get("manifest") or {}
    # CDP spells the display mode as Chromium's enum ("kStandalone").
    assert parsed.get("name") == "Emotion Lens" and str(parsed.get("display")).lower().endswith("standalone"), parsed
    assert parsed.get("startUrl") == app["url"] and parsed.get("scope") == app["url"], parsed
    raw = json.loads(result["data"])
    assert raw == served_manifest(app["url"])


def test_icons_load_at_their_declared_sizes(app):
    page = app["page"]
    manifest = served_manifest(app["url"])
    purposes = {icon["purpose"] for icon in manifest["icons"]}
    assert purposes == {"any", "maskable"}
    sizes = {icon["sizes"] for icon in manifest["icons"] if icon["purpose"] == "any"}
    assert {"192x192", "512x512"} <= sizes
    for icon in manifest["icons"]:
        w, h = (int(v) for v in icon["sizes"].split("x"))
        assert icon["type"] == "image/png"
        # In the page (CSP img-src 'self'), as the browser would load it.
        loaded = page.evaluate("""async (src) => {
            const img = new Image();
            img.src = src;
            await img.decode();
            return [img.naturalWidth, img.naturalHeight];
        }""", icon["src"])
        assert loaded == [w, h], icon
        with urllib.request.urlopen(app["url"] + icon["src"], timeout=10) as response:
            image = Image.open(io.BytesIO(response.read()))
            assert image.format == "PNG" and image.size == (w, h)
            if icon["purpose"] == "maskable":
                # Maskable icons are cropped by the platform: no transparent pixel anywhere.
                assert image.convert("RGBA").getextrema()[3] == (255, 255), icon


def test_chromium_finds_no_installability_error(app):
    errors = app["cdp"].send("Page.getInstallabilityErrors")["installabilityErrors"]
    assert errors == [], errors


def test_service_worker_keeps_manifest_and_icons_offline(app):
    page, browser = app["page"], app["browser"]
    wait_for(page, "() => navigator.serviceWorker.controller !== null", 30_000)
    files = [MANIFEST] + [icon["src"] for icon in served_manifest(app["url"])["icons"]]
    cached = page.evaluate("""async (files) => {
        const cache = await caches.open('emotion-lens-v1');
        return Promise.all(files.map(async (f) => Boolean(await cache.match(new URL(f, location.href).href))));
    }""", files)
    assert cached == [True] * len(files), dict(zip(files, cached))
    browser.context.set_offline(True)
    try:
        statuses = page.evaluate("""async (files) => Promise.all(files.map(async (f) => {
            const r = await fetch(f, { cache: 'no-store' });
            return [r.status, (await r.arrayBuffer()).byteLength];
        }))""", files)
    finally:
        browser.context.set_offline(False)
    assert all(status == 200 and size > 0 for status, size in statuses), dict(zip(files, statuses))
