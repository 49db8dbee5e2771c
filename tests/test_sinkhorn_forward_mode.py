"""Forward-mode differentiation (jvp) of the Sinkhorn value against central
finite differences (a custom op that dropped tangents would give 0)."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD

import sinsim_ext

from helpers import COSTS, points, rel_err

CONVERGED = dict(tol=1e-13, max_iter=20000)


def _fd(fn, args, tangents, h=1e-6):
    plus = fn(*[a + h * t for a, t in zip(args, tangents)])
    minus = fn(*[a - h * t for a, t in zip(args, tangents)])
    return (plus - minus) / (2 * h)


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("debias", [False, True])
def test_func_jvp_matches_finite_differences(gen, cost, debias):
    x, y = points(gen, 7, 3), points(gen, 5, 3)
    tx, ty = points(gen, 7, 3), points(gen, 5, 3)
    fn = lambda x, y: sinsim_ext.sinkhorn_cost(x, y, eps=0.3, cost=cost, debias=debias, **CONVERGED)
    value, jvp = torch.func.jvp(fn, (x, y), (tx, ty))
    assert rel_err(value, fn(x, y)) < 1e-14
    fd = _fd(fn, (x, y), (tx, ty))
    assert abs(float(jvp)) > 1e-3  # not the zero the old operator returned
    assert abs(float(jvp - fd)) < 1e-7 * max(1.0, abs(float(fd)))


def test_jvp_in_the_weights_matches_finite_differences(gen):
    x, y = points(gen, 6, 2), points(gen, 5, 2)
    wa = torch.rand(6, generator=gen, dtype=torch.float64) + 0.2
    wb = torch.rand(5, generator=gen, dtype=torch.float64) + 0.2
    ta, tb = points(gen, 6), points(gen, 5)

    def fn(wa, wb):
        return sinsim_ext.sinkhorn_cost(x, y, a=wa / wa.sum(), b=wb / wb.sum(), eps=0.4, **CONVERGED)

    _, jvp = torch.func.jvp(fn, (wa, wb), (ta, tb))
    fd = _fd(fn, (wa, wb), (ta, tb))
    assert abs(float(jvp - fd)) < 1e-7 * max(1.0, abs(float(fd)))


def test_forward_ad_dual_tensors_batched(gen):
    """torch.autograd.forward_ad (no torch.func), batched problems."""
    x, y = points(gen, 3, 6, 2), points(gen, 3, 4, 2)
    t = points(gen, 3, 6, 2)
    fn = lambda x: sinsim_ext.sinkhorn_cost(x, y, eps=0.5, **CONVERGED)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(fn(fwAD.make_dual(x, t))).tangent
    assert tangent is not None and tangent.shape == (3,)
    assert rel_err(tangent, _fd(fn, (x,), (t,))) < 1e-7


def test_jacfwd_equals_jacrev(gen):
    x, y = points(gen, 6, 3), points(gen, 5, 3)
    fn = lambda x: sinsim_ext.sinkhorn_cost(x, y, eps=0.5, debias=True, **CONVERGED)
    assert rel_err(torch.func.jacfwd(fn)(x), torch.func.jacrev(fn)(x)) < 1e-10


def test_raw_op_forward_ad_is_not_dropped(gen):
    """Calling torch.ops.sinsim_ext.sinkhorn_value directly under forward AD
    goes through the op's Autograd kernel, which has the jvp too."""
    x, y = points(gen, 1, 5, 3), points(gen, 1, 4, 3)
    a, b = torch.full((1, 5), 0.2, dtype=torch.float64), torch.full((1, 4), 0.25, dtype=torch.float64)
    t = points(gen, 1, 5, 3)
    op = lambda x: torch.ops.sinsim_ext.sinkhorn_value(x, y, a, b, 0.5, "sqeuclidean", 20000, 1e-13, False)[0]
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(op(fwAD.make_dual(x, t))).tangent
    assert tangent is not None
    assert rel_err(tangent, _fd(op, (x,), (t,))) < 1e-7
