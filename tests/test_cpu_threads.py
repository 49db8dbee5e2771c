"""--cpu-threads auto: the thread count is the number of cores other
processes leave idle, read from /proc/stat; a quiet machine keeps torch's
default, a fixed choice (--cpu-threads N, OMP_NUM_THREADS) is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from train import cpu_threads
from train.config import parse_config

TICK = 100  # jiffies per second (SC_CLK_TCK on Linux)


def stat_file(path, busy_by_cpu, idle=1000):
    """A /proc/stat whose cpuN lines have ``busy`` jiffies of user time (and
    some iowait and steal, of which steal counts as busy: another machine's)."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    for cpu, busy in busy_by_cpu.items():
        lines.append(f"cpu{cpu} {busy - 7} 0 5 {idle} 3 0 0 2 0 0")
    path.write_text("\n".join(lines + ["intr 1 2 3", "ctxt 99"]) + "\n")


@pytest.mark.parametrize("cores,others,want", [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 0.67, 1), (2, 1.0, 1), (2, 2.0, 1), (2, 7.5, 1),
    (16, 3.2, 13), (16, 0.0, 16),
])
def test_the_rule_is_the_rounded_number_of_cores_left_at_least_one(cores, others, want):
    assert cpu_threads.fair_threads(cores, others) == want


def test_busy_seconds_counts_every_field_but_idle_and_iowait_of_our_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_threads.os, "sysconf", lambda name: TICK)
    stat_file(tmp_path / "stat", {0: 300, 1: 500, 2: 10_000})
    assert cpu_threads.busy_seconds([0, 1], tmp_path / "stat") == pytest.approx((300 + 500) / TICK)
    assert cpu_threads.busy_seconds([0, 1], tmp_path / "missing") is None


class Machine:
    """A clock, this process's CPU time and /proc/stat under the test's control."""

    def __init__(self, tmp_path, cores):
        self.path, self.cores = tmp_path / "stat", cores
        self.time, self.own, self.busy = 100.0, 5.0, {c: 1000 for c in cores}
        self.set_to = []
        stat_file(self.path, self.busy)

    def advance(self, seconds, own_cores, other_cores):
        """``seconds`` pass with this process using ``own_cores`` cores and others ``other_cores``."""
        self.time += seconds
        self.own += own_cores * seconds
        share = (own_cores + other_cores) * seconds * TICK / len(self.cores)
        self.busy = {c: b + round(share) for c, b in self.busy.items()}
        stat_file(self.path, self.busy)

    def governor(self, most):
        return cpu_threads.FairThreads(most, interval=2.0, stat=self.path, own_cpu=lambda: self.own,
                                       clock=lambda: self.time, set_threads=self.set_to.append)


def test_threads_follow_the_load_and_come_back_when_it_leaves(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_threads.os, "sysconf", lambda name: TICK)
    monkeypatch.setattr(cpu_threads, "usable_cores", lambda: [0, 1])
    m = Machine(tmp_path, [0, 1])
    g = m.governor(most=2)
    m.advance(1.0, own_cores=2.0, other_cores=0.0)
    g.tick()  # before the interval: nothing is measured
    m.advance(1.0, own_cores=2.0, other_cores=0.0)
    g.tick()
    assert m.set_to == [] and g.threads == 2  # a quiet machine keeps torch's default
    m.advance(2.0, own_cores=1.33, other_cores=0.67)  # a busy process arrives: it gets a third of the time
    g.tick()
    assert m.set_to == [1]
    m.advance(2.0, own_cores=1.0, other_cores=1.0)  # one thread each: stable
    g.tick()
    assert m.set_to == [1]
    m.advance(2.0, own_cores=1.0, other_cores=0.0)  # it left
    g.tick()
    assert m.set_to == [1, 2] and g.describe() == "1-2 threads following the load"


def test_never_more_than_torch_would_use(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_threads.os, "sysconf", lambda name: TICK)
    monkeypatch.setattr(cpu_threads, "usable_cores", lambda: list(range(8)))
    m = Machine(tmp_path, list(range(8)))
    g = m.governor(most=4)  # e.g. 8 logical CPUs, 4 physical cores
    m.advance(2.0, own_cores=4.0, other_cores=1.0)
    g.tick()
    assert m.set_to == [] and g.threads == 4


def test_a_fixed_choice_is_kept(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert cpu_threads.configure("1", "cpu") == "1 CPU threads (--cpu-threads 1)"
        assert torch.get_num_threads() == 1 and cpu_threads.label() is None
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert "OMP_NUM_THREADS=1" in cpu_threads.configure("auto", "cpu") and cpu_threads.label() is None
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert "fewer while other processes keep cores busy" in cpu_threads.configure("auto", "cpu")
        assert cpu_threads.label() is not None
    finally:
        cpu_threads.reset()
        torch.set_num_threads(before)
    assert cpu_threads.label() is None


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", ""])
def test_a_bad_thread_count_is_an_argument_error(text, capsys):
    with pytest.raises(SystemExit):
        parse_config(["--cpu-threads", text])
    assert f"argument --cpu-threads: {text!r} is not auto or a positive integer" in capsys.readouterr().err
