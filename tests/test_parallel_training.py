"""Data-parallel training under ``torchrun --standalone --nproc-per-node 2``
on CPUs (gloo): the step equals one process's on the whole batch, the run
writes its outputs once, a killed process stops the job with a clear
message, and resuming gives the uninterrupted run's result exactly.

``torchrun`` is started as ``python -m torch.distributed.run`` (the same
program, found wherever torch is installed). Each process uses one thread
(the machines running the tests have few cores).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runs import RUN, TINY, error_line

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
DIGITS = [*TINY, "--epochs", "2", "--device", "cpu"]

# fp32 tolerances of the equivalence (the sums run in another order on 2 ranks)
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4

def torchrun(*args, timeout=600):
    return subprocess.run([*TORCHRUN, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV,
                          cwd=ROOT)


# ---------------------------------------------------------------------------- the step


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    out = tmp_path_factory.mktemp("equivalence") / "report.json"
    done = torchrun(ROOT / "tests" / "parallel_equivalence.py", out)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


def cases():
    from parallel_equivalence import CASES

    return [f"{name} sync-bn={sync} sinkhorn-shard={shard}" for name, sync, shard in CASES]


@pytest.mark.parametrize("case", cases())
def test_two_processes_with_half_batches_give_the_one_process_loss_and_gradients(equivalence, case):
    r = equivalence[case]
    assert r["missing"] == []  # every parameter with a gradient got one on both sides
    assert r["loss"][0] == r["loss"][1]  # every rank computes the same global loss
    assert r["loss"][0] == pytest.approx(r["reference_loss"], rel=LOSS_RTOL)
    assert r["ranks_identical"]  # DDP left the same averaged gradient on every rank
    assert r["grad_rel_err"] < GRAD_RTOL, r
    if r["running_stats_rel_err"] is not None:  # --sync-bn: BatchNorm's running statistics of the global batch
        assert r["running_stats_rel_err"] < GRAD_RTOL, r


# ---------------------------------------------------------------------------- a run


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    done = torchrun(RUN, *DIGITS, "--out", out)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, done


def test_a_two_process_run_writes_its_outputs_once(uninterrupted):
    out, done = uninterrupted
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.previous.pt", "checkpoint.pt", "config.json", "metrics.csv", "results.json", "results.md"]
    # only the driver speaks and writes: one line per epoch, one row per epoch
    for epoch in (1, 2):
        assert sum(f"epoch {epoch}/2: loss" in line for line in done.stdout.splitlines()) == 1, done.stdout
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 2
    result = json.loads((out / "results.json").read_text())
    assert "2 processes (gloo)" in json.dumps(result)
    assert "x 2 processes (16 images each)" in done.stdout


def test_one_process_refuses_to_resume_a_two_process_checkpoint(uninterrupted, tmp_path):
    out, _ = uninterrupted
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes())
    done = subprocess.run([sys.executable, str(RUN), *DIGITS, "--epochs", "3", "--out", str(copy), "--resume"],
                          capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode != 0
    assert "2 process(es)" in error_line(done.stderr)


def rank_pid(parent: int, rank: int):
    """The pid of the child of ``parent`` (torchrun's agent) whose RANK is ``rank``, or None."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


@pytest.mark.slow  # the SIGTERM test below covers a stopped torchrun job by default
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_killed_process_stops_the_job_and_resume_gives_the_uninterrupted_result(uninterrupted, tmp_path):
    reference, _ = uninterrupted
    out = tmp_path / "killed"
    proc = subprocess.Popen([*TORCHRUN, str(RUN), *DIGITS, "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    deadline = time.monotonic() + 300
    victim = None
    while victim is None:  # epoch 1's checkpoint is written: kill rank 1 during epoch 2
        assert proc.poll() is None, "the run ended before the kill: " + proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run did not write its first checkpoint in time"
        if (out / "checkpoint.pt").exists():
            victim = rank_pid(proc.pid, 1)
        time.sleep(0.02)
    os.kill(victim, signal.SIGKILL)
    stderr = proc.communicate(timeout=300)[1]
    assert proc.returncode != 0
    # the driver says why it stops and how to go on; torchrun names the process that died
    assert "error: rank 0 of 2:" in stderr and "--resume" in stderr, stderr[-4000:]
    assert "Traceback" not in "\n".join(line for line in stderr.splitlines() if line.startswith("[rank0]")), stderr
    root_cause = stderr.split("Root Cause", 1)[1]
    assert "rank      : 1" in root_cause and "SIGKILL" in root_cause, stderr[-3000:]
    assert not (out / "results.json").exists()

    resumed = torchrun(RUN, *DIGITS, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming after epoch 1" in resumed.stdout
    mine = torch.load(out / "checkpoint.pt", weights_only=False)
    theirs = torch.load(reference / "checkpoint.pt", weights_only=False)
    assert mine["method"].keys() == theirs["method"].keys()
    for k in theirs["method"]:
        assert torch.equal(mine["method"][k], theirs["method"][k]), k
    losses = lambda p: [row.split(",")[1] for row in (p / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert losses(out) == losses(reference)


def test_sigterm_to_torchrun_stops_every_process_at_one_step_and_resume_gives_the_uninterrupted_result(
        uninterrupted, tmp_path):
    """What a scheduler does: SIGTERM to torchrun, which passes it on to every
    process. The ranks agree at the next check (every step here) to stop at
    the same step; the driver saves it, with every rank's generators."""
    reference, _ = uninterrupted
    out = tmp_path / "stopped"
    proc = subprocess.Popen([*TORCHRUN, str(RUN), *DIGITS, "--check-every", "1", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint.pt").exists():  # epoch 1 is saved: stop during epoch 2
        assert proc.poll() is None, "the run ended before the stop: " + proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run did not write its first checkpoint in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0
    stops = [line for line in stderr.splitlines() if "stopped by SIGTERM: simclr stopped " in line]
    assert len(stops) == 1 and f"saved in {out / 'checkpoint.pt'}" in stops[0], stderr[-4000:]
    assert "--resume" in stops[0] and not any(line.startswith("error: ") for line in stderr.splitlines()), stderr
    assert not (out / "run.lock").exists() and not any(p.name.endswith(".tmp") for p in out.iterdir())
    assert not (out / "results.json").exists()

    resumed = torchrun(RUN, *DIGITS, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "simclr: resuming " in resumed.stdout
    mine = torch.load(out / "checkpoint.pt", weights_only=False)
    theirs = torch.load(reference / "checkpoint.pt", weights_only=False)
    for k in theirs["method"]:
        assert torch.equal(mine["method"][k], theirs["method"][k]), k
    losses = lambda p: [row.split(",")[1] for row in (p / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert losses(out) == losses(reference)


@pytest.mark.slow
def test_the_paper_protocol_runs_under_torchrun(tmp_path):
    """A tiny grid (SimCLR, SinSim and the random-init reference on digits):
    the driver trains each cell with the worker, checks the finished cells
    against its own signature (2 processes) and writes the report once."""
    out = tmp_path / "paper"
    done = torchrun(RUN, "--protocol", "paper", "--datasets", "digits", "--methods", "simclr", "sinsim", "--seeds",
                    "0", "--epochs", "1", "--train-subset", "64", "--batch-size", "32", "--image-size", "8",
                    "--probe-epochs", "1", "--probe-train-subset", "100", "--probe-test-subset", "50",
                    "--geometry-points", "50", "--sweep-datasets", "--num-workers", "1", "--device", "cpu",
                    "--out", out)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "cells: 3 ran" in done.stdout
    assert done.stdout.count("report: ") == 1 and (out / "report.md").exists()
    for cell in ("simclr", "sinsim-entropic-lam0.1-eps0.05-features"):
        result = json.loads((out / "cells" / "digits" / cell / "seed0" / "results.json").read_text())
        assert result["signature"]["world_size"] == 2, result["signature"]
