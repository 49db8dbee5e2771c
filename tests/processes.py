"""Kill or signal a real run at a chosen moment, for the resume and stop tests."""

from __future__ import annotations

import signal
import subprocess
import sys
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



def signalled(tmp_path, signum: int, script, *, after_calls: int = 1,
              target: str = "train.engine:Trainer._train_step") -> list:
    """The command prefix that runs ``script`` (train/run.py) in a process
    that sends itself ``signum`` right after the ``after_calls``-th call of
    ``target`` (``module:attribute`` or ``module:Class.method``; the default
    counts training steps, across runs and cells): a stop at an exact,
    known point, as a scheduler or Ctrl-C would send it."""
    module, _, name = target.partition(":")
    owner, _, attribute = name.rpartition(".")
    wrapper = tmp_path / f"signal_{signum}_after_{after_calls}_{attribute}.py"
    wrapper.write_text(
        "import importlib, os, runpy, sys\n"
        f"owner = importlib.import_module({module!r})\n"
        + (f"owner = getattr(owner, {owner!r})\n" if owner else "")
        + f"real, calls = getattr(owner, {attribute!r}), []\n"
        "def counted(*args, **kwargs):\n"
        "    out = real(*args, **kwargs)\n"
        "    calls.append(1)\n"
        f"    if len(calls) == {after_calls}:\n"
        f"        os.kill(os.getpid(), {int(signum)})\n"
        "    return out\n"
        f"setattr(owner, {attribute!r}, counted)\n"
        f"sys.argv = [{str(script)!r}] + sys.argv[1:]\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n")
    return [sys.executable, str(wrapper)]
