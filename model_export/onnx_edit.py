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
