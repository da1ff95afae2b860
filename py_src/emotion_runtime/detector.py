"""BlazeFace post-processing: anchors, box decoding, (weighted) NMS, mapping to frame pixels.

Two models, converted from MediaPipe's TFLite files by `build/convert_detector.py`, described by a
`DetectorSpec` (SHORT_RANGE, FULL_RANGE):
- short-range `web/models/face_detector.onnx`: input 128x128, 896 anchors; faces within ~2 m of a webcam,
- full-range `web/models/face_detector_full_range.onnx`: input 192x192, 2304 anchors; faces up to ~5 m, and the
  small faces of group photos.
Both have
- input  `input`          float32 [1, S, S, 3], NHWC, RGB in [-1, 1] (see `preprocess.detector_input`),
- output `regressors`     float32 [1, A, 16]: per anchor dx, dy, w, h, then 6 keypoints (x, y), in input px,
- output `classificators` float32 [1, A, 1]: per anchor face logit.

The constants mirror MediaPipe's face_detection graphs (face_detection.pbtxt: SsdAnchorsCalculator +
TensorsToDetectionsCalculator + NonMaxSuppressionCalculator options; face_detection_short_range.pbtxt and
face_detection_full_range.pbtxt: input size, strides, interpolated scale, score threshold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np

from .preprocess import DETECTOR_INPUT_SIZE, Letterbox

NUM_COORDS = 16
NUM_KEYPOINTS = 6
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")
STRIDES = (8, 16, 16, 16)
ANCHOR_OFFSET = 0.5
SCORE_CLIP = 100.0
MIN_SCORE = 0.5
NMS_IOU = 0.3


def generate_anchors(input_size: int = DETECTOR_INPUT_SIZE, strides: tuple[int, ...] = STRIDES,
                     offset: float = ANCHOR_OFFSET, per_layer: int = 2) -> np.ndarray:
    """SSD anchors as MediaPipe builds them for BlazeFace: float32 (A, 4) rows (x_centre, y_centre, w, h).

    Consecutive layers with the same stride share one grid; each layer adds `per_layer` anchors per cell
    (aspect ratio 1, plus one for the interpolated scale when interpolated_scale_aspect_ratio > 0). With
    fixed_anchor_size every anchor is 1 x 1 (normalised). Short-range (128 px, strides 8, 16, 16, 16, 2 per
    layer): 16*16*2 = 512 + 8*8*6 = 384 = 896 anchors; full-range (192 px, stride 4, 1 per layer): 48*48 = 2304;
    row-major cell order.
    """
    anchors = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        per_cell = 0
        while layer < len(strides) and strides[layer] == stride:
            per_cell += per_layer
            layer += 1
        n = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid((np.arange(n) + offset) / n, (np.arange(n) + offset) / n, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        anchors.append(np.repeat(centres, per_cell, axis=0))
    centres = np.concatenate(anchors).astype(np.float32)
    return np.concatenate([centres, np.ones_like(centres)], axis=1)


@dataclass(frozen=True)
class DetectorSpec:
    """One BlazeFace model: what its input and outputs look like and how MediaPipe decodes them."""

    name: str
    input_size: int  # square detector input side, px
    strides: tuple[int, ...]  # SsdAnchorsCalculator strides (one per layer)
    anchors_per_layer: int  # 2 with interpolated_scale_aspect_ratio > 0, else 1
    min_score: float  # TensorsToDetectionsCalculator min_score_thresh

    @property
    def anchors(self) -> np.ndarray:
        return _anchors(self)

    @property
    def num_anchors(self) -> int:
        return int(self.anchors.shape[0])


@lru_cache(maxsize=None)
def _anchors(spec: DetectorSpec) -> np.ndarray:
    a = generate_anchors(spec.input_size, spec.strides, ANCHOR_OFFSET, spec.anchors_per_layer)
    a.setflags(write=False)
    return a


SHORT_RANGE = DetectorSpec("short_range", DETECTOR_INPUT_SIZE, STRIDES, 2, MIN_SCORE)
FULL_RANGE = DetectorSpec("full_range", 192, (4,), 1, 0.6)
DETECTORS = {spec.name: spec for spec in (SHORT_RANGE, FULL_RANGE)}
ANCHORS = SHORT_RANGE.anchors
NUM_ANCHORS = SHORT_RANGE.num_anchors


def detector_spec(spec: "DetectorSpec | str") -> DetectorSpec:
    """A DetectorSpec, or its name ("short_range", "full_range")."""
    if isinstance(spec, DetectorSpec):
        return spec
    if spec not in DETECTORS:
        raise ValueError(f"unknown detector {spec!r}; use one of {', '.join(DETECTORS)}")
    return DETECTORS[spec]


@dataclass
class Detections:
    """Detector output in normalised [0, 1] detector-input coordinates."""

    boxes: np.ndarray  # (M, 4) xmin, ymin, xmax, ymax
    scores: np.ndarray  # (M,)
    keypoints: np.ndarray  # (M, 6, 2) x, y

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, idx: np.ndarray) -> "Detections":
        return Detections(self.boxes[idx], self.scores[idx], self.keypoints[idx])


@dataclass
class Face:
    """One detected face in frame pixels."""

    box: tuple[float, float, float, float]  # x, y, w, h (top-left corner + size)
    score: float
    keypoints: np.ndarray = field(repr=False)  # (6, 2) x, y; order KEYPOINT_NAMES


def eye_roll(keypoints: np.ndarray) -> float:
    """Head roll in degrees from a face's keypoints (KEYPOINT_NAMES order): the angle of the line from the
    right eye (on the image's left) to the left eye; 0 = eyes level, positive = turned clockwise on screen
    (image y points down)."""
    (rx, ry), (lx, ly) = np.asarray(keypoints, np.float64)[:2]
    return float(np.degrees(np.arctan2(ly - ry, lx - rx)))


def sigmoid_scores(raw: np.ndarray, clip: float = SCORE_CLIP) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(raw, np.float64), -clip, clip)))


def decode(regressors: np.ndarray, scores: np.ndarray, min_score: float = MIN_SCORE,
           anchors: np.ndarray = ANCHORS, input_size: int = DETECTOR_INPUT_SIZE) -> Detections:
    """Raw model outputs (1, 896, 16) and (1, 896, 1) -> candidate detections with score >= min_score.

    centre = raw / input_size * anchor_size + anchor_centre; size = raw / input_size * anchor_size
    (MediaPipe's reverse_output_order: raw coords are x, y, w, h). No NMS here.
    """
    reg = np.asarray(regressors, dtype=np.float32).reshape(-1, NUM_COORDS)
    raw = np.asarray(scores, dtype=np.float32).reshape(-1)
    if reg.shape[0] != anchors.shape[0] or raw.shape[0] != anchors.shape[0]:
        raise ValueError(f"expected {anchors.shape[0]} anchors, got {reg.shape[0]} boxes / {raw.shape[0]} scores")
    prob = sigmoid_scores(raw)
    keep = np.nonzero(prob >= min_score)[0]
    reg, prob, anc = reg[keep], prob[keep], anchors[keep]
    axy, awh = anc[:, None, 0:2], anc[:, None, 2:4]
    centre = reg[:, 0:2] / input_size * anc[:, 2:4] + anc[:, 0:2]
    size = reg[:, 2:4] / input_size * anc[:, 2:4]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    kps = reg[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) / input_size * awh + axy
    return Detections(boxes.astype(np.float32), prob.astype(np.float32), kps.astype(np.float32))


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (xmin, ymin, xmax, ymax) box with each row of boxes (M, 4)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    box = np.asarray(box, dtype=np.float64)
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(dets: Detections, iou_threshold: float = NMS_IOU, max_out: int | None = None) -> Detections:
    """Plain NMS: keep the best box, drop the others overlapping it by IoU > iou_threshold, repeat."""
    order = np.argsort(-dets.scores, kind="stable")
    kept = []
    while order.size and (max_out is None or len(kept) < max_out):
        best = order[0]
        kept.append(best)
        order = order[1:][iou(dets.boxes[best], dets.boxes[order[1:]]) <= iou_threshold]
    return dets.take(np.asarray(kept, dtype=np.intp))


def weighted_nms(dets: Detections, iou_threshold: float = NMS_IOU, max_out: int | None = None) -> Detections:
    """MediaPipe's WEIGHTED NMS: the best box and every box overlapping it (IoU > threshold) are merged into
    their score-weighted mean (box corners and keypoints); the merged detection keeps the best score."""
    order = np.argsort(-dets.scores, kind="stable")
    boxes, scores, kps = [], [], []
    while order.size and (max_out is None or len(boxes) < max_out):
        best = order[0]
        overlap = iou(dets.boxes[best], dets.boxes[order]) > iou_threshold
        overlap[0] = True  # the best box always belongs to its own cluster
        members = order[overlap]
        w = dets.scores[members].astype(np.float64)
        w = w / w.sum()
        boxes.append((dets.boxes[members] * w[:, None]).sum(axis=0))
        kps.append((dets.keypoints[members] * w[:, None, None]).sum(axis=0))
        scores.append(dets.scores[best])
        order = order[~overlap]
    if not boxes:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                          np.zeros((0, NUM_KEYPOINTS, 2), np.float32))
    return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(kps, np.float32))


def to_frame(dets: Detections, letterbox: Letterbox) -> list[Face]:
    """Normalised detector coordinates -> Faces in frame pixels.

    Boxes are not clipped (a face cut by the frame edge keeps its true centre, which the crop needs);
    a box whose centre lies outside the frame (in the letterbox padding) is dropped.
    """
    faces = []
    s = letterbox.size
    for box, score, kp in zip(dets.boxes, dets.scores, dets.keypoints):
        (x0, y0), (x1, y1) = letterbox.to_frame(np.asarray(box, np.float64).reshape(2, 2) * s)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if not (0 <= cx < letterbox.frame_w and 0 <= cy < letterbox.frame_h) or x1 <= x0 or y1 <= y0:
            continue
        faces.append(Face(box=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)), score=float(score),
                          keypoints=letterbox.to_frame(np.asarray(kp, np.float64) * s)))
    return faces


def detect(regressors: np.ndarray, scores: np.ndarray, letterbox: Letterbox, min_score: float | None = None,
           iou_threshold: float = NMS_IOU, method: Literal["weighted", "plain"] = "weighted",
           max_faces: int | None = None, spec: DetectorSpec | str = SHORT_RANGE) -> list[Face]:
    """decode -> NMS -> frame pixels, best score first. min_score None: the model's own (`spec.min_score`)."""
    spec = detector_spec(spec)
    dets = decode(regressors, scores, spec.min_score if min_score is None else min_score, spec.anchors,
                  spec.input_size)
    if method == "weighted":
        dets = weighted_nms(dets, iou_threshold)
    elif method == "plain":
        dets = nms(dets, iou_threshold)
    else:
        raise ValueError(f"unknown NMS method {method!r}")
    faces = to_frame(dets, letterbox)  # may drop boxes in the padding, so cap the count afterwards
    return faces if max_faces is None else faces[:max_faces]
