r"""How the operator reports convergence: no silent non-convergence.

Every solve ends with the L1 row-marginal error of its last iteration,
``sum_i |P 1 - a|_i`` (:class:`sinsim_ext.SinkhornResult`). A result counts as
converged when that error is below ``tol``, or, without ``tol``, below
:data:`CONVERGENCE_TOL`. An unconverged result raises a
:class:`SinkhornConvergenceWarning` that gives the error reached and what to
change (more ``max_iter``, a ``tol``, eps-scaling with ``scaling``).

Reading the error is a host read: free on the CPU, one device
synchronisation on a GPU. So the eager functions check it when that costs
nothing the caller has not already accepted: always for CPU tensors, and on
GPUs when the caller asked for the value checks (``check_finite=True``, one
sync already) or passed a ``tol``. A GPU training step (``check_finite=False``,
no ``tol``) is not synchronised: it asks for the error as a device tensor
(``sinkhorn_cost(..., return_error=True)``, or
:meth:`sinsim_ext.SinkhornLoss.value_and_error`) and reads it when it reads its
loss (the trainer does, every ``--check-every`` steps). No warning is issued
while ``torch.compile`` traces the call (the check would need the value) or
inside ``torch.func.vmap`` of the reference; read the returned error there.

A small marginal error means a converged plan only when the dtype resolves
the problem: with eps far below or far above the costs it reads small (even
0) on a wrong result. Those problems warn that they cannot be resolved
instead, and their returned error is NaN (:mod:`sinsim_ext.resolution`).

The default threshold, 1e-3, comes from measurements
(docs/performance/convergence.md): on 2-d Gaussian data at ``eps = 0.01`` a final
marginal error of 1e-3 leaves the gradient 0.7 % from the converged one, and
of 0.1 to 1 (what 100 plain iterations reach there) 50-60 %; the SinSim
workload (unit vectors, d = 128-512, ``eps = 0.05``) is below 1e-3 after 10
iterations and at float rounding after 100.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch

from ._modes import in_vmap, is_compiling
from .options import SinkhornOptions
from .resolution import limits, value_rounding

__all__ = ["CONVERGENCE_TOL", "SinkhornConvergenceWarning", "is_converged", "warn_unconverged"]

CONVERGENCE_TOL = 1e-3
"""Marginal error (L1) below which a result counts as converged when no ``tol`` is given."""

FLOAT32_COST_RATIO = limits(torch.float32).plan
"""Largest ``max C / eps`` float32 resolves (:mod:`sinsim_ext.resolution`):
beyond it float32 rounds each plan entry by more than 9 % and the marginal
error itself is unreliable (it can read 0 on a wrong plan)."""


class SinkhornConvergenceWarning(UserWarning, RuntimeWarning):
    """A Sinkhorn solve ended above its tolerance (``tol``, or :data:`CONVERGENCE_TOL`).

    A ``UserWarning`` (and, for code written against earlier versions, a
    ``RuntimeWarning``). Silence it with
    ``warnings.simplefilter("ignore", sinsim_ext.SinkhornConvergenceWarning)``
    or turn it into an error with ``"error"``.
    """


def threshold(tol: Optional[float]) -> float:
    """The marginal error a result must get below to count as converged."""
    return CONVERGENCE_TOL if tol is None else float(tol)


def is_converged(error, tol: Optional[float] = None) -> bool:
    """True when every marginal error in ``error`` is below the threshold (a host read)."""
    worst = float(torch.as_tensor(error).detach().max())
    return worst < threshold(tol)


def advice(worst: float, options: SinkhornOptions) -> str:
    """The message of the warning: what was reached, and what to change."""
    tol, max_iter, scaling = options.tol, options.max_iter, options.scaling
    goal = f"tol={tol:g}" if tol is not None else f"the default convergence threshold {CONVERGENCE_TOL:g} (no tol given)"
    fixes = [f"raise max_iter (now {max_iter})"]
    if scaling is None:
        fixes.append("use eps-scaling (scaling=0.8)")
    else:
        fixes.append(f"anneal more slowly (scaling closer to 1 than {scaling:g}, e.g. 0.9)")
    fixes.append("raise eps")
    if tol is not None:
        fixes.append("loosen tol")
    return (
        f"Sinkhorn did not converge: marginal error {worst:.3g} after the last of max_iter={max_iter} iterations, "
        f"not below {goal}. The value and its gradient are those of an unconverged plan. To fix: "
        + "; ".join(fixes)
        + "."
    )


def unresolved_advice(measured, dtype: torch.dtype, worst: float) -> Optional[str]:
    """The message for a solve ``dtype`` cannot resolve (``measured``: the
    largest of each row of :func:`sinsim_ext.resolution.ratios`), else None."""
    name = str(dtype).replace("torch.", "")
    lim = limits(dtype)
    in_float32 = dtype == torch.float32
    small, large = measured
    if not small <= lim.plan:
        return (
            f"Sinkhorn in {name} cannot resolve this plan: max cost / eps is up to {small:.3g}, above {lim.plan:.3g}, "
            f"so {name} rounds each exp(-C/eps) by more than 9 % and the marginal error ({worst:.3g}) cannot be "
            "trusted. To fix: " + ("pass float64 inputs, or " if in_float32 else "") + "raise eps, or rescale the points."
        )
    if not large <= lim.value:
        return (
            f"Sinkhorn in {name} cannot resolve this value: eps is {large:.3g} times the mean cost <a b^T, C>, above "
            f"{lim.value:.3g}, so the eps-sized potentials carry rounding errors of about "
            f"{value_rounding(dtype, large):.2g} times the mean cost (the value OT_eps tends to as eps grows) and "
            f"neither the value nor the marginal error ({worst:.3g}) can be trusted. To fix: lower eps"
            + (", or pass float64 inputs." if in_float32 else ".")
        )
    return None


def warn_unconverged(
    error: torch.Tensor,
    options: SinkhornOptions,
    *,
    stacklevel: int = 3,
    resolution: Optional[Callable[[], torch.Tensor]] = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Warn (:class:`SinkhornConvergenceWarning`) when some problem's final error is not below the threshold.

    Skipped while torch.compile traces, inside ``torch.func.vmap`` (the
    compiled operator's vmap rule checks the whole batch instead), and for
    GPU tensors when the check would add the only device synchronisation of
    the call (``options.check_finite`` off and no ``options.tol``): see the
    module docstring.
    ``resolution``: a function giving :func:`sinsim_ext.resolution.ratios`
    of the problems (called only when the check runs; read in the same
    transfer); past the limits of the compute ``dtype`` the warning says that
    the solve cannot be resolved instead (:mod:`sinsim_ext.resolution`).
    """
    if is_compiling() or in_vmap() or error.numel() == 0:
        return
    if error.device.type != "cpu" and not options.check_finite and options.tol is None:
        return
    values = [error.detach().max().double().reshape(1)]
    if resolution is not None:
        values.append(resolution().detach().double().amax(dim=1).to(error.device))
    read = torch.cat(values).tolist()
    worst = read[0]
    message = unresolved_advice(read[1:], dtype, worst) if resolution is not None else None
    if message is None and not worst < threshold(options.tol):
        message = advice(worst, options)
    if message is not None:
        warnings.warn(message, SinkhornConvergenceWarning, stacklevel=stacklevel)
