r"""The compiled Sinkhorn operator: thin wrappers over ``torch.ops.sinsim_ext``.

The C++ library (``csrc/``) declares two ops and implements them for CPU and,
when built with CUDA, for CUDA:

* ``sinkhorn_value``: solves the problem(s) and returns the value together
  with the dual potentials, iteration counts and marginal errors;
* ``sinkhorn_value_backward``: the envelope-theorem gradient of the value
  with respect to the points, from the saved potentials only.

This module registers their fake kernels (so ``torch.compile`` can trace
them) and the autograd formula, then exposes the public functions.

Backward (DESIGN.md section 3). At the fixed point the value
``OT = <a, f> + <b, g>`` has ``dOT/dC = P`` with
``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, ``dOT/da = f`` and
``dOT/db = g`` (the potentials' own derivatives drop out), so for the squared
Euclidean cost ``grad_x = 2 (diag(P 1) x - P y)`` and
``grad_y = 2 (diag(P^T 1) y - P^T x)``. The backward makes one pass over the
cost matrix: its time and memory do not depend on ``max_iter``. It is exact
at convergence; after a fixed small number of iterations it is the gradient
of the current plan's transport cost, the usual choice in practice.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

try:
    from . import _C  # noqa: F401  (loading the library registers the ops)
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        "sinsim_ext._C, the compiled Sinkhorn library, could not be loaded "
        f"({exc}). Build it from the repository root with "
        "`pip install -e . --no-build-isolation` (see README.md)."
    ) from exc

from ._checks import Problem, prepare, warn_if_unconverged
from .result import SinkhornResult

__all__ = ["backends", "sinkhorn", "sinkhorn_cost"]

_VALUE = "sinsim_ext::sinkhorn_value"
_BACKWARD = "sinsim_ext::sinkhorn_value_backward"


@torch.library.register_fake(_VALUE)
def _sinkhorn_value_fake(x, y, a, b, eps, cost, max_iter, tol, debias):
    batch, n, m = x.shape[0], x.shape[1], y.shape[1]
    problems = 3 if debias else 1

    def sym(size):
        return x.new_empty((batch, size)) if debias else x.new_empty((0,))

    return (
        x.new_empty((batch,)),
        x.new_empty((batch, n)),
        x.new_empty((batch, m)),
        sym(n),
        sym(n),
        sym(m),
        sym(m),
        x.new_empty((problems, batch), dtype=torch.int32),
        x.new_empty((problems, batch)),
    )


@torch.library.register_fake(_BACKWARD)
def _sinkhorn_value_backward_fake(grad, x, y, a, b, f, g, f_xx, g_xx, f_yy, g_yy, eps, cost, debias):
    return torch.empty_like(x), torch.empty_like(y)


def _setup_context(ctx, inputs, output):
    x, y, a, b, eps, cost, _max_iter, _tol, debias = inputs
    _value, f, g, f_xx, g_xx, f_yy, g_yy, n_iter, error = output
    ctx.save_for_backward(x, y, a, b, f, g, f_xx, g_xx, f_yy, g_yy)
    ctx.eps, ctx.cost, ctx.debias = eps, cost, debias
    ctx.mark_non_differentiable(f, g, f_xx, g_xx, f_yy, g_yy, n_iter, error)


def _backward(ctx, grad_value, *_unused):
    x, y, a, b, f, g, f_xx, g_xx, f_yy, g_yy = ctx.saved_tensors
    grad_x = grad_y = grad_a = grad_b = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        grad_x, grad_y = torch.ops.sinsim_ext.sinkhorn_value_backward(
            grad_value, x, y, a, b, f, g, f_xx, g_xx, f_yy, g_yy, ctx.eps, ctx.cost, ctx.debias
        )
    if ctx.needs_input_grad[2]:
        df = f - 0.5 * (f_xx + g_xx) if ctx.debias else f
        grad_a = grad_value.unsqueeze(-1) * df
    if ctx.needs_input_grad[3]:
        dg = g - 0.5 * (f_yy + g_yy) if ctx.debias else g
        grad_b = grad_value.unsqueeze(-1) * dg
    return grad_x, grad_y, grad_a, grad_b, None, None, None, None, None


torch.library.register_autograd(_VALUE, _backward, setup_context=_setup_context)


def _run(pb: Problem, debias: bool):
    tol = pb.tol if pb.tol is not None else 0.0
    return torch.ops.sinsim_ext.sinkhorn_value(
        pb.x, pb.y, pb.a, pb.b, pb.eps, pb.cost, pb.max_iter, tol, bool(debias)
    )


def sinkhorn_cost(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.05,
    cost: str = "sqeuclidean",
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    max_iter: int = 100,
    tol: Optional[float] = None,
    debias: bool = False,
    check_finite: bool = True,
) -> torch.Tensor:
    r"""Entropy-regularised optimal-transport cost between two point clouds.

    ``OT_eps(x, y) = <a, f> + <b, g>`` at the Sinkhorn fixed point (see
    :mod:`sinsim_ext.reference` for the iteration), or, with ``debias=True``,
    the Sinkhorn divergence ``OT(x, y) - OT(x, x)/2 - OT(y, y)/2``, which is
    zero when the two clouds coincide.

    Args:
        x: points ``(n, d)``, or a batch ``(B, n, d)``.
        y: points ``(m, d)``, or ``(B, m, d)`` (batched like ``x``).
        eps: entropic regularisation, > 0, in units of the cost.
        cost: ``"sqeuclidean"`` (``||x_i - y_j||^2``) or ``"cosine"``
            (``1 - cos(x_i, y_j)``).
        a, b: weights ``(n,)``/``(B, n)`` and ``(m,)``/``(B, m)``,
            non-negative, summing to 1; uniform when None.
        max_iter: iterations (each a column then a row update).
        tol: stop a problem once its L1 marginal error is below ``tol``; a
            ``RuntimeWarning`` says when some problem does not get there.
        debias: return the Sinkhorn divergence (three problems solved
            together).
        check_finite: check the data for NaN/inf, negative weights and so on
            (one device synchronisation on GPUs); off, bad values give NaN.

    Returns:
        The value, a scalar for unbatched inputs or ``(B,)``, in the promoted
        dtype of ``x`` and ``y`` (float16/bfloat16 inputs are computed in
        float32). Differentiable in ``x``, ``y``, ``a`` and ``b`` through the
        envelope-theorem backward (no autograd through the iterations;
        backward memory does not depend on ``max_iter``).
    """
    pb = prepare(x, y, eps=eps, cost=cost, a=a, b=b, max_iter=max_iter, tol=tol, check_finite=check_finite)
    out = _run(pb, debias)
    warn_if_unconverged(out[8], pb)
    value = out[0].to(pb.out_dtype)
    return value if pb.batched else value[0]


def sinkhorn(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.05,
    cost: str = "sqeuclidean",
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    max_iter: int = 100,
    tol: Optional[float] = None,
    check_finite: bool = True,
) -> SinkhornResult:
    """Solve the problem and return the potentials and convergence report.

    Same arguments as :func:`sinkhorn_cost`. The potentials carry no
    gradient (use :func:`sinkhorn_cost` to differentiate the value, or
    :func:`sinsim_ext.transport_plan` to build the plan ``P``).
    """
    pb = prepare(x, y, eps=eps, cost=cost, a=a, b=b, max_iter=max_iter, tol=tol, check_finite=check_finite)
    with torch.no_grad():
        out = _run(pb, debias=False)
    f, g, n_iter, error = out[1], out[2], out[7][0], out[8][0]
    warn_if_unconverged(error, pb)
    if not pb.batched:
        f, g, n_iter, error = f[0], g[0], n_iter[0], error[0]
    return SinkhornResult(f, g, n_iter, error)


def backends() -> Tuple[str, ...]:
    """The back ends compiled into this build, e.g. ``("cpu", "cuda")``."""
    return tuple(torch.ops.sinsim_ext.compiled_backends())
