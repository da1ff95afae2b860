"""Training throughput of candidate set-ups on this machine: images per second of one full training step
(augmentation + forward + backward + AdamW), so schedules are picked from numbers, not guesses.

    python -m model_export.throughput                       # the default grid, 2 threads
    python -m model_export.throughput --specs lite0s5-48 --batch 128 256 --compile off on

Prints one row per set-up: median img/s over --repeats timed blocks, and the minutes one FER+ epoch
(28,385 images of FER2013Train) would take. Random pixels stand in for faces: throughput does not depend on content.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
import torch.nn.functional as F

from .augment import AUGMENT_PRESETS, augment
from .models import SPECS, build_model, count_parameters

FERPLUS_TRAIN_IMAGES = 28385


def step_rate(spec: str, batch: int, channels_last: bool, compile_mode: str, steps: int, repeats: int) -> tuple[float, float]:
    """Median and min img/s of `repeats` blocks of `steps` training steps, after warm-up (and compilation)."""
    model = build_model(spec, 8, pretrained=False).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    step_model = torch.compile(model) if compile_mode == "on" else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randint(0, 256, (batch, 1, 48, 48)).float()
    target = torch.randint(0, 8, (batch,))

    def one_step() -> None:
        x = ((augment(images, AUGMENT_PRESETS["wide"]) - 127.5) / 127.5).contiguous(memory_format=fmt)
        loss = F.cross_entropy(step_model(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        one_step()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            one_step()
        rates.append(steps * batch / (time.perf_counter() - t0))
    return statistics.median(rates), min(rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", nargs="+", default=["lite0s5-48", "lite0s5-64"], choices=sorted(SPECS))
    ap.add_argument("--batch", nargs="+", type=int, default=[128, 256])
    ap.add_argument("--channels-last", nargs="+", choices=("on", "off"), default=["on"])
    ap.add_argument("--compile", nargs="+", choices=("on", "off"), default=["off"])
    ap.add_argument("--steps", type=int, default=8, help="training steps per timed block")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, device cpu; augmentation 'wide' included in each step")
    print(f"{'spec':<12} {'params':>7} {'batch':>5} {'ch_last':>7} {'compile':>7} {'img/s med':>9} {'img/s min':>9} {'min/FER+ epoch':>14}")
    for spec, batch, cl, comp in itertools.product(args.specs, args.batch, args.channels_last, args.compile):
        params = count_parameters(build_model(spec, 8, pretrained=False)) / 1e6
        med, low = step_rate(spec, batch, cl == "on", comp, args.steps, args.repeats)
        print(f"{spec:<12} {params:>6.2f}M {batch:>5} {cl:>7} {comp:>7} {med:>9.0f} {low:>9.0f} {FERPLUS_TRAIN_IMAGES / med / 60:>14.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
