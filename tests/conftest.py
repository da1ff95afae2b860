"""Shared pytest fixtures. Browser/server fixtures live in browser_fixtures.py (see its docstring)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The runtime package is imported from the source tree (it is not pip-installed into the venv).
if str(ROOT / "py_src") not in sys.path:
    sys.path.insert(0, str(ROOT / "py_src"))

from browser_fixtures import browser_context, built_site, playwright_driver, site_server  # noqa: E402,F401

FACE_API_DEMO = ROOT / "node_modules/@vladmandic/face-api/demo"
FACE_DETECTOR_ONNX = ROOT / "web/models/face_detector.onnx"


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


@pytest.fixture(scope="session")
def face_detector():
    """`face_detector(x)` runs web/models/face_detector.onnx on CPU: (1,128,128,3) -> (regressors, scores)."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the face detector")
    if not FACE_DETECTOR_ONNX.is_file():
        pytest.skip(f"{FACE_DETECTOR_ONNX} absent (python build/convert_detector.py)")
    sess = ort.InferenceSession(str(FACE_DETECTOR_ONNX), providers=["CPUExecutionProvider"])

    def run(x):
        reg, cls = sess.run(["regressors", "classificators"], {"input": x})
        return reg, cls

    return run
