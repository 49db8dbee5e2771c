"""Reading what the cells left on disk (the report's only input): each seed's
``results.json`` (results schema 1, :func:`train.read_results`, which refuses
any other), ``failed.json`` and ``predictions.npz``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from train import correct, read_predictions, read_results

from .aggregate import Summary, format_summary, summarize
from .cells import Cell

DATASET_ERROR = "dataset-error.json"


def _read(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class CellRecords:
    """One cell's files over the seeds asked for."""

    cell: Cell
    requested: Tuple[int, ...]
    results: Dict[int, dict] = field(default_factory=dict)
    failed: Dict[int, str] = field(default_factory=dict)
    folders: Dict[int, Path] = field(default_factory=dict)

    def scores(self, key: str, source: str = "results") -> Dict[int, float]:
        """``{seed: value}``. ``source``: "results" (test accuracies, timings),
        "val" (validation accuracies) or "geometry" (results.json's geometry)."""
        if source == "results":
            return {s: r[key] for s, r in self.results.items() if r.get(key) is not None}
        if source == "val":
            return {s: r["val"][key] for s, r in self.results.items() if (r.get("val") or {}).get(key) is not None}
        if source == "geometry":
            return {s: r["geometry"][key] for s, r in self.results.items()
                    if (r.get("geometry") or {}).get(key) is not None}
        raise ValueError(f"unknown source {source!r}")

    def summary(self, key: str, source: str = "results") -> Optional[Summary]:
        return summarize(self.scores(key, source))

    def text(self, key: str, source: str = "results", digits: int = 2) -> str:
        """The table entry: mean ± std (n), "not run", or "failed"."""
        s = self.summary(key, source)
        if s is None:
            return f"failed (seed {', '.join(map(str, sorted(self.failed)))})" if self.failed else "not run"
        text = format_summary(s, digits, of=len(self.requested))
        if self.failed:
            text += f"; seed {', '.join(map(str, sorted(self.failed)))} failed"
        return text

    def correctness(self, split: str = "test", probe: str = "linear") -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
        """``{seed: (image indices, whether each was classified right)}`` from
        the seeds' ``predictions.npz`` (seeds without one are left out)."""
        out = {}
        for seed, folder in self.folders.items():
            arrays = read_predictions(folder)
            if arrays is not None and f"{split}_{probe}" in arrays:
                out[seed] = (arrays[f"{split}_indices"], correct(arrays, split, probe))
        return out

    @property
    def any_result(self) -> Optional[dict]:
        return self.results[min(self.results)] if self.results else None


def load_cell(out, cell: Cell, seeds: Sequence[int]) -> CellRecords:
    rec = CellRecords(cell, tuple(seeds))
    for seed in seeds:
        folder = cell.path(out, seed)
        result = read_results(folder)
        if result is not None:
            rec.results[seed] = result
            rec.folders[seed] = folder
        else:
            failed = _read(folder / "failed.json")
            if failed is not None:
                rec.failed[seed] = failed["error"]
    return rec


def dataset_error(out, dataset: str) -> Optional[str]:
    """Why the last attempt could not load ``dataset``, if it could not."""
    record = _read(Path(out) / "cells" / dataset / DATASET_ERROR)
    return record["error"] if record else None
