"""The camera's adaptation to the device (web/js/pace.js), run in node on made-up frame costs: the shortest detector
cadence whose mean frame cost fits the budget, no shorter than configured, back down when frames get cheap, fixed when
adaptation is off; and the slower camera frame rate (slowFps) while the cadence is stretched. (The engine's use of it runs in Chromium: tests/test_e2e_engine.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Feeds phases of [frames, detector-frame ms, other-frame ms] at the cadence in force; the state after each phase.
RUN = """
import { createPace } from '%s';
const [options, phases] = JSON.parse(process.argv[1]);
const pace = createPace(options);
const out = [];
for (const [frames, detectorMs, otherMs] of phases) {
  for (let i = 0; i < frames; i++) {
    const ran = i %% pace.detectEvery === 0;
    pace.record(ran ? detectorMs : otherMs, ran);
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
