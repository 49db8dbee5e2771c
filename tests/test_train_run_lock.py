"""A run owns its output folder: a second run there refuses to start and
names the owner; the lock a killed run leaves is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from processes import kill_when
from runs import RUN, command, error_line, run_cli

from train.errors import FolderBusy
from train.run_lock import LOCK_NAME, hold_run_folder


def test_second_run_on_a_folder_refuses_and_a_killed_runs_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(command(out, "--epochs", "50"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not (out / LOCK_NAME).exists() or not (out / LOCK_NAME).read_text():  # the first run owns OUT
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.05)
        owner = json.loads((out / LOCK_NAME).read_text())
        assert owner["pid"] == first.pid and owner["host"] == socket.gethostname()

        for extra in ([], ["--overwrite"]):  # --overwrite would delete the first run's files
            second = run_cli(out, "--epochs", "50", *extra)
            assert second.returncode == 1
            line = error_line(second.stderr)
            assert f"{out} is in use by another run: pid {first.pid} on host {socket.gethostname()}" in line
        assert first.poll() is None, "the refused runs must leave the first one alone"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
        first.stderr.close()

    assert json.loads((out / LOCK_NAME).read_text())["pid"] == first.pid  # the killed run left its lock file
    resumed = run_cli(out, "--epochs", "1", "--overwrite")
    assert resumed.returncode == 0, resumed.stderr
    assert f"took over {out / LOCK_NAME} from pid {first.pid} on host {socket.gethostname()}" in resumed.stdout
    assert "no longer holds it" in resumed.stdout
    assert not (out / LOCK_NAME).exists() and (out / "results.json").is_file()


def test_a_paper_protocol_folder_in_use_is_refused(tmp_path):
    out = tmp_path / "paper"
    with hold_run_folder(out, log=lambda _: None):  # this test process is the owner
        proc = subprocess.run([sys.executable, str(RUN), "--protocol", "paper", "--datasets", "digits", "--methods",
                               "simclr", "--seeds", "0", "--sweep-datasets", "--epochs", "1", "--out", str(out)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 1
        assert f"{out} is in use by another run: pid {os.getpid()} on host {socket.gethostname()}" in \
            error_line(proc.stderr)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written, no cell started
    assert not out.exists() or not any(out.iterdir())


def test_a_folder_inside_a_run_in_use_is_refused(tmp_path):
    out = tmp_path / "all"
    with hold_run_folder(out, log=lambda _: None):  # e.g. a --method all run or a paper grid
        proc = run_cli(out / "simclr", "--epochs", "1", "--overwrite")
    assert proc.returncode == 1
    assert f"{out / 'simclr'} is inside {out}, which is in use by another run: pid {os.getpid()}" in \
        error_line(proc.stderr)
    assert not (out / "simclr").exists() or not any((out / "simclr").iterdir())


def test_the_lock_is_reentrant_and_released(tmp_path):
    messages = []
    with hold_run_folder(tmp_path / "x", log=messages.append) as folder:
        with hold_run_folder(folder, log=messages.append):  # the single protocol: OUT, then OUT as the method folder
            assert (folder / LOCK_NAME).exists()
        assert (folder / LOCK_NAME).exists()
    assert not (folder / LOCK_NAME).exists() and messages == []


def test_a_stale_lock_file_is_taken_over_and_temporaries_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": "elsewhere", "started": "then",
                                                 "command": "train/run.py"}))
    (folder / ".checkpoint.pt.123-abcd.tmp").write_bytes(b"x" * 1000)
    (folder / "keep.tmp").write_text("not ours")  # not an interrupted atomic write: kept
    messages = []
    with hold_run_folder(folder, log=messages.append):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert any(f"from pid {dead.pid} on host elsewhere" in m for m in messages), messages
    assert any(".checkpoint.pt.123-abcd.tmp" in m for m in messages), messages
    assert sorted(p.name for p in folder.iterdir()) == ["keep.tmp"]


def test_a_process_that_works_for_the_owner_may_take_folders_inside(tmp_path):
    """A campaign's worker declares whom it works for (work_inside); anyone else stays refused."""
    from train.run_lock import _busy_ancestor, _delegated, work_inside

    out = tmp_path / "campaign"
    inner = out / "cells" / "x"
    owner = subprocess.Popen([sys.executable, "-c", (
        "import time\n"
        "from train.run_lock import hold_run_folder\n"
        "with hold_run_folder(%r, log=lambda m: None):\n"
        "    print('held', flush=True); time.sleep(60)") % (str(out),)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy):
            _busy_ancestor(inner)
        work_inside(out, owner.pid + 1)  # a declaration for another run does not count
        with pytest.raises(FolderBusy):
            _busy_ancestor(inner)
        work_inside(out, owner.pid)
        _busy_ancestor(inner)
    finally:
        _delegated.clear()
        owner.kill()
        owner.wait()


def test_a_run_removes_only_its_own_leftover_temporaries_even_when_it_refuses(tmp_path, capsys):
    """Taking the folder removes what an interrupted write of the trainer left
    (``.<name>.<pid>-<hex>.tmp``), never a user's dot-file that merely ends
    in .tmp, also when the run then refuses to start."""
    from train.run import main

    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")  # a run is there: without --resume the start is refused
    theirs = [".notes.tmp", ".results.json.tmp", ".draft.v2.tmp", ".checkpoint.pt.backup.tmp"]
    for name in theirs:
        (out / name).write_text("not the trainer's")
    leftover = out / ".checkpoint.pt.4242-0a1b2c3d.tmp"
    leftover.write_bytes(b"x" * 100)
    assert main(command(out, "--epochs", "1")[2:]) == 1
    assert "already holds a run" in capsys.readouterr().err
    for name in theirs:
        assert (out / name).read_text() == "not the trainer's", name
    assert not leftover.exists()
