"""Draw the app icons (web/icons/*.png) for the web app manifest: a lens ring around a smiling face, in the page's
colours. Drawn from geometry with Pillow, nothing downloaded; the output is byte-identical run to run (same Pillow
version), and build/PROVENANCE.md lists the hashes.

Usage (repo root, project venv): python build/make_icons.py [--out web/icons] [--check]
  --check: draw in memory and fail if the committed files differ (they are then stale).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent

BACKGROUND = (15, 20, 25)  # --bg in web/style.css
PANEL = (26, 33, 41)  # --panel
ACCENT = (124, 196, 255)  # --accent
FACE = (255, 211, 107)  # --focus
SUPERSAMPLE = 4  # drawn this much larger, then reduced: smooth edges without anti-aliasing primitives

# name -> (size px, maskable). A maskable icon fills the square; the platform crops it to its own shape and only
# the central circle of 80% diameter is sure to show, so the drawing is scaled into it.
ICONS: dict[str, tuple[int, bool]] = {
    "icon-192.png": (192, False),
    "icon-512.png": (512, False),
    "icon-maskable-512.png": (512, True),
}


def draw_icon(size: int, maskable: bool) -> Image.Image:
    """The icon at `size` x `size` pixels, RGBA (transparent corners unless maskable)."""
    s = size * SUPERSAMPLE
    image = Image.new("RGBA", (s, s), BACKGROUND + (255,) if maskable else (0, 0, 0, 0))
    d = ImageDraw.Draw(image)
    if not maskable:
        d.rounded_rectangle((0, 0, s - 1, s - 1), radius=round(s * 0.22), fill=BACKGROUND + (255,))
    scale = 0.72 if maskable else 1.0  # maskable: everything inside the 80% safe circle

    def box(cx: float, cy: float, r: float) -> tuple[float, float, float, float]:
        c = s / 2
        x, y, rr = c + (cx - 0.5) * s * scale, c + (cy - 0.5) * s * scale, r * s * scale
        return (x - rr, y - rr, x + rr, y + rr)

    # Lens: a panel-coloured disc in an accent ring.
    d.ellipse(box(0.5, 0.5, 0.40), fill=ACCENT + (255,))
    d.ellipse(box(0.5, 0.5, 0.335), fill=PANEL + (255,))
    # Face: two eyes and a smile.
    for ex in (0.40, 0.60):
        d.ellipse(box(ex, 0.43, 0.045), fill=FACE + (255,))
    width = round(0.05 * s * scale)
    d.arc(box(0.5, 0.48, 0.17), start=25, end=155, fill=FACE + (255,), width=width)
    return image.resize((size, size), Image.Resampling.LANCZOS)


PALETTE_COLOURS = 64  # four colours and their anti-aliased edges: a palette PNG is a fifth of the RGBA one's bytes


def png_bytes(image: Image.Image) -> bytes:
    # The icons are part of the page shell every first visit downloads (sw.js), so they are kept small.
    out = io.BytesIO()
    palette = image.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "web" / "icons")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = parser.parse_args(argv)
    stale = []
    if not args.check:
        args.out.mkdir(parents=True, exist_ok=True)
    for name, (size, maskable) in ICONS.items():
        data = png_bytes(draw_icon(size, maskable))
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(name)
        else:
            path.write_bytes(data)
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {size}x{size}"
              f"{' maskable' if maskable else ''}, {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    if stale:
        print(f"stale: {', '.join(stale)} (run python build/make_icons.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
