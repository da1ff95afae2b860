"""FramePipeline: the per-frame call sequence used from JavaScript, and the label maps."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

import emotion_runtime
from emotion_runtime import FER2013_LABELS, FERPLUS_LABELS, FramePipeline, LabelMap
from emotion_runtime.postprocess import softmax
from emotion_runtime.preprocess import face_batch

W, H = 640, 480
# One face built by hand: stride-16 anchor at cell (row 3, col 5) = centre (5.5/8, 3.5/8) of the 128 px input,
# a 25.6 px (0.2) square box. Letterbox of 640x480: scale 0.2, offset (0, 16), so in the frame:
# centre (88 / 0.2, (56 - 16) / 0.2) = (440, 200), side 128 -> box (376, 136, 128, 128).
ANCHOR = 512 + 6 * (8 * 3 + 5)
BOX = (376.0, 136.0, 128.0, 128.0)


def _frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 4), dtype=np.uint8)


def _outputs(dx_px: float = 0.0, score: float = 3.0):
    reg = np.zeros((1, 896, 16), np.float32)
    sc = np.full((1, 896, 1), -10.0, np.float32)
    reg[0, ANCHOR, :4] = [dx_px, 0.0, 25.6, 25.6]
    sc[0, ANCHOR, 0] = score
    return reg, sc


def test_version_and_exports():
    assert emotion_runtime.__version__ == "0.1.0"
    for name in ("FramePipeline", "LabelMap", "softmax", "resize_antialiased", "normalise", "rgba_to_gray",
                 "GRAY_WEIGHTS", "NORM_MEAN", "NORM_STD", "CROP_SCALE", "EMOTION_INPUT_SIZE", "DETECTOR_INPUT_SIZE"):
        assert hasattr(emotion_runtime, name), name


def test_accepts_bytes_bytearray_memoryview_and_arrays():
    frame = _frame()
    p = FramePipeline(FER2013_LABELS)
    ref = p.detector_input(frame, W, H)
    assert ref.shape == (1, 128, 128, 3) and ref.dtype == np.float32
    assert -1.0 <= ref.min() and ref.max() <= 1.0
    for buf in (frame.tobytes(), bytearray(frame.tobytes()), memoryview(frame.tobytes()), frame.reshape(-1),
                np.ascontiguousarray(frame[..., :3]).tobytes()):
        np.testing.assert_array_equal(p.detector_input(buf, W, H), ref)
    with pytest.raises(ValueError):
        p.detector_input(frame.tobytes()[:-4], W, H)
    with pytest.raises(ValueError):
        p.detector_input(frame, W + 1, H)


def test_one_frame_hand_built_face():
    frame = _frame(1)
    p = FramePipeline(FER2013_LABELS, crop_scale=1.25)
    p.detector_input(frame.tobytes(), W, H)
    reg, sc = _outputs()
    # float32 buffers as they come from JS (Float32Array.to_py() is a memoryview)
    assert p.decode_faces(memoryview(reg.tobytes()), memoryview(sc.tobytes())) == 1
    np.testing.assert_allclose(p.faces[0].box, BOX, atol=1e-3)
    x = p.emotion_input()
    assert x.shape == (1, 1, 48, 48) and x.dtype == np.float32
    np.testing.assert_array_equal(x, face_batch(frame, [BOX], 1.25))
    logits = np.array([[0, 0, 0, 2, 0, 0, 0]], np.float32)
    (r,) = p.update(logits.tobytes())
    assert r["id"] == 1
    assert r["label"] == "happy" and r["display"] == "Happy"
    assert r["box"] == [376.0, 136.0, 128.0, 128.0]
    assert r["score"] == pytest.approx(1 / (1 + math.exp(-3)), abs=1e-4)
    np.testing.assert_allclose(r["raw_probs"], softmax(logits)[0], atol=1e-4)
    np.testing.assert_allclose(r["probs"], r["raw_probs"])  # first frame: nothing to smooth with
    assert set(r) >= {"id", "box", "score", "label", "probs", "raw_probs"}


def test_smoothing_and_ids_across_frames():
    p = FramePipeline(["a", "b"], smoothing="ema", alpha=0.5)
    seq = [(0.0, [4.0, -4.0]), (2.0, [-4.0, 4.0]), (4.0, [-4.0, 4.0])]  # the face drifts 2 px/frame
    probs = []
    for dx, lg in seq:
        p.detector_input(_frame(), W, H)
        p.decode_faces(*_outputs(dx_px=dx))
        (r,) = json.loads(p.update_json(np.array([lg], np.float32)))
        assert r["id"] == 1
        probs.append(r["probs"])
    hi, lo = softmax([4.0, -4.0])
    np.testing.assert_allclose(probs[1], [(hi + lo) / 2, (hi + lo) / 2], atol=1e-4)
    np.testing.assert_allclose(probs[2], [0.25 * hi + 0.75 * lo, 0.25 * lo + 0.75 * hi], atol=1e-4)
    assert r["label"] == "b"


def test_window_median_smoothing_through_pipeline():
    p = FramePipeline(["a", "b", "c"], smoothing="median", window=3)
    for lg in ([5, 0, 0], [5, 0, 0], [0, 0, 9]):  # one glitch frame
        p.detector_input(_frame(), W, H)
        p.decode_faces(*_outputs())
        (r,) = p.update(np.array([lg], np.float32))
    assert r["label"] == "a"
    assert r["raw_probs"][2] > 0.99


def test_no_face_frames_age_tracks():
    p = FramePipeline(["a", "b"], max_missing=1)
    p.detector_input(_frame(), W, H)
    p.decode_faces(*_outputs())
    assert p.update(np.zeros((1, 2), np.float32))[0]["id"] == 1
    for _ in range(2):  # two empty frames > max_missing
        p.detector_input(_frame(), W, H)
        assert p.decode_faces(*_outputs(score=-5.0)) == 0
        assert p.emotion_input().shape == (0, 1, 48, 48)
        assert p.update(None) == [] and p.update_json(None) == "[]"
    p.detector_input(_frame(), W, H)
    p.decode_faces(*_outputs())
    assert p.update(np.zeros((1, 2), np.float32))[0]["id"] == 2


def test_wrong_logit_count_is_an_error():
    p = FramePipeline(["a", "b", "c"])
    p.detector_input(_frame(), W, H)
    p.decode_faces(*_outputs())
    with pytest.raises(ValueError):
        p.update(np.zeros((1, 2), np.float32))


def test_decode_before_input_is_an_error():
    with pytest.raises(RuntimeError):
        FramePipeline(["a"]).decode_faces(*_outputs())


def test_max_faces():
    reg, sc = _outputs()
    for j in (10, 300, 700):  # three more, far apart
        sc[0, j, 0] = 1.0
        reg[0, j, 2:4] = 10.0
    p = FramePipeline(["a"], max_faces=2)
    p.detector_input(_frame(), W, H)
    assert p.decode_faces(reg, sc) == 2
    assert p.faces[0].score == pytest.approx(1 / (1 + math.exp(-3)))


# ---------------------------------------------------------------- labels

def test_label_orders():
    assert FER2013_LABELS == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert list(FER2013_LABELS) == sorted(FER2013_LABELS)  # Kaggle folders, alphabetical
    assert FERPLUS_LABELS == ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


def test_label_map_from_sidecar_and_custom_list():
    lm = LabelMap.from_sidecar({"labels": list(FERPLUS_LABELS), "sha256": "x",
                                "display": {"happiness": "Joy"}})
    assert len(lm) == 8 and lm[1] == "happiness" and lm.index("contempt") == 7
    assert lm.display[1] == "Joy" and lm.display[0] == "Neutral" and lm.display[4] == "Angry"
    custom = LabelMap.from_list(("happy", "peace", "sad"), emoji=["A", "B", "C"])
    assert custom.display == ("Happy", "Peace", "Sad") and custom.emoji == ("A", "B", "C")
    odd = LabelMap.from_list(["thumbs_up", "thumbs_down"])
    assert odd.display == ("Thumbs Up", "Thumbs Down") and odd.emoji == ("", "")
    assert len(set(odd.colours)) == 2
    with pytest.raises(ValueError):
        LabelMap.from_list(["a", "a"])
    with pytest.raises(ValueError):
        LabelMap.from_sidecar({"classes": ["a"]})


def test_pipeline_labels_from_json_text():
    p = FramePipeline(json.dumps({"labels": ["happy", "peace", "sad"]}))
    assert json.loads(p.labels_json())["labels"] == ["happy", "peace", "sad"]
    p.detector_input(_frame(), W, H)
    p.decode_faces(*_outputs())
    (r,) = p.update(np.array([[0, 3, 0]], np.float32))
    assert r["label"] == "peace" and r["emoji"] == "\u270C\uFE0F"


# ---------------------------------------------------------------- real photo, all four steps

def test_real_photo_full_sequence(sample_photo, face_detector):
    from PIL import Image

    photo = sample_photo(3)[150:750, 450:1250]  # two faces of sample3, as a 4:3 window
    frame = np.asarray(Image.fromarray(photo).resize((640, 480), Image.BILINEAR))
    p = FramePipeline(FER2013_LABELS)
    x = p.detector_input(memoryview(frame.tobytes()), 640, 480)
    reg, sc = face_detector(x)
    n = p.decode_faces(memoryview(reg.tobytes()), memoryview(sc.tobytes()))
    assert n == 2
    crops = p.emotion_input()
    assert crops.shape == (2, 1, 48, 48)
    assert crops.min() >= -1.0 and crops.max() <= 1.0 and crops.std() > 0.1
    logits = np.tile(np.arange(7, dtype=np.float32), (n, 1))
    res = json.loads(p.update_json(logits.tobytes()))
    assert [r["label"] for r in res] == ["surprise", "surprise"]
    assert sorted(r["id"] for r in res) == [1, 2]
    # sample3's faces: centres (1180, 380) and (690, 490) in the photo -> frame px (x - 450, y - 150) * 0.8
    centres = sorted((r["box"][0] + r["box"][2] / 2, r["box"][1] + r["box"][3] / 2) for r in res)
    expected = [((690 - 450) * 0.8, (490 - 150) * 0.8), ((1180 - 450) * 0.8, (380 - 150) * 0.8)]
    np.testing.assert_allclose(centres, expected, atol=40)


# ---------------------------------------------------------------- the same code inside Pyodide (wasm32)

_PYODIDE_RUNNER = r"""
import { loadPyodide } from "__ROOT__/node_modules/pyodide/pyodide.mjs";
import fs from "fs";
const [pkgDir, workDir] = process.argv.slice(2);
// The standard library and numpy as the site ships them (build/precompile_python.py: trimmed, compiled as -OO),
// and Python started as web/js/runtime.js starts it.
const py = await loadPyodide({ indexURL: "__ROOT__/node_modules/pyodide/", stdLibURL: process.argv[5],
                               env: JSON.parse(process.argv[6]) });
// numpy unpacked as the page installs it (its trimmed standard library has no tarfile for loadPackage).
const sitePackages = py.runPython("import site; site.getsitepackages()[0]");
py.unpackArchive(new Uint8Array(fs.readFileSync(process.argv[4])), "wheel", { extractDir: sitePackages });
py.runPython(`import sys\nsys.path_importer_cache["${sitePackages}"].invalidate_caches()`);
py.FS.mkdirTree("/home/pyodide/emotion_runtime");
for (const f of fs.readdirSync(pkgDir)) {
  if (f.endsWith(".py")) py.FS.writeFile("/home/pyodide/emotion_runtime/" + f, fs.readFileSync(pkgDir + "/" + f));
}
const f32 = (name) => { const b = fs.readFileSync(workDir + "/" + name); return new Float32Array(b.buffer, b.byteOffset, b.length / 4); };
// typed arrays as the page hands them over
py.globals.set("js_frame", new Uint8ClampedArray(fs.readFileSync(workDir + "/frame.bin")));
py.globals.set("js_reg", f32("reg.bin"));
py.globals.set("js_cls", f32("cls.bin"));
py.globals.set("js_logits", f32("logits.bin"));
const out = await py.runPythonAsync(`
import sys, json, platform, numpy as np
sys.path.insert(0, "/home/pyodide")
from emotion_runtime import FramePipeline, FER2013_LABELS
p = FramePipeline(FER2013_LABELS)
x = p.detector_input(js_frame.to_py(), 640, 480)
n = p.decode_faces(js_reg.to_py(), js_cls.to_py())
e = p.emotion_input()
res = p.update_json(js_logits.to_py())
json.dumps({"platform": platform.machine(), "intp": np.dtype(np.intp).itemsize, "numpy": np.__version__,
            "x": x.ravel()[::97].tolist(), "n": n, "e": e.ravel()[::7].tolist(), "res": res})
`);
fs.writeFileSync(workDir + "/out.json", out);
"""


@pytest.mark.slow
def test_same_results_in_pyodide(tmp_path):
    """Runs the frame sequence inside Pyodide 0.27.7 + numpy 2.0.2 (wasm32: 32-bit intp, no BLAS) under node, with
    the shipped (trimmed, -OO) standard library and numpy and JS typed arrays crossing the bridge, and compares with
    CPython."""
    import shutil
    import subprocess

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "build"))
    from precompile_python import python_env

    wheels = sorted((ROOT / "build/vendor/pyc").glob("numpy-*-pyodide_*_wasm32.whl"))
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (ROOT / "node_modules/pyodide/pyodide.mjs").is_file():
        pytest.skip("node_modules/pyodide absent (run npm ci)")
    if not wheels:
        pytest.skip("no compiled Pyodide numpy wheel in build/vendor/pyc/")
    frame = _frame(7)
    reg, sc = _outputs(dx_px=3.0)
    reg[0, ANCHOR, 4:8] = [-5.0, -2.0, 5.0, 2.0]  # eye keypoints 21.8 degrees off level: the aligned-crop path
    logits = np.array([[0.5, -1, 2, 0, 1, 0.25, -2]], np.float32)
    for name, arr in (("frame.bin", frame), ("reg.bin", reg), ("cls.bin", sc), ("logits.bin", logits)):
        arr.tofile(tmp_path / name)
    runner = tmp_path / "run.mjs"
    runner.write_text(_PYODIDE_RUNNER.replace("__ROOT__", ROOT.as_posix()))
    proc = subprocess.run(["node", str(runner), str(ROOT / "py_src/emotion_runtime"), str(tmp_path),
                           str(wheels[-1]), str(ROOT / "build/vendor/pyc/python_stdlib.zip"),
                           json.dumps(python_env())], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["platform"] == "wasm32" and got["intp"] == 4

    p = FramePipeline(FER2013_LABELS)
    x = p.detector_input(frame, 640, 480)
    assert got["n"] == p.decode_faces(reg, sc) == 1
    e = p.emotion_input()
    assert not np.allclose(e, face_batch(frame, [f.box for f in p.faces]))  # really turned
    np.testing.assert_allclose(got["x"], x.ravel()[::97], atol=1e-5)
    np.testing.assert_allclose(got["e"], e.ravel()[::7], atol=1e-5)
    assert json.loads(got["res"]) == p.update(logits)
