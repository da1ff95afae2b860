#!/usr/bin/env bash
# The runs of one GPU lease, as one command on the leased machine (device tool: `bash build/gpu_lease.sh`, carry
# `packed`). There is no dataset, checkpoint or PyPI there: `make gpu-pack` writes everything the runs read into the
# git-ignored packed/ folder (the two datasets at JPEG q90, the start weights). Four runs share the GPU; each is a
# plain `model_export.run` command (CUDA, bf16 autocast). Results come back in $OUT as compact checkpoints (best + last
# weights, history, train.log, run.json): unpack them, then `--stages report,export` on the original data (Makefile).
# This is the lease of 2026-12-04 (one H200, ~7 s an epoch per run with four at once). It reads packed/ and writes
# runs/ in the current folder. EPOCHS changes the schedule; PY and EXTRA (arguments added to every run) serve the
# CPU smoke test (tests/test_gpu_lease.py).
set -u
out=${OUT:?set OUT to the folder that comes back}
epochs=${EPOCHS:-56}
stop_after=${STOP_AFTER:-490}  # seconds: every run is stopped by then, so that packing the results fits the lease
py=${PY:-python3}
extra=${EXTRA:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH=$repo/py_src:$repo PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
rm -rf runs && mkdir -p runs  # a warm machine keeps the last call's ignored files: start clean
common="--val-split official --batch-size 128 --class-weight-power 0 --no-pretrained --threads 2 --teachers 0 --no-distill
        --student lite0s5-48 --stages student --student-epochs $epochs"
fp="--dataset packed --data packed/ferplus-q90.npz $common --label-smoothing 0"
fer="--dataset packed --data packed/fer2013-q90.npz $common --label-smoothing 0.1 --init-from packed/init/ferplus48long"
start=$SECONDS
run() {
  local name=$1; shift
  timeout $((stop_after - (SECONDS - start))) $py -m model_export.run --out runs/$name $@ $extra > runs/$name.out 2>&1
  echo "$name exit $? at $((SECONDS - start)) s"
}
run fp-a $fp --augment wide --init-from packed/init/imagenet --lr 3e-3 --warmup-epochs 1 &             # FER+ from ImageNet
run fp-b $fp --augment wide --init-from packed/init/ferplus48long --lr 1.5e-3 --warmup-epochs 0 &      # FER+ restart
run fer-a $fer --augment wide --lr 1.5e-3 --warmup-epochs 1 &                                          # FER-2013 from FER+
run fer-b $fer --augment geometric --lr 1.5e-3 --warmup-epochs 1 &
wait
for d in runs/*/student; do
  name=$(basename "$(dirname "$d")")
  [ -f "$d/last.pt" ] && $py -m model_export.checkpoint pack "$d" "$out/$name.student.pt" >/dev/null
done
tar czf "$out/logs.tgz" runs/*.out
for f in runs/*/train.log; do echo "$f: $(grep -a ' epoch ' "$f" | tail -n 1)"; done
