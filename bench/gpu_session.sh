#!/usr/bin/env bash
# One device-machine session: build, verify the CUDA kernels, then measure.
# Usage (repository root, on the GPU machine):  bash bench/gpu_session.sh [what...]
#   what: campaign, concurrency, tests, v2, profile, bench, train, peers, paper (default: tests bench)
#   campaign: advance the pre-registered campaign (results/campaign/plan.toml) for CAMPAIGN_MIN
#             minutes (default 6) with JOBS cells at once (default 4), data from .gpu_carry/; its folder,
#             without checkpoints, comes back as $OUT/campaign.tgz
#   concurrency: total images/s of K = 1, 2, 4, 8 training processes on the GPU (chooses JOBS)
# Logs and JSON go to $OUT (or ./gpu_out when OUT is unset). Each stage has a
# time limit (seconds, environment): TESTS_S, V2_TESTS_S, V2_BENCH_S, BENCH_S,
# PEERS_S, PAPER_S, so a short lease ends with every earlier stage's files written.
#   v2:    the paths selected by SINSIM_CUDA_KERNEL (fused backward, online mode,
#          eps-scaling on the device): their CUDA tests (JUnit XML too), then their
#          benchmark cases beside the verified kernel's (bench_v2.json / _table.txt);
#          about 6 minutes with the build on a Hopper GPU
#   peers: bench/test_peers.py on the GPU (SINSIM_PEERS_N sizes, default 4096,1024);
#          the peers are carried as wheels in .whl/ (README of the device tool)
#   paper: the CIFAR-10 (JPEG copy) variants grid from .gpu_carry/,
#          resumable cell by cell; PAPER_ARGS replaces its default arguments
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
what=${*:-tests bench}
start=$(date +%s)
stage() { echo "== $1 at $(( $(date +%s) - start )) s"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
stage build
TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
  python3 -m pip install -e . --no-build-isolation --no-deps > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
python3 -c "import sinsim_ext; print('backends', sinsim_ext.backends())" | tee -a "$OUT/gpu.txt"

if [[ " $what " == *" campaign "* ]]; then
  stage campaign
  python3 train/run.py --protocol campaign --data-dir .gpu_carry --cache-dir .gpu_carry/cache --no-download \
    --num-workers 16 --minutes "${CAMPAIGN_MIN:-6}" --jobs "${JOBS:-4}" > "$OUT/campaign.log" 2>&1
  echo "campaign exit $?"; tail -15 "$OUT/campaign.log"
  tar czf "$OUT/campaign.tgz" --exclude='*.pt' --exclude='embedding.npz' results/campaign
fi
if [[ " $what " == *" concurrency "* ]]; then
  stage concurrency
  timeout "${CONCURRENCY_S:-240}" python3 -m pytest bench/test_concurrent_cells.py --benchmark-only -q \
    -p no:cacheprovider --benchmark-json="$OUT/bench_concurrency.json" > "$OUT/bench_concurrency.log" 2>&1
  tail -3 "$OUT/bench_concurrency.log"
  python3 -c "import json,sys; [print(b['name'], b['extra_info']) for b in json.load(open(sys.argv[1]))['benchmarks']]" \
    "$OUT/bench_concurrency.json" | tee "$OUT/concurrency.txt"
fi
if [[ " $what " == *" tests "* ]]; then
  stage tests
  timeout "${TESTS_S:-300}" python3 -m pytest tests/test_sinkhorn_cuda.py tests/test_train_cuda.py -m "slow or not slow" -q -p no:cacheprovider -rfEs \
    2>&1 | tee "$OUT/cuda_tests.log" | tail -25
fi
if [[ " $what " == *" v2 "* ]]; then
  stage v2-tests
  timeout "${V2_TESTS_S:-240}" python3 -m pytest tests/test_sinkhorn_cuda_v2.py tests/test_cuda_tiles.py \
    tests/test_cuda_kernel_choice.py -q -p no:cacheprovider -rfEs --junitxml="$OUT/v2_tests.xml" \
    2>&1 | tee "$OUT/v2_tests.log" | tail -25
  stage v2-bench
  timeout "${V2_BENCH_S:-150}" python3 -m pytest bench/test_sinkhorn_cuda.py --benchmark-only -q -p no:cacheprovider \
    -k "v2 or (test_forward_backward and kernel and not cpu_kernel)" --benchmark-json="$OUT/bench_v2.json" \
    > "$OUT/bench_v2.log" 2>&1
  tail -3 "$OUT/bench_v2.log"
  [ -s "$OUT/bench_v2.json" ] && python3 bench/summarize.py "$OUT/bench_v2.json" | tee "$OUT/bench_v2_table.txt"
fi
if [[ " $what " == *" profile "* ]]; then
  python3 bench/profile_iterations.py --layouts 2>&1 | tee "$OUT/profile.txt"
fi
if [[ " $what " == *" bench "* ]]; then
  stage bench
  timeout "${BENCH_S:-300}" python3 -m pytest bench/test_sinkhorn_cuda.py --benchmark-only -q -p no:cacheprovider \
    --benchmark-json="$OUT/bench_cuda.json" > "$OUT/bench_cuda.log" 2>&1
  tail -3 "$OUT/bench_cuda.log"
  python3 bench/summarize.py "$OUT/bench_cuda.json" | tee "$OUT/bench_cuda_table.txt"
fi
if [[ " $what " == *" train "* ]]; then
  python3 -m pytest bench/test_train_throughput.py --benchmark-only -q -p no:cacheprovider \
    --benchmark-json="$OUT/bench_train.json" > "$OUT/bench_train.log" 2>&1
  tail -3 "$OUT/bench_train.log"
  python3 bench/summarize.py "$OUT/bench_train.json" | tee "$OUT/bench_train_table.txt"
fi
if [[ " $what " == *" paper "* ]]; then
  stage paper
  mkdir -p .gpu_carry
  default_args="--protocol paper --datasets cifar10 --methods simclr sinsim --seeds 0 1 2 --epochs 3 --warmup-epochs 1 --probe-train-subset 10000 \
    --sinkhorn-weight 1 --sinkhorn-term divergence --sinkhorn-on features --sweep-datasets cifar10 --sweeps lambda \
    --lambdas 1 --sweep-on features --sweep-terms entropic divergence --data-dir .gpu_carry --no-download \
    --cache-dir .gpu_carry/cache --num-workers 16 --progress-every 30 --out .gpu_carry/paper-gpu"
  # shellcheck disable=SC2086
  timeout "${PAPER_S:-300}" python3 train/run.py ${PAPER_ARGS:-$default_args} > "$OUT/paper.log" 2>&1
  echo "paper exit $?"; tail -5 "$OUT/paper.log"
  python3 train/run.py --protocol paper --report-only --out .gpu_carry/paper-gpu >> "$OUT/paper.log" 2>&1
  tar czf "$OUT/paper-gpu.tgz" --exclude='*.pt' --exclude='embedding.npz' -C .gpu_carry paper-gpu
fi
if [[ " $what " == *" peers "* ]]; then
  stage peers
  if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site
  fi
  XLA_PYTHON_CLIENT_PREALLOCATE=false SINSIM_PEERS_DEVICE=cuda SINSIM_PEERS_FULL=1 SINSIM_PEERS_N=${SINSIM_PEERS_N:-4096,1024} \
    SINSIM_PEERS_JSON="$OUT/peers_gpu.jsonl" timeout "${PEERS_S:-300}" \
    python3 -m pytest bench/test_peers.py --benchmark-only -q -p no:cacheprovider > "$OUT/peers_gpu.log" 2>&1
  echo "peers exit $?"; tail -3 "$OUT/peers_gpu.log"
  [ -s "$OUT/peers_gpu.jsonl" ] && python3 bench/peers_table.py "$OUT/peers_gpu.jsonl"
fi
stage end
