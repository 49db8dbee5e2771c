#!/usr/bin/env bash
# One device-machine session: build, verify the CUDA kernels, then measure.
# Usage (repository root, on the GPU machine):  bash bench/gpu_session.sh [what...]
#   what: tests, profile, bench, train (default: tests bench)
# Logs and JSON go to $OUT (or ./gpu_out when OUT is unset).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
what=${*:-tests bench}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
start=$(date +%s)
python3 -m pip install -e . --no-build-isolation --no-deps > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
python3 -c "import sinsim_ext; print('backends', sinsim_ext.backends())"

if [[ " $what " == *" tests "* ]]; then
  python3 -m pytest tests/test_sinkhorn_cuda.py -q -p no:cacheprovider 2>&1 | tee "$OUT/cuda_tests.log" | tail -25
fi
if [[ " $what " == *" profile "* ]]; then
  python3 bench/profile_iterations.py --layouts 2>&1 | tee "$OUT/profile.txt"
fi
if [[ " $what " == *" bench "* ]]; then
  python3 -m pytest bench/test_sinkhorn_cuda.py --benchmark-only -q -p no:cacheprovider \
    --benchmark-json="$OUT/bench_cuda.json" > "$OUT/bench_cuda.log" 2>&1
  tail -3 "$OUT/bench_cuda.log"
  python3 bench/summarize.py "$OUT/bench_cuda.json" | tee "$OUT/bench_cuda_table.txt"
fi
if [[ " $what " == *" train "* ]]; then
  python3 -m pytest bench/test_train_step.py --benchmark-only -q -p no:cacheprovider \
    --benchmark-json="$OUT/bench_train.json" > "$OUT/bench_train.log" 2>&1
  tail -3 "$OUT/bench_train.log"
  python3 bench/summarize.py "$OUT/bench_train.json" | tee "$OUT/bench_train_table.txt"
fi
echo "session: $(( $(date +%s) - start )) s"
