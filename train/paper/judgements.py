"""Rules that turn a run's numbers into words: collapsed features, suspect runs.

**Collapsed** (the features, not the accuracy). The untrained encoder of the
same dataset and seeds (the ``random-init`` cell) is the floor:

* *near the untrained floor*: the cell's mean uniformity (Wang & Isola; lower
  is more spread) is at most :data:`UNIFORMITY_MARGIN` below the untrained
  encoder's mean, or above it: training did not spread the features out
  more than random weights do. (An untrained ResNet-18's post-ReLU
  features share one large mean direction: on CIFAR-10 its uniformity is
  about -0.05, a trained SimCLR's about -1.1, out of [-4, 0] for spread
  points.)
* *of low rank*: the mean effective rank (RankMe) is below
  :data:`LOW_RANK_FRACTION` of the feature dimension: the features fill only
  a few directions (dimensional collapse), however spread they are.

**Suspect** (the run, not the method): a pretrained cell whose kNN accuracy,
on some seed, is below the untrained encoder's of that seed. Pretraining
that ends below random weights on kNN may be a slow starter or a wrong
recipe; the report flags it rather than ranking it.
"""

from __future__ import annotations

from typing import List, Optional

from .collect import CellRecords

UNIFORMITY_MARGIN = 0.1
LOW_RANK_FRACTION = 0.05


def collapse_reasons(rec: CellRecords, floor: Optional[CellRecords]) -> List[str]:
    """Why ``rec``'s features count as collapsed (empty: they do not, or
    cannot be judged)."""
    reasons = []
    u = rec.summary("uniformity", "geometry")
    fu = floor.summary("uniformity", "geometry") if floor is not None else None
    if u is not None and fu is not None and rec is not floor and u.mean >= fu.mean - UNIFORMITY_MARGIN:
        reasons.append(f"near the untrained floor (uniformity {u.mean:.3f} vs the untrained encoder's {fu.mean:.3f})")
    r = rec.summary("effective_rank", "geometry")
    dims = [g.get("feature_dim") for g in (res.get("geometry") or {} for res in rec.results.values())]
    dim = next((d for d in dims if d), None)
    if r is not None and dim and r.mean < LOW_RANK_FRACTION * dim:
        reasons.append(f"of low rank (effective rank {r.mean:.1f} of {dim} dimensions)")
    return reasons


def suspect_seeds(rec: CellRecords, floor: Optional[CellRecords]) -> List[int]:
    """Seeds on which ``rec``'s kNN accuracy is below the untrained encoder's."""
    if floor is None or rec is floor:
        return []
    mine, theirs = rec.scores("knn"), floor.scores("knn")
    return sorted(s for s in mine if s in theirs and mine[s] < theirs[s])
