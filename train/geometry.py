r"""Numbers that back the embedding pictures: alignment, uniformity, silhouette.

All three are computed on L2-normalised features ``f(x) / ||f(x)||`` (the
unit hypersphere), from the frozen encoder's features ``h``.

**Alignment** and **uniformity**: Wang & Isola, "Understanding Contrastive
Representation Learning through Alignment and Uniformity on the
Hypersphere", ICML 2020 (arXiv:2005.10242), section 4.1, with their default
exponents alpha = 2 and t = 2::

    alignment  = E_{(x, x+) positive pairs} || f(x) - f(x+) ||^2          (lower: views of one image closer)
    uniformity = log E_{x, y independent} exp( -2 || f(x) - f(y) ||^2 )    (lower: spread more evenly)

Positive pairs are two augmentations of one image; the expectation over
``x, y`` is the mean over all unordered pairs ``i < j`` of distinct points,
as in the paper's code (``torch.pdist``). On unit vectors squared distances
lie in [0, 4], so alignment lies in [0, 4] and uniformity in [-8, 0] (0: all
points equal, collapse; -8 only for two antipodal points).

**Silhouette** (Rousseeuw, J. Comput. Appl. Math. 1987): for point ``i`` with
mean distance ``a(i)`` to the other points of its class and ``b(i)`` the
smallest mean distance to the points of another class,
``s(i) = (b(i) - a(i)) / max(a(i), b(i))``, averaged over points; in [-1, 1],
higher means classes form tighter, better separated groups. Euclidean
distance on the normalised features; computed by scikit-learn.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import silhouette_score


def _unit(x) -> torch.Tensor:
    return F.normalize(torch.as_tensor(x, dtype=torch.float64), dim=1)


def alignment(x, y, alpha: float = 2.0) -> float:
    """Mean ``||f(x_i) - f(y_i)||^alpha`` over the rows (row i of ``x`` and of ``y``: a positive pair)."""
    x, y = _unit(x), _unit(y)
    return float((x - y).norm(dim=1).pow(alpha).mean())


def uniformity(x, t: float = 2.0) -> float:
    """``log`` of the mean of ``exp(-t ||f(x_i) - f(x_j)||^2)`` over pairs ``i < j``."""
    x = _unit(x)
    if len(x) < 2:
        raise ValueError("uniformity needs at least two points")
    return float(torch.pdist(x).pow(2).mul(-t).exp().mean().log())


def silhouette(x, labels) -> float:
    """Mean silhouette of the classes ``labels`` on the normalised features."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("the silhouette needs at least two classes")
    return float(silhouette_score(_unit(x).numpy(), labels, metric="euclidean"))
