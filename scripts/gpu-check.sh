#!/usr/bin/env bash
# The GPU proof of #21, for the few minutes a GPU machine is lent: run in the repository root
# with the project's venv active (make setup on that machine, with a CUDA build of torch), e.g.
#   OUT=gpu-check bash scripts/gpu-check.sh
# It writes $OUT/gpu-check.md: the machine, the GPU tests, PPO steps/s on the GPU against the
# CPU, gradient averaging staged and direct, and the CPU scaling benchmark at 1-16 ranks.
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
REPORT="$OUT/gpu-check.md"
say() { echo "$*" | tee -a "$REPORT"; }
: > "$REPORT"
say "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
say "machine: $(nproc) cores; $(python -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO GPU")')"
python -m mpirl.train --help >/dev/null || { say "mpirl does not start"; exit 2; }

say "## the GPU tests (tests/gpu) and the collectives under MPI"
timeout 300 python -m pytest -q tests/gpu tests/unit/test_device.py 2>&1 | tail -3 | tee -a "$REPORT"

say "## PPO steps/s, CartPole-v1, 1 rank: GPU against CPU"
for device in cuda cpu; do
    timeout 300 mpiexec -n 1 python -m mpirl.train --device "$device" --total-timesteps 100000 \
        --no-tensorboard --eval-interval 1000 --run-dir "$OUT/cartpole-$device" >/dev/null 2>&1
    python -c "import json; s = json.load(open('$OUT/cartpole-$device/summary.json')); print('$device', round(s['sps']))" | tee -a "$REPORT"
done
if python -c "import mujoco" 2>/dev/null; then
    say "## PPO steps/s, HalfCheetah-v5, 1 rank: GPU against CPU"
    for device in cuda cpu; do
        timeout 300 mpiexec -n 1 python -m mpirl.train --env-id HalfCheetah-v5 --device "$device" \
            --total-timesteps 50000 --no-tensorboard --eval-interval 1000 \
            --run-dir "$OUT/halfcheetah-$device" >/dev/null 2>&1
        python -c "import json; s = json.load(open('$OUT/halfcheetah-$device/summary.json')); print('$device', round(s['sps']))" | tee -a "$REPORT"
    done
fi

say "## CPU scaling at 1, 2, 4, 8, 16 ranks"
MPIRL_BENCH_RANKS=1,2,4,8,16 timeout 600 python -m mpirl.bench scaling --quick --out "$OUT/bench" --no-docs 2>&1 | tail -30 | tee -a "$REPORT"
