"""Compact resumable checkpoints: carry (or commit) a model's training state between machines.

    python -m model_export.checkpoint pack runs/ferplus48/student checkpoints/ferplus48-student.pt
    python -m model_export.checkpoint unpack checkpoints/ferplus48-student.pt runs/ferplus48/student

`pack` turns a model directory's last.pt + best.pt (written by model_export.train after every epoch) into one file:
weights (raw, EMA, best) in fp16, AdamW moments in bfloat16 (fp16's range underflows the squared-gradient moment),
step counts, epoch, history, best-epoch metadata and random-generator state as they are, plus the run directory's
train.log and run.json (the model card lists the commands from train.log). Best weights that equal the raw or EMA
weights (the best epoch was the last one) are stored once.

`unpack` writes fp32 last.pt, best.pt and history.json into a model directory, and the run's train.log / run.json
next to it, so that re-running the same `python -m model_export.run ...` command resumes the schedule after the
packed epoch (learning-rate position, AdamW moments, EMA, batch order). A distilled student also needs its teachers'
best.pt: pack and unpack each teacherN/ directory too.

`init` writes start weights for `--init-from` on a machine that has neither the earlier run nor PyPI (a GPU lease):

    python -m model_export.checkpoint init runs/ferplus48long packed/init/ferplus48long   # its student's best, fp16
    python -m model_export.checkpoint init imagenet:lite0s5-48 packed/init/imagenet       # Lite0 ImageNet weights

A run directory gives `<out>/student/best.pt` (best weights in fp16, 1.6 MB for the student) and its run.json (the
class names, so classifier rows carry over by name); `imagenet:<arch>` gives the stem and blocks that architecture
takes from the PyPI ImageNet weights, for `<out>/student/` and `<out>/teacher0/` alike (run with `--no-pretrained`).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import torch

FORMAT = "emotion-lens-checkpoint"
VERSION = 1
WEIGHT_DTYPE = torch.float16
MOMENT_DTYPE = torch.bfloat16
RUN_FILES = ("run.json", "train.log")


class CheckpointError(ValueError):
    """A checkpoint that cannot be packed or unpacked as asked; the message names the file."""


def _cast(state: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """Floating-point tensors of a (possibly nested) state to `dtype`; counts and everything else unchanged."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out[key] = _cast(value, dtype)
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and key != "step":  # AdamW's step stays exact
            out[key] = value.detach().to("cpu", dtype)
        else:
            out[key] = value.detach().cpu() if isinstance(value, torch.Tensor) else value
    return out


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def compact(last: dict[str, Any], best: dict[str, Any] | None) -> dict[str, Any]:
    """The packed form of one model directory's last.pt and best.pt contents."""
    packed_last = {**last, "model": _cast(last["model"], WEIGHT_DTYPE), "ema": _cast(last["ema"], WEIGHT_DTYPE)}
    if "optimizer" in last:
        packed_last["optimizer"] = {**last["optimizer"], "state": _cast(last["optimizer"]["state"], MOMENT_DTYPE)}
    packed_best = None
    if best is not None:
        same = next((k for k in ("model", "ema") if _same_weights(best["model"], last[k])), None)
        packed_best = {**best, "model": {"same_as": same} if same else _cast(best["model"], WEIGHT_DTYPE)}
    return {"format": FORMAT, "version": VERSION, "last": packed_last, "best": packed_best}


def expand(packed: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """fp32 last.pt and best.pt contents from a packed checkpoint."""
    last = dict(packed["last"])
    last["model"], last["ema"] = _cast(last["model"], torch.float32), _cast(last["ema"], torch.float32)
    if "optimizer" in last:
        last["optimizer"] = {**last["optimizer"], "state": _cast(last["optimizer"]["state"], torch.float32)}
    best = packed["best"]
    if best is not None:
        same = best["model"].get("same_as")  # a name, where a state dict holds tensors
        best = {**best, "model": last[same] if same else _cast(best["model"], torch.float32)}
    return last, best


def pack(model_dir: Path, out: Path) -> dict[str, Any]:
    """Writes the packed checkpoint of `model_dir` to `out`; returns sizes and the epoch for the report."""
    model_dir, out = Path(model_dir), Path(out)
    last_pt, best_pt = model_dir / "last.pt", model_dir / "best.pt"
    if not last_pt.is_file():
        raise CheckpointError(f"{last_pt}: not found (model_export.train writes it after every epoch)")
    last = torch.load(last_pt, map_location="cpu", weights_only=False)
    best = torch.load(best_pt, map_location="cpu", weights_only=False) if best_pt.is_file() else None
    packed = compact(last, best)
    packed["run_files"] = {name: (model_dir.parent / name).read_text() for name in RUN_FILES if (model_dir.parent / name).is_file()}
    buffer = io.BytesIO()
    torch.save(packed, buffer)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buffer.getvalue())
    params = sum(v.numel() for k, v in last["model"].items() if v.is_floating_point() and not k.endswith(("running_mean", "running_var")))
    return {"epoch": last["epoch"], "parameters": params, "bytes": out.stat().st_size,
            "source_bytes": last_pt.stat().st_size + (best_pt.stat().st_size if best is not None else 0),
            "best_stored": "once more" if best is not None and "same_as" not in packed["best"]["model"] else "as a reference"}


def _merge_log(existing: str, incoming: str) -> str:
    """train.log is append-only on each machine: keep every line already here, then the other machine's new ones."""
    have = set(existing.splitlines())
    new = [line for line in incoming.splitlines() if line not in have]
    return existing + ("" if not existing or existing.endswith("\n") else "\n") + "".join(line + "\n" for line in new)


def unpack(checkpoint: Path, model_dir: Path, force: bool = False) -> dict[str, Any]:
    checkpoint, model_dir = Path(checkpoint), Path(model_dir)
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: not found")
    try:
        packed = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure: not one of ours
        raise CheckpointError(f"{checkpoint}: not a packed checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(packed, dict) or packed.get("format") != FORMAT:
        raise CheckpointError(f"{checkpoint}: not a packed checkpoint (python -m model_export.checkpoint pack writes them)")
    if packed["version"] > VERSION:
        raise CheckpointError(f"{checkpoint}: format version {packed['version']} is newer than this code reads ({VERSION})")
    last_pt = model_dir / "last.pt"
    if last_pt.exists() and not force:
        epoch = torch.load(last_pt, map_location="cpu", weights_only=False).get("epoch")
        raise CheckpointError(f"{last_pt} exists (epoch {epoch}); pass --force to replace it with the packed epoch "
                              f"{packed['last']['epoch']}")
    last, best = expand(packed)
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(last, last_pt)
    if best is not None:
        torch.save(best, model_dir / "best.pt")
    (model_dir / "history.json").write_text(json.dumps(last["history"], indent=1))
    notes = []
    for name, text in packed.get("run_files", {}).items():
        target = model_dir.parent / name
        if not target.exists():
            target.write_text(text)
        elif name == "train.log":
            target.write_text(_merge_log(target.read_text(), text))
        elif target.read_text() != text:
            notes.append(f"kept the existing {target} (differs from the packed one)")
    return {"epoch": last["epoch"], "notes": notes}


def init_weights(source: str, out: Path) -> list[Path]:
    """Writes the --init-from folder `out` from a run directory or `imagenet:<arch>`; returns the files written."""
    out = Path(out)
    if source.startswith("imagenet:"):
        from .models import SPECS, build_model

        arch = source.split(":", 1)[1]
        if arch not in SPECS:
            raise CheckpointError(f"{source}: unknown architecture; choose from {', '.join(sorted(SPECS))}")
        state = build_model(arch, 2, pretrained=True).state_dict()
        weights = {k: v for k, v in state.items() if k.startswith(("stem.", "blocks."))}  # what ImageNet gives it
        record = {"model": _cast(weights, WEIGHT_DTYPE), "epoch": 0, "val_acc": float("nan")}  # no spec: any arch takes it
        written = []
        for name in ("student", "teacher0"):
            (out / name).mkdir(parents=True, exist_ok=True)
            torch.save(record, out / name / "best.pt")
            written.append(out / name / "best.pt")
        return written
    run_dir = Path(source)
    best_pt = run_dir / "student" / "best.pt"
    if not best_pt.is_file():
        raise CheckpointError(f"{best_pt}: not found (a run directory, or imagenet:<arch>)")
    best = torch.load(best_pt, map_location="cpu", weights_only=False)
    (out / "student").mkdir(parents=True, exist_ok=True)
    torch.save({**best, "model": _cast(best["model"], WEIGHT_DTYPE)}, out / "student" / "best.pt")
    written = [out / "student" / "best.pt"]
    if (run_dir / "run.json").is_file():
        (out / "run.json").write_text((run_dir / "run.json").read_text())
        written.append(out / "run.json")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="model dir (last.pt, best.pt) -> one compact checkpoint file")
    p.add_argument("model_dir", type=Path)
    p.add_argument("out", type=Path)
    u = sub.add_parser("unpack", help="compact checkpoint -> fp32 last.pt + best.pt in a model dir")
    u.add_argument("checkpoint", type=Path)
    u.add_argument("model_dir", type=Path)
    u.add_argument("--force", action="store_true", help="replace an existing last.pt")
    i = sub.add_parser("init", help="run dir or imagenet:<arch> -> small fp16 start weights for --init-from elsewhere")
    i.add_argument("source")
    i.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.command == "pack":
            r = pack(args.model_dir, args.out)
            print(f"packed {args.model_dir} (epoch {r['epoch']}, {r['parameters'] / 1e6:.2f} M parameters) into {args.out}: "
                  f"{r['bytes'] / 1e6:.2f} MB (last.pt + best.pt were {r['source_bytes'] / 1e6:.2f} MB; best weights stored "
                  f"{r['best_stored']})")
        elif args.command == "init":
            written = init_weights(args.source, args.out)
            print(f"start weights from {args.source}: " + ", ".join(f"{p} ({p.stat().st_size / 1e6:.2f} MB)" for p in written))
        else:
            r = unpack(args.checkpoint, args.model_dir, args.force)
            print(f"unpacked {args.checkpoint} into {args.model_dir}: fp32 last.pt + best.pt after epoch {r['epoch']}; "
                  "re-run the same model_export.run command to continue")
            for note in r["notes"]:
                print(f"note: {note}")
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
