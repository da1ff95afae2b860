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
    drop_unused_initializers(model.graph)
    return model


def drop_unused_initializers(graph) -> None:
    """Remove the initialisers no node reads any more (an edit replaced them)."""
    used = {i for n in graph.node for i in n.input}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)


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


VIEWS_INPUT = "views"


def views_in_graph(model) -> int:
    """How many views of each face a view-averaging graph (models.MirrorAveraged: the network runs on V views stacked
    on the batch axis, `Reshape [V, -1, C]` + `ReduceMean(axis 0)` averages them) averages; 1 for any other graph."""
    from onnx import numpy_helper

    consts = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    for out in model.graph.output:
        mean = producer.get(out.name)
        reshape = producer.get(mean.input[0]) if mean is not None and mean.op_type == "ReduceMean" else None
        if reshape is not None and reshape.op_type == "Reshape" and reshape.input[1] in consts:
            shape = numpy_helper.to_array(consts[reshape.input[1]])
            if len(shape) == 3 and shape[0] > 1:
                return int(shape[0])
    return 1


def add_views_input(model):
    """Give a view-averaging graph (see views_in_graph) an int64 input `views` of shape [1]: the network then runs on
    the first `views` of its V views only (1 = the face as given, with no mirror or zoom; V or more = all of them, the
    same logits as before, bit for bit), so that a slow device can buy speed with the accuracy the model card states
    for one view. A required input, because onnxruntime-web accepts no feed for an input with a default (an
    initializer). The network's first Conv gets the V views stacked on the batch axis: they are reshaped to [V, rest],
    sliced to [:views] and given back their shape; the final Reshape's V becomes -1 (its N read from the input).
    Returns V, or 1 (the model unchanged) for a graph that averages no views or already has the input."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    views = views_in_graph(model)
    if views == 1 or any(i.name == VIEWS_INPUT for i in graph.input):
        return 1
    consts = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    reshape = producer[producer[graph.output[0].name].input[0]]
    classes = int(numpy_helper.to_array(consts[reshape.input[1]])[2])
    first_conv = next(n for n in graph.node if n.op_type == "Conv")
    stacked = first_conv.input[0]  # the V views on the batch axis: (V * N, 1, H, W)
    if any(stacked in n.input for n in graph.node if n is not first_conv):
        raise ValueError(f"add_views_input: {stacked} feeds more than the network's first Conv")

    def const(name: str, values: list[int]) -> str:
        full = f"views_const_{name}"
        if full not in consts:
            consts[full] = numpy_helper.from_array(np.array(values, np.int64), full)
            graph.initializer.append(consts[full])
        return full

    nodes = [
        helper.make_node("Reshape", [stacked, const("apart", [views, -1])], ["views_apart"]),
        helper.make_node("Slice", ["views_apart", const("zero", [0]), VIEWS_INPUT, const("axis", [0])], ["views_kept"]),
        helper.make_node("Shape", [stacked], ["views_item_shape"], start=1),
        helper.make_node("Concat", [const("any", [-1]), "views_item_shape"], ["views_batch_shape"], axis=0),
        helper.make_node("Reshape", ["views_kept", "views_batch_shape"], ["views_kept_batch"]),
        helper.make_node("Shape", [graph.input[0].name], ["views_faces"], start=0, end=1),
        helper.make_node("Concat", [const("any", [-1]), "views_faces", const("classes", [classes])],
                         ["views_logits_shape"], axis=0),
    ]
    first_conv.input[0] = "views_kept_batch"
    reshape.input[1] = "views_logits_shape"
    ordered = list(graph.node)
    at = ordered.index(first_conv)
    ordered[at:at] = nodes  # before the first Conv: the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(ordered)
    drop_unused_initializers(graph)
    graph.input.append(helper.make_tensor_value_info(VIEWS_INPUT, TensorProto.INT64, [1]))
    return views


ALL_VIEWS = np.iinfo(np.int64).max  # a `views` feed that keeps every view (Slice clamps it)


def emotion_feeds(session, images: np.ndarray, views: int | None = None) -> dict[str, np.ndarray]:
    """An onnxruntime session's feeds for an emotion model: its image input and, where the graph has one
    (add_views_input), `views`: every view the graph averages unless `views` asks for fewer."""
    inputs = [i.name for i in session.get_inputs()]
    feeds = {inputs[0]: images}
    if VIEWS_INPUT in inputs:
        feeds[VIEWS_INPUT] = np.array([views or ALL_VIEWS], np.int64)
    return feeds
