"""One invocation of the campaign: check, schedule the runnable cells, record, report."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Tuple

from train import Config, append_text, atomic_write_json, git_state, hold_run_folder, resolved_device

from ..cells import RANDOM_INIT, cell_config, cell_identity
from ..collect import DATASET_ERROR
from ..runner import CELL_JSON, CellMismatch, read_json
from .cells import Job, all_jobs
from .plan import Plan
from .registry import require_registered
from .rules import decisions_of
from .store import complete_cut_record, state

SESSIONS = "sessions.jsonl"
LOG = "campaign.log"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CampaignRunner:
    def __init__(self, plan: Plan, out: Path, args):
        from .cli import run_fields

        self.plan, self.out, self.args = plan, Path(out), args
        self.run_settings = run_fields(args)
        self.device = resolved_device(Config(device=args.device))
        self.unavailable: Dict[str, str] = {}

    def say(self, message: str) -> None:
        line = f"{now()} {message}"
        print(line, flush=True)
        append_text(self.out / LOG, line + "\n")

    def config(self, job: Job) -> Config:
        base = self.plan.base_config(job.block, {**self.run_settings, "device": self.device})
        return cell_config(base, job.cell, job.seed, self.out)

    def check(self, jobs: List[Job], repair: bool = True) -> None:
        """Refuse foreign results and started cells whose settings are not the plan's; with ``repair``,
        record as finished the cells a stop cut between their results and their record."""
        for job in jobs:
            folder = job.folder(self.out)
            if repair and complete_cut_record(folder):
                self.say(f"{job.label}: its results were written before a stop cut its record; recorded as finished")
            state(folder)  # ForeignCell
            claimed = read_json(folder / CELL_JSON)
            if claimed is not None:
                identity = cell_identity(self.config(job), job.cell)
                if claimed != identity:
                    diff = ", ".join(f"{k}: {claimed.get(k)!r} there, {v!r} in the plan" for k, v in identity.items()
                                     if claimed.get(k) != v)
                    raise CellMismatch(f"{folder} was started with settings the plan does not ask for ({diff}); "
                                       "the plan changes only through its [[history]] and a new registration")

    def tasks(self, fingerprint: str):
        from .scheduler import Task

        record = {"plan_sha256": self.plan.sha256, "code_fingerprint": fingerprint, "git": git_state(),
                  "device": self.device, "jobs": self.args.jobs}

        def next_tasks(taken: set) -> List[Tuple[Task, int]]:
            jobs, _ = all_jobs(self.plan, decisions_of(self.out, self.plan))
            self.check(jobs)
            out = []
            for job in jobs:
                key = str(job.folder(self.out))
                if key in taken or job.cell.dataset in self.unavailable:
                    continue
                if state(job.folder(self.out)) in ("finished", "failed"):
                    continue
                cfg = self.config(job)
                task = Task(key, job.label, (job.cell.dataset, cfg.image_size), job.cell, job.seed, cfg,
                            {**record, "stage": job.stage.id, "started": now()})
                out.append((task, 0 if job.cell.method == RANDOM_INIT else cfg.epochs))
            return out

        return next_tasks

    def load_data(self, key: Tuple[str, int]):
        from train import DatasetError, load_dataset

        dataset, image_size = key
        cfg = Config(**{k: v for k, v in self.run_settings.items() if k in ("data_dir", "cache_dir", "download",
                                                                     "num_workers")})
        start = time.perf_counter()
        try:
            data = load_dataset(dataset, cfg.data_dir, cfg.cache_dir, image_size, download=cfg.download,
                                num_workers=cfg.num_workers)
        except DatasetError as exc:
            atomic_write_json(self.out / "cells" / dataset / DATASET_ERROR, {"error": str(exc), "time": now()})
            self.unavailable[dataset] = str(exc)
            self.say(f"not run: {dataset}: {exc}")
            return None
        (self.out / "cells" / dataset / DATASET_ERROR).unlink(missing_ok=True)
        for tensor in (data.pretrain, data.train_images, data.train_labels, data.test_images, data.test_labels):
            tensor.share_memory_()
        self.say(f"loaded {dataset} at {image_size} px once for every worker in {time.perf_counter() - start:.1f} s"
                 + "".join(f"; note: {n}" for n in data.notes))
        return data

    def dry_run(self) -> int:
        jobs, waiting = all_jobs(self.plan, decisions_of(self.out, self.plan))
        self.check(jobs, repair=False)
        pending = [j for j in jobs if state(j.folder(self.out)) not in ("finished", "failed")]
        print(f"{len(pending)} cell runs can run now, in this order:")
        for job in pending:
            print(f"  {job.label} ({state(job.folder(self.out))})")
        for stage, pc in waiting:
            print(f"  waits for stage {', '.join(pc.waiting_for)}: stage {stage.id} {pc.block.dataset} "
                  f"{pc.written.method}")
        return 0

    def run(self) -> int:
        from .report import write_report
        from .scheduler import Scheduler, default_threads

        self.out.mkdir(parents=True, exist_ok=True)
        with hold_run_folder(self.out, log=self.say):
            fingerprint = require_registered(self.plan, self.out)
            if self.args.dry_run:
                return self.dry_run()
            from ..hardware import machine_info

            threads = self.args.threads or default_threads(self.args.jobs)
            append_text(self.out / SESSIONS, json.dumps(
                {"time": now(), "event": "start", "minutes": self.args.minutes, "jobs": self.args.jobs,
                 "threads": threads, "code_fingerprint": fingerprint, "plan_sha256": self.plan.sha256,
                 "machine": machine_info(self.device)}, default=str) + "\n")
            self.say(f"campaign {self.plan.path}: {self.args.jobs} worker(s) x {threads} thread(s) on "
                     f"{self.device}, {self.args.minutes:g} minutes, code {fingerprint}")
            scheduler = Scheduler(jobs=self.args.jobs, threads=threads, minutes=self.args.minutes, out=self.out,
                                  logs=self.out / "logs", load_data=self.load_data, say=self.say)
            counts: Dict[str, int] = {}
            try:
                counts = scheduler.run(self.tasks(fingerprint))
            finally:
                append_text(self.out / SESSIONS, json.dumps(
                    {"time": now(), "event": "end", "counts": counts,
                     "deadline_hit": scheduler.deadline_hit}) + "\n")
            self.say("cells this session: " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"))
            self.check(all_jobs(self.plan, decisions_of(self.out, self.plan))[0])
            self.say(f"report: {write_report(self.out, self.plan)}")
            return 1 if counts.get("failed") or counts.get("crashed") else 0
