"""
A transport plan, drawn
=======================

:func:`sinsim_ext.sinkhorn` returns the dual potentials ``f``, ``g``;
:func:`sinsim_ext.transport_plan` turns them into the plan
``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, which says how much mass
goes from ``x_i`` to ``y_j``. We draw it between two small 2-D clouds at a
small and a large ``eps``: the larger ``eps``, the more each point's mass
spreads over several targets.
"""

import matplotlib.pyplot as plt
import torch

import sinsim_ext

torch.manual_seed(0)
n = 40
angle = torch.rand(n) * 3.1416
x = torch.stack([angle.cos(), angle.sin()], dim=1) + 0.05 * torch.randn(n, 2)  # an upper half-circle
y = torch.randn(n, 2) * torch.tensor([0.6, 0.15]) + torch.tensor([0.0, -0.6])  # a flat Gaussian below it
x, y = x.double(), y.double()

fig, axes = plt.subplots(2, 2, figsize=(8, 8), layout="constrained")
for col, eps in enumerate((0.01, 0.1)):
    res = sinsim_ext.sinkhorn(x, y, eps=eps, tol=1e-9, max_iter=5000)
    P = sinsim_ext.transport_plan(x, y, res.f, res.g, eps=eps)
    print(f"eps = {eps}: {int(res.n_iter)} iterations, marginal error {float(res.error):.1e}")
    print(f"  n x row sums in [{P.sum(1).min().item() * n:.6f}, {P.sum(1).max().item() * n:.6f}]; "
          f"largest entry {P.max().item() * n:.2f} of a row's mass")

    ax = axes[0, col]
    for i, j in (P > 0.02 / n).nonzero().tolist():  # draw the entries above 2 % of a row's mass
        ax.plot([x[i, 0], y[j, 0]], [x[i, 1], y[j, 1]], color="black",
                alpha=min(1.0, float(P[i, j]) * n), linewidth=1)
    ax.scatter(x[:, 0], x[:, 1], color="tab:blue", label="x", zorder=3)
    ax.scatter(y[:, 0], y[:, 1], color="tab:orange", label="y", zorder=3)
    ax.set_title(f"eps = {eps}: lines weighted by P")
    ax.set_aspect("equal")
    ax.legend(loc="upper right")

    # rows and columns in the order of the first coordinate, so a monotone plan is a diagonal band
    rows, cols = x[:, 0].argsort(), y[:, 0].argsort()
    image = axes[1, col].imshow(n * P[rows][:, cols], cmap="viridis", vmin=0, vmax=1)
    axes[1, col].set_title(f"eps = {eps}: n P, sorted by abscissa")
    axes[1, col].set_xlabel("j (y)")
    axes[1, col].set_ylabel("i (x)")
_ = fig.colorbar(image, ax=axes[1, :], shrink=0.8)
