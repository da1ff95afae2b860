"""The session modules of the page (web/js/session-recorder.js, export.js, timeline.js, session-summary.js) in real
headless Chromium, through the harness page tests/fixtures/boot/session.html: CSV escaping and round trip through
Python's csv module, the JSON export, recording on/off, the 60-second timeline window, time-weighted summary shares.
The same modules on the real page with the fake webcam: tests/test_e2e_session.py.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timedelta, timezone

import pytest

pytestmark = [pytest.mark.browser]

META = {"model": {"id": "emotion-test", "sha256": "ab" * 32}, "labels": ["neutral", "hap,py", 'say "x"'],
        "display": ["Neutral", "Happy", "Quoted"], "smoothing": {"mode": "ema", "k": 5}}


@pytest.fixture(scope="module")
def page(playwright_driver, site_server):
    from fixtures.e2e import launch_app_browser

    browser = launch_app_browser(playwright_driver, fake_device=False, fake_ui=False)
    page = browser.new_page()
    page.goto(site_server.url + "__test__/session.html")
    page.wait_for_function("() => document.getElementById('status')?.textContent === 'ready'", timeout=30_000)
    yield page
    assert [line for line in browser.console if "error" in line.split(":")[0]] == []
    browser.close()


def call(page, name: str, *args):
    return page.evaluate("([name, args]) => window.sessionTest[name](...args)", [name, list(args)])


def face(id_: int, probs: list[float], label: str | None = None, box=(10.0, 20.0, 30.0, 40.0),
         uncertain: bool = False) -> dict:
    top = META["labels"][probs.index(max(probs))]
    return {"id": id_, "box": list(box), "label": label or top, "uncertain": uncertain, "probs": probs,
            "raw_probs": [round(p * 0.5 + 1 / 6, 4) for p in probs]}


def test_csv_field_quotes_and_defuses_formulas(page):
    values = ["plain", "a,b", 'say "hi"', "line\nbreak", "cr\rx", "=SUM(A1)", "+1", "-x", "@cmd", "\tx", 3.5, -2,
              0, None]
    got = call(page, "csvField", values)
    assert got == ["plain", '"a,b"', '"say ""hi"""', '"line\nbreak"', '"cr\rx"', "'=SUM(A1)", "'+1", "'-x", "'@cmd",
                   "'\tx", "3.5", "-2", "0", ""]


def test_csv_round_trip(page):
    frames = [
        {"t": 0, "faces": [face(1, [0.1, 0.8, 0.1]), face(2, [0.6, 0.3, 0.1], box=(1.25, 2.5, 3.75, 5.0))]},
        {"t": 40, "faces": []},
        {"t": 80.55, "faces": [face(1, [0.2, 0.2, 0.6], uncertain=True)]},
    ]
    out = call(page, "exportRecording", META, frames)
    assert out["csv"].endswith("\r\n") and "\r\n" in out["csv"]
    rows = list(csv.DictReader(io.StringIO(out["csv"], newline="")))
    assert len(rows) == out["rows"] == 4
    labels = META["labels"]
    assert list(rows[0]) == call(page, "csvColumns", labels)
    assert [f"p_{lab}" for lab in labels] == ["p_neutral", "p_hap,py", 'p_say "x"']
    assert [r["face_id"] for r in rows] == ["1", "2", "", "1"]
    assert [r["t_ms"] for r in rows] == ["0", "0", "40", "80.6"]
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    for r in rows:
        # Wall-clock time = Record press + t_ms (ISO strings carry whole milliseconds).
        offset = datetime.fromisoformat(r["time"].replace("Z", "+00:00")) - start
        assert abs(offset - timedelta(milliseconds=float(r["t_ms"]))) < timedelta(milliseconds=1)
        assert r["model"] == "emotion-test" and r["model_sha256"] == "ab" * 32 and r["run"] == "1"
        assert (r["frame_w"], r["frame_h"]) == ("640", "480")
    assert [float(rows[1][k]) for k in ("box_x", "box_y", "box_w", "box_h")] == [1.3, 2.5, 3.8, 5.0]
    assert rows[0]["top_label"] == "hap,py"
    assert [r["uncertain"] for r in rows] == ["0", "0", "", "1"]
    assert [float(rows[3][f"p_{lab}"]) for lab in labels] == [0.2, 0.2, 0.6]
    assert [float(rows[0][f"raw_{lab}"]) for lab in labels] == frames[0]["faces"][0]["raw_probs"]
    # The face-less frame: a row with the face columns empty.
    assert all(rows[2][k] == "" for k in ("box_x", "top_label", "uncertain", "p_neutral", "raw_neutral"))


def test_json_export(page):
    frames = [{"t": 0, "faces": [face(1, [0.1, 0.8, 0.1])]}, {"t": 40, "faces": []}]
    data = json.loads(call(page, "exportRecording", META, frames)["json"])
    assert data["format"] == "emotion-lens-session" and data["version"] == 1
    assert data["exported"] == "2026-01-02T00:00:00.000Z"
    assert data["model"] == META["model"] and data["labels"] == META["labels"] and data["display"] == META["display"]
    assert data["smoothing"] == META["smoothing"]
    assert data["started"] == "2026-01-02T03:04:05.000Z"
    assert [f["t_ms"] for f in data["frames"]] == [0, 40]
    assert data["frames"][0]["faces"][0] == {k: frames[0]["faces"][0][k] for k in ("id", "box", "label", "uncertain",
                                                                                  "probs", "raw_probs")}
    assert data["frames"][1]["faces"] == [] and data["frames"][1]["width"] == 640


def test_file_name(page):
    assert call(page, "exportFileName", "emotion-ferplus", "2026-11-23T15:04:05.678Z", "csv") == \
        "emotion-lens-emotion-ferplus-20261123-150405Z.csv"
    assert call(page, "exportFileName", "a/b c", "2026-11-23T15:04:05Z", "json") == \
        "emotion-lens-a_b_c-20261123-150405Z.json"


def test_records_only_between_record_and_stop(page):
    frames = [{"t": t, "faces": [face(1, [0.1, 0.8, 0.1])]} for t in range(0, 100, 10)]
    out = call(page, "recordingWindow", META, frames, 30, 70)
    assert out["kept"] == [30, 40, 50, 60]
    assert out["frames"] == [0, 10, 20, 30]  # ms since Record was pressed


def test_resume_with_another_model_is_refused(page):
    other = {**META, "model": {"id": "emotion-other", "sha256": "cd" * 32}}
    assert "another model" in call(page, "startWithOtherModel", META, other)
    relabelled = {**META, "labels": ["a", "b", "c"]}
    assert "another model" in call(page, "startWithOtherModel", META, relabelled)
    assert call(page, "startWithOtherModel", META, META) is None


def test_recording_stops_when_full(page):
    out = call(page, "fillUp", META)
    limit = page.evaluate("() => window.sessionTest.MAX_RECORDED_FRAMES")
    assert out["added"] == out["frames"] == limit
    assert out["recording"] is False and out["stopReason"] == "full"
    assert "full" in out["resumeError"]


def test_timeline_keeps_the_last_minute(page):
    window = page.evaluate("() => window.sessionTest.TIMELINE_WINDOW_MS")
    assert window == 60_000
    f1, f2 = face(1, [1, 0, 0]), face(2, [0, 1, 0])
    steps = [{"t": 0, "faces": [f1, f2]}, {"t": 30_000, "faces": [f1]}, {"t": 60_000, "faces": [f1]},
             {"t": 60_001, "faces": [f1]}, {"t": 125_000, "faces": []}]
    got = call(page, "timeline", steps, window)
    assert got[1] == {"1": [0, 30_000], "2": [0]}
    assert got[2] == {"1": [0, 30_000, 60_000], "2": [0]}  # exactly 60 s old: still in
    assert got[3] == {"1": [30_000, 60_000, 60_001]}  # face 2 had nothing left: gone
    assert got[4] == {}


def test_summary_shares_are_time_weighted(page):
    labels = META["labels"]
    a, b = face(1, [0.9, 0.05, 0.05]), face(1, [0.1, 0.8, 0.1])
    frames = [{"t": 0, "faces": [a]}, {"t": 100, "faces": [b]}, {"t": 300, "faces": [b]}]
    (s,) = call(page, "summary", labels, frames, 400)
    assert s["key"] == "1:1" and s["id"] == 1 and s["run"] == 1
    assert s["seenMs"] == 400
    assert s["shares"] == [0.25, 0.75, 0]


def test_summary_caps_long_steps_and_separates_runs(page):
    labels = META["labels"]
    cap = page.evaluate("() => window.sessionTest.MAX_STEP_MS")
    a, b, c = face(1, [0.9, 0.05, 0.05]), face(1, [0.1, 0.8, 0.1]), face(2, [0.1, 0.1, 0.8])
    frames = [{"t": 0, "faces": [a, c]}, {"t": 10_000, "faces": [b]},  # a 10 s pause counts as `cap`
              {"t": 10_500, "run": 2, "faces": [a]}]  # camera restarted: id 1 is someone else
    out = {s["key"]: s for s in call(page, "summary", labels, frames, 10_600)}
    assert set(out) == {"1:1", "1:2", "2:1"}
    assert out["1:1"]["seenMs"] == cap + 500 and out["1:2"]["seenMs"] == cap and out["2:1"]["seenMs"] == 100
    for s in out.values():
        assert math.isclose(sum(s["shares"]), 1.0)
    assert out["1:1"]["shares"][0] == pytest.approx(cap / (cap + 500))


def test_timeline_draws_a_full_minute(page):
    """60 s at 30 frames/s, 8 classes: class 0 rises from 0 to 1 (its line climbs left to right), and a 5 s pause
    breaks the lines. The draw time is printed (pytest -s) for the report; nothing asserts on speed."""
    out = page.evaluate("() => window.sessionTest.drawFullWindow({})")
    print(f"\n[timeline] full 60 s window, {out['samples']} samples x 8 classes on {out['width']}x{out['height']} px: "
          f"{out['ms']:.2f} ms per draw")
    top = out["redTop"]
    w, h = out["width"], out["height"]
    assert (w, h) == (320, 120)
    early, late = top[int(0.05 * w)], top[int(0.95 * w)]
    assert early is not None and late is not None, top
    assert late < 0.15 * h < 0.6 * h < early, (early, late)
    gap = range(int(20 / 60 * w) + 3, int(25 / 60 * w) - 3)
    assert all(top[x] is None for x in gap), [top[x] for x in gap]
