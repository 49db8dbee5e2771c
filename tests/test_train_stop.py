"""Clean stops: SIGTERM (a scheduler) and SIGINT (Ctrl-C) end a run at a step
boundary with a checkpoint, one line and exit status 128 + the signal; the
run lock and temporary files are gone; the resumed run ends exactly where
the uninterrupted one does. The checkpoint before the last is kept, and a
damaged last one resumes from it."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time

import pytest
import torch
from processes import signalled
from runs import RUN, TINY, error_line, run_cli


from train.checkpoint import read_checkpoint
from train.run_lock import LOCK_NAME

TIMING = ("seconds", "images_per_second")
# a fixed thread count: the order of floating-point sums, and so the last bits, depend on it
FIXED = ["--cpu-threads", "1"]


def metrics(out):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader((out / "metrics.csv").open())]


def leftovers(out):
    """Lock files and temporary files anywhere under ``out``."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name == LOCK_NAME or p.name.endswith(".tmp"))


def stop_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("stopped by ")]
    assert len(lines) == 1 and "Traceback" not in stderr and "error:" not in stderr, stderr
    return lines[0]


def same_weights(a, b):
    wa, wb = read_checkpoint(a)["method"], read_checkpoint(b)["method"]
    assert wa.keys() == wb.keys()
    return all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    done = run_cli(out, "--epochs", "2", *FIXED)
    assert done.returncode == 0, done.stderr
    return out


def test_sigterm_stops_at_the_step_saves_it_and_the_resumed_run_ends_as_the_uninterrupted_one(
        tmp_path, uninterrupted):
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "2", *FIXED, "--out", str(out)]
    stopped = subprocess.run(signalled(tmp_path, signal.SIGTERM, RUN, after_calls=6) + args,
                             capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 143, stopped.stderr
    assert stop_line(stopped.stderr) == (
        f"stopped by SIGTERM: simclr stopped at step 2/4 of epoch 2/2, saved in {out / 'checkpoint.pt'}; "
        f"continue with the same command plus --resume (out: {out})")
    assert leftovers(out) == [] and not (out / "results.json").exists()
    state = read_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 1 and state["trainer"]["in_progress"]["done"] == 2
    assert read_checkpoint(out / "checkpoint.previous.pt")["epoch"] == 1  # the epoch-1 checkpoint, kept
    assert len(metrics(out)) == 1

    resumed = run_cli(out, "--epochs", "2", *FIXED, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"simclr: resuming at step 2 of 4 of epoch 2 from {out / 'checkpoint.pt'}" in resumed.stdout
    assert metrics(out) == metrics(uninterrupted)
    assert same_weights(out / "checkpoint.pt", uninterrupted / "checkpoint.pt")


def test_sigterm_while_a_checkpoint_is_written_leaves_neither_a_temporary_file_nor_the_lock(tmp_path):
    """SIGTERM from outside while the second checkpoint is being renamed into
    place: the write completes, the run stops after that epoch."""
    out, marker = tmp_path / "run", tmp_path / "writing"
    wrapper = tmp_path / "slow_second_rename.py"
    wrapper.write_text(
        "import os, runpy, sys, time\n"
        "real, seen = os.replace, []\n"
        "def replace(src, dst, *a, **k):\n"
        "    if str(dst).endswith('checkpoint.pt'):\n"
        "        seen.append(dst)\n"
        "        if len(seen) == 2:\n"
        f"            open({str(marker)!r}, 'w').close()\n"
        "            time.sleep(3)\n"
        "    return real(src, dst, *a, **k)\n"
        "os.replace = replace\n"
        f"sys.argv = [{str(RUN)!r}] + sys.argv[1:]\n"
        f"runpy.run_path({str(RUN)!r}, run_name='__main__')\n")
    proc = subprocess.Popen([sys.executable, str(wrapper), *TINY, "--epochs", "3", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the run did not reach its second checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=600)[1]
    assert proc.returncode == 143, stderr
    assert stop_line(stderr).startswith(f"stopped by SIGTERM: simclr stopped after epoch 2/3, saved in {out}")
    assert leftovers(out) == []
    assert read_checkpoint(out / "checkpoint.pt")["epoch"] == 2


def test_ctrl_c_in_method_all_stops_the_method_in_training_and_resume_keeps_the_finished_one(tmp_path):
    out = tmp_path / "all"
    args = [*TINY, "--method", "all", "--epochs", "1", "--out", str(out)]
    stopped = subprocess.run(signalled(tmp_path, signal.SIGINT, RUN, after_calls=6) + args,
                             capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 130, stopped.stderr
    assert stop_line(stopped.stderr) == (
        f"stopped by SIGINT: simclr stopped at step 2/4 of epoch 1/1, saved in {out / 'simclr' / 'checkpoint.pt'}; "
        f"continue with the same command plus --resume (finished methods are kept) (out: {out})")
    assert leftovers(out) == []
    assert (out / "sinsim" / "results.json").is_file() and not (out / "simclr" / "results.json").exists()

    resumed = subprocess.run([sys.executable, str(RUN), *args, "--resume"], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "sinsim: finished earlier" in resumed.stdout
    assert "simclr: resuming at step 2 of 4 of epoch 1" in resumed.stdout
    assert all((out / m / "results.json").is_file() for m in ("simclr", "byol", "vicreg", "barlow"))


def test_sigterm_during_the_evaluation_stops_at_once_and_resume_only_evaluates(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "1", "--eval", "--probe-epochs", "1", "--probe-train-subset", "100",
            "--probe-test-subset", "50", "--geometry-points", "50", "--out", str(out)]
    stopped = subprocess.run(signalled(tmp_path, signal.SIGTERM, RUN, target="train.evaluate:extract_features")
                             + args, capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 143, stopped.stderr
    assert stop_line(stopped.stderr).startswith(
        f"stopped by SIGTERM: simclr stopped during its evaluation; its pretraining is finished and saved in "
        f"{out / 'checkpoint.pt'}; continue with the same command plus --resume")
    assert leftovers(out) == [] and not (out / "results.json").exists()

    resumed = run_cli(out, *args[len(TINY):], "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "simclr: resuming after epoch 1 from" in resumed.stdout and "pretraining epochs" not in resumed.stdout
    assert (out / "results.json").is_file()


def _damage(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_last_checkpoint_resumes_from_the_previous_one(tmp_path, uninterrupted):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("checkpoint.pt", "checkpoint.previous.pt", "config.json", "metrics.csv"):
        (out / name).write_bytes((uninterrupted / name).read_bytes())
    assert read_checkpoint(out / "checkpoint.previous.pt")["epoch"] == 1
    _damage(out / "checkpoint.pt")

    resumed = run_cli(out, "--epochs", "2", *FIXED, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (f"note: {out / 'checkpoint.pt'} cannot be resumed: its SHA-256 does not match the one written with it: "
            f"the file was damaged or altered; resuming from {out / 'checkpoint.previous.pt'} instead") in resumed.stdout
    assert (f"simclr: resuming after epoch 1 from {out / 'checkpoint.previous.pt'} (the newest intact checkpoint)"
            in resumed.stdout)
    assert same_weights(out / "checkpoint.pt", uninterrupted / "checkpoint.pt")  # epoch 2 again, exactly
    assert read_checkpoint(out / "checkpoint.previous.pt")["epoch"] == 1  # the damaged file did not replace it


def test_two_damaged_checkpoints_are_refused_in_one_line_naming_both(tmp_path, uninterrupted):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("checkpoint.pt", "checkpoint.previous.pt"):
        (out / name).write_bytes((uninterrupted / name).read_bytes())
    _damage(out / "checkpoint.pt")
    (out / "checkpoint.previous.pt").write_bytes(b"")
    refused = run_cli(out, "--epochs", "2", "--resume")
    assert refused.returncode == 1
    line = error_line(refused.stderr)
    assert f"{out / 'checkpoint.pt'} cannot be resumed: its SHA-256 does not match" in line
    assert f"{out / 'checkpoint.previous.pt'} cannot be resumed: it is empty (0 bytes)" in line
    assert "--overwrite" in line
