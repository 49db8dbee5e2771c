r"""The geometry of an encoder's features: alignment, uniformity, effective rank, silhouette.

Alignment, uniformity and silhouette are computed on L2-normalised features
``f(x) / ||f(x)||`` (the unit hypersphere), the effective rank on the raw
features; all from the frozen encoder's features ``h``. Every run measures
them once on a fixed test subsample (:mod:`train.embedding`), so that a
collapsed run shows in its ``results.json``.

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

**Effective rank** (RankMe): Garrido, Balestriero, Najman, LeCun, "RankMe:
Assessing the Downstream Performance of Pretrained Self-Supervised
Representations by Their Rank", ICML 2023 (arXiv:2210.02885), Eq. (1). With
the singular values ``sigma_1 .. sigma_K`` of the ``(n, d)`` feature matrix
(raw, not centred, as in the paper; ``K = min(n, d)``)::

    p_k = sigma_k / sum_j sigma_j + eps,   RankMe = exp( - sum_k p_k log p_k )      (eps = 1e-7)

It lies in [1, K] (up to ``eps``): 1 when every point lies on one line
through 0 (e.g. all points equal: collapse), ``K`` when all singular values
are equal (e.g. orthonormal points). Unlike uniformity it also sees
*dimensional* collapse: spread points that fill only a few directions.

**Centred geometry** (what collapse is judged by). A common offset ``b``
added to every feature changes nothing that the training loss or the probes
see (the projector's Linear + BatchNorm makes NT-Xent invariant to
``h -> a h + b``, the probes standardise the features), yet on the sphere it
crowds the normalised features together and inflates the first singular
value: uncentred uniformity and rank then read as collapse when only the
mean moved. So with ``mu = mean_i h_i``::

    centred uniformity      = uniformity of (h_i - mu) / ||h_i - mu||
    centred effective rank  = RankMe of the rows h_i - mu (square roots of the covariance's eigenvalues)
    mean offset ratio       = ||mu|| / sqrt( mean_i ||h_i - mu||^2 )      (0: centred; >> 1: a large common offset)

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


def effective_rank(x, eps: float = 1e-7) -> float:
    """RankMe of the ``(n, d)`` features ``x`` (raw, not normalised or centred)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.dim() != 2 or min(x.shape) < 1:
        raise ValueError(f"effective_rank needs an (n, d) matrix with n, d >= 1, got shape {tuple(x.shape)}")
    sigma = torch.linalg.svdvals(x)
    if not sigma.sum() > 0:
        raise ValueError("effective_rank of an all-zero matrix is undefined")
    p = sigma / sigma.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))


def silhouette(x, labels) -> float:
    """Mean silhouette of the classes ``labels`` on the normalised features."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("the silhouette needs at least two classes")
    return float(silhouette_score(_unit(x).numpy(), labels, metric="euclidean"))


def _centred(x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    return x - x.mean(dim=0)


def centred_uniformity(x, t: float = 2.0) -> float:
    """:func:`uniformity` of the features minus their mean."""
    return uniformity(_centred(x), t)


def centred_effective_rank(x, eps: float = 1e-7) -> float:
    """:func:`effective_rank` of the features minus their mean."""
    return effective_rank(_centred(x), eps)


def mean_offset_ratio(x) -> float:
    """``||mean h|| / RMS(h - mean h)``: how far the features' common offset
    reaches compared with their spread around it (inf for identical rows)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.dim() != 2 or len(x) < 2:
        raise ValueError(f"mean_offset_ratio needs an (n, d) matrix with n >= 2, got shape {tuple(x.shape)}")
    mu = x.mean(dim=0)
    spread = (x - mu).pow(2).sum(dim=1).mean().sqrt()
    return float(mu.norm() / spread) if spread > 0 else float("inf")
