"""Every torch.func transform of the operator agrees with the same transform of
the pure-PyTorch reference (autograd through its iterations) at convergence,
or raises an error that names the alternative (never an internal message
such as one about setup_context or "Cannot access data pointer")."""

from __future__ import annotations

import pytest
import torch
from torch import func

import sinsim_ext
from sinsim_ext import reference

from helpers import points, rel_err

# The reference runs a fixed number of iterations (tol=None: under vmap it
# cannot stop on a data-dependent test); each test asserts it converged.
KERNEL = dict(eps=0.5, tol=1e-13, max_iter=20000)
REFERENCE = dict(eps=0.5, max_iter=600)

TRANSFORMS = {
    "grad": func.grad,
    "jacrev": func.jacrev,
    "jacfwd": func.jacfwd,
    "hessian": func.hessian,
    "jacrev(jacrev)": lambda f: func.jacrev(func.jacrev(f)),
    "jacrev(jacfwd)": lambda f: func.jacrev(func.jacfwd(f)),
}


def _problem(gen, n=5, m=4, d=2):
    x, y = 0.7 * points(gen, n, d), 0.7 * points(gen, m, d)
    assert float(reference.sinkhorn(x, y, **REFERENCE).error) < 1e-12  # the reference converged
    return x, y


@pytest.mark.parametrize("name", list(TRANSFORMS))
@pytest.mark.parametrize("debias", [False, True])
def test_transform_matches_reference(gen, name, debias):
    x, y = _problem(gen)
    transform = TRANSFORMS[name]
    got = transform(lambda x: sinsim_ext.sinkhorn_cost(x, y, debias=debias, **KERNEL))(x)
    want = transform(lambda x: reference.sinkhorn_cost(x, y, debias=debias, **REFERENCE))(x)
    assert rel_err(got, want) < 1e-9


def test_vjp_and_jvp_match_reference(gen):
    x, y = _problem(gen)
    v = points(gen, 5, 2)
    kernel = lambda x, y: sinsim_ext.sinkhorn_cost(x, y, cost="cosine", **KERNEL)
    ref = lambda x, y: reference.sinkhorn_cost(x, y, cost="cosine", **REFERENCE)
    one = torch.tensor(1.0, dtype=torch.float64)
    got = func.vjp(kernel, x, y)[1](one)
    want = func.vjp(ref, x, y)[1](one)
    for g, w in zip(got, want):
        assert rel_err(g, w) < 1e-9
    assert rel_err(func.jvp(kernel, (x, y), (v, y))[1], func.jvp(ref, (x, y), (v, y))[1]) < 1e-9


def test_vmap_over_problems_matches_reference(gen):
    xs = 0.7 * points(gen, 3, 5, 2)
    y = 0.7 * points(gen, 4, 2)
    got = func.vmap(lambda x: sinsim_ext.sinkhorn_cost(x, y, **KERNEL))(xs)
    want = func.vmap(lambda x: reference.sinkhorn_cost(x, y, **REFERENCE))(xs)
    assert rel_err(got, want) < 1e-12
    # and each mapped element is the plain call on that element
    assert rel_err(got, torch.stack([sinsim_ext.sinkhorn_cost(x, y, **KERNEL) for x in xs])) < 1e-13


def test_vmap_of_batched_inputs_and_weights(gen):
    """vmap over the weights of already batched (B, n, d) problems."""
    x, y = 0.7 * points(gen, 2, 5, 2), 0.7 * points(gen, 2, 4, 2)
    w = torch.rand(3, 2, 5, generator=gen, dtype=torch.float64) + 0.1
    a = w / w.sum(-1, keepdim=True)
    got = func.vmap(lambda a: sinsim_ext.sinkhorn_cost(x, y, a=a, **KERNEL))(a)
    assert got.shape == (3, 2)
    want = torch.stack([sinsim_ext.sinkhorn_cost(x, y, a=ai, **KERNEL) for ai in a])
    assert rel_err(got, want) < 1e-13


def test_vmap_of_grad_matches_reference(gen):
    xs = 0.7 * points(gen, 3, 5, 2)
    y = 0.7 * points(gen, 4, 2)
    got = func.vmap(func.grad(lambda x: sinsim_ext.sinkhorn_cost(x, y, **KERNEL)))(xs)
    want = func.vmap(func.grad(lambda x: reference.sinkhorn_cost(x, y, **REFERENCE)))(xs)
    assert rel_err(got, want) < 1e-9


def test_vmap_of_potentials(gen):
    xs = 0.7 * points(gen, 3, 5, 2)
    y = 0.7 * points(gen, 4, 2)
    res = func.vmap(lambda x: tuple(sinsim_ext.sinkhorn(x, y, **KERNEL)))(xs)
    for i, x in enumerate(xs):
        one = sinsim_ext.sinkhorn(x, y, **KERNEL)
        assert torch.equal(res[0][i], one.f) and torch.equal(res[1][i], one.g)


@pytest.mark.parametrize("what", ["cost", "plan"])
def test_forward_over_forward_raises_naming_the_alternatives(gen, what):
    """PyTorch drops the outer tangent of a custom Function's jvp (jvp of jvp of
    a toy Function gives 0): refused, never a zero Hessian."""
    x, y = _problem(gen)

    def fn(x):
        if what == "cost":
            return sinsim_ext.sinkhorn_cost(x, y, **KERNEL)
        res = sinsim_ext.sinkhorn(x, y, **KERNEL)
        return sinsim_ext.transport_plan(x, y, res.f, res.g, eps=KERNEL["eps"]).sum()

    with pytest.raises(RuntimeError, match=r"nested forward-mode .* torch\.func\.hessian.* sinsim_ext\.reference"):
        func.jacfwd(func.jacfwd(fn))(x)
    with pytest.raises(RuntimeError, match=r"nested forward-mode"):
        func.jvp(lambda x: func.jvp(fn, (x,), (y[:1].expand_as(x),))[1], (x,), (x,))


def test_transforms_of_the_raw_op_raise_naming_the_alternatives(gen):
    x, y = points(gen, 1, 5, 2), points(gen, 1, 4, 2)
    a, b = torch.full((1, 5), 0.2, dtype=torch.float64), torch.full((1, 4), 0.25, dtype=torch.float64)
    op = lambda x: torch.ops.sinsim_ext.sinkhorn_value(x, y, a, b, 0.5, "sqeuclidean", 100, 0.0, False)[0].sum()
    with pytest.raises(RuntimeError, match=r"torch\.func transforms .* sinsim_ext\.sinkhorn_cost .* sinsim_ext\.reference"):
        func.grad(op)(x)
