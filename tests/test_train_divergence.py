"""A run whose weights or loss explode is stopped with a message, as a NaN
is, and the advised ``--resume --lr`` continues it with the new rate,
recorded; a self-supervised batch of one image is refused (NT-Xent's own
refusal: tests/test_losses.py)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from runs import TINY, error_line


from train.checkpoint import read_checkpoint
from train.methods import METHODS
from train.run import main

SIMCLR = METHODS["simclr"]


def test_exploding_weights_stop_the_run_and_resume_with_a_lower_lr(tmp_path, capsys, monkeypatch):
    def blow_up(self, step, total_steps):  # 4 steps per epoch: step 6 is epoch 2's second
        if step == 6:
            with torch.no_grad():
                for p in self.parameters():
                    p.mul_(1e3)

    monkeypatch.setattr(SIMCLR, "after_optimizer_step", blow_up)
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "3", "--check-every", "2", "--out", str(out)]
    assert main(args) == 1
    line = error_line(capsys.readouterr().err)
    assert "simclr: the weights exploded by step 6 (epoch 2): their norm grew from " in line
    assert f"the last good checkpoint (epoch 1) is kept at {out / 'checkpoint.pt'}" in line
    assert "it was --lr 0.4" in line and "--resume --lr 0.04 continues from that epoch" in line
    assert read_checkpoint(out / "checkpoint.pt")["epoch"] == 1 and not (out / "results.json").exists()

    monkeypatch.undo()
    assert main(args + ["--resume", "--lr", "0.04"]) == 0
    assert "resuming after epoch 1 from" in capsys.readouterr().out
    change = [{"after_epoch": 1, "lr": [0.4, 0.04]}]
    assert json.loads((out / "config.json").read_text())["resume_changes"] == change
    result = json.loads((out / "results.json").read_text())
    assert result["resume_changes"] == change and result["signature"]["lr"] == 0.04
    # the schedule goes on from step 4 at the new scale: warm-up of round(0.3 * 4) = 1 step, cosine to step 12
    lrs = [float(r["lr"]) for r in csv.DictReader((out / "metrics.csv").open())]
    assert lrs[0] == pytest.approx(0.4 * 32 / 256 * (1 / 2))
    for epoch, lr in ((2, lrs[1]), (3, lrs[2])):
        step = 4 * (epoch - 1)
        assert lr == pytest.approx(0.04 * 32 / 256 * 0.5 * (1 + math.cos(math.pi * (step - 1) / 11)))
    # without --lr the checkpoint's rate (0.04) and the default (0.4) disagree: refused, not mixed
    (out / "results.json").unlink()
    assert main(args + ["--resume"]) == 1
    assert "lr: checkpoint 0.04 vs now 0.4" in error_line(capsys.readouterr().err)


def test_exploding_loss_stops_the_run(tmp_path, capsys, monkeypatch):
    real, calls = SIMCLR.loss_terms, []

    def inflated(self, x1, x2):  # a constant: the gradients, and so the weights, are unchanged
        calls.append(1)
        loss, terms = real(self, x1, x2)
        return (loss + 1e4 if len(calls) >= 3 else loss), terms

    monkeypatch.setattr(SIMCLR, "loss_terms", inflated)
    assert main([*TINY, "--epochs", "1", "--check-every", "1", "--out", str(tmp_path / "run")]) == 1
    line = error_line(capsys.readouterr().err)
    assert "simclr: the loss exploded by step 3 (epoch 1): its mean over the last 1 steps is 1e+04" in line
    assert "no epoch finished, so there is no checkpoint" in line and "lower --lr" in line


def test_a_dataset_of_one_image_is_refused(tmp_path, capsys):
    for split in ("train", "test"):
        (tmp_path / "data" / split / "cat").mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / "data" / split / "cat" / "a.png")
    code = main(["--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"),
                 "--image-size", "8", "--method", "sinsim", "--out", str(tmp_path / "run")])
    assert code == 1
    assert "sinsim: a batch of 1 image: self-supervised methods compare two or more images" in \
        error_line(capsys.readouterr().err)
