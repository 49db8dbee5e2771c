r"""Seeds -> one number with its spread, and what two cells' seeds can tell apart.

**Mean and spread.** Over the ``n`` finished seeds of a cell with scores
``x_1 .. x_n``: the mean ``m = (1/n) sum x_i`` and the *sample* standard
deviation ``s = sqrt( sum (x_i - m)^2 / (n - 1) )`` (``ddof = 1``, Python's
``statistics.stdev``): the seed-to-seed spread one should expect from a new
seed. With one seed there is no spread, and the tables say ``n=1``.

**Two cells compared** (e.g. SinSim against SimCLR). The same seed gives both
the same initial weights and the same data order, so the seeds pair up:
``d_i = a_i - b_i`` over the seeds both finished. The paired t-test
(``scipy.stats.ttest_rel``; Student, 1908) gives the mean difference, its 95%
confidence interval ``mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n)`` and a
p-value. The verdict is "higher" or "lower" only when the interval excludes
0 and at least 3 seeds pair up; "cannot tell apart" when it contains 0, "no
verdict" with fewer than 3 paired seeds. Why 3: with
2 seeds the interval rests on one degree of freedom, and accuracies move in
steps of one test image, so two seeds that happen to differ by the same
image count give a zero-width interval and a tiny p-value that mean
nothing. For the same reason a difference that is the same on every seed
(zero spread) is reported as such, never as a win. With 3 seeds
``t_{0.975, 2} = 4.30``: the interval is wide, small differences are not
resolved, and the report says so instead of ranking them.

**Many comparisons** (Holm, "A Simple Sequentially Rejective Multiple Test
Procedure", Scand. J. Statist. 6, 1979). The protocol declares one primary
comparison, tested alone at level 0.05; every other comparison the report
makes with a p-value is one family of ``m`` hypotheses. Sort their p-values
``p_(1) <= .. <= p_(m)``; reject ``H_(1) .. H_(k)`` for the largest ``k``
with ``p_(j) <= alpha / (m - j + 1)`` for every ``j <= k``. Equivalently the
adjusted p-values ``q_(j) = max_{i <= j} min(1, (m - i + 1) p_(i))`` are
compared with ``alpha``: :func:`holm` returns them. This keeps the chance of
*any* false "higher" / "lower" in the family at most ``alpha``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from scipy import stats

LEVEL = 0.95
ALPHA = 0.05  # 1 - LEVEL: the level of the primary comparison and of Holm's family
MIN_SEEDS = 3  # fewest paired seeds for a "higher" / "lower" verdict
ZERO_SPREAD = 1e-9  # differences of rounded accuracies equal up to float error


@dataclass(frozen=True)
class Summary:
    seeds: Tuple[int, ...]
    values: Tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> Optional[float]:
        """Sample standard deviation (ddof = 1); None for one seed."""
        return statistics.stdev(self.values) if self.n > 1 else None


def summarize(by_seed: Dict[int, float]) -> Optional[Summary]:
    """The summary of ``{seed: value}`` (None values skipped), None when empty."""
    kept = sorted((s, v) for s, v in by_seed.items() if v is not None)
    if not kept:
        return None
    return Summary(tuple(s for s, _ in kept), tuple(float(v) for _, v in kept))


def format_summary(s: Optional[Summary], digits: int = 2, of: Optional[int] = None) -> str:
    """``93.00 ± 3.61 (n=3)``; ``93.00 (n=1)``; ``not run`` for None.
    ``of``: how many seeds were asked for, shown when more than finished."""
    if s is None:
        return "not run"
    count = f"n={s.n}" + (f" of {of}" if of is not None and of > s.n else "")
    spread = f" ± {s.std:.{digits}f}" if s.std is not None else ""
    return f"{s.mean:.{digits}f}{spread} ({count})"


@dataclass(frozen=True)
class Comparison:
    """``a - b`` over the seeds both have."""

    seeds: Tuple[int, ...]
    mean: float
    sd: Optional[float]
    low: Optional[float]
    high: Optional[float]
    p: Optional[float]

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "cannot tell apart (one paired seed: no spread to compare with)"
        if self.sd == 0:
            if abs(self.mean) <= ZERO_SPREAD:
                return "identical on every seed"
            return f"the same difference on each of the {self.n} seeds: no spread to judge it by"
        if self.low is None:
            return "cannot tell apart"
        if self.n < MIN_SEEDS:
            return f"no verdict: only {self.n} paired seeds ({MIN_SEEDS} needed)"
        if self.low > 0:
            return "higher"
        if self.high < 0:
            return "lower"
        return "cannot tell apart"

    @property
    def decided(self) -> bool:
        return self.verdict in ("higher", "lower")

    def described(self, digits: int = 2) -> str:
        """``+0.41 [-1.20, +2.02] (paired 95% interval, n=3)``: the difference as a
        description (a choice's margin, a sign check), without a p-value."""
        if self.low is None:
            return f"{self.mean:+.{digits}f} (n={self.n}" + (", no spread)" if self.n > 1 else ")")
        interval = f"[{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return f"{self.mean:+.{digits}f} {interval} (paired 95% interval, n={self.n})"

    def text(self, digits: int = 2) -> str:
        """``+0.41 [-1.20, +2.02], p=0.38, n=3``."""
        if self.n < 2:
            return f"{self.mean:+.{digits}f} (n=1)"
        if self.low is None:
            return f"{self.mean:+.{digits}f} (sd 0, n={self.n})"
        return (f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}], "
                f"p={self.p:.2g}, n={self.n}")


def paired_comparison(a: Dict[int, float], b: Dict[int, float], level: float = LEVEL) -> Optional[Comparison]:
    """Paired comparison of ``{seed: score}`` of two cells; None without a common seed."""
    seeds = tuple(sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None))
    if not seeds:
        return None
    xa, xb = [float(a[s]) for s in seeds], [float(b[s]) for s in seeds]
    diffs = [x - y for x, y in zip(xa, xb)]
    mean = statistics.fmean(diffs)
    if len(seeds) < 2:
        return Comparison(seeds, mean, None, None, None, None)
    sd = statistics.stdev(diffs)
    if sd <= ZERO_SPREAD:
        return Comparison(seeds, mean, 0.0, None, None, None)
    test = stats.ttest_rel(xa, xb)
    ci = test.confidence_interval(confidence_level=level)
    low, high = float(ci.low), float(ci.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return Comparison(seeds, mean, sd, None, None, None)
    return Comparison(seeds, mean, sd, low, high, float(test.pvalue))


def holm(pvalues: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values, in the order given (see the
    module docstring); ``q_j <= alpha`` rejects hypothesis ``j``."""
    m = len(pvalues)
    for p in pvalues:
        if not 0 <= p <= 1:
            raise ValueError(f"p-values must lie in [0, 1], got {p}")
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
