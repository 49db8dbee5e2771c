"""Images per second of one pretraining step, per method.

    pytest bench/test_train_throughput.py --benchmark-only --benchmark-group-by=group

One step is what the trainer does per batch: augment two views of a uint8
batch already on the device, forward, loss, backward, optimiser step (and
BYOL's target update). SinSim is timed with the compiled Sinkhorn kernel and
with the plain-PyTorch reference, so its overhead over SimCLR shows directly.
Each entry's ``extra_info`` holds ``images_per_second`` (batch / median step).

* CPU: batch 32 of 3 x 16 x 16 images (small, so it runs anywhere).
* CUDA, when present: the CIFAR-10 setting, batch 512 of 3 x 32 x 32, bf16
  autocast, channels-last, eager (``--compile`` is measured end to end by
  ``train/gpu_check.sh``).
"""

from __future__ import annotations


import pytest
import torch


from train import METHOD_NAMES, build_trainer, run_config
from train.engine import Trainer, weight_norm

SETTINGS = {"cpu": dict(batch=32, size=16, precision="fp32", rounds=5)}
if torch.cuda.is_available():
    SETTINGS["cuda"] = dict(batch=512, size=32, precision="bf16", rounds=30)

CASES = [(name, "auto") for name in METHOD_NAMES] + [("sinsim", "reference")]


def make_trainer(name: str, backend: str, device: str, batch: int, size: int, precision: str) -> Trainer:
    torch.manual_seed(0)
    cfg = run_config(name, "cifar10", device=device, image_size=size, batch_size=batch, precision=precision,
                     sinkhorn_backend=backend)
    images = torch.randint(0, 256, (4 * batch, 3, size, size), dtype=torch.uint8, device=device)
    return build_trainer(cfg, images, 3, (0.5,) * 3, (0.25,) * 3)


@pytest.mark.parametrize("device", list(SETTINGS))
@pytest.mark.parametrize("name,backend", CASES, ids=[f"{n}-{b}" if b != "auto" else n for n, b in CASES])
def test_train_step_throughput(benchmark, name, backend, device):
    s = SETTINGS[device]
    trainer = make_trainer(name, backend, device, s["batch"], s["size"], s["precision"])
    trainer.method.train()
    batch = trainer.images[: s["batch"]]

    def step():
        loss, _ = trainer._train_step(batch)
        trainer.method.after_optimizer_step(1, 10)
        if device == "cuda":
            torch.cuda.synchronize()
        return loss

    benchmark.group = f"train step, {device}, batch {s['batch']}, {s['size']} px"
    loss = benchmark.pedantic(step, rounds=s["rounds"], warmup_rounds=2)
    assert torch.isfinite(loss)
    benchmark.extra_info["sinkhorn_backend"] = backend if name == "sinsim" else None
    if benchmark.stats is not None:  # None under --benchmark-disable (a single untimed run)
        benchmark.extra_info["images_per_second"] = s["batch"] / benchmark.stats.stats.median


@pytest.mark.parametrize("device", list(SETTINGS))
def test_divergence_check_cost(benchmark, device):
    """What the trainer adds every --check-every steps to watch for exploding
    weights: the norm of all SinSim parameters, read back with the loss in one
    transfer. Compare with the train-step group of the same device."""
    s = SETTINGS[device]
    trainer = make_trainer("sinsim", "auto", device, s["batch"], s["size"], s["precision"])
    loss_sum = torch.zeros((), device=device)

    def check():
        return torch.stack([loss_sum.double(), weight_norm(trainer.method).double()]).tolist()

    benchmark.group = f"train step, {device}, batch {s['batch']}, {s['size']} px"
    total, norm = benchmark.pedantic(check, rounds=s["rounds"] * 4, warmup_rounds=2)
    assert norm == pytest.approx(trainer.initial_weight_norm, rel=1e-5)
