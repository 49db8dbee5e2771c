"""Tiny trainer runs on digits for the command-line tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "train" / "run.py"
# 4 steps of 32 images per epoch on 8 px digits, no probes: seconds per epoch
TINY = ["--dataset", "digits", "--train-subset", "128", "--batch-size", "32", "--image-size", "8", "--no-eval",
        "--method", "simclr"]


def command(out, *extra):
    return [sys.executable, str(RUN), *TINY, "--out", str(out), *extra]


def run_cli(out, *extra, **kwargs):
    return subprocess.run(command(out, *extra), capture_output=True, text=True, timeout=600, **kwargs)


def error_line(stderr: str) -> str:
    """The one line of a clean error (fails the test if there is more, or a traceback)."""
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]
