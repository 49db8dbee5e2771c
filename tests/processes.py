"""Kill a real run at a chosen moment, for the resume tests."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest


def kill_when(cmd, ready, *, env=None, timeout=300) -> int:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` is true, return its
    exit code; fail the test if it ends first or ``timeout`` s pass."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before the kill: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the run did not get there in time")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    return proc.returncode
