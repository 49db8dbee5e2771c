"""Argument validation shared by the compiled operator and the reference.

Every public entry point funnels its arguments through :func:`prepare` (the
options through :class:`sinsim_ext.SinkhornOptions`), so a bad call fails the
same way whichever backend it would have reached: a ``TypeError`` or
``ValueError`` that names the argument and says what was expected.
:func:`prepare` also puts the inputs in the one layout the kernels take:
batched ``(B, n, d)`` / ``(B, m, d)`` points and ``(B, n)`` / ``(B, m)``
weights, contiguous, in the compute dtype (float32, or float64 when an input
is float64; float16 and bfloat16 are computed in float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch

from . import resolution
from ._modes import functorch_active, is_compiling
from .convergence import warn_unconverged
from .costs import COSTS
from .options import SinkhornOptions


@dataclass(frozen=True)
class Problem:
    """Validated, normalised arguments of one Sinkhorn call."""

    x: torch.Tensor  # (B, n, d), compute dtype, contiguous
    y: torch.Tensor  # (B, m, d)
    a: torch.Tensor  # (B, n), sums to 1
    b: torch.Tensor  # (B, m), sums to 1
    batched: bool  # False when the caller passed (n, d) / (m, d)
    out_dtype: torch.dtype  # dtype of the returned value
    options: SinkhornOptions

    def unbatched(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (batch first) as the caller's shape: without the batch of one
        when the caller passed unbatched points."""
        return t if self.batched else t[0]


def _check_points(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.dim() not in (2, 3):
        raise ValueError(
            f"{name} must have shape (n, d) or (B, n, d), got {tuple(t.shape)}"
        )


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


def prepare(x, y, options: Optional[SinkhornOptions] = None, *, a=None, b=None, caller: str = "prepare",
            **fields) -> Problem:
    """Validate the arguments of a Sinkhorn call and normalise their layout.

    ``options`` (:class:`sinsim_ext.SinkhornOptions`, the defaults when None)
    with ``fields`` replaced are validated when they are made; here the
    tensors are. Shape and type checks always run. Value checks (NaN/inf,
    negative weights, weights that do not sum to 1, points the cost cannot
    take) read the data, which on a GPU means one device synchronisation;
    ``check_finite=False`` skips them, and non-finite inputs then give
    non-finite outputs. The value checks are the custom op
    ``sinsim_ext::check_values``, so they also run inside code compiled by
    ``torch.compile`` (as an op of the graph, ``fullgraph=True`` included)
    and under ``torch.func.vmap`` (on the whole batch).
    """
    options = SinkhornOptions.resolve(options, fields, caller)
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

    out_dtype = torch.promote_types(x.dtype, y.dtype)
    compute = torch.float64 if out_dtype == torch.float64 else torch.float32
    x3 = x3.to(compute).contiguous()
    y3 = y3.to(compute).contiguous()
    a2 = _weights("a", a, batch, n, "x", x3)
    b2 = _weights("b", b, batch, m, "y", y3)

    if options.check_finite:
        cost = options.cost
        if is_compiling() or functorch_active():
            # As an op: it stays in compiled graphs and sees vmap's whole batch.
            # It returns a zero scalar; adding it keeps the check in the graph
            # (an op whose result is unused would be removed).
            a2 = a2 + check_values(
                x3.detach(), y3.detach(), a2.detach(), b2.detach(), a is not None, b is not None, cost
            )
        else:  # eager: the same checks without the custom-op dispatch (~30 us)
            _check_values(x3, y3, a2, b2, a is not None, b is not None, cost)
    return Problem(x3, y3, a2, b2, batched, out_dtype, options)


def value_flags(x, y, a, b, has_a: bool, has_b: bool, cost: str) -> Dict[str, torch.Tensor]:
    """``{message: flag}``, the data-dependent checks as boolean tensors (no host read)."""
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
    flags.update(COSTS[cost].invalid_points("x", x))
    flags.update(COSTS[cost].invalid_points("y", y))
    return flags


def _check_values(x, y, a, b, has_a: bool, has_b: bool, cost: str) -> None:
    """Data-dependent checks (:func:`value_flags`), gathered into a single host read."""
    flags = value_flags(x, y, a, b, has_a, has_b, cost)
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


def warn_if_unconverged(error: torch.Tensor, pb: Problem, stacklevel: int = 4) -> None:
    """:class:`~sinsim_ext.convergence.SinkhornConvergenceWarning` when some
    problem ended above its threshold, or is beyond what its dtype resolves
    (see :mod:`sinsim_ext.convergence`, :mod:`sinsim_ext.resolution`)."""
    warn_unconverged(
        error,
        pb.options,
        stacklevel=stacklevel,
        resolution=lambda: resolution_ratios(pb),
        dtype=pb.x.dtype,
    )


def resolution_ratios(pb: Problem) -> torch.Tensor:
    """:func:`sinsim_ext.resolution.ratios` of the problems (``(2, B)``, no host read)."""
    return resolution.ratios(pb.x, pb.y, pb.a, pb.b, pb.options.eps, pb.options.cost, pb.options.debias)


def reported_error(errors: torch.Tensor, pb: Problem) -> torch.Tensor:
    """The marginal error a caller gets: the worst over each problem's solves
    (``errors`` is ``(solves, B)``; three solves with ``debias``), detached,
    NaN for the problems the compute dtype cannot resolve (there the error
    reads small on a wrong plan), in the caller's shape."""
    worst = errors.detach().amax(0)
    return pb.unbatched(resolution.mark_unresolved(worst, resolution_ratios(pb), pb.x.dtype))
