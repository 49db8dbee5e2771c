"""
The operator and its gradient
=============================

:func:`sinsim_ext.sinkhorn_cost` returns the entropic optimal-transport cost
between two point clouds as a differentiable scalar. Its backward is the
envelope-theorem gradient computed by the compiled kernel from the two dual
potentials: no autograd graph through the iterations, so its memory does not
grow with ``max_iter``. Here we check value and gradient against the
pure-PyTorch reference (autograd through every iteration) in float64, look at
the convergence report, and compare the memory each keeps for its backward.
"""

import torch

import sinsim_ext
from sinsim_ext.testing import rel_err, saved_tensor_bytes

torch.manual_seed(0)
x = torch.nn.functional.normalize(torch.randn(256, 32, dtype=torch.float64), dim=1).requires_grad_()
y = torch.nn.functional.normalize(torch.randn(256, 32, dtype=torch.float64), dim=1)

# %%
# Value and gradient
# ------------------
# ``OT_eps(x, y)`` with the squared Euclidean cost, uniform weights, ``eps = 0.05``.
value = sinsim_ext.sinkhorn_cost(x, y, eps=0.05, tol=1e-10, max_iter=1000)
(grad,) = torch.autograd.grad(value, x)

ref_value = sinsim_ext.reference.sinkhorn_cost(x, y, eps=0.05, tol=1e-10, max_iter=1000)
(ref_grad,) = torch.autograd.grad(ref_value, x)

print(f"value      {value.item():.10f}")
print(f"reference  {ref_value.item():.10f}   relative difference {rel_err(value, ref_value):.1e}")
print(f"gradient: relative difference to the reference {rel_err(grad, ref_grad):.1e}")

# %%
# The convergence report
# ----------------------
# :func:`sinsim_ext.sinkhorn` returns the potentials ``f``, ``g`` with the
# iterations run and the final L1 error of the marginals. The value is
# ``<a, f> + <b, g>``.
res = sinsim_ext.sinkhorn(x.detach(), y, eps=0.05, tol=1e-10, max_iter=1000)
print(f"iterations {int(res.n_iter)}, marginal error {float(res.error):.1e}")
print(f"<a, f> + <b, g> = {(res.f.mean() + res.g.mean()).item():.10f}")

# %%
# The debiased Sinkhorn divergence
# --------------------------------
# ``debias=True`` returns ``OT(x, y) - OT(x, x)/2 - OT(y, y)/2``, which is 0
# when the clouds coincide. The plain entropic cost is not: a cloud is at a
# positive cost from itself.
same = x.detach()
print(f"OT_eps(x, x)         = {sinsim_ext.sinkhorn_cost(same, same, eps=0.05).item():.4f}")
print(f"divergence S(x, x)   = {sinsim_ext.sinkhorn_cost(same, same, eps=0.05, debias=True).item():.1e}")
print(f"divergence S(x, y)   = {sinsim_ext.sinkhorn_cost(same, y, eps=0.05, debias=True).item():.4f}")

# %%
# Memory kept for the backward
# ----------------------------
# The kernel keeps the points and potentials; the reference keeps every
# iteration's intermediate tensors.
for iters in (50, 200):
    kernel = saved_tensor_bytes(lambda: sinsim_ext.sinkhorn_cost(x, y, eps=0.05, max_iter=iters))
    reference = saved_tensor_bytes(lambda: sinsim_ext.reference.sinkhorn_cost(x, y, eps=0.05, max_iter=iters))
    print(f"max_iter {iters:4d}: kernel keeps {kernel / 1e6:6.2f} MB, reference keeps {reference / 1e6:7.1f} MB")
