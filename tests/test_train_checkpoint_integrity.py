"""Checkpoints that can be trusted: a checksum is written with each one and
verified before it is resumed; a kill between writing and renaming one
leaves a temporary file that the next start removes; outputs get ordinary
permissions."""

from __future__ import annotations

import csv
import hashlib
import json
import io
import os
import shutil
import signal
import stat
import subprocess
import sys
import zipfile

import pytest
import torch
from processes import kill_when
from runs import RUN, TINY, error_line


from train.checkpoint import read_checkpoint, seal, verify
from train.run import main

OUTPUTS = ("checkpoint.pt", "config.json", "metrics.csv", "results.json", "results.md")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 1-epoch run, written under the usual umask 022."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    old = os.umask(0o022)
    try:
        assert main([*TINY, "--epochs", "1", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    return out


def test_outputs_get_ordinary_permissions(finished_run):
    for name in OUTPUTS:
        mode = stat.S_IMODE((finished_run / name).stat().st_mode)
        assert mode == 0o644, f"{name}: {oct(mode)}"


def test_the_checksum_is_the_sha256_of_the_bytes_before_it(finished_run):
    data = (finished_run / "checkpoint.pt").read_bytes()
    comment = zipfile.ZipFile(finished_run / "checkpoint.pt").comment  # a plain zip comment
    assert comment == b"sinsim-sha256:" + hashlib.sha256(data[: -len(comment)]).hexdigest().encode()
    assert torch.load(finished_run / "checkpoint.pt", weights_only=False)["epoch"] == 1  # torch.load still reads it
    assert verify(data) is None and verify(seal(data[: -len(comment) - 2] + b"\0\0")) is None


def _flip_a_weight_byte(data: bytes) -> bytes:
    """Flip one bit inside the stored tensor bytes (not the zip structure)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)  # the largest tensor
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    at = start + info.file_size // 2
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


@pytest.mark.parametrize("damage,problem", [
    (lambda d: b"", "it is empty (0 bytes)"),
    (lambda d: d[: len(d) // 2], "it has no checksum at its end"),
    (lambda d: d[:-30], "it has no checksum at its end"),  # cut inside the checksum
    (_flip_a_weight_byte, "its SHA-256 does not match the one written with it"),
], ids=["empty", "truncated", "truncated-checksum", "bit-flipped"])
def test_a_damaged_checkpoint_is_refused_in_one_line(finished_run, tmp_path, capsys, damage, problem):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "results.json").unlink()  # as if the run had been killed after its checkpoint
    checkpoint = out / "checkpoint.pt"
    checkpoint.write_bytes(damage(checkpoint.read_bytes()))
    damaged = checkpoint.read_bytes()
    capsys.readouterr()
    assert main([*TINY, "--epochs", "1", "--out", str(out), "--resume"]) == 1
    line = error_line(capsys.readouterr().err)
    assert f"{checkpoint} cannot be resumed: {problem}" in line and "--overwrite" in line
    assert checkpoint.read_bytes() == damaged and not (out / "results.json").exists()  # nothing overwritten


def test_a_kill_between_writing_and_renaming_is_cleaned_up_on_resume(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "written"
    # The run stops for good in the rename of its second checkpoint: the
    # temporary file is complete, the kill lands before os.replace.
    wrapper = tmp_path / "stall_second_rename.py"
    wrapper.write_text(
        "import os, runpy, sys, time\n"
        "real, seen = os.replace, []\n"
        "def replace(src, dst, *a, **k):\n"
        "    if str(dst).endswith('checkpoint.pt'):\n"
        "        seen.append(dst)\n"
        "        if len(seen) == 2:\n"
        f"            open({str(marker)!r}, 'w').close()\n"
        "            time.sleep(600)\n"
        "    return real(src, dst, *a, **k)\n"
        "os.replace = replace\n"
        f"sys.argv = [{str(RUN)!r}] + sys.argv[1:]\n"
        f"runpy.run_path({str(RUN)!r}, run_name='__main__')\n")
    args = [*TINY, "--epochs", "2", "--out", str(out)]
    assert kill_when([sys.executable, str(wrapper), *args], marker.exists) == -signal.SIGKILL
    leftovers = [p for p in out.iterdir() if p.name.startswith(".checkpoint.pt.") and p.name.endswith(".tmp")]
    assert len(leftovers) == 1
    assert leftovers[0].stat().st_size > 0.9 * (out / "checkpoint.pt").stat().st_size  # a full-size copy
    assert read_checkpoint(out / "checkpoint.pt")["epoch"] == 1

    resumed = subprocess.run([sys.executable, str(RUN), *args, "--resume"], capture_output=True,
                                           text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"removed 1 temporary file(s) an interrupted write left in {out}: {leftovers[0].name}" in resumed.stdout
    assert "resuming after epoch 1" in resumed.stdout
    assert not leftovers[0].exists() and not any(p.name.endswith(".tmp") for p in out.iterdir())
    assert read_checkpoint(out / "checkpoint.pt")["epoch"] == 2


def test_resume_with_no_epoch_left_rebuilds_a_damaged_metrics_csv(finished_run, tmp_path, capsys):
    """Killed after its last checkpoint (no results.json yet) with metrics.csv
    damaged: --resume has no epoch left to train, and still writes
    metrics.csv again from the rows the checkpoint keeps."""
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "results.json").unlink()
    (out / "metrics.csv").write_text("epoch,lo")  # cut short
    assert main([*TINY, "--epochs", "1", "--out", str(out), "--resume"]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    kept = read_checkpoint(out / "checkpoint.pt")["metrics"]
    assert len(rows) == len(kept) == 1
    assert {k: float(v) for k, v in rows[0].items()} == pytest.approx({k: float(v) for k, v in kept[0].items()})


def test_an_unreadable_results_json_is_rebuilt_from_the_final_checkpoint(finished_run, tmp_path, capsys):
    """results.json is derived from the final checkpoint: when it cannot be
    read, --resume evaluates the checkpoint again and rewrites it, instead of
    advising --overwrite (which would discard the checkpoint). Without a
    checkpoint to rebuild from, the advice is --overwrite."""
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    good = json.loads((out / "results.json").read_text())
    checkpoint = (out / "checkpoint.pt").read_bytes()
    (out / "results.json").write_text('{"method": "sim')  # cut short
    capsys.readouterr()
    assert main([*TINY, "--epochs", "1", "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert f"{out / 'results.json'} cannot be read" in captured.out and "rebuilding it from" in captured.out
    rebuilt = json.loads((out / "results.json").read_text())
    for key in ("method", "epochs", "final_loss", "budget", "signature"):
        assert rebuilt[key] == good[key], key
    assert (out / "checkpoint.pt").read_bytes() == checkpoint

    (out / "results.json").write_text("not json")
    (out / "checkpoint.pt").unlink()
    assert main([*TINY, "--epochs", "1", "--out", str(out), "--resume"]) == 1
    line = error_line(capsys.readouterr().err)
    assert f"{out / 'results.json'} cannot be read" in line and "no checkpoint" in line and "--overwrite" in line
