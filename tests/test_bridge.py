"""AppBridge: the page's handle on FramePipeline (web/js/lens-pipeline.js drives it from Pyodide)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emotion_runtime import FERPLUS_LABELS, AppBridge, FramePipeline, smoothing_settings
from test_pipeline import BOX, H, W, _frame, _outputs

SIDECAR = {"id": "test.model", "labels": list(FERPLUS_LABELS)}


class FakeJsProxy:
    """What a JS typed array looks like from Python in Pyodide: an object with to_py() -> memoryview."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def to_py(self) -> memoryview:
        return memoryview(self.array.tobytes())


def test_same_results_as_the_pipeline_from_js_proxies_and_buffers():
    frame, (reg, sc) = _frame(3), _outputs()
    logits = np.arange(len(FERPLUS_LABELS), dtype=np.float32)[None]
    pipe = FramePipeline(SIDECAR, smoothing="ema", alpha=2 / 6, window=5, max_faces=None)
    expected_x = pipe.detector_input(frame, W, H)
    assert pipe.decode_faces(reg, sc) == 1
    expected_crops = pipe.emotion_input()
    expected = json.loads(pipe.update_json(logits))

    bridge = AppBridge(json.dumps(SIDECAR))  # JSON text, as the page passes it
    np.testing.assert_array_equal(bridge.detector_input(FakeJsProxy(frame.reshape(-1)), W, H), expected_x)
    assert bridge.decode_faces(FakeJsProxy(reg), FakeJsProxy(sc)) == 1 and bridge.detected == 1
    np.testing.assert_array_equal(bridge.emotion_input(), expected_crops)
    got = json.loads(bridge.update_json(FakeJsProxy(logits)))
    assert got == expected
    assert got[0]["box"] == list(BOX)


def test_no_face_takes_none_logits():
    bridge = AppBridge(SIDECAR)
    bridge.detector_input(_frame(), W, H)
    reg, sc = _outputs(score=-5.0)
    assert bridge.decode_faces(reg, sc) == 0
    assert bridge.emotion_input().shape == (0, 1, 48, 48)
    assert json.loads(bridge.update_json(None)) == []


def test_cap_keeps_the_count_of_faces_seen():
    bridge = AppBridge(SIDECAR, max_faces=1)
    bridge.detector_input(_frame(), W, H)
    reg, sc = _outputs()
    # A second face far from the first: the stride-8 anchor at cell (row 8, col 2), a weaker score.
    second = (8 * 16 + 2) * 2
    reg[0, second, :4] = [0.0, 0.0, 12.8, 12.8]
    sc[0, second, 0] = 1.0
    assert bridge.decode_faces(reg, sc) == 1
    assert bridge.detected == 2
    assert bridge.emotion_input().shape == (1, 1, 48, 48)


def test_smoothing_settings_are_checked_and_clamped():
    assert smoothing_settings("ema", 5) == {"mode": "ema", "k": 5, "alpha": pytest.approx(1 / 3)}
    assert smoothing_settings("median", 99)["k"] == 30
    assert smoothing_settings("mean", 0)["k"] == 1
    assert smoothing_settings("none", 2.6)["k"] == 3
    with pytest.raises(ValueError, match="unknown smoothing mode"):
        smoothing_settings("kalman", 5)
    with pytest.raises(ValueError):
        AppBridge(SIDECAR, max_faces=0)


def test_set_smoothing_forgets_tracks_and_reports_settings():
    bridge = AppBridge(SIDECAR)
    frame, (reg, sc) = _frame(), _outputs()
    logits = np.zeros((1, len(FERPLUS_LABELS)), np.float32)
    for _ in range(2):
        bridge.detector_input(frame, W, H)
        bridge.decode_faces(reg, sc)
        first_id = json.loads(bridge.update_json(logits))[0]["id"]
    assert json.loads(bridge.set_smoothing("median", 3)) == {"mode": "median", "k": 3}
    assert bridge.smoothing == {"mode": "median", "k": 3}
    bridge.detector_input(frame, W, H)
    bridge.decode_faces(reg, sc)
    assert json.loads(bridge.update_json(logits))[0]["id"] == first_id  # a fresh tracker starts at the same id
    assert json.loads(bridge.labels_json())["labels"] == list(FERPLUS_LABELS)


def test_caller_resampled_square_and_crops():
    """The browser resamples the frame itself (js/lens-pipeline.js, resample 'browser'): it fits the frame into the
    detector's square where the bridge says, and draws each face's crop square upright from crop_geometry_json. No
    frame pixels cross; detections map back exactly as with the numpy letterbox, and crops drawn as the numpy path
    cuts them give its emotion input up to the caller's uint8 rounding."""
    from emotion_runtime.preprocess import normalise, resize_antialiased, rgba_to_gray, square_crop

    bridge = AppBridge(SIDECAR)
    g = json.loads(bridge.letterbox_json(W, H))
    assert g == {"x": 0, "y": 16, "width": 128, "height": 96, "size": 128}
    frame = _frame(5)
    square = np.zeros((128, 128, 4), np.uint8)
    small = resize_antialiased(frame[..., :3], g["height"], g["width"])
    square[g["y"]:g["y"] + g["height"], g["x"]:g["x"] + g["width"], :3] = np.round(small).astype(np.uint8)
    x = bridge.detector_input_square(FakeJsProxy(square.reshape(-1)), W, H)
    assert x.shape == (1, 128, 128, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, :16], -1.0)  # black padding
    np.testing.assert_allclose(x[0], square[..., :3] / 127.5 - 1, atol=1e-6)
    reg, sc = _outputs()
    assert bridge.decode_faces(reg, sc) == 1
    with pytest.raises(RuntimeError, match="emotion_input_drawn"):
        bridge.emotion_input()  # no frame pixels to cut from

    (geometry,) = json.loads(bridge.crop_geometry_json())
    bx, by, bw, bh = BOX
    assert geometry == pytest.approx({"cx": bx + bw / 2, "cy": by + bh / 2, "side": 1.25 * max(bw, bh), "roll": 0.0})
    drawn = np.round(resize_antialiased(square_crop(frame, BOX), 48, 48)).astype(np.uint8)  # RGBA, as drawImage
    crops = bridge.emotion_input_drawn(FakeJsProxy(drawn.reshape(-1)), 48)
    numpy_path = AppBridge(SIDECAR)
    numpy_path.detector_input(frame, W, H)
    numpy_path.decode_faces(reg, sc)
    expected = numpy_path.emotion_input()
    assert crops.shape == expected.shape == (1, 1, 48, 48)
    np.testing.assert_allclose(crops, expected, atol=1.5 / 127.5)  # resized before grey, rounded to uint8 once
    side = 96  # drawn larger than the model's input: the bridge finishes the resize
    drawn = np.round(resize_antialiased(square_crop(frame, BOX), side, side)).astype(np.uint8)
    np.testing.assert_allclose(bridge.emotion_input_drawn(drawn.reshape(-1), side)[0, 0],
                               normalise(resize_antialiased(rgba_to_gray(drawn), 48, 48)), atol=1e-6)
    assert json.loads(bridge.update_json(np.zeros((1, 8), np.float32)))[0]["box"] == list(BOX)
    grey = rgba_to_gray(drawn)  # grey crops (the browser's luma path) give the same input
    np.testing.assert_allclose(bridge.emotion_input_drawn(grey.reshape(-1), side),
                               bridge.emotion_input_drawn(drawn.reshape(-1), side), atol=1e-6)
    with pytest.raises(ValueError, match="not 1 RGBA/RGB/grey crops of 96x96"):
        bridge.emotion_input_drawn(drawn.reshape(-1)[:-4], side)
    with pytest.raises(ValueError):
        bridge.detector_input_square(square[:64], W, H)


def test_crop_geometry_turns_with_the_eyes():
    """crop_geometry's roll is the crop's turn as emotion_input applies it: the eye line's angle, 0 under
    MIN_ROLL_DEG, clamped to MAX_ROLL_DEG, 0 with alignment off."""
    from emotion_runtime import MAX_ROLL_DEG, MIN_ROLL_DEG
    from emotion_runtime.detector import eye_roll

    pipe = FramePipeline(SIDECAR, max_faces=None)
    pipe.detector_input_square(np.zeros((128, 128, 4), np.uint8), W, H)
    reg, sc = _outputs()
    pipe.decode_faces(reg, sc)
    face = pipe.faces[0]
    for roll in (1.0, 20.0, -30.0, 70.0):
        t = np.radians(roll)
        (rx, ry) = face.keypoints[0]
        face.keypoints[1] = (rx + 40 * np.cos(t), ry + 40 * np.sin(t))  # the left eye, turned about the right eye
        assert eye_roll(face.keypoints) == pytest.approx(roll)
        expected = 0.0 if abs(roll) < MIN_ROLL_DEG else float(np.clip(roll, -MAX_ROLL_DEG, MAX_ROLL_DEG))
        assert pipe.crop_geometry()[0]["roll"] == pytest.approx(expected)
    pipe.align = False
    assert pipe.crop_geometry()[0]["roll"] == 0.0


def test_set_detector_switches_the_model_per_frame_and_survives_a_smoothing_change():
    """The engine picks the face detector per frame (photos: full range; the camera: a setting): the bridge then
    expects that model's input side and anchors, and keeps the detector when the smoothing changes (a fresh
    pipeline)."""
    bridge = AppBridge(SIDECAR)
    frame, (reg, sc) = _frame(), _outputs()
    logits = np.zeros((1, len(FERPLUS_LABELS)), np.float32)
    bridge.detector_input(frame, W, H)
    bridge.decode_faces(reg, sc)
    first_id = json.loads(bridge.update_json(logits))[0]["id"]

    assert bridge.set_detector("full_range") == 192
    assert json.loads(bridge.letterbox_json(W, H))["size"] == 192
    assert bridge.detector_input(frame, W, H).shape == (1, 192, 192, 3)
    with pytest.raises(ValueError, match="full_range detector has 2304 anchors"):
        bridge.decode_faces(reg, sc)  # the short-range model's outputs
    full_reg = np.zeros((1, 2304, 16), np.float32)
    full_sc = np.full((1, 2304, 1), -10.0, np.float32)
    assert bridge.decode_faces(full_reg, full_sc) == 0
    assert json.loads(bridge.update_json(None)) == []

    bridge.set_smoothing("mean", 3)
    assert bridge.detector_input(frame, W, H).shape == (1, 192, 192, 3)  # still full range
    assert bridge.set_detector("short_range") == 128
    bridge.detector_input(frame, W, H)
    bridge.decode_faces(reg, sc)
    assert json.loads(bridge.update_json(logits))[0]["id"] == first_id
    with pytest.raises(ValueError, match="unknown detector"):
        bridge.set_detector("long_range")
