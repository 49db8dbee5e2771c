"""``OUT/report.md`` and its figures, from the files in ``OUT`` alone.

Reading: ``paper.json`` (what was asked for), ``sessions.jsonl`` (machines,
commands), and per cell and seed ``results.json``, ``embedding.json``,
``embedding.npz``, ``failed.json``. Nothing is trained or evaluated here;
running it again redraws the figures (t-SNE / UMAP of the saved features) and
rewrites the markdown. ``python train/run.py --protocol paper --report-only
--out OUT`` is the command.

The markdown's sections live in :mod:`.sections`; this module gathers the
records (:class:`ReportData`) and draws the figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..checkpoint import atomic_write_text
from .cells import RANDOM_INIT, Cell, eps_points, figure_cell_names, grid_sinsim_cell, lambda_points, method_cell
from .collect import CellRecords, dataset_error, load_cell
from .figures import UMAP_MISSING, EmbeddingPanel, embedding_figure, sweep_figure
from .labels import METHOD_NAMES, budget_text, dataset_title
from .spec import FIGURE_METHODS, PAPER_DATASETS, PAPER_METHODS, PaperConfig, read_protocol

REPORT = "report.md"
FIGURES = "figures"


class ReportError(RuntimeError):
    """There is nothing to report on."""


@dataclass
class Figures:
    """What was drawn: paths relative to OUT, and notes for the text."""

    embeddings: Dict[str, str] = field(default_factory=dict)
    embedding_notes: Dict[str, str] = field(default_factory=dict)
    lambdas: Dict[str, str] = field(default_factory=dict)
    epsilons: Dict[str, str] = field(default_factory=dict)
    umap_missing: bool = False


class ReportData:
    """Every cell record the report needs, loaded once."""

    def __init__(self, out: Path, pcfg: PaperConfig):
        self.out, self.pcfg = Path(out), pcfg
        self._cells: Dict[Cell, CellRecords] = {}
        self.sessions = self._sessions()

    def records(self, cell: Cell) -> CellRecords:
        if cell not in self._cells:
            self._cells[cell] = load_cell(self.out, cell, self.pcfg.seeds)
        return self._cells[cell]

    @property
    def table_datasets(self) -> List[str]:
        """The paper's four, always (unrun ones say so), then any other asked for."""
        return list(PAPER_DATASETS) + [d for d in self.pcfg.datasets if d not in PAPER_DATASETS]

    @property
    def table_methods(self) -> List[str]:
        return list(PAPER_METHODS) + [m for m in self.pcfg.methods if m not in PAPER_METHODS]

    def grid(self, dataset: str, method: str) -> CellRecords:
        if method == "sinsim":
            return self.records(grid_sinsim_cell(self.pcfg, dataset))
        if method == RANDOM_INIT:
            return self.records(Cell(dataset, RANDOM_INIT, RANDOM_INIT))
        return self.records(method_cell(dataset, method))

    def lambda_sweep(self, dataset: str, on: str) -> List[Tuple[float, CellRecords]]:
        return sorted((x, self.records(c)) for x, c in lambda_points(self.pcfg, dataset, on))

    def eps_sweep(self, dataset: str, on: str) -> List[Tuple[float, CellRecords]]:
        return sorted((x, self.records(c)) for x, c in eps_points(self.pcfg, dataset, on))

    def title(self, dataset: str) -> str:
        """Dataset name with its data copy, from any finished cell of it."""
        for method in self.table_methods:
            self.grid(dataset, method)
        for cell, rec in list(self._cells.items()):
            if cell.dataset == dataset and rec.any_result is not None:
                return dataset_title(dataset, rec.any_result)
        return dataset_title(dataset)

    def all_results(self) -> List[dict]:
        return [r for rec in self._cells.values() for r in rec.results.values()]

    def dataset_error(self, dataset: str) -> Optional[str]:
        return dataset_error(self.out, dataset)

    def _sessions(self) -> List[dict]:
        path = self.out / "sessions.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _load_npz(folder: Path) -> Optional[dict]:
    path = folder / "embedding.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def draw_embedding_figure(data: ReportData, dataset: str, figures: Figures, log: Callable[[str], None]) -> None:
    """Figure 1 for ``dataset`` at the lowest seed with saved features."""
    names = figure_cell_names(data.pcfg, dataset)
    cells = [data.records(grid_sinsim_cell(data.pcfg, dataset) if m == "sinsim" else method_cell(dataset, m))
             for m in FIGURE_METHODS]
    seeds = [s for s in data.pcfg.seeds if any((c.folders.get(s) and (c.folders[s] / "embedding.npz").is_file())
                                               for c in cells)]
    if not seeds:
        figures.embedding_notes[dataset] = f"not drawn: no finished cell of {', '.join(names)} with saved features"
        return
    seed = min(seeds)
    panels, classes, points, total, budget = [], None, None, None, None
    for method, rec in zip(FIGURE_METHODS, cells):
        z = _load_npz(rec.folders[seed]) if seed in rec.folders else None
        title = METHOD_NAMES[method].replace(" (ours)", "")
        if z is None:
            panels.append(EmbeddingPanel(title))
            continue
        emb = rec.embeddings.get(seed, {})
        note = f"silhouette {emb['silhouette']:.3f}" if "silhouette" in emb else ""
        panels.append(EmbeddingPanel(title, z["features"], z["labels"], note))
        classes, points, total = [str(c) for c in z["classes"]], len(z["labels"]), emb.get("test_images")
        budget = budget_text(rec.results[seed])
    rel = f"{FIGURES}/fig1-embeddings-{dataset}.png"
    sub = f"{points:,} of {total:,} test images (random subsample, seed 0)" if total else f"{points:,} test images"
    title = (f"{data.title(dataset)}: frozen ResNet-18 features of {sub}, coloured by class\n"
             f"training seed {seed}; {budget}")
    rows = embedding_figure(data.out / rel, title, panels, classes)
    figures.embeddings[dataset] = rel
    if "UMAP" not in rows:
        figures.umap_missing = True
    log(f"figure 1 ({dataset}): {data.out / rel} ({' and '.join(rows)})")


def _series(points: List[Tuple[float, CellRecords]]) -> Dict[str, Dict[float, object]]:
    return {metric: {x: rec.summary(metric) for x, rec in points} for metric in ("linear", "mlp", "knn")}


def draw_sweep_figures(data: ReportData, dataset: str, figures: Figures, log: Callable[[str], None]) -> None:
    p = data.pcfg
    title = data.title(dataset)
    simclr = data.records(method_cell(dataset, "simclr"))
    if "lambda" in p.sweeps:
        series = {f"term on {on}": _series(data.lambda_sweep(dataset, on)) for on in p.sweep_on}
        rel = f"{FIGURES}/fig2-lambda-{dataset}.png"
        sweep_figure(data.out / rel, f"{title}: accuracy vs the Sinkhorn weight λ (ε = {p.base.sinkhorn_eps:g}; "
                     "λ = 0 is SimCLR); mean ± 1 std over seeds, dots: single seeds", "λ (Sinkhorn weight)",
                     sorted(p.lambdas), series)
        figures.lambdas[dataset] = rel
        log(f"figure 2 ({dataset}): {data.out / rel}")
    if "eps" in p.sweeps:
        series = {f"term on {on}": _series(data.eps_sweep(dataset, on)) for on in p.sweep_on}
        reference = {m: simclr.summary(m) for m in ("linear", "mlp", "knn")}
        rel = f"{FIGURES}/fig3-eps-{dataset}.png"
        sweep_figure(data.out / rel, f"{title}: accuracy vs the entropic regularisation ε (λ = "
                     f"{p.base.sinkhorn_weight:g}); mean ± 1 std over seeds, dots: single seeds", "ε (Sinkhorn epsilon)",
                     sorted(p.epsilons), series, reference, "SimCLR (λ = 0), ± 1 std")
        figures.epsilons[dataset] = rel
        log(f"figure 3 ({dataset}): {data.out / rel}")


def write_report(out, log: Callable[[str], None] = print) -> Path:
    """Draw the figures and write ``OUT/report.md``; returns its path."""
    from . import sections

    out = Path(out)
    saved = read_protocol(out)
    if saved is None:
        raise ReportError(f"{out / 'paper.json'} not found: {out} holds no paper protocol run "
                          "(run python train/run.py --protocol paper ... --out OUT first)")
    data = ReportData(out, PaperConfig.from_saved(saved, str(out)))
    figures = Figures()
    for dataset in data.pcfg.datasets:
        draw_embedding_figure(data, dataset, figures, log)
    for dataset in data.pcfg.sweep_datasets:
        draw_sweep_figures(data, dataset, figures, log)
    if figures.umap_missing:
        log(UMAP_MISSING)
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = sections.render(data, figures, written)
    path = out / REPORT
    atomic_write_text(path, text)
    return path
