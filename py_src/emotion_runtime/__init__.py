"""emotion_runtime: the pure Python + numpy part of the in-browser emotion recogniser (runs in Pyodide)."""

from .bridge import AppBridge, smoothing_settings
from .detector import (ANCHORS, DETECTORS, FULL_RANGE, SHORT_RANGE, Detections, DetectorSpec, Face, decode, detect,
                       eye_roll, generate_anchors, nms, to_frame, weighted_nms)
from .labels import FER2013_LABELS, FERPLUS_LABELS, LabelMap, as_label_map
from .pipeline import FramePipeline
from .postprocess import (EmaSmoother, FaceTracker, LabelPolicy, ShownLabel, WindowSmoother, choose_label, make_smoother,
                          softmax)
from .preprocess import (
    CROP_SCALE,
    DETECTOR_INPUT_SIZE,
    EMOTION_INPUT_SIZE,
    GRAY_WEIGHTS,
    NORM_MEAN,
    NORM_STD,
    MAX_ROLL_DEG,
    MIN_ROLL_DEG,
    Letterbox,
    aligned_face_crop,
    detector_input,
    face_batch,
    face_crop,
    normalise,
    resize_antialiased,
    rgba_to_gray,
    square_crop,
)

__version__ = "0.1.0"

__all__ = [
    "ANCHORS", "AppBridge", "CROP_SCALE", "DETECTORS", "DETECTOR_INPUT_SIZE", "DetectorSpec", "FULL_RANGE",
    "SHORT_RANGE", "EMOTION_INPUT_SIZE", "FER2013_LABELS", "FERPLUS_LABELS", "GRAY_WEIGHTS", "MAX_ROLL_DEG",
    "MIN_ROLL_DEG", "NORM_MEAN", "NORM_STD", "Detections", "EmaSmoother", "Face", "FaceTracker", "FramePipeline",
    "LabelMap", "LabelPolicy", "Letterbox", "ShownLabel", "WindowSmoother", "aligned_face_crop", "as_label_map",
    "choose_label", "decode", "detect", "detector_input", "eye_roll", "face_batch", "face_crop", "generate_anchors",
    "make_smoother", "nms", "normalise", "resize_antialiased", "rgba_to_gray", "smoothing_settings", "softmax",
    "square_crop", "to_frame", "weighted_nms", "__version__",
]
