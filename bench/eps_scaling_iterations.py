"""Iterations to equal accuracy, plain Sinkhorn against eps-scaling.

    python bench/eps_scaling_iterations.py [n] [problem ...]

For each problem and eps in {1e-2, 1e-3, 1e-4}: the smallest ``max_iter``
at which the value is within 1e-4 (relative) and the gradient in ``x``
within 1e-3 (relative, 2-norm) of a converged float64 solve, for plain
iterations and for ``scaling`` in {0.5, 0.8, 0.9, 0.95}. Budgets are
searched on a doubling grid, then bisected (the accuracy is not exactly
monotone in the budget, so a count is "a budget that reaches it", within
the bisection's resolution). Iteration counts do not depend on the machine;
the time per iteration is that of bench/test_sinkhorn_cpu.py.

The converged reference: the compiled kernel in float64 with scaling = 0.95
and tol = 1e-11 (its marginal error is printed). Problems (n points each):

* ``unit-128``: the SinSim geometry, two noisy views of unit vectors in 128-d
  (bench/common.py ``embeddings``), costs in [0, 4];
* ``unit-128-indep``: independent random unit vectors in 128-d (no
  matching pairs: the harder case the convergence defaults were measured on);
* ``separated``: Gaussian points of scale 10 in 6-d (costs up to ~1e3), where
  the plan is nearly a permutation: eps-scaling's best case;
* ``gauss-2d``: standard Gaussian points in 2-d (the 2-d case of the convergence tests), a
  dense problem with near ties: plain Sinkhorn's worst case.
"""

from __future__ import annotations

import sys
import time
import warnings

import torch

import sinsim_ext
from common import embeddings, rel_err, value_and_grad

CAP = 20000
SCALINGS = (None, 0.5, 0.8, 0.9, 0.95)


def problems(n: int):
    g = torch.Generator().manual_seed(0)
    yield "unit-128", embeddings(n, dtype=torch.float64)
    u = torch.randn(2, n, 128, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=-1, keepdim=True)
    yield "unit-128-indep", (u[0], u[1])
    yield "separated", (10 * torch.randn(n, 6, generator=g, dtype=torch.float64),
                        10 * torch.randn(n, 6, generator=g, dtype=torch.float64))
    yield "gauss-2d", (torch.randn(n, 2, generator=g, dtype=torch.float64),
                       torch.randn(n, 2, generator=g, dtype=torch.float64))


def accurate(x, y, eps, scaling, budget, want_value, want_grad) -> bool:
    value, grad = value_and_grad(sinsim_ext.sinkhorn_cost, x, y, eps=eps, scaling=scaling, max_iter=budget)
    return rel_err(value, want_value) <= 1e-4 and rel_err(grad, want_grad) <= 1e-3


def iterations_to_accuracy(x, y, eps, scaling, want_value, want_grad):
    lo, hi = 0, 10
    while not accurate(x, y, eps, scaling, hi, want_value, want_grad):
        lo, hi = hi, 2 * hi
        if lo >= CAP:
            return None
    while hi - lo > max(2, hi // 20):  # bisect to 5 %
        mid = (lo + hi) // 2
        if accurate(x, y, eps, scaling, mid, want_value, want_grad):
            hi = mid
        else:
            lo = mid
    return hi


def main(n: str = "128", *only: str) -> None:
    warnings.simplefilter("ignore", sinsim_ext.SinkhornConvergenceWarning)
    torch.set_num_threads(1)
    n = int(n)
    print(f"n = m = {n}, float64, CPU kernel; cap {CAP} iterations; '-' = not reached within the cap")
    header = "| problem | eps | converged ref. error | plain | " + " | ".join(f"scaling {s}" for s in SCALINGS[1:]) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, (x, y) in problems(n):
        if only and name not in only:
            continue
        for eps in (1e-2, 1e-3, 1e-4):
            start = time.perf_counter()
            ref = sinsim_ext.sinkhorn(x, y, eps=eps, scaling=0.95, max_iter=200000, tol=1e-11)
            want_value, want_grad = value_and_grad(sinsim_ext.sinkhorn_cost, x, y, eps=eps, scaling=0.95,
                                                   max_iter=200000, tol=1e-11)
            counts = [iterations_to_accuracy(x, y, eps, s, want_value, want_grad) for s in SCALINGS]
            cells = " | ".join("-" if c is None else str(c) for c in counts)
            print(f"| {name} | {eps:g} | {float(ref.error):.1e} ({int(ref.n_iter)} it.) | {cells} |"
                  f"  [{time.perf_counter() - start:.0f} s]", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
