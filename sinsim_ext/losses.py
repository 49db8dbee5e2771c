r"""Self-supervised losses as small ``nn.Module`` s: SinSim and its baselines.

Every loss takes the two views' embeddings, ``(N, d)`` each (row ``i`` of both
comes from the same image), and returns a scalar. Inputs of any floating dtype
are computed in float32 with autocast switched off inside the loss, so a
bf16/fp16 autocast region around the model does not round the losses' own
matrix products (VICReg's covariance, Barlow Twins' cross-correlation, the
NT-Xent similarities) to half precision.

* :class:`NTXentLoss` - SimCLR's contrastive loss.
* :class:`SinkhornLoss` - the entropic optimal-transport cost between the two
  views' empirical distributions (the SinSim regulariser).
* :class:`SinSimLoss` - ``NT-Xent + lambda * Sinkhorn``.
* :class:`BYOLLoss` - BYOL's normalised regression loss.
* :class:`VICRegLoss` - variance-invariance-covariance regularisation.
* :class:`BarlowTwinsLoss` - redundancy reduction on the cross-correlation.

The default coefficients are the published ones; each class cites its source.
"""

from __future__ import annotations

import functools
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from . import reference
from .convergence import threshold
from .functions import sinkhorn_cost
from .ops import backends
from .options import OptionAttributes, SinkhornOptions

# The devices the compiled kernel was built for, read once (not inside a step
# that torch.compile traces).
_KERNEL_DEVICES = frozenset(backends())

__all__ = [
    "BYOLLoss",
    "BarlowTwinsLoss",
    "NTXentLoss",
    "SinSimLoss",
    "SinkhornLoss",
    "VICRegLoss",
]


def _without_autocast(loss_fn):
    """Run ``loss_fn(self, *tensors)`` with autocast off on the tensors' device."""

    @functools.wraps(loss_fn)
    def wrapper(self, first: torch.Tensor, *args, **kwargs):
        with torch.autocast(device_type=first.device.type, enabled=False):
            return loss_fn(self, first, *args, **kwargs)

    return wrapper


def _check_views(loss: str, first: torch.Tensor, second: torch.Tensor, names=("z1", "z2"), *,
                 min_batch: int = 1, why: str = "") -> None:
    """Row ``i`` of both views comes from image ``i``: they must be ``(N, d)``
    tensors of one shape, with ``N >= min_batch`` (``why`` says what needs it)."""
    if first.dim() != 2 or first.shape != second.shape:
        raise ValueError(f"{loss}: {names[0]} and {names[1]} must both be (N, d) with the same N and d (row i of "
                         f"each comes from image i), got {tuple(first.shape)} and {tuple(second.shape)}")
    if first.shape[0] < min_batch:
        raise ValueError(f"{loss} needs a batch of {min_batch} or more pairs ({why}), got {first.shape[0]}")


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, flattened."""
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


class NTXentLoss(nn.Module):
    r"""NT-Xent, the normalised temperature-scaled cross entropy of SimCLR.

    With ``u = normalize([z1; z2])`` (``2N`` unit vectors) and
    ``s_ij = <u_i, u_j> / tau``, each of the ``2N`` embeddings must pick out its
    positive (the other view of the same image) among the ``2N - 1`` others::

        l(i, j) = -log( exp(s_ij) / sum_{k != i} exp(s_ik) )
        L = 1/(2N) sum_{k=1..N} [ l(k, k+N) + l(k+N, k) ]

    Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive
    Learning of Visual Representations", ICML 2020, arXiv:2002.05709, Eq. (1).

    Args:
        temperature: ``tau`` > 0. SimCLR used 0.5 for CIFAR-10 (appendix B.9)
            and 0.1 for ImageNet.
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    @_without_autocast
    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        # one pair: its positive is the only other embedding, so the loss is exactly 0
        _check_views("NT-Xent", z1, z2, min_batch=2, why="the others are the negatives")
        n = z1.shape[0]
        u = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        logits = (u @ u.T) / self.temperature
        self_pairs = torch.eye(2 * n, dtype=torch.bool, device=u.device)
        logits = logits.masked_fill(self_pairs, float("-inf"))
        positives = torch.arange(2 * n, device=u.device).roll(n)
        return F.cross_entropy(logits, positives)


class SinkhornLoss(OptionAttributes, nn.Module):
    r"""Entropic optimal-transport cost between two batches of embeddings.

    The empirical distributions ``mu = 1/n sum_i delta_{x_i}`` and
    ``nu = 1/m sum_j delta_{y_j}`` are compared by::

        W_eps(mu, nu) = min_{P in U(1/n, 1/m)} <P, C> + eps KL(P | 1/(nm))

    with ``C_ij = ||x_i - y_j||^2`` (``cost="sqeuclidean"``) or
    ``1 - cos(x_i, y_j)`` (``cost="cosine"``), computed by log-domain Sinkhorn
    iterations (:func:`sinsim_ext.sinkhorn_cost`; docs/design/maths.md). With
    ``normalize=True`` the points are first projected on the unit sphere, so
    squared distances lie in ``[0, 4]`` and ``eps`` has a fixed scale. With
    ``debias=True`` the value is the Sinkhorn divergence
    ``W(x, y) - W(x, x)/2 - W(y, y)/2``, which is 0 when the batches coincide.

    Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport",
    NeurIPS 2013; Feydy et al., "Interpolating between Optimal Transport and
    MMD using Sinkhorn Divergences", AISTATS 2019 (the debiased divergence).

    Args:
        options: the solve's :class:`sinsim_ext.SinkhornOptions` (eps, cost,
            max_iter, tol, scaling, debias, check_finite, cost_mode); when
            None, the defaults with ``check_finite=False``: in a training step
            a bad input gives a NaN loss, which the training loop detects
            without the device synchronisation of the value checks.
        normalize: L2-normalise the embeddings first.
        backend: ``"kernel"`` (the compiled operator), ``"reference"`` (plain
            PyTorch, autograd through the iterations) or ``"auto"`` (the
            kernel when it is compiled for the inputs' device, else the
            reference).
        **fields: options by name, replacing those of ``options``
            (``SinkhornLoss(eps=0.1, debias=True)``).

    The options are also attributes (``loss.eps``, ``loss.max_iter``, ...);
    assigning one (``loss.eps = 0.1``) validates it and replaces
    ``loss.options``.

    Convergence: :meth:`value_and_error` returns the final marginal error as
    a device tensor next to the value (no device synchronisation), for a
    training loop to read when it reads its loss (``train/engine.py`` does);
    :attr:`tolerance` is the error below which a solve counts as converged.
    Calling the module (``forward``) warns like :func:`sinsim_ext.sinkhorn_cost`.
    """

    BACKENDS = ("auto", "kernel", "reference")
    #: The options a SinkhornLoss starts from when it is given none.
    DEFAULTS = SinkhornOptions(check_finite=False)

    def __init__(self, options: Optional[SinkhornOptions] = None, *, normalize: bool = True, backend: str = "auto",
                 **fields):
        super().__init__()
        if backend not in self.BACKENDS:
            raise ValueError(f"backend must be one of {self.BACKENDS}, got {backend!r}")
        self.options = SinkhornOptions.resolve(options, fields, "SinkhornLoss", base=self.DEFAULTS)
        self.normalize = bool(normalize)
        self.backend = backend

    def solver(self, device: torch.device):
        """The Sinkhorn function this loss calls for inputs on ``device``."""
        if self.backend == "reference" or (self.backend == "auto" and device.type not in _KERNEL_DEVICES):
            return reference.sinkhorn_cost
        return sinkhorn_cost

    @property
    def tolerance(self) -> float:
        """The marginal error below which a solve counts as converged (``tol``, or
        :data:`sinsim_ext.CONVERGENCE_TOL`)."""
        return threshold(self.options.tol)

    def _solve(self, x: torch.Tensor, y: torch.Tensor, return_error: bool):
        x, y = x.float(), y.float()
        if self.normalize:
            x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
        return self.solver(x.device)(x, y, self.options, return_error=return_error)

    @_without_autocast
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._solve(x, y, return_error=False)

    @_without_autocast
    def value_and_error(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(value, error)``: the loss and its final marginal error (a detached
        device tensor, the worst of the problems with ``debias``; NaN where
        the dtype cannot resolve the solve, see :func:`sinsim_ext.sinkhorn_cost`);
        no warning and no device synchronisation."""
        return self._solve(x, y, return_error=True)

    def extra_repr(self) -> str:
        o = self.options
        return (
            f"eps={o.eps}, cost={o.cost!r}, normalize={self.normalize}, "
            f"max_iter={o.max_iter}, debias={o.debias}, backend={self.backend!r}, "
            f"tol={o.tol}, scaling={o.scaling}"
        )


class SinSimLoss(nn.Module):
    r"""SinSim: SimCLR's NT-Xent plus a Sinkhorn regulariser::

        L = NT-Xent_tau(z1, z2) + lambda * W_eps(s1, s2)

    ``z`` are the projections; ``s`` are the embeddings the optimal-transport
    term compares: the encoder features ``h`` as in the SinSim paper, or the
    projections themselves (``s = z``, the default when ``s1, s2`` are not
    given). See :class:`NTXentLoss` and :class:`SinkhornLoss` for the terms.

    Args:
        temperature: NT-Xent temperature.
        weight: ``lambda``, the weight of the Sinkhorn term.
        **sinkhorn: keyword arguments of :class:`SinkhornLoss` (``options``,
            ``normalize``, ``backend``, and the options by name: ``eps``,
            ``cost``, ``max_iter``, ``debias``, ...).
    """

    def __init__(self, temperature: float = 0.5, weight: float = 0.1, **sinkhorn):
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.weight = float(weight)
        self.ntxent = NTXentLoss(temperature)
        self.sinkhorn = SinkhornLoss(**sinkhorn)

    def terms(
        self,
        z1: torch.Tensor,
        z2: torch.Tensor,
        s1: Optional[torch.Tensor] = None,
        s2: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """The two unweighted terms, ``{"ntxent": ..., "sinkhorn": ...}``, and
        ``"sinkhorn_error"``, the Sinkhorn solve's final marginal error (a
        detached device tensor: a convergence report, not a term of the loss;
        :meth:`SinkhornLoss.value_and_error`)."""
        s1 = z1 if s1 is None else s1
        s2 = z2 if s2 is None else s2
        ntxent = self.ntxent(z1, z2)  # first: it checks that the views pair up
        value, error = self.sinkhorn.value_and_error(s1, s2)
        return {"ntxent": ntxent, "sinkhorn": value, "sinkhorn_error": error}

    def combine(self, terms: Dict[str, torch.Tensor]) -> torch.Tensor:
        return terms["ntxent"] + self.weight * terms["sinkhorn"]

    def forward(self, z1, z2, s1=None, s2=None) -> torch.Tensor:
        return self.combine(self.terms(z1, z2, s1, s2))


class BYOLLoss(nn.Module):
    r"""BYOL's loss: mean squared error between unit vectors::

        L(p, z) = 1/N sum_i || p_i/|p_i| - z_i/|z_i| ||^2 = 1/N sum_i (2 - 2 cos(p_i, z_i))

    ``p`` is the online network's prediction, ``z`` the target network's
    projection of the other view; ``z`` is treated as a constant (stop
    gradient). BYOL symmetrises: ``L(p1, z2') + L(p2, z1')``.

    Grill et al., "Bootstrap Your Own Latent: A New Approach to
    Self-Supervised Learning", NeurIPS 2020, arXiv:2006.07733, Eq. (2).
    """

    @_without_autocast
    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        _check_views("BYOLLoss", p, z, names=("p", "z"))
        p = F.normalize(p.float(), dim=-1)
        z = F.normalize(z.detach().float(), dim=-1)
        return (2 - 2 * (p * z).sum(dim=-1)).mean()


class VICRegLoss(nn.Module):
    r"""VICReg: variance-invariance-covariance regularisation::

        s(Z, Z') = 1/(N d) sum_i ||z_i - z'_i||^2                        (invariance)
        v(Z)     = 1/d sum_j max(0, gamma - sqrt(Var(z^j) + 1e-4))        (variance)
        c(Z)     = 1/d sum_{j != k} Cov(Z)_jk^2                           (covariance)
        L = lambda s(Z, Z') + mu V(Z, Z') + nu (c(Z) + c(Z'))

    with unbiased batch (co)variances and ``gamma = 1``. The two views'
    variance terms are combined as ``V = (v(Z) + v(Z')) / 2`` in the authors'
    code (facebookresearch/vicreg, ``main_vicreg.py``; ``variance_views=
    "mean"``, the default) and as ``V = v(Z) + v(Z')`` in solo-learn
    (``solo/losses/vicreg.py``; ``variance_views="sum"``), whose CIFAR recipe
    tuned the same coefficients lambda = mu = 25, nu = 1 with the sum. The
    mean over dimensions in ``s`` is the same in both.

    Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance
    Regularization for Self-Supervised Learning", ICLR 2022, arXiv:2105.04906,
    Eqs. (1)-(6) and section 4.
    """

    VARIANCE_VIEWS = ("mean", "sum")

    def __init__(
        self,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        variance_views: str = "mean",
    ):
        super().__init__()
        if variance_views not in self.VARIANCE_VIEWS:
            raise ValueError(f"variance_views must be one of {self.VARIANCE_VIEWS}, got {variance_views!r}")
        self.sim_weight, self.var_weight, self.cov_weight = sim_weight, var_weight, cov_weight
        self.gamma, self.eps = gamma, eps
        self.variance_views = variance_views

    def variance(self, z: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(z.var(dim=0) + self.eps)
        return F.relu(self.gamma - std).mean()

    @staticmethod
    def covariance(z: torch.Tensor) -> torch.Tensor:
        n, d = z.shape
        z = z - z.mean(dim=0)
        cov = (z.T @ z) / (n - 1)
        return _off_diagonal(cov).pow(2).sum() / d

    @_without_autocast
    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> Dict[str, torch.Tensor]:
        # one pair: its unbiased variances are 0/0 (NaN)
        _check_views("VICRegLoss", z1, z2, min_batch=2, why="it takes variances and covariances over the batch")
        z1, z2 = z1.float(), z2.float()
        return {
            "invariance": F.mse_loss(z1, z2),
            "variance": (self.variance(z1) + self.variance(z2)) / (2 if self.variance_views == "mean" else 1),
            "covariance": self.covariance(z1) + self.covariance(z2),
        }

    def combine(self, terms: Dict[str, torch.Tensor]) -> torch.Tensor:
        return (
            self.sim_weight * terms["invariance"]
            + self.var_weight * terms["variance"]
            + self.cov_weight * terms["covariance"]
        )

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.combine(self.terms(z1, z2))


class BarlowTwinsLoss(nn.Module):
    r"""Barlow Twins: make the views' cross-correlation matrix the identity::

        z_hat = (z - mean_batch(z)) / sqrt(var_batch(z) + 1e-5)     (per dimension, biased var)
        C_jk  = 1/N sum_i z_hat1_ij z_hat2_ik
        L = scale * ( sum_j (1 - C_jj)^2 + lambda sum_j sum_{k != j} C_jk^2 )

    The standardisation is the authors' ``BatchNorm1d(affine=False)``.

    Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning
    via Redundancy Reduction", ICML 2021, arXiv:2103.03230, Eqs. (1)-(2);
    lambda = 5e-3 (section 4, "Implementation details"). ``scale`` is the
    overall loss factor of the authors' first code release and of solo-learn
    (``scale_loss``; 0.1 in solo-learn's CIFAR recipe,
    ``scripts/pretrain/cifar/barlow.yaml``); the paper's equation has 1.
    """

    def __init__(self, lambda_offdiag: float = 5e-3, eps: float = 1e-5, scale: float = 1.0):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.lambda_offdiag = lambda_offdiag
        self.eps = eps
        self.scale = float(scale)

    def standardize(self, z: torch.Tensor) -> torch.Tensor:
        mean = z.mean(dim=0)
        var = z.var(dim=0, unbiased=False)
        return (z - mean) / torch.sqrt(var + self.eps)

    @_without_autocast
    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        # one pair: every standardised entry is 0, a constant loss with zero gradient
        _check_views("BarlowTwinsLoss", z1, z2, min_batch=2, why="it standardises each dimension over the batch")
        z1, z2 = self.standardize(z1.float()), self.standardize(z2.float())
        c = (z1.T @ z2) / z1.shape[0]
        on_diag = (1 - torch.diagonal(c)).pow(2).sum()
        off_diag = _off_diagonal(c).pow(2).sum()
        return self.scale * (on_diag + self.lambda_offdiag * off_diag)
