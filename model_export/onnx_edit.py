"""Small ONNX graph edits shared by the emotion-model export and the face-detector conversion (onnx + numpy
only, no torch, so build/convert_detector.py can use it from a converter-only venv)."""

from __future__ import annotations

import numpy as np


def resize_sizes_to_scales(model):
    """Replace every Resize `sizes` input by the equivalent float `scales` (onnxruntime-web's WebGL backend
    rejects int64 sizes: "data type is not float"). Needs static input shapes; drops unused initialisers."""
    import onnx
    from onnx import numpy_helper

    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.input, *onnx.shape_inference.infer_shapes(model).graph.value_info]}
    consts = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Resize" or len(node.input) < 4 or not node.input[3]:
            continue
        sizes = numpy_helper.to_array(consts[node.input[3]]).astype(np.float64)
        scales = numpy_helper.from_array((sizes / np.array(shapes[node.input[0]], np.float64)).astype(np.float32),
                                         f"{node.name or node.output[0]}_scales")
        model.graph.initializer.append(scales)
        node.input[2] = scales.name
        del node.input[3]
    used = {i for n in model.graph.node for i in n.input}
    for t in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(t)
    return model


def int8_weights(model, min_elements: int = 4096):
    """Store every large weight tensor as int8 with one fp32 scale per output channel (axis 0, symmetric), and
    rebuild it in the graph with Cast + Mul: a quarter of the fp32 bytes, and onnxruntime folds the pair back into
    fp32 weights when the session loads, so inference speed is unchanged (WebGPU, WASM; onnxruntime-web's WebGL Conv
    misreads computed weights, see export.NO_WEBGL_INT8). Biases and small tensors stay fp32."""
    from onnx import TensorProto, helper, numpy_helper

    rebuilt = []
    for init in list(model.graph.initializer):
        w = numpy_helper.to_array(init)
        if init.data_type != TensorProto.FLOAT or w.ndim < 2 or w.size < min_elements:
            continue
        peak = np.abs(w.reshape(len(w), -1)).max(axis=1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32).reshape((-1,) + (1,) * (w.ndim - 1))
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        model.graph.initializer.remove(init)
        model.graph.initializer.extend([numpy_helper.from_array(q, f"{init.name}_int8"),
                                        numpy_helper.from_array(scale, f"{init.name}_scale")])
        rebuilt += [helper.make_node("Cast", [f"{init.name}_int8"], [f"{init.name}_f32"], to=TensorProto.FLOAT),
                    helper.make_node("Mul", [f"{init.name}_f32", f"{init.name}_scale"], [init.name])]
    for node in reversed(rebuilt):  # before every consumer: the graph stays topologically sorted
        model.graph.node.insert(0, node)
    return model


def fp16_weights(model, min_elements: int = 1024):
    """Store every large fp32 weight tensor as fp16 and rebuild it in the graph with a Cast: half the bytes of the
    download, while the network still computes in fp32 (onnxruntime folds the Cast into an fp32 weight when the
    session loads). The same WebGL caveat as int8_weights applies: a computed weight is misread there."""
    from onnx import TensorProto, helper, numpy_helper

    rebuilt = []
    for init in list(model.graph.initializer):
        w = numpy_helper.to_array(init)
        if init.data_type != TensorProto.FLOAT or w.size < min_elements:
            continue
        model.graph.initializer.remove(init)
        model.graph.initializer.append(numpy_helper.from_array(w.astype(np.float16), f"{init.name}_fp16"))
        rebuilt.append(helper.make_node("Cast", [f"{init.name}_fp16"], [init.name], to=TensorProto.FLOAT))
    for node in reversed(rebuilt):  # before every consumer: the graph stays topologically sorted
        model.graph.node.insert(0, node)
    return model
