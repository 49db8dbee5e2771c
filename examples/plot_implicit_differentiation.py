"""
Implicit differentiation: Hessian-vector products and a differentiable plan
===========================================================================

The first-order backward of :func:`sinsim_ext.sinkhorn_cost` needs only the
potentials. Everything beyond it (a gradient that is itself differentiated,
forward mode, ``torch.func``, and derivatives of the potentials or of the
transport plan) differentiates the Sinkhorn fixed point by the implicit
function theorem (:mod:`sinsim_ext.implicit`; derivation in
:doc:`/design/implicit`). These derivatives are those of the *converged*
fixed point, so we solve to a tight ``tol``.
"""

import warnings

import matplotlib.pyplot as plt
import torch

import sinsim_ext
from sinsim_ext.testing import rel_err

# torch.func's first use warns about torch.jit internals; not ours
warnings.filterwarnings("ignore", category=FutureWarning, module="torch")
torch.manual_seed(0)
n, d, eps = 64, 8, 0.1
x = torch.nn.functional.normalize(torch.randn(n, d, dtype=torch.float64), dim=1)
y = torch.nn.functional.normalize(torch.randn(n, d, dtype=torch.float64), dim=1)
solve = dict(eps=eps, tol=1e-12, max_iter=5000)


def value(points):
    return sinsim_ext.sinkhorn_cost(points, y, **solve)


def gradient(points):
    points = points.detach().requires_grad_()
    return torch.autograd.grad(value(points), points)[0]


# %%
# A Hessian-vector product by double backward
# --------------------------------------------
# ``create_graph=True`` makes the gradient differentiable; differentiating
# ``<grad, v>`` again gives ``H v``. We check it against central finite
# differences of the gradient and against the reference, which
# differentiates through its iterations.
v = torch.randn(n, d, dtype=torch.float64)
xg = x.clone().requires_grad_()
(g,) = torch.autograd.grad(value(xg), xg, create_graph=True)
(hv,) = torch.autograd.grad((g * v).sum(), xg)

h = 1e-5
hv_fd = (gradient(x + h * v) - gradient(x - h * v)) / (2 * h)

xr = x.clone().requires_grad_()
(gr,) = torch.autograd.grad(sinsim_ext.reference.sinkhorn_cost(xr, y, **solve), xr, create_graph=True)
(hv_ref,) = torch.autograd.grad((gr * v).sum(), xr)

print(f"H v against finite differences: relative difference {rel_err(hv, hv_fd):.1e}")
print(f"H v against the reference:      relative difference {rel_err(hv, hv_ref):.1e}")

# %%
# The same with ``torch.func``: forward over reverse
# ---------------------------------------------------
_, hv_func = torch.func.jvp(torch.func.grad(value), (x,), (v,))
print(f"torch.func jvp(grad):           relative difference {rel_err(hv_func, hv):.1e}")

# %%
# A differentiable transport plan
# -------------------------------
# When ``x`` requires grad, the potentials returned by
# :func:`sinsim_ext.sinkhorn` are differentiable in it, and so is the plan
# built from them by :func:`sinsim_ext.transport_plan`. Any function of the
# plan can then be optimised through it. Here we move the points ``x`` so that
# the plan pairs ``x_i`` with ``y_i``: we maximise the mass on the diagonal,
# ``trace(P)`` (at most 1, since ``P`` sums to 1).


def diagonal_mass(points):
    res = sinsim_ext.sinkhorn(points, y, **solve)
    plan = sinsim_ext.transport_plan(points, y, res.f, res.g, eps=eps)
    return plan.diagonal().sum()


# First the gradient itself, against finite differences along a direction:
xp = x.clone().requires_grad_()
(grad_plan,) = torch.autograd.grad(diagonal_mass(xp), xp)
with torch.no_grad():
    fd = (diagonal_mass(x + h * v) - diagonal_mass(x - h * v)) / (2 * h)
print(f"d trace(P) along v: implicit {float((grad_plan * v).sum()):.8f}, finite differences {float(fd):.8f}")

# %%
# Then a few steps of gradient ascent on the points (Adam). The plan
# sharpens as the pairs align, and Sinkhorn needs more iterations to reach
# the tolerance: the printed counts show it.
points = x.clone().requires_grad_()
optimizer = torch.optim.Adam([points], lr=0.02)
history = []
for step in range(16):
    mass = diagonal_mass(points)
    history.append(mass.item())
    if step % 5 == 0:
        iterations = int(sinsim_ext.sinkhorn(points.detach(), y, **solve).n_iter)
        print(f"step {step:2d}: diagonal mass {mass.item():.3f}, Sinkhorn iterations {iterations}")
    optimizer.zero_grad()
    (-mass).backward()
    optimizer.step()
print(f"diagonal mass: {history[0]:.3f} at the start, {history[-1]:.3f} after {len(history) - 1} steps")

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(history)
ax.set_xlabel("gradient step")
ax.set_ylabel("trace of the plan")
ax.set_title("Points moved through the differentiable plan")
fig.tight_layout()
