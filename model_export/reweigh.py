"""Re-ship an exported emotion model as export_model now ships it: its weights stored by export.ship_weights' rule
(int8 where that costs no accuracy on the check split, else fp16 where it changes no prediction, else fp32), and a
view-averaging graph given its `views` input (export.with_views_input: a slow device runs the face alone).

    python -m model_export.reweigh web/models/emotion/lite0s5-48.ferplus --dataset ferplus --data ../shared/datasets/ferplus.zip

For models exported under an older rule: their training runs are not needed. The rule starts from the fp32 graph:
the folder's `model.onnx` where it holds fp32 weights, or, where it stores them as fp16, the same graph with the WebGL
copy's fp32 weights put back (each checked to round to exactly the stored fp16 value); int8 weights, the rule's first
choice, stay as stored. Every figure of the sidecar and the card is then measured again on the new file, with the
dataset splits the run used (card/metrics.json). The WebGL copy stays as it is.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from .data import load_dataset
from .export import (check_split, model_card, protocol_summary, sha256_file, ship_weights, views_record,
                     with_views_input)
from .report import summarise
from .run import make_splits
from .scoring import flip_views, onnx_logits, score_protocols


def card_commands(card: Path) -> list[str]:
    """The commands block of a model card (its last fenced block)."""
    blocks = re.findall(r"```\n(.*?)```", card.read_text(), re.S)
    return blocks[-1].strip().splitlines() if blocks else []


def fp32_graph(folder: Path, sidecar: dict, dst: Path) -> None:
    """Write the shipped model's graph with fp32 weights to `dst` (see the module's doc)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    stored = sidecar.get("weights", {}).get("dtype", "fp32")
    if stored == "fp32":
        shutil.copyfile(folder / "model.onnx", dst)
        return
    webgl = sidecar.get("variants", {}).get("webgl", {})
    if stored != "fp16" or not webgl.get("shipped"):
        raise SystemExit(f"{folder}: its fp32 weights are gone ({stored} weights, no fp32 WebGL copy); re-export it")
    model = onnx.load(str(folder / "model.onnx"))
    full = {t.name: t for t in onnx.load(str(folder / webgl["file"])).graph.initializer}
    halves = {t.name: t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16}
    for node in [n for n in model.graph.node if n.op_type == "Cast" and n.input[0] in halves]:
        name = node.output[0]
        weight = numpy_helper.to_array(full[name]) if name in full else None
        half = numpy_helper.to_array(halves[node.input[0]])
        if weight is None or weight.shape != half.shape or not np.array_equal(weight.astype(np.float16), half):
            raise SystemExit(f"{folder}: the WebGL copy's {name} is not the fp32 source of the stored fp16 weights")
        model.graph.initializer.remove(halves[node.input[0]])
        model.graph.initializer.append(numpy_helper.from_array(weight, name))
        model.graph.node.remove(node)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def reweigh(folder: Path, dataset: str, data: str, log=print) -> dict:
    """Rewrite `folder` (a shipped model: model.onnx, model.json, card/) under the current export rules; returns the
    sidecar. Exits, changing nothing, where they keep the file as it is."""
    sidecar = json.loads((folder / "model.json").read_text())
    metrics = json.loads((folder / "card" / "metrics.json").read_text())
    run, classes = metrics["run"], sidecar["labels"]
    ds = load_dataset(dataset, data, classes=classes)
    splits = make_splits(ds, run["val_fraction"], run["seed"], run["val_split"])
    eval_splits = {k: splits[k] for k in sidecar["accuracy"]}
    test_key = sidecar["test_split"]
    check_key = check_split(eval_splits, test_key)
    flip_in_graph = sidecar.get("flip_tta_in_graph", False)
    before = sidecar.get("weights", {}).get("dtype", "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        fp32, new = Path(tmp) / "model.fp32.onnx", Path(tmp) / "model.onnx"
        if before == "int8":  # the rule's first choice; its fp32 source is not shipped
            shutil.copyfile(folder / "model.onnx", new)
            weights = sidecar["weights"]
        else:
            fp32_graph(folder, sidecar, fp32)
            weights, _ = ship_weights(fp32, new, check_key, eval_splits[check_key], log)
            log(f"{weights['dtype']} weights against fp32 on {check_key}: {weights.get('vs_fp32')}")
        probe = eval_splits[check_key].images[:256]
        views = with_views_input(new, probe, onnx_logits(new, probe))
        if weights["dtype"] == before and views == 1:
            raise SystemExit(f"{folder}: the rules keep its {before} weights and its graph; nothing changed")
        logits = {k: onnx_logits(new, v.images) for k, v in eval_splits.items()}
        test = eval_splits[test_key]
        # As export_model scores it: a mirror-averaged graph's flip view is its single view.
        mirrored = logits[test_key] if flip_in_graph else onnx_logits(new, flip_views(test.images))
        one_view = onnx_logits(new, test.images, views=1) if views > 1 else None
        shutil.copyfile(new, folder / "model.onnx")
    shipped = folder / "model.onnx"
    results = {k: summarise(logits[k], v.labels, classes) for k, v in eval_splits.items()}
    protocols = score_protocols(logits[test_key], mirrored, test.labels, test.votes, classes, one_view)
    sidecar.update(
        bytes=shipped.stat().st_size, sha256=sha256_file(shipped), weights=weights,
        accuracy={k: r["accuracy"] for k, r in results.items()},
        accuracy_protocols=protocol_summary(protocols, test_key), **views_record(views))
    metrics["onnx"] = {"results": results, "protocols": protocols, "sidecar": sidecar}
    (folder / "model.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    (folder / "card" / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    card = folder / "card" / "model_card.md"
    card.write_text(model_card(sidecar, metrics, sidecar["variants"], card_commands(card)))
    log(f"{folder}: model.onnx ({before} weights) -> {sidecar['bytes'] / 1e6:.2f} MB of {weights['dtype']} weights; "
        f"accuracy {json.dumps(sidecar['accuracy'])}")
    return sidecar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a shipped model folder, e.g. web/models/emotion/<id>")
    parser.add_argument("--dataset", required=True, help="its dataset kind, as model_export.run takes it (ferplus, "
                        "fer2013-zip, ...)")
    parser.add_argument("--data", required=True, help="the dataset file the model was trained on")
    args = parser.parse_args(argv)
    reweigh(args.folder, args.dataset, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
