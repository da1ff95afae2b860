"""Turning logits into steady per-face probabilities: softmax, temporal smoothing, face tracking."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol, Sequence

import numpy as np


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (max subtracted first), float64 in, float64 out."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


class Smoother(Protocol):
    def update(self, probs: np.ndarray) -> np.ndarray: ...
    def reset(self) -> None: ...


class EmaSmoother:
    """Exponential moving average: s = alpha * p + (1 - alpha) * s; the first value passes through.

    alpha is the weight of the newest frame: 1 = no smoothing, small = slow and steady.
    """

    def __init__(self, alpha: float = 0.3):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.state: np.ndarray | None = None

    def update(self, probs: np.ndarray) -> np.ndarray:
        p = np.asarray(probs, dtype=np.float64)
        self.state = p.copy() if self.state is None else self.alpha * p + (1.0 - self.alpha) * self.state
        return self.state.copy()

    def reset(self) -> None:
        self.state = None


class WindowSmoother:
    """Mean or median of the last k frames (fewer while the window fills).

    The median is taken per class and renormalised to sum 1, so the result stays a distribution.
    """

    def __init__(self, k: int = 15, mode: Literal["mean", "median"] = "mean"):
        if k < 1:
            raise ValueError(f"window k must be >= 1, got {k}")
        if mode not in ("mean", "median"):
            raise ValueError(f"mode must be 'mean' or 'median', got {mode!r}")
        self.k = int(k)
        self.mode = mode
        self.window: deque[np.ndarray] = deque(maxlen=self.k)

    def update(self, probs: np.ndarray) -> np.ndarray:
        self.window.append(np.asarray(probs, dtype=np.float64).copy())
        stack = np.stack(self.window)
        if self.mode == "mean":
            return stack.mean(axis=0)
        med = np.median(stack, axis=0)
        total = med.sum()
        return med / total if total > 0 else stack.mean(axis=0)

    def reset(self) -> None:
        self.window.clear()


def make_smoother(kind: Literal["ema", "mean", "median", "none"] = "ema", alpha: float = 0.3,
                  window: int = 15) -> Callable[[], Smoother]:
    """Factory of fresh smoothers (one per tracked face)."""
    if kind == "ema":
        return lambda: EmaSmoother(alpha)
    if kind in ("mean", "median"):
        return lambda: WindowSmoother(window, kind)
    if kind == "none":
        return lambda: EmaSmoother(1.0)
    raise ValueError(f"unknown smoothing {kind!r}")


def box_iou_xywh(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x, y, w, h) boxes."""
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    iw = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    ih = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: tuple[float, float, float, float]
    smoother: Smoother
    missing: int = 0  # consecutive frames without a matching detection
    age: int = 1  # frames with a matching detection
    probs: np.ndarray | None = field(default=None, repr=False)  # last smoothed probabilities


class FaceTracker:
    """Stable ids for faces across frames by greedy IoU matching.

    Each frame: all (track, detection) pairs with IoU >= iou_threshold are matched best-first, each track and
    detection at most once; unmatched detections open new tracks (fresh id, fresh smoother); unmatched
    tracks are kept for `max_missing` frames (a blink of the detector keeps the id), then dropped.
    """

    def __init__(self, smoother_factory: Callable[[], Smoother] | None = None, iou_threshold: float = 0.3,
                 max_missing: int = 5):
        self.smoother_factory = smoother_factory or make_smoother("ema")
        self.iou_threshold = float(iou_threshold)
        self.max_missing = int(max_missing)
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: Sequence[Sequence[float]]) -> list[Track]:
        """Match this frame's boxes (x, y, w, h); returns one Track per box, in the order of `boxes`."""
        pairs = []
        for ti, t in enumerate(self.tracks):
            for di, b in enumerate(boxes):
                v = box_iou_xywh(t.box, b)
                if v >= self.iou_threshold:
                    pairs.append((v, ti, di))
        pairs.sort(key=lambda p: -p[0])
        det_track: dict[int, Track] = {}
        used: set[int] = set()
        for _, ti, di in pairs:
            if ti in used or di in det_track:
                continue
            used.add(ti)
            det_track[di] = self.tracks[ti]
        for ti, t in enumerate(self.tracks):
            if ti not in used:
                t.missing += 1
        self.tracks = [t for i, t in enumerate(self.tracks) if i in used or t.missing <= self.max_missing]
        out = []
        for di, b in enumerate(boxes):
            t = det_track.get(di)
            if t is None:
                t = Track(id=self._next_id, box=tuple(float(v) for v in b), smoother=self.smoother_factory())
                self._next_id += 1
                self.tracks.append(t)
            else:
                t.box = tuple(float(v) for v in b)
                t.missing = 0
                t.age += 1
            out.append(t)
        return out

    def reset(self) -> None:
        self.tracks.clear()
        self._next_id = 1
