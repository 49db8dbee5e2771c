"""Clear errors for the file system: an --out that is a file, a read-only
folder and a full disk each end in one line naming the path, exit status 1,
and nothing already written is lost."""

from __future__ import annotations

import errno
import os
import subprocess
from contextlib import contextmanager

import pytest
from runs import TINY, error_line, run_cli


from train import storage
from train.checkpoint import read_checkpoint
from train.run import main


def _mount(*args) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def read_only(folder):
    """``folder`` made read-only: by its mode for a normal user, by a
    read-only bind mount for root (whom modes do not stop)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if not _mount("--bind", str(folder), str(folder)):
        pytest.skip("root without the right to mount: cannot make a read-only folder")
    try:
        if not _mount("-o", "remount,bind,ro", str(folder)):
            pytest.skip("cannot remount read-only")
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_out_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("precious")
    assert main([*TINY, "--out", str(out)]) == 1
    assert error_line(capsys.readouterr().err) == (
        f"error: --out {out} is a file, not a folder; pass a folder (new or existing) to --out")
    assert out.read_text() == "precious"
    assert main([*TINY, "--out", str(out / "run")]) == 1
    assert f"cannot create the folder {out / 'run'}: {out} is a file, not a folder" in \
        error_line(capsys.readouterr().err)


def test_read_only_out(tmp_path, capsys):
    parent, out = tmp_path / "ro", tmp_path / "ro" / "old-run"
    out.mkdir(parents=True)
    (out / "results.json").write_text("{}")
    with read_only(parent):
        assert main([*TINY, "--out", str(parent / "new-run")]) == 1
        line = error_line(capsys.readouterr().err)
        assert f"cannot create the folder {parent / 'new-run'}: " in line
        assert "read-only file system" in line or "permission denied" in line
        assert main([*TINY, "--out", str(out), "--overwrite"]) == 1
        line = error_line(capsys.readouterr().err)
        assert f"cannot write in {out}: " in line and "pass another --out" in line
    assert sorted(p.name for p in parent.iterdir()) == ["old-run"]
    assert (out / "results.json").read_text() == "{}"  # --overwrite removed nothing


def _check_full_disk_outcome(out, line):
    checkpoint = out / "checkpoint.pt"
    assert f"cannot write {checkpoint}: no space left on the device; the previous checkpoint.pt is unchanged" in line
    assert read_checkpoint(checkpoint)["epoch"] == 1  # the epoch-1 checkpoint, intact (its checksum holds)
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())  # the partial file is gone
    assert not (out / "run.lock").exists()


def test_full_disk_while_saving_a_checkpoint(tmp_path, capsys, monkeypatch):
    """ENOSPC from the write layer, half-way through the second checkpoint."""
    real, writes = storage._write_and_sync, []

    def fill_up(f, data):
        if len(data) > 10_000_000:  # a checkpoint (~100 MB), not a json or csv
            writes.append(len(data))
            if len(writes) == 2:
                f.write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(f, data)

    monkeypatch.setattr(storage, "_write_and_sync", fill_up)
    out = tmp_path / "run"
    assert main([*TINY, "--epochs", "3", "--out", str(out)]) == 1
    _check_full_disk_outcome(out, error_line(capsys.readouterr().err))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_on_a_real_small_file_system(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=150m", "tmpfs", str(disk)):  # one ~100 MB checkpoint fits, two do not
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = disk / "run"
        proc = run_cli(out, "--epochs", "3")
        assert proc.returncode == 1
        _check_full_disk_outcome(out, error_line(proc.stderr))
    finally:
        subprocess.run(["umount", str(disk)], check=True)
