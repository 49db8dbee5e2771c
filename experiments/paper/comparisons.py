"""Every comparison the report makes, declared in one place and tested once.

**The primary comparison** (declared by the protocol, :mod:`.spec`): the
grid's SinSim against SimCLR, linear probe, test top-1, on the primary
dataset; a paired t-test over the common seeds at level 0.05, alone.

**The family**: every other comparison the report prints with a verdict,
each a paired t-test over common seeds on the *test* split, Holm-corrected
together (:func:`.aggregate.holm`):

* on every dataset: the grid's SinSim − SimCLR on the linear (but the
  primary), MLP and kNN probes;
* on every sweep dataset: each swept SinSim cell − SimCLR (linear, kNN);
  at the grid's (λ, ε), divergence − entropic for each placement and
  projection − features for each term (linear, kNN);
* the configuration chosen on validation − SimCLR (linear), when it is not
  already in the family.

A comparison enters the family (and counts in its size ``m``) only when it
can be tested: 3 or more paired seeds with a spread (:mod:`.aggregate`).
The validation split is only ever used to *choose* (the highest mean
validation linear accuracy); a choice is never tested on the data that made
it, so no p-value is computed on validation numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .aggregate import ALPHA, MIN_SEEDS, Comparison, holm, paired_comparison
from .cells import RANDOM_INIT, Cell, grid_sinsim_cell, method_cell, sinsim_cell, variants
from .collect import CellRecords
from .labels import cell_text
from .paired_tests import BootstrapInterval, paired_bootstrap

PROBES = {"linear": "linear probe", "mlp": "MLP probe", "knn": "kNN"}
Key = Tuple[str, str, str, str]  # dataset, cell a, cell b, metric


@dataclass
class Tested:
    """``a - b`` on one metric of the test split of one dataset."""

    dataset: str
    dataset_title: str
    a: Cell
    b: Cell
    metric: str
    comparison: Comparison
    primary: bool = False
    adjusted: Optional[float] = None  # Holm-adjusted p (family members)
    family_size: int = 0

    @property
    def key(self) -> Key:
        return (self.dataset, self.a.name, self.b.name, self.metric)

    @property
    def testable(self) -> bool:
        c = self.comparison
        return c.p is not None and c.n >= MIN_SEEDS

    @property
    def p_used(self) -> Optional[float]:
        return self.comparison.p if self.primary else self.adjusted

    @property
    def verdict(self) -> str:
        if not self.testable:
            return self.comparison.verdict
        if self.p_used <= ALPHA:
            return "higher" if self.comparison.mean > 0 else "lower"
        return "not resolved"

    @property
    def decided(self) -> bool:
        return self.verdict in ("higher", "lower")

    def what(self) -> str:
        return (f"{cell_text(self.a)} − {cell_text(self.b)}, {PROBES[self.metric]} top-1 on the test split of "
                f"{self.dataset_title}")

    def numbers(self) -> str:
        """``+0.41 [-1.20, +2.02], p=0.38, Holm p=1 (m=12), n=3``."""
        c = self.comparison
        if not self.testable:
            return c.text()
        if self.primary:
            return f"{c.text()} (primary: not corrected)"
        return (f"{c.mean:+.2f} [{c.low:+.2f}, {c.high:+.2f}], p={c.p:.2g}, Holm p={self.adjusted:.2g} "
                f"(m={self.family_size}), n={c.n}")

    def sentence(self) -> str:
        """Exactly what was tested, its numbers and its verdict."""
        c = self.comparison
        seeds = ", ".join(map(str, c.seeds))
        head = f"{self.what()}, paired over seeds {seeds}"
        if not self.testable:
            return f"{head}: {c.text()} points: **{self.verdict}**."
        level = (f"two-sided paired t-test at level {ALPHA:g}, not corrected: the one primary comparison"
                 if self.primary else
                 f"two-sided paired t-test, Holm-adjusted within the family of {self.family_size}")
        p = f"p = {c.p:.2g}" + ("" if self.primary else f", Holm-adjusted p = {self.adjusted:.2g}")
        verdict = f"{self.verdict} by this test alone" if self.primary and self.decided else self.verdict
        return (f"{head} ({level}): {c.mean:+.2f} points, 95% interval [{c.low:+.2f}, {c.high:+.2f}] "
                f"(unadjusted), {p}: **{verdict}**.")


class Family:
    """The primary comparison and the Holm family of a report."""

    def __init__(self, primary: Optional[Tested], members: List[Tested]):
        self.primary = primary
        self.members = members
        self._by_key: Dict[Key, Tested] = {t.key: t for t in members}
        if primary is not None:
            self._by_key[primary.key] = primary
        tested = [t for t in members if t.testable]
        for t, q in zip(tested, holm([t.comparison.p for t in tested])):
            t.adjusted, t.family_size = q, len(tested)

    @property
    def size(self) -> int:
        return sum(t.testable for t in self.members)

    def get(self, dataset: str, a: Cell, b: Cell, metric: str) -> Optional[Tested]:
        return self._by_key.get((dataset, a.name, b.name, metric))

    def decided(self) -> List[Tested]:
        return [t for t in self.members if t.decided]

    def __iter__(self) -> Iterator[Tested]:
        return iter(self.members)


def sinsim_cells(data, dataset: str) -> List[Cell]:
    """Every SinSim cell of ``dataset`` the protocol asked for (grid and sweeps)."""
    cells = [grid_sinsim_cell(data.pcfg, dataset)] if dataset in data.pcfg.datasets else []
    if dataset in data.pcfg.sweep_datasets:
        for term, on in variants(data.pcfg):
            if "lambda" in data.pcfg.sweeps:
                cells += [c for _, c in data.lambda_points(dataset, on, term)]
            if "eps" in data.pcfg.sweeps:
                cells += [c for _, c in data.eps_points(dataset, on, term)]
    return [c for c in dict.fromkeys(cells) if c.method == "sinsim"]


def chosen_on_validation(data, dataset: str) -> Optional[Tuple[Cell, CellRecords]]:
    """The SinSim configuration (or SimCLR, lambda = 0) with the highest mean
    validation linear accuracy on ``dataset``; None when none has one."""
    candidates = [method_cell(dataset, "simclr")] + sinsim_cells(data, dataset)
    scored = []
    for cell in candidates:
        s = data.records(cell).summary("linear", "val")
        if s is not None:
            scored.append((s.mean, s.n, cell))
    if not scored:
        return None
    _, _, best = max(scored, key=lambda t: (t[0], t[1]))
    return best, data.records(best)


def build_family(data) -> Family:
    p = data.pcfg
    members: Dict[Key, Tested] = {}
    primary: Optional[Tested] = None

    def add(dataset: str, a: Cell, b: Cell, metric: str, is_primary: bool = False) -> None:
        nonlocal primary
        if a == b:
            return
        c = paired_comparison(data.records(a).scores(metric), data.records(b).scores(metric))
        if c is None:
            return
        t = Tested(dataset, data.title(dataset), a, b, metric, c, primary=is_primary)
        if is_primary:
            primary = t
        elif t.key not in members and (primary is None or t.key != primary.key):
            members[t.key] = t

    for d in data.table_datasets:
        simclr, sinsim = method_cell(d, "simclr"), grid_sinsim_cell(p, d)
        if d == p.primary_dataset:
            add(d, sinsim, simclr, "linear", is_primary=True)
    for d in data.table_datasets:
        simclr, sinsim = method_cell(d, "simclr"), grid_sinsim_cell(p, d)
        for metric in ("linear", "mlp", "knn"):
            if not (d == p.primary_dataset and metric == "linear"):
                add(d, sinsim, simclr, metric)
    s = p.sinsim
    for d in p.sweep_datasets:
        simclr = method_cell(d, "simclr")
        for cell in sinsim_cells(data, d):
            for metric in ("linear", "knn"):
                add(d, cell, simclr, metric)
        for on in p.sweep_on:
            if set(p.sweep_terms) >= {"entropic", "divergence"}:
                for metric in ("linear", "knn"):
                    add(d, sinsim_cell(d, s.sinkhorn_weight, s.sinkhorn_eps, on, "divergence"),
                        sinsim_cell(d, s.sinkhorn_weight, s.sinkhorn_eps, on, "entropic"), metric)
        for term in dict.fromkeys(p.sweep_terms + [s.sinkhorn_term]):
            if set(p.sweep_on) >= {"features", "projection"}:
                for metric in ("linear", "knn"):
                    add(d, sinsim_cell(d, s.sinkhorn_weight, s.sinkhorn_eps, "projection", term),
                        sinsim_cell(d, s.sinkhorn_weight, s.sinkhorn_eps, "features", term), metric)
        chosen = chosen_on_validation(data, d)
        if chosen is not None:
            add(d, chosen[0], simclr, "linear")
    return Family(primary, list(members.values()))


def floor_cell(dataset: str) -> Cell:
    return Cell(dataset, RANDOM_INIT, RANDOM_INIT)


def image_bootstrap(a: CellRecords, b: CellRecords, split: str = "test",
                    probe: str = "linear") -> Optional[BootstrapInterval]:
    """``a - b`` resampled over the common seeds and the images
    (:func:`.paired_tests.paired_bootstrap`); None unless every seed both
    cells finished kept its predictions, on the same images."""
    ca, cb = a.correctness(split, probe), b.correctness(split, probe)
    seeds = sorted(set(a.results) & set(b.results))
    if not seeds or any(s not in ca or s not in cb for s in seeds):
        return None
    reference = ca[seeds[0]][0]
    if any(not np.array_equal(c[s][0], reference) for c in (ca, cb) for s in seeds):
        return None
    return paired_bootstrap(np.stack([ca[s][1] for s in seeds]), np.stack([cb[s][1] for s in seeds]))
