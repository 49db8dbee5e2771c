r"""The public functions of the compiled operator.

:func:`solve` is the entry point: points and weights in, a
:class:`sinsim_ext.SinkhornResult` out (value, potentials, plan, iterations,
error), the options as one :class:`sinsim_ext.SinkhornOptions` or as its
fields. :func:`sinkhorn_cost` (the value, optionally with the error, for a
loss) and :func:`sinkhorn` (the potentials of ``OT(x, y)``) are the same solve
returning less. All three validate through one path (:func:`_solve`): the
options once, the tensors once (:func:`sinsim_ext._checks.prepare`), the op
(:mod:`sinsim_ext.ops`), the convergence report by one rule
(:mod:`sinsim_ext.convergence`).

Differentiation (docs/design/maths.md, "The first-order backward"). At the
fixed point the value ``OT = <a, f> + <b, g>`` has ``dOT/dC = P`` with
``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, ``dOT/da = f`` and
``dOT/db = g`` (the potentials' own derivatives drop out: envelope theorem).

* First-order reverse mode of the value (``backward()``, ``autograd.grad``
  without ``create_graph``): the compiled ``sinkhorn_value_backward``, one
  pass over the cost matrix; time and memory do not depend on ``max_iter``.
* Everything else (double backward, forward mode, ``torch.func``) and the
  potentials: the same gradient written in PyTorch
  (:func:`sinsim_ext.costs.cost_vjp`) with potentials whose own derivatives
  come from the implicit function theorem (:mod:`sinsim_ext.implicit`), so the
  gradient can be differentiated again.

Both are exact at convergence; after a fixed small number of iterations the
first is the gradient of the current plan's transport cost, the usual choice
in practice.
"""

from __future__ import annotations

from typing import Optional

import torch

from ._checks import Problem, prepare, reported_error, warn_if_unconverged
from ._modes import derivatives_wanted, is_compiling
from .costs import cost_matrix
from .implicit import implicit_potentials, plan
from .ops import backends, double_backward_guard, value_op
from .options import SinkhornOptions
from .result import SinkhornResult

__all__ = ["backends", "sinkhorn", "sinkhorn_cost", "solve"]


def _solve(x, y, options, a, b, fields, caller: str, *, detach: bool = False, warn: bool = True):
    """``(problem, op outputs)``: options and tensors validated once, the op run, the convergence rule applied."""
    pb = prepare(x, y, options, a=a, b=b, caller=caller, **fields)
    out = value_op(pb, detach=detach)
    if warn:
        warn_if_unconverged(out.error, pb, stacklevel=5)
    return pb, out


def _public_value(value: torch.Tensor, pb: Problem, *inputs) -> torch.Tensor:
    """The op's value in the caller's dtype and shape (under torch.compile with
    the guard that keeps double backward refused, :func:`double_backward_guard`)."""
    value = value.to(pb.out_dtype)
    guard = double_backward_guard(*inputs) if is_compiling() else None
    if guard is not None:
        value = value + guard.to(value.dtype)
    return pb.unbatched(value)


def _implicit(pb: Problem):
    """``differentiate(f, g)`` for a result: the potentials made differentiable
    in the inputs (implicit differentiation) when anything differentiates."""

    def differentiate(f, g):
        if not derivatives_wanted(pb.x, pb.y, pb.a, pb.b):
            return f, g
        batched = (f, g) if pb.batched else (f.unsqueeze(0), g.unsqueeze(0))
        C = cost_matrix(pb.x, pb.y, pb.options.cost)
        f, g = implicit_potentials(C, pb.a, pb.b, *batched, pb.options.eps)
        return pb.unbatched(f), pb.unbatched(g)

    return differentiate


def _plan(pb: Problem):
    """``plan(f, g)`` for a result, in the caller's shape."""

    def form(f, g):
        f, g = (f, g) if pb.batched else (f.unsqueeze(0), g.unsqueeze(0))
        C = cost_matrix(pb.x, pb.y, pb.options.cost)
        return pb.unbatched(plan(C, f.to(pb.x.dtype), g.to(pb.x.dtype), pb.a, pb.b, pb.options.eps))

    return form


def solve(
    x: torch.Tensor,
    y: torch.Tensor,
    options: Optional[SinkhornOptions] = None,
    *,
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    **fields,
) -> SinkhornResult:
    r"""Solve the entropic optimal-transport problem between two point clouds.

    ``OT_eps(x, y) = <a, f> + <b, g>`` at the Sinkhorn fixed point (see
    :mod:`sinsim_ext.reference` for the iteration), or, with ``debias=True``,
    the Sinkhorn divergence ``OT(x, y) - OT(x, x)/2 - OT(y, y)/2``, which is
    zero when the two clouds coincide.

    Args:
        x: points ``(n, d)``, or a batch ``(B, n, d)``.
        y: points ``(m, d)``, or ``(B, m, d)`` (batched like ``x``).
        options: a :class:`sinsim_ext.SinkhornOptions` (eps, cost, max_iter,
            tol, scaling, debias, check_finite, cost_mode); the defaults when
            None.
        a, b: weights ``(n,)``/``(B, n)`` and ``(m,)``/``(B, m)``,
            non-negative, summing to 1; uniform when None.
        **fields: options by name, replacing those of ``options``:
            ``solve(x, y, eps=0.1)`` or ``solve(x, y, opts, tol=1e-6)``.

    Returns:
        A :class:`sinsim_ext.SinkhornResult`: ``value`` (differentiable in
        ``x``, ``y``, ``a`` and ``b``, as :func:`sinkhorn_cost`'s), ``f``,
        ``g`` and ``plan`` (made differentiable by implicit differentiation
        when read), ``n_iter`` and ``error`` (NaN where the compute dtype
        cannot resolve the problem). A result whose final error is not below
        ``tol`` (or :data:`sinsim_ext.CONVERGENCE_TOL`) raises a
        :class:`sinsim_ext.SinkhornConvergenceWarning`, as
        :class:`sinsim_ext.SinkhornOptions` describes.

    Example::

        res = sinsim_ext.solve(x, y, eps=0.05, tol=1e-6, max_iter=1000)
        res.value, res.error               # the cost and its convergence report
        res.plan                           # (n, m), differentiable end to end
    """
    pb, out = _solve(x, y, options, a, b, fields, "solve")
    value = _public_value(out.value, pb, x, y, a, b)
    n_iter = pb.unbatched(out.n_iter.amax(0))
    error = reported_error(out.error, pb)
    return SinkhornResult(value, pb.unbatched(out.f), pb.unbatched(out.g), n_iter, error,
                          differentiate=_implicit(pb), plan=_plan(pb))


def sinkhorn_cost(
    x: torch.Tensor,
    y: torch.Tensor,
    options: Optional[SinkhornOptions] = None,
    *,
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    return_error: bool = False,
    **fields,
):
    r"""The value of :func:`solve` alone: ``OT_eps(x, y)``, or the Sinkhorn
    divergence with ``debias=True``.

    Arguments as :func:`solve` (the options as a :class:`sinsim_ext.SinkhornOptions`
    or by name: ``sinkhorn_cost(x, y, eps=0.05)``).

    Args:
        return_error: also return the final marginal error, ``(value,
            error)``, ``error`` shaped like the value (the worst of the three
            problems with ``debias``), a device tensor; no warning is issued
            then (the caller reads the error when it wants, e.g. a training
            loop, without a device synchronisation per step). The error is
            NaN (unknown) for a problem the compute dtype cannot resolve, eps
            far below or far above its costs (:mod:`sinsim_ext.resolution`),
            where the marginal error would read small on a wrong result.

    Returns:
        The value, a scalar for unbatched inputs or ``(B,)``, in the promoted
        dtype of ``x`` and ``y`` (float16/bfloat16 inputs are computed in
        float32). Differentiable in ``x``, ``y``, ``a`` and ``b``:

        * ``backward()``: the compiled envelope-theorem gradient (no autograd
          through the iterations; memory does not depend on ``max_iter``);
        * ``create_graph=True`` (gradient penalties, Hessian-vector products),
          forward mode (``torch.func.jvp``, ``torch.autograd.forward_ad``) and
          ``torch.func`` transforms (grad, vjp, jacrev, jacfwd, hessian,
          vmap): exact derivatives of the converged value by implicit
          differentiation (:mod:`sinsim_ext.implicit`); they cost a conjugate-
          gradient solve with the ``(n, m)`` plan.

        Under ``torch.compile`` first-order reverse mode works (``fullgraph``
        included); double backward raises PyTorch's "does not currently
        support double backward" error.
    """
    pb, out = _solve(x, y, options, a, b, fields, "sinkhorn_cost", warn=not return_error)
    value = _public_value(out.value, pb, x, y, a, b)
    if return_error:
        return value, reported_error(out.error, pb)
    return value


def sinkhorn(
    x: torch.Tensor,
    y: torch.Tensor,
    options: Optional[SinkhornOptions] = None,
    *,
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    **fields,
) -> SinkhornResult:
    """The potentials of ``OT(x, y)`` and the convergence report.

    Arguments as :func:`solve`, without ``debias`` (the potentials are those
    of one problem). When ``x``, ``y``, ``a`` or ``b`` require grad (or under
    forward mode or a ``torch.func`` transform) the potentials ``f`` and ``g``
    are differentiable in them, by implicit differentiation of the fixed point
    (:mod:`sinsim_ext.implicit`), made so before it returns, so::

        res = sinkhorn(x, y, eps=eps, tol=1e-6, max_iter=1000)
        P = transport_plan(x, y, res.f, res.g, eps=eps)   # differentiable plan

    is differentiable end to end (reverse, forward, any order); so is
    ``res.value``, here ``<a, f> + <b, g>`` of those potentials. That keeps
    the ``(n, m)`` cost matrix for the backward; call under
    ``torch.no_grad()`` when you need the values only. The potentials are
    defined up to ``(f + t, g - t)``: gauge-invariant quantities (the plan,
    ``f_i + g_j``, ``<a, f> + <b, g>``) have exact derivatives; ``f`` and
    ``g`` alone are differentiated as the representative with constant
    ``<a, f> - <b, g>``. The derivatives are those of the converged fixed
    point: pass a ``tol`` and enough ``max_iter``. Under ``torch.compile``
    the differentiable potentials cause a graph break. ``error`` is the
    marginal error as measured (the warning, not a NaN, reports a problem the
    dtype cannot resolve).
    """
    if fields.get("debias") or (options is not None and getattr(options, "debias", False)):
        raise TypeError("sinkhorn() returns the potentials of OT(x, y) alone and takes no debias; "
                        "sinsim_ext.solve(..., debias=True) gives the divergence with those potentials")
    pb, out = _solve(x, y, options, a, b, fields, "sinkhorn", detach=True)
    f, g, n_iter, error = out.f, out.g, out.n_iter[0], out.error[0]
    value = out.value
    if derivatives_wanted(pb.x, pb.y, pb.a, pb.b):
        f, g = implicit_potentials(cost_matrix(pb.x, pb.y, pb.options.cost), pb.a, pb.b, f, g, pb.options.eps)
        value = (pb.a * f).sum(-1) + (pb.b * g).sum(-1)
    return SinkhornResult(pb.unbatched(value.to(pb.out_dtype)), pb.unbatched(f), pb.unbatched(g),
                          pb.unbatched(n_iter), pb.unbatched(error), plan=_plan(pb))
