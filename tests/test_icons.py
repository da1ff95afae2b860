"""The committed app icons (web/icons/) are what build/make_icons.py draws, and what the manifest declares."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def make_icons():
    spec = importlib.util.spec_from_file_location("make_icons", ROOT / "build" / "make_icons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_icons_match_the_script():
    """Compared by pixels, not bytes: another zlib may pack the same picture differently."""
    mk = make_icons()
    for name, (size, maskable) in mk.ICONS.items():
        committed = np.asarray(Image.open(ROOT / "web" / "icons" / name).convert("RGBA"), np.int16)
        drawn = np.asarray(mk.draw_icon(size, maskable), np.int16)
        png = mk.png_bytes(mk.draw_icon(size, maskable))
        written = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), np.int16)
        assert committed.shape == drawn.shape == (size, size, 4), name
        assert np.abs(committed - written).max() <= 2, f"{name} is stale: run python build/make_icons.py"
        # The 64-colour palette keeps the drawing: under one level off on average, a few levels at the edges.
        assert np.abs(committed - drawn).mean() < 1.0, name
        assert np.percentile(np.abs(committed - drawn).max(-1), 99) <= 12, name
        if maskable:
            assert committed[..., 3].min() == 255, f"{name}: a maskable icon must be opaque"


def test_manifest_lists_every_icon():
    manifest = json.loads((ROOT / "web" / "manifest.webmanifest").read_text())
    listed = {Path(icon["src"]).name: icon for icon in manifest["icons"]}
    assert set(listed) == set(make_icons().ICONS)
    for name, (size, maskable) in make_icons().ICONS.items():
        assert listed[name]["sizes"] == f"{size}x{size}"
        assert listed[name]["purpose"] == ("maskable" if maskable else "any")
