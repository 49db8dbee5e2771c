"""Kill a paper-protocol grid in the middle of a cell, run the same command
again: the finished cell is kept untouched, the cut one resumes from its
checkpoint, and the report records the killed invocation."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from processes import kill_when, signalled

ROOT = Path(__file__).resolve().parents[1]

from train import METHOD_RECIPES
ARGS = ["--protocol", "paper", "--datasets", "digits", "--methods", "simclr", "sinsim", "--seeds", "0",
        "--epochs", "2", "--train-subset", "64", "--batch-size", "32", "--image-size", "8", "--probe-epochs", "2",
        "--probe-train-subset", "200", "--probe-test-subset", "100", "--geometry-points", "100",
        "--sweep-datasets", "--num-workers", "1"]


SINSIM = f"sinsim-{METHOD_RECIPES['sinsim'].defaults['sinkhorn_term']}-lam0.1-eps0.05-features"  # the grid's SinSim at the defaults
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors: one thread is faster (see test_paper_grid.py)


@pytest.mark.slow  # the stopped grid below covers resuming a cut cell by default
def test_killed_grid_keeps_finished_cells_and_resumes_the_cut_one(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "train" / "run.py"), *ARGS, "--out", str(out)]
    simclr = out / "cells" / "digits" / "simclr" / "seed0"
    sinsim = out / "cells" / "digits" / SINSIM / "seed0"

    assert kill_when(cmd, lambda: (sinsim / "checkpoint.pt").exists(), env=ENV) == -signal.SIGKILL
    assert (simclr / "results.json").is_file() and (simclr / "embedding.npz").is_file()
    assert not (sinsim / "results.json").exists()
    cut_at = torch.load(sinsim / "checkpoint.pt", weights_only=False)["epoch"]
    assert cut_at == 1
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(simclr.iterdir()) if p.suffix != ".pt"}
    log_before = (out / "run.log").read_text()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    new_log = (out / "run.log").read_text()[len(log_before):]
    assert "skipped digits simclr seed 0: finished earlier" in new_log
    assert f"resumed digits {SINSIM} seed 0" in new_log
    assert "ran digits random-init seed 0" in new_log
    assert f"sinsim: resuming after epoch {cut_at}" in rerun.stdout
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in kept} == kept
    assert [r["epoch"] for r in csv.DictReader((sinsim / "metrics.csv").open())] == ["1", "2"]
    report = (out / "report.md").read_text()
    assert "| killed or still running |" in report and "| end |" in report
    assert "− SimCLR, linear probe top-1 on the test split" in report and "one paired seed" in report


def test_a_stopped_grid_resumes_the_stopped_cell_at_its_step(tmp_path):
    """SIGTERM at step 1 of the SinSim cell (after SimCLR's 4 steps): one line,
    no lock left in any folder, and the same command finishes the grid from
    that step."""
    out = tmp_path / "out"
    args = [*ARGS, "--out", str(out)]
    sinsim = out / "cells" / "digits" / SINSIM / "seed0"
    stopped = subprocess.run(signalled(tmp_path, signal.SIGTERM, ROOT / "train" / "run.py", after_calls=5) + args,
                             capture_output=True, text=True, timeout=600, env=ENV)
    assert stopped.returncode == 143, stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("stopped by ")]
    assert lines == [f"stopped by SIGTERM: sinsim stopped at step 1/2 of epoch 1/2, saved in {sinsim / 'checkpoint.pt'}; "
                     f"run the same command again: finished cells are kept and the stopped one resumes from its "
                     f"checkpoint (out: {out})"], stopped.stderr
    assert not [p for p in out.rglob("*") if p.name == "run.lock" or p.name.endswith(".tmp")]
    assert '"event": "stopped by SIGTERM"' in (out / "sessions.jsonl").read_text()

    rerun = subprocess.run([sys.executable, str(ROOT / "train" / "run.py"), *args], capture_output=True, text=True,
                           timeout=600, env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert "sinsim: resuming at step 1 of 2 of epoch 1" in rerun.stdout
    assert "skipped digits simclr seed 0: finished earlier" in rerun.stdout
    assert f"resumed digits {SINSIM} seed 0" in rerun.stdout
    assert [r["epoch"] for r in csv.DictReader((sinsim / "metrics.csv").open())] == ["1", "2"]
    assert "| stopped by SIGTERM |" in (out / "report.md").read_text()
