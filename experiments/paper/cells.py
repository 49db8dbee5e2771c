"""Cells: one training configuration on one dataset, run once per seed.

A cell's folder name says what it is: ``simclr``, ``byol``, ``vicreg``,
``barlow``, ``sinsim-divergence-lam0.1-eps0.05-features`` (SinSim's term,
weight, epsilon and where the term acts), ``random-init`` (the untrained
encoder, probed only). The grid and the sweeps ask for cells by these names,
so a configuration they share is trained once: the sweeps' lambda = 0 is the
SimCLR cell, their (``--sinkhorn-term``, ``--sinkhorn-weight``,
``--sinkhorn-eps``, ``--sinkhorn-on``) point is the grid's SinSim cell.

Every cell's config is the protocol's shared :class:`~train.config.Config`
with the cell's dataset, method, seed and Sinkhorn settings, resolved as a
single run would be (dataset defaults, then the method's published recipe;
each method takes only its own hyper-parameters, so a baseline cell does not
depend on SinSim's).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

from train import EVALUATION_FIELDS, Config, for_method, resolve

from .spec import FIGURE_METHODS, GRID_SETTINGS, PaperConfig

RANDOM_INIT = "random-init"
#: The settings a SinSim cell is named by.
SINKHORN_FIELDS = GRID_SETTINGS
# Evaluation settings: not in the training signature, but they change the numbers.
EVAL_FIELDS = EVALUATION_FIELDS


@dataclass(frozen=True)
class Cell:
    dataset: str
    name: str  # folder name
    method: str  # a METHODS key, or RANDOM_INIT
    overrides: Tuple[Tuple[str, Any], ...] = ()  # SinSim's (term, weight, eps, on)

    def path(self, out, seed: int) -> Path:
        return Path(out) / "cells" / self.dataset / self.name / f"seed{seed}"

    @property
    def settings(self) -> Dict[str, Any]:
        return dict(self.overrides)


def _num(x: float) -> str:
    return f"{x:g}"


def method_cell(dataset: str, method: str) -> Cell:
    return Cell(dataset, method, method)


def sinsim_cell(dataset: str, weight: float, eps: float, on: str, term: str) -> Cell:
    """SinSim with ``term`` at (lambda, eps, placement); lambda = 0 is the
    SimCLR cell (same init, augmentations and updates: the Sinkhorn term is
    multiplied by 0)."""
    if weight == 0:
        return method_cell(dataset, "simclr")
    overrides = (("sinkhorn_term", term), ("sinkhorn_weight", float(weight)), ("sinkhorn_eps", float(eps)),
                 ("sinkhorn_on", on))
    return Cell(dataset, f"sinsim-{term}-lam{_num(weight)}-eps{_num(eps)}-{on}", "sinsim", overrides)


def grid_sinsim_cell(pcfg: PaperConfig, dataset: str) -> Cell:
    s = pcfg.sinsim
    return sinsim_cell(dataset, s.sinkhorn_weight, s.sinkhorn_eps, s.sinkhorn_on, s.sinkhorn_term)


def variants(pcfg: PaperConfig) -> List[Tuple[str, str]]:
    """The sweeps' (term, placement) lines, in the order asked for."""
    return [(term, on) for term in pcfg.sweep_terms for on in pcfg.sweep_on]


def figure_cell_names(pcfg: PaperConfig, dataset: str) -> List[str]:
    """The cells whose features figure 1 draws: SimCLR, the grid's SinSim, VICReg."""
    return [grid_sinsim_cell(pcfg, dataset).name if m == "sinsim" else m for m in FIGURE_METHODS]


def grid_cells(pcfg: PaperConfig, dataset: str) -> List[Cell]:
    """Tables I and II: every method, then the untrained floor."""
    cells = [grid_sinsim_cell(pcfg, dataset) if m == "sinsim" else method_cell(dataset, m) for m in pcfg.methods]
    return cells + [Cell(dataset, RANDOM_INIT, RANDOM_INIT)]


def lambda_points(pcfg: PaperConfig, dataset: str, on: str, term: str) -> List[Tuple[float, Cell]]:
    return [(lam, sinsim_cell(dataset, lam, pcfg.sinsim.sinkhorn_eps, on, term)) for lam in pcfg.lambdas]


def eps_points(pcfg: PaperConfig, dataset: str, on: str, term: str) -> List[Tuple[float, Cell]]:
    return [(eps, sinsim_cell(dataset, pcfg.sinsim.sinkhorn_weight, eps, on, term)) for eps in pcfg.epsilons]


def sweep_cells(pcfg: PaperConfig, dataset: str) -> List[Cell]:
    """Figures 2 and 3, with SimCLR always in (the reference of both)."""
    cells = [method_cell(dataset, "simclr")]
    for term, on in variants(pcfg):
        if "lambda" in pcfg.sweeps:
            cells += [c for _, c in lambda_points(pcfg, dataset, on, term)]
        if "eps" in pcfg.sweeps:
            cells += [c for _, c in eps_points(pcfg, dataset, on, term)]
    return cells


def plan(pcfg: PaperConfig, dataset: str) -> List[Cell]:
    """The distinct cells of ``dataset``, grid first."""
    cells: List[Cell] = []
    if dataset in pcfg.datasets:
        cells += grid_cells(pcfg, dataset)
    if dataset in pcfg.sweep_datasets:
        cells += sweep_cells(pcfg, dataset)
    return list(dict.fromkeys(cells))


def cell_config(base: Config, cell: Cell, seed: int, out) -> Config:
    """The resolved run config of ``cell`` with ``seed``, writing to its folder."""
    changes: Dict[str, Any] = dict(dataset=cell.dataset, seed=seed, out=str(cell.path(out, seed)),
                                   resume=True, overwrite=False)
    method = "simclr" if cell.method == RANDOM_INIT else cell.method
    params = {**base.params, **cell.settings}
    cfg = resolve(dataclasses.replace(base, method=method, params=params, **changes))
    return for_method(cfg, method, changes["out"])


def cell_identity(cfg: Config, cell: Cell) -> Dict[str, Any]:
    """What a finished cell must have been computed with to be kept."""
    if cell.method == RANDOM_INIT:
        training = {k: getattr(cfg, k) for k in ("dataset", "seed", "image_size", "precision")}
    else:
        training = cfg.training_signature()
    return {"cell": cell.name, **training, **{k: getattr(cfg, k) for k in EVAL_FIELDS}}
