"""Pack a training dataset into ONE file (<= 45 MB by default) to carry it to another machine, e.g. a GPU.

    python -m model_export.pack --dataset ferplus --data ../shared/datasets/ferplus.zip --out packed/ferplus.npz
    python -m model_export.run --dataset packed --data packed/ferplus.npz --out runs/x ...   # on the other machine

The faces are re-encoded as JPEG (quality 95 by default; the printed mean absolute pixel error says what that
costs) in mosaics of 48 px tiles: each face sits on its own 8x8 JPEG blocks, so it decodes to exactly the pixels a
single-image JPEG of the same quality gives, while the tables and headers are stored once. Labels, FER+ vote
targets and raw votes, official splits, classes and the loader's notes are stored as they are, with a format version.

Test split: by default (--test auto) it is packed only if the file stays within --max-mb; otherwise only train +
public_test are packed and the output says so. Either way, the figures that go into a model card come from the
ORIGINAL test images: evaluate the exported model locally with
`python -m model_export.evaluate --dataset ferplus --data ferplus.zip --model .../model.onnx`.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

from .data import (IMAGE_SIZE, MOSAIC_COLUMNS, MOSAIC_MAX_ROWS, PACKED_FORMAT, PACKED_VERSION, DatasetError, FaceDataset,
                   decode_mosaic, iter_kinds, load_dataset)

SPLIT_ORDER = ("train", "public_test", "test")
MAX_MB = 45.0


def encode_mosaic(images: np.ndarray, quality: int) -> bytes:
    """(N, 48, 48) uint8 faces -> one progressive JPEG, MOSAIC_COLUMNS faces per row (the last row padded black)."""
    from PIL import Image

    rows = -(-len(images) // MOSAIC_COLUMNS)
    padded = np.zeros((rows * MOSAIC_COLUMNS, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    padded[: len(images)] = images
    mosaic = padded.reshape(rows, MOSAIC_COLUMNS, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 1, 3)
    buffer = io.BytesIO()
    Image.fromarray(mosaic.reshape(rows * IMAGE_SIZE, MOSAIC_COLUMNS * IMAGE_SIZE)).save(
        buffer, "JPEG", quality=quality, optimize=True, progressive=True)
    return buffer.getvalue()


def encode_splits(ds: FaceDataset, quality: int) -> dict[str, list[tuple[bytes, np.ndarray]]]:
    """Split -> its mosaics, each with the dataset indices of the faces it holds (in order)."""
    per_mosaic = MOSAIC_COLUMNS * MOSAIC_MAX_ROWS
    out: dict[str, list[tuple[bytes, np.ndarray]]] = {}
    for split in [s for s in SPLIT_ORDER if s in set(ds.splits.tolist())]:
        idx = np.flatnonzero(ds.splits == split)
        out[split] = [(encode_mosaic(ds.images[idx[i : i + per_mosaic]], quality), idx[i : i + per_mosaic])
                      for i in range(0, len(idx), per_mosaic)]
    return out


def packed_bytes(ds: FaceDataset, mosaics: dict[str, list[tuple[bytes, np.ndarray]]], notes: list[str]) -> bytes:
    """The .npz file (as bytes) holding `mosaics` and the per-face arrays of the faces they hold."""
    chunks = [chunk for split_chunks in mosaics.values() for chunk in split_chunks]
    order = np.concatenate([idx for _, idx in chunks])
    arrays = {
        "format": np.asarray(PACKED_FORMAT), "version": np.asarray(PACKED_VERSION), "name": np.asarray(ds.name),
        "classes": np.asarray(ds.classes), "notes": np.asarray(notes, dtype=str),
        "jpeg": np.frombuffer(b"".join(data for data, _ in chunks), np.uint8),
        "chunk_bytes": np.asarray([len(data) for data, _ in chunks], np.int64),
        "chunk_images": np.asarray([len(idx) for _, idx in chunks], np.int64),
        "labels": ds.labels[order].astype(np.int16), "splits": ds.splits[order],
        "soft": ds.soft[order] if ds.soft is not None else np.zeros(0, np.float32),
        "votes": ds.votes[order].astype(np.uint8) if ds.votes is not None else np.zeros(0, np.uint8),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # the JPEG bytes do not shrink further; the label arrays do
    return buffer.getvalue()


def mean_abs_error(ds: FaceDataset, mosaics: dict[str, list[tuple[bytes, np.ndarray]]]) -> float:
    total, count = 0.0, 0
    for split_chunks in mosaics.values():
        for data, idx in split_chunks:
            decoded = decode_mosaic(data, len(idx), "re-encoded mosaic")
            total += float(np.abs(decoded.astype(np.int16) - ds.images[idx]).sum())
            count += decoded.size
    return total / max(count, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, choices=[k for k in iter_kinds() if k != "packed"])
    ap.add_argument("--data", required=True, help="path of the zip / csv / folder")
    ap.add_argument("--classes", help="comma-separated class order for --dataset folder")
    ap.add_argument("--out", required=True, type=Path, help="the .npz to write (e.g. packed/ferplus.npz; /packed/ is git-ignored)")
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality, 90-100 (default 95)")
    ap.add_argument("--test", choices=("auto", "include", "exclude"), default="auto",
                    help="pack the official test split: auto = only if the file stays within --max-mb (default)")
    ap.add_argument("--max-mb", type=float, default=MAX_MB, help=f"size limit of the file in MB (default {MAX_MB:g})")
    args = ap.parse_args(argv)
    if not 90 <= args.quality <= 100:
        ap.error("--quality must be within 90-100 (below 90 the faces lose detail the models use)")
    try:
        ds = load_dataset(args.dataset, args.data, classes=args.classes.split(",") if args.classes else None)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.time()
    mosaics = encode_splits(ds, args.quality)
    encode_s = time.time() - t0
    error = mean_abs_error(ds, mosaics)
    notes = [*ds.notes, f"packed from {Path(ds.source).name} by model_export.pack: faces re-encoded as JPEG q{args.quality}, "
                        f"mean absolute error {error:.2f} gray levels"]
    if args.test == "exclude":
        mosaics.pop("test", None)
    data = packed_bytes(ds, mosaics, notes)
    if len(data) > args.max_mb * 1e6 and args.test == "auto" and "test" in mosaics:
        print(f"all splits: {len(data) / 1e6:.1f} MB > {args.max_mb:g} MB; leaving the test split out")
        mosaics.pop("test")
        data = packed_bytes(ds, mosaics, [*notes, "official test split not packed: evaluate on the original images"])
    if len(data) > args.max_mb * 1e6:
        print(f"error: {len(data) / 1e6:.1f} MB exceeds --max-mb {args.max_mb:g}; lower --quality or leave the test split out "
              "(--test exclude); nothing written", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    counts = {split: sum(len(idx) for _, idx in chunks) for split, chunks in mosaics.items()}
    print(f"packed {ds.name} ({', '.join(f'{s} {n}' for s, n in counts.items())} faces, {len(ds.classes)} classes) into "
          f"{args.out}: {len(data) / 1e6:.2f} MB; JPEG q{args.quality} encode {encode_s:.1f} s, mean absolute pixel error "
          f"{error:.2f} gray levels" + ("" if "test" in mosaics else
                                        "; test split not packed: evaluate the final model on the original test images"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
