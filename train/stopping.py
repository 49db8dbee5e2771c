"""Clean stops: SIGTERM (what a cluster scheduler sends) and SIGINT (Ctrl-C).

While :func:`handle_stop_signals` is in force (the whole command), the first
SIGTERM or SIGINT

* inside a **deferring** section (:func:`deferred`: pretraining, including
  the checkpoint written after each epoch) is only recorded: the trainer
  asks :func:`requested` before every step, saves a checkpoint at that step
  boundary and stops (:class:`train.engine.TrainingStopped`); leaving the
  section with a request pending raises :class:`RunStopped`;
* anywhere else (loading data, evaluating) raises :class:`RunStopped` at
  once, as Ctrl-C raises ``KeyboardInterrupt``: the ``with`` blocks unwind,
  so the run lock is released and a half-written file is removed.

A further signal more than :data:`SAME_REQUEST_S` seconds after the first
raises at once even in a deferring section (the user insists). Signals
within that window are the same request: torchrun passes the signal it gets
on to every process, which may have had it directly as well (Ctrl-C in a
terminal, a scheduler signalling the whole process group).

The command ends with a one-line message and exit status 128 + the signal
number (143 for SIGTERM, 130 for SIGINT), as a shell reports a process
killed by that signal. No torch here.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

SIGNALS = (signal.SIGTERM, signal.SIGINT)
SAME_REQUEST_S = 2.0


class RunStopped(BaseException):
    """A stop signal ended the command. ``detail`` says where it stopped and
    what was saved (filled in by whoever knows); a BaseException, like
    ``KeyboardInterrupt``, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum, detail)
        self.signum, self.detail = signum, detail

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f"stopped by {self.name}" + (f": {self.detail}" if self.detail else "")


class _State:
    def __init__(self):
        self.signum: Optional[int] = None  # the pending request
        self.first_at = 0.0
        self.deferring = 0  # depth of deferred() sections


_state = _State()


def requested() -> Optional[int]:
    """The signal number of a pending stop request, or None."""
    return _state.signum


def _handler(signum, frame) -> None:
    now = time.monotonic()
    if _state.signum is None:
        _state.signum, _state.first_at = signum, now
        if _state.deferring:
            return
    elif _state.deferring and now - _state.first_at < SAME_REQUEST_S:
        return
    raise RunStopped(_state.signum)


@contextmanager
def handle_stop_signals() -> Iterator[None]:
    """Handle SIGTERM and SIGINT as described above for the ``with`` block
    (the handlers before it are restored after it). Outside the main thread
    (where Python cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _state.__init__()
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state.__init__()


@contextmanager
def deferred(raise_on_leave: bool = True) -> Iterator[None]:
    """A section in which a stop signal is only recorded (see the module
    docstring). Leaving it normally with a request pending raises
    :class:`RunStopped` unless ``raise_on_leave`` is False (a torchrun
    worker: it goes back to wait for the driver, which stops the job)."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    if raise_on_leave and _state.signum is not None and not _state.deferring:
        raise RunStopped(_state.signum)


def stopped_line(exc: RunStopped, then: str) -> str:
    """The one line a stopped command ends with: where it stopped, then what
    to do (``then``); on a fresh line when Ctrl-C echoed ``^C`` on a terminal."""
    fresh = "\n" if exc.name == "SIGINT" and sys.stderr.isatty() else ""
    return f"{fresh}{exc}; {then}"
