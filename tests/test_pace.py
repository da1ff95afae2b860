"""The camera's adaptation to the device (web/js/pace.js), run in node on made-up frame costs: the most work whose
mean frame cost fits the budget (all the emotion model's views, then the face alone, then the shortest detector cadence
that fits, no shorter than configured), back up when frames get cheap, fixed when adaptation is off; and the slower
camera frame rate (slowFps) while slowed. (The engine's use of it runs in Chromium: tests/test_e2e_engine.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Feeds phases of [frames, detector-frame ms, other-frame ms, ms of one view of the faces in the emotion model (0 if
# absent)] at the work in force (a frame costs its kind's ms plus views x the view's ms); the state after each phase.
# options.model: the emotion model's views ({count, adjustable}), given as the engine does once loaded.
RUN = """
import { createPace } from '%s';
const [options, phases] = JSON.parse(process.argv[1]);
const pace = createPace(options);
if (options.model) pace.useModel(options.model);
const out = [];
for (const [frames, detectorMs, otherMs, viewMs = 0] of phases) {
  for (let i = 0; i < frames; i++) {
    const ran = i %% pace.detectEvery === 0;
    const classifyMs = pace.views * viewMs;
    pace.record({ ms: (ran ? detectorMs : otherMs) + classifyMs, detectorRan: ran, classifyMs, views: pace.views });
  }
  out.push({ ...pace.state(), rest: pace.restMs(options.elapsedMs ?? 0) });
}
console.log(JSON.stringify(out));
""" % (ROOT / "web/js/pace.js").as_uri()


def run(options: dict, phases: list[list[float]]) -> list[dict]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    done = subprocess.run([node, "--input-type=module", "-e", RUN, json.dumps([options, phases])],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_fast_frames_keep_the_configured_cadence():
    (state,) = run({"detectEvery": 3, "enabled": True, "budgetMs": 33, "slowFps": 16}, [[200, 20, 8]])
    assert state["detectEvery"] == 3 and not state["slowed"]
    assert state["frameMs"] == pytest.approx((20 + 2 * 8) / 3, abs=0.5)
    assert state["intervalMs"] is None and state["rest"] == 0  # frames fit: no rest


def test_slow_frames_stretch_the_cadence_until_they_fit_then_step_back():
    # A half-core phone: detector frames 120 ms, others 20 ms. Cost at k: (120 + (k - 1) * 20) / k -> k = 8 (32.5 ms).
    slow, fast = run({"detectEvery": 3, "enabled": True, "budgetMs": 33, "slowFps": 16}, [[400, 120, 20], [400, 30, 10]])
    assert slow["detectEvery"] == 8 and slow["slowed"] and slow["frameMs"] <= 33, slow
    assert fast["detectEvery"] == 3 and not fast["slowed"], fast  # the device keeps up again


def test_frames_too_slow_for_any_cadence_take_the_longest():
    (state,) = run({"detectEvery": 3, "enabled": True, "budgetMs": 33, "slowFps": 16}, [[600, 200, 40]])
    assert state["detectEvery"] == 30 and state["slowed"]


def test_a_stretched_cadence_also_slows_the_camera_to_slow_fps():
    options = {"detectEvery": 3, "enabled": True, "budgetMs": 33, "slowFps": 16, "elapsedMs": 20}
    slow, fast = run(options, [[400, 120, 20], [400, 30, 10]])
    assert slow["slowed"] and slow["intervalMs"] == int(1000 / 16 + 0.5)  # Math.round
    assert slow["rest"] == pytest.approx(1000 / 16 - 20)  # 20 ms after the last frame was taken
    assert not fast["slowed"] and fast["intervalMs"] is None and fast["rest"] == 0  # keeping up again: no rest


def test_without_adaptation_the_cadence_stays():
    (state,) = run({"detectEvery": 3, "enabled": False, "budgetMs": 33, "slowFps": 16}, [[400, 120, 20]])
    assert state["detectEvery"] == 3 and not state["slowed"] and state["enabled"] is False
    assert state["rest"] == 0


TWO_VIEWS = {"detectEvery": 3, "enabled": True, "budgetMs": 33, "slowFps": 16, "model": {"count": 2, "adjustable": True}}


def test_the_face_alone_comes_before_a_longer_cadence_and_all_views_come_back():
    # Cadence 3: (40 + 2 x 10) / 3 = 20 ms a frame without the emotion model; its two views 2 x 12 ms -> 44 > 33; the
    # face alone: 20 + 12 = 32 fits, at the configured cadence. Then cheap frames: both views again.
    slow, fast = run(TWO_VIEWS, [[400, 40, 10, 12], [400, 15, 5, 4]])
    assert (slow["views"], slow["detectEvery"], slow["slowed"]) == (1, 3, True), slow
    assert slow["frameMs"] == pytest.approx(32, abs=0.5) and slow["intervalMs"] == 63  # slowed (1000 / 16 ms): the rate is held too
    assert (fast["views"], fast["detectEvery"], fast["slowed"]) == (2, 3, False), fast


def test_when_the_face_alone_is_not_enough_the_cadence_stretches_with_it():
    # Alone at cadence 3: (120 + 2 x 20) / 3 + 6 = 59 ms; at 8: (120 + 7 x 20) / 8 + 6 = 38.5; at 12: 35.2; at 20:
    # 31 -> cadence 20, one view.
    (state,) = run(TWO_VIEWS, [[600, 120, 20, 6]])
    assert (state["views"], state["detectEvery"], state["slowed"]) == (1, 20, True), state


def test_a_model_that_cannot_run_the_face_alone_keeps_its_views():
    # The WebGL copy (no views input): only the cadence can give; at 30: (40 + 29 x 10) / 30 + 24 = 35 > 33 -> the
    # longest cadence, both views.
    options = {**TWO_VIEWS, "model": {"count": 2, "adjustable": False}}
    (state,) = run(options, [[600, 40, 10, 12]])
    assert (state["views"], state["detectEvery"], state["slowed"]) == (2, 30, True), state
