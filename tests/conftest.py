"""Shared pytest fixtures. Browser/server fixtures live in browser_fixtures.py (see its docstring)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The runtime package is imported from the source tree (it is not pip-installed into the venv).
if str(ROOT / "py_src") not in sys.path:
    sys.path.insert(0, str(ROOT / "py_src"))

from browser_fixtures import browser_context, built_site, default_model_dir, playwright_driver, site_server  # noqa: E402,F401

FACE_API_DEMO = ROOT / "node_modules/@vladmandic/face-api/demo"
FACE_DETECTOR_ONNX = ROOT / "web/models/face_detector.onnx"
FACE_DETECTOR_FULL_RANGE_ONNX = ROOT / "web/models/face_detector_full_range.onnx"


@pytest.fixture(scope="session")
def sample_photo():
    """Loader for the face-api demo photos (MIT, read from node_modules, never copied into the repo):
    `sample_photo(i)` -> RGBA uint8 (H, W, 4). Skips when node_modules or Pillow is missing."""
    if not FACE_API_DEMO.is_dir():
        pytest.skip("node_modules/@vladmandic/face-api absent (run npm ci)")
    Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to decode the sample JPEGs")
    import numpy as np

    def load(i: int) -> "np.ndarray":
        with Image.open(FACE_API_DEMO / f"sample{i}.jpg") as im:
            return np.asarray(im.convert("RGBA"))

    return load


def _detector_runner(path: Path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the face detector")
    if not path.is_file():
        pytest.skip(f"{path} absent (python build/convert_detector.py)")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x):
        reg, cls = sess.run(["regressors", "classificators"], {"input": x})
        return reg, cls

    return run


@pytest.fixture(scope="session")
def face_detector():
    """`face_detector(x)` runs web/models/face_detector.onnx on CPU: (1,128,128,3) -> (regressors, scores)."""
    return _detector_runner(FACE_DETECTOR_ONNX)


@pytest.fixture(scope="session")
def face_detector_full_range():
    """The full-range model, web/models/face_detector_full_range.onnx: (1,192,192,3) -> (regressors, scores)."""
    return _detector_runner(FACE_DETECTOR_FULL_RANGE_ONNX)


def shipped_emotion_model() -> tuple[Path, Path] | None:
    """(model.onnx, model.json) of the model the site loads by default; None when no model is shipped."""
    default = default_model_dir()
    return None if default is None else (default / "model.onnx", default / "model.json")


@pytest.fixture(scope="session")
def emotion_model():
    """`emotion_model.run(x)` runs the shipped emotion model on CPU: (N, 1, 48, 48) -> logits (N, C);
    `emotion_model.labels` is its sidecar's label list. Skips when the model is not built."""
    import json
    from types import SimpleNamespace

    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the emotion model")
    from model_export.onnx_edit import emotion_feeds
    found = shipped_emotion_model()
    if found is None:
        pytest.skip("no shipped emotion model under web/models/")
    model, sidecar = found
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    labels = json.loads(sidecar.read_text())["labels"]
    return SimpleNamespace(run=lambda x: sess.run(None, emotion_feeds(sess, x))[0], labels=labels)
