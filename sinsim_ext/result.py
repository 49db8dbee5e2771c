"""The value returned by :func:`sinsim_ext.solve` (and :func:`sinsim_ext.sinkhorn`,
and their :mod:`sinsim_ext.reference` twins)."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.utils._pytree as pytree

__all__ = ["SinkhornResult", "debiased"]

Potentials = Tuple[torch.Tensor, torch.Tensor]


def debiased(cross, first, second):
    """The Sinkhorn divergence's combination ``cross - (first + second) / 2``:
    of the values ``OT(x, y)``, ``OT(x, x)``, ``OT(y, y)``, and of their derivatives."""
    return cross - 0.5 * (first + second)


class SinkhornResult:
    """An entropic OT problem solved: its value, dual potentials and plan, and how the solve went.

    Attributes:
        value: ``OT_eps(x, y) = <a, f> + <b, g>``, or with ``debias`` the
            Sinkhorn divergence ``OT(x, y) - OT(x, x)/2 - OT(y, y)/2``; shape
            ``()`` or ``(B,)``, in the promoted dtype of ``x`` and ``y``.
        f: potential on the points ``x``, shape ``(n,)`` or ``(B, n)``.
        g: potential on the points ``y``, shape ``(m,)`` or ``(B, m)``.
        n_iter: iterations run (one iteration = a ``g`` update then an ``f``
            update), shape ``()`` or ``(B,)``; the most of the three problems
            with ``debias``.
        error: L1 violation of the row marginal, ``sum_i |P 1 - a|_i``,
            measured at the last iteration (before its ``f`` update, which
            makes the row marginals of the returned plan exact), shape
            ``()`` or ``(B,)``; the worst of the three problems with
            ``debias``. From :func:`sinsim_ext.solve` it is NaN (unknown)
            for a problem the compute dtype cannot resolve
            (:mod:`sinsim_ext.resolution`), where it would read small on a
            wrong plan.
        plan: ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, shape
            ``(n, m)`` or ``(B, n, m)`` (:func:`sinsim_ext.transport_plan`),
            formed on each access.

    With ``debias``, ``f``, ``g`` and the plan are those of ``OT(x, y)``.
    The derivatives: ``value`` has the operator's (the compiled envelope
    backward, or implicit differentiation in the modes that need it); ``f``,
    ``g`` and ``plan`` are differentiable in the inputs that require grad
    (implicit differentiation, :mod:`sinsim_ext.implicit`), made so on their
    first access, under the autograd state of that moment (so read them where
    you differentiate them; reading them keeps the ``(n, m)`` cost matrix for
    the backward). From the reference twins everything is differentiated by
    autograd through the iterations.

    For code that unpacks the result of :func:`sinsim_ext.sinkhorn`,
    iterating and indexing give ``(f, g, n_iter, error)``.
    """

    __slots__ = ("value", "n_iter", "error", "_f", "_g", "_differentiate", "_plan")

    def __init__(
        self,
        value: torch.Tensor,
        f: torch.Tensor,
        g: torch.Tensor,
        n_iter: torch.Tensor,
        error: torch.Tensor,
        *,
        differentiate: Optional[Callable[[torch.Tensor, torch.Tensor], Potentials]] = None,
        plan: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    ):
        """``differentiate(f, g)`` makes the potentials differentiable on first
        access (None: they are returned as given); ``plan(f, g)`` forms the plan."""
        self.value, self.n_iter, self.error = value, n_iter, error
        self._f, self._g = f, g
        self._differentiate = differentiate
        self._plan = plan

    def _potentials(self) -> Potentials:
        if self._differentiate is not None:
            self._f, self._g = self._differentiate(self._f, self._g)
            self._differentiate = None
        return self._f, self._g

    @property
    def f(self) -> torch.Tensor:
        return self._potentials()[0]

    @property
    def g(self) -> torch.Tensor:
        return self._potentials()[1]

    @property
    def plan(self) -> torch.Tensor:
        if self._plan is None:
            raise AttributeError("this result carries no problem to form the plan from (a result rebuilt from its "
                                 "tensors, e.g. returned by torch.func.vmap): call sinsim_ext.transport_plan(x, y, "
                                 "result.f, result.g, ...) instead")
        return self._plan(*self._potentials())

    def _legacy(self) -> Tuple[torch.Tensor, ...]:
        return (*self._potentials(), self.n_iter, self.error)

    def __iter__(self):
        return iter(self._legacy())

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index):
        return self._legacy()[index]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}={tuple(t.shape)}" for name, t in
                           (("value", self.value), ("f", self._f), ("g", self._g), ("n_iter", self.n_iter)))
        return f"SinkhornResult({shapes}, error={self.error})"


def _flatten(result: SinkhornResult):
    f, g = result._potentials()
    return [result.value, f, g, result.n_iter, result.error], None


def _unflatten(children, _context) -> SinkhornResult:
    return SinkhornResult(*children)


# A pytree node, so that torch.func transforms and torch.compile can return it.
pytree.register_pytree_node(SinkhornResult, _flatten, _unflatten, serialized_type_name="sinsim_ext.SinkhornResult")
