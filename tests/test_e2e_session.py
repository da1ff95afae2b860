"""End to end in headless Chromium: timelines, the expression summary, and recording with CSV / JSON export, on
the real page with a fake webcam showing one smiling face.

One browser and page for the module: ready -> camera (not recording: nothing kept) -> timeline canvas drawn ->
summary shares sum to 100% -> Record / Stop -> Download CSV and JSON (parsed back) -> no request after ready ->
Clear empties it all.
Run: pytest -m browser tests/test_e2e_session.py
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from emotion_runtime.labels import LabelMap
from fixtures.e2e import (
    app_server,  # noqa: F401 - fixture
    happy_video,  # noqa: F401 - fixture
    launch_app_browser,
    need_real_model,
    open_app,
    status,
    wait_for,
    wait_frames,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def cam(playwright_driver, app_server, happy_video):  # noqa: F811
    browser = launch_app_browser(playwright_driver, fake_video=happy_video)
    page = browser.new_page()
    load_status = open_app(page, app_server.url)
    assert load_status["state"] == "ready", load_status["error"]
    yield {"browser": browser, "page": page, "app": app_server, "ready_request_count": len(browser.requests),
           "downloads": {}}
    browser.close()


def panel(page) -> dict:
    return page.evaluate("""() => {
        const p = document.getElementById('session');
        const on = (id) => !document.getElementById(id).disabled;
        return { recording: p.dataset.recording === 'true', frames: Number(p.dataset.frames || 0),
                 record: on('record-start'), stop: on('record-stop'), csv: on('download-csv'),
                 json: on('download-json'), clear: on('session-clear'),
                 status: document.getElementById('record-status').textContent,
                 counts: document.getElementById('record-counts').textContent };
    }""")


def test_recording_is_off_until_the_user_starts_it(cam):
    page = cam["page"]
    p = panel(page)
    assert p["record"] and not p["stop"] and not p["csv"] and not p["json"] and not p["clear"], p
    assert not p["recording"] and p["frames"] == 0
    page.click("#start-camera")
    s = wait_frames(page, 20)
    assert s["error"] is None and s["faceCount"] == 1, s
    page.wait_for_timeout(1200)  # the panel refreshes its counts once a second
    p = panel(page)
    assert not p["recording"] and p["frames"] == 0 and not p["csv"], p
    assert "Nothing recorded" in p["counts"]


def test_timeline_is_drawn_in_the_face_card(cam):
    page = cam["page"]
    labels = status(page)["labels"]
    colours = LabelMap.from_list(labels).colours  # what the engine draws with (same Python code)
    wait_for(page, "() => Number(document.querySelector('#face-list canvas.timeline')?.dataset.samples) >= 20")
    info = page.evaluate("""() => {
        const c = document.querySelector('#face-list li.face-card canvas.timeline');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const colours = new Map();
        let drawn = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i + 3] === 0) continue;
            drawn += 1;
            if (d[i + 3] === 255) {
                const hex = '#' + [d[i], d[i + 1], d[i + 2]].map((v) => v.toString(16).padStart(2, '0')).join('');
                colours.set(hex, (colours.get(hex) || 0) + 1);
            }
        }
        const r = c.getBoundingClientRect();
        return { drawn, total: d.length / 4, colours: Object.fromEntries(colours), w: r.width, h: r.height,
                 label: c.getAttribute('aria-label'), samples: Number(c.dataset.samples) };
    }""")
    assert info["w"] > 100 and info["h"] > 40, info
    assert 0.005 * info["total"] < info["drawn"] < 0.9 * info["total"], info
    # Every class has its line (or legend swatch) in its own colour.
    missing = [c for c in colours if info["colours"].get(c.lower(), 0) < 10]
    assert missing == [], (missing, sorted(info["colours"].items(), key=lambda kv: -kv[1])[:12])
    assert "last minute" in info["label"]


def test_timeline_line_follows_the_top_class(cam):
    """The top class's line sits in the upper part of the plot (its probability is the largest)."""
    need_real_model(cam["app"])
    page = cam["page"]
    s = status(page)
    top = s["labels"].index(s["lastResults"][0]["label"])
    colour = LabelMap.from_list(s["labels"]).colours[top].lower()
    rows = page.evaluate("""(colour) => {
        const c = document.querySelector('#face-list canvas.timeline');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const want = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
        const ys = [];
        // Right half (recent samples), top 40% of the canvas: above the legend, in the plot's upper half.
        for (let y = 0; y < c.height * 0.4; y++) for (let x = Math.floor(c.width / 2); x < c.width; x++) {
            const i = (y * c.width + x) * 4;
            // Anti-aliased edges keep the colour and lose alpha (the canvas is transparent underneath).
            const near = [0, 1, 2].every((k) => Math.abs(d[i + k] - want[k]) <= 8);
            if (near && d[i + 3] >= 64) ys.push(y / c.height);
        }
        return ys;
    }""", colour)
    assert len(rows) > 5, "the top class's line is not in the upper part of the chart"


def test_summary_shares_sum_to_100_percent(cam):
    page = cam["page"]
    wait_for(page, "() => !document.getElementById('summary-table').hidden && "
                   "document.querySelectorAll('#summary-body tr').length >= 1")
    page.wait_for_timeout(1200)
    s = status(page)
    rows = page.evaluate("""() => [...document.querySelectorAll('#summary-body tr')].map((tr) => ({
        name: tr.querySelector('th').textContent,
        seen: parseFloat(tr.querySelector('td').textContent),
        shares: [...tr.querySelectorAll('td[data-share]')].map((td) => Number(td.dataset.share)),
        texts: [...tr.querySelectorAll('td[data-share]')].map((td) => td.textContent),
        top: tr.querySelector('td.top')?.cellIndex }))""")
    assert len(rows) == 1, rows
    (row,) = rows
    face_id = s["lastResults"][0]["id"]
    assert row["name"] == f"Face #{face_id}"
    assert row["seen"] > 0.5, row
    assert len(row["shares"]) == len(s["labels"])
    assert math.isclose(sum(row["shares"]), 1.0, abs_tol=1e-9), row
    assert all(t.endswith("%") for t in row["texts"])
    headers = page.eval_on_selector_all("#summary-head th", "ths => ths.map(t => t.textContent)")
    assert headers[:2] == ["Face", "Seen"] and len(headers) == 2 + len(s["labels"])
    if cam["app"].real_model:
        # One smiling face the whole time: "happy" holds most of the time, and is the bold cell.
        happy = [i for i, lab in enumerate(s["labels"]) if lab in ("happy", "happiness")][0]
        assert row["shares"][happy] > 0.5, row
        assert row["top"] == 2 + happy


def expected_model_id(app, s: dict) -> str:
    """The emotion model's id as the page knows it: from the status where it reports one, else the build's default."""
    if s.get("model"):
        return s["model"]["id"]
    return app.manifest["models"]["emotion_default"]


def record_for(page, ms: int) -> dict:
    page.click("#record-start")
    wait_for(page, "() => document.getElementById('session').dataset.recording === 'true'")
    assert not page.is_enabled("#record-start") and page.is_enabled("#record-stop")
    page.wait_for_timeout(ms)
    page.click("#record-stop")
    wait_for(page, "() => document.getElementById('session').dataset.recording === 'false'")
    return panel(page)


def test_record_then_download_csv_and_json(cam):
    page = cam["page"]
    p = record_for(page, 2500)
    assert p["frames"] > 5 and p["csv"] and p["json"] and p["clear"] and p["record"], p
    frames_after_stop = p["frames"]
    page.wait_for_timeout(600)
    assert panel(page)["frames"] == frames_after_stop, "frames recorded after Stop recording"
    for kind in ("csv", "json"):
        with page.expect_download() as info:
            page.click(f"#download-{kind}")
        download = info.value
        assert download.failure() is None
        assert download.suggested_filename.startswith("emotion-lens-")
        assert download.suggested_filename.endswith(f".{kind}")
        cam["downloads"][kind] = Path(download.path()).read_text(encoding="utf-8")
    assert "Saved emotion-lens-" in panel(page)["status"]

    s = status(page)
    labels = s["labels"]
    model_id = expected_model_id(cam["app"], s)
    site_hashes = {entry["sha256"] for entry in cam["app"].manifest["files"].values()}
    rows = list(csv.DictReader(io.StringIO(cam["downloads"]["csv"])))
    assert len(rows) >= frames_after_stop  # one face per frame here (a face-less frame also gives a row)
    expected_columns = (["time", "t_ms", "run", "face_id", "box_x", "box_y", "box_w", "box_h", "frame_w", "frame_h",
                         "top_label", "uncertain"] + [f"p_{lab}" for lab in labels] + [f"raw_{lab}" for lab in labels]
                        + ["model", "model_sha256"])
    assert list(rows[0].keys()) == expected_columns
    with_face = [r for r in rows if r["face_id"]]
    assert len(with_face) >= 0.8 * len(rows)
    times = [float(r["t_ms"]) for r in rows]
    assert times == sorted(times) and times[-1] - times[0] > 1500
    for r in with_face:
        probs = [float(r[f"p_{lab}"]) for lab in labels]
        raw = [float(r[f"raw_{lab}"]) for lab in labels]
        assert abs(sum(probs) - 1) < 2e-3 and abs(sum(raw) - 1) < 2e-3, r
        assert r["top_label"] == labels[probs.index(max(probs))]
        assert r["uncertain"] in ("0", "1"), r
        x, y, w, h = (float(r[k]) for k in ("box_x", "box_y", "box_w", "box_h"))
        assert 0 <= x and 0 <= y and x + w <= float(r["frame_w"]) + 1 and y + h <= float(r["frame_h"]) + 1
        assert r["model"] == model_id
        assert r["model_sha256"] == "" or r["model_sha256"] in site_hashes, r["model_sha256"]
        assert r["time"].endswith("Z") and r["run"] == "1"

    data = json.loads(cam["downloads"]["json"])
    assert data["format"] == "emotion-lens-session" and data["version"] == 1
    assert data["model"]["id"] == model_id
    assert data["model"].get("sha256", rows[0]["model_sha256"]) == rows[0]["model_sha256"]
    assert data["labels"] == labels and len(data["display"]) == len(labels)
    assert data["smoothing"] == s["smoothing"]
    assert len(data["frames"]) == frames_after_stop
    assert sum(max(1, len(f["faces"])) for f in data["frames"]) == len(rows)
    face = next(f for fr in data["frames"] for f in fr["faces"])
    assert set(face) == {"id", "box", "label", "uncertain", "probs", "raw_probs"} and len(face["probs"]) == len(labels)


def test_record_resumes_and_appends(cam):
    page = cam["page"]
    before = panel(page)["frames"]
    p = record_for(page, 800)
    assert p["frames"] > before, p


def test_no_request_and_no_csp_violation(cam):
    """Downloads are blob: URLs saved by the browser: nothing was fetched after ready, nothing was blocked."""
    browser = cam["browser"]
    assert cam["downloads"], "the download test did not run"
    after = browser.requests[cam["ready_request_count"]:]
    assert after == [], f"requests after ready: {after}"
    violations = [line for line in browser.console if "Content Security Policy" in line or "pageerror" in line]
    assert violations == []


def test_clear_empties_the_session(cam):
    page = cam["page"]
    page.click("#stop-camera")
    wait_for(page, "() => window.__emotionApp.state === 'ready'")
    assert panel(page)["frames"] > 0
    assert page.is_visible("#summary-table")
    page.click("#session-clear")
    p = panel(page)
    assert p["frames"] == 0 and not p["csv"] and not p["json"] and not p["clear"] and p["record"], p
    assert "Cleared" in p["status"] and "Nothing recorded" in p["counts"]
    assert not page.is_visible("#summary-table") and page.is_visible("#summary-empty")
    assert page.locator("#summary-body tr").count() == 0


def test_new_camera_run_after_clear(cam):
    """After Clear, a new camera run gives fresh timelines and summary rows (and still records nothing)."""
    page = cam["page"]
    page.click("#start-camera")
    wait_for(page, "() => Number(document.querySelector('#face-list canvas.timeline')?.dataset.samples) >= 3")
    wait_for(page, "() => document.querySelectorAll('#summary-body tr').length === 1")
    assert panel(page)["frames"] == 0
    page.click("#stop-camera")
