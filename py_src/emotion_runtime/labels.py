"""Class labels of the emotion models, with display names, emoji and colours for the UI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

# FER-2013 Kaggle folder names in alphabetical order: the order training assigns class indices.
FER2013_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
# FER+ label.csv vote columns, in file order.
FERPLUS_LABELS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                                   "contempt")

# Known labels -> (display name, emoji, colour). FER+ spellings map to the same look as FER-2013 ones.
_STYLE: dict[str, tuple[str, str, str]] = {
    "angry": ("Angry", "\U0001F620", "#e53935"),
    "anger": ("Angry", "\U0001F620", "#e53935"),
    "disgust": ("Disgust", "\U0001F922", "#7cb342"),
    "fear": ("Fear", "\U0001F628", "#8e24aa"),
    "happy": ("Happy", "\U0001F600", "#fdd835"),
    "happiness": ("Happy", "\U0001F600", "#fdd835"),
    "neutral": ("Neutral", "\U0001F610", "#90a4ae"),
    "sad": ("Sad", "\U0001F622", "#1e88e5"),
    "sadness": ("Sad", "\U0001F622", "#1e88e5"),
    "surprise": ("Surprise", "\U0001F62E", "#fb8c00"),
    "contempt": ("Contempt", "\U0001F612", "#6d4c41"),
    "peace": ("Peace", "\u270C\uFE0F", "#26a69a"),
}
# Colours for labels we know nothing about (custom models), cycled in label order.
_FALLBACK_COLOURS = ("#ef5350", "#ab47bc", "#5c6bc0", "#29b6f6", "#66bb6a", "#ffca28", "#ff7043", "#8d6e63")


@dataclass(frozen=True)
class LabelMap:
    """Ordered class labels (index = model output column) plus how to show each one."""

    labels: tuple[str, ...]
    display: tuple[str, ...]
    emoji: tuple[str, ...]
    colours: tuple[str, ...]

    @classmethod
    def from_list(cls, labels: Sequence[str], display: Sequence[str] | Mapping[str, str] | None = None,
                  emoji: Sequence[str] | Mapping[str, str] | None = None,
                  colours: Sequence[str] | Mapping[str, str] | None = None) -> "LabelMap":
        """Build from label names; display/emoji/colours may be given per label (list or dict),
        otherwise they come from the built-in table, or a title-cased name, no emoji, a cycled colour."""
        labels = tuple(str(lab) for lab in labels)
        if not labels:
            raise ValueError("a LabelMap needs at least one label")
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate labels in {labels}")

        def pick(given: Sequence[str] | Mapping[str, str] | None, slot: int, default) -> tuple[str, ...]:
            out = []
            for i, lab in enumerate(labels):
                if isinstance(given, Mapping) and lab in given:
                    out.append(str(given[lab]))
                elif given is not None and not isinstance(given, Mapping):
                    if len(given) != len(labels):
                        raise ValueError(f"expected {len(labels)} entries, got {len(given)}")
                    out.append(str(given[i]))
                elif lab.lower() in _STYLE:
                    out.append(_STYLE[lab.lower()][slot])
                else:
                    out.append(default(i, lab))
            return tuple(out)

        return cls(labels=labels,
                   display=pick(display, 0, lambda i, lab: lab.replace("_", " ").title()),
                   emoji=pick(emoji, 1, lambda i, lab: ""),
                   colours=pick(colours, 2, lambda i, lab: _FALLBACK_COLOURS[i % len(_FALLBACK_COLOURS)]))

    @classmethod
    def from_sidecar(cls, sidecar: Mapping[str, Any]) -> "LabelMap":
        """From a model sidecar JSON dict: `labels` (required), optional `display`, `emoji`, `colours`
        (each a list in label order or a dict keyed by label)."""
        if "labels" not in sidecar:
            raise ValueError("sidecar has no 'labels'")
        return cls.from_list(sidecar["labels"], sidecar.get("display"), sidecar.get("emoji"),
                             sidecar.get("colours", sidecar.get("colors")))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> str:
        return self.labels[i]

    def index(self, label: str) -> int:
        return self.labels.index(label)

    def to_dict(self) -> dict[str, list[str]]:
        return {"labels": list(self.labels), "display": list(self.display), "emoji": list(self.emoji),
                "colours": list(self.colours)}


def as_label_map(labels: "LabelMap | Sequence[str] | Mapping[str, Any]") -> LabelMap:
    """Accept a LabelMap, a sidecar dict or a plain list of names."""
    if isinstance(labels, LabelMap):
        return labels
    if isinstance(labels, Mapping):
        return LabelMap.from_sidecar(labels)
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence of names, not one string")
    return LabelMap.from_list(labels)
