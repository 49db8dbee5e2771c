"""Runs the protocol's cells: trains what is missing, keeps what is finished,
resumes what was cut, then writes the report.

Order: dataset by dataset (each loaded once, and not at all when all its
cells are finished), then seed by seed, then cell by cell; so a budget that
runs out leaves whole tables with fewer seeds rather than one method with
many. Per cell and seed, one of (logged to stdout and ``OUT/run.log``):

* **skipped**: ``results.json`` is there and ``cell.json`` matches the
  settings: nothing is recomputed;
* **resumed**: a checkpoint is there: training continues after its epoch
  (``train.protocol.run_method`` with ``--resume``, which restores weights,
  optimiser, schedule and every random generator), then the probes;
* **ran**: from scratch;
* **failed**: the loss became NaN/inf (the last good checkpoint is kept and
  ``failed.json`` says why); the other cells go on.

Every run measures the geometry of its features itself (``results.json``);
a finished cell of a figure-1 method without ``embedding.npz`` gets its test
features saved for the figure (:mod:`.analysis`). A dataset that cannot be loaded is recorded in
``OUT/cells/<dataset>/dataset-error.json`` and skipped; the report says so.
The exit status is 1 when some cell failed or could not be run, else 0.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, Optional

from tqdm.auto import tqdm

from train import (Config, DatasetError, ImageData, RunError, RunStopped, UnreadableResults, append_text,
                   atomic_write_json, chosen_cpu_threads, has_checkpoint, load_dataset, random_init_reference,
                   read_results, resolved_device, run_method, write_method_results)

from .analysis import EMBEDDING_NPZ
from .analysis import save_features as save_features_of
from .collect import DATASET_ERROR
from .cells import RANDOM_INIT, Cell, cell_config, cell_identity, figure_cell_names, plan
from .hardware import machine_info
from .report import write_report
from .spec import PaperConfig, record_protocol

CELL_JSON = "cell.json"
FAILED_JSON = "failed.json"


class CellMismatch(RuntimeError):
    """A cell folder was started with other settings than the ones asked for now."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_json(path: Path) -> Optional[Dict]:
    return json.loads(path.read_text()) if path.is_file() else None


def is_finished(cfg: Config, cell: Cell) -> bool:
    """``results.json`` is there and was made with these settings."""
    path = Path(cfg.out)
    claimed, identity = read_json(path / CELL_JSON), cell_identity(cfg, cell)
    if claimed is not None and claimed != identity:
        diff = ", ".join(f"{k}: {claimed.get(k)!r} there, {v!r} now" for k, v in identity.items() if claimed.get(k) != v)
        raise CellMismatch(f"{path} was started with other settings ({diff}); use the same flags or another --out")
    if claimed is None:
        return False
    try:
        return read_results(path) is not None
    except UnreadableResults:  # derived from the final checkpoint: the resumed cell rebuilds it
        return False


class PaperRunner:
    def __init__(self, pcfg: PaperConfig):
        self.pcfg = pcfg
        self.out = Path(pcfg.out)
        self.counts: Counter = Counter()

    def log(self, message: str) -> None:
        tqdm.write(message)
        append_text(self.out / "run.log", f"{now()} {message}\n")

    def session(self, record: Dict) -> None:
        append_text(self.out / "sessions.jsonl", json.dumps({"time": now(), **record}) + "\n")

    def run(self) -> int:
        """Every selected cell, then the report; 1 when some cell did not finish."""
        p = self.pcfg
        self.out.mkdir(parents=True, exist_ok=True)
        record_protocol(p)
        self.session({"event": "start", "argv": p.argv, "selection": p.selection(),
                      "machine": machine_info(resolved_device(p.base))})
        self.log(f"paper protocol: datasets {' '.join(p.datasets) or '-'}, methods {' '.join(p.methods)}, seeds "
                 f"{' '.join(map(str, p.seeds))}, sweeps {' '.join(p.sweeps) or '-'} on "
                 f"{' '.join(p.sweep_datasets) or '-'} -> {self.out}")
        event = "interrupted"
        try:
            with chosen_cpu_threads(p.base.cpu_threads, resolved_device(p.base), self.log):
                for dataset in p.all_datasets:
                    self.run_dataset(dataset)
            event = "end"
        except RunStopped as exc:
            event = f"stopped by {exc.name}"
            raise
        finally:
            self.session({"event": event, "counts": dict(self.counts)})
        self.log("cells: " + ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items())))
        report = write_report(self.out, log=self.log)
        self.log(f"report: {report}")
        missing = self.counts["failed"] + self.counts["dataset unavailable"]
        if missing:
            self.log(f"{missing} cell runs did not finish (failed, or their dataset could not be loaded): see above")
        return 1 if missing else 0

    def jobs(self, dataset: str):
        cells = plan(self.pcfg, dataset)
        return [(cell, seed, cell_config(self.pcfg.base, cell, seed, self.out)) for seed in self.pcfg.seeds
                for cell in cells]

    def run_dataset(self, dataset: str) -> None:
        jobs = self.jobs(dataset)
        figure_cells = figure_cell_names(self.pcfg, dataset)
        pending = [(cell, seed, cfg) for cell, seed, cfg in jobs
                   if not is_finished(cfg, cell)
                   or (cell.name in figure_cells and not (Path(cfg.out) / EMBEDDING_NPZ).is_file())]
        if not pending:
            for cell, seed, _ in jobs:
                self.log(f"skipped {dataset} {cell.name} seed {seed}: finished earlier")
                self.counts["skipped"] += 1
            return
        base = self.pcfg.base
        error_file = self.out / "cells" / dataset / DATASET_ERROR
        try:
            data = load_dataset(dataset, base.data_dir, base.cache_dir, jobs[0][2].image_size,
                                download=base.download, num_workers=base.num_workers)
        except DatasetError as exc:
            atomic_write_json(error_file, {"error": str(exc), "time": now()})
            self.log(f"not run: {dataset}: {exc}")
            self.counts["dataset unavailable"] += len(pending)
            return
        error_file.unlink(missing_ok=True)
        for note in data.notes:
            self.log(f"note: {note}")
        for cell, seed, cfg in jobs:
            self.run_cell(cell, seed, cfg, data, save_features=cell.name in figure_cells)

    def run_cell(self, cell: Cell, seed: int, cfg: Config, data: ImageData, save_features: bool) -> None:
        status = run_cell(cell, seed, cfg, data, self.log)
        self.counts[status] += 1
        path, label = Path(cfg.out), f"{cell.dataset} {cell.name} seed {seed}"
        if save_features and status != "failed" and not (path / EMBEDDING_NPZ).is_file():
            self.log(f"features of {label} for figure 1: {save_features_of(cfg, cell, data)}")


def run_cell(cell: Cell, seed: int, cfg: Config, data: ImageData, log: Callable[[str], None]) -> str:
    """Train and evaluate one cell into ``cfg.out`` unless it finished
    earlier; returns "skipped", "resumed", "ran" or "failed" (the loss
    diverged: ``failed.json`` says why, the last good checkpoint is kept)."""
    path, label = Path(cfg.out), f"{cell.dataset} {cell.name} seed {seed}"
    if is_finished(cfg, cell):
        log(f"skipped {label}: finished earlier ({path / 'results.json'} kept)")
        return "skipped"
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path / CELL_JSON, cell_identity(cfg, cell))
    (path / FAILED_JSON).unlink(missing_ok=True)
    started = has_checkpoint(path)
    status = "resumed" if started else "ran"
    start = time.perf_counter()
    try:
        if cell.method == RANDOM_INIT:
            result = random_init_reference(cfg, data, out=path)
            write_method_results(path, result)
        else:
            result = run_method(cfg, data)
    except RunError as exc:
        atomic_write_json(path / FAILED_JSON, {"error": str(exc), "time": now()})
        log(f"failed {label}: {exc}")
        return "failed"
    val = result.get("val") or {}
    geo = result.get("geometry") or {}
    log(f"{status} {label} in {time.perf_counter() - start:.1f} s: test linear {result['linear']:.2f}%, "
        f"MLP {result['mlp']:.2f}%, kNN {result['knn']:.2f}%; validation linear "
        f"{val.get('linear', float('nan')):.2f}%; centred uniformity "
        f"{geo.get('uniformity_centred', float('nan')):.3f}, centred effective rank "
        f"{geo.get('effective_rank_centred') or float('nan'):.1f}")
    return status
