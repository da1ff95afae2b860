"""Re-ship an exported emotion model with fp16 weights, as export_model now ships every model that fits.

    python -m model_export.reweigh web/models/emotion/lite0s5-48.ferplus --dataset ferplus --data ../shared/datasets/ferplus.zip

For models exported before fp16 weights shipped: their training runs are not needed. The model folder's fp32
`model.onnx` is rewritten with fp16 weights (onnx_edit.fp16_weights) only if that changes no prediction on the
check split (validation; the test split where the run had none); every figure of the sidecar and the card is then
measured again on the new file, with the dataset splits the run used (card/metrics.json). The WebGL copy stays fp32.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from .data import load_dataset
from .export import check_split, model_card, protocol_summary, sha256_file, store_weights
from .report import summarise
from .run import make_splits
from .scoring import flip_views, onnx_logits, score_protocols


def card_commands(card: Path) -> list[str]:
    """The commands block of a model card (its last fenced block)."""
    blocks = re.findall(r"```\n(.*?)```", card.read_text(), re.S)
    return blocks[-1].strip().splitlines() if blocks else []


def reweigh(folder: Path, dataset: str, data: str, log=print) -> dict:
    """Rewrite `folder` (a shipped model: model.onnx, model.json, card/) with fp16 weights; returns the sidecar."""
    sidecar = json.loads((folder / "model.json").read_text())
    if sidecar.get("weights", {}).get("dtype", "fp32") != "fp32":
        raise SystemExit(f"{folder}: its weights are already stored as {sidecar['weights']['dtype']}")
    metrics = json.loads((folder / "card" / "metrics.json").read_text())
    run, classes = metrics["run"], sidecar["labels"]
    ds = load_dataset(dataset, data, classes=classes)
    splits = make_splits(ds, run["val_fraction"], run["seed"], run["val_split"])
    eval_splits = {k: splits[k] for k in sidecar["accuracy"]}
    test_key = sidecar["test_split"]
    check_key = check_split(eval_splits, test_key)
    fp32 = folder / "model.onnx"
    flip_in_graph = sidecar.get("flip_tta_in_graph", False)
    with tempfile.TemporaryDirectory() as tmp:
        fp16 = Path(tmp) / "model.onnx"
        weights, agreement, check_logits = store_weights(fp32, fp16, "fp16", check_key, eval_splits[check_key].images)
        log(f"fp16 weights against fp32 on {check_key}: {agreement}")
        if weights is None:
            raise SystemExit(f"{folder}: fp16 weights change predictions on {check_key}; it keeps fp32 weights")
        logits = {k: check_logits if k == check_key else onnx_logits(fp16, v.images) for k, v in eval_splits.items()}
        test = eval_splits[test_key]
        # As export_model scores it: a mirror-averaged graph's flip view is its single view.
        mirrored = logits[test_key] if flip_in_graph else onnx_logits(fp16, flip_views(test.images))
        shutil.copyfile(fp16, fp32)
    results = {k: summarise(logits[k], v.labels, classes) for k, v in eval_splits.items()}
    protocols = score_protocols(logits[test_key], mirrored, test.labels, test.votes, classes)
    sidecar.update(
        bytes=fp32.stat().st_size, sha256=sha256_file(fp32), weights=weights,
        accuracy={k: r["accuracy"] for k, r in results.items()},
        accuracy_protocols=protocol_summary(protocols, test_key))
    metrics["onnx"] = {"results": results, "protocols": protocols, "sidecar": sidecar}
    (folder / "model.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    (folder / "card" / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    card = folder / "card" / "model_card.md"
    card.write_text(model_card(sidecar, metrics, sidecar["variants"], card_commands(card)))
    log(f"{folder}: model.onnx {weights['fp32_bytes'] / 1e6:.2f} -> {sidecar['bytes'] / 1e6:.2f} MB; "
        f"accuracy {json.dumps(sidecar['accuracy'])}")
    return sidecar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a shipped model folder, e.g. web/models/emotion/<id>")
    parser.add_argument("--dataset", required=True, help="its dataset kind, as model_export.run takes it (ferplus, "
                        "fer2013-zip, ...)")
    parser.add_argument("--data", required=True, help="the dataset file the model was trained on")
    args = parser.parse_args(argv)
    reweigh(args.folder, args.dataset, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
