"""Softmax, temporal smoothers, the label policy and the face tracker, on hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emotion_runtime.postprocess import (
    EmaSmoother,
    FaceTracker,
    LabelPolicy,
    WindowSmoother,
    box_iou_xywh,
    choose_label,
    make_smoother,
    softmax,
)


def test_softmax_hand_computed():
    np.testing.assert_allclose(softmax([0.0, math.log(2.0)]), [1 / 3, 2 / 3])
    np.testing.assert_allclose(softmax([[0.0, 0.0, 0.0, 0.0]]), [[0.25] * 4])


def test_softmax_is_stable_for_huge_logits():
    p = softmax(np.array([[1000.0, 1000.0], [-1000.0, 0.0], [1e30, -1e30]], dtype=np.float32))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p[0], [0.5, 0.5])
    np.testing.assert_allclose(p[1], [0.0, 1.0], atol=1e-300)
    np.testing.assert_allclose(p[2], [1.0, 0.0])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_ema_hand_computed():
    s = EmaSmoother(alpha=0.5)
    np.testing.assert_allclose(s.update([1.0, 0.0]), [1.0, 0.0])  # first value passes through
    np.testing.assert_allclose(s.update([0.0, 1.0]), [0.5, 0.5])
    np.testing.assert_allclose(s.update([0.0, 1.0]), [0.25, 0.75])
    s.reset()
    np.testing.assert_allclose(s.update([0.2, 0.8]), [0.2, 0.8])
    with pytest.raises(ValueError):
        EmaSmoother(alpha=0.0)


def test_window_mean_hand_computed():
    s = WindowSmoother(k=3, mode="mean")
    np.testing.assert_allclose(s.update([1.0, 0.0]), [1.0, 0.0])
    np.testing.assert_allclose(s.update([0.0, 1.0]), [0.5, 0.5])
    np.testing.assert_allclose(s.update([0.0, 1.0]), [1 / 3, 2 / 3])
    np.testing.assert_allclose(s.update([0.0, 1.0]), [0.0, 1.0])  # the first frame has left the window


def test_window_median_rejects_one_frame_glitch_and_renormalises():
    s = WindowSmoother(k=5, mode="median")
    for _ in range(4):
        s.update([0.8, 0.1, 0.1])
    out = s.update([0.0, 0.0, 1.0])  # a single glitch frame
    np.testing.assert_allclose(out, [0.8, 0.1, 0.1])
    s2 = WindowSmoother(k=2, mode="median")
    s2.update([0.6, 0.4, 0.0])
    # the median of two frames is their mean: [0.3, 0.45, 0.25], already summing to 1
    np.testing.assert_allclose(s2.update([0.0, 0.5, 0.5]), [0.3, 0.45, 0.25])
    s4 = WindowSmoother(k=3, mode="median")
    s4.update([0.6, 0.4, 0.0])
    s4.update([0.6, 0.0, 0.4])
    # medians [0.6, 0.4, 0.4] sum to 1.4 -> renormalised [3/7, 2/7, 2/7] (the mean would be [.47, .27, .27])
    np.testing.assert_allclose(s4.update([0.2, 0.4, 0.4]), [3 / 7, 2 / 7, 2 / 7])
    s3 = WindowSmoother(k=3, mode="median")
    s3.update([1.0, 0.0, 0.0])
    s3.update([0.0, 1.0, 0.0])
    # each class is 1 in one frame and 0 in two: all medians are 0, so it falls back to the mean
    np.testing.assert_allclose(s3.update([0.0, 0.0, 1.0]), [1 / 3, 1 / 3, 1 / 3])


def test_make_smoother_kinds():
    assert isinstance(make_smoother("ema", alpha=0.2)(), EmaSmoother)
    assert make_smoother("median", window=7)().k == 7
    none = make_smoother("none")()
    none.update([1.0, 0.0])
    np.testing.assert_allclose(none.update([0.0, 1.0]), [0.0, 1.0])
    with pytest.raises(ValueError):
        make_smoother("kalman")


def test_box_iou_xywh():
    assert box_iou_xywh((0, 0, 2, 2), (1, 0, 2, 2)) == pytest.approx(2 / 6)
    assert box_iou_xywh((0, 0, 1, 1), (5, 5, 1, 1)) == 0.0
    assert box_iou_xywh((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0


def test_tracker_ids_stable_while_faces_move():
    tr = FaceTracker(max_missing=2)
    a, b = [100.0, 100, 50, 50], [300.0, 120, 60, 60]
    ids = [t.id for t in tr.update([a, b])]
    assert ids == [1, 2]
    for step in range(10):  # both drift right by 5 px a frame; detection order swaps every other frame
        a[0] += 5
        b[0] += 5
        boxes = [b, a] if step % 2 else [a, b]
        got = {tuple(box): t.id for box, t in zip(boxes, tr.update(boxes))}
        assert got == {tuple(a): 1, tuple(b): 2}


def test_tracker_keeps_id_through_short_gap_then_drops():
    tr = FaceTracker(max_missing=2)
    box = (10.0, 10, 40, 40)
    assert tr.update([box])[0].id == 1
    tr.update([])
    tr.update([])  # missed 2 frames: still within max_missing
    assert tr.update([box])[0].id == 1
    for _ in range(3):  # missed 3 frames: dropped
        tr.update([])
    assert tr.tracks == []
    assert tr.update([box])[0].id == 2


def test_tracker_new_face_gets_new_id_and_own_smoother():
    tr = FaceTracker(make_smoother("ema", alpha=0.5))
    t1 = tr.update([(0.0, 0, 10, 10)])[0]
    t1.smoother.update([1.0, 0.0])
    t1b, t2 = tr.update([(1.0, 0, 10, 10), (100.0, 100, 10, 10)])
    assert (t1b.id, t2.id) == (1, 2)
    assert t1b is t1 and t2.smoother is not t1.smoother
    np.testing.assert_allclose(t2.smoother.update([0.0, 1.0]), [0.0, 1.0])  # fresh state
    np.testing.assert_allclose(t1.smoother.update([0.0, 1.0]), [0.5, 0.5])


def test_tracker_greedy_matching_prefers_nearest():
    tr = FaceTracker()
    tr.update([(0.0, 0, 10, 10), (8.0, 0, 10, 10)])  # ids 1 (left), 2 (right)
    # one detection overlapping both tracks, more with the right one: it must take id 2; id 1 unmatched
    (t,) = tr.update([(7.0, 0, 10, 10)])
    assert t.id == 2
    assert [x.missing for x in tr.tracks if x.id == 1] == [1]


# ---------------------------------------------------------------- honest labels (hand-computed values)

def test_choose_label_first_frame_and_uncertain_threshold():
    policy = LabelPolicy(uncertain_below=0.5, margin=0.1, band=0.05)
    sure = choose_label([0.1, 0.7, 0.2], None, policy)
    assert (sure.index, sure.uncertain, sure.top2) == (1, False, (1, 2))
    unsure = choose_label([0.45, 0.4, 0.15], None, policy)
    assert (unsure.index, unsure.uncertain, unsure.top2) == (0, True, (0, 1))


def test_choose_label_hysteresis_holds_the_shown_class_until_a_clear_lead():
    policy = LabelPolicy(uncertain_below=0.3, margin=0.1, band=0.05)
    shown = choose_label([0.55, 0.45], None, policy)
    assert shown.index == 0
    shown = choose_label([0.48, 0.52], shown, policy)  # 1 leads by 0.04 < margin: keep 0
    assert (shown.index, shown.top2) == (0, (1, 0))
    shown = choose_label([0.44, 0.56], shown, policy)  # leads by 0.12: switch
    assert shown.index == 1
    shown = choose_label([0.52, 0.48], shown, policy)  # and back only on a clear lead again
    assert shown.index == 1


def test_choose_label_uncertainty_has_a_band():
    policy = LabelPolicy(uncertain_below=0.5, margin=0.1, band=0.05)
    s = choose_label([0.48, 0.3, 0.22], None, policy)
    assert s.uncertain
    s = choose_label([0.53, 0.27, 0.2], s, policy)  # above 0.5 but inside the band: still uncertain
    assert s.uncertain
    s = choose_label([0.56, 0.24, 0.2], s, policy)  # above 0.55: certain
    assert not s.uncertain
    s = choose_label([0.52, 0.28, 0.2], s, policy)  # certain faces stay certain down to 0.5
    assert not s.uncertain


# ---------------------------------------------------------------- tracking with motion (hand-built boxes)

def test_tracker_follows_a_fast_face_with_no_overlap_between_frames():
    tr = FaceTracker()
    box = [0.0, 100, 80, 80]
    ids = []
    for _ in range(12):  # 50 px a frame: IoU with the last box only 0.23, with the predicted box ~1
        ids.append(tr.update([tuple(box)])[0].id)
        box[0] += 50
    assert set(ids) == {1}


def test_tracker_coasts_through_occlusion_on_its_velocity():
    tr = FaceTracker(max_missing=6)
    for i in range(6):
        assert tr.update([(100.0 + 30 * i, 50, 60, 60)])[0].id == 1
    for i in range(6, 11):  # hidden for 5 frames while it keeps moving
        tr.update([])
    # it reappears 5 x 30 px further on, a whole face width away from where it was last seen
    assert tr.update([(100.0 + 30 * 11, 50, 60, 60)])[0].id == 1


def test_tracker_crossing_faces_keep_their_ids():
    tr = FaceTracker()
    a, b = [0.0, 100, 60, 60], [400.0, 110, 60, 60]
    first = tr.update([tuple(a), tuple(b)])
    assert [t.id for t in first] == [1, 2]
    for step in range(24):  # a moves right, b left, 20 px a frame each; they meet around step 9
        a[0] += 20
        b[0] -= 20
        boxes = [tuple(b), tuple(a)] if step % 2 else [tuple(a), tuple(b)]
        if abs(a[0] - b[0]) < 40:  # overlapping: the detector sees only the face in front (b)
            boxes = [tuple(b)]
        got = {box: t.id for box, t in zip(boxes, tr.update(boxes))}
        assert got.get(tuple(b), 2) == 2 and got.get(tuple(a), 1) == 1, (step, got)
    assert {t.id for t in tr.tracks} == {1, 2}


def test_tracker_does_not_match_a_face_of_very_different_size():
    tr = FaceTracker()
    tr.update([(100.0, 100, 100, 100)])
    assert tr.update([(110.0, 110, 30, 30)])[0].id == 2
