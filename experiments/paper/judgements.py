"""Rules that turn a run's numbers into words: collapsed features, suspect runs.

**Collapsed** (the features, not the accuracy), judged on the *centred*
features ``h - mean h`` (:mod:`train.geometry`): a common offset changes
neither the training loss nor the probes, so it must not read as collapse.
The untrained encoder of the same dataset and seeds (the ``random-init``
cell) is the floor:

* *near the untrained floor*: the cell's mean centred uniformity (Wang &
  Isola; lower is more spread) is at most :data:`UNIFORMITY_MARGIN` below
  the untrained encoder's mean, or above it: training did not spread the
  features out more than random weights do;
* *of low rank*: the mean centred effective rank (RankMe) is below
  :data:`LOW_RANK_FRACTION` of the feature dimension: the features fill only
  a few directions (dimensional collapse), however spread they are.

Runs whose centred measures were not measured (``null`` in their
``results.json``) are not judged: their uncentred numbers cannot tell
collapse from an offset.

**Offset** (a note, not a fault): the uncentred uniformity would call the
features collapsed and the centred one does not; the mean offset ratio
``||mean h|| / RMS(h - mean h)`` says how far the common offset reaches.

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


def _near_floor(rec: CellRecords, floor: Optional[CellRecords], key: str):
    """``(cell mean, floor mean)`` of ``key`` when the cell is within the margin of the floor, else None."""
    u = rec.summary(key, "geometry")
    fu = floor.summary(key, "geometry") if floor is not None else None
    if u is not None and fu is not None and rec is not floor and u.mean >= fu.mean - UNIFORMITY_MARGIN:
        return u.mean, fu.mean
    return None


def collapse_reasons(rec: CellRecords, floor: Optional[CellRecords]) -> List[str]:
    """Why ``rec``'s features count as collapsed (empty: they do not, or
    cannot be judged)."""
    reasons = []
    near = _near_floor(rec, floor, "uniformity_centred")
    if near is not None:
        reasons.append(f"near the untrained floor (centred uniformity {near[0]:.3f} vs the untrained encoder's "
                       f"{near[1]:.3f})")
    r = rec.summary("effective_rank_centred", "geometry")
    dims = [g.get("feature_dim") for g in (res.get("geometry") or {} for res in rec.results.values())]
    dim = next((d for d in dims if d), None)
    if r is not None and dim and r.mean < LOW_RANK_FRACTION * dim:
        reasons.append(f"of low rank (centred effective rank {r.mean:.1f} of {dim} dimensions)")
    return reasons


def offset_note(rec: CellRecords, floor: Optional[CellRecords]) -> Optional[str]:
    """When uncentred uniformity alone would call ``rec`` collapsed: what the
    centred features and the offset ratio say instead."""
    if _near_floor(rec, floor, "uniformity") is None or collapse_reasons(rec, floor):
        return None
    centred, ratio = rec.summary("uniformity_centred", "geometry"), rec.summary("mean_offset_ratio", "geometry")
    if centred is None or ratio is None:
        return None
    return (f"a common offset, not collapse: uncentred uniformity {rec.summary('uniformity', 'geometry').mean:.3f} "
            f"is near the untrained floor, the centred one is {centred.mean:.3f}, and the mean feature is "
            f"{ratio.mean:.1f}x the features' RMS spread around it")


def suspect_seeds(rec: CellRecords, floor: Optional[CellRecords]) -> List[int]:
    """Seeds on which ``rec``'s kNN accuracy is below the untrained encoder's."""
    if floor is None or rec is floor:
        return []
    mine, theirs = rec.scores("knn"), floor.scores("knn")
    return sorted(s for s in mine if s in theirs and mine[s] < theirs[s])
