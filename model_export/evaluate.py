"""Evaluate exported ONNX emotion models on a dataset split (onnxruntime CPU, the runtime's exact preprocessing).

    python -m model_export.evaluate --model web/models/emotion/lite0s5-48.ferplus/model.onnx \\
        --dataset ferplus --data ../shared/datasets/ferplus.zip [--split test] [--json out.json]

Prints, per model: accuracy and macro-F1 with and without flip test-time augmentation (mean of the logits of the
image and its mirror), per-class precision/recall/F1 and the confusion matrix. FER+ is scored under two protocols:
  (a) all images whose vote argmax is an emotion (the dataset's majority labels; 3,545 FER+ test images);
  (b) the FERPlus reference protocol, the one published FER+ accuracies use: single votes removed as outliers, an
      image kept only if its top emotion then holds more than half of the remaining votes (3,137 test images).
Other datasets have no vote counts, so only (a), all images of the split with the dataset's labels, applies.
The class order comes from the model's sidecar (model.json next to the .onnx) and must equal the dataset's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import DatasetError, FaceDataset, iter_kinds, load_dataset
from .scoring import flip_views, onnx_logits, score_protocols, takes_views, zoom_list

PROTOCOL_NAMES = {
    "all_images": "(a) all images whose vote argmax is an emotion",
    "reference": "(b) FERPlus reference protocol",
}
NO_VOTES_NAME = "(a) all images of the split, dataset labels"
VIEWS = {"single": "single view", "flip_tta": "flip TTA", "one_view": "face alone"}


def evaluate_onnx(model: Path, images: np.ndarray, labels: np.ndarray, votes: np.ndarray | None,
                  classes: Sequence[str]) -> dict[str, dict[str, dict]]:
    """`score_protocols` for one exported model (onnxruntime CPU); with its one-view figures where the graph takes a
    views input."""
    one_view = onnx_logits(model, images, views=1) if takes_views(model) else None
    return score_protocols(onnx_logits(model, images), onnx_logits(model, flip_views(images)), labels, votes, classes,
                           one_view)


def read_sidecar(model: Path) -> dict:
    sidecar = Path(model).with_name("model.json")
    if not Path(model).is_file():
        raise DatasetError(f"{model}: model file not found")
    if not sidecar.is_file():
        raise DatasetError(f"{model}: no sidecar {sidecar.name} next to it (it holds the class order)")
    return json.loads(sidecar.read_text())


def check_classes(model: Path, labels: Sequence[str], ds: FaceDataset) -> None:
    if tuple(labels) != tuple(ds.classes):
        raise DatasetError(f"{model}: the model's classes {list(labels)} differ from the dataset's {list(ds.classes)} "
                           "(same names in the same order needed)")


def format_report(model: Path, sidecar: dict, ds: FaceDataset, split: str, results: dict) -> str:
    """Plain-text report of one model: accuracy rows per protocol and view, then per-class tables and confusions."""
    classes = list(ds.classes)
    names = PROTOCOL_NAMES if "reference" in results else {"all_images": NO_VOTES_NAME}
    lines = [f"model {model} ({sidecar.get('id', '?')}), {sidecar.get('parameters', 0) / 1e6:.2f} M parameters",
             f"dataset {ds.name} ({ds.source}), split {split}, classes {', '.join(classes)}"]
    if ds.notes:
        lines.append(f"notes: {'; '.join(ds.notes)}")
    if sidecar.get("flip_tta_in_graph"):
        zooms = sidecar.get("tta_zooms_in_graph", [1.0])
        lines.append("the graph averages each face with its mirror image already"
                     + (f" (at zooms {zoom_list(zooms)})" if zooms != [1.0] else "")
                     + ": its flip TTA rows repeat the single-view rows"
                     + ("; 'face alone' is the graph on the face only (views = 1, the page's mode on a slow device)"
                        if sidecar.get("views") else ""))
    if "reference" not in results:
        lines.append("only protocol (a) applies: the FERPlus reference protocol needs FER+ vote counts, which this dataset lacks")
    width = max(len(n) for n in names.values())
    lines += ["", f"{'protocol':<{width}}  {'images':>6}  {'view':<11}  {'accuracy':>8}  {'macro-F1':>8}"]
    for key, name in names.items():
        for view, label in VIEWS.items():
            if view not in results[key]:  # "one_view": only a graph with a views input
                continue
            r = results[key][view]
            lines.append(f"{name if view == 'single' else '':<{width}}  {r['n'] if view == 'single' else '':>6}  {label:<11}  "
                         f"{r['accuracy']:>8.2%}  {r['macro_f1']:>8.4f}")
    col = max(9, max(len(c) for c in classes) + 1)
    for key, name in names.items():
        single = results[key]["single"]
        lines += ["", f"{name}, single view: per class", f"{'class':<{col}} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>7}"]
        for c, m in single["per_class"].items():
            lines.append(f"{c:<{col}} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>7.3f} {m['support']:>7}")
        lines += ["", f"{name}, single view: confusion matrix (rows true, columns predicted)",
                  " " * col + "".join(f"{c[:7]:>8}" for c in classes)]
        for c, row in zip(classes, single["confusion"]):
            lines.append(f"{c:<{col}}" + "".join(f"{v:>8}" for v in row))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, action="append", type=Path, help="exported model.onnx (repeat for several)")
    ap.add_argument("--dataset", required=True, choices=tuple(iter_kinds()))
    ap.add_argument("--data", required=True, help="path of the zip / csv / folder / packed .npz")
    ap.add_argument("--classes", help="comma-separated class order for --dataset folder")
    ap.add_argument("--split", default="test", choices=("test", "public_test", "train"),
                    help="official split to score (default test; a folder without train/test sub-folders is all 'train')")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    try:
        ds = load_dataset(args.dataset, args.data, classes=args.classes.split(",") if args.classes else None)
        part = ds.split(args.split)
        if not len(part.labels):
            present = sorted(set(ds.splits.tolist()))
            raise DatasetError(f"{args.data}: no images in split {args.split!r}; this dataset has {', '.join(present)}")
        sidecars = [read_sidecar(m) for m in args.model]
        for model, sidecar in zip(args.model, sidecars):
            check_classes(model, sidecar["labels"], ds)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = {"dataset": ds.name, "source": ds.source, "split": args.split, "classes": list(ds.classes), "models": []}
    for model, sidecar in zip(args.model, sidecars):
        results = evaluate_onnx(model, part.images, part.labels, part.votes, ds.classes)
        print(format_report(model, sidecar, part, args.split, results), end="\n\n", flush=True)
        out["models"].append({"model": str(model), "id": sidecar.get("id"), "protocols": results})
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
