"""build/gpu_lease.sh end to end on CPU, at smoke size: what `make gpu-pack` writes is all the runs read, and each
run comes back as a compact checkpoint that unpacks into a model directory here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from model_export.checkpoint import main as checkpoint_main  # noqa: E402
from model_export.pack import main as pack_main  # noqa: E402

from dataset_paths import FER2013_ZIP, FERPLUS_ZIP, needs_fer2013, needs_ferplus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@needs_ferplus
@needs_fer2013
@pytest.mark.dataset
@pytest.mark.slow
def test_lease_script_runs_what_gpu_pack_carries(tmp_path: Path) -> None:
    lease = tmp_path / "lease"  # the device machine's copy of the repository root: packed/ only, no dataset
    packed = lease / "packed"
    assert pack_main(["--dataset", "ferplus", "--data", str(FERPLUS_ZIP), "--out", str(packed / "ferplus-q90.npz"),
                      "--quality", "90", "--test", "exclude"]) == 0
    assert pack_main(["--dataset", "fer2013-zip", "--data", str(FER2013_ZIP), "--out", str(packed / "fer2013-q90.npz"),
                      "--quality", "90", "--test", "exclude"]) == 0
    backbone = tmp_path / "runs" / "ferplus48long"
    assert checkpoint_main(["unpack", str(ROOT / "checkpoints" / "ferplus48long.student.pt"), str(backbone / "student")]) == 0
    assert checkpoint_main(["init", str(backbone), str(packed / "init" / "ferplus48long")]) == 0
    assert checkpoint_main(["init", "imagenet:lite0s5-48", str(packed / "init" / "imagenet")]) == 0

    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "PY": sys.executable, "EPOCHS": "1", "STOP_AFTER": "400",
           "EMOTION_CACHE": str(tmp_path / "cache"),  # the packed files' decoded arrays: not into the user's cache
           "EXTRA": "--limit 96 --eval-limit 64 --max-steps 2 --batch-size 16 --threads 1"}
    done = subprocess.run(["bash", str(ROOT / "build" / "gpu_lease.sh")], cwd=lease, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = ("fp-a", "fp-b", "fer-a", "fer-b")
    assert all(f"{name} exit 0" in done.stdout for name in runs), done.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{name}.student.pt" for name in runs] + ["logs.tgz"])
    for name in runs:
        model_dir = tmp_path / "back" / name / "student"
        assert checkpoint_main(["unpack", str(out / f"{name}.student.pt"), str(model_dir)]) == 0
        log = (model_dir.parent / "train.log").read_text()
        assert "--dataset packed" in log and "--no-pretrained" in log and " epoch " in log
        assert "initialised from packed/init/" in log  # the start weights came from packed/, not PyPI or a run dir
    assert "classifier rows carried over" in (tmp_path / "back" / "fer-b" / "train.log").read_text()
