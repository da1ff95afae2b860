"""A few real training steps on a small real subset: the loss goes down, distillation runs, export matches torch."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from emotion_runtime.preprocess import NORM_MEAN, NORM_STD  # noqa: E402
from model_export.augment import AugmentConfig, augment  # noqa: E402
from model_export.data import load_dataset  # noqa: E402
from model_export.export import batch1_parity, export_onnx, parity, simplify_onnx, to_webgl  # noqa: E402
from model_export.onnx_edit import add_views_input  # noqa: E402
from model_export.scoring import onnx_logits  # noqa: E402
from model_export.models import STUDENT, MirrorAveraged, build_model  # noqa: E402
from model_export.run import main as run_main  # noqa: E402
from model_export.train import ArraySplit, TrainConfig, Trainer, class_weights, load_run_model, predict_logits, to_input  # noqa: E402

from dataset_paths import FERPLUS_ZIP, needs_ferplus, shipped_model_dir  # noqa: E402

NO_AUGMENT = AugmentConfig(flip=0, rotate_deg=0, scale=(1, 1), shift=0, shear_deg=0, brightness=0, contrast=0, gamma=0,
                           noise_std=0, erase_p=0)


@pytest.fixture(scope="module")
def small_real() -> tuple[ArraySplit, ArraySplit]:
    ds = load_dataset("ferplus", FERPLUS_ZIP).split("train")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(ds.labels))
    tr, va = idx[:128], idx[128:256]
    return (ArraySplit(ds.images[tr], ds.labels[tr], ds.soft[tr]), ArraySplit(ds.images[va], ds.labels[va], ds.soft[va]))


def test_class_weights_are_clipped() -> None:
    labels = np.repeat(np.arange(3), [1000, 300, 2])
    w = class_weights(labels, 3, power=0.5, clip=(0.5, 2.0))
    assert w[0] < w[1] < w[2] and w.min() >= 0.5 and w.max() == pytest.approx(2.0)


def test_augment_keeps_shape_and_range() -> None:
    x = torch.linspace(0, 255, 48 * 48).view(1, 1, 48, 48).repeat(16, 1, 1, 1)
    y = augment(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 255
    assert not torch.allclose(y, x)  # strong augmentation really changes the batch
    torch.testing.assert_close(augment(x, NO_AUGMENT), x, atol=1e-3, rtol=0)


# Committed FER+ weights (the GPU restart, start of the shipped model): a real teacher, no training needed.
COMMITTED_TEACHER = Path(__file__).resolve().parents[1] / "checkpoints" / "ferplus48gpu" / "student"


def committed_teacher() -> torch.nn.Module:
    return load_run_model(COMMITTED_TEACHER, 8)


@needs_ferplus
@pytest.mark.dataset
@pytest.mark.parametrize("distill", [False, True])
def test_loss_decreases_on_real_faces(tmp_path: Path, small_real, distill: bool) -> None:
    torch.manual_seed(0)
    train, val = small_real
    cfg = TrainConfig(warmup_epochs=0, epochs=4, batch_size=32, lr=2e-3, threads=1, augment=NO_AUGMENT)
    teachers = [committed_teacher()] if distill else []
    out = Trainer(build_model(STUDENT, 8), train, val, 8, cfg, tmp_path, teachers=teachers).fit(resume=False)
    losses = [h["train_loss"] for h in out["history"]]
    assert losses[-1] < 0.8 * losses[0], losses
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()


@needs_ferplus
@pytest.mark.dataset
def test_teachers_see_the_students_augmented_batch(tmp_path: Path, small_real) -> None:
    """Soft targets come from the very view the student is trained on, augmentation included."""
    train, val = small_real
    student, teacher = build_model(STUDENT, 8, pretrained=False), committed_teacher()
    seen: dict[str, list[torch.Tensor]] = {"student": [], "teacher": []}
    student.register_forward_hook(lambda m, args, out: seen["student"].append(args[0].clone()) if m.training else None)
    teacher.register_forward_hook(lambda m, args, out: seen["teacher"].append(args[0].clone()))
    cfg = TrainConfig(warmup_epochs=0, epochs=1, batch_size=32, threads=1, max_steps_per_epoch=3)
    Trainer(student, train, val.head(32), 8, cfg, tmp_path, teachers=[teacher]).fit(resume=False)
    assert len(seen["student"]) == len(seen["teacher"]) == 3
    for s, t in zip(seen["student"], seen["teacher"]):
        torch.testing.assert_close(s, t, atol=0, rtol=0)
    faces = (torch.as_tensor(train.images).float().flatten(1) - NORM_MEAN) / NORM_STD
    views = torch.cat(seen["student"]).flatten(1)
    assert torch.cdist(views, faces).min() > 1.0  # every view is augmented, none is a training face as stored


@needs_ferplus
@pytest.mark.dataset
def test_export_parity_with_torch(tmp_path: Path, small_real) -> None:
    model = build_model(STUDENT, 8).eval()
    export_onnx(model, tmp_path / "raw.onnx")
    before, after = simplify_onnx(tmp_path / "raw.onnx", tmp_path / "m.onnx")
    assert after < before
    check = parity(model, tmp_path / "m.onnx", small_real[1].images)
    assert check["max_abs_diff"] < 1e-3 and check["argmax_agreement"] == 1.0


@pytest.mark.parametrize("zooms", [(1.0,), (1.0, 1.1)])
def test_mirror_averaged_export_is_the_mean_of_all_views_on_every_variant(tmp_path: Path, small_real, zooms) -> None:
    """The flip-TTA graph: logits are the mean over a face and its mirror (at each zoom about the centre, bilinear
    with edges repeated, as grid_sample computes it), so a face and its mirror score alike, in torch, in the
    dynamic-batch ONNX file and in the batch-1 WebGL variant."""
    import torch.nn.functional as F

    model = build_model(STUDENT, 8).eval()
    averaged = MirrorAveraged(model, zooms).eval()
    faces = small_real[1].images[:16]
    x = to_input(faces)
    views = []
    with torch.no_grad():
        for z in zooms:
            theta = torch.tensor([[1 / z, 0, 0], [0, 1 / z, 0]]).expand(len(x), 2, 3)
            zoomed = F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), padding_mode="border", align_corners=False)
            views += [model(zoomed), model(torch.flip(zoomed, dims=[3]))]
    expected = torch.stack(views).mean(0).numpy()
    assert np.abs(predict_logits(averaged, faces) - expected).max() < 1e-4
    export_onnx(averaged, tmp_path / "raw.onnx")
    simplify_onnx(tmp_path / "raw.onnx", tmp_path / "m.onnx")
    to_webgl(tmp_path / "m.onnx", tmp_path / "webgl.onnx")
    logits = onnx_logits(tmp_path / "m.onnx", faces)
    assert np.abs(logits - predict_logits(averaged, faces)).max() < 1e-3
    assert np.abs(onnx_logits(tmp_path / "m.onnx", np.ascontiguousarray(faces[:, :, ::-1])) - logits).max() < 1e-4
    assert batch1_parity(tmp_path / "m.onnx", tmp_path / "webgl.onnx", faces)["max_abs_diff"] < 1e-5
    assert np.abs(predict_logits(model, faces) - expected).max() > 1e-3  # the views differ: the test can tell
    # With a views input (what the export ships): all views are the same logits, bit for bit; one is the network on
    # the face as given (no mirror, no zoom).
    import onnx

    edited = onnx.load(str(tmp_path / "m.onnx"))
    assert add_views_input(edited) == 2 * len(zooms)
    onnx.save(edited, str(tmp_path / "views.onnx"))
    assert np.array_equal(onnx_logits(tmp_path / "views.onnx", faces), logits)
    assert np.abs(onnx_logits(tmp_path / "views.onnx", faces, views=1) - predict_logits(model, faces)).max() < 1e-4


@needs_ferplus
@pytest.mark.dataset
@pytest.mark.slow
def test_cli_runs_every_stage_and_resumes(tmp_path: Path) -> None:
    args = ["--dataset", "ferplus", "--data", str(FERPLUS_ZIP), "--out", str(tmp_path / "run"), "--teacher-epochs", "1",
            "--student-epochs", "1", "--max-steps", "2", "--limit", "128", "--eval-limit", "64", "--threads", "1",
            "--ship", str(tmp_path / "ship")]
    assert run_main(args) == 0
    shipped = tmp_path / "ship" / "emotion" / "lite0s5-64.ferplus"  # <arch>.<dataset>, listed by the site build
    sidecar = json.loads((shipped / "model.json").read_text())
    assert sidecar["id"] == shipped.name and (shipped / "model.onnx").is_file() and (shipped / "model.webgl.onnx").is_file()
    assert sidecar["labels"][:2] == ["neutral", "happiness"] and sidecar["input"]["shape"] == [None, 1, 48, 48]
    assert sidecar["export"]["parity"]["max_abs_diff"] < 1e-3
    assert sidecar["flip_tta_in_graph"] and json.loads((tmp_path / "run" / "run.json").read_text())["flip_tta"]
    for f in ("model_card.md", "confusion_test.png", "learning_curves.png", "metrics.json"):
        assert (shipped / "card" / f).stat().st_size > 0
    assert (tmp_path / "run" / "model.fp16.onnx").exists()
    # Stages whose outputs exist are skipped: a second run only redoes report/export.
    mtime = (tmp_path / "run" / "student" / "best.pt").stat().st_mtime
    assert run_main(args) == 0
    assert (tmp_path / "run" / "student" / "best.pt").stat().st_mtime == mtime


def test_geometric_preset_moves_pixels_but_never_changes_grey_levels() -> None:
    from model_export.augment import AUGMENT_PRESETS

    flat = torch.full((16, 1, 48, 48), 90.0)
    torch.testing.assert_close(augment(flat, AUGMENT_PRESETS["geometric"]), flat)  # no jitter, noise or erasing
    torch.manual_seed(0)
    ramp = torch.linspace(0, 255, 48).expand(16, 1, 48, 48).contiguous()
    moved = augment(ramp, AUGMENT_PRESETS["geometric"])
    assert not torch.allclose(moved, ramp)  # rotation, zoom, shift and flips still apply
    assert augment(flat, AUGMENT_PRESETS["wide"]).std() > 1  # the wide preset does change grey levels


def test_cli_reports_missing_dataset(tmp_path: Path, capsys) -> None:
    assert run_main(["--dataset", "ferplus", "--data", str(tmp_path / "nope.zip"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.zip: file not found" in capsys.readouterr().err


def test_init_from_checkpoint_keeps_backbone_and_refits_a_new_classifier(tmp_path: Path) -> None:
    from model_export.train import init_from_checkpoint

    torch.manual_seed(0)
    src = build_model(STUDENT, 8, pretrained=False).eval()
    torch.save({"model": src.state_dict(), "spec": {"name": STUDENT.name}, "epoch": 3, "val_acc": 0.5}, tmp_path / "best.pt")
    x = torch.randn(2, 1, 48, 48)
    same = init_from_checkpoint(build_model(STUDENT, 8, pretrained=False), tmp_path / "best.pt", log=lambda m: None).eval()
    torch.testing.assert_close(same(x), src(x))
    notes: list[str] = []
    three = init_from_checkpoint(build_model(STUDENT, 3, pretrained=False), tmp_path / "best.pt", log=notes.append)
    fresh = {k for k, v in three.state_dict().items() if v.shape != src.state_dict()[k].shape}
    assert fresh and all(k in notes[0] for k in fresh)  # only the resized classifier starts fresh, and the log says so
    for k, v in three.state_dict().items():
        if k not in fresh:
            torch.testing.assert_close(v, src.state_dict()[k])


def test_init_from_checkpoint_carries_classifier_rows_over_by_class_name(tmp_path: Path) -> None:
    from model_export.data import FER2013_CLASSES, FERPLUS_CLASSES
    from model_export.train import init_from_checkpoint

    torch.manual_seed(0)
    src = build_model(STUDENT, 8, pretrained=False).eval()
    torch.save({"model": src.state_dict(), "spec": {"name": STUDENT.name}}, tmp_path / "best.pt")
    notes: list[str] = []
    fer = init_from_checkpoint(build_model(STUDENT, 7, pretrained=False), tmp_path / "best.pt", log=notes.append,
                               classes=FER2013_CLASSES, source_classes=FERPLUS_CLASSES).eval()
    x = torch.randn(3, 1, 48, 48)
    plus_logits, fer_logits = src(x), fer(x)
    # Every FER-2013 class is one of FER+'s under another name (happy = happiness ...): same logit, same rank.
    for i, name in enumerate(FER2013_CLASSES):
        j = FERPLUS_CLASSES.index({"happy": "happiness", "sad": "sadness", "angry": "anger"}.get(name, name))
        torch.testing.assert_close(fer_logits[:, i], plus_logits[:, j])
    assert "happy<-happiness" in notes[0] and "kept as built" not in notes[0]
    # A class the source never had ('peace') keeps its fresh row; the known ones carry over.
    own = build_model(STUDENT, 3, pretrained=False)
    fresh_row = own.state_dict()["classifier.weight"][1].clone()
    own = init_from_checkpoint(own, tmp_path / "best.pt", log=notes.append, classes=("happy", "peace", "sad"),
                               source_classes=FERPLUS_CLASSES)
    weight = own.state_dict()["classifier.weight"]
    torch.testing.assert_close(weight[0], src.state_dict()["classifier.weight"][1])
    torch.testing.assert_close(weight[1], fresh_row)
    torch.testing.assert_close(weight[2], src.state_dict()["classifier.weight"][3])


def test_init_from_a_shallower_cut_carries_its_stages_into_a_deeper_student(tmp_path: Path) -> None:
    from model_export.models import STUDENT48, STUDENT48_DEEP
    from model_export.train import init_from_checkpoint

    torch.manual_seed(0)
    src = build_model(STUDENT48, 8, pretrained=False).eval()
    torch.save({"model": src.state_dict(), "spec": {"name": STUDENT48.name, "stages": STUDENT48.stages}}, tmp_path / "best.pt")
    built = build_model(STUDENT48_DEEP, 8, pretrained=False)
    before = {k: v.clone() for k, v in built.state_dict().items()}
    deep = init_from_checkpoint(built, tmp_path / "best.pt", log=lambda m: None).eval()
    x = torch.randn(2, 1, 48, 48)
    shared = len(src.blocks)
    torch.testing.assert_close(deep.blocks[:shared](deep.stem(x)), src.blocks(src.stem(x)))
    # The added stage and the head/classifier (sized for other features) keep what the model was built with.
    after = deep.state_dict()
    for k in after:
        if k.startswith(("head.", "classifier.", f"blocks.{shared}.")):
            torch.testing.assert_close(after[k], before[k])
    torch.save({"model": deep.state_dict(), "spec": {"name": STUDENT48_DEEP.name, "stages": STUDENT48_DEEP.stages}},
               tmp_path / "deep.pt")
    with pytest.raises(ValueError, match="shallower"):
        init_from_checkpoint(build_model(STUDENT48, 8, pretrained=False), tmp_path / "deep.pt", log=lambda m: None)


def test_array_split_subset_keeps_every_field_aligned() -> None:
    split = ArraySplit(np.arange(5 * 4, dtype=np.uint8).reshape(5, 2, 2), np.arange(5), np.eye(5)[:, :3],
                       np.arange(50).reshape(5, 10))
    for idx in (np.array([3, 1]), np.array([False, True, False, True, False]), slice(1, 4, 2)):
        part = split.subset(idx)
        kept = np.arange(5)[idx]
        assert part.labels.tolist() == kept.tolist()
        assert (part.images[:, 0, 0] == kept * 4).all() and (part.votes[:, 0] == kept * 10).all()
        assert (part.soft == np.eye(5)[kept, :3]).all()
    assert split.head(2).labels.tolist() == [0, 1]
    assert ArraySplit(split.images, split.labels).subset(np.array([4])).soft is None


def test_array_split_join_keeps_the_fields_both_splits_have() -> None:
    first = ArraySplit(np.zeros((2, 2, 2), np.uint8), np.array([0, 1]), np.eye(2), np.ones((2, 10)))
    second = ArraySplit(np.ones((3, 2, 2), np.uint8), np.array([1, 1, 0]), np.eye(2)[[1, 1, 0]], np.zeros((3, 10)))
    both = first.join(second)
    assert both.labels.tolist() == [0, 1, 1, 1, 0] and both.images[:, 0, 0].tolist() == [0, 0, 1, 1, 1]
    assert (both.soft.argmax(1) == both.labels).all() and both.votes[:, 0].tolist() == [1, 1, 0, 0, 0]
    assert first.join(ArraySplit(second.images, second.labels)).soft is None  # no half-filled vote distributions


def test_refit_without_validation_keeps_the_last_epochs_ema_weights(tmp_path: Path) -> None:
    from model_export.report import plot_curves

    rng = np.random.default_rng(0)
    split = ArraySplit(rng.integers(0, 255, (32, 48, 48), dtype=np.uint8), rng.integers(0, 3, 32))
    cfg = TrainConfig(warmup_epochs=0, epochs=3, batch_size=16, threads=1, augment=NO_AUGMENT)
    out = Trainer(build_model(STUDENT, 3, pretrained=False), split, None, 3, cfg, tmp_path, log=lambda _: None).fit(resume=False)
    assert [h["val_acc"] for h in out["history"]] == [None] * 3 and out["best"] == {"val_acc": None, "epoch": 3, "weights": "ema"}
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    assert best["epoch"] == 3 and np.isnan(best["val_acc"])
    assert all(torch.equal(best["model"][k], v) for k, v in last["ema"].items())  # the EMA weights of the last epoch
    assert not all(torch.equal(best["model"][k], v) for k, v in last["model"].items())  # not the raw ones
    plot_curves({"student": out["history"]}, tmp_path / "curves.png")  # training curves only
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_card_says_a_refit_trained_on_validation_and_kept_its_last_epoch() -> None:
    from dataclasses import asdict

    from model_export.export import recipe_lines, split_line

    run = {"config": asdict(TrainConfig()), "student": "lite0s5-48", "teachers": 0, "distill": False, "target": "soft",
           "student_epochs": 100, "val_split": "none", "split": {"train": 31940, "test": 3545}}
    assert "train together (31940) and nothing validates" in split_line(run)
    assert "the last epoch's EMA weights kept" in "\n".join(recipe_lines(run, {"parameters": 780_000}))
    validated = {**run, "val_split": "official", "split": {"train": 28385, "val": 3555, "test": 3545}}
    assert "validates (3555)" in split_line(validated)
    assert "best of raw/EMA on validation kept" in "\n".join(recipe_lines(validated, {"parameters": 780_000}))


def test_model_card_commands_include_the_run_it_was_initialised_from(tmp_path: Path) -> None:
    from model_export.export import recorded_commands

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    (first / "train.log").write_text("01:00:00 command: python -m model_export.run A\n01:01:00 epoch 1\n")
    (second / "run.json").write_text(json.dumps({"init_from": str(first)}))
    (second / "train.log").write_text("02:00:00 command: python -m model_export.run B --init-from first\n")
    assert recorded_commands(second) == ["python -m model_export.run A", "python -m model_export.run B --init-from first"]
    # Start weights written by `checkpoint init` carry run.json (with the run's command), not train.log.
    (first / "train.log").unlink()
    (first / "run.json").write_text(json.dumps({"command": "python -m model_export.run A --stages report,export"}))
    assert recorded_commands(second) == ["python -m model_export.run A --stages report,export",
                                         "python -m model_export.run B --init-from first"]


@needs_ferplus
@pytest.mark.dataset
def test_cli_distils_from_the_models_of_earlier_runs(tmp_path: Path) -> None:
    teacher = COMMITTED_TEACHER

    def args(out: Path, teacher: Path) -> list[str]:
        return ["--dataset", "ferplus", "--data", str(FERPLUS_ZIP), "--out", str(out), "--teacher-from", str(teacher),
                "--student-epochs", "1", "--warmup-epochs", "0", "--max-steps", "2", "--limit", "128", "--eval-limit", "64",
                "--threads", "1", "--stages", "student"]

    out = tmp_path / "run"
    assert run_main(args(out, teacher)) == 0
    assert not list(out.glob("teacher*"))  # nothing trained besides the student
    assert f"distillation from {teacher}" in (out / "train.log").read_text()
    assert json.loads((out / "run.json").read_text())["teachers"] == [str(teacher)]
    missing = tmp_path / "no-such-run" / "student"
    assert run_main(args(tmp_path / "other", missing)) == 2  # a teacher without best.pt is refused
    assert f"missing ['{missing}']" in (tmp_path / "other" / "train.log").read_text()


def test_card_recipe_names_the_teachers_of_earlier_runs() -> None:
    from dataclasses import asdict

    from model_export.export import recipe_lines

    run = {"config": asdict(TrainConfig()), "student": "lite0s5-48", "teachers": ["checkpoints/ferplus48deep/student"],
           "distill": True, "target": "soft", "student_epochs": 100, "teacher_epochs": 12}
    recipe = "\n".join(recipe_lines(run, {"parameters": 780_000}))
    assert "`checkpoints/ferplus48deep/student`" in recipe and "augmented, goes through the teachers and the student" in recipe
    assert "- Epochs: 100 (fine-tune)" in recipe and "distilled from the teacher ensemble" in recipe
    trained_here = "\n".join(recipe_lines({**run, "teachers": 2}, {"parameters": 780_000}))
    assert "2 x EfficientNet-Lite0" in trained_here and "- Epochs: teachers 12, student 100" in trained_here
    alone = "\n".join(recipe_lines({**run, "distill": False}, {"parameters": 780_000}))
    assert "no teacher" in alone and "Teachers" not in alone


def test_time_budget_plans_epochs_at_the_pace_of_the_last_epoch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    split = ArraySplit(rng.integers(0, 255, (16, 48, 48), dtype=np.uint8), rng.integers(0, 3, 16))
    cfg = TrainConfig(warmup_epochs=0, epochs=40, batch_size=8, threads=1, time_budget_s=100.0)
    trainer = Trainer(build_model(STUDENT, 3, pretrained=False), split, split, 3, cfg, tmp_path, log=lambda _: None)
    assert trainer._plan_epochs(1, epoch_s=30.0, elapsed_s=40.0) == 3  # a slow first epoch: 1 done + 60 s / 30 s
    assert trainer._plan_epochs(2, epoch_s=5.0, elapsed_s=45.0) == 13  # the steady pace re-plans: 2 + 55 s / 5 s
    assert trainer._plan_epochs(3, epoch_s=0.5, elapsed_s=46.0) == 40  # never past --*-epochs
    assert trainer._plan_epochs(5, epoch_s=10.0, elapsed_s=120.0) == 5  # over budget: stop after the epoch done


def test_time_budget_run_ends_its_cosine_within_the_budget(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    split = ArraySplit(rng.integers(0, 255, (32, 48, 48), dtype=np.uint8), rng.integers(0, 3, 32))
    cfg = TrainConfig(warmup_epochs=0, epochs=500, batch_size=16, lr=1e-3, threads=1, time_budget_s=6.0, augment=NO_AUGMENT)
    out = Trainer(build_model(STUDENT, 3, pretrained=False), split, split, 3, cfg, tmp_path, log=lambda _: None).fit(resume=False)
    history = out["history"]
    assert 2 <= len(history) < 500
    assert history[-1]["lr"] == pytest.approx(0.02 * cfg.lr, rel=0.05)  # the schedule reached its floor at the planned end
    assert torch.load(tmp_path / "last.pt", weights_only=False)["planned_epochs"] == len(history)


@needs_ferplus
@pytest.mark.dataset
def untrained_student(val: ArraySplit) -> tuple[torch.nn.Module, list[str], dict]:
    """A fresh student (seed 0), the shipped FER+ model's classes, and a metrics record as export_model takes it (a
    real run record, for the card's recipe lines)."""
    from model_export.report import summarise

    torch.manual_seed(0)
    model = build_model(STUDENT, 8).eval()
    run = json.loads((shipped_model_dir("ferplus") / "card" / "metrics.json").read_text())["run"]
    classes = run["classes"]
    metrics = {"run": run, "results": {"student": {"val": summarise(predict_logits(model, val.images), val.labels, classes)}}}
    return model, classes, metrics


def test_a_model_over_the_size_limit_ships_int8_weights_measured_as_shipped(tmp_path: Path, small_real, monkeypatch) -> None:
    """Lower the limit under this student's fp32 size: model.onnx gets int8 weights (a quarter of the bytes), the
    fp32 graph stays beside it, and the sidecar's accuracy is that of the int8 file."""
    import onnx

    from model_export import export
    from model_export.report import summarise

    monkeypatch.setattr(export, "SHIP_MAX_BYTES", 1_000_000)
    _, val = small_real
    model, classes, metrics = untrained_student(val)
    stale = tmp_path / "site" / "emotion" / f"{STUDENT.name}.{metrics['run']['dataset']}" / "card" / "confusion_val.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a plot of the model this one replaces")
    sidecar = export.export_model(model, {"val": val}, classes, metrics, tmp_path, ship=tmp_path / "site", log=lambda m: None)
    fp32, int8 = tmp_path / "model.fp32.onnx", tmp_path / "model.onnx"
    assert (stale.parent.parent / "model.onnx").read_bytes() == int8.read_bytes()
    assert not stale.exists()  # this run wrote no validation plot: the replaced model's does not stay beside its card
    assert sidecar["weights"]["dtype"] == "int8" and sidecar["bytes"] == int8.stat().st_size
    assert sidecar["weights"]["reason"] == "size limit"
    assert int8.stat().st_size < 0.35 * fp32.stat().st_size
    # WebGL cannot run computed weights: no WebGL copy, and the sidecar says why (the page then skips WebGL).
    assert not sidecar["variants"]["webgl"]["shipped"] and not (tmp_path / "model.webgl.onnx").exists()
    assert {n.op_type for n in onnx.load(str(int8)).graph.node} >= {"Cast", "Mul"}
    logits = onnx_logits(int8, val.images)
    assert sidecar["accuracy"]["val"] == summarise(logits, val.labels, classes)["accuracy"]
    assert sidecar["weights"]["vs_fp32"]["argmax_agreement"] >= 0.95
    assert np.abs(logits - onnx_logits(fp32, val.images)).max() == pytest.approx(sidecar["weights"]["vs_fp32"]["max_abs_diff"])
    assert "int8 with one fp32 scale per output channel" in (tmp_path / "model_card.md").read_text()


@needs_ferplus
@pytest.mark.dataset
def test_a_model_under_the_size_limit_ships_fp16_weights_unless_they_change_a_prediction(tmp_path: Path, small_real,
                                                                                         monkeypatch) -> None:
    """Where int8 weights cost accuracy, model.onnx stores its weights as fp16 (half the download, fp32 compute) when
    that changes no prediction on the validation split; the WebGL copy keeps fp32 weights (reweigh puts them back into
    the stored graph exactly); where fp16 would change one, fp32 ships."""
    import onnx

    from model_export import export
    from model_export.reweigh import fp32_graph
    from model_export.report import summarise

    monkeypatch.setattr(export, "INT8_MAX_DROP", -1.0)  # int8 would have to gain a whole point: it never ships
    _, val = small_real
    model, classes, metrics = untrained_student(val)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sidecar = export.export_model(model, {"val": val}, classes, metrics, tmp_path / "a", log=lambda m: None)
    fp32, shipped, webgl = (tmp_path / "a" / n for n in ("model.fp32.onnx", "model.onnx", "model.webgl.onnx"))
    assert sidecar["weights"]["dtype"] == "fp16" and sidecar["weights"]["vs_fp32"]["argmax_agreement"] == 1.0
    assert shipped.stat().st_size < 0.55 * fp32.stat().st_size == 0.55 * sidecar["weights"]["fp32_bytes"]
    stored = {t.data_type for t in onnx.load(str(shipped)).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in stored and "Cast" in {n.op_type for n in onnx.load(str(shipped)).graph.node}
    assert onnx.TensorProto.FLOAT16 not in {t.data_type for t in onnx.load(str(webgl)).graph.initializer}
    assert sidecar["accuracy"]["val"] == summarise(onnx_logits(shipped, val.images), val.labels, classes)["accuracy"]
    assert "Weights stored as fp16" in (tmp_path / "a" / "model_card.md").read_text()
    fp32_graph(tmp_path / "a", sidecar, tmp_path / "rebuilt.onnx")
    assert np.array_equal(onnx_logits(tmp_path / "rebuilt.onnx", val.images), onnx_logits(fp32, val.images))

    def flip_a_prediction(src, dst, dtype):  # "fp16 weights" that change the top class: the logits negated
        m = onnx.load(str(src))
        for node in m.graph.node:
            node.output[:] = ["raw" if o == "logits" else o for o in node.output]
        m.graph.node.append(onnx.helper.make_node("Neg", ["raw"], ["logits"]))
        onnx.save(m, str(dst))

    monkeypatch.setattr(export, "to_stored_weights", flip_a_prediction)
    sidecar = export.export_model(model, {"val": val}, classes, metrics, tmp_path / "b", log=lambda m: None)
    assert sidecar["weights"] == {"dtype": "fp32"}
    assert (tmp_path / "b" / "model.onnx").read_bytes() == (tmp_path / "b" / "model.fp32.onnx").read_bytes()


@needs_ferplus
@pytest.mark.dataset
def test_a_model_under_the_size_limit_ships_int8_weights_where_they_cost_no_accuracy(tmp_path: Path, small_real,
                                                                                    monkeypatch) -> None:
    """Under the size limit, int8 weights ship when the validation accuracy they give is within INT8_MAX_DROP of the
    fp32 graph's (here any drop passes): the sidecar records both accuracies and why, the WebGL copy keeps fp32
    weights, and the card says so."""
    from model_export import export

    monkeypatch.setattr(export, "INT8_MAX_DROP", 1.0)
    _, val = small_real
    model, classes, metrics = untrained_student(val)
    sidecar = export.export_model(model, {"val": val}, classes, metrics, tmp_path, log=lambda m: None)
    fp32, shipped = tmp_path / "model.fp32.onnx", tmp_path / "model.onnx"
    weights = sidecar["weights"]
    assert weights["dtype"] == "int8" and weights["reason"] == "no accuracy loss"
    assert shipped.stat().st_size < 0.35 * fp32.stat().st_size
    accuracy = lambda path: float((onnx_logits(path, val.images).argmax(1) == val.labels).mean())  # noqa: E731
    assert weights["check_accuracy"] == {"fp32": accuracy(fp32), "int8": accuracy(shipped)}
    assert sidecar["accuracy"]["val"] == accuracy(shipped)
    assert sidecar["variants"]["webgl"]["shipped"] and (tmp_path / "model.webgl.onnx").exists()
    assert "shipped because on the check split they scored" in (tmp_path / "model_card.md").read_text()
