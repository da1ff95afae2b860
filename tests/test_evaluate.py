"""The evaluation command (`python -m model_export.evaluate`) and the per-protocol figures an export records."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from model_export.data import FERPLUS_CLASSES, ferplus_reference_labels, load_dataset  # noqa: E402
from model_export.evaluate import evaluate_onnx, main as evaluate_main  # noqa: E402
from model_export.scoring import score_protocols  # noqa: E402

from dataset_paths import FERPLUS_ZIP, needs_ferplus, shipped_model_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_FERPLUS = shipped_model_dir("ferplus")
needs_shipped = pytest.mark.skipif(not (SHIPPED_FERPLUS / "model.onnx").is_file(), reason=f"{SHIPPED_FERPLUS} absent")


def test_protocols_and_flip_tta_on_known_logits() -> None:
    classes = ("a", "b", "c")
    labels = np.array([0, 1, 2, 0])
    # Votes in label.csv order (8 emotions, unknown, NF): row 3 has one stray vote per class (all outliers) -> excluded.
    votes = np.zeros((4, 10), np.int64)
    votes[0, 0], votes[1, 1], votes[2, 2] = 10, 9, 6
    votes[3, :3] = 1
    logits = np.array([[2, 0, 0], [0, 1, 3], [0, 0, 1], [0, 5, 0]], np.float32)  # rows 1 and 3 wrong
    mirrored = np.array([[2, 0, 0], [0, 9, 0], [0, 0, 1], [0, 5, 0]], np.float32)  # the mirror fixes row 1
    r = score_protocols(logits, mirrored, labels, votes, classes)
    assert r["all_images"]["single"]["accuracy"] == 0.5 and r["all_images"]["flip_tta"]["accuracy"] == 0.75
    assert r["reference"]["single"]["n"] == 3 and r["reference"]["flip_tta"]["accuracy"] == 1.0
    assert r["reference"]["single"]["confusion"] == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]
    assert "reference" not in score_protocols(logits, mirrored, labels, None, classes)


@needs_ferplus
@needs_shipped
@pytest.mark.dataset
def test_cli_prints_both_ferplus_protocols_for_the_shipped_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sidecar = json.loads((SHIPPED_FERPLUS / "model.json").read_text())
    out_json = tmp_path / "eval.json"
    assert evaluate_main(["--model", str(SHIPPED_FERPLUS / "model.onnx"), "--dataset", "ferplus", "--data", str(FERPLUS_ZIP),
                          "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    row_a = next(line for line in lines if line.startswith("(a) all images whose vote argmax is an emotion "))
    row_b = next(line for line in lines if line.startswith("(b) FERPlus reference protocol "))
    # The published counts of both protocols on the official FER+ test split, and the card's single-view figure.
    assert row_a.split()[-5:-1] == ["3545", "single", "view", f"{sidecar['accuracy']['test']:.2%}"]
    assert row_b.split()[-5:-2] == ["3137", "single", "view"]
    assert sum("  flip TTA " in line for line in lines) == 2  # one row per protocol
    assert ("its flip TTA rows repeat the single-view rows" in text) == sidecar["flip_tta_in_graph"]
    assert "per class" in text and "confusion matrix" in text
    report = json.loads(out_json.read_text())
    protocols = report["models"][0]["protocols"]
    test = load_dataset("ferplus", FERPLUS_ZIP).split("test")
    for name, n in (("all_images", 3545), ("reference", 3137)):
        for view in ("single", "flip_tta"):
            r = protocols[name][view]
            cm = np.asarray(r["confusion"])
            assert r["n"] == n == cm.sum() and r["accuracy"] == pytest.approx(np.trace(cm) / n)
    assert (ferplus_reference_labels(test.votes) >= 0).sum() == 3137


@needs_ferplus
@needs_shipped
@pytest.mark.dataset
def test_a_dataset_without_votes_gets_protocol_a_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """FER+ test images written as a user's folder (lossless PNG, 48 px): same figures, and it says (b) does not apply."""
    from PIL import Image

    test = load_dataset("ferplus", FERPLUS_ZIP).split("test")
    pick = np.random.default_rng(0).permutation(len(test.labels))[:200]
    for i in pick:
        folder = tmp_path / "faces" / "test" / FERPLUS_CLASSES[test.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(folder / f"{i:05d}.png")
    model = SHIPPED_FERPLUS / "model.onnx"
    assert evaluate_main(["--model", str(model), "--dataset", "folder", "--data", str(tmp_path / "faces"),
                          "--classes", ",".join(FERPLUS_CLASSES), "--json", str(tmp_path / "e.json")]) == 0
    text = capsys.readouterr().out
    assert "only protocol (a) applies" in text and "FERPlus reference protocol needs FER+ vote counts" in text
    assert "(b) FERPlus reference protocol " not in text
    got = json.loads((tmp_path / "e.json").read_text())["models"][0]["protocols"]
    want = evaluate_onnx(model, test.images[pick], test.labels[pick], None, FERPLUS_CLASSES)
    assert set(got) == {"all_images"} and got["all_images"]["single"]["n"] == 200
    for view in ("single", "flip_tta"):
        assert got["all_images"][view]["accuracy"] == pytest.approx(want["all_images"][view]["accuracy"])


@needs_shipped
def test_other_classes_or_a_missing_sidecar_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    for cls in ("happy", "peace", "sad"):
        (tmp_path / "mine" / "test" / cls).mkdir(parents=True)
        Image.fromarray(np.full((48, 48), 128, np.uint8)).save(tmp_path / "mine" / "test" / cls / "a.png")
    data = ["--dataset", "folder", "--data", str(tmp_path / "mine")]
    assert evaluate_main(["--model", str(SHIPPED_FERPLUS / "model.onnx"), *data]) == 2
    err = capsys.readouterr().err
    assert "the model's classes ['neutral', 'happiness'" in err and "differ from the dataset's ['happy', 'peace', 'sad']" in err
    lone = tmp_path / "lone" / "model.onnx"
    lone.parent.mkdir()
    shutil.copyfile(SHIPPED_FERPLUS / "model.onnx", lone)
    assert evaluate_main(["--model", str(lone), *data]) == 2
    assert "no sidecar model.json next to it" in capsys.readouterr().err
    assert evaluate_main(["--model", str(SHIPPED_FERPLUS / "model.onnx"), *data, "--split", "public_test"]) == 2
    assert "no images in split 'public_test'; this dataset has test" in capsys.readouterr().err


@needs_ferplus
@pytest.mark.dataset
def test_export_records_both_protocols_in_sidecar_and_card(tmp_path: Path) -> None:
    """A few real training steps, then the export: the sidecar and card carry both protocols and flip TTA, and the
    figures are what the evaluation command computes on the same images."""
    from model_export.export import protocol_lines
    from model_export.run import main as run_main

    args = ["--dataset", "ferplus", "--data", str(FERPLUS_ZIP), "--out", str(tmp_path / "run"), "--student", "lite0s5-48",
            "--teachers", "0", "--no-distill", "--warmup-epochs", "0", "--student-epochs", "1", "--max-steps", "1",
            "--limit", "64", "--eval-limit", "300", "--threads", "1", "--val-split", "official",
            "--stages", "student,report,export", "--ship", str(tmp_path / "ship")]
    assert run_main(args) == 0
    shipped = tmp_path / "ship" / "emotion" / "lite0s5-48.ferplus"
    sidecar = json.loads((shipped / "model.json").read_text())
    claims = sidecar["accuracy_protocols"]
    test = load_dataset("ferplus", FERPLUS_ZIP).split("test")
    images, labels, votes = test.images[:300], test.labels[:300], test.votes[:300]
    measured = evaluate_onnx(shipped / "model.onnx", images, labels, votes, FERPLUS_CLASSES)
    assert claims["split"] == "test" and claims["all_images"]["accuracy"] == sidecar["accuracy"]["test"]
    for name in ("all_images", "reference"):
        assert claims[name]["images"] == measured[name]["single"]["n"]
        assert claims[name]["accuracy"] == pytest.approx(measured[name]["single"]["accuracy"])
        assert claims[name]["flip_tta"] == pytest.approx(measured[name]["flip_tta"]["accuracy"])
        # The exported graph averages each face with its mirror (the default): mirroring the input changes nothing.
        assert measured[name]["flip_tta"]["accuracy"] == measured[name]["single"]["accuracy"]
        # ... and takes how many views to run: the card states the face alone's figure (the page's slowed mode).
        assert claims[name]["one_view"] == pytest.approx(measured[name]["one_view"]["accuracy"])
    assert sidecar["views"] == {"input": "views", "count": 2}
    assert claims["reference"]["images"] == (ferplus_reference_labels(votes) >= 0).sum() < 300
    card = (shipped / "card" / "model_card.md").read_text()
    assert sidecar["flip_tta_in_graph"] and all(line in card for line in protocol_lines(claims, flip_in_graph=True))
    assert "FERPlus reference protocol" in card and "face and mirror averaged in the graph" in card
    assert "official validation split" in card
