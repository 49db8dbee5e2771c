"""The CUDA path: no host synchronisation inside a training step, and the
protocol end to end on the GPU (eager and compiled). Skipped without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from train import build_trainer, run_config
from train.methods import METHODS

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("name", list(METHODS))
def test_training_step_does_not_synchronise(name):
    cfg = run_config(name, "cifar10", device="cuda", batch_size=128)
    images = torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8, device="cuda")
    trainer = build_trainer(cfg, images, 3, (0.5,) * 3, (0.25,) * 3)
    batch = images[:128]
    for _ in range(2):  # warm-up: lazy initialisation, cuDNN autotuning
        trainer._train_step(batch)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(3):
            loss, _ = trainer._train_step(batch)
            trainer.method.after_optimizer_step(step + 1, 10)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--compile"]], ids=["eager", "compiled"])
def test_digits_on_the_gpu(tmp_path, extra):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train" / "run.py"), "--dataset", "digits", "--method", "sinsim",
         "--device", "cuda", "--epochs", "2", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "results.json").read_text())
    assert result["linear"] > 60 and result["knn"] > 60
    assert json.loads((out / "config.json").read_text())["precision"] == "bf16"
