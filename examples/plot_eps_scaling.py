"""
Small eps: eps-scaling and the convergence report
=================================================

Plain Sinkhorn iterations slow down as ``eps`` shrinks against the spread of
the costs. At ``eps = 1e-3`` on independent unit vectors they need thousands
of iterations (a measured table: :doc:`/performance/convergence`); eps-scaling (``scaling=r``) starts at an ``eps`` as large as
the costs and shrinks it by ``r`` at every iteration, carrying the
potentials over, then iterates at the target ``eps``. Every result carries
its own convergence report (``n_iter``, ``error``), and an unconverged one
raises :class:`sinsim_ext.SinkhornConvergenceWarning` instead of passing
silently.
"""

import warnings

import matplotlib.pyplot as plt
import torch

import sinsim_ext

torch.manual_seed(0)
x = torch.nn.functional.normalize(torch.randn(64, 128, dtype=torch.float64), dim=1)
y = torch.nn.functional.normalize(torch.randn(64, 128, dtype=torch.float64), dim=1)
eps = 1e-3

# %%
# Plain iterations at the default budget do not converge, and say so
# --------------------------------------------------------------------
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    res = sinsim_ext.sinkhorn(x, y, eps=eps, max_iter=100)
print(f"plain, max_iter=100: {int(res.n_iter)} iterations, marginal error {float(res.error):.2e}")
for w in caught:
    print(f"{w.category.__name__}: {w.message}")

# %%
# With eps-scaling and a tolerance
# --------------------------------
# ``tol`` stops the iterations once the L1 marginal error is below it (only at
# the target eps); ``n_iter`` counts the annealing stages too.
for scaling in (None, 0.9, 0.95):
    res = sinsim_ext.sinkhorn(x, y, eps=eps, max_iter=20000, tol=1e-4, scaling=scaling)
    name = "plain" if scaling is None else f"scaling={scaling}"
    print(f"{name:13s}: {int(res.n_iter):5d} iterations to a marginal error of {float(res.error):.1e}")

# %%
# Marginal error against the iteration budget
# -------------------------------------------
# The annealing is a warm start: after it, the last digits converge at the
# rate of the target eps, which is why the curves end parallel.
budgets = [50, 100, 200, 400, 800, 1600, 3200, 6400]
fig, ax = plt.subplots(figsize=(5.5, 3.5))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", sinsim_ext.SinkhornConvergenceWarning)
    for scaling in (None, 0.9, 0.95):
        errors = [float(sinsim_ext.sinkhorn(x, y, eps=eps, max_iter=k, scaling=scaling).error) for k in budgets]
        ax.loglog(budgets, errors, marker="o", label="plain" if scaling is None else f"scaling={scaling}")
ax.axhline(sinsim_ext.CONVERGENCE_TOL, color="grey", linestyle=":", label="default threshold (1e-3)")
ax.set_xlabel("max_iter")
ax.set_ylabel("L1 marginal error")
ax.set_title(f"Independent unit vectors, n = 64, d = 128, eps = {eps:g}")
ax.legend()
fig.tight_layout()
