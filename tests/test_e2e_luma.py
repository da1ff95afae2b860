"""End to end in headless Chromium: the camera path's pixels, read from a frame's planes (web/js/frame-planes.js):
the face crops from a YUV frame's luma plane agree with emotion_runtime's numpy crop (preprocess.aligned_face_crop) of
the same pixels (upright, turned, leaving the frame, from a frame read at half size), and the face detector's square
from the Y, U and V planes (I420, NV12) agrees with the canvas's drawing of the same frame.
Run: pytest -m browser tests/test_e2e_luma.py
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from emotion_runtime.preprocess import aligned_face_crop, crop_square
from fixtures import videos
from fixtures.e2e import app_server, launch_app_browser  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

W, H = videos.WIDTH, videos.HEIGHT

# In the page: an I420 VideoFrame with the given luma (chroma neutral) -> lumaCrops of the squares, read at `scale`.
LUMA_CROPS = """async ({ y, squares, scale, fullRange }) => {
  const { lumaCrops, readPlanes } = await import('./js/frame-planes.js');
  const [w, h] = [%d, %d];
  const buf = new Uint8Array(w * h * 3 / 2).fill(128);
  buf.set(Uint8Array.from(atob(y), (c) => c.charCodeAt(0)));
  const frame = new VideoFrame(buf, { format: 'I420', codedWidth: w, codedHeight: h, timestamp: 0,
    colorSpace: { matrix: 'smpte170m', primaries: 'smpte170m', transfer: 'smpte170m', fullRange } });
  const { luma } = await readPlanes(frame);
  frame.close();
  const read = squares.map(({ cx, cy, side, roll }) => ({ cx: cx / scale, cy: cy / scale, side: side / scale, roll }));
  return Array.from(lumaCrops(luma, read, scale, scale, 48));
}""" % (W, H)

# (box x, y, w, h; eye roll in degrees): the happy clip's face upright and turned, and faces cut by the frame's edges
CASES = [((262, 200, 180, 190), 0.0), ((262, 200, 180, 190), 15.0), ((262, 200, 180, 190), -25.0),
         ((530, 370, 150, 150), 0.0), ((-40, -30, 140, 140), 20.0)]


@pytest.fixture(scope="module")
def page(playwright_driver, app_server):  # noqa: F811
    browser = launch_app_browser(playwright_driver)
    page = browser.new_page()
    page.goto(app_server.url)
    yield page
    browser.close()


@pytest.fixture(scope="module")
def luma() -> np.ndarray:
    """The happy clip's frame as a camera's video-range luma (BT.601), uint8 (H, W)."""
    from PIL import Image

    rgb = np.asarray(Image.open(videos.still_png(videos.HAPPY)).convert("RGB"), np.float64)
    y = 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
    return np.round(y).astype(np.uint8)


def numpy_crops(grey: np.ndarray) -> np.ndarray:
    return np.stack([aligned_face_crop(grey, box, roll) for box, roll in CASES])


def browser_crops(page, luma: np.ndarray, scale: float = 1.0, full_range: bool = False) -> np.ndarray:
    squares = [dict(zip(("cx", "cy", "side", "roll"), crop_square(box, roll))) for box, roll in CASES]
    out = page.evaluate(LUMA_CROPS, {"y": base64.b64encode(luma.tobytes()).decode(), "squares": squares,
                                     "scale": scale, "fullRange": full_range})
    return np.asarray(out, np.float32).reshape(len(CASES), 48, 48)


def test_luma_crops_match_numpy_crops(page, luma):
    grey = np.clip((luma.astype(np.float32) - 16) * 255 / 219, 0, 255)  # video range -> grey levels
    expected = numpy_crops(grey)
    got = browser_crops(page, luma)
    diff = np.abs(got - expected)
    # Two resamplers (supersampled bilinear here, bilinear grid + triangle filter in numpy) of the same pixels
    for i, (box, roll) in enumerate(CASES):
        assert diff[i].mean() < 2.0 and np.percentile(diff[i], 99) < 12, (box, roll, diff[i].mean(), diff[i].max())
    # and not merely alike: a crop of another face place or turn is far off
    assert np.abs(got[1] - expected[2]).mean() > 8 and np.abs(got[0] - expected[3]).mean() > 20


def test_luma_crops_of_a_frame_read_at_half_size(page, luma):
    """Squares in the read size's pixels (a frame read at 320x240) give the same crops of the full-size luma."""
    np.testing.assert_allclose(browser_crops(page, luma, scale=2.0), browser_crops(page, luma), atol=1.0)


def test_full_range_luma_is_taken_as_grey(page, luma):
    expected = numpy_crops(luma.astype(np.float32))
    got = browser_crops(page, luma, full_range=True)
    assert np.abs(got - expected).mean() < 2.0


# In the page: a VideoFrame of the given format and bytes -> [planesSquare, the canvas's drawing] of it, fitted into a
# 128 px square as the short-range detector takes a 4:3 frame.
SQUARE = """async ({ bytes, format }) => {
  const { planesSquare, readPlanes } = await import('./js/frame-planes.js');
  const [w, h] = [%d, %d];
  const fit = { size: 128, x: 0, y: 16, width: 128, height: 96 };
  const frame = new VideoFrame(Uint8Array.from(atob(bytes), (c) => c.charCodeAt(0)), { format, codedWidth: w,
    codedHeight: h, timestamp: 0,
    colorSpace: { matrix: 'smpte170m', primaries: 'smpte170m', transfer: 'smpte170m', fullRange: false } });
  const ours = planesSquare(await readPlanes(frame), fit);
  const canvas = new OffscreenCanvas(fit.size, fit.size);
  const ctx = canvas.getContext('2d');
  ctx.fillRect(0, 0, fit.size, fit.size);
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(frame, 0, 0, w, h, fit.x, fit.y, fit.width, fit.height);
  frame.close();
  return [Array.from(ours), Array.from(ctx.getImageData(0, 0, fit.size, fit.size).data)];
}""" % (W, H)


def frame_bytes(rgb: np.ndarray, fmt: str) -> bytes:
    """The frame in `fmt`: I420 / NV12 (BT.601, video range, chroma averaged over 2x2)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    half = lambda c: c.reshape(H // 2, 2, W // 2, 2).mean(axis=(1, 3))  # noqa: E731
    u, v = (np.round(half(c)).astype(np.uint8) for c in (u, v))
    y = np.round(y).astype(np.uint8)
    chroma = np.stack([u, v], axis=-1).tobytes() if fmt == "NV12" else u.tobytes() + v.tobytes()
    return y.tobytes() + chroma


@pytest.mark.parametrize("fmt", ["I420", "NV12"])
def test_detector_square_from_planes_matches_the_canvas(page, fmt):
    from PIL import Image

    rgb = np.asarray(Image.open(videos.still_png(videos.HAPPY)).convert("RGB"))
    ours, canvas = (np.asarray(a, np.float32).reshape(128, 128, 4) for a in page.evaluate(
        SQUARE, {"bytes": base64.b64encode(frame_bytes(rgb, fmt)).decode(), "format": fmt}))
    assert (ours[:16] == [0, 0, 0, 255]).all() and (ours[112:] == [0, 0, 0, 255]).all()  # the letterbox bands
    diff = np.abs(ours[16:112, :, :3] - canvas[16:112, :, :3])
    # Two resamplers (a box average here, the canvas's filter) and two YUV -> RGB conversions of the same frame
    print(f"{fmt}: mean {diff.mean():.2f}, p99 {np.percentile(diff, 99):.1f} levels")
    assert diff.mean() < 3.0 and np.percentile(diff, 99) < 30, (fmt, diff.mean(), np.percentile(diff, 99))
    # and not merely alike: the picture shifted by 4 px is far off
    assert np.abs(ours[16:112, 4:, :3] - canvas[16:112, :-4, :3]).mean() > 2 * diff.mean()
