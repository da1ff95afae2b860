"""Dataset readers: FER-2013 (Kaggle zip or classic CSV), FER+ (zip with label.csv), a user's image folder, and a
dataset packed into one file by `model_export.pack`.

Every reader returns a `FaceDataset`: 48x48 uint8 grayscale images in memory (FER-2013 is ~80 MB as uint8),
integer labels, optional soft (vote) targets, and the official split each image belongs to.
Malformed input raises `DatasetError` naming the file (and row) at fault.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

IMAGE_SIZE = 48
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
# FER+ label.csv vote columns, in file order; the 8 emotions come first.
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
FERPLUS_CLASSES = FERPLUS_COLUMNS[:8]
# Official FER-2013 usage names (CSV `Usage` column / Kaggle file-name prefixes) -> our split names.
FER2013_USAGE = {"Training": "train", "PublicTest": "public_test", "PrivateTest": "test"}
FERPLUS_FOLDERS = {"FER2013Train": "train", "FER2013Valid": "public_test", "FER2013Test": "test"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


class DatasetError(ValueError):
    """Input data that cannot be used as-is; the message names the file (and row)."""


@dataclass
class FaceDataset:
    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray  # (N,) int64, index into `classes`
    splits: np.ndarray  # (N,) str: "train" | "public_test" | "test"
    classes: tuple[str, ...]
    name: str
    soft: np.ndarray | None = None  # (N, C) float32 vote distribution (FER+)
    votes: np.ndarray | None = None  # (N, 10) int raw FER+ vote counts, label.csv column order
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or self.images.dtype != np.uint8:
            raise DatasetError(f"{self.name}: images must be (N, 48, 48) uint8, got {self.images.shape} {self.images.dtype}")
        if len(self.labels) != n or len(self.splits) != n or any(a is not None and len(a) != n for a in (self.soft, self.votes)):
            raise DatasetError(f"{self.name}: images, labels, splits differ in length")

    def subset(self, mask: np.ndarray) -> "FaceDataset":
        return FaceDataset(
            images=self.images[mask], labels=self.labels[mask], splits=self.splits[mask], classes=self.classes,
            name=self.name, soft=None if self.soft is None else self.soft[mask],
            votes=None if self.votes is None else self.votes[mask], source=self.source, notes=list(self.notes),
        )

    def split(self, name: str) -> "FaceDataset":
        return self.subset(self.splits == name)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))


def to_gray48(data: bytes, where: str) -> np.ndarray:
    """Decode an image file's bytes to a 48x48 uint8 grayscale array, resizing like the runtime does."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            gray = np.asarray(im.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetError(f"{where}: not a readable image ({exc})") from exc
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return gray
    # Same antialiased resize as the browser runtime, so a custom set is prepared exactly like live crops.
    from emotion_runtime.preprocess import resize_antialiased

    side = min(gray.shape)
    top, left = (gray.shape[0] - side) // 2, (gray.shape[1] - side) // 2
    square = gray[top : top + side, left : left + side]
    return np.clip(np.rint(resize_antialiased(square, IMAGE_SIZE, IMAGE_SIZE)), 0, 255).astype(np.uint8)


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{path}: not a valid zip file ({exc})") from exc


def load_fer2013_zip(path: str | os.PathLike) -> FaceDataset:
    """Kaggle image-folder layout: {train,test}/<class>/{Training,PublicTest,PrivateTest}_<id>.jpg."""
    path = Path(path)
    images, labels, splits = [], [], []
    with _open_zip(path) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.is_dir() or not info.filename.lower().endswith(IMAGE_SUFFIXES):
                continue
            parts = info.filename.split("/")
            where = f"{path}:{info.filename}"
            if len(parts) < 3:
                raise DatasetError(f"{where}: expected <split>/<class>/<file>")
            cls, fname = parts[-2], parts[-1]
            if cls not in FER2013_CLASSES:
                raise DatasetError(f"{where}: unknown class folder {cls!r} (expected one of {', '.join(FER2013_CLASSES)})")
            usage = fname.split("_", 1)[0]
            if usage not in FER2013_USAGE:
                raise DatasetError(f"{where}: file name must start with Training_, PublicTest_ or PrivateTest_")
            images.append(to_gray48(zf.read(info), where))
            labels.append(FER2013_CLASSES.index(cls))
            splits.append(FER2013_USAGE[usage])
    if not images:
        raise DatasetError(f"{path}: no images found in FER-2013 layout")
    return FaceDataset(np.stack(images), np.asarray(labels, np.int64), np.asarray(splits), FER2013_CLASSES, "fer2013", source=str(path))


def load_fer2013_csv(path: str | os.PathLike) -> FaceDataset:
    """The classic fer2013.csv: header `emotion,pixels,Usage`; pixels are 2304 space-separated ints."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    images, labels, splits = [], [], []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["emotion", "pixels", "Usage"]:
            raise DatasetError(f"{path}: header must be 'emotion,pixels,Usage', got {header!r}")
        for row_no, row in enumerate(reader, start=2):
            where = f"{path}, row {row_no}"
            if len(row) < 3:
                raise DatasetError(f"{where}: expected 3 columns, got {len(row)}")
            try:
                label = int(row[0])
                pixels = np.array(row[1].split(), dtype=np.int64)
            except ValueError as exc:
                raise DatasetError(f"{where}: non-numeric emotion or pixel value ({exc})") from exc
            if not 0 <= label < len(FER2013_CLASSES):
                raise DatasetError(f"{where}: emotion {label} outside 0..{len(FER2013_CLASSES) - 1}")
            if pixels.size != IMAGE_SIZE * IMAGE_SIZE or pixels.min() < 0 or pixels.max() > 255:
                raise DatasetError(f"{where}: expected 2304 pixel values in 0..255, got {pixels.size}")
            usage = row[2].strip()
            if usage not in FER2013_USAGE:
                raise DatasetError(f"{where}: Usage {usage!r} is not Training, PublicTest or PrivateTest")
            images.append(pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
            labels.append(label)
            splits.append(FER2013_USAGE[usage])
    if not images:
        raise DatasetError(f"{path}: no data rows")
    return FaceDataset(np.stack(images), np.asarray(labels, np.int64), np.asarray(splits), FER2013_CLASSES, "fer2013", source=str(path))


def ferplus_targets(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority label and vote distribution over the 8 emotions; rows whose top vote is unknown/NF get label -1.

    Ties between emotions go to the first column (file order), as in the FER+ reference majority protocol.
    """
    votes = votes.astype(np.float32)
    majority_all = votes.argmax(axis=1)
    emotion_votes = votes[:, :8]
    total = emotion_votes.sum(axis=1, keepdims=True)
    soft = np.divide(emotion_votes, total, out=np.zeros_like(emotion_votes), where=total > 0)
    labels = np.where((majority_all < 8) & (total[:, 0] > 0), emotion_votes.argmax(axis=1), -1)
    return labels.astype(np.int64), soft


def _without_outlier_votes(votes: np.ndarray) -> np.ndarray:
    """The reference tooling's outlier rule: a class that got a single vote got none."""
    return np.where(votes <= 1, 0, votes).astype(np.float64)


def ferplus_reference_labels(votes: np.ndarray) -> np.ndarray:
    """Labels under the FERPlus reference protocol (the one published FER+ accuracies use); -1 = excluded.

    As the reference tooling does in majority mode: a single vote is an outlier (a count of 1 becomes 0); an
    image is kept only if its top class then holds more than half of the remaining votes (all 10 columns), and
    only if that class is an emotion (not unknown / not-a-face). On the official test split this keeps 3,137 images.
    """
    cleaned = _without_outlier_votes(votes)
    top = cleaned.argmax(axis=1)
    top_votes = cleaned.max(axis=1)
    keep = (top_votes > 0.5 * cleaned.sum(axis=1)) & (top < len(FERPLUS_CLASSES))
    return np.where(keep, top, -1).astype(np.int64)


def ferplus_reference_targets(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training targets of the FERPlus reference tooling's probability mode; returns (soft (N, 8), keep (N,)).

    Single votes are outliers (a count of 1 becomes 0). The target then takes the top classes, in order of votes
    (tied classes together), until they hold 75% of the remaining votes, at most three; unknown / not-a-face ends
    the search (the emotions taken before it stay). The image is kept only if the emotions taken hold more than half
    of the votes and there are at most three. The test protocol of published FER+ figures applies the same outlier
    rule (`ferplus_reference_labels`).
    """
    cleaned = _without_outlier_votes(votes)
    n_emotions = len(FERPLUS_CLASSES)
    soft = np.zeros((len(votes), n_emotions), np.float32)
    keep = np.zeros(len(votes), bool)
    for row, counts in enumerate(cleaned):
        total, left, taken = counts.sum(), counts.copy(), np.zeros_like(counts)
        while total > 0 and taken.sum() < 0.75 * total and np.count_nonzero(taken) < 3:
            top = left.max()
            if top <= 0:
                break
            tied = np.flatnonzero(left == top)
            emotions = tied[tied < n_emotions]
            taken[emotions], left[emotions] = top, 0
            if len(emotions) < len(tied):  # unknown / not-a-face among the top: no further classes
                break
        if taken.sum() > 0.5 * total and 0 < np.count_nonzero(taken) <= 3:
            soft[row] = taken[:n_emotions] / taken.sum()
            keep[row] = True
    return soft, keep


def load_ferplus_zip(path: str | os.PathLike) -> FaceDataset:
    """FER+ layout: FER2013{Train,Valid,Test}/ with images and label.csv (image, box, 10 vote counts)."""
    path = Path(path)
    images, votes, splits = [], [], []
    dropped = 0
    with _open_zip(path) as zf:
        names = set(zf.namelist())
        for folder, split in FERPLUS_FOLDERS.items():
            label_name = next((n for n in names if n.endswith(f"{folder}/label.csv")), None)
            if label_name is None:
                raise DatasetError(f"{path}: missing {folder}/label.csv")
            prefix = label_name[: -len("label.csv")]
            text = zf.read(label_name).decode("utf-8")
            for row_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
                if not row:
                    continue
                where = f"{path}:{label_name}, row {row_no}"
                if len(row) != 12:
                    raise DatasetError(f"{where}: expected 12 columns (image, box, 10 votes), got {len(row)}")
                try:
                    counts = [int(v) for v in row[2:]]
                except ValueError as exc:
                    raise DatasetError(f"{where}: vote counts must be integers ({exc})") from exc
                if min(counts) < 0:
                    raise DatasetError(f"{where}: negative vote count")
                member = prefix + row[0].strip()
                if member not in names:
                    raise DatasetError(f"{where}: image {row[0]!r} listed but not in the zip")
                images.append(to_gray48(zf.read(member), f"{path}:{member}"))
                votes.append(counts)
                splits.append(split)
    if not images:
        raise DatasetError(f"{path}: no labelled images")
    votes = np.asarray(votes, np.int64)
    labels, soft = ferplus_targets(votes)
    keep = labels >= 0
    dropped = int((~keep).sum())
    ds = FaceDataset(
        np.stack(images)[keep], labels[keep], np.asarray(splits)[keep], FERPLUS_CLASSES, "ferplus",
        soft=soft[keep], votes=votes[keep], source=str(path),
    )
    ds.notes.append(f"dropped {dropped} images whose majority vote is unknown/not-a-face")
    return ds


def load_image_folder(path: str | os.PathLike, classes: Sequence[str] | None = None) -> FaceDataset:
    """A user's own set: <root>/[train|test/]<class>/<image>. Without train/test sub-folders every image is 'train'.

    `classes` fixes the class order (e.g. happy, peace, sad); a folder not in it is an error.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    split_dirs = {d.name: d for d in root.iterdir() if d.is_dir() and d.name in ("train", "test")}
    layout = split_dirs.items() if split_dirs else [("train", root)]
    found = sorted({c.name for _, d in layout for c in d.iterdir() if c.is_dir()})
    if classes is None:
        classes = tuple(found)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetError(f"{root}: class folder(s) {unknown} not in the given classes {list(classes)}")
    images, labels, splits = [], [], []
    for split, split_root in layout:
        for ci, cls in enumerate(classes):
            cdir = split_root / cls
            if not cdir.is_dir():
                continue
            for f in sorted(cdir.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    images.append(to_gray48(f.read_bytes(), str(f)))
                    labels.append(ci)
                    splits.append("test" if split == "test" else "train")
    if not images:
        raise DatasetError(f"{root}: no images found (expected <class>/<image> folders)")
    return FaceDataset(np.stack(images), np.asarray(labels, np.int64), np.asarray(splits), tuple(classes), root.name, source=str(root))


# The `packed` kind: one .npz written by `python -m model_export.pack` to carry a dataset to another machine.
PACKED_FORMAT = "emotion-lens-packed-faces"
PACKED_VERSION = 1
MOSAIC_COLUMNS = 256  # images per mosaic row; 48 px tiles on the 8 px JPEG block grid code each face on its own
MOSAIC_MAX_ROWS = 128  # 256 x 128 faces = 75 M pixels per JPEG, below Pillow's decompression-bomb warning


def decode_mosaic(data: bytes, count: int, where: str) -> np.ndarray:
    """The first `count` 48x48 faces of a JPEG mosaic (row-major, MOSAIC_COLUMNS faces per row)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            mosaic = np.asarray(im.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetError(f"{where}: not a readable JPEG mosaic ({exc})") from exc
    rows = mosaic.shape[0] // IMAGE_SIZE
    if mosaic.shape != (rows * IMAGE_SIZE, MOSAIC_COLUMNS * IMAGE_SIZE) or rows * MOSAIC_COLUMNS < count:
        raise DatasetError(f"{where}: mosaic of {mosaic.shape} pixels cannot hold {count} faces")
    tiles = mosaic.reshape(rows, IMAGE_SIZE, MOSAIC_COLUMNS, IMAGE_SIZE).transpose(0, 2, 1, 3)
    return tiles.reshape(rows * MOSAIC_COLUMNS, IMAGE_SIZE, IMAGE_SIZE)[:count]


def load_packed(path: str | os.PathLike) -> FaceDataset:
    """A dataset packed by `python -m model_export.pack`: faces as JPEG mosaics plus labels, vote targets, raw votes,
    official splits and classes, as the original loader produced them (re-encoding noted in `notes`)."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
        fmt, version = str(z["format"]), int(z["version"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a packed dataset (python -m model_export.pack writes them): {exc}") from exc
    if fmt != PACKED_FORMAT:
        raise DatasetError(f"{path}: not a packed dataset (format {fmt!r})")
    if version > PACKED_VERSION:
        raise DatasetError(f"{path}: packed format version {version} is newer than this code reads ({PACKED_VERSION})")
    blob, ends = z["jpeg"].tobytes(), np.cumsum(z["chunk_bytes"])
    images = np.concatenate([decode_mosaic(blob[end - size : end], int(count), f"{path}, mosaic {k}")
                             for k, (size, end, count) in enumerate(zip(z["chunk_bytes"], ends, z["chunk_images"]))])
    soft = z["soft"] if z["soft"].size else None
    votes = z["votes"].astype(np.int64) if z["votes"].size else None
    return FaceDataset(images, z["labels"].astype(np.int64), z["splits"], tuple(z["classes"].tolist()), str(z["name"]),
                       soft=soft, votes=votes, source=str(path), notes=list(z["notes"].tolist()))


def _cache_key(path: Path, kind: str) -> str:
    st = path.stat()
    return hashlib.sha256(f"{kind}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|v2".encode()).hexdigest()[:16]


def load_dataset(kind: str, path: str | os.PathLike, classes: Sequence[str] | None = None, cache_dir: str | os.PathLike | None = None) -> FaceDataset:
    """Dispatch on `kind` (see `iter_kinds`), caching decoded arrays as .npz."""
    loaders = {"fer2013-zip": load_fer2013_zip, "fer2013-csv": load_fer2013_csv, "ferplus": load_ferplus_zip, "packed": load_packed}
    path = Path(path)
    if kind == "folder":
        return load_image_folder(path, classes)
    if kind not in loaders:
        raise DatasetError(f"unknown dataset kind {kind!r}; use one of {', '.join(iter_kinds())}")
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    cache = Path(cache_dir or os.environ.get("EMOTION_CACHE", Path.home() / ".cache" / "emotion-web"))
    cached = cache / f"{kind}-{_cache_key(path, kind)}.npz"
    if cached.exists():
        z = np.load(cached, allow_pickle=False)
        soft = z["soft"] if z["soft"].size else None
        votes = z["votes"] if z["votes"].size else None
        return FaceDataset(z["images"], z["labels"], z["splits"], tuple(z["classes"].tolist()), str(z["name"]),
                           soft=soft, votes=votes, source=str(path), notes=list(z["notes"].tolist()))
    ds = loaders[kind](path)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")  # runs started together each write their own, then one wins
    np.savez(tmp, images=ds.images, labels=ds.labels, splits=ds.splits, classes=np.asarray(ds.classes), name=ds.name,
             soft=ds.soft if ds.soft is not None else np.zeros(0, np.float32),
             votes=ds.votes if ds.votes is not None else np.zeros(0, np.int64), notes=np.asarray(ds.notes, dtype=str))
    os.replace(tmp, cached)
    return ds


def stratified_split(labels: np.ndarray, val_fraction: float = 0.125, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (train, val) holding `val_fraction` of every class in val (87.5/12.5 by default)."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def iter_kinds() -> Iterable[str]:
    return ("fer2013-zip", "fer2013-csv", "ferplus", "folder", "packed")
