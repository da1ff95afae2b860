"""Convert MediaPipe's BlazeFace TFLite face detectors (short-range and full-range) to ONNX for onnxruntime-web.

Models (`--model`, default all), from node_modules/@mediapipe/face_detection/:
  short_range: face_detection_short_range.tflite -> web/models/face_detector.onnx            (128x128, 896 anchors)
  full_range:  face_detection_full_range.tflite  -> web/models/face_detector_full_range.onnx (192x192, 2304 anchors)

Steps, for each:
1. check the TFLite file's sha256 (the conversion is only verified for that exact file),
2. tflite2onnx converts it (the TFLite fp16 weights + DEQUANTIZE become float32 initialisers;
   tflite2onnx makes the graph NCHW internally),
3. a Transpose is put in front so the ONNX input stays NHWC `input` float32 [1,S,S,3], the layout
   `emotion_runtime.preprocess.detector_input` produces (one tiny Transpose, supported by every ort-web EP),
4. onnxsim simplifies it, Resize `sizes` become float `scales` (full-range only; WebGL rejects int64 sizes),
   then the op set is checked against a small allow-list that runs on onnxruntime-web WebGPU, WebGL and WASM,
5. full-range only: its weights are stored as fp16 again (a Cast each, folded back when onnxruntime loads the model):
   they are the TFLite file's fp16 values, so this is exact (checked) and halves the file. Not the short-range model:
   it may run on WebGL, whose Conv misreads weights computed in the graph (model_export.export.NO_WEBGL_INT8),
6. optionally (when `ai_edge_litert` is importable) the ONNX outputs are compared with the TFLite
   interpreter's on seeded random inputs.

Usage (repo root, a venv with `pip install tflite2onnx==0.4.1 tflite==2.18.0 onnx onnxsim onnxruntime`):
    python build/convert_detector.py                      # both
    python build/convert_detector.py --model full_range
    python build/convert_detector.py --model full_range --store-only   # step 5 alone, on the converted file
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from model_export.onnx_edit import fp16_weights, resize_sizes_to_scales  # noqa: E402  (onnx + numpy only)

MEDIAPIPE = ROOT / "node_modules/@mediapipe/face_detection"


@dataclass(frozen=True)
class Conversion:
    tflite: Path
    tflite_sha256: str
    out: Path
    input_size: int  # square NHWC input side
    anchors: int  # rows of both outputs (see emotion_runtime.detector's DetectorSpec)
    fp16_weights: bool = False  # store the weights as fp16 (step 5): only for a model kept off WebGL


CONVERSIONS = {
    "short_range": Conversion(MEDIAPIPE / "face_detection_short_range.tflite",
                              "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
                              ROOT / "web/models/face_detector.onnx", 128, 896),
    "full_range": Conversion(MEDIAPIPE / "face_detection_full_range.tflite",
                             "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
                             ROOT / "web/models/face_detector_full_range.onnx", 192, 2304, fp16_weights=True),
}
ALLOWED_OPS = {"Conv", "Relu", "Add", "Pad", "MaxPool", "Transpose", "Reshape", "Concat", "Resize", "Cast"}
OPSET = 11  # what tflite2onnx emits; every op above is supported at this opset on all three ort-web EPs
# (Resize: only in the full-range model, nearest-neighbour 2x upsampling of its feature pyramid)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_nhwc_input(model: onnx.ModelProto, size: int) -> onnx.ModelProto:
    """Make the graph input NHWC [1,size,size,3] named `input`, feeding the NCHW graph through a Transpose."""
    graph = model.graph
    assert len(graph.input) == 1, "expected one graph input"
    old_name = graph.input[0].name
    nchw_name = "input_nchw"
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old_name:
                node.input[i] = nchw_name
    transpose = helper.make_node("Transpose", ["input"], [nchw_name], perm=[0, 3, 1, 2], name="nhwc_to_nchw")
    graph.node.insert(0, transpose)
    del graph.input[:]
    # tflite2onnx also lists the old NCHW input in value_info; drop it or shape inference trusts it.
    stale = [v for v in graph.value_info if v.name == old_name]
    for v in stale:
        graph.value_info.remove(v)
    graph.input.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, size, size, 3]))
    return model


def name_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Name the outputs `regressors` (last dim 16) and `classificators` (last dim 1), as the short-range TFLite
    model already does; the full-range one calls them reshaped_regressor_face_4 / reshaped_classifier_face_4."""
    graph = model.graph
    for out in graph.output:
        last = out.type.tensor_type.shape.dim[-1].dim_value
        new = {16: "regressors", 1: "classificators"}[last]
        if out.name == new:
            continue
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == out.name:
                    node.output[i] = new
            for i, name in enumerate(node.input):
                if name == out.name:
                    node.input[i] = new
        out.name = new
    return model


def sort_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """tflite2onnx emits initialisers in set order, and onnxsim's de-duplication keeps whichever comes first:
    sort by name (before and after onnxsim) so the output file is byte-reproducible."""
    inits = sorted(model.graph.initializer, key=lambda t: t.name)
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    return model


def store_fp16_exact(model: onnx.ModelProto) -> onnx.ModelProto:
    """Step 5: every large weight stored as fp16, refused unless each value is exactly an fp16 one (TFLite's own
    weights), so the graph onnxruntime rebuilds at load is the same to the bit."""
    from onnx import numpy_helper

    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and not np.array_equal(w.astype(np.float16).astype(np.float32), w):
            raise SystemExit(f"{init.name}: not fp16 values; storing it as fp16 would change the model")
    return sort_initializers(fp16_weights(model))


def check_ops(model: onnx.ModelProto) -> list[str]:
    ops = sorted({n.op_type for n in model.graph.node})
    extra = set(ops) - ALLOWED_OPS
    if extra:
        raise SystemExit(f"unexpected ops for ort-web: {sorted(extra)}")
    return ops


def compare_with_tflite(onnx_path: Path, tflite_path: Path, size: int, n: int = 4) -> float | None:
    """Max abs difference ONNX vs TFLite on seeded random inputs; None when LiteRT is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore
    except ImportError:
        return None
    import onnxruntime as ort

    interp = Interpreter(model_path=str(tflite_path))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    # by shape, like `name_outputs`: the full-range model's TFLite outputs have other names
    outs = {"regressors" if o["shape"][-1] == 16 else "classificators": o["index"] for o in interp.get_output_details()}
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(n):
        x = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        interp.set_tensor(inp, x)
        interp.invoke()
        reg, cls = sess.run(["regressors", "classificators"], {"input": x})
        worst = max(worst, float(np.abs(reg - interp.get_tensor(outs["regressors"])).max()))
        worst = max(worst, float(np.abs(cls - interp.get_tensor(outs["classificators"])).max()))
    return worst


def convert(conv: Conversion, out: Path) -> None:
    """One TFLite model -> checked, simplified ONNX at `out`; prints what it did."""
    import onnxsim
    import tflite2onnx

    digest = sha256(conv.tflite)
    if digest != conv.tflite_sha256:
        raise SystemExit(f"{conv.tflite}: sha256 {digest} != expected {conv.tflite_sha256}")

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        tflite2onnx.convert(str(conv.tflite), str(raw))
        model = sort_initializers(name_outputs(add_nhwc_input(onnx.load(str(raw)), conv.input_size)))

    model, ok = onnxsim.simplify(model)
    if not ok:
        raise SystemExit("onnxsim could not validate the simplified model")
    sort_initializers(resize_sizes_to_scales(model))  # WebGL takes float scales only (no-op for short-range)
    model.producer_name = "build/convert_detector.py"
    model.producer_version = f"tflite2onnx {tflite2onnx.__version__}, onnxsim {onnxsim.__version__}"
    if conv.fp16_weights:
        model = store_fp16_exact(model)
    save_checked(model, conv, out)
    print(f"input  {conv.tflite.relative_to(ROOT) if conv.tflite.is_relative_to(ROOT) else conv.tflite}"
          f"  sha256 {digest}")
    diff = compare_with_tflite(out, conv.tflite, conv.input_size)
    print("tflite check: skipped (ai_edge_litert not installed)" if diff is None
          else f"tflite check: max |onnx - tflite| = {diff:.2e}")
    if diff is not None and diff > 1e-2:
        raise SystemExit("ONNX output differs from TFLite")


def save_checked(model: onnx.ModelProto, conv: Conversion, out: Path) -> None:
    """Check the graph (ops, opset, outputs) and write it to `out`."""
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == OPSET, model.opset_import
    ops = check_ops(model)
    outs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert outs == {"regressors": [1, conv.anchors, 16], "classificators": [1, conv.anchors, 1]}, outs
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    print(f"output {out}  sha256 {sha256(out)}  {out.stat().st_size} bytes")
    print(f"ops    {ops}  opset {OPSET}")


def store_only(conv: Conversion, out: Path) -> None:
    """Step 5 alone, on the converted file `conv.out` (no converter needed); its outputs must stay the same to the
    bit on seeded random inputs."""
    import onnxruntime as ort

    if not conv.fp16_weights:
        raise SystemExit(f"{conv.out.name}: its weights stay fp32 (it may run on WebGL)")
    before = conv.out.read_bytes()
    model = store_fp16_exact(onnx.load_from_string(before))
    save_checked(model, conv, out)
    old, new = (ort.InferenceSession(b, providers=["CPUExecutionProvider"]) for b in (before, out.read_bytes()))
    x = np.random.default_rng(0).uniform(-1, 1, (1, conv.input_size, conv.input_size, 3)).astype(np.float32)
    if not all(np.array_equal(a, b) for a, b in zip(old.run(None, {"input": x}), new.run(None, {"input": x}))):
        raise SystemExit("the fp16-stored model's outputs differ from the fp32 one's")
    print("outputs: identical to the fp32-stored file on seeded random inputs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=[*CONVERSIONS, "all"], default="all")
    ap.add_argument("--out", type=Path, default=None, help="output file (one --model only; default: web/models/...)")
    ap.add_argument("--store-only", action="store_true",
                    help="only store the converted file's weights as fp16 (step 5), for a model that takes it")
    args = ap.parse_args(argv)
    names = list(CONVERSIONS) if args.model == "all" else [args.model]
    if args.out and len(names) != 1:
        raise SystemExit("--out needs one --model")

    # It warns once per fp16 weight ("float16 not supported/tested yet"); those weights only feed
    # DEQUANTIZE, which it folds to float32. The TFLite comparison is the real check.
    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    for name in names:
        print(f"[{name}]")
        (store_only if args.store_only else convert)(CONVERSIONS[name], args.out or CONVERSIONS[name].out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
