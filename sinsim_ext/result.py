"""The value returned by :func:`sinsim_ext.sinkhorn` and its reference twin."""

from __future__ import annotations

from typing import NamedTuple

import torch


class SinkhornResult(NamedTuple):
    """Dual potentials of an entropic OT problem and how the solve went.

    Attributes:
        f: potential on the points ``x``, shape ``(n,)`` or ``(B, n)``.
        g: potential on the points ``y``, shape ``(m,)`` or ``(B, m)``.
        n_iter: iterations run (one iteration = a ``g`` update then an ``f``
            update), shape ``()`` or ``(B,)``.
        error: L1 violation of the row marginal, ``sum_i |P 1 - a|_i``,
            measured at the last iteration (before its ``f`` update, which
            makes the row marginals of the returned plan exact), shape
            ``()`` or ``(B,)``.

    The plan is ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``
    (:func:`sinsim_ext.transport_plan`) and the regularised cost is
    ``<a, f> + <b, g>``. From :func:`sinsim_ext.sinkhorn`, ``f`` and ``g``
    are differentiable in the inputs that require grad (implicit
    differentiation, :mod:`sinsim_ext.implicit`); from
    :func:`sinsim_ext.reference.sinkhorn`, by autograd through the iterations.
    """

    f: torch.Tensor
    g: torch.Tensor
    n_iter: torch.Tensor
    error: torch.Tensor
