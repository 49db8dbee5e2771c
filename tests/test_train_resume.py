"""Kill a real run after its first checkpoint, resume it, and get exactly the
result of an uninterrupted run with the same seed."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from processes import kill_when

ROOT = Path(__file__).resolve().parents[1]
# a fixed thread count: the order of floating-point sums, and so the last bits, depend on it
ARGS = ["--dataset", "digits", "--train-subset", "256", "--batch-size", "64", "--image-size", "8",
        "--epochs", "4", "--probe-epochs", "5", "--seed", "7", "--cpu-threads", "1"]


def command(method, out, *extra):
    return [sys.executable, str(ROOT / "train" / "run.py"), *ARGS, "--method", method, "--out", str(out), *extra]


def metrics(out: Path):
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows]


@pytest.mark.parametrize("method", ["sinsim", pytest.param("byol", marks=pytest.mark.slow)])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, method):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert subprocess.run(command(method, full), capture_output=True, timeout=600).returncode == 0

    assert kill_when(command(method, killed), (killed / "checkpoint.pt").exists) == -signal.SIGKILL
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


def _interrupt_from_epoch(monkeypatch, epoch):
    """Ctrl-C as epoch ``epoch`` starts (the run keeps the checkpoint of the one before)."""
    from train.engine import Trainer

    real = Trainer.train_epoch

    def train_epoch(self, e, first_step):
        if e >= epoch:
            raise KeyboardInterrupt
        return real(self, e, first_step)

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)


def test_resume_on_other_data_is_refused_and_a_copy_of_the_same_data_resumes(tmp_path, monkeypatch, capsys):
    """The checkpoint records what it was trained on (the images' fingerprint):
    --resume with a --data-dir holding other images is refused, naming both
    sources, instead of switching datasets mid-run; the same images at
    another path (a copy) resume."""
    from runs import folder_args, write_image_folder
    from train.run import main

    first = write_image_folder(tmp_path / "first", seed=0)
    other = write_image_folder(tmp_path / "other", seed=1)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_from_epoch(m, 2)
        assert main(folder_args(first, out, "--epochs", "2")) == 130
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    capsys.readouterr()

    assert main(folder_args(other, out, "--epochs", "2", "--resume")) == 1
    err = capsys.readouterr().err
    assert f"{out / 'checkpoint.pt'} was trained on other images" in err, err
    assert str(first) in err and str(other) in err and "--data-dir" in err
    assert not (out / "results.json").exists()

    copy = shutil.copytree(first, tmp_path / "copy")
    assert main(folder_args(copy, out, "--epochs", "2", "--resume")) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    assert result["data_source"].startswith(str(copy)) and result["epochs"] == 2
