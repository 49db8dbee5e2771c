"""Argument validation shared by the compiled operator and the reference.

Every public entry point funnels its arguments through :func:`prepare`, so a
bad call fails the same way whichever backend it would have reached: a
``TypeError`` or ``ValueError`` that names the argument and says what was
expected. :func:`prepare` also puts the inputs in the one layout the kernels
take: batched ``(B, n, d)`` / ``(B, m, d)`` points and ``(B, n)`` / ``(B, m)``
weights, contiguous, in the compute dtype (float32, or float64 when an input
is float64; float16 and bfloat16 are computed in float32).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional

import torch

from . import resolution
from ._modes import functorch_active, is_compiling
from .convergence import warn_unconverged

COSTS = ("sqeuclidean", "cosine")
MAX_ITER_LIMIT = 2**63 - 1  # the compiled op's int64 argument


@dataclass(frozen=True)
class Problem:
    """Validated, normalised arguments of one Sinkhorn call."""

    x: torch.Tensor  # (B, n, d), compute dtype, contiguous
    y: torch.Tensor  # (B, m, d)
    a: torch.Tensor  # (B, n), sums to 1
    b: torch.Tensor  # (B, m), sums to 1
    batched: bool  # False when the caller passed (n, d) / (m, d)
    eps: float
    cost: str
    max_iter: int
    tol: Optional[float]
    out_dtype: torch.dtype  # dtype of the returned value
    scaling: Optional[float] = None  # eps-scaling ratio in (0, 1), None: plain iterations
    check_finite: bool = True


def _check_points(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.dim() not in (2, 3):
        raise ValueError(
            f"{name} must have shape (n, d) or (B, n, d), got {tuple(t.shape)}"
        )


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


def _weights(name: str, w, batch: int, count: int, points: str, ref: torch.Tensor) -> torch.Tensor:
    """Uniform weights when ``w`` is None, else ``w`` checked and shaped (B, count)."""
    if w is None:
        return torch.full((batch, count), 1.0 / count, dtype=ref.dtype, device=ref.device)
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(w).__name__}")
    if not w.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {w.dtype}")
    if w.device != ref.device:
        raise ValueError(f"{name} is on {w.device} but {points} is on {ref.device}")
    if w.dim() == 1 and w.shape[0] == count:
        w = w.unsqueeze(0).expand(batch, count)
    elif not (w.dim() == 2 and tuple(w.shape) == (batch, count)):
        expected = f"({count},) or ({batch}, {count})" if batch > 1 else f"({count},)"
        raise ValueError(
            f"{name} must have shape {expected} to match {points}, got {tuple(w.shape)}"
        )
    return w.to(ref.dtype).contiguous()


def prepare(
    x,
    y,
    *,
    eps,
    cost: str,
    a=None,
    b=None,
    max_iter: int = 100,
    tol=None,
    check_finite: bool = True,
    scaling=None,
) -> Problem:
    """Validate the arguments of a Sinkhorn call and normalise their layout.

    Shape and type checks always run. Value checks (NaN/inf, negative
    weights, weights that do not sum to 1, zero vectors under the cosine
    cost) read the data, which on a GPU means one device synchronisation;
    ``check_finite=False`` skips them, and non-finite inputs then give
    non-finite outputs. The value checks are the custom op
    ``sinsim_ext::check_values``, so they also run inside code compiled by
    ``torch.compile`` (as an op of the graph, ``fullgraph=True`` included)
    and under ``torch.func.vmap`` (on the whole batch).
    """
    _check_points("x", x)
    _check_points("y", y)
    if x.device != y.device:
        raise ValueError(f"x and y must be on the same device, got x on {x.device} and y on {y.device}")
    if x.dim() != y.dim():
        raise ValueError(
            f"x and y must both be unbatched (n, d) or both batched (B, n, d), "
            f"got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    batched = x.dim() == 3
    if batched and x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"x and y must have the same feature dimension d, got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    x3 = x if batched else x.unsqueeze(0)
    y3 = y if batched else y.unsqueeze(0)
    batch, n, d = x3.shape
    m = y3.shape[1]
    if batch == 0:
        raise ValueError("x and y hold an empty batch (B = 0); nothing to transport")
    if n == 0:
        raise ValueError(f"x is an empty point set (n = 0), shape {tuple(x.shape)}")
    if m == 0:
        raise ValueError(f"y is an empty point set (m = 0), shape {tuple(y.shape)}")
    if d == 0:
        raise ValueError(f"x and y have no features (d = 0), shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if not isinstance(cost, str) or cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
    eps = check_eps(eps)
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral):
        raise TypeError(f"max_iter must be an int, got {type(max_iter).__name__}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if max_iter > MAX_ITER_LIMIT:
        raise ValueError(f"max_iter must be at most 2**63 - 1 (the operator counts in 64-bit integers), got "
                         f"{max_iter}; to run until convergence pass a tol with a large max_iter")
    if tol is not None:
        tol = check_tol(tol)
    scaling = check_scaling(scaling)

    out_dtype = torch.promote_types(x.dtype, y.dtype)
    compute = torch.float64 if out_dtype == torch.float64 else torch.float32
    x3 = x3.to(compute).contiguous()
    y3 = y3.to(compute).contiguous()
    a2 = _weights("a", a, batch, n, "x", x3)
    b2 = _weights("b", b, batch, m, "y", y3)

    if check_finite:
        if is_compiling() or functorch_active():
            # As an op: it stays in compiled graphs and sees vmap's whole batch.
            # It returns a zero scalar; adding it keeps the check in the graph
            # (an op whose result is unused would be removed).
            a2 = a2 + check_values(
                x3.detach(), y3.detach(), a2.detach(), b2.detach(), a is not None, b is not None, cost
            )
        else:  # eager: the same checks without the custom-op dispatch (~30 us)
            _check_values(x3, y3, a2, b2, a is not None, b is not None, cost)
    return Problem(x3, y3, a2, b2, batched, eps, cost, int(max_iter), tol, out_dtype, scaling, bool(check_finite))


def check_eps(eps) -> float:
    """``eps`` as a positive finite float (a number, or a one-element tensor without grad)."""
    return _check_number("eps", eps, positive=True)


def check_tol(tol) -> float:
    """``tol`` as a positive finite float (a number, or a one-element tensor without grad)."""
    return _check_number("tol", tol, positive=True)


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


def _check_values(x, y, a, b, has_a: bool, has_b: bool, cost: str) -> None:
    """Data-dependent checks, gathered into a single host read."""
    sum_tol = 1e-6 if x.dtype == torch.float64 else 1e-4
    flags = {
        "x contains NaN or inf": ~torch.isfinite(x).all(),
        "y contains NaN or inf": ~torch.isfinite(y).all(),
    }
    if has_a:
        flags["a contains NaN or inf"] = ~torch.isfinite(a).all()
        flags["a has negative entries"] = (a < 0).any()
        flags[f"a must sum to 1 (within {sum_tol:g}) along its last dimension"] = (
            (a.sum(-1) - 1).abs() > sum_tol
        ).any()
    if has_b:
        flags["b contains NaN or inf"] = ~torch.isfinite(b).all()
        flags["b has negative entries"] = (b < 0).any()
        flags[f"b must sum to 1 (within {sum_tol:g}) along its last dimension"] = (
            (b.sum(-1) - 1).abs() > sum_tol
        ).any()
    if cost == "cosine":
        flags["x contains a zero vector, which has no direction for the cosine cost"] = (
            (x.norm(dim=-1) == 0).any()
        )
        flags["y contains a zero vector, which has no direction for the cosine cost"] = (
            (y.norm(dim=-1) == 0).any()
        )
    bad = torch.stack(list(flags.values())).tolist()
    for message, is_bad in zip(flags, bad):
        if is_bad:
            raise ValueError(message)


@torch.library.custom_op("sinsim_ext::check_values", mutates_args=())
def check_values(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                 has_a: bool, has_b: bool, cost: str) -> torch.Tensor:
    """Raise ``ValueError`` for bad values (see :func:`_check_values`); return a zero scalar."""
    _check_values(x, y, a, b, has_a, has_b, cost)
    return x.new_zeros(())


@check_values.register_fake
def _check_values_fake(x, y, a, b, has_a, has_b, cost):
    return x.new_empty(())


def _check_values_vmap(info, in_dims, x, y, a, b, has_a, has_b, cost):
    """Under vmap: check the whole batch at once (mapped dim moved to the front)."""
    x, y, a, b = (t if d is None else t.movedim(d, 0) for t, d in zip((x, y, a, b), in_dims))
    return check_values(x, y, a, b, has_a, has_b, cost), None


check_values.register_vmap(_check_values_vmap)


def warn_if_unconverged(error: torch.Tensor, pb: Problem, debias: bool = False, stacklevel: int = 4) -> None:
    """:class:`~sinsim_ext.convergence.SinkhornConvergenceWarning` when some
    problem ended above its threshold, or is beyond what its dtype resolves
    (see :mod:`sinsim_ext.convergence`, :mod:`sinsim_ext.resolution`)."""
    warn_unconverged(
        error,
        tol=pb.tol,
        max_iter=pb.max_iter,
        scaling=pb.scaling,
        check_finite=pb.check_finite,
        stacklevel=stacklevel,
        resolution=lambda: resolution_ratios(pb, debias),
        dtype=pb.x.dtype,
    )


def resolution_ratios(pb: Problem, debias: bool = False) -> torch.Tensor:
    """:func:`sinsim_ext.resolution.ratios` of the problems (``(2, B)``, no host read)."""
    return resolution.ratios(pb.x, pb.y, pb.a, pb.b, pb.eps, pb.cost, debias)


def error_or_unknown(error: torch.Tensor, pb: Problem, debias: bool = False) -> torch.Tensor:
    """The returned marginal error (``(B,)``), NaN for the problems the compute
    dtype cannot resolve: there the error reads small on a wrong plan."""
    return resolution.mark_unresolved(error, resolution_ratios(pb, debias), pb.x.dtype)
