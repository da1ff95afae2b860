"""Prints size and onnxruntime CPU batch-1 latency of the shipped models (a benchmark, not a test).

    python -m model_export.bench [--runs 300] [--threads 1] [MODEL.onnx ...]
"""
from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np

from .onnx_edit import emotion_feeds

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = sorted((ROOT / "web/models/emotion").glob("*/model.onnx")) + [ROOT / "web/models/face_detector.onnx"]


def bench(path: Path, runs: int, threads: int, views: int | None = None) -> dict:
    """Median and p90 ms of one batch-1 run of the model at `path` (an emotion model on all of its views, or on the
    first `views` where it takes a views input), its size and session creation time."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    create_ms = (time.perf_counter() - t0) * 1000
    inp = sess.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    feeds = emotion_feeds(sess, x, views)
    for _ in range(10):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1000)
    data = path.read_bytes()
    return {"model": path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name, "input": "x".join(map(str, shape)), "mb": len(data) / 1e6, "gzip_mb": len(gzip.compress(data)) / 1e6,
            "create_ms": create_ms, "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__} CPU, {args.threads} thread(s), batch 1, {args.runs} runs")
    print(f"{'model':<52}{'input':<14}{'MB':>7}{'gzip MB':>9}{'create ms':>11}{'median ms':>11}{'p90 ms':>9}")
    for path in args.models or DEFAULT_MODELS:
        if not path.exists():
            print(f"{path.name:<52}missing ({path})")
            continue
        r = bench(path, args.runs, args.threads)
        print(f"{r['model']:<52}{r['input']:<14}{r['mb']:>7.2f}{r['gzip_mb']:>9.2f}{r['create_ms']:>11.1f}{r['median_ms']:>11.2f}{r['p90_ms']:>9.2f}")


if __name__ == "__main__":
    main()
