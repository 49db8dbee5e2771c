"""What a user sees while an epoch runs, and while the encoder is evaluated.

On a terminal (stderr is a TTY) a tqdm bar; otherwise (a log file, a pipe,
CI) a plain line every ``every`` seconds with the steps done, images/s and
the time left in the epoch and in the whole pretraining, plus the mean loss
as of the last check (reading the loss needs a device synchronisation, which
happens only every ``--check-every`` steps). Counting steps and reading the
clock need no synchronisation: on a GPU the host may run a step or so ahead
of the device, which the rates absorb.

The evaluation (features, linear and MLP probes, kNN, geometry) shows each
stage the same way (:class:`EvalProgress`): a bar on a terminal, else a line
every ``every`` seconds with the units done and the time left in the stage.
Each finished unit of evaluation work is also where the CPU thread count may
follow the machine's load (:func:`train.cpu_threads.between_steps`).
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from tqdm.auto import tqdm

from . import cpu_threads


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class EpochProgress:
    """Progress of one epoch: call :meth:`step` after every step (cheap) and
    :meth:`checked` when the loss has been read back; :meth:`close` at the end."""

    def __init__(self, *, label: str, epoch: int, epochs: int, steps: int, batch_size: int, steps_before: int,
                 total_steps: int, every: float, bar: Optional[bool] = None,
                 write: Callable[[str], None] = tqdm.write, start_at: int = 0):
        """``start_at``: steps of this epoch done before (a resumed epoch)."""
        self.label, self.epoch, self.epochs, self.steps = label, epoch, epochs, steps
        self.start_at = start_at
        self.batch_size, self.steps_before, self.total_steps = batch_size, steps_before, total_steps
        self.every, self.write = every, write
        self.start = self.last_line = time.perf_counter()
        self.loss: Optional[tuple] = None  # (steps it covers, mean loss)
        terminal = sys.stderr.isatty() if bar is None else bar
        self.bar = (tqdm(total=steps, initial=start_at, desc=f"{label} epoch {epoch}/{epochs}", unit="step",
                         leave=False, dynamic_ncols=True) if terminal else None)

    def step(self, done: int) -> None:
        """``done`` steps of this epoch are finished (enqueued, on a GPU)."""
        if self.bar is not None:
            self.bar.update(1)
            return
        now = time.perf_counter()
        if self.every and done < self.steps and now - self.last_line >= self.every:
            self.write(self.line(done, now))
            self.last_line = now

    def checked(self, done: int, mean_loss: float) -> None:
        self.loss = (done, mean_loss)
        if self.bar is not None:
            rate = (done - self.start_at) * self.batch_size / max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.0f}")

    def line(self, done: int, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        steps_per_second = max(done - self.start_at, 1) / elapsed
        left_epoch = (self.steps - done) / steps_per_second
        left_all = (self.total_steps - self.steps_before - done) / steps_per_second
        loss = f", loss {self.loss[1]:.4f} (mean of its first {self.loss[0]} steps)" if self.loss else ""
        return (f"{self.label} epoch {self.epoch}/{self.epochs}: step {done}/{self.steps} "
                f"({100 * done // self.steps}%), {steps_per_second * self.batch_size:.0f} img/s, "
                f"{duration(left_epoch)} left in this epoch, {duration(left_all)} left of pretraining{loss}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class StageProgress:
    """Progress of one evaluation stage of a known number of units (feature
    batches, probe epochs, solver evaluations, kNN chunks): a tqdm bar on a
    terminal, else a line every ``every`` seconds. ``at_most``: the stage may
    end early (an iterative solver that converges), so the time left is a
    bound."""

    def __init__(self, *, label: str, stage: str, total: int, unit: str, every: float, bar: Optional[bool] = None,
                 write: Callable[[str], None] = tqdm.write, at_most: bool = False):
        self.label, self.stage, self.total, self.unit = label, stage, max(total, 1), unit
        self.every, self.write, self.at_most = every, write, at_most
        self.done = 0
        self.start = self.last_line = time.perf_counter()
        terminal = sys.stderr.isatty() if bar is None else bar
        self.bar = (tqdm(total=self.total, desc=f"{label} evaluation: {stage}", unit=unit, leave=False,
                         dynamic_ncols=True) if terminal else None)

    def update(self, n: int = 1) -> None:
        self.done += n
        cpu_threads.between_steps()
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if self.every and self.done < self.total and now - self.last_line >= self.every:
            self.write(self.line(now))
            self.last_line = now

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        left = (self.total - self.done) * elapsed / max(self.done, 1)
        bound = "at most " if self.at_most else ""
        return (f"{self.label} evaluation: {self.stage}: {self.done}/{self.total} {self.unit} "
                f"({100 * self.done // self.total}%), {duration(elapsed)} so far, {bound}{duration(left)} left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class EvalProgress:
    """Makes the :class:`StageProgress` of each stage of one evaluation
    (``label``: the method or "random init"); :data:`NO_PROGRESS` shows nothing."""

    def __init__(self, label: str, every: float, bar: Optional[bool] = None,
                 write: Callable[[str], None] = tqdm.write):
        self.label, self.every, self.bar, self.write = label, every, bar, write

    @contextmanager
    def stage(self, stage: str, total: int, unit: str, at_most: bool = False) -> Iterator[StageProgress]:
        progress = StageProgress(label=self.label, stage=stage, total=total, unit=unit, every=self.every,
                                 bar=self.bar, write=self.write, at_most=at_most)
        try:
            yield progress
        finally:
            progress.close()


class _Silent:
    def update(self, n: int = 1) -> None:
        cpu_threads.between_steps()


class _NoProgress(EvalProgress):
    def __init__(self):
        super().__init__("", 0.0, bar=False)

    @contextmanager
    def stage(self, stage: str, total: int, unit: str, at_most: bool = False) -> Iterator[StageProgress]:
        yield _Silent()


NO_PROGRESS: EvalProgress = _NoProgress()
