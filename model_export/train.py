"""Training loop: two-stage warm-up (head only) then full fine-tune, AdamW, label smoothing, clipped class weights,
weight EMA, optional distillation from teacher models, mixed precision where the hardware gains from it, checkpoints and resume.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from emotion_runtime.preprocess import NORM_MEAN, NORM_STD

from .augment import AugmentConfig, augment
from .models import EmotionNet

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None


@dataclass
class TrainConfig:
    warmup_epochs: int = 1  # stage 1: backbone frozen, head + classifier only
    epochs: int = 12  # stage 2: everything trains
    batch_size: int = 64
    lr_head: float = 3e-3
    lr: float = 1e-3
    weight_decay: float = 0.05  # decoupled (AdamW)
    label_smoothing: float = 0.06
    class_weight_power: float = 0.5  # weight_c ~ (1 / freq_c) ** power, normalised to mean 1 ...
    class_weight_clip: tuple[float, float] = (0.5, 2.0)  # ... then clipped so rare classes cannot dominate
    ema_decay: float = 0.998
    distill_alpha: float = 0.7  # weight of the teacher term when teachers are given
    distill_temperature: float = 2.0
    amp: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU (bf16 measured 5-10x slower on this CPU)
    seed: int = 0
    max_steps_per_epoch: int | None = None  # smoke tests
    threads: int | None = None
    # Wall-clock seconds for one model's training (a GPU lease or a session's end is a time limit, not an epoch
    # count): through the first quarter of the fine-tune stage, while the learning rate is still near its peak, each
    # epoch re-plans the stage to as many epochs (at most `epochs`) as the time left holds at the last epoch's pace,
    # and the cosine schedule is stretched or shrunk to end there. The first epoch alone misleads: on a shared GPU
    # it ran 2-5x slower than the next ones (start-up, kernel selection, runs still loading).
    time_budget_s: float | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ArraySplit:
    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray  # (N,) int64
    soft: np.ndarray | None = None  # (N, C) vote distribution, if the dataset has one
    votes: np.ndarray | None = None  # (N, 10) raw FER+ vote counts (for the reference evaluation protocol)

    def subset(self, idx: np.ndarray | slice) -> "ArraySplit":
        """The images `idx` selects (an index array, a boolean mask or a slice), every field kept aligned."""
        return ArraySplit(self.images[idx], self.labels[idx], None if self.soft is None else self.soft[idx],
                          None if self.votes is None else self.votes[idx])

    def head(self, n: int) -> "ArraySplit":
        """The first `n` images (smoke runs)."""
        return self.subset(slice(None, n))

    def join(self, other: "ArraySplit") -> "ArraySplit":
        """Both splits' images in one (a refit on training + validation data); a field only one of them has is dropped."""
        def cat(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return None if a is None or b is None else np.concatenate([a, b])

        return ArraySplit(np.concatenate([self.images, other.images]), np.concatenate([self.labels, other.labels]),
                          cat(self.soft, other.soft), cat(self.votes, other.votes))


def to_input(images_u8: torch.Tensor | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, 48, 48) -> normalised float (N, 1, 48, 48), the runtime's exact contract."""
    x = torch.as_tensor(images_u8, device=device).float().unsqueeze(1)
    return (x - NORM_MEAN) / NORM_STD


def class_weights(labels: np.ndarray, num_classes: int, power: float, clip: tuple[float, float]) -> np.ndarray:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = (counts.sum() / np.maximum(counts, 1) / num_classes) ** power
    w = w / (w * counts).sum() * counts.sum()  # sample-weighted mean 1: the loss scale stays comparable
    return np.clip(w, *clip).astype(np.float32)


def smoothed_targets(labels: torch.Tensor, soft: torch.Tensor | None, num_classes: int, eps: float) -> torch.Tensor:
    base = soft if soft is not None else F.one_hot(labels, num_classes).float()
    return base * (1 - eps) + eps / num_classes


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 256, flip: bool = False) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = to_input(images[i : i + batch_size], device).contiguous(memory_format=torch.channels_last)
        if flip:
            x = torch.flip(x, dims=[3])
        out.append(model(x).float().cpu())
    return torch.cat(out).numpy()


def random_state() -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """torch's generator states (CPU, and CUDA where present): what batches, augmentation and dropout draw from."""
    state: dict = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


class Trainer:
    """Runs both stages for one model; `teachers` switch on distillation.

    The teachers see the very batch the student sees, augmentation included, and their mean tempered softmax is the
    soft target ("consistent teaching", Beyer et al. 2022): targets computed once on the un-augmented faces fit
    +-30 deg / 20 % shifted views poorly and cost the student accuracy here (docs/accuracy.md, `runs/ferplus48kd`).
    """

    def __init__(self, model: EmotionNet, train: ArraySplit, val: ArraySplit | None, num_classes: int, cfg: TrainConfig,
                 out_dir: Path, teachers: Sequence[nn.Module] = (), log: Callable[[str], None] = print) -> None:
        self.cfg, self.out_dir, self.log = cfg, Path(out_dir), log
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.device = pick_device()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels once
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.train, self.val, self.num_classes = train, val, num_classes
        self.teachers = [t.to(self.device).to(memory_format=torch.channels_last).eval().requires_grad_(False) for t in teachers]
        self.weights = torch.as_tensor(class_weights(train.labels, num_classes, cfg.class_weight_power, cfg.class_weight_clip), device=self.device)
        self.amp_dtype = autocast_dtype(cfg, self.device)
        where = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        log(f"training on {self.device.type} ({where}), {'fp32' if self.amp_dtype is None else str(self.amp_dtype).split('.')[-1] + ' autocast'}")
        # The whole training split lives on the training device (FER+: 66 MB of uint8): no per-step host copies.
        self.images = torch.as_tensor(train.images, device=self.device)
        self.labels = torch.as_tensor(train.labels, device=self.device)
        self.soft = None if train.soft is None else torch.as_tensor(train.soft, dtype=torch.float32, device=self.device)
        self.history: list[dict] = []
        self.best = {"val_acc": -1.0, "epoch": -1}
        self.epoch = 0
        self.planned_epochs: int | None = None  # fine-tune epochs fixed by the time budget

    # -- optimisation -----------------------------------------------------------------------------------------
    def _optimizer(self, stage: str) -> torch.optim.Optimizer:
        head_ids = self.model.new_parameters()
        for p in self.model.parameters():
            p.requires_grad_(stage == "finetune" or id(p) in head_ids)
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]  # BN and biases: no weight decay
        lr = self.cfg.lr_head if stage == "warmup" else self.cfg.lr
        return torch.optim.AdamW([{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)

    def _steps_per_epoch(self) -> int:
        steps = len(self.images) // self.cfg.batch_size
        return min(steps, self.cfg.max_steps_per_epoch) if self.cfg.max_steps_per_epoch else steps

    @torch.no_grad()
    def _teacher_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Mean tempered softmax of the teachers on the student's (augmented) batch."""
        t = self.cfg.distill_temperature
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            return torch.stack([F.softmax(teacher(x).float() / t, dim=1) for teacher in self.teachers]).mean(0)

    def _loss(self, logits: torch.Tensor, idx: torch.Tensor, teacher_probs: torch.Tensor | None = None) -> torch.Tensor:
        labels = self.labels[idx]
        soft = None if self.soft is None else self.soft[idx]
        target = smoothed_targets(labels, soft, self.num_classes, self.cfg.label_smoothing)
        logp = F.log_softmax(logits.float(), dim=1)
        ce = -(target * logp).sum(1)
        loss = (ce * self.weights[labels]).mean()
        if teacher_probs is not None:
            t = self.cfg.distill_temperature
            teacher = smoothed_targets(labels, teacher_probs, self.num_classes, self.cfg.label_smoothing)
            kd = F.kl_div(F.log_softmax(logits.float() / t, dim=1), teacher, reduction="batchmean") * t * t
            loss = self.cfg.distill_alpha * kd + (1 - self.cfg.distill_alpha) * loss
        return loss

    def _run_epoch(self, stage: str, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler) -> dict:
        self.model.train()
        steps = self._steps_per_epoch()
        perm = torch.randperm(len(self.images)).to(self.device)  # drawn on the CPU generator: same order on any device
        # Running sums stay on the device: reading them every step would stall a GPU's queue.
        total = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen, t0 = 0, time.time()
        bar = tqdm(range(steps), desc=f"{stage} {self.epoch}", leave=False, mininterval=5, disable=tqdm is None) if tqdm else range(steps)
        for step in bar:
            idx = perm[step * self.cfg.batch_size : (step + 1) * self.cfg.batch_size]
            x = self.images[idx].float().unsqueeze(1)
            x = augment(x, self.cfg.augment)
            x = ((x - NORM_MEAN) / NORM_STD).contiguous(memory_format=torch.channels_last)
            teacher_probs = self._teacher_probs(x) if self.teachers else None
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                logits = self.model(x)
            loss = self._loss(logits, idx, teacher_probs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
            opt.step()
            sched.step()
            self.ema.update_parameters(self.model)
            total += loss.detach() * len(idx)
            correct += (logits.argmax(1) == self.labels[idx]).sum()
            seen += len(idx)
            if tqdm and step % 20 == 0:
                bar.set_postfix(loss=f"{total.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}")
        total_loss, total_correct = total.item(), correct.item()
        secs = time.time() - t0
        return {"train_loss": total_loss / seen, "train_acc": total_correct / seen, "img_per_s": seen / secs, "epoch_s": secs}

    def _validate(self, model: nn.Module) -> tuple[float, float]:
        logits = predict_logits(model, self.val.images)
        labels = torch.as_tensor(self.val.labels)
        loss = F.cross_entropy(torch.as_tensor(logits), labels).item()
        return loss, accuracy(logits, self.val.labels)

    # -- checkpoints ------------------------------------------------------------------------------------------
    def _save(self, name: str, extra: dict | None = None) -> Path:
        path = self.out_dir / name
        torch.save({"model": self.model.state_dict(), "ema": self.ema.module.state_dict(), "epoch": self.epoch,
                    "history": self.history, "best": self.best, "spec": asdict(self.model.spec),
                    "ema_updates": int(self.ema.n_averaged), "rng": random_state(), **(extra or {})}, path)
        return path

    def _save_best(self, state: dict, val_acc: float) -> None:
        torch.save({"model": state, "spec": asdict(self.model.spec), "epoch": self.epoch, "val_acc": val_acc}, self.out_dir / "best.pt")

    def _resume(self) -> int:
        last = self.out_dir / "last.pt"
        if not last.exists():
            return 0
        ck = torch.load(last, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ck["model"])
        self.ema.module.load_state_dict(ck["ema"])
        # A zero count would make the next update copy the raw weights over the EMA (older last.pt: >= 1 epoch done).
        self.ema.n_averaged.fill_(ck.get("ema_updates", 1))
        if "rng" in ck:
            restore_random_state(ck["rng"])  # same batches and augmentations as an uninterrupted run
        self.history, self.best, self.epoch = ck["history"], ck["best"], ck["epoch"]
        self._resume_opt = (ck.get("stage"), ck.get("optimizer"))
        self.planned_epochs = ck.get("planned_epochs")  # a budgeted run keeps the schedule it planned
        self.log(f"resumed from {last} after epoch {self.epoch}")
        return self.epoch

    def fit(self, resume: bool = True) -> dict:
        """Runs warm-up then fine-tune epochs; keeps `best.pt`: the weights (raw or EMA) with the best validation
        accuracy, or with no validation split (a refit) the last epoch's EMA weights."""
        torch.manual_seed(self.cfg.seed)
        started = time.time()
        done = self._resume() if resume else 0
        steps = self._steps_per_epoch()
        finetune_epochs = self.planned_epochs or self.cfg.epochs
        for stage, first in (("warmup", 0), ("finetune", self.cfg.warmup_epochs)):
            n_epochs = self.cfg.warmup_epochs if stage == "warmup" else finetune_epochs
            if n_epochs == 0 or done >= first + n_epochs:
                continue
            opt = self._optimizer(stage)
            saved_stage, saved_opt = getattr(self, "_resume_opt", (None, None))
            if saved_stage == stage and saved_opt is not None:
                opt.load_state_dict(saved_opt)  # AdamW moments continue where the interrupted run stopped
            warm = max(1, min(steps // 2, n_epochs * steps // 10)) if stage == "finetune" else 1
            plan = {"steps": n_epochs * steps}  # mutable: the time budget re-plans the stage through its first quarter

            def lr_lambda(s: int, plan: dict = plan, warm: int = warm) -> float:
                if s < warm:
                    return (s + 1) / warm
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, plan["steps"] - warm)))) * 0.98 + 0.02

            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
            for _ in range((done - first) * steps if done > first else 0):
                sched.step()  # resume mid-stage: same learning rate as an uninterrupted run
            self.epoch = max(done, first)
            while self.epoch < first + n_epochs:
                self.epoch += 1
                epoch_start = time.time()
                stats = self._run_epoch(stage, opt, sched)
                if self.val is None:  # a refit: nothing validates, the last epoch's EMA weights are kept
                    val_loss = val_acc = ema_loss = ema_acc = None
                else:
                    val_loss, val_acc = self._validate(self.model)
                    ema_loss, ema_acc = self._validate(self.ema.module)
                epochs_done = self.epoch - first
                if stage == "finetune" and self.cfg.time_budget_s and (self.planned_epochs is None or epochs_done <= self.planned_epochs // 4):
                    n_epochs = self._plan_epochs(epochs_done, time.time() - epoch_start, time.time() - started)
                    plan["steps"] = n_epochs * steps
                row = {"epoch": self.epoch, "stage": stage, "lr": opt.param_groups[0]["lr"], **stats,
                       "val_loss": val_loss, "val_acc": val_acc, "ema_val_loss": ema_loss, "ema_val_acc": ema_acc}
                self.history.append(row)
                val_text = "no validation" if val_acc is None else f"val_acc {val_acc:.4f} ema_val_acc {ema_acc:.4f}"
                self.log(f"epoch {self.epoch}/{first + n_epochs} {stage}: loss {stats['train_loss']:.4f} train_acc {stats['train_acc']:.4f} "
                         f"{val_text} ({stats['img_per_s']:.0f} img/s, {stats['epoch_s']:.0f} s)")
                if val_acc is None:
                    self.best = {"val_acc": None, "epoch": self.epoch, "weights": "ema"}
                    self._save_best(self.ema.module.state_dict(), float("nan"))
                else:
                    best_acc, best_state = max((val_acc, "model"), (ema_acc, "ema"))
                    if best_acc > self.best["val_acc"]:
                        self.best = {"val_acc": best_acc, "epoch": self.epoch, "weights": best_state}
                        self._save_best(self.model.state_dict() if best_state == "model" else self.ema.module.state_dict(), best_acc)
                self._save("last.pt", {"optimizer": opt.state_dict(), "stage": stage, "planned_epochs": self.planned_epochs})
                (self.out_dir / "history.json").write_text(json.dumps(self.history, indent=1))
        return {"history": self.history, "best": self.best}

    def _plan_epochs(self, epochs_done: int, epoch_s: float, elapsed_s: float) -> int:
        """Fine-tune epochs that fit the time budget at the pace of the last epoch (validation included)."""
        left = self.cfg.time_budget_s - elapsed_s
        planned = max(epochs_done, min(self.cfg.epochs, epochs_done + int(left // max(epoch_s, 1e-6))))
        if planned != self.planned_epochs:
            self.log(f"time budget {self.cfg.time_budget_s / 60:.1f} min: {epoch_s:.1f} s an epoch, {left / 60:.1f} min left -> "
                     f"{planned} fine-tune epochs (at most {self.cfg.epochs})")
        self.planned_epochs = planned
        return planned


# FER+ and FER-2013 name the same emotions differently; a classifier row carries over under either name.
CLASS_SYNONYMS = {"happiness": "happy", "sadness": "sad", "anger": "angry"}


def _canonical(name: str) -> str:
    name = name.strip().lower()
    return CLASS_SYNONYMS.get(name, name)


def init_from_checkpoint(model: EmotionNet, path: Path, log: Callable[[str], None] = print,
                         classes: Sequence[str] | None = None, source_classes: Sequence[str] | None = None) -> EmotionNet:
    """Starts from an earlier run's weights (to train longer, or to fine-tune FER+ weights on a custom class set).

    Tensors whose shape differs (a classifier for another class set) keep their fresh initialisation, except that,
    given both class lists, each new class whose name (or synonym) the source classifier knows takes over that
    class's row: FER+ weights fine-tuned to FER-2013's 7 classes start out as a working FER-2013 classifier.
    """
    ck = torch.load(Path(path), map_location="cpu", weights_only=False)
    source_spec = ck.get("spec") or {}
    deepening = False
    if source_spec.get("name", model.spec.name) != model.spec.name:
        # A shallower Lite0 cut may seed a deeper one: its stages carry over, the added stages keep their ImageNet
        # weights, and the head and classifier (built on other features) start fresh.
        deepening = source_spec.get("stages", model.spec.stages) < model.spec.stages
        if not deepening:
            raise ValueError(f"{path} holds a {source_spec.get('name')} model, not {model.spec.name} "
                             "(only a shallower Lite0 cut can seed a deeper one)")
    own = model.state_dict()
    loaded = {k: v for k, v in ck["model"].items() if k in own and own[k].shape == v.shape
              and not (deepening and k.startswith(("head.", "classifier.")))}
    carried = []
    if classes and source_classes and "classifier.weight" not in loaded and not deepening:
        source_rows = {_canonical(c): i for i, c in enumerate(source_classes)}
        weight, bias = own["classifier.weight"].clone(), own["classifier.bias"].clone()
        src_weight, src_bias = ck["model"]["classifier.weight"], ck["model"]["classifier.bias"]
        if src_weight.shape[0] == len(source_classes) and src_weight.shape[1] == weight.shape[1]:
            for i, c in enumerate(classes):
                j = source_rows.get(_canonical(c))
                if j is not None:
                    weight[i], bias[i] = src_weight[j], src_bias[j]
                    carried.append(f"{c}<-{source_classes[j]}")
        if carried:
            loaded.update({"classifier.weight": weight, "classifier.bias": bias})
    skipped = sorted(set(own) - set(loaded))
    model.load_state_dict(loaded, strict=False)
    log(f"initialised from {path} (epoch {ck.get('epoch')}, val acc {ck.get('val_acc', float('nan')):.4f})"
        + (f"; classifier rows carried over: {', '.join(carried)}" if carried else "")
        + (f"; kept as built (ImageNet or random): {', '.join(skipped)}" if skipped else ""))
    return model


def load_run_model(out_dir: Path, num_classes: int) -> EmotionNet:
    """The best weights of one trained model directory, in the architecture its checkpoint names."""
    from .models import build_model

    ck = torch.load(Path(out_dir) / "best.pt", map_location="cpu", weights_only=False)
    model = build_model(ck["spec"]["name"], num_classes, pretrained=False)
    model.load_state_dict(ck["model"])
    return model.eval()
