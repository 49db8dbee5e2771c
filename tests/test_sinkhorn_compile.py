"""The operator under torch.compile: the value checks still run (they are an op
of the graph), first-order reverse mode works, and what is not supported there
raises instead of returning a wrong number (NaN input with the default
check_finite=True raises, as in eager mode)."""

from __future__ import annotations

import pytest
import torch
from torch import func

import sinsim_ext
from sinsim_ext import reference

from helpers import points


def _with_nan(t):
    t = t.clone()
    t[0, 0] = float("nan")
    return t


@pytest.mark.parametrize("fullgraph", [False, True])
@pytest.mark.parametrize("fn", [sinsim_ext.sinkhorn_cost, reference.sinkhorn_cost], ids=["kernel", "reference"])
def test_compiled_call_checks_values(gen, fullgraph, fn):
    x, y = points(gen, 6, 3, dtype=torch.float32), points(gen, 5, 3, dtype=torch.float32)
    compiled = torch.compile(lambda x, y: fn(x, y, eps=0.5, max_iter=20), fullgraph=fullgraph)
    assert torch.isfinite(compiled(x, y))
    with pytest.raises(ValueError, match=r"x contains NaN or inf"):
        compiled(_with_nan(x), y)
    b = torch.tensor([0.5, 0.5, 0.5, -0.5, 0.0])
    with pytest.raises(ValueError, match=r"b has negative entries"):
        torch.compile(lambda x, y, b: fn(x, y, b=b, eps=0.5, max_iter=20), fullgraph=fullgraph)(x, y, b)


def test_compiled_call_without_checks_gives_nan(gen):
    """check_finite=False is the documented way to skip the checks (and the sync)."""
    x, y = points(gen, 6, 3, dtype=torch.float32), points(gen, 5, 3, dtype=torch.float32)
    compiled = torch.compile(lambda x, y: sinsim_ext.sinkhorn_cost(x, y, eps=0.5, check_finite=False), fullgraph=True)
    assert torch.isnan(compiled(_with_nan(x), y))


def test_vmap_checks_values(gen):
    xs, y = points(gen, 3, 6, 2), points(gen, 5, 2)
    xs[1, 2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"x contains NaN or inf"):
        func.vmap(lambda x: sinsim_ext.sinkhorn_cost(x, y))(xs)


@pytest.mark.parametrize("fullgraph", [False, True])
def test_compiled_double_backward_raises(gen, fullgraph):
    """torch.compile does not do double backward. With the Sinkhorn term alone
    PyTorch says so; with another term of the same input PyTorch's guard can
    miss the compiled part, and the Hessian would silently lose the Sinkhorn
    term. Both must raise."""
    x = points(gen, 6, 3).requires_grad_()
    y = points(gen, 5, 3)
    compiled = torch.compile(lambda x: sinsim_ext.sinkhorn_cost(x, y, eps=0.5, check_finite=False), fullgraph=fullgraph)
    for loss in (lambda x: compiled(x), lambda x: compiled(x) + x.pow(3).sum()):
        (g,) = torch.autograd.grad(loss(x), x, create_graph=True)
        with pytest.raises(RuntimeError, match=r"double backward"):
            torch.autograd.grad(g.sum(), x)
