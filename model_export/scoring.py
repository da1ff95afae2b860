"""How an exported emotion model is scored: its logits from onnxruntime (CPU) and the evaluation protocols.

Both the export (model cards, sidecars) and `model_export.evaluate` (any model on any split) score through here,
so the figures a card claims and the ones `evaluate` prints come from the same code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .data import ferplus_reference_labels
from .onnx_edit import VIEWS_INPUT, emotion_feeds
from .report import summarise
from .train import to_input


def onnx_logits(path: Path, images: np.ndarray, batch_size: int = 256, views: int | None = None) -> np.ndarray:
    """The logits of the emotion model at `path` for (N, H, W) images: on all of its views, or on the first `views`
    where the graph takes a views input (onnx_edit.add_views_input)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["logits"], emotion_feeds(sess, to_input(images[i : i + batch_size]).numpy(), views))[0]
                           for i in range(0, len(images), batch_size)])


def takes_views(path: Path) -> bool:
    """Whether the emotion model at `path` has a views input (onnx_edit.add_views_input)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return VIEWS_INPUT in [i.name for i in sess.get_inputs()]


def flip_views(images: np.ndarray) -> np.ndarray:
    """Horizontally mirrored copies of (N, H, W) images."""
    return np.ascontiguousarray(images[:, :, ::-1])


def protocol_labels(labels: np.ndarray, votes: np.ndarray | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Protocol name -> (mask of the images it scores, their labels). "reference" only where votes exist."""
    protocols = {"all_images": (np.ones(len(labels), bool), labels)}
    if votes is not None:
        reference = ferplus_reference_labels(votes)
        protocols["reference"] = (reference >= 0, reference)
    return protocols


def score_protocols(logits: np.ndarray, mirrored_logits: np.ndarray, labels: np.ndarray, votes: np.ndarray | None,
                    classes: Sequence[str], one_view_logits: np.ndarray | None = None) -> dict[str, dict[str, dict]]:
    """protocol -> view -> `report.summarise` output (accuracy, macro-F1, per class, confusion). Views: "single" (the
    model's logits as it runs by default), "flip_tta" (their mean with the mirror image's) and, for a view-averaging
    graph with a views input, "one_view" (the graph on the face alone: the engine's mode on a slow device)."""
    views = {"single": logits, "flip_tta": (logits + mirrored_logits) / 2}
    if one_view_logits is not None:
        views["one_view"] = one_view_logits
    return {name: {view: summarise(v[keep], target[keep], classes) for view, v in views.items()}
            for name, (keep, target) in protocol_labels(labels, votes).items()}


def zoom_list(zooms: Sequence[float]) -> str:
    """The zooms of a view-averaging graph as cards and reports print them: "1, 1.1"."""
    return ", ".join(f"{z:g}" for z in zooms)
