"""Dataset readers on small synthetic zips/CSVs/folders made here, including malformed input."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_export.data import (FER2013_CLASSES, FERPLUS_CLASSES, DatasetError, ferplus_reference_labels, ferplus_targets, load_dataset,
                               load_fer2013_csv, load_fer2013_zip, load_ferplus_zip, load_image_folder, stratified_split)


def png_bytes(value: int, size: tuple[int, int] = (48, 48), mode: str = "L", fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, value if mode == "L" else (value, value, value)).save(buf, fmt)
    return buf.getvalue()


def make_fer2013_zip(path: Path, extra: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for i, cls in enumerate(FER2013_CLASSES):
            zf.writestr(f"train/{cls}/Training_{i}.jpg", png_bytes(10 * i, fmt="JPEG"))
            zf.writestr(f"test/{cls}/PublicTest_{i}.jpg", png_bytes(10 * i + 1, fmt="JPEG"))
            zf.writestr(f"test/{cls}/PrivateTest_{i}.jpg", png_bytes(10 * i + 2, fmt="JPEG"))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)


def test_fer2013_zip_reads_splits_and_classes(tmp_path: Path) -> None:
    make_fer2013_zip(tmp_path / "fer.zip")
    ds = load_fer2013_zip(tmp_path / "fer.zip")
    assert ds.images.shape == (21, 48, 48) and ds.images.dtype == np.uint8
    assert sorted(np.unique(ds.splits)) == ["public_test", "test", "train"]
    train = ds.split("train")
    assert [FER2013_CLASSES[i] for i in train.labels] == sorted(FER2013_CLASSES)
    happy = train.images[list(FER2013_CLASSES).index("happy") == train.labels]
    assert abs(int(happy.mean()) - 30) <= 2  # JPEG of a flat grey 30


@pytest.mark.parametrize("member, message", [
    ("train/joy/Training_99.jpg", "unknown class folder 'joy'"),
    ("train/happy/Other_1.jpg", "must start with Training_"),
])
def test_fer2013_zip_rejects_bad_layout(tmp_path: Path, member: str, message: str) -> None:
    make_fer2013_zip(tmp_path / "fer.zip", {member: png_bytes(5)})
    with pytest.raises(DatasetError, match=message) as info:
        load_fer2013_zip(tmp_path / "fer.zip")
    assert member in str(info.value)


def test_fer2013_zip_names_corrupt_image(tmp_path: Path) -> None:
    make_fer2013_zip(tmp_path / "fer.zip", {"train/sad/Training_7.jpg": b"\xff\xd8 not really a jpeg"})
    with pytest.raises(DatasetError, match=r"Training_7\.jpg: not a readable image"):
        load_fer2013_zip(tmp_path / "fer.zip")


def test_missing_and_non_zip_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="file not found"):
        load_fer2013_zip(tmp_path / "absent.zip")
    (tmp_path / "bad.zip").write_bytes(b"hello")
    with pytest.raises(DatasetError, match="not a valid zip"):
        load_ferplus_zip(tmp_path / "bad.zip")


def write_csv(path: Path, rows: list[str], header: str = "emotion,pixels,Usage") -> None:
    path.write_text("\n".join([header, *rows]) + "\n")


def test_fer2013_csv_reads_rows(tmp_path: Path) -> None:
    pix = " ".join(str(i % 256) for i in range(48 * 48))
    write_csv(tmp_path / "f.csv", [f"3,{pix},Training", f"6,{pix},PublicTest", f"0,{pix},PrivateTest"])
    ds = load_fer2013_csv(tmp_path / "f.csv")
    assert ds.labels.tolist() == [3, 6, 0]
    assert ds.splits.tolist() == ["train", "public_test", "test"]
    assert ds.images[0, 0, :3].tolist() == [0, 1, 2] and ds.images[0, 1, 0] == 48


@pytest.mark.parametrize("row, message", [
    ("9,{pix},Training", "emotion 9 outside"),
    ("3,1 2 3,Training", "expected 2304 pixel values"),
    ("3,{pix},Validation", "Usage 'Validation'"),
    ("x,{pix},Training", "non-numeric"),
    ("3", "expected 3 columns"),
])
def test_fer2013_csv_malformed_row_names_row(tmp_path: Path, row: str, message: str) -> None:
    pix = " ".join(["7"] * 2304)
    write_csv(tmp_path / "f.csv", [f"1,{pix},Training", row.format(pix=pix)])
    with pytest.raises(DatasetError, match=message) as info:
        load_fer2013_csv(tmp_path / "f.csv")
    assert "row 3" in str(info.value)


def test_fer2013_csv_bad_header(tmp_path: Path) -> None:
    write_csv(tmp_path / "f.csv", [], header="label,data")
    with pytest.raises(DatasetError, match="header must be"):
        load_fer2013_csv(tmp_path / "f.csv")


def make_ferplus_zip(path: Path, rows: dict[str, list[str]], extra_images: bool = True) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for folder, lines in rows.items():
            zf.writestr(f"{folder}/label.csv", "\n".join(lines) + "\n")
            for line in lines:
                name = line.split(",")[0]
                if extra_images:
                    zf.writestr(f"{folder}/{name}", png_bytes(100))


def test_ferplus_majority_soft_and_dropped() -> None:
    votes = np.array([[6, 0, 0, 1, 3, 0, 0, 0, 0, 0],  # neutral
                      [0, 0, 0, 0, 0, 0, 0, 0, 7, 3],  # unknown majority: dropped
                      [0, 5, 5, 0, 0, 0, 0, 0, 0, 0]])  # tie: first column wins (happiness)
    labels, soft = ferplus_targets(votes)
    assert labels.tolist() == [0, -1, 1]
    np.testing.assert_allclose(soft[0], [0.6, 0, 0, 0.1, 0.3, 0, 0, 0])


def test_ferplus_reference_protocol() -> None:
    votes = np.array([[6, 0, 0, 1, 3, 0, 0, 0, 0, 0],  # single vote removed: 6 of 9 -> neutral
                      [4, 0, 0, 3, 3, 0, 0, 0, 0, 0],  # 4 of 10 is no majority -> excluded
                      [1, 3, 1, 1, 1, 1, 1, 1, 0, 0],  # ones are outliers: 3 of 3 -> happiness
                      [0, 2, 0, 0, 0, 0, 0, 0, 6, 2],  # unknown wins -> excluded
                      [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # nothing left -> excluded
                      [0, 0, 0, 0, 0, 0, 0, 5, 0, 4]])  # contempt 5 of 9
    assert ferplus_reference_labels(votes).tolist() == [0, -1, 1, -1, -1, 7]


def ferplus_rows(prefix: str) -> list[str]:
    return [f'{prefix}{i}.png,"(0, 0, 48, 48)",' + ",".join("10" if j == i else "0" for j in range(10)) for i in range(8)] + \
           [f'{prefix}9.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,0,10,0']


def test_ferplus_zip(tmp_path: Path) -> None:
    make_ferplus_zip(tmp_path / "fp.zip", {"FER2013Train": ferplus_rows("a"), "FER2013Valid": ferplus_rows("b"), "FER2013Test": ferplus_rows("c")})
    ds = load_ferplus_zip(tmp_path / "fp.zip")
    assert ds.classes == FERPLUS_CLASSES
    assert len(ds.images) == 24 and ds.soft.shape == (24, 8)
    assert ds.split("test").labels.tolist() == list(range(8))
    assert "dropped 3" in ds.notes[0]


def test_ferplus_errors_name_file_and_row(tmp_path: Path) -> None:
    rows = {"FER2013Train": ferplus_rows("a"), "FER2013Valid": ferplus_rows("b"), "FER2013Test": ferplus_rows("c")}
    rows["FER2013Valid"][2] = 'b2.png,"(0, 0, 48, 48)",1,2,three,0,0,0,0,0,0,0'
    make_ferplus_zip(tmp_path / "fp.zip", rows)
    with pytest.raises(DatasetError, match=r"FER2013Valid/label.csv, row 3: vote counts must be integers"):
        load_ferplus_zip(tmp_path / "fp.zip")
    rows["FER2013Valid"][2] = 'b2.png,"(0, 0, 48, 48)",1,2'
    make_ferplus_zip(tmp_path / "fp.zip", rows)
    with pytest.raises(DatasetError, match="expected 12 columns"):
        load_ferplus_zip(tmp_path / "fp.zip")
    make_ferplus_zip(tmp_path / "fp.zip", {"FER2013Train": ferplus_rows("a")})
    with pytest.raises(DatasetError, match="missing FER2013Valid/label.csv"):
        load_ferplus_zip(tmp_path / "fp.zip")
    make_ferplus_zip(tmp_path / "fp.zip", rows | {"FER2013Valid": ferplus_rows("b")}, extra_images=False)
    with pytest.raises(DatasetError, match="listed but not in the zip"):
        load_ferplus_zip(tmp_path / "fp.zip")


def test_image_folder_custom_classes_and_resize(tmp_path: Path) -> None:
    for cls, value in (("happy", 200), ("peace", 120), ("sad", 40)):
        (tmp_path / "set" / cls).mkdir(parents=True)
        # Larger colour images: converted to gray and resized to 48x48 like live crops.
        (tmp_path / "set" / cls / "a.png").write_bytes(png_bytes(value, size=(120, 90), mode="RGB"))
    ds = load_image_folder(tmp_path / "set", classes=("happy", "peace", "sad"))
    assert ds.images.shape == (3, 48, 48)
    assert ds.labels.tolist() == [0, 1, 2]
    assert [int(np.median(im)) for im in ds.images] == [200, 120, 40]
    (tmp_path / "set" / "angry").mkdir()
    with pytest.raises(DatasetError, match=r"\['angry'\] not in the given classes"):
        load_image_folder(tmp_path / "set", classes=("happy", "peace", "sad"))


def test_load_dataset_caches_and_rejects_unknown_kind(tmp_path: Path) -> None:
    make_fer2013_zip(tmp_path / "fer.zip")
    first = load_dataset("fer2013-zip", tmp_path / "fer.zip", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again = load_dataset("fer2013-zip", tmp_path / "fer.zip", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.images, again.images)
    assert again.classes == FER2013_CLASSES
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        load_dataset("imagenet", tmp_path / "fer.zip")


def test_stratified_split_keeps_class_ratios() -> None:
    labels = np.repeat(np.arange(3), [800, 160, 40])
    train, val = stratified_split(labels, 0.125, seed=1)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == 1000
    assert np.bincount(labels[val]).tolist() == [100, 20, 5]


def test_ferplus_reference_targets_follow_the_reference_tooling() -> None:
    from model_export.data import ferplus_reference_targets

    votes = np.array([
        [6, 3, 1, 0, 0, 0, 0, 0, 0, 0],  # the single vote is an outlier: 6/9, 3/9
        [4, 4, 0, 0, 0, 0, 0, 0, 2, 0],  # a tie is taken together
        [3, 3, 2, 2, 0, 0, 0, 0, 0, 0],  # four classes before 75%: too ambiguous
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # nothing but outliers
        [2, 2, 2, 0, 0, 0, 0, 0, 4, 0],  # unknown on top
        [5, 0, 0, 0, 0, 0, 0, 0, 3, 0],  # unknown after an emotion: the emotion alone (5 of 8 votes)
        [0, 0, 3, 0, 0, 0, 0, 2, 0, 5],  # not-a-face on top
    ])
    soft, keep = ferplus_reference_targets(votes)
    assert keep.tolist() == [True, True, False, False, False, True, False]
    np.testing.assert_allclose(soft[0], [6 / 9, 3 / 9, 0, 0, 0, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(soft[1], [0.5, 0.5, 0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(soft[5], [1, 0, 0, 0, 0, 0, 0, 0])
    assert not soft[~keep].any()
