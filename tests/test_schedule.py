"""When the face detector runs on a video (emotion_runtime.schedule.DetectionSchedule); real faces through the whole
pipeline: tests/test_sequences_real.py."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_runtime.preprocess import NORM_STD
from emotion_runtime.schedule import MOVED_ABOVE, DetectionSchedule

KEY = (640, 480, "short_range")


def crops(n: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1, 48, 48)).astype(np.float32)


def detect(s: DetectionSchedule, found: np.ndarray, key=KEY) -> None:
    s.ran(key)
    if len(found):
        s.crops(found)


def test_runs_every_frame_when_asked_to():
    s = DetectionSchedule()
    for _ in range(5):
        assert s.due(KEY, 1)
        detect(s, crops())


def test_keeps_a_still_face_for_every_minus_one_frames():
    s = DetectionSchedule()
    plan = []
    face = crops()
    for _ in range(9):
        if s.due(KEY, 3):
            plan.append("run")
            detect(s, face)
        else:
            plan.append("keep")
            s.kept(KEY)
            s.crops(face + 0.01)  # sensor noise
    assert plan == ["run", "keep", "keep"] * 3


def test_a_moved_face_runs_the_detector_on_the_next_frame():
    s = DetectionSchedule()
    face = crops()
    assert s.due(KEY, 10)
    detect(s, face)
    assert not s.due(KEY, 10)
    s.kept(KEY)
    s.crops(np.roll(face, 1, axis=-1))  # a 1 px shift of a random texture: far above the threshold
    assert s.due(KEY, 10)


def test_threshold_is_in_grey_levels_after_removing_each_crop_mean():
    s = DetectionSchedule()
    face = crops()
    assert s.due(KEY, 10)
    detect(s, face)
    brighter = face + 40 / NORM_STD  # exposure: the whole crop 40 grey levels brighter
    s.due(KEY, 10)
    s.kept(KEY)
    s.crops(brighter)
    assert not s.due(KEY, 10)
    # a change just above the threshold everywhere, in opposite directions on two halves (mean unchanged)
    step = np.where(np.arange(48) < 24, 1.0, -1.0).astype(np.float32) * (MOVED_ABOVE * 1.1 / NORM_STD)
    s.kept(KEY)
    s.crops(face + step)
    assert s.due(KEY, 10)


def test_runs_while_no_face_is_found_and_when_the_frame_or_detector_changes():
    s = DetectionSchedule()
    for _ in range(3):
        assert s.due(KEY, 5)
        detect(s, crops(0))
    detect(s, crops(2))
    assert not s.due(KEY, 5)
    assert s.due((320, 240, "short_range"), 5)
    assert s.due((640, 480, "full_range"), 5)


def test_a_changed_number_of_crops_counts_as_moved():
    s = DetectionSchedule()
    assert s.due(KEY, 5)
    detect(s, crops(2))
    assert not s.due(KEY, 5)
    s.kept(KEY)
    s.crops(crops(1))
    assert s.due(KEY, 5)


def test_a_detection_asked_for_every_frame_is_not_kept_later():
    # a photo (every=1) of the same size as the camera's frames must not lend its faces to the next camera frame
    s = DetectionSchedule()
    assert s.due(KEY, 1)
    detect(s, crops())
    assert s.due(KEY, 3)
    with pytest.raises(RuntimeError, match="no face detection to keep"):
        s.kept(KEY)


def test_forget_drops_the_faces():
    s = DetectionSchedule()
    s.due(KEY, 3)
    detect(s, crops())
    s.forget()
    assert s.due(KEY, 3)
