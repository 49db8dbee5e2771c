"""Kill a real run after its first checkpoint, resume it, and get exactly the
result of an uninterrupted run with the same seed."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--dataset", "digits", "--train-subset", "256", "--batch-size", "64", "--image-size", "8",
        "--epochs", "4", "--probe-epochs", "5", "--seed", "7"]


def command(method, out, *extra):
    return [sys.executable, str(ROOT / "train" / "run.py"), *ARGS, "--method", method, "--out", str(out), *extra]


def kill_after_first_checkpoint(cmd, checkpoint: Path, timeout=300):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not checkpoint.exists():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before writing a checkpoint: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint within the time limit")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    return proc.returncode


def metrics(out: Path):
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows]


@pytest.mark.parametrize("method", ["sinsim", "byol"])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, method):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert subprocess.run(command(method, full), capture_output=True, timeout=600).returncode == 0

    assert kill_after_first_checkpoint(command(method, killed), killed / "checkpoint.pt") == -signal.SIGKILL
    interrupted_at = torch.load(killed / "checkpoint.pt", weights_only=False)["epoch"]
    assert 1 <= interrupted_at < 4, "the kill must land before the run finishes"
    assert not (killed / "results.json").exists()

    resumed = subprocess.run(command(method, killed, "--resume"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {interrupted_at}" in resumed.stdout

    a = json.loads((full / "results.json").read_text())
    b = json.loads((killed / "results.json").read_text())
    for key in ("linear", "mlp", "knn", "final_loss", "budget", "signature"):
        assert a[key] == b[key], key
    assert metrics(full) == metrics(killed)
    wa = torch.load(full / "checkpoint.pt", weights_only=False)
    wb = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert wa["epoch"] == wb["epoch"] == 4 and wa["step"] == wb["step"]
    for name, tensor in wa["method"].items():
        assert torch.equal(tensor, wb["method"][name]), name
