"""How many CPU threads torch uses: as many as the cores other processes leave idle.

torch runs each operation's loops on ``torch.get_num_threads()`` threads
(OpenMP: the trainer's convolutions, the probes' solvers, the Sinkhorn
kernel's ``at::parallel_for``) and waits for all of them at the end of each
loop. While another process holds one of the cores, one of those threads
waits for it, and every loop ends only when that thread has had its turn;
with thousands of short loops per step, a process with as many threads as
cores slows down by far more than its share of the cores (15x for a 2.5x
smaller share, measured in bench/NOTES.md: "Shared cores").

``--cpu-threads auto`` (the default on the CPU): every :data:`INTERVAL_S`
seconds, at a step boundary (:func:`between_steps`), the cores the other
processes used since the last look are counted from ``/proc/stat`` (the
cores this process may run on, minus this process's own CPU time) and the
thread count becomes the number of cores left over, rounded, at least 1::

    others  = (busy time of our cores - our CPU time) / wall time
    threads = clamp(round(cores - others), 1, cores)

so a quiet machine keeps torch's default (one thread per core) and a busy
one gets threads that need not wait for each other. The order in which a
loop's partial sums are added depends on its thread count, so under
``auto`` two runs with the same seed (or a run and its resumed copy) agree
to rounding, not bit for bit. ``--cpu-threads N`` fixes N threads:
bit-identical reruns. An ``OMP_NUM_THREADS`` in the environment (torchrun sets
it to 1 for several processes per machine) is a fixed choice too and is
kept. Without ``/proc/stat`` (not Linux), and on a GPU run, torch's default
is kept. torch applies a thread count to the thread that sets it: the
training and evaluation loops run on the main thread, which is where
:func:`between_steps` is called.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

INTERVAL_S = 2.0
_IDLE_FIELDS = (3, 4)  # idle, iowait in a /proc/stat cpu line (after its name)
_STAT = Path("/proc/stat")


def usable_cores() -> List[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def busy_seconds(cores: Sequence[int], stat: Path = _STAT) -> Optional[float]:
    """Seconds the CPUs ``cores`` spent not idle since boot (None without ``/proc/stat``)."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cores}
    tick = os.sysconf("SC_CLK_TCK")
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
            busy += sum(v for i, v in enumerate(values) if i not in _IDLE_FIELDS)
    return busy / tick


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def fair_threads(cores: int, others: float) -> int:
    """Threads for ``cores`` usable cores of which other processes keep
    ``others`` busy (in cores): the rest, rounded, at least 1."""
    return max(1, min(cores, int(cores - others + 0.5)))


class FairThreads:
    """Sets torch's thread count from the other processes' load (see the
    module docstring); :meth:`tick` at every step boundary. ``stat``,
    ``own_cpu``, ``clock`` and ``set_threads`` are the machine's unless a
    test gives others."""

    def __init__(self, most: int, interval: float = INTERVAL_S, stat: Path = _STAT, own_cpu=own_cpu_seconds,
                 clock=time.monotonic, set_threads=None):
        self.cores = usable_cores()
        self.most = self.threads = most  # torch's default: one per physical core
        self.interval, self.stat, self.own_cpu, self.clock = interval, stat, own_cpu, clock
        self.set_threads = set_threads
        self.used = {most}  # every thread count the run has had
        self.last: Optional[Tuple[float, float, float]] = self._sample()

    def _sample(self) -> Optional[Tuple[float, float, float]]:
        busy = busy_seconds(self.cores, self.stat)
        return None if busy is None else (self.clock(), busy, self.own_cpu())

    def tick(self) -> None:
        if self.last is None or self.clock() - self.last[0] < self.interval:
            return
        now = self._sample()
        if now is None:
            self.last = None
            return
        wall, busy, own = (b - a for a, b in zip(self.last, now))
        self.last = now
        others = max(0.0, (busy - own) / wall)
        threads = min(self.most, fair_threads(len(self.cores), others))
        if threads != self.threads:
            self.set_threads(threads)
            self.threads = threads
            self.used.add(threads)

    def describe(self) -> str:
        low, high = min(self.used), max(self.used)
        return f"{low}-{high} threads following the load" if low != high else f"{low} threads following the load"


_governor: Optional[FairThreads] = None


def configure(choice: str, device: str) -> str:
    """Apply ``--cpu-threads`` (``"auto"`` or a number) for a run on
    ``device``; returns what was chosen, for the log. :func:`reset` ends it."""
    global _governor
    import torch

    reset()
    if choice != "auto":
        torch.set_num_threads(int(choice))
        return f"{choice} CPU threads (--cpu-threads {choice})"
    if os.environ.get("OMP_NUM_THREADS"):
        return f"{torch.get_num_threads()} CPU threads (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})"
    if device != "cpu":
        return f"{torch.get_num_threads()} CPU threads"
    governor = FairThreads(torch.get_num_threads(), set_threads=torch.set_num_threads)
    if governor.last is None:
        return f"{torch.get_num_threads()} CPU threads (no /proc/stat to follow the machine's load)"
    _governor = governor
    return (f"CPU threads: up to {governor.most}, fewer while other processes keep cores busy "
            "(--cpu-threads auto; a fixed --cpu-threads N gives bit-identical reruns)")


def reset() -> None:
    """End :func:`configure`'s choice: torch's thread count as before it."""
    global _governor
    if _governor is not None:
        _governor.set_threads(_governor.most)
    _governor = None


@contextmanager
def chosen(choice: str, device: str, log) -> Iterator[None]:
    """:func:`configure` for a ``with`` block (``log`` gets what was chosen)."""
    log(configure(choice, device))
    try:
        yield
    finally:
        reset()


chosen_cpu_threads = chosen  # its name in the trainer's public API (train/__init__.py)


def label() -> Optional[str]:
    """The thread counts a run had under ``auto`` ("1-2 threads following
    the load"), for its results; None when the count was fixed."""
    return None if _governor is None else _governor.describe()


def between_steps() -> None:
    """A unit of work ended on the main thread: the thread count may follow the load."""
    if _governor is not None:
        _governor.tick()
