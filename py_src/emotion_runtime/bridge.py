"""The page's handle on `FramePipeline` (web/js/lens-pipeline.js calls it from Pyodide, in a Web Worker or on the
main thread).

It adds what the page needs around the four per-frame steps:
- buffers may arrive as Pyodide JsProxy objects (JS typed arrays): they are turned into Python buffers here;
- the face cap is applied after decoding, so the page can still say how many faces were seen ("too many faces");
- smoothing is given as the page shows it, a mode and a span k in frames (EMA alpha = 2 / (k + 1), the usual
  span <-> alpha relation; k is the window length for mean / median), validated in one place;
- results and labels cross the bridge as JSON text (one string is cheaper than nested proxies);
- the face detector ("short_range" / "full_range") is chosen per frame with `set_detector`, before step 1 (the page
  runs the matching ONNX model); it survives a smoothing change.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from . import detector as det
from .pipeline import FramePipeline

SMOOTHING_MODES = ("ema", "mean", "median", "none")
MAX_SPAN = 30


def _buffer(data: Any) -> Any:
    """A JS typed array (Pyodide JsProxy) -> memoryview; anything else (bytes, numpy, None) unchanged."""
    to_py = getattr(data, "to_py", None)
    return to_py() if callable(to_py) else data


def smoothing_settings(mode: str, span: int | float) -> dict[str, Any]:
    """{"mode", "k", "alpha"}: `mode` checked, the span rounded and clamped to 1..MAX_SPAN frames."""
    if mode not in SMOOTHING_MODES:
        raise ValueError(f"unknown smoothing mode {mode!r} (use one of {', '.join(SMOOTHING_MODES)})")
    k = max(1, min(MAX_SPAN, int(round(float(span)))))
    return {"mode": mode, "k": k, "alpha": 2.0 / (k + 1)}


class AppBridge:
    """One emotion model's per-frame pipeline, as the page drives it."""

    def __init__(self, sidecar: str | Mapping[str, Any], max_faces: int = 8, smoothing: str = "ema",
                 span: int | float = 5):
        self.sidecar = json.loads(sidecar) if isinstance(sidecar, str) else dict(sidecar)
        self.max_faces = int(max_faces)
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        self.detected = 0  # faces found in the current frame, before the cap
        self.detector = det.SHORT_RANGE
        self.set_smoothing(smoothing, span)

    def set_smoothing(self, mode: str, span: int | float) -> str:
        """New smoothing (forgets the current tracks); returns the settings in force as JSON {"mode", "k"}."""
        s = smoothing_settings(mode, span)
        # max_faces=None in the pipeline: the cap is applied in decode_faces, after counting.
        self.pipe = FramePipeline(self.sidecar, smoothing=s["mode"], alpha=s["alpha"], window=s["k"], max_faces=None,
                                  detector=self.detector)
        self.smoothing = {"mode": s["mode"], "k": s["k"]}
        return self.smoothing_json()

    def smoothing_json(self) -> str:
        """The smoothing in force as JSON {"mode", "k"}."""
        return json.dumps(self.smoothing)

    def set_detector(self, name: str) -> int:
        """The face detector for the next frames ("short_range" / "full_range"; tracks are kept); returns its input
        side. Cheap when it is already the one in use."""
        if name != self.detector.name:
            self.pipe.set_detector(name)
            self.detector = self.pipe.detector
        return self.detector.input_size

    def detection_due(self, width: int, height: int, every: int) -> bool:
        """Whether the face detector must run on this video frame (FramePipeline.detection_due); when not, call
        keep_faces instead of detector_input / decode_faces."""
        return self.pipe.detection_due(width, height, every)

    def keep_faces(self, width: int, height: int, rgba: Any = None) -> int:
        """The last detection's faces for this frame, cut from `rgba` or drawn by the caller (crop_geometry_json);
        `detected` stays that detection's count."""
        return self.pipe.keep_faces(width, height, _buffer(rgba))

    def detector_input(self, rgba: Any, width: int, height: int) -> np.ndarray:
        return self.pipe.detector_input(_buffer(rgba), width, height)

    def detector_input_square(self, square: Any, width: int, height: int) -> np.ndarray:
        """As detector_input, with the frame already fitted into the detector's square by the caller (where
        letterbox_json says), who also draws the face crops (crop_geometry_json -> emotion_input_drawn)."""
        return self.pipe.detector_input_square(_buffer(square), width, height)

    def letterbox_json(self, width: int, height: int) -> str:
        """Where to draw a width x height frame in the current detector's square, as JSON {x, y, width, height,
        size}."""
        return json.dumps(self.pipe.letterbox_geometry(width, height))

    def decode_faces(self, regressors: Any, scores: Any) -> int:
        """Faces kept (at most max_faces, best score first); `detected` holds how many were found."""
        self.detected = self.pipe.decode_faces(_buffer(regressors), _buffer(scores))
        if self.detected > self.max_faces:
            self.pipe.faces = self.pipe.faces[: self.max_faces]
        return len(self.pipe.faces)

    def emotion_input(self) -> np.ndarray:
        return self.pipe.emotion_input()

    def crop_geometry_json(self) -> str:
        """The squares to cut the kept faces' crops from, as JSON [{cx, cy, side, roll}] (FramePipeline.crop_geometry)."""
        return json.dumps(self.pipe.crop_geometry())

    def emotion_input_drawn(self, rgba: Any, side: int) -> np.ndarray:
        """The kept faces' crops as the caller drew them (RGBA, side x side each, stacked) -> emotion model input."""
        return self.pipe.emotion_input_drawn(_buffer(rgba), side)

    def update_json(self, logits: Any = None) -> str:
        return self.pipe.update_json(_buffer(logits))

    def labels_json(self) -> str:
        return self.pipe.labels_json()

    def reset(self) -> None:
        self.pipe.reset()
        self.detected = 0
