"""The options of a Sinkhorn solve, validated once.

:class:`SinkhornOptions` holds every option of the operator; the functions
(:func:`sinsim_ext.solve`, :func:`sinsim_ext.sinkhorn_cost`,
:func:`sinsim_ext.sinkhorn`, their :mod:`sinsim_ext.reference` twins), the
losses (:class:`sinsim_ext.SinkhornLoss`) and the row-sharded solver
(:mod:`sinsim_ext.distributed`) take one, or its fields as keyword arguments.
A bad value raises a ``TypeError`` or ``ValueError`` naming the option and
what was expected, when the options are made.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Dict, Optional

import torch

from .costs import COSTS

__all__ = ["COST_MODES", "OptionAttributes", "SinkhornOptions"]

COST_MODES = ("auto", "stored", "online")
MAX_ITER_LIMIT = 2**63 - 1  # the compiled op's int64 argument


@dataclasses.dataclass(frozen=True)
class SinkhornOptions:
    """How to solve: regularisation, cost, iterations, stopping, checks, memory.

    Attributes:
        eps: entropic regularisation, > 0, in units of the cost (a number,
            or a one-element tensor that does not require grad).
        cost: the ground cost, a name of :data:`sinsim_ext.costs.COSTS`:
            ``"sqeuclidean"`` (``||x_i - y_j||^2``) or ``"cosine"``
            (``1 - cos(x_i, y_j)``).
        max_iter: iterations (each a column then a row update), the
            eps-scaling stages included; at most ``2**63 - 1``.
        tol: stop a problem once its L1 marginal error is below ``tol``;
            ``None`` runs all ``max_iter`` iterations. Either way a result
            whose final error is not below ``tol`` (or, without ``tol``,
            :data:`sinsim_ext.CONVERGENCE_TOL` = 1e-3) raises a
            :class:`sinsim_ext.SinkhornConvergenceWarning` with the error
            reached and what to change; on GPUs only when the check adds no
            device synchronisation of its own (``check_finite=True`` or a
            ``tol``), never inside code compiled by ``torch.compile``
            (:mod:`sinsim_ext.convergence`).
        scaling: eps-scaling (GeomLoss's ``scaling``, annealing): ``None``
            for plain iterations, or a ratio in (0, 1). The iterations start
            at ``eps_1 = eps / scaling^K >= max_ij C_ij`` (the scale of the
            cost), one iteration per stage, ``eps_{k+1} = scaling * eps_k``,
            the potentials ``f``, ``g`` carried over from stage to stage,
            then plain iterations at ``eps`` until ``tol`` / ``max_iter``
            (``K`` is capped at ``max_iter - 1``). Small ``eps`` (1e-3 and
            below relative to the cost) converges in far fewer iterations
            (docs/performance/convergence.md). The derivatives are taken at
            the final ``eps``.
        debias: the Sinkhorn divergence ``OT(x, y) - OT(x, x)/2 - OT(y, y)/2``
            (three problems solved together) instead of ``OT(x, y)``.
        check_finite: check the data for NaN/inf, negative weights and so on
            (one device synchronisation on GPUs), also inside
            ``torch.compile`` and ``torch.func.vmap``; off, bad values give
            NaN.
        cost_mode: ``"stored"`` keeps the ``(n, m)`` cost matrix for the
            iterations (and the ``(B, n, m)`` plan for the backward);
            ``"online"`` recomputes the cost in blocks of rows at every pass
            (GeomLoss's online backend; on CUDA only when the environment
            variable ``SINSIM_CUDA_KERNEL`` selects ``online`` or ``v2``, see
            :mod:`sinsim_ext._cuda_kernel`): memory ``O((n + m) d)`` for the
            iterations and the first-order backward, time ``d`` multiply-adds
            per entry and pass; ``"auto"`` goes online on the CPU when the
            stored mode would hold more than
            :data:`sinsim_ext.ops.ONLINE_THRESHOLD_BYTES` (1 GiB), and on
            CUDA (with that selection) when the stored costs would take more
            than :data:`sinsim_ext.ops.CUDA_ONLINE_MEMORY_FRACTION` of the
            device's memory. Double backward, forward mode and ``torch.func``
            still form the ``(n, m)`` plan. The compiled operator's choice:
            the reference and the row-sharded solver keep the cost matrix
            and refuse another mode.

    ``options.replace(eps=0.1)`` returns validated new options; the options
    are immutable, so one object can be shared by a loss, a solve and a plan.
    """

    eps: float = 0.05
    cost: str = "sqeuclidean"
    max_iter: int = 100
    tol: Optional[float] = None
    scaling: Optional[float] = None
    debias: bool = False
    check_finite: bool = True
    cost_mode: str = "auto"

    def __post_init__(self):
        normalised = dict(
            cost=_check_cost(self.cost),
            eps=check_eps(self.eps),
            max_iter=_check_max_iter(self.max_iter),
            tol=None if self.tol is None else check_tol(self.tol),
            scaling=check_scaling(self.scaling),
            debias=bool(self.debias),
            check_finite=bool(self.check_finite),
            cost_mode=_check_cost_mode(self.cost_mode),
        )
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> "SinkhornOptions":
        """These options with ``changes`` (field names), validated."""
        _refuse_unknown(changes, "replace")
        return dataclasses.replace(self, **changes)

    def differing(self, other: "SinkhornOptions") -> Dict[str, Any]:
        """``{name: value}`` of the fields whose value differs from ``other``'s."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)}

    @classmethod
    def resolve(cls, options: Optional["SinkhornOptions"], fields: Dict[str, Any], caller: str,
                base: Optional["SinkhornOptions"] = None) -> "SinkhornOptions":
        """The options of a call ``caller(..., options, **fields)``: ``options``
        (or ``base``, or the defaults, when it is None) with ``fields`` replaced."""
        _refuse_unknown(fields, caller)
        if options is None:
            options = base if base is not None else cls()
        elif not isinstance(options, SinkhornOptions):
            raise TypeError(f"{caller}: options must be a sinsim_ext.SinkhornOptions or None, got "
                            f"{type(options).__name__} (pass the options by name, e.g. eps=0.1)")
        return dataclasses.replace(options, **fields) if fields else options


FIELDS = tuple(f.name for f in dataclasses.fields(SinkhornOptions))


def _refuse_unknown(fields: Dict[str, Any], caller: str) -> None:
    for name in fields:
        if name not in FIELDS:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}; "
                            f"the options are {', '.join(FIELDS)}")


def _check_cost(cost) -> str:
    if not isinstance(cost, str) or cost not in COSTS:
        raise ValueError(f"cost must be one of {tuple(COSTS)}, got {cost!r}")
    return cost


def _check_cost_mode(cost_mode) -> str:
    if not isinstance(cost_mode, str) or cost_mode not in COST_MODES:
        raise ValueError(f"cost_mode must be one of {COST_MODES}, got {cost_mode!r}")
    return cost_mode


def _scalar_of(name: str, value):
    """A one-element tensor as a Python number. One that requires grad is
    refused: the operator has no derivative in its options, and reading it
    as a number would silently drop the gradient asked for."""
    if not isinstance(value, torch.Tensor):
        return value
    if value.numel() != 1:
        raise TypeError(f"{name} must be a number, got a tensor of shape {tuple(value.shape)}")
    if value.requires_grad:
        raise TypeError(f"{name} is a tensor that requires grad, but the operator has no derivative in {name}; "
                        f"pass a number ({name}.item()) or {name}.detach()")
    return value.item()


def _check_number(name: str, value, *, positive: bool, allow_zero: bool = False) -> float:
    value = _scalar_of(name, value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_eps(eps) -> float:
    """``eps`` as a positive finite float (a number, or a one-element tensor without grad)."""
    return _check_number("eps", eps, positive=True)


def check_tol(tol) -> float:
    """``tol`` as a positive finite float (a number, or a one-element tensor without grad)."""
    return _check_number("tol", tol, positive=True)


def _check_max_iter(max_iter) -> int:
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral):
        raise TypeError(f"max_iter must be an int, got {type(max_iter).__name__}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if max_iter > MAX_ITER_LIMIT:
        raise ValueError(f"max_iter must be at most 2**63 - 1 (the operator counts in 64-bit integers), got "
                         f"{max_iter}; to run until convergence pass a tol with a large max_iter")
    return int(max_iter)


def check_scaling(scaling) -> Optional[float]:
    """``None`` (plain iterations) or the eps-scaling ratio, a number strictly between 0 and 1."""
    if scaling is None:
        return None
    if isinstance(scaling, torch.Tensor) and scaling.numel() == 1:
        scaling = _scalar_of("scaling", scaling)
    if isinstance(scaling, bool) or not isinstance(scaling, numbers.Real):
        raise TypeError(f"scaling must be None or a number in (0, 1), got {type(scaling).__name__}")
    scaling = float(scaling)
    if not 0.0 < scaling < 1.0:  # False for NaN too
        raise ValueError(
            f"scaling must be None (no eps-scaling) or a number strictly between 0 and 1 "
            f"(the ratio of eps from one annealing stage to the next, e.g. 0.9), got {scaling}"
        )
    return scaling


class OptionAttributes:
    """For a module holding :class:`SinkhornOptions` in ``self.options``: the
    options read and written as attributes (``loss.eps``, ``loss.eps = 0.1``),
    a write validated and stored as new options, so that no attribute can
    shadow the options the module solves with."""

    def __getattr__(self, name: str):
        if name in FIELDS:
            return getattr(self.__dict__["options"], name)
        return super().__getattr__(name)

    def __setattr__(self, name: str, value) -> None:
        if name in FIELDS:
            name, value = "options", self.options.replace(**{name: value})
        elif name == "options" and not isinstance(value, SinkhornOptions):
            raise TypeError(f"options must be a sinsim_ext.SinkhornOptions, got {type(value).__name__}")
        super().__setattr__(name, value)
