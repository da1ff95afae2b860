"""Turning logits into steady per-face results: softmax, temporal smoothing, honest labels, face tracking."""

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


# ---------------------------------------------------------------- honest labels

# A face whose smoothed top probability is below this shows as "uncertain" (with its two leading classes).
# On 1000 FER+ test faces the shipped model's top probability is >= 0.5 for 81.5% of them, which it gets 88.7% right,
# and below 0.5 for 18.5%, which it gets 44.3% right (build/measure_alignment.py prints these figures): below 0.5
# the label is wrong more often than right, so the page says so.
UNCERTAIN_BELOW = 0.5
# Hysteresis: a class must lead the shown one by this much to replace it, and an uncertain face must reach
# UNCERTAIN_BELOW + UNCERTAIN_BAND to be shown as certain again, so two close classes do not flicker. Both are
# wider than the frame-to-frame wander of a still face's smoothed probabilities (EMA over 5 frames: the top
# one moved within 0.47-0.56 over 40 frames of a hesitant face, tests/test_sequences_real.py).
LABEL_MARGIN = 0.1
UNCERTAIN_BAND = 0.1


@dataclass(frozen=True)
class LabelPolicy:
    """How smoothed probabilities become the label on screen (see `choose_label`)."""

    uncertain_below: float = UNCERTAIN_BELOW
    margin: float = LABEL_MARGIN
    band: float = UNCERTAIN_BAND


@dataclass(frozen=True)
class ShownLabel:
    index: int  # class shown (argmax of the probabilities, held back by the hysteresis)
    uncertain: bool
    top2: tuple[int, int]  # the two leading classes of the probabilities, best first (equal when C = 1)


def choose_label(probs: np.ndarray, previous: ShownLabel | None, policy: LabelPolicy = LabelPolicy()) -> ShownLabel:
    """Label to show for one face given its smoothed probabilities and what was shown last frame.

    The shown class changes only when another class leads it by `margin` (or on the first frame); the face is
    uncertain while its top probability is below `uncertain_below`, and stays uncertain until the top
    probability reaches `uncertain_below + band`.
    """
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    top2 = (int(order[0]), int(order[min(1, p.size - 1)]))
    best = top2[0]
    if previous is None or previous.index >= p.size:
        shown = best
    else:
        shown = best if p[best] - p[previous.index] >= policy.margin else previous.index
    was_uncertain = previous is not None and previous.uncertain
    limit = policy.uncertain_below + (policy.band if was_uncertain else 0.0)
    return ShownLabel(index=shown, uncertain=bool(p[best] < limit), top2=top2)


# ---------------------------------------------------------------- tracking

@dataclass
class Track:
    id: int
    box: tuple[float, float, float, float]
    smoother: Smoother
    missing: int = 0  # consecutive frames without a matching detection
    age: int = 1  # frames with a matching detection
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre motion, px per frame
    probs: np.ndarray | None = field(default=None, repr=False)  # last smoothed probabilities
    shown: ShownLabel | None = None  # label state for the hysteresis

    def predicted_box(self, frames: int = 1) -> tuple[float, float, float, float]:
        """Where the box should be `frames` frames after the last update if the face keeps moving as it did
        (constant velocity)."""
        steps = self.missing + frames
        x, y, w, h = self.box
        return (x + self.velocity[0] * steps, y + self.velocity[1] * steps, w, h)


def _centre(box: Sequence[float]) -> tuple[float, float]:
    return (box[0] + box[2] / 2, box[1] + box[3] / 2)


def centre_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Distance between the centres of two (x, y, w, h) boxes, in face sizes (the larger box side)."""
    (ax, ay), (bx, by) = _centre(a), _centre(b)
    return float(np.hypot(bx - ax, by - ay) / max(a[2], a[3], b[2], b[3], 1e-6))


def _size_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    sa, sb = max(a[2], a[3], 1e-6), max(b[2], b[3], 1e-6)
    return max(sa, sb) / min(sa, sb)


# Velocity is an average of the last few displacements: detector boxes jitter by a few px a frame.
VELOCITY_GAIN = 0.5


class FaceTracker:
    """Stable ids for faces across frames.

    Each track predicts where its face is now from its last box and velocity (constant motion, also over
    frames where it was missed). All (track, detection) pairs closer than `max_distance` face sizes to the
    prediction, with box sizes within a factor `max_size_ratio`, are matched nearest first,
    each track and detection at most once. Unmatched detections open new tracks (fresh id and smoother);
    unmatched tracks coast on their velocity for `max_missing` frames (a blink of the detector or a face
    briefly hidden keeps its id), then are dropped. The prediction is what keeps ids apart when two faces
    cross: each track looks for its face where its own motion leads, not where the other face now is.
    """

    def __init__(self, smoother_factory: Callable[[], Smoother] | None = None, max_distance: float = 0.75,
                 max_missing: int = 10, max_size_ratio: float = 1.6):
        self.smoother_factory = smoother_factory or make_smoother("ema")
        self.max_distance = float(max_distance)
        self.max_missing = int(max_missing)
        self.max_size_ratio = float(max_size_ratio)
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: Sequence[Sequence[float]], frames: int = 1) -> list[Track]:
        """Match this frame's boxes (x, y, w, h), `frames` frames after the last update (more than 1 when the
        detector skipped frames); returns one Track per box, in the order of `boxes`."""
        frames = max(1, int(frames))
        pairs = []
        for ti, t in enumerate(self.tracks):
            pred = t.predicted_box(frames)
            # a face lost for a while may have changed speed: widen its search area with the gap
            reach = self.max_distance * (1.0 + 0.25 * t.missing)
            for di, b in enumerate(boxes):
                if _size_ratio(pred, b) > self.max_size_ratio:
                    continue
                dist = centre_distance(pred, b)
                if dist <= reach:  # cost: nearest first; at equal distance the better overlap wins
                    pairs.append((dist + 1.0 - box_iou_xywh(pred, b), ti, di))
        pairs.sort(key=lambda p: p[0])
        det_track: dict[int, Track] = {}
        used: set[int] = set()
        for _, ti, di in pairs:
            if ti in used or di in det_track:
                continue
            used.add(ti)
            det_track[di] = self.tracks[ti]
        for ti, t in enumerate(self.tracks):
            if ti not in used:
                t.missing += frames
        self.tracks = [t for i, t in enumerate(self.tracks) if i in used or t.missing <= self.max_missing]
        out = []
        for di, b in enumerate(boxes):
            box = tuple(float(v) for v in b)
            t = det_track.get(di)
            if t is None:
                t = Track(id=self._next_id, box=box, smoother=self.smoother_factory())
                self._next_id += 1
                self.tracks.append(t)
            else:
                (ox, oy), (nx, ny) = _centre(t.box), _centre(box)
                steps = t.missing + frames
                step = ((nx - ox) / steps, (ny - oy) / steps)
                gain = 1.0 if t.age == 1 else VELOCITY_GAIN  # the first displacement is all we know
                t.velocity = (t.velocity[0] + gain * (step[0] - t.velocity[0]),
                              t.velocity[1] + gain * (step[1] - t.velocity[1]))
                t.box = box
                t.missing = 0
                t.age += 1
            out.append(t)
        return out

    def reset(self) -> None:
        self.tracks.clear()
        self._next_id = 1
