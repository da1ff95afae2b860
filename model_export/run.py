"""One training run, end to end: data -> teacher ensemble -> distilled student -> reports -> ONNX export.

    python -m model_export.run --dataset ferplus --data ../shared/datasets/ferplus.zip --out runs/ferplus
    python -m model_export.run --dataset fer2013-zip --data ../shared/datasets/fer2013.zip --out runs/fer2013
    python -m model_export.run --dataset fer2013-csv --data fer2013.csv --out runs/fer2013csv
    python -m model_export.run --dataset folder --data my_faces/ --classes happy,peace,sad --out runs/mine

Every stage checkpoints into --out and is skipped when its output exists, so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .augment import AUGMENT_PRESETS
from .data import DatasetError, FaceDataset, ferplus_reference_targets, iter_kinds, load_dataset, stratified_split
from .models import SPECS, STUDENT, TEACHER, MirrorAveraged, build_model, count_parameters
from .train import ArraySplit, TrainConfig, Trainer, init_from_checkpoint, load_run_model

STAGES = ("teacher", "student", "report", "export")


def _array_split(part: FaceDataset, idx: np.ndarray | None = None) -> ArraySplit:
    whole = ArraySplit(part.images, part.labels, part.soft, part.votes)
    return whole if idx is None else whole.subset(idx)


def make_splits(ds: FaceDataset, val_fraction: float, seed: int, val_split: str = "stratified") -> dict[str, ArraySplit]:
    """Train/val from the official training data; the official test set stays intact.

    "stratified": a stratified `val_fraction` of the training split validates (the published recipe).
    "official": all of the training split trains and the official validation split (FER-2013 PublicTest =
    FER+ FER2013Valid) validates, as FER-2013 papers do; needs a dataset that has one.
    "none": the training and official validation splits train together and nothing validates: a refit with a
    schedule already chosen on validation, keeping its last epoch.
    """
    train_all = ds.split("train")
    public = ds.split("public_test")
    if val_split in ("official", "none"):
        if not len(public.labels):
            raise DatasetError(f"{ds.name}: --val-split {val_split} needs an official validation split (PublicTest / FER2013Valid)")
        if val_split == "none":
            splits = {"train": _array_split(train_all).join(_array_split(public))}
        else:
            splits = {"train": _array_split(train_all), "val": _array_split(public)}
    else:
        tr, va = stratified_split(train_all.labels, val_fraction, seed)
        splits = {"train": _array_split(train_all, tr), "val": _array_split(train_all, va)}
        if len(public.labels):
            splits["public_test"] = _array_split(public)
    test = ds.split("test")
    if len(test.labels):
        splits["test"] = _array_split(test)
    return splits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, choices=tuple(iter_kinds()), help="packed: a file written by model_export.pack")
    ap.add_argument("--data", required=True, help="path of the zip / csv / folder")
    ap.add_argument("--classes", help="comma-separated class order for --dataset folder (e.g. happy,peace,sad)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--teachers", type=int, default=1, help="teacher models in the ensemble, trained into --out/teacherN")
    ap.add_argument("--teacher-from", type=Path, nargs="+", default=None, metavar="DIR",
                    help="already trained models (folders holding a best.pt, e.g. runs/ferplus48deep/student or "
                         "checkpoints/ferplus48deep/student) as the teacher ensemble instead of training --teachers")
    ap.add_argument("--teacher-epochs", type=int, default=12)
    ap.add_argument("--student-epochs", type=int, default=12)
    ap.add_argument("--warmup-epochs", type=int, default=1)
    ap.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                    help="minutes per model: through the first quarter of its fine-tune stage, each epoch sets its epoch count "
                         "(at most --teacher-epochs / --student-epochs) to what the time left holds, and the cosine "
                         "schedule ends there (a GPU lease, a session)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr, help="peak fine-tune learning rate")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="earlier run dir: start each model from its teacherN/ or student/ best.pt (train longer, or "
                         "fine-tune FER+ weights on your own classes; a classifier of another size starts fresh)")
    ap.add_argument("--val-fraction", type=float, default=0.125)
    ap.add_argument("--val-split", choices=("stratified", "official", "none"), default="stratified",
                    help="validate on a stratified --val-fraction of the training split or on the official validation split; "
                         "none: train on both official splits and keep the last epoch (a refit of a recipe chosen on validation)")
    ap.add_argument("--student", choices=sorted(SPECS), default=STUDENT.name, help="student architecture (models.SPECS)")
    ap.add_argument("--augment", choices=sorted(AUGMENT_PRESETS), default="default", help="augmentation preset (augment.AUGMENT_PRESETS)")
    ap.add_argument("--label-smoothing", type=float, default=TrainConfig.label_smoothing)
    ap.add_argument("--class-weight-power", type=float, default=TrainConfig.class_weight_power,
                    help="class weights ~ (1/frequency)**power, clipped to [0.5, 2]; 0 turns them off")
    ap.add_argument("--target", choices=("soft", "majority", "reference"), default="soft",
                    help="FER+: vote distribution, majority label, or the reference tooling's cleaned distribution "
                         "(single votes dropped, ambiguous training images left out; data.ferplus_reference_targets)")
    ap.add_argument("--no-distill", action="store_true", help="train the student on labels only")
    ap.add_argument("--max-steps", type=int, default=None, help="cap steps per epoch (smoke runs)")
    ap.add_argument("--limit", type=int, default=None, help="use only this many training images (smoke runs)")
    ap.add_argument("--eval-limit", type=int, default=None, help="evaluate on only this many images per split (smoke runs)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-pretrained", action="store_true")
    ap.add_argument("--ship", type=Path, default=None,
                    help="models folder of the site (web/models): the model is copied to <ship>/emotion/<model id>/")
    ap.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=True,
                    help="export a graph that averages each face's logits with its mirror image's (reports and export "
                         "measure that graph; --no-flip-tta exports the single view)")
    ap.add_argument("--tta-zooms", type=float, nargs="+", default=[1.0], metavar="ZOOM",
                    help="zooms about the face centre the flip-TTA graph also averages over, each with its mirror "
                         "(e.g. 1.0 1.1: four views per face; chosen on validation)")
    ap.add_argument("--model-id", default=None, help="id of the shipped model (default <student arch>.<dataset>, e.g. lite0s5-48.ferplus)")
    args = ap.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
    if args.tta_zooms != [1.0] and not args.flip_tta:
        ap.error("--tta-zooms adds views to the flip-TTA graph: drop --no-flip-tta")
    if any(not 0.5 <= z <= 2.0 for z in args.tta_zooms):
        ap.error(f"--tta-zooms {args.tta_zooms}: each zoom must lie in 0.5..2.0 (1.0 = the face as cropped)")

    try:
        ds = load_dataset(args.dataset, args.data, classes=args.classes.split(",") if args.classes else None)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.target == "majority":
        ds.soft = None
    try:
        splits = make_splits(ds, args.val_fraction, args.seed, args.val_split)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.target == "reference":
        tr = splits["train"]
        if tr.votes is None:
            print("error: --target reference needs FER+ vote counts", file=sys.stderr)
            return 2
        soft, keep = ferplus_reference_targets(tr.votes)
        splits["train"] = replace(tr.subset(keep), labels=soft[keep].argmax(1), soft=soft[keep])
        ds.notes.append(f"--target reference: {int(keep.sum())} of {len(keep)} training images kept, targets from "
                        "votes without single-vote outliers")
    if args.limit:
        tr = splits["train"]
        keep = np.random.default_rng(args.seed).permutation(len(tr.labels))[: args.limit]
        splits["train"] = tr.subset(keep)
    if args.eval_limit:
        splits = {k: v if k == "train" else v.head(args.eval_limit) for k, v in splits.items()}
    if args.threads:
        torch.set_num_threads(args.threads)
    num_classes = len(ds.classes)
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = open(args.out / "train.log", "a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    command = "python -m model_export.run " + " ".join(argv if argv is not None else sys.argv[1:])
    log(f"command: {command}")
    log(f"dataset {ds.name} from {ds.source}: classes {ds.classes}; " + ", ".join(f"{k} {len(v.labels)}" for k, v in splits.items()) + "; " + "; ".join(ds.notes))
    base_cfg = TrainConfig(warmup_epochs=args.warmup_epochs, batch_size=args.batch_size, lr=args.lr, max_steps_per_epoch=args.max_steps,
                           threads=args.threads, seed=args.seed, label_smoothing=args.label_smoothing,
                           class_weight_power=args.class_weight_power, augment=AUGMENT_PRESETS[args.augment],
                           time_budget_s=args.time_budget * 60 if args.time_budget else None)
    student_spec = SPECS[args.student]
    run_meta = {"command": command, "dataset": ds.name, "source": ds.source, "classes": list(ds.classes), "target": args.target if ds.soft is not None else "majority",
                "split": {k: int(len(v.labels)) for k, v in splits.items()}, "val_split": args.val_split,
                "val_fraction": args.val_fraction if args.val_split == "stratified" else None, "seed": args.seed,
                "student": student_spec.name, "augment": args.augment,
                "notes": ds.notes, "config": asdict(base_cfg), "teachers": [str(d) for d in args.teacher_from] if args.teacher_from else args.teachers,
                "teacher_epochs": args.teacher_epochs, "student_epochs": args.student_epochs, "distill": not args.no_distill,
                "init_from": str(args.init_from) if args.init_from else None, "model_id": args.model_id,
                "flip_tta": args.flip_tta, "tta_zooms": args.tta_zooms}
    (args.out / "run.json").write_text(json.dumps(run_meta, indent=1, default=str))

    def maybe_init(model: torch.nn.Module, name: str) -> None:
        if args.init_from is None or (args.out / name / "last.pt").exists():
            return  # nothing asked, or a resumed run whose own checkpoint wins
        src = args.init_from / name / "best.pt"
        if src.exists():
            source_run = args.init_from / "run.json"
            source_classes = json.loads(source_run.read_text()).get("classes") if source_run.exists() else None
            init_from_checkpoint(model, src, log=log, classes=ds.classes, source_classes=source_classes)
        else:
            log(f"note: {src} not found; {name} starts from ImageNet weights")

    teacher_dirs = args.teacher_from or [args.out / f"teacher{i}" for i in range(args.teachers)]
    if "teacher" in stages and not args.teacher_from:
        for i, d in enumerate(teacher_dirs):
            if (d / "done").exists():
                continue
            cfg = replace(base_cfg, epochs=args.teacher_epochs, seed=args.seed + i)
            torch.manual_seed(cfg.seed)
            model = build_model(TEACHER, num_classes, pretrained=not args.no_pretrained)
            log(f"teacher {i}: {TEACHER.name}, {count_parameters(model) / 1e6:.2f} M params")
            maybe_init(model, d.name)
            Trainer(model, splits["train"], splits.get("val"), num_classes, cfg, d, log=log).fit()
            (d / "done").write_text("ok")

    student_dir = args.out / "student"
    if "student" in stages and not (student_dir / "done").exists():
        teachers = []
        if not args.no_distill:
            missing = [str(d) for d in teacher_dirs if not (d / "best.pt").exists()]
            if missing:
                log(f"error: distillation needs trained teachers, missing {missing} (run the teacher stage first)")
                return 2
            teachers = [load_run_model(d, num_classes) for d in teacher_dirs]
        cfg = replace(base_cfg, epochs=args.student_epochs)
        torch.manual_seed(cfg.seed)
        model = build_model(student_spec, num_classes, pretrained=not args.no_pretrained)
        log(f"student: {student_spec.name}, {count_parameters(model) / 1e6:.2f} M params, distillation "
            + (f"from {', '.join(str(d) for d in teacher_dirs)}" if teachers else "off"))
        maybe_init(model, student_dir.name)
        Trainer(model, splits["train"], splits.get("val"), num_classes, cfg, student_dir, teachers=teachers, log=log).fit()
        (student_dir / "done").write_text("ok")

    if "report" in stages or "export" in stages:
        from .report import write_reports  # matplotlib only needed from here on

        student = load_run_model(student_dir, num_classes)
        if args.flip_tta:
            student = MirrorAveraged(student, tuple(args.tta_zooms))  # what ships is what the reports measure
        teachers = [load_run_model(d, num_classes) for d in teacher_dirs if (d / "best.pt").exists()]
        metrics = write_reports(args.out, student, teachers, splits, ds.classes, run_meta, log=log)
        if "export" in stages:
            from .export import export_model

            export_model(student, splits, ds.classes, metrics, args.out, ship=args.ship, log=log)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
