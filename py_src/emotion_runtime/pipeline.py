"""Per-frame glue called from JavaScript (Pyodide), in this order for every frame:

    x = pipe.detector_input(rgba, width, height)   # -> float32 (1, S, S, 3); run the face detector
    n = pipe.decode_faces(regressors, scores)      # -> number of faces kept
    f = pipe.emotion_input()                       # -> float32 (n, 1, 48, 48); run the emotion model if n
    r = pipe.update(logits)  /  pipe.update_json(logits)   # -> per face results (list of dicts / JSON)

A caller that resamples pixels itself (the browser's canvas, much cheaper than numpy in WebAssembly) sends no frame
pixels: it fits the frame into the detector's square where `letterbox_geometry(width, height)` says and calls
`detector_input_square(square, width, height)`, then draws the squares of `crop_geometry()` upright at side x side
and calls `emotion_input_drawn(crops, side)` in place of `emotion_input()`.

On a video, `detection_due(width, height, every)` says whether the detector must run on this frame; when it need
not, `keep_faces(width, height)` takes the place of steps 1-2: the last detection's faces, moved on at their tracks'
velocity, are cut from this frame and classified again (see schedule.DetectionSchedule for when the detector runs).

Buffers may cross the bridge as bytes / bytearray / memoryview (e.g. `Uint8ClampedArray.to_py()`,
`Float32Array.to_py()`) or numpy arrays; nothing here loops over pixels.

The detector (`detector=` / `set_detector`) is "short_range" (S = 128, 896 anchors) or "full_range" (S = 192,
2304 anchors); the caller runs the matching ONNX model. Tracks survive a detector change (same frame pixels).
"""

from __future__ import annotations

import json
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from . import detector as det
from .labels import LabelMap, as_label_map
from .postprocess import (LABEL_MARGIN, UNCERTAIN_BELOW, FaceTracker, LabelPolicy, Track, choose_label,
                          make_smoother, softmax)
from .preprocess import (CROP_SCALE, EMOTION_INPUT_SIZE, Letterbox, crop_square, detector_input, drawn_crops_input,
                         face_batch, letterbox_for, letterboxed_input)
from .schedule import DetectionSchedule


def _as_array(buf: Any, dtype: type) -> np.ndarray:
    """numpy view of an ndarray / bytes-like buffer, no copy when possible."""
    if isinstance(buf, np.ndarray):
        return buf if buf.dtype == dtype else buf.astype(dtype)
    if isinstance(buf, (bytes, bytearray, memoryview)):
        return np.frombuffer(buf, dtype=dtype)
    return np.asarray(buf, dtype=dtype)


def _frame_array(buf: Any, width: int, height: int) -> np.ndarray:
    """(height, width, 3|4) uint8 view of RGBA / RGB pixels given flat or shaped; checks the size."""
    width, height = int(width), int(height)
    a = _as_array(buf, np.uint8)
    if a.ndim == 1:
        channels = a.size // max(width * height, 1)
        if channels not in (3, 4) or channels * width * height != a.size:
            raise ValueError(f"{a.size} bytes is not a {width}x{height} RGBA/RGB frame")
        return a.reshape(height, width, channels)
    if a.shape[:2] != (height, width):
        raise ValueError(f"frame shape {a.shape} does not match {width}x{height}")
    return a


def _moved(face: det.Face, velocity: tuple[float, float], steps: int) -> det.Face:
    """`face` moved on by `steps` frames at `velocity` (px per frame)."""
    dx, dy = velocity[0] * steps, velocity[1] * steps
    x, y, w, h = face.box
    return det.Face((x + dx, y + dy, w, h), face.score, face.keypoints + np.array([dx, dy], np.float32))


class FramePipeline:
    """Stateful frame processor: keeps the current frame and faces between the calls of one frame, and the
    face tracks (ids + smoothers) across frames."""

    def __init__(self, labels: LabelMap | Sequence[str] | Mapping[str, Any] | str,
                 crop_scale: float = CROP_SCALE,
                 smoothing: Literal["ema", "mean", "median", "none"] = "ema",
                 alpha: float = 0.3, window: int = 15,
                 min_score: float | None = None, max_faces: int | None = 8,
                 nms: Literal["weighted", "plain"] = "weighted", nms_iou: float = det.NMS_IOU,
                 track_distance: float = 0.75, max_missing: int = 10,
                 uncertain_below: float = UNCERTAIN_BELOW, label_margin: float = LABEL_MARGIN,
                 align: bool = True, detector: det.DetectorSpec | str = det.SHORT_RANGE):
        if isinstance(labels, str):
            labels = json.loads(labels)  # a sidecar or a list, as JSON text from JS
        self.labels = as_label_map(labels)
        self.crop_scale = float(crop_scale)
        self.align = bool(align)  # turn each crop so the eyes are level (preprocess.aligned_face_crop)
        self.min_score = None if min_score is None else float(min_score)  # None: the detector's own threshold
        self.detector = det.detector_spec(detector)
        self.max_faces = max_faces
        self.nms = nms
        self.nms_iou = float(nms_iou)
        self.tracker = FaceTracker(make_smoother(smoothing, alpha, window), track_distance, max_missing)
        self.label_policy = LabelPolicy(uncertain_below=float(uncertain_below), margin=float(label_margin))
        self.schedule = DetectionSchedule()
        self.frame: np.ndarray | None = None
        self.letterbox: Letterbox | None = None
        self.faces: list[det.Face] = []
        self.results: list[dict[str, Any]] = []
        self.kept = False  # this frame keeps the last detection's faces (keep_faces)
        self.detected_faces: list[det.Face] = []  # the last detection's faces, while frames keep them
        self.face_tracks: list[Track] = []  # the tracks of the last detection's faces, in order
        self.frames_since_detection = 0

    def set_detector(self, name: str) -> int:
        """Switch detector model ("short_range" / "full_range") for the next frames; returns its input side."""
        self.detector = det.detector_spec(name)
        self.letterbox = None
        return self.detector.input_size

    def _frame_key(self, width: int, height: int) -> tuple[int, int, str]:
        return (int(width), int(height), self.detector.name)

    def detection_due(self, width: int, height: int, every: int = 1) -> bool:
        """Whether the detector must run on this width x height video frame, if it is to run at least every `every`
        frames (1: every frame); when not, call `keep_faces` in place of steps 1-2."""
        return self.schedule.due(self._frame_key(width, height), every)

    def keep_faces(self, width: int, height: int, rgba: Any = None) -> int:
        """Steps 1-2 for a frame the detector skips (`detection_due` said so): the last detection's faces are kept,
        each moved on as its track moved between detections (constant velocity), and cut from this frame's `rgba`
        pixels (emotion_input), or, without them, by the caller (crop_geometry -> emotion_input_drawn). Returns the
        number of faces."""
        self.schedule.kept(self._frame_key(width, height))
        self.frame = None if rgba is None else _frame_array(rgba, width, height)
        if not self.kept:
            self.detected_faces = self.faces
        self.kept = True
        # where each face should be now, moving on as its track did (the tracks move with detections only)
        steps = self.frames_since_detection + 1
        self.faces = [_moved(face, track.velocity, steps) for face, track in zip(self.detected_faces, self.face_tracks)]
        return len(self.faces)

    # ---- step 1
    def detector_input(self, rgba: Any, width: int, height: int) -> np.ndarray:
        """RGBA (or RGB) pixels of a width x height frame -> detector input float32 (1, S, S, 3)."""
        a = _frame_array(rgba, width, height)
        self.frame = a
        self.faces = []
        self.kept = False
        x, self.letterbox = detector_input(a, self.detector.input_size)
        return x

    def detector_input_square(self, square: Any, width: int, height: int) -> np.ndarray:
        """Step 1 when the caller resamples the frame itself: it fitted the width x height frame into the current
        detector's square (RGBA or RGB, S x S, black padding) where `letterbox_geometry(width, height)` places it,
        and will cut the face crops too (`crop_geometry` -> `emotion_input_drawn`). Only the square is normalised
        here; the frame's own pixels never cross."""
        size = self.detector.input_size
        self.frame = None
        self.faces = []
        self.kept = False
        self.letterbox = letterbox_for(int(width), int(height), size)
        return letterboxed_input(_frame_array(square, size, size), size)

    def letterbox_geometry(self, width: int, height: int) -> dict[str, int]:
        """Where `detector_input_square` expects a width x height frame inside the current detector's square:
        {"x", "y", "width", "height", "size"} in the square's pixels."""
        lb = letterbox_for(int(width), int(height), self.detector.input_size)
        return {"x": int(lb.offset_x), "y": int(lb.offset_y), "width": int(round(lb.scale_x * lb.frame_w)),
                "height": int(round(lb.scale_y * lb.frame_h)), "size": lb.size}

    # ---- step 2
    def decode_faces(self, regressors: Any, scores: Any) -> int:
        """Detector outputs (1, A, 16) and (1, A, 1) (arrays or float32 buffers) -> number of faces."""
        if self.letterbox is None:
            raise RuntimeError("call detector_input() first")
        reg = _as_array(regressors, np.float32)
        sc = _as_array(scores, np.float32)
        a = self.detector.num_anchors
        if reg.size != a * det.NUM_COORDS or sc.size != a:
            raise ValueError(f"{self.detector.name} detector has {a} anchors, got {reg.size} regressor values "
                             f"and {sc.size} scores (is the other detector model running?)")
        self.faces = det.detect(reg.reshape(1, a, det.NUM_COORDS), sc.reshape(1, a, 1), self.letterbox,
                                self.min_score, self.nms_iou, self.nms, self.max_faces, self.detector)
        self.schedule.ran(self._frame_key(self.letterbox.frame_w, self.letterbox.frame_h))
        return len(self.faces)

    # ---- step 3
    def emotion_input(self) -> np.ndarray:
        """Crops of the current faces -> float32 (N, 1, 48, 48), normalised; N may be 0. With `align`, each
        crop is turned by the face's eye roll so the eyes are level."""
        if self.frame is None:
            if self.faces:
                raise RuntimeError("no frame pixels (detector_input_square): draw the crops of crop_geometry() and "
                                   "call emotion_input_drawn()")
            return np.zeros((0, 1, EMOTION_INPUT_SIZE, EMOTION_INPUT_SIZE), np.float32)
        crops = face_batch(self.frame, [f.box for f in self.faces], self.crop_scale, rolls=self._rolls())
        self.schedule.crops(crops)
        return crops

    def _rolls(self) -> list[float] | None:
        return [det.eye_roll(f.keypoints) for f in self.faces] if self.align else None

    def crop_geometry(self) -> list[dict[str, float]]:
        """Step 3 for a caller that resamples the crops itself: per current face, the square `emotion_input` would
        cut, {"cx", "cy", "side", "roll"} (frame pixels; roll in degrees, clockwise on screen, 0 = upright). The
        crop is the square's pixels with the square turned upright, drawn top to bottom into side x side images
        for `emotion_input_drawn`."""
        rolls = self._rolls() or [0.0] * len(self.faces)
        return [dict(zip(("cx", "cy", "side", "roll"), crop_square(f.box, r, self.crop_scale)))
                for f, r in zip(self.faces, rolls)]

    def emotion_input_drawn(self, rgba: Any, side: int) -> np.ndarray:
        """The current faces' crops as the caller drew them from `crop_geometry` (RGBA, RGB or grey, side x side each,
        stacked top to bottom) -> float32 (N, 1, 48, 48), normalised."""
        crops = drawn_crops_input(_as_array(rgba, np.uint8), len(self.faces), side)
        self.schedule.crops(crops)
        return crops

    # ---- step 4
    def update(self, logits: Any = None) -> list[dict[str, Any]]:
        """Emotion logits (N, C) (array or float32 buffer; None/empty when N = 0) -> one dict per face:
        {"id", "box": [x, y, w, h], "score", "index", "label", "display", "emoji", "colour", "uncertain",
        "top2", "probs", "raw_probs"}.

        `index`/`label`/... is the class to show: the argmax of the smoothed `probs`, held by the label
        hysteresis (`postprocess.choose_label`); `uncertain` is true while the top smoothed probability is
        below the threshold, and `top2` holds the indices of the two leading classes to show instead.
        Tracks advance even when no face is seen, so ids expire after `max_missing` empty frames."""
        n, c = len(self.faces), len(self.labels)
        if n == 0:
            probs = np.zeros((0, c))
        else:
            lg = _as_array(logits, np.float32)
            if lg.size != n * c:
                raise ValueError(f"expected {n}x{c} logits, got {lg.size} values")
            probs = softmax(lg.reshape(n, c))
        if self.kept:  # the tracks move with detections only: a kept box is no new evidence of where a face is
            tracks = self.face_tracks
            self.frames_since_detection += 1
        else:
            tracks = self.tracker.update([f.box for f in self.faces], frames=self.frames_since_detection + 1)
            self.face_tracks, self.frames_since_detection = tracks, 0
        results = []
        for face, track, p in zip(self.faces, tracks, probs):
            smoothed = track.smoother.update(p)
            track.probs = smoothed
            track.shown = shown = choose_label(smoothed, track.shown, self.label_policy)
            k = shown.index
            results.append({
                "id": track.id,
                "box": [round(v, 1) for v in face.box],
                "score": round(face.score, 4),
                "index": k,
                "label": self.labels.labels[k],
                "display": self.labels.display[k],
                "emoji": self.labels.emoji[k],
                "colour": self.labels.colours[k],
                "uncertain": shown.uncertain,
                "top2": list(shown.top2),
                "probs": [round(float(v), 4) for v in smoothed],
                "raw_probs": [round(float(v), 4) for v in p],
            })
        self.results = results
        return results

    def update_json(self, logits: Any = None) -> str:
        """`update` as one JSON string (cheaper across the Pyodide bridge than nested proxies)."""
        return json.dumps(self.update(logits), ensure_ascii=False, separators=(",", ":"))

    def faces_json(self) -> str:
        """Current detections (before classification) as JSON: [{"box", "score", "keypoints"}]."""
        return json.dumps([{"box": [round(v, 1) for v in f.box], "score": round(f.score, 4),
                            "keypoints": np.round(f.keypoints, 1).tolist()} for f in self.faces],
                          separators=(",", ":"))

    def labels_json(self) -> str:
        return json.dumps(self.labels.to_dict(), ensure_ascii=False)

    def reset(self) -> None:
        """Forget tracks (e.g. when the source changes from webcam to an uploaded photo)."""
        self.tracker.reset()
        self.schedule.forget()
        self.frame, self.letterbox, self.faces, self.results = None, None, [], []
        self.kept, self.detected_faces, self.face_tracks, self.frames_since_detection = False, [], [], 0
