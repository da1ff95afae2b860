"""End to end in headless Chromium emulating a phone (390 x 844 portrait, 844 x 390 landscape, touch, mobile
viewport): layout facts and screenshots at both sizes, touch targets, the camera paused while the page is hidden,
and the front/back camera switch (two fake cameras).

Run: pytest -m browser tests/test_e2e_mobile.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixtures import videos
from fixtures.e2e import (
    app_server,  # noqa: F401 - fixture
    happy_video,  # noqa: F401 - fixture
    launch_app_browser,
    open_app,
    status,
    wait_for,
    wait_frames,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(os.environ.get("E2E_SCREENSHOT_DIR", videos.CACHE))
PORTRAIT = {"width": 390, "height": 844}
LANDSCAPE = {"width": 844, "height": 390}
PHONE = {"viewport": PORTRAIT, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
MIN_TARGET = 44  # px, WCAG 2.5.5 / Apple HIG
CONTROLS = ["start-camera", "stop-camera", "upload-label", "record-start", "record-stop", "download-csv",
            "download-json", "session-clear"]


@pytest.fixture(scope="module")
def phone(playwright_driver, app_server, happy_video):  # noqa: F811
    browser = launch_app_browser(playwright_driver, fake_video=happy_video, context_options=PHONE)
    page = browser.new_page()
    s = open_app(page, app_server.url)
    assert s["state"] == "ready", s["error"]
    yield {"browser": browser, "page": page}
    browser.close()


LAYOUT_JS = """(ids) => {
    const vw = window.innerWidth, vh = window.innerHeight;
    const box = (el) => { const r = el.getBoundingClientRect();
        return { left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height }; };
    const shown = (el) => el.offsetParent !== null && getComputedStyle(el).visibility !== 'hidden';
    const video = document.getElementById('video');
    video.scrollIntoView({ block: 'center' });
    const out = { vw, vh, scrollWidth: document.documentElement.scrollWidth, video: box(video),
                  overlay: box(document.getElementById('overlay')), controls: {}, small: [] };
    for (const id of ids) {
        const el = document.getElementById(id);
        el.scrollIntoView({ block: 'center' });
        out.controls[id] = { ...box(el), shown: shown(el) };
    }
    // Every visible control on the page, not only the listed ones.
    for (const el of document.querySelectorAll('button, select, input, summary, label.button, a[href]')) {
        if (!shown(el) || el.classList.contains('visually-hidden') || el.classList.contains('skip-link')) continue;
        const r = el.getBoundingClientRect();
        if (r.width < %d || r.height < %d) out.small.push([el.id || el.tagName, r.width, r.height]);
    }
    return out;
}""" % (MIN_TARGET, MIN_TARGET)


def check_layout(page, name: str) -> dict:
    page.evaluate("() => { document.querySelector('.settings').open = true; }")  # its fields count too
    info = page.evaluate(LAYOUT_JS, CONTROLS)
    vw, vh = info["vw"], info["vh"]
    assert info["scrollWidth"] <= vw, f"horizontal overflow: page is {info['scrollWidth']} px wide in a {vw} px view"
    v, o = info["video"], info["overlay"]
    assert v["width"] > 0.5 * min(vw, 2 * vh) and v["height"] > 100, v
    assert v["left"] >= 0 and v["right"] <= vw + 0.5, v
    assert v["top"] >= -0.5 and v["bottom"] <= vh + 0.5, f"the camera picture does not fit on the screen: {v} in {vw}x{vh}"
    for k in ("left", "top", "width", "height"):
        assert abs(v[k] - o[k]) <= 1, (k, v, o)
    for cid, c in info["controls"].items():
        assert c["shown"], f"{cid} is not shown"
        assert c["left"] >= 0 and c["right"] <= vw + 0.5, (cid, c)
        assert c["top"] >= 0 and c["bottom"] <= vh, (cid, c)  # scrolled into view, it fits on screen
        assert c["width"] >= MIN_TARGET and c["height"] >= MIN_TARGET, (cid, c)
    assert info["small"] == [], f"touch targets under {MIN_TARGET} px: {info['small']}"
    page.evaluate("() => { document.querySelector('.settings').open = false; window.scrollTo(0, 0); }")
    page.screenshot(path=str(SHOTS / f"e2e-mobile-{name}.png"), full_page=True)
    return info


def test_portrait_layout(phone):
    page = phone["page"]
    page.tap("#start-camera")
    s = wait_frames(page, 15)
    assert s["error"] is None and s["faceCount"] == 1, s
    wait_for(page, "() => document.querySelector('#face-list canvas.timeline') !== null")
    info = check_layout(page, "portrait")
    assert info["vw"] == PORTRAIT["width"] and info["vh"] == PORTRAIT["height"]
    # One column: the face card under the picture, as wide as the screen allows.
    card = page.locator("#face-list li.face-card").first.bounding_box()
    assert card["x"] >= 0 and card["x"] + card["width"] <= PORTRAIT["width"]


def test_landscape_layout(phone):
    page = phone["page"]
    page.set_viewport_size(LANDSCAPE)
    page.wait_for_timeout(500)
    info = check_layout(page, "landscape")
    assert info["vw"] == LANDSCAPE["width"] and info["vh"] == LANDSCAPE["height"]
    # Picture and faces side by side.
    faces = page.locator(".faces").bounding_box()
    assert faces["x"] >= info["video"]["right"] - 1, (faces, info["video"])
    assert status(page)["faceCount"] == 1
    page.set_viewport_size(PORTRAIT)


def test_controls_work_by_touch(phone):
    page = phone["page"]
    page.tap("#record-start")
    wait_for(page, "() => document.getElementById('session').dataset.recording === 'true'")
    page.tap("#record-stop")
    wait_for(page, "() => document.getElementById('session').dataset.recording === 'false'")
    page.tap("#session-clear")
    assert page.get_attribute("#session", "data-frames") == "0"


def test_one_camera_means_no_switch_button(phone):
    page = phone["page"]
    assert status(page)["state"] == "running"
    assert page.evaluate("async () => (await navigator.mediaDevices.enumerateDevices())"
                         ".filter((d) => d.kind === 'videoinput').length") == 1
    assert not page.is_visible("#switch-camera")


# Headless Chromium under Playwright keeps every page 'visible' (new tab in front, window minimised,
# Page.setWebLifecycleState frozen/active were tried: visibilityState stays 'visible', no event fires). So the
# page's own visibilitychange path is driven by what the browser would report: document.visibilityState
# overridden, and the event dispatched on document. The camera, stream and frame loop are the real ones.
SET_VISIBILITY = """(state) => {
    if (state === 'visible') { delete document.visibilityState; delete document.hidden; }
    else {
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    }
    document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_camera_pauses_while_hidden_and_resumes(phone):
    page = phone["page"]
    assert status(page)["state"] == "running"
    wait_frames(page, status(page)["frames"] + 3)
    page.evaluate("() => { window.__testTrack = document.getElementById('video').srcObject.getVideoTracks()[0]; }")
    page.evaluate(SET_VISIBILITY, "hidden")
    wait_for(page, "() => window.__emotionApp.state === 'paused'")
    assert page.evaluate("() => window.__testTrack.readyState") == "ended", "the camera was not released"
    assert page.evaluate("() => document.getElementById('video').srcObject") is None
    assert "paused" in page.inner_text("#load-status").lower()
    before = status(page)
    page.wait_for_timeout(1500)
    after = status(page)
    assert (after["frames"], after["dropped"]) == (before["frames"], before["dropped"]), "frames processed while hidden"
    assert after["state"] == "paused" and after["error"] is None

    page.evaluate(SET_VISIBILITY, "visible")
    wait_for(page, "() => (window.__emotionApp.state === 'running' && window.__emotionApp.frames >= 3) || "
                   "window.__emotionApp.error !== null")
    s = status(page)
    assert s["state"] == "running" and s["error"] is None, s
    assert page.evaluate("() => document.getElementById('video').srcObject.getVideoTracks()[0].readyState") == "live"
    s = wait_frames(page, s["frames"] + 5)
    assert s["faceCount"] == 1
    page.evaluate("() => { delete window.__testTrack; }")


def test_stop_while_paused_is_not_resumed(phone):
    """Stopping for good (Stop camera) forgets the pause: coming back later does not restart the camera."""
    page = phone["page"]
    page.tap("#stop-camera")
    wait_for(page, "() => window.__emotionApp.state === 'ready'")
    page.evaluate(SET_VISIBILITY, "hidden")
    page.evaluate(SET_VISIBILITY, "visible")
    page.wait_for_timeout(800)
    assert status(page)["state"] == "ready"
    assert page.evaluate("() => document.getElementById('video').srcObject") is None


@pytest.fixture(scope="module")
def two_cameras(playwright_driver, app_server):  # noqa: F811
    """Chromium's fake capture with two devices (test patterns, no face): a phone's front and back camera."""
    browser = launch_app_browser(playwright_driver, "--use-fake-device-for-media-stream=device-count=2",
                                 fake_device=False, context_options=PHONE)
    page = browser.new_page()
    s = open_app(page, app_server.url)
    assert s["state"] == "ready", s["error"]
    yield page
    browser.close()


def current_device(page) -> str:
    return page.evaluate("() => document.getElementById('video').srcObject.getVideoTracks()[0].getSettings().deviceId")


def test_switch_camera(two_cameras):
    page = two_cameras
    assert not page.is_visible("#switch-camera")  # camera off: nothing to switch
    page.tap("#start-camera")
    wait_frames(page, 2)
    wait_for(page, "() => !document.getElementById('switch-camera').hidden")
    box = page.locator("#switch-camera").bounding_box()
    assert box["width"] >= MIN_TARGET and box["height"] >= MIN_TARGET
    first = current_device(page)
    page.evaluate("() => { window.__testTrack = document.getElementById('video').srcObject.getVideoTracks()[0]; }")
    page.tap("#switch-camera")
    wait_for(page, f"() => window.__emotionApp.state === 'running' && "
                   f"document.getElementById('video').srcObject?.getVideoTracks()[0].getSettings().deviceId !== "
                   f"'{first}'")
    second = current_device(page)
    assert second and second != first
    assert page.evaluate("() => window.__testTrack.readyState") == "ended", "the first camera was not released"
    s = wait_frames(page, status(page)["frames"] + 3)
    assert s["state"] == "running" and s["error"] is None
    page.tap("#switch-camera")
    wait_for(page, f"() => window.__emotionApp.state === 'running' && "
                   f"document.getElementById('video').srcObject?.getVideoTracks()[0].getSettings().deviceId === "
                   f"'{first}'")
    page.tap("#stop-camera")
    wait_for(page, "() => window.__emotionApp.state === 'ready'")
    assert not page.is_visible("#switch-camera")
