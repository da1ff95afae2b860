"""Where the real datasets live; tests that need them skip with a clear reason when they are absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("EMOTION_DATASETS", ROOT.parent / "shared" / "datasets"))
FERPLUS_ZIP = DATASETS / "ferplus.zip"
FER2013_ZIP = DATASETS / "fer2013.zip"

needs_ferplus = pytest.mark.skipif(not FERPLUS_ZIP.is_file(), reason=f"FER+ dataset absent: {FERPLUS_ZIP} (set EMOTION_DATASETS)")
needs_fer2013 = pytest.mark.skipif(not FER2013_ZIP.is_file(), reason=f"FER-2013 dataset absent: {FER2013_ZIP} (set EMOTION_DATASETS)")


def shipped_model_dir(dataset: str) -> Path:
    """web/models/emotion/<id>/ of the committed model trained on `dataset` (e.g. "ferplus"), whatever its
    architecture; a path that does not exist when none ships (tests then skip, naming it)."""
    import json

    for meta in sorted((ROOT / "web" / "models" / "emotion").glob("*/model.json")):
        if json.loads(meta.read_text()).get("dataset") == dataset:
            return meta.parent
    return ROOT / "web" / "models" / "emotion" / f"<no {dataset} model>"
