#!/usr/bin/env bash
# GPU check of the trainer on CIFAR-10 (the JPEG copy or any CIFAR-10 layout).
#
#   bash train/gpu_check.sh DATA_DIR [timing|compare|all] [EPOCHS] [OUT]
#
# DATA_DIR holds cifar10-jpeg.tar.gz (e.g. ../shared/data), cifar10/{train,test}/
# or cifar-10-batches-py/. Run from the repository root after building the
# extension with CUDA (pip install -e . --no-build-isolation).
#
# timing  (a few minutes on one GPU): epoch time at batch 512, bf16, data on the GPU,
#         3 epochs each, no probes: SimCLR and SinSim, eager and --compile,
#         and SinSim with the plain-PyTorch Sinkhorn. The median epoch is
#         reported, so compilation is excluded. Reference point (docs/performance/gpu.md): SimCLR
#         2.25 s eager, plain-PyTorch Sinkhorn 7.9 s; targets: SimCLR <= 1.5 s
#         compiled, SinSim within 5% of SimCLR.
# compare (~4 min per method at 50 epochs): SimCLR vs SinSim for EPOCHS epochs
#         (default 50, the anchor's budget), compiled, all probes, kNN with
#         k = 200 to compare with the anchor's 72.8% (the protocol's own
#         default is k = 20).
# Every part ends with one table of all the runs under OUT.
set -euo pipefail

DATA_DIR=${1:?usage: bash train/gpu_check.sh DATA_DIR [timing|compare|all] [EPOCHS] [OUT]}
PART=${2:-all}
EPOCHS=${3:-50}
OUT=${4:-runs/gpu-check}
RUN="python train/run.py --dataset cifar10 --data-dir $DATA_DIR --device cuda --overwrite"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python - <<'EOF'
import torch, sinsim_ext
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, sinsim_ext back ends: {sinsim_ext.backends()}")
if "cuda" not in sinsim_ext.backends():
    print("WARNING: sinsim_ext has no CUDA kernel in this build; SinSim will use the plain-PyTorch reference")
EOF

timing() {  # name, flags...
    local name=$1; shift
    echo "== timing: $name"
    $RUN --epochs 3 --no-eval --out "$OUT/timing/$name" "$@" 2>&1 | grep -E "epoch|pretrained|error|note" || true
}

if [[ $PART == timing || $PART == all ]]; then
    timing simclr-eager --method simclr
    timing sinsim-eager --method sinsim
    timing sinsim-reference-eager --method sinsim --sinkhorn-backend reference
    timing simclr-compiled --method simclr --compile
    timing sinsim-compiled --method sinsim --compile
fi

if [[ $PART == compare || $PART == all ]]; then
    for method in simclr sinsim; do
        echo "== comparison: $method, $EPOCHS epochs"
        $RUN --method "$method" --epochs "$EPOCHS" --compile --knn-k 200 --out "$OUT/compare/$method" 2>&1 \
            | grep -E "epoch (1|$EPOCHS)/|linear|error|note" || true
    done
fi

python - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = sorted(out.glob("*/*/results.json"))
print("\n| run | median epoch s | img/s | linear % | MLP % | kNN % (k) |")
print("|---|---|---|---|---|---|")
for path in runs:
    r = json.loads(path.read_text())
    acc = lambda k: "-" if r.get(k) is None else f"{r[k]:.2f}"
    knn = "-" if r.get("knn") is None else f"{r['knn']:.2f} ({r['knn_k']})"
    print(f"| {path.parent.parent.name}/{path.parent.name} | {r['epoch_seconds_median']:.2f} | "
          f"{r['images_per_second']:.0f} | {acc('linear')} | {acc('mlp')} | {knn} |")
if runs:
    print(f"\n{r['dataset_label']}, batch {r['budget']['batch_size']}, {r['budget']['epochs']} epochs (last run), {r['device']}")
EOF
