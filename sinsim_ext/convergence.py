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

__all__ = ["CONVERGENCE_TOL", "SinkhornConvergenceWarning", "is_converged", "warn_unconverged"]

CONVERGENCE_TOL = 1e-3
"""Marginal error (L1) below which a result counts as converged when no ``tol`` is given."""

FLOAT32_COST_RATIO = 2.0**21 / 1.4426950408889634
"""Largest ``max C / eps`` float32 resolves: the kernels hold ``K = -log2(e) C / eps``,
which float32 rounds by up to ``|K| 2^-24``, i.e. 1/8 in the exponent of
every plan entry (a factor 2^(1/8) = 9 %) at ``|K| = 2^21``. Beyond it the
marginal error itself is unreliable (it can read 0 on a wrong plan)."""


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


def advice(worst: float, tol: Optional[float], max_iter: int, scaling: Optional[float]) -> str:
    """The message of the warning: what was reached, and what to change."""
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


def warn_unconverged(
    error: torch.Tensor,
    *,
    tol: Optional[float],
    max_iter: int,
    scaling: Optional[float] = None,
    check_finite: bool = True,
    stacklevel: int = 3,
    cost_ratio: Optional[Callable[[], torch.Tensor]] = None,
) -> None:
    """Warn (:class:`SinkhornConvergenceWarning`) when some problem's final error is not below the threshold.

    Skipped while torch.compile traces, inside ``torch.func.vmap`` (the
    compiled operator's vmap rule checks the whole batch instead), and for
    GPU tensors when the check would add the only device synchronisation of
    the call (``check_finite=False`` and no ``tol``): see the module docstring.
    ``cost_ratio``: for float32 problems, a function giving a bound on
    ``max C / eps`` (called only when the check runs; read in the same
    transfer); above :data:`FLOAT32_COST_RATIO` the warning says
    that float32 cannot resolve the plan.
    """
    if is_compiling() or in_vmap() or error.numel() == 0:
        return
    if error.device.type != "cpu" and not check_finite and tol is None:
        return
    values = [error.detach().max().double()]
    if cost_ratio is not None:
        values.append(cost_ratio().detach().double().to(error.device))
    read = torch.stack(values).tolist()
    worst = read[0]
    if cost_ratio is not None and not read[1] <= FLOAT32_COST_RATIO:
        warnings.warn(
            f"Sinkhorn in float32 cannot resolve this plan: max cost / eps is up to {read[1]:.3g}, above "
            f"{FLOAT32_COST_RATIO:.3g}, so float32 rounds each exp(-C/eps) by more than 9 % and the marginal "
            f"error ({worst:.3g}) cannot be trusted. To fix: pass float64 inputs, or raise eps, or rescale the points.",
            SinkhornConvergenceWarning,
            stacklevel=stacklevel,
        )
        return
    if not worst < threshold(tol):
        warnings.warn(advice(worst, tol, max_iter, scaling), SinkhornConvergenceWarning, stacklevel=stacklevel)
