"""Pixel preprocessing: grey conversion and resize against PIL, crops, normalisation, letterbox."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_runtime import preprocess as pp

Image = pytest.importorskip("PIL.Image", reason="Pillow is the reference for grey conversion and resize")


# ---------------------------------------------------------------- grey

def test_gray_matches_pil_bit_for_bit():
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (300, 400, 4), dtype=np.uint8)
    ours = pp.rgba_to_gray(rgba)
    pil = np.asarray(Image.fromarray(rgba, "RGBA").convert("L"))
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, pil)
    np.testing.assert_array_equal(pp.rgba_to_gray(rgba[..., :3]), pil)  # alpha is ignored


def test_gray_rounding_is_pil_fixed_point_not_textbook():
    px = np.array([[[255, 255, 255], [0, 1, 0], [1, 0, 0], [2, 223, 0]]], dtype=np.uint8)
    # (19595 R + 38470 G + 7471 B + 32768) >> 16, hand-evaluated:
    # white -> 255; G=1 -> (38470 + 32768) >> 16 = 1; R=1 -> (19595 + 32768) >> 16 = 0;
    # (2, 223, 0): exact luma 131.499 -> PIL gives 132, round((299R + 587G) / 1000) would give 131.
    assert pp.rgba_to_gray(px).tolist() == [[255, 1, 0, 132]]
    assert np.asarray(Image.fromarray(px, "RGB").convert("L")).tolist() == [[255, 1, 0, 132]]


def test_gray_float_input_is_weighted_sum():
    px = np.array([[[100.0, 50.0, 10.0]]], dtype=np.float32)
    assert pp.rgba_to_gray(px)[0, 0] == pytest.approx(0.299 * 100 + 0.587 * 50 + 0.114 * 10, rel=1e-6)


# ---------------------------------------------------------------- resize

@pytest.mark.parametrize("shape,out", [((97, 131), (48, 48)), ((300, 300), (48, 48)), ((480, 640), (96, 128)),
                                       ((20, 30), (48, 48)), ((48, 48), (48, 48)), ((7, 200), (5, 13))])
def test_resize_matches_pil_float_mode(shape, out):
    rng = np.random.default_rng(2)
    img = rng.uniform(0, 255, shape).astype(np.float32)
    ours = pp.resize_antialiased(img, *out)
    pil = np.asarray(Image.fromarray(img, "F").resize((out[1], out[0]), Image.BILINEAR))
    assert ours.shape == out and ours.dtype == np.float32
    np.testing.assert_allclose(ours, pil, atol=2e-3)


@pytest.mark.parametrize("shape,out", [((240, 320), (48, 48)), ((333, 250), (48, 48)), ((30, 40), (48, 48))])
def test_resize_within_one_grey_level_of_pil_uint8(shape, out):
    # PIL rounds to uint8 after each of its two passes; our float result may differ by up to one level.
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    ours = pp.resize_antialiased(img, *out)
    pil = np.asarray(Image.fromarray(img, "L").resize((out[1], out[0]), Image.BILINEAR)).astype(np.float32)
    assert np.abs(ours - pil).max() <= 1.0 + 1e-3


def test_resize_is_dense_weight_matrix_product():
    rng = np.random.default_rng(4)
    img = rng.uniform(0, 255, (61, 83))
    wy, wx = pp.resize_weights(61, 17), pp.resize_weights(83, 29)
    np.testing.assert_allclose(wy.sum(axis=1), 1.0)
    np.testing.assert_allclose(pp.resize_antialiased(img, 17, 29), wy @ img @ wx.T, atol=1e-3)


def test_resize_weights_hand_computed_halving():
    # 4 -> 2: scale 2, triangle half-width 2 input px, centres at 1.0 and 3.0 (input pixel centres 0.5..3.5)
    # output 0 taps: x=0.5 (|d|=0.5 -> 0.75), 1.5 (0.75), 2.5 (|d|=1.5 -> 0.25); normalised by 1.75.
    w = pp.resize_weights(4, 2)
    np.testing.assert_allclose(w[0], np.array([0.75, 0.75, 0.25, 0.0]) / 1.75)
    np.testing.assert_allclose(w[1], np.array([0.0, 0.25, 0.75, 0.75]) / 1.75)


def test_resize_rgb_channels_independent():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    out = pp.resize_antialiased(img, 20, 30)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], pp.resize_antialiased(img[..., c], 20, 30), atol=1e-4)


def test_box_reduce_is_block_mean():
    img = np.arange(6 * 8, dtype=np.uint8).reshape(6, 8)
    red = pp.box_reduce(img, 2)
    assert red.shape == (3, 4)
    assert red[0, 0] == pytest.approx((0 + 1 + 8 + 9) / 4)
    np.testing.assert_allclose(red, img.reshape(3, 2, 4, 2).mean(axis=(1, 3)))
    assert pp.box_reduce(np.full((35, 35), 255, np.uint8), 17)[0, 0] == 255.0  # uint32 accumulator path


@pytest.mark.parametrize("k", [2, 3, 7, 16])
def test_box_reduce_rgba_fast_path_matches_block_mean(k):
    rng = np.random.default_rng(k)
    rgba = rng.integers(0, 256, (5 * k + k - 1, 7 * k + 1, 4), dtype=np.uint8)  # partial blocks dropped
    rgba[:k, :k] = 255  # a saturated block: lane sums reach k*k*255
    ref = rgba[:5 * k, :7 * k].astype(np.float64).reshape(5, k, 7, k, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(pp.box_reduce(rgba, k), ref, rtol=1e-6)
    np.testing.assert_allclose(pp.box_reduce(rgba[..., :3], k), ref[..., :3], rtol=1e-6)  # generic path


# ---------------------------------------------------------------- crops

def test_crop_box_square_centred():
    assert pp.crop_box((100, 50, 40, 60), 1.0) == (90, 50, 60)
    assert pp.crop_box((100, 50, 40, 60), 1.5) == (75, 35, 90)


def test_square_crop_inside_is_a_view_of_the_frame():
    img = np.arange(100 * 100, dtype=np.int32).reshape(100, 100)
    crop = pp.square_crop(img, (40, 30, 20, 10), 1.0)  # side 20, x0 40, y0 25
    np.testing.assert_array_equal(crop, img[25:45, 40:60])


def test_square_crop_replicates_edges_outside_frame():
    img = np.arange(10 * 12, dtype=np.int32).reshape(10, 12)
    crop = pp.square_crop(img, (-2, -3, 6, 6), 1.0)  # x0=-2, y0=-3, side 6
    assert crop.shape == (6, 6)
    np.testing.assert_array_equal(crop[3:, 2:], img[0:3, 0:4])  # the part inside the frame
    np.testing.assert_array_equal(crop[:3, 2:], np.repeat(img[0:1, 0:4], 3, axis=0))  # rows above: row 0
    np.testing.assert_array_equal(crop[3:, :2], np.repeat(img[0:3, 0:1], 2, axis=1))  # cols left: col 0
    assert (crop[:3, :2] == img[0, 0]).all()
    # bottom-right corner with an RGBA frame: last row/col replicated, channels kept
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[-1, -1] = (9, 8, 7, 255)
    far = pp.square_crop(rgba, (10, 8, 6, 6), 1.0)  # x0=10, y0=8: mostly outside
    assert far.shape == (6, 6, 4)
    assert (far[2:, 2:] == (9, 8, 7, 255)).all()


def test_normalise_range():
    out = pp.normalise(np.array([0, 127.5, 255], dtype=np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(pp.normalise(np.array([0, 255], np.uint8)), [-1.0, 1.0])


def test_face_batch_shape_and_content():
    rgba = np.zeros((120, 160, 4), np.uint8)
    rgba[40:80, 60:100, :3] = 255  # a white square "face"
    batch = pp.face_batch(rgba, [(60, 40, 40, 40), (0, 0, 10, 10)], scale=1.0)
    assert batch.shape == (2, 1, 48, 48) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0], 1.0, atol=1e-5)  # crop exactly the white square
    np.testing.assert_allclose(batch[1], -1.0, atol=1e-5)  # black corner
    assert pp.face_batch(rgba, []).shape == (0, 1, 48, 48)


# ---------------------------------------------------------------- roll alignment

def _face_frame(sample_photo) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A 640x480 window on sample3's right-hand face (eyes about level after a 16 degree turn, see below), and
    a face box of 160 px around its centre."""
    photo = Image.fromarray(sample_photo(3)).crop((680, 5, 1680, 755)).resize((640, 480), Image.BILINEAR)
    # turn the window so the eyes are level (the woman holds her head ~16 degrees clockwise)
    level = photo.rotate(16, resample=Image.BICUBIC, center=(320, 240))
    return np.asarray(level), (240.0, 160.0, 160.0, 160.0)


def test_aligned_crop_undoes_a_known_roll(sample_photo):
    frame, box = _face_frame(sample_photo)
    upright = pp.face_crop(frame, box)
    for roll in (20.0, -30.0):  # turn the face clockwise by `roll` about the box centre
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        turned = np.asarray(Image.fromarray(frame).rotate(-roll, resample=Image.BICUBIC, center=(cx, cy)))
        aligned = pp.aligned_face_crop(turned, box, roll)
        assert aligned.shape == (48, 48) and aligned.dtype == np.float32
        inner = (slice(8, 40), slice(8, 40))  # the corners hold what the turn brought in
        err_aligned = np.abs(aligned - upright)[inner].mean()
        err_plain = np.abs(pp.face_crop(turned, box) - upright)[inner].mean()
        assert err_aligned < 6.0, err_aligned  # grey levels: resampling blur only
        assert err_plain > 3 * err_aligned, (err_plain, err_aligned)
        # the wrong direction makes it worse, not better: the sign convention is the detector's
        assert np.abs(pp.aligned_face_crop(turned, box, -roll) - upright)[inner].mean() > err_plain


def test_aligned_crop_dead_zone_clamp_and_edges():
    rgba = np.random.default_rng(3).integers(0, 256, (120, 160, 4), dtype=np.uint8)
    box = (50.0, 30.0, 40.0, 40.0)
    # under MIN_ROLL_DEG: exactly the axis-aligned crop (an unrotated face crops as before)
    np.testing.assert_array_equal(pp.aligned_face_crop(rgba, box, pp.MIN_ROLL_DEG - 0.1), pp.face_crop(rgba, box))
    np.testing.assert_array_equal(pp.face_batch(rgba, [box], rolls=[0.0]), pp.face_batch(rgba, [box]))
    # beyond MAX_ROLL_DEG: clamped
    np.testing.assert_array_equal(pp.aligned_face_crop(rgba, box, 80.0), pp.aligned_face_crop(rgba, box, 45.0))
    np.testing.assert_array_equal(pp.aligned_face_crop(rgba, box, -170.0), pp.aligned_face_crop(rgba, box, -45.0))
    # a face cut by the frame edge: edge pixels replicated, no error
    corner = pp.aligned_face_crop(rgba, (-20.0, -15.0, 50.0, 50.0), 30.0)
    assert corner.shape == (48, 48) and np.isfinite(corner).all()
    assert 0.0 <= corner.min() and corner.max() <= 255.0
    # a flat grey frame stays flat grey whatever the roll
    flat = np.full((120, 160, 4), 77, np.uint8)
    np.testing.assert_allclose(pp.aligned_face_crop(flat, box, 25.0), 77.0, atol=1e-3)


def test_eye_roll_from_real_detector_keypoints(sample_photo, face_detector):
    from emotion_runtime.detector import eye_roll
    from emotion_runtime.pipeline import FramePipeline

    frame, _ = _face_frame(sample_photo)
    for roll in (0.0, 15.0, -30.0):
        turned = np.asarray(Image.fromarray(frame).rotate(-roll, resample=Image.BICUBIC, center=(320, 240)))
        pipe = FramePipeline(["a"])
        pipe.decode_faces(*face_detector(pipe.detector_input(turned, 640, 480)))
        face = min(pipe.faces, key=lambda f: abs(f.box[0] + f.box[2] / 2 - 320) + abs(f.box[1] + f.box[3] / 2 - 240))
        assert eye_roll(face.keypoints) == pytest.approx(roll, abs=5.0)


# ---------------------------------------------------------------- letterbox / detector input

def test_letterbox_640x480_hand_computed_and_round_trip():
    lb = pp.letterbox_for(640, 480)
    assert (lb.scale_x, lb.scale_y, lb.offset_x, lb.offset_y) == (0.2, 0.2, 0.0, 16.0)
    np.testing.assert_allclose(lb.to_detector([320, 240]), [64, 64])
    np.testing.assert_allclose(lb.to_frame([0, 16]), [0, 0])
    pts = np.random.default_rng(6).uniform(0, 640, (10, 2))
    np.testing.assert_allclose(lb.to_frame(lb.to_detector(pts)), pts)


def test_letterbox_portrait():
    lb = pp.letterbox_for(300, 600)
    assert (lb.scale_x, lb.scale_y, lb.offset_x, lb.offset_y) == (64 / 300, 128 / 600, 32.0, 0.0)


def test_detector_input_pads_black_and_places_content():
    frame = np.zeros((128, 256, 4), np.uint8)
    frame[..., :3] = 255  # white frame, 2:1
    x, lb = pp.detector_input(frame)
    assert x.shape == (1, 128, 128, 3) and x.dtype == np.float32
    assert lb.offset_y == 32 and lb.scale_x == 0.5
    np.testing.assert_allclose(x[0, :32], -1.0)
    np.testing.assert_allclose(x[0, 32:96], 1.0, atol=1e-5)
    np.testing.assert_allclose(x[0, 96:], -1.0)


def test_detector_input_large_frame_keeps_geometry():
    # 1280x720, left half red: after reduce + resize the edge sits at detector x = 64, rows 28..99 content.
    frame = np.zeros((720, 1280, 4), np.uint8)
    frame[:, :640, 0] = 255
    x, lb = pp.detector_input(frame)
    assert lb.offset_y == 28 and lb.scale_y == pytest.approx(72 / 720)
    red = x[0, 64, :, 0]
    np.testing.assert_allclose(red[:63], 1.0, atol=1e-5)
    np.testing.assert_allclose(red[65:], -1.0, atol=1e-5)
    assert red[63] > 0 > red[64]  # the edge is between detector columns 63 and 64
    np.testing.assert_allclose(x[0, 27], -1.0)
    np.testing.assert_allclose(x[0, 28, :63, 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(x[0, 100], -1.0)
