"""Pixel preprocessing shared by the browser runtime and the training code.

Everything here is numpy only (it runs in Pyodide) and works on plain 2-D / 3-D arrays, so the training
side (model_export) imports the same functions and constants and both see identical pixels.

Conventions
- Frames are RGBA (or RGB) uint8 arrays shaped (H, W, 4|3), as `getImageData` gives them.
- Boxes are (x, y, w, h) in frame pixels, x/y the top-left corner.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

# ITU-R 601 luma weights. PIL's convert("L") evaluates them in 16-bit fixed point with rounding:
#   L = (19595 R + 38470 G + 7471 B + 32768) >> 16      (19595 = round(0.299 * 2**16), ...)
# which we reproduce bit for bit. (The textbook (299 R + 587 G + 114 B) / 1000 rounded differs by one grey
# level on ~0.05% of colours; truncating it differs on ~half of them.)
GRAY_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
GRAY_WEIGHTS_FIXED16: tuple[int, int, int] = (19595, 38470, 7471)

NORM_MEAN = 127.5
NORM_STD = 127.5
EMOTION_INPUT_SIZE = 48
DETECTOR_INPUT_SIZE = 128
# Square crop side = CROP_SCALE * max(w, h) of the detector box. BlazeFace boxes run from the brows to
# the chin; FER-2013 faces also show the forehead and a bit of background around the cheeks.
CROP_SCALE = 1.25
# Roll alignment (see `aligned_face_crop`). Below MIN_ROLL_DEG the eye keypoints' own jitter (1-2 degrees on
# a still webcam face) is larger than the tilt: the crop stays axis-aligned, exactly as without alignment.
# Beyond MAX_ROLL_DEG the roll is clamped: BlazeFace is trained on upright faces, so a larger angle between
# its eye keypoints is far more often a keypoint error (a profile face, a hand) than a head lying sideways,
# and turning such a crop by 60-90 degrees would hand the classifier a face on its side.
MIN_ROLL_DEG = 3.0
MAX_ROLL_DEG = 45.0
# The rotated crop is sampled on a grid this many times finer than the output, then shrunk with the
# antialiased resize, so bilinear sampling adds little blur on top of the resize's own filter. 3 gave the
# same FER+ accuracy as 2 in build/measure_alignment.py (200 faces, within 1 point) at twice the time.
ALIGN_OVERSAMPLE = 2


def rgba_to_gray(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) uint8 -> (H, W) uint8 luma, bit-identical to PIL `convert("L")` (alpha ignored).

    A 2-D input is taken as already grey and returned as is. Float RGB input gives float luma
    (plain weighted sum, no rounding).
    """
    a = np.asarray(rgba)
    if a.ndim == 2:
        return a
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected (H, W, 3|4) image, got shape {a.shape}")
    if a.dtype == np.uint8:
        wr, wg, wb = GRAY_WEIGHTS_FIXED16
        acc = a[..., 0] * np.uint32(wr)  # uint8 * uint32 -> uint32, no overflow (max 2**24)
        acc += a[..., 1] * np.uint32(wg)
        acc += a[..., 2] * np.uint32(wb)
        acc += np.uint32(1 << 15)
        return (acc >> np.uint32(16)).astype(np.uint8)
    wr, wg, wb = GRAY_WEIGHTS
    f = a.astype(np.float32, copy=False)
    return f[..., 0] * wr + f[..., 1] * wg + f[..., 2] * wb


# ---------------------------------------------------------------- antialiased resize (PIL BILINEAR semantics)

def resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """Dense (out_size, in_size) float64 weight matrix of PIL's BILINEAR resize along one axis.

    Triangle filter whose support grows with the downscale factor (antialiasing), sampled at pixel
    centres, each row normalised to sum 1; taps outside the image are dropped (as PIL does).
    """
    start, w = _band_weights(in_size, out_size)
    dense = np.zeros((out_size, in_size))
    k = np.arange(w.shape[1])
    idx = start[:, None] + k[None, :]
    valid = idx < in_size
    rows = np.broadcast_to(np.arange(out_size)[:, None], idx.shape)
    dense[rows[valid], idx[valid]] = w[valid]
    return dense


@lru_cache(maxsize=64)
def _band_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Banded form of `resize_weights`: output i reads input start[i] + k with weight w[i, k]."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
    scale = in_size / out_size
    fscale = max(scale, 1.0)  # the filter widens only when shrinking
    support = fscale  # triangle support is 1 input pixel, scaled
    centre = (np.arange(out_size) + 0.5) * scale
    # np.intp, not int64: Pyodide is wasm32, where intp is int32 and int64 indices fail in np.take
    start = np.maximum(np.floor(centre - support + 0.5), 0).astype(np.intp)
    stop = np.minimum(np.floor(centre + support + 0.5), in_size).astype(np.intp)
    ntaps = int((stop - start).max())
    idx = start[:, None] + np.arange(ntaps)[None, :]
    w = 1.0 - np.abs((idx + 0.5 - centre[:, None]) / fscale)
    w = np.where((idx < stop[:, None]) & (w > 0), w, 0.0)
    w /= w.sum(axis=1, keepdims=True)
    start.setflags(write=False)
    w.setflags(write=False)
    return start, w


# A gather of (out, taps, row) floats above this many elements is done tap by tap instead (memory).
_GATHER_LIMIT = 2_000_000


def _resample_rows(x: np.ndarray, out_size: int) -> np.ndarray:
    """Resample axis 0 of a float32 (N, R) array to (out_size, R) with the banded triangle weights.

    Rows are gathered whole (contiguous copies, cheap also in WebAssembly), then combined per output row.
    """
    n_in, r = x.shape
    start, w = _band_weights(n_in, out_size)
    wf = w.astype(np.float32)
    ntaps = w.shape[1]
    idx = np.minimum(start[:, None] + np.arange(ntaps)[None, :], n_in - 1)  # clipped taps carry weight 0
    if out_size * ntaps * r <= _GATHER_LIMIT:
        return np.einsum("ok,okr->or", wf, x[idx])
    out = np.zeros((out_size, r), np.float32)
    for k in range(ntaps):
        g = x[idx[:, k]]
        g *= wf[:, k, None]
        out += g
    return out


def resize_antialiased(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Resize a (H, W) or (H, W, C) image to (out_h, out_w[, C]) like PIL `Image.resize(BILINEAR)`.

    Mathematically `Wy @ img @ Wx.T` with `Wy = resize_weights(H, out_h)`, `Wx = resize_weights(W, out_w)`
    (per channel), evaluated in banded form (each output reads only the few inputs under its triangle), so
    it never pays for a dense matmul. Returns float32, unrounded. PIL rounds to uint8 after each of its two
    passes, so for uint8 images it differs from PIL by at most ~1 grey level.
    """
    a = np.asarray(img)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D or 3-D image, got shape {a.shape}")
    h, w = a.shape[:2]
    c = a.shape[2:]  # () or (C,)
    a = a.astype(np.float32, copy=False)
    t = _resample_rows(a.reshape(h, -1), out_h).reshape((out_h, w) + c)  # vertical pass
    t = np.ascontiguousarray(t.swapaxes(0, 1)).reshape(w, -1)  # columns become rows
    t = _resample_rows(t, out_w).reshape((out_w, out_h) + c)  # horizontal pass
    return np.ascontiguousarray(t.swapaxes(0, 1))


# ---------------------------------------------------------------- face crops

def crop_box(box: Sequence[float], scale: float = CROP_SCALE) -> tuple[int, int, int]:
    """Square crop (x0, y0, side) in integer frame pixels, centred on box = (x, y, w, h)."""
    x, y, w, h = (float(v) for v in box)
    side = max(1, int(round(scale * max(w, h))))
    x0 = int(round(x + w / 2 - side / 2))
    y0 = int(round(y + h / 2 - side / 2))
    return x0, y0, side


def square_crop(img: np.ndarray, box: Sequence[float], scale: float = CROP_SCALE) -> np.ndarray:
    """Square crop of side `scale * max(w, h)` centred on `box`, from a (H, W[, C]) image.

    Where the square leaves the frame the border pixels are replicated (edge padding): a constant fill
    would put a hard artificial edge into the 48x48 crop, which FER-2013 faces never have.
    """
    a = np.asarray(img)
    x0, y0, side = crop_box(box, scale)
    h, w = a.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + side <= w and y0 + side <= h:
        return a[y0:y0 + side, x0:x0 + side]
    rows = np.clip(np.arange(y0, y0 + side), 0, h - 1)
    cols = np.clip(np.arange(x0, x0 + side), 0, w - 1)
    return a[rows[:, None], cols[None, :]]


def normalise(gray: np.ndarray) -> np.ndarray:
    """uint8 or float grey levels in [0, 255] -> float32 (x - 127.5) / 127.5 in [-1, 1]."""
    return ((np.asarray(gray, dtype=np.float32) - np.float32(NORM_MEAN)) / np.float32(NORM_STD)).astype(
        np.float32, copy=False)


def face_crop(frame: np.ndarray, box: Sequence[float], scale: float = CROP_SCALE,
              size: int = EMOTION_INPUT_SIZE) -> np.ndarray:
    """One face as the emotion model sees it before normalisation: float32 (size, size) grey levels.

    Crop first (in RGB[A]), then grey (uint8, PIL-exact), then the antialiased resize: the order keeps
    the per-frame work proportional to the face, not the frame.
    """
    return resize_antialiased(rgba_to_gray(square_crop(frame, box, scale)), size, size)


def crop_roll(roll_deg: float) -> float:
    """The turn a crop gets for a face whose eye line is at `roll_deg`: clamped to +-MAX_ROLL_DEG, and 0 under
    MIN_ROLL_DEG (see there)."""
    roll = float(np.clip(roll_deg, -MAX_ROLL_DEG, MAX_ROLL_DEG))
    return 0.0 if abs(roll) < MIN_ROLL_DEG else roll


def crop_square(box: Sequence[float], roll_deg: float = 0.0, scale: float = CROP_SCALE) -> tuple[float, float, float,
                                                                                              float]:
    """The square a face's crop is cut from: (cx, cy, side, roll) in frame pixels and degrees, centred on box =
    (x, y, w, h), side `scale * max(w, h)`, turned by `crop_roll(roll_deg)` (clockwise on screen)."""
    x, y, w, h = (float(v) for v in box)
    return x + w / 2, y + h / 2, scale * max(w, h), crop_roll(roll_deg)


def aligned_face_crop(frame: np.ndarray, box: Sequence[float], roll_deg: float, scale: float = CROP_SCALE,
                      size: int = EMOTION_INPUT_SIZE) -> np.ndarray:
    """`face_crop` turned by the face's roll, so the eyes come out level: float32 (size, size) grey levels.

    The square (side `scale * max(w, h)`, centred on the box) is rotated by `roll_deg` (clamped to
    +-MAX_ROLL_DEG; under MIN_ROLL_DEG this is exactly `face_crop`). Only the pixels under the rotated square
    are read: they are turned grey, box-reduced by an integer factor when the face is much larger than the
    sampling grid, sampled once on the rotated ALIGN_OVERSAMPLE*size square grid (inverse mapping, bilinear,
    edge pixels replicated outside the frame), then shrunk to size x size with the antialiased resize, whose
    triangle filter spans the same frame pixels as `face_crop`'s. No full-frame rotation.
    """
    cx, cy, side, roll = crop_square(box, roll_deg, scale)
    if roll == 0.0:
        return face_crop(frame, box, scale, size)
    a = np.asarray(frame)
    fh, fw = a.shape[:2]
    cos, sin = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    half = side / 2 * (abs(cos) + abs(sin))  # half-extent of the rotated square's bounding box
    rx0, ry0 = int(np.floor(cx - half)), int(np.floor(cy - half))
    rx1, ry1 = int(np.ceil(cx + half)) + 2, int(np.ceil(cy + half)) + 2
    if rx0 < 0 or ry0 < 0 or rx1 > fw or ry1 > fh:
        rows = np.clip(np.arange(ry0, ry1), 0, fh - 1)
        cols = np.clip(np.arange(rx0, rx1), 0, fw - 1)
        region = a[rows[:, None], cols[None, :]]
    else:
        region = a[ry0:ry1, rx0:rx1]
    grid = ALIGN_OVERSAMPLE * size
    k = max(1, int(side / (2 * grid)))  # pre-shrink only while the grid stays >= 2 samples per reduced pixel
    img = box_reduce(rgba_to_gray(region), k) if k > 1 else rgba_to_gray(region)  # k == 1: stays uint8
    ih, iw = img.shape
    # Output pixel centres in face coordinates (u along the eye line, v down the face) -> reduced-image pixel
    # indices (reduced pixel i covers region px k*i .. k*i+k-1, centre k*i + k/2).
    t = (((np.arange(grid) + 0.5) / grid - 0.5) * side).astype(np.float32)
    u, v = t[None, :], t[:, None]
    fx = np.clip((np.float32(cx - rx0) + u * np.float32(cos) - v * np.float32(sin)) / np.float32(k) - 0.5,
                 0, iw - 1)
    fy = np.clip((np.float32(cy - ry0) + u * np.float32(sin) + v * np.float32(cos)) / np.float32(k) - 0.5,
                 0, ih - 1)
    x0 = np.minimum(fx.astype(np.intp), iw - 2)
    y0 = np.minimum(fy.astype(np.intp), ih - 2)
    ax, ay = fx - x0, fy - y0
    flat = img.ravel()
    i00 = y0 * iw + x0
    p00, p01, p10, p11 = (flat[i].astype(np.float32) for i in (i00, i00 + 1, i00 + iw, i00 + iw + 1))
    top = p00 + (p01 - p00) * ax
    bottom = p10 + (p11 - p10) * ax
    return resize_antialiased(top + (bottom - top) * ay, size, size)


def face_batch(rgba: np.ndarray, boxes: Sequence[Sequence[float]], scale: float = CROP_SCALE,
               size: int = EMOTION_INPUT_SIZE, rolls: Sequence[float] | None = None) -> np.ndarray:
    """Emotion model input for every box: float32 (N, 1, size, size), normalised; N may be 0.
    `rolls` (degrees, one per box) turns each crop upright (`aligned_face_crop`); None: axis-aligned crops."""
    out = np.empty((len(boxes), 1, size, size), dtype=np.float32)
    for i, box in enumerate(boxes):
        crop = face_crop(rgba, box, scale, size) if rolls is None else aligned_face_crop(rgba, box, rolls[i], scale,
                                                                                          size)
        out[i, 0] = normalise(crop)
    return out


def drawn_crops_input(rgba: np.ndarray, n: int, side: int, size: int = EMOTION_INPUT_SIZE) -> np.ndarray:
    """Emotion model input from n face crops the caller resampled itself (the browser, from `crop_square`'s squares)
    to side x side, stacked top to bottom: (n * side, side, 3|4) uint8 pixels, or (n * side, side) grey ones, flat or
    shaped -> float32 (n, 1, size, size), normalised. Crops of another side than `size` are resized here
    (antialiased)."""
    a = np.asarray(rgba, dtype=np.uint8)
    n, side = int(n), int(side)
    if n < 1:
        return np.zeros((0, 1, size, size), np.float32)
    channels = a.size // max(n * side * side, 1)
    if channels not in (1, 3, 4) or channels * n * side * side != a.size:
        raise ValueError(f"{a.size} bytes are not {n} RGBA/RGB/grey crops of {side}x{side}")
    shape = (n * side, side) if channels == 1 else (n * side, side, channels)
    gray = rgba_to_gray(a.reshape(shape)).reshape(n, side, side)
    if side != size:
        gray = np.stack([resize_antialiased(g, size, size) for g in gray])
    return normalise(gray)[:, None]


# ---------------------------------------------------------------- detector input (letterbox)

@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the square detector input.

    detector_px = frame_px * scale + offset (per axis); the frame keeps its aspect ratio (up to the rounding
    of its resized size, hence separate x/y scales) and is centred, the rest is padding.
    """

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    frame_w: int
    frame_h: int
    size: int = DETECTOR_INPUT_SIZE

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) detector pixel coordinates -> frame pixel coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([(xy[..., 0] - self.offset_x) / self.scale_x,
                         (xy[..., 1] - self.offset_y) / self.scale_y], axis=-1)

    def to_detector(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) frame pixel coordinates -> detector pixel coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([xy[..., 0] * self.scale_x + self.offset_x,
                         xy[..., 1] * self.scale_y + self.offset_y], axis=-1)


def letterbox_for(frame_w: int, frame_h: int, size: int = DETECTOR_INPUT_SIZE,
                  used_w: int | None = None, used_h: int | None = None) -> Letterbox:
    """Letterbox of a frame into a size x size square. used_w/used_h (default: the whole frame) is the
    top-left part of the frame that is actually resampled (see `detector_input`)."""
    uw, uh = used_w or frame_w, used_h or frame_h
    s = size / max(uw, uh)
    new_w = min(size, max(1, int(round(uw * s))))
    new_h = min(size, max(1, int(round(uh * s))))
    return Letterbox(scale_x=new_w / uw, scale_y=new_h / uh,
                     offset_x=float((size - new_w) // 2), offset_y=float((size - new_h) // 2),
                     frame_w=int(frame_w), frame_h=int(frame_h), size=size)


def box_reduce(img: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k blocks of a (H, W[, C]) uint8 image -> float32 (H // k, W // k[, C]).

    The k - 1 or fewer rows/columns that do not fill a block are dropped. RGBA input (k <= 16) takes a fast
    path: each pixel is read as one uint32 and its four bytes are summed two at a time in 16-bit lanes,
    a few whole-array integer ops instead of per-channel strided ones (4x faster in WebAssembly).
    """
    a = np.asarray(img)
    if k <= 1:
        return a.astype(np.float32)
    h2, w2 = a.shape[0] // k, a.shape[1] // k
    a = a[:h2 * k, :w2 * k]
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 4 and k * k * 255 <= 0xFFFF:
        return _box_reduce_rgba(a, k, h2, w2)
    acc_t = np.uint16 if k * k * 255 <= np.iinfo(np.uint16).max else np.uint32
    rows = a[0::k].astype(acc_t)
    for i in range(1, k):
        rows += a[i::k].astype(acc_t)
    out = rows[:, 0::k].copy()
    for i in range(1, k):
        out += rows[:, i::k]
    return out.astype(np.float32) / np.float32(k * k)


def _box_reduce_rgba(a: np.ndarray, k: int, h2: int, w2: int) -> np.ndarray:
    px = np.ascontiguousarray(a).view("<u4").reshape(h2 * k, w2 * k)  # byte 0 = R ... byte 3 = A
    mask = np.uint32(0x00FF00FF)

    def block_sum(x: np.ndarray) -> np.ndarray:
        rows = x[0::k].copy()
        for i in range(1, k):
            rows += x[i::k]
        out = rows[:, 0::k].copy()
        for i in range(1, k):
            out += rows[:, i::k]
        return out

    rb = block_sum(px & mask)  # R in the low 16 bits, B in the high 16 bits
    ga = block_sum((px >> np.uint32(8)) & mask)  # G low, A high
    out = np.empty((h2, w2, 4), np.float32)
    out[..., 0] = rb & np.uint32(0xFFFF)
    out[..., 1] = ga & np.uint32(0xFFFF)
    out[..., 2] = rb >> np.uint32(16)
    out[..., 3] = ga >> np.uint32(16)
    out /= np.float32(k * k)
    return out


# Like PIL's `reducing_gap`: shrink by an integer factor with a box filter first, while the remaining
# factor stays >= this, then finish with the triangle filter. Costs 1-3 ms instead of 20-300 ms per frame.
REDUCING_GAP = 2.0


def detector_input(rgba: np.ndarray, size: int = DETECTOR_INPUT_SIZE) -> tuple[np.ndarray, Letterbox]:
    """(H, W, 3|4) uint8 frame -> (float32 (1, size, size, 3) RGB in [-1, 1], Letterbox).

    Downscaling: box reduce by k = floor(factor / REDUCING_GAP), then `resize_antialiased`. The padding is
    black (-1), as MediaPipe's letterbox with a zero border gives. The frame is centred.
    """
    a = np.asarray(rgba)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected (H, W, 3|4) frame, got shape {a.shape}")
    h, w = a.shape[:2]
    k = max(1, int(max(w, h) / size // REDUCING_GAP))
    lb = letterbox_for(w, h, size, used_w=(w // k) * k, used_h=(h // k) * k)
    new_w = int(round((w // k) * k * lb.scale_x))
    new_h = int(round((h // k) * k * lb.scale_y))
    # Resampled with its alpha channel, dropped only at the end: channels are independent, and slicing RGB out of
    # the full-size RGBA first costs a strided copy that is dearer than the extra channel.
    small = resize_antialiased(box_reduce(a, k), new_h, new_w)[:, :, :3]
    out = np.full((1, size, size, 3), -1.0, dtype=np.float32)
    ox, oy = int(lb.offset_x), int(lb.offset_y)
    out[0, oy:oy + new_h, ox:ox + new_w] = small * np.float32(1 / 127.5) - np.float32(1.0)
    return out, lb


def letterboxed_input(square: np.ndarray, size: int = DETECTOR_INPUT_SIZE) -> np.ndarray:
    """Detector input from a frame already fitted into the size x size square where `letterbox_for(w, h, size)`
    places it, padding black (as the browser's drawImage does it, see web/js/lens-pipeline.js): (size, size, 3|4)
    uint8 -> float32 (1, size, size, 3) RGB in [-1, 1]. Only the normalisation is left to do here."""
    a = np.asarray(square)
    if a.shape[:2] != (size, size) or a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected a ({size}, {size}, 3|4) square, got shape {a.shape}")
    out = a[None, :, :, :3].astype(np.float32)
    out *= np.float32(1 / 127.5)
    out -= np.float32(1.0)
    return out
