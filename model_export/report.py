"""Per-run reports: per-class precision/recall/F1, confusion matrices and learning curves (PNG), metrics JSON."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from torch import nn

from .train import ArraySplit, accuracy, predict_logits


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def per_class_metrics(cm: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    return {c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support)}


def summarise(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict:
    preds = logits.argmax(1)
    cm = confusion_matrix(labels, preds, len(classes))
    per_class = per_class_metrics(cm, classes)
    return {"accuracy": accuracy(logits, labels), "macro_f1": float(np.mean([m["f1"] for m in per_class.values()])),
            "n": int(len(labels)), "per_class": per_class, "confusion": cm.tolist()}


def plot_confusion(cm: np.ndarray, classes: Sequence[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=100)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{cm[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_curves(histories: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for name, hist in histories.items():
        ep = [h["epoch"] for h in hist]
        ax_loss.plot(ep, [h["train_loss"] for h in hist], label=f"{name} train (aug, smoothed)")
        ax_acc.plot(ep, [h["train_acc"] for h in hist], label=f"{name} train (aug)")
        if any(h["val_acc"] is not None for h in hist):  # a refit (--val-split none) has no validation curves
            ax_loss.plot(ep, [h["val_loss"] for h in hist], "--", label=f"{name} val")
            ax_acc.plot(ep, [h["val_acc"] for h in hist], "--", label=f"{name} val")
            ax_acc.plot(ep, [h["ema_val_acc"] for h in hist], ":", label=f"{name} val (EMA)")
        warm = [h["epoch"] for h in hist if h["stage"] == "warmup"]
        if warm:
            ax_acc.axvspan(0.5, max(warm) + 0.5, color="grey", alpha=0.1)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (shaded: head-only warm-up)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate_models(models: dict[str, list[nn.Module]], splits: dict[str, ArraySplit], classes: Sequence[str]) -> dict:
    """Accuracy etc. for each named model (a list = ensemble over models x mirrored views) on each split."""
    out: dict = {}
    for name, members in models.items():
        out[name] = {}
        for split_name, split in splits.items():
            if split_name == "train":
                continue
            if len(members) == 1 and not name.endswith("ensemble"):
                logits = predict_logits(members[0], split.images)
            else:
                logits = np.mean([predict_logits(m, split.images, flip=f) for m in members for f in (False, True)], axis=0)
            out[name][split_name] = summarise(logits, split.labels, classes)
    return out


def views_title(run_meta: dict) -> str:
    """How the reported student sees each face, for plot titles: flip TTA (and zooms) built into the graph."""
    if not run_meta.get("flip_tta"):
        return ""
    zooms = run_meta.get("tta_zooms", [1.0])
    return " (face + mirror" + (f", zooms {'/'.join(f'{z:g}' for z in zooms)})" if zooms != [1.0] else ")")


def write_reports(out_dir: Path, student: nn.Module, teachers: list[nn.Module], splits: dict[str, ArraySplit],
                  classes: Sequence[str], run_meta: dict, log: Callable[[str], None] = print) -> dict:
    out_dir = Path(out_dir)
    models = {"student": [student]}
    if teachers:
        models["teacher0"] = teachers[:1]
        models["teacher_ensemble"] = teachers
    results = evaluate_models(models, splits, classes)
    for name, by_split in results.items():
        log(f"{name}: " + ", ".join(f"{s} acc {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}" for s, m in by_split.items()))
    for split_name in ("test", "public_test", "val"):
        if split_name in results["student"]:
            cm = np.asarray(results["student"][split_name]["confusion"])
            acc = results["student"][split_name]["accuracy"]
            plot_confusion(cm, classes, f"{run_meta['dataset']} student{views_title(run_meta)}, {split_name} (acc {acc:.3f})", out_dir / f"confusion_{split_name}.png")
    histories = {}
    for d in sorted(out_dir.glob("teacher*")) + [out_dir / "student"]:
        hist = d / "history.json"
        if hist.exists():
            histories[d.name] = json.loads(hist.read_text())
    plot_curves(histories, out_dir / "learning_curves.png")
    metrics = {"run": run_meta, "results": results, "histories": histories}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    log(f"reports written to {out_dir}")
    return metrics
