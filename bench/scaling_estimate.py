"""On paper: communication against compute per step of data-parallel SimCLR /
SinSim (ResNet-18, CIFAR-size images) on 8 GPUs, for the docs' "Scaling out" page (docs/scaling.md).

    python bench/scaling_estimate.py            # prints the markdown table

Nothing here is measured on several GPUs. The inputs, each stated:

* **Compute**: one GPU's SimCLR step at the per-GPU batch B/8, measured on
  an NVIDIA H200 (torch 2.11, CUDA 13, ResNet-18, 32 px, bf16, channels-last,
  eager; the trainer's step as in ``bench/test_distributed.py::
  test_single_gpu_step_time_per_batch``, median of 7 x 20 steps, 2026-11-30):
  about 17-20 ms from 32 to 512 images (launch-bound: the GPU is not full),
  30.6 ms at 1024. The H100 runs of results/h100-2026-11-23-short agree at
  batch 512 (23,648 img/s = 21.7 ms).
* **Volume** per step and GPU (fp32, what this trainer sends):
  DistributedDataParallel's ring all-reduce of the gradients, 2 (N-1)/N x
  4 P bytes (P = the trainable parameters, counted from the model); the
  all-gather of the two views' projections (2 B d floats, each GPU receives
  (N-1)/N of them) and its backward, a reduce-scatter of the same size;
  SinSim with the term on the features gathers 2 B x 512 more; --sync-bn: per
  BatchNorm layer an all-gather of (mean, invstd, count) forward and an
  all-reduce of 2 C floats backward.
* **Bandwidth** per GPU and direction: NVLink 4 (H100 SXM) 900 GB/s
  bidirectional, 450 GB/s each way; PCIe 5 x16 64 GB/s; InfiniBand 400 Gb/s
  = 50 GB/s and 100 Gb/s = 12.5 GB/s (8 machines with one GPU and one NIC
  each, the ring crossing the network at every hop).
* **Latency**: 20 us per small collective (an assumption, typical of NCCL
  within a machine; more across machines). It is what the BatchNorm sync and
  the row-sharded Sinkhorn solve (2 small all-reduces per iteration, 100
  iterations) cost, far more than their bytes.
"""

from __future__ import annotations

import json
from pathlib import Path


N = 8
# per-GPU batch -> measured step seconds (H200, SimCLR, 32 px, bf16, eager; see the docstring)
STEP_TIMES = Path(__file__).resolve().parent / "measurements" / "h200-simclr-step-2026-11-30.json"
STEP_S = {row["batch"]: row["step_ms"] * 1e-3 for row in json.loads(STEP_TIMES.read_text())["tables"][0]["rows"]}
LINKS = {"NVLink 4": 450e9, "PCIe 5 x16": 64e9, "IB 400 Gb/s": 50e9, "IB 100 Gb/s": 12.5e9}
LATENCY_S = 20e-6
BATCHES = [256, 512, 1024, 2048, 4096]
SINKHORN_ITERS = 100


def model_sizes():
    """(trainable parameters, projection dim, BatchNorm layers, their channels) of SimCLR's defaults."""
    import torch

    from train import run_config
    from train.methods import METHODS
    from train.models import resnet18_encoder

    cfg = run_config("simclr", "cifar10")
    backbone, dim = resnet18_encoder(3, 32)
    method = METHODS["simclr"](backbone, dim, cfg)
    params = sum(p.numel() for p in method.trainable().parameters())
    bns = [m for m in method.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    return params, cfg.params["proj_output_dim"], len(bns), sum(b.num_features for b in bns)


def rows():
    params, d, bn_layers, bn_channels = model_sizes()
    ring = 2 * (N - 1) / N
    grad_bytes = ring * 4 * params
    bn_bytes = (N - 1) / N * N * (2 * bn_channels + bn_layers) * 4 + ring * 2 * bn_channels * 4
    out = []
    for B in BATCHES:
        compute = STEP_S[B // N]
        gather_bytes = 2 * (N - 1) / N * 2 * B * d * 4  # forward all-gather + backward reduce-scatter
        features_bytes = 2 * (N - 1) / N * 2 * B * 512 * 4
        total = grad_bytes + gather_bytes + bn_bytes
        times = {name: total / bw + 2 * bn_layers * LATENCY_S for name, bw in LINKS.items()}
        out.append(dict(B=B, compute_ms=compute * 1e3, grad_mb=grad_bytes / 1e6, gather_mb=gather_bytes / 1e6,
                        features_mb=features_bytes / 1e6, bn_mb=bn_bytes / 1e6, times=times))
    return params, bn_layers, out


def main():
    params, bn_layers, table = rows()
    links = list(LINKS)
    print(f"SimCLR, ResNet-18 + projector: {params / 1e6:.2f} M trainable parameters ({4 * params / 1e6:.0f} MB fp32); "
          f"{bn_layers} BatchNorm layers; {N} GPUs; compute: the measured H200 step at B/{N} images\n")
    print("| global batch | per GPU | compute / step | gradients all-reduce | projections gather (+ features, SinSim) "
          "| --sync-bn | " + " | ".join(f"comm. {k}" for k in links) + " |")
    print("|" + "---|" * (6 + len(links)))
    for r in table:
        comm = " | ".join(f"{r['times'][k] * 1e3:.2f} ms ({r['times'][k] * 1e3 / r['compute_ms']:.2f}x)" for k in links)
        print(f"| {r['B']} | {r['B'] // N} | {r['compute_ms']:.1f} ms | {r['grad_mb']:.1f} MB | {r['gather_mb']:.2f} MB "
              f"(+ {r['features_mb']:.1f} MB) | {r['bn_mb']:.2f} MB | {comm} |")
    print(f"\nrow-sharded Sinkhorn solve: 2 x {SINKHORN_ITERS} small all-reduces per step, about "
          f"{2 * SINKHORN_ITERS * LATENCY_S * 1e3:.0f} ms of latency at {LATENCY_S * 1e6:.0f} us each")


if __name__ == "__main__":
    main()
