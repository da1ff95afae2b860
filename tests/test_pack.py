"""`python -m model_export.pack`: a dataset in one file of <= 45 MB, read back by the `packed` loader, trained from."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from model_export.data import DatasetError, load_dataset
from model_export.pack import encode_mosaic, main as pack_main

from dataset_paths import FERPLUS_ZIP, needs_ferplus, shipped_model_dir


@pytest.fixture(scope="module")
def packed_ferplus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if not FERPLUS_ZIP.is_file():
        pytest.skip(f"FER+ dataset absent: {FERPLUS_ZIP}")
    out = tmp_path_factory.mktemp("packed") / "ferplus.npz"
    capture = io.StringIO()
    with redirect_stdout(capture):
        assert pack_main(["--dataset", "ferplus", "--data", str(FERPLUS_ZIP), "--out", str(out)]) == 0
    return out, capture.getvalue()


@needs_ferplus
@pytest.mark.dataset
def test_ferplus_packs_into_one_file_under_45_mb_with_everything_kept(packed_ferplus, tmp_path: Path) -> None:
    out, printed = packed_ferplus
    size = out.stat().st_size
    assert size <= 45e6 and f"{size / 1e6:.2f} MB" in printed and "JPEG q95" in printed
    original = load_dataset("ferplus", FERPLUS_ZIP)
    packed = load_dataset("packed", out, cache_dir=tmp_path)
    assert (packed.name, packed.classes) == (original.name, original.classes)
    for split in ("train", "public_test", "test"):  # all of FER+ fits
        a, b = original.split(split), packed.split(split)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.votes, b.votes)
        np.testing.assert_array_equal(a.soft, b.soft)
    error = float(np.abs(packed.images.astype(np.int16) - original.images).mean())
    assert 0 < error < 1.5 and f"mean absolute pixel error {error:.2f} gray levels" in printed
    assert any("re-encoded as JPEG q95" in n for n in packed.notes)


@needs_ferplus
@pytest.mark.dataset
def test_a_face_in_the_mosaic_decodes_like_its_own_jpeg(packed_ferplus, tmp_path: Path) -> None:
    """Tiles on the 8 px block grid: the mosaic costs no quality against one JPEG per face."""
    from PIL import Image

    faces = load_dataset("ferplus", FERPLUS_ZIP).images[:300]
    from_mosaic = load_dataset("packed", packed_ferplus[0], cache_dir=tmp_path).images[:300]
    for face, got in zip(faces, from_mosaic):
        buffer = io.BytesIO()
        Image.fromarray(face).save(buffer, "JPEG", quality=95)
        np.testing.assert_array_equal(np.asarray(Image.open(buffer)), got)


@needs_ferplus
@pytest.mark.dataset
def test_training_and_evaluation_read_the_packed_file(packed_ferplus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    from model_export.evaluate import main as evaluate_main
    from model_export.run import main as run_main

    monkeypatch.setenv("EMOTION_CACHE", str(tmp_path / "cache"))
    assert run_main(["--dataset", "packed", "--data", str(packed_ferplus[0]), "--out", str(tmp_path / "run"),
                     "--student", "lite0s5-48", "--teachers", "0", "--no-distill", "--warmup-epochs", "0",
                     "--student-epochs", "1", "--batch-size", "16", "--max-steps", "1", "--limit", "32", "--eval-limit", "32", "--threads", "1",
                     "--stages", "student"]) == 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["dataset"] == "ferplus" and run["split"]["test"] == 32 and run["target"] == "soft"
    model = shipped_model_dir("ferplus") / "model.onnx"
    if model.is_file():
        assert evaluate_main(["--model", str(model), "--dataset", "packed", "--data", str(packed_ferplus[0])]) == 0
        text = capsys.readouterr().out
        assert "(b) FERPlus reference protocol " in text and "re-encoded as JPEG q95" in text


def write_noise_folder(root: Path, per_split: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("happy", "sad"):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_split // 2):
                Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(root / split / cls / f"{i}.png")


def test_test_split_is_left_out_only_when_the_file_would_be_too_big(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_noise_folder(tmp_path / "faces", 200)
    one_split = len(encode_mosaic(load_dataset("folder", tmp_path / "faces").split("test").images, 95)) / 1e6
    base = ["--dataset", "folder", "--data", str(tmp_path / "faces"), "--max-mb", f"{1.5 * one_split:.3f}"]
    assert pack_main([*base, "--out", str(tmp_path / "auto.npz")]) == 0
    assert "leaving the test split out" in capsys.readouterr().out
    auto = load_dataset("packed", tmp_path / "auto.npz", cache_dir=tmp_path / "cache")
    assert set(auto.splits.tolist()) == {"train"} and "official test split not packed" in auto.notes[-1]
    assert pack_main([*base, "--test", "include", "--out", str(tmp_path / "all.npz")]) == 2
    assert "exceeds --max-mb" in capsys.readouterr().err and not (tmp_path / "all.npz").exists()
    assert pack_main([*base[:-1], "10", "--out", str(tmp_path / "both.npz")]) == 0
    both = load_dataset("packed", tmp_path / "both.npz", cache_dir=tmp_path / "cache")
    assert len(both.split("test").labels) == 200 and both.classes == ("happy", "sad")


def test_a_file_that_is_not_a_packed_dataset_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="x.npz: not a packed dataset"):
        load_dataset("packed", tmp_path / "x.npz", cache_dir=tmp_path)
    np.savez(tmp_path / "y.npz", format=np.asarray("something else"), version=np.asarray(1))
    with pytest.raises(DatasetError, match="y.npz: not a packed dataset"):
        load_dataset("packed", tmp_path / "y.npz", cache_dir=tmp_path)
