"""Several cells at once on one device: a pool of worker processes fed from the plan's job list.

A single ResNet-18 CIFAR step is launch-bound on a large GPU (about the same
time at batch 32 and 512), so K training processes sharing the device get
more images through per second than one. The scheduler:

* loads each dataset once in this process, moves its uint8 tensors to shared
  memory, and hands them to the workers (``torch.multiprocessing`` passes
  shared tensors by handle, not by copy): no worker decodes anything;
* starts ``jobs`` worker processes (``spawn``: no CUDA or OpenMP state is
  inherited), each with ``threads`` intra-op CPU threads; a worker keeps its
  datasets and its CUDA context across cells, so a cell pays neither again;
* gives the next runnable job in the plan's order to each idle worker, but
  only when the job's estimated time fits in what is left of ``--minutes``
  (estimates from the seconds per epoch and per evaluation this session
  measured, per dataset); a job whose cost is not known yet is started while
  at least half of the budget is left;
* at the deadline stops the workers (a killed cell resumes from its last
  epoch's checkpoint next time, where the folder travels with it) and
  returns, so the caller still writes the report;
* re-reads the decisions after every finished cell, so a stage that waits for
  another's decision starts as soon as that is decided.

Each worker's output (progress lines, the trainer's log) goes to
``OUT/logs/worker-<i>.log``; this process prints one line per started and
finished cell. Results are those of a sequential run: a cell's numbers
depend only on its config and seed (on the CPU, given the same number of
threads; see the tests).
"""

from __future__ import annotations

import os
import queue
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

RESULT_POLL_SECONDS = 1.0


@dataclass
class Task:
    """What a worker needs to run one cell (picklable)."""

    key: str  # the job's folder, unique
    label: str
    dataset_key: Tuple[str, int]  # (dataset, image size)
    cell: object  # experiments.paper.cells.Cell
    seed: int
    cfg: object  # train.config.Config, resolved
    record: Dict  # written to the cell's campaign.json


@dataclass
class Finished:
    key: str
    status: str  # ran, resumed, skipped, failed, crashed
    seconds: float
    pretrain_seconds_per_epoch: Optional[float] = None
    eval_seconds: Optional[float] = None
    error: str = ""


def _worker_main(index: int, tasks, results, log_path: str, threads: int, out: str) -> None:
    """A worker process: run tasks until told to stop (None)."""
    log = open(log_path, "a", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr = log
    import torch

    from train import work_inside

    work_inside(out, os.getppid())  # the campaign that started this worker holds OUT's lock

    torch.set_num_threads(threads)
    from ..runner import run_cell
    from .store import write_campaign_record

    datasets: Dict[Tuple[str, int], object] = {}
    while True:
        message = tasks.get()
        if message is None:
            return
        kind, payload = message
        if kind == "data":
            key, data = payload
            datasets[key] = data
            continue
        task: Task = payload
        start = time.perf_counter()
        try:
            print(f"== {task.label}", flush=True)
            write_campaign_record(task.cfg.out, task.record)
            status = run_cell(task.cell, task.seed, task.cfg, datasets[task.dataset_key],
                              lambda m: print(m, flush=True))
            result = Finished(task.key, status, time.perf_counter() - start)
            _timings(result, task.cfg.out)
            if status != "failed":
                write_campaign_record(task.cfg.out, {**task.record, "finished": _now()})
        except Exception as exc:  # noqa: BLE001  (one cell's crash must not end the campaign)
            traceback.print_exc()
            result = Finished(task.key, "crashed", time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")
        results.put(result)


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _timings(result: Finished, folder) -> None:
    import json

    path = Path(folder) / "results.json"
    if not path.is_file():
        return
    r = json.loads(path.read_text())
    if r.get("epochs"):
        result.pretrain_seconds_per_epoch = r.get("pretrain_seconds", 0.0) / r["epochs"]
    result.eval_seconds = r.get("eval_seconds")


@dataclass
class Estimates:
    """Seconds per pretraining epoch and per evaluation, by dataset, as measured this session."""

    per_epoch: Dict[str, float] = field(default_factory=dict)
    evaluation: Dict[str, float] = field(default_factory=dict)

    def learn(self, dataset: str, done: Finished) -> None:
        if done.pretrain_seconds_per_epoch:
            self.per_epoch[dataset] = max(self.per_epoch.get(dataset, 0.0), done.pretrain_seconds_per_epoch)
        if done.eval_seconds:
            self.evaluation[dataset] = max(self.evaluation.get(dataset, 0.0), done.eval_seconds)

    def seconds(self, dataset: str, epochs: int) -> Optional[float]:
        """Estimated wall time of a cell, or None when this dataset has no measurement yet."""
        if epochs == 0:
            return self.evaluation.get(dataset)
        if dataset not in self.per_epoch:
            return None
        return self.per_epoch[dataset] * epochs + self.evaluation.get(dataset, 0.0)


class Scheduler:
    """Runs :class:`Task` s from ``next_tasks`` on ``jobs`` worker processes until
    none is left or ``minutes`` are up."""

    def __init__(self, *, jobs: int, threads: int, minutes: float, out: Path, logs: Path,
                 load_data: Callable[[Tuple[str, int]], object], say: Callable[[str], None]):
        import torch.multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.jobs, self.threads, self.budget = jobs, threads, minutes * 60.0
        self.out, self.logs, self.load_data, self.say = Path(out), Path(logs), load_data, say
        self.start = time.monotonic()
        self.estimates = Estimates()
        self.counts: Dict[str, int] = {}
        self.deadline_hit = False

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def fits(self, task: Task, epochs: int) -> bool:
        estimate = self.estimates.seconds(task.dataset_key[0], epochs)
        if estimate is None:
            return self.left() >= self.budget / 2
        return estimate <= self.left()

    def run(self, next_tasks: Callable[[set], List[Tuple[Task, int]]]) -> Dict[str, int]:
        """``next_tasks(taken)`` returns the runnable ``(task, epochs)`` in
        priority order, leaving out the keys in ``taken`` (running or done);
        it is called again after every finished cell (decisions may unlock
        new ones)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        results = self.ctx.Queue()
        workers: Dict[int, object] = {}  # started when first needed: a run with nothing to do starts none
        inboxes: Dict[int, object] = {}
        busy: Dict[int, str] = {}
        sent: Dict[int, set] = {}
        shared: Dict[Tuple[str, int], object] = {}
        taken: set = set()
        started: Dict[str, Tuple[Task, float]] = {}
        try:
            while True:
                idle = [i for i in range(self.jobs) if i not in busy]
                if idle and self.left() > 0:
                    for task, epochs in next_tasks(taken):
                        if not idle:
                            break
                        if not self.fits(task, epochs):
                            continue
                        i = idle.pop(0)
                        if i not in workers:
                            workers[i] = self._start(i, inboxes, results, sent)
                        if task.dataset_key not in sent[i]:
                            if task.dataset_key not in shared:
                                shared[task.dataset_key] = self.load_data(task.dataset_key)
                            if shared[task.dataset_key] is None:  # the dataset could not be loaded
                                idle.insert(0, i)
                                taken.add(task.key)
                                self.counts["dataset unavailable"] = self.counts.get("dataset unavailable", 0) + 1
                                continue
                            inboxes[i].put(("data", (task.dataset_key, shared[task.dataset_key])))
                            sent[i].add(task.dataset_key)
                        inboxes[i].put(("task", task))
                        busy[i] = task.key
                        taken.add(task.key)
                        started[task.key] = (task, time.monotonic())
                        self.say(f"started {task.label} on worker {i} ({self.left() / 60:.1f} min left)")
                if not busy:
                    break
                if self.left() <= 0:
                    self.deadline_hit = True
                    self.say(f"time is up: stopping {len(busy)} running cell(s); each resumes from its last "
                             "checkpoint next time")
                    break
                try:
                    done: Finished = results.get(timeout=RESULT_POLL_SECONDS)
                except queue.Empty:
                    for i, p in list(workers.items()):
                        if i in busy and not p.is_alive():
                            key = busy.pop(i)
                            self.say(f"crashed {started[key][0].label}: worker {i} died (exit code {p.exitcode}); "
                                     f"see {self.logs / f'worker-{i}.log'}")
                            self.counts["crashed"] = self.counts.get("crashed", 0) + 1
                            workers[i] = self._start(i, inboxes, results, sent)
                    continue
                worker = next(i for i, k in busy.items() if k == done.key)
                busy.pop(worker)
                task, _ = started[done.key]
                self.estimates.learn(task.dataset_key[0], done)
                self.counts[done.status] = self.counts.get(done.status, 0) + 1
                extra = f": {done.error}" if done.error else ""
                self.say(f"{done.status} {task.label} in {done.seconds:.0f} s{extra}")
        finally:
            for inbox in inboxes.values():
                inbox.put(None)
            for p in workers.values():
                p.join(timeout=5 if not self.deadline_hit else 0.5)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=10)
        return self.counts

    def _start(self, i, inboxes, results, sent):
        """Start (or restart) worker ``i`` with a fresh inbox."""
        inboxes[i] = self.ctx.Queue()
        sent[i] = set()
        p = self.ctx.Process(target=_worker_main, args=(i, inboxes[i], results, str(self.logs / f"worker-{i}.log"),
                                                        self.threads, str(self.out)), daemon=True)
        p.start()
        return p


def default_threads(jobs: int) -> int:
    """CPU threads per worker: the cores shared out evenly, at least one."""
    return max(1, (os.cpu_count() or 1) // jobs)
