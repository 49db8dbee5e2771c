"""Bad input gives a clear error naming the argument; odd but valid input works."""

from __future__ import annotations

import re

import pytest
import torch

import sinsim_ext
from sinsim_ext import reference

from helpers import points, rel_err

IMPLEMENTATIONS = [sinsim_ext.sinkhorn_cost, reference.sinkhorn_cost, sinsim_ext.sinkhorn]


def _nan_at(t, index=0):
    t = t.clone()
    t.view(-1)[index] = float("nan")
    return t


def _inf_at(t, index=0):
    t = t.clone()
    t.view(-1)[index] = float("inf")
    return t


def _cases(gen):
    x, y = points(gen, 5, 3), points(gen, 4, 3)
    a, b = torch.full((5,), 0.2, dtype=torch.float64), torch.full((4,), 0.25, dtype=torch.float64)
    return x, y, [
        # (kwargs overriding x/y/..., exception, message pattern)
        (dict(x=_nan_at(x)), ValueError, r"x contains NaN or inf"),
        (dict(y=_inf_at(y, 5)), ValueError, r"y contains NaN or inf"),
        (dict(a=_nan_at(a)), ValueError, r"a contains NaN or inf"),
        (dict(b=_inf_at(b)), ValueError, r"b contains NaN or inf"),
        (dict(eps=0.0), ValueError, r"eps must be > 0"),
        (dict(eps=-1.0), ValueError, r"eps must be > 0"),
        (dict(eps=float("nan")), ValueError, r"eps must be finite"),
        (dict(eps=float("inf")), ValueError, r"eps must be finite"),
        (dict(eps="0.1"), TypeError, r"eps must be a real number"),
        (dict(y=points(gen, 4, 2)), ValueError, r"same feature dimension"),
        (dict(x=points(gen, 0, 3)), ValueError, r"x is an empty point set"),
        (dict(y=points(gen, 0, 3)), ValueError, r"y is an empty point set"),
        (dict(x=points(gen, 0, 5, 3), y=points(gen, 0, 4, 3)), ValueError, r"empty batch"),
        (dict(x=points(gen, 5, 0), y=points(gen, 4, 0)), ValueError, r"no features"),
        (dict(x=points(gen, 2, 5, 3)), ValueError, r"both be unbatched .* or both batched"),
        (dict(x=points(gen, 2, 5, 3), y=points(gen, 3, 4, 3)), ValueError, r"same batch size"),
        (dict(x=points(gen, 5)), ValueError, r"x must have shape \(n, d\) or \(B, n, d\)"),
        (dict(x=torch.ones(5, 3, dtype=torch.int64)), TypeError, r"x must be a floating-point tensor"),
        (dict(y=[[0.0, 1.0, 2.0]]), TypeError, r"y must be a torch.Tensor"),
        (dict(a=torch.tensor([0.5, 0.6, -0.1, 0.0, 0.0], dtype=torch.float64)), ValueError, r"a has negative entries"),
        (dict(b=torch.full((4,), 0.3, dtype=torch.float64)), ValueError, r"b must sum to 1"),
        (dict(a=torch.full((4,), 0.25, dtype=torch.float64)), ValueError, r"a must have shape \(5,\)"),
        (dict(b=torch.full((2, 4), 0.25, dtype=torch.float64)), ValueError, r"b must have shape \(4,\)"),
        (dict(a=torch.ones(5, dtype=torch.int64)), TypeError, r"a must be a floating-point tensor"),
        (dict(cost="euclidean"), ValueError, r"cost must be one of"),
        (dict(max_iter=0), ValueError, r"max_iter must be >= 1"),
        (dict(max_iter=2.5), TypeError, r"max_iter must be an int"),
        (dict(tol=-1e-3), ValueError, r"tol must be > 0"),
        (dict(x=torch.zeros(5, 3, dtype=torch.float64), cost="cosine"), ValueError, r"x contains a zero vector"),
        (dict(x=torch.randn(5, 3, generator=gen).to("meta")), ValueError, r"x and y must be on the same device"),
    ]


@pytest.mark.parametrize("fn", IMPLEMENTATIONS, ids=lambda f: f"{f.__module__}.{f.__name__}")
def test_bad_input_raises_a_clear_error(gen, fn):
    x, y, cases = _cases(gen)
    for override, exc, pattern in cases:
        kw = dict(x=x, y=y)
        kw.update(override)
        args = (kw.pop("x"), kw.pop("y"))
        with pytest.raises(exc, match=pattern):
            fn(*args, **kw)


def test_error_names_weights_on_another_device(gen):
    x, y = points(gen, 5, 3), points(gen, 4, 3)
    with pytest.raises(ValueError, match=re.escape("a is on meta but x is on cpu")):
        sinsim_ext.sinkhorn_cost(x, y, a=torch.full((5,), 0.2).to("meta"))


def test_checks_can_be_skipped_and_nan_then_propagates(gen):
    x, y = points(gen, 5, 3), points(gen, 4, 3)
    value = sinsim_ext.sinkhorn_cost(_nan_at(x), y, check_finite=False)
    assert torch.isnan(value)


def test_non_contiguous_inputs_work(gen):
    base = points(gen, 8, 12)
    x = base[:, ::2]  # strided columns
    y = points(gen, 6, 6).t()  # a transposed view
    assert not x.is_contiguous() and not y.is_contiguous()
    got = sinsim_ext.sinkhorn_cost(x, y, eps=0.3)
    want = sinsim_ext.sinkhorn_cost(x.contiguous(), y.contiguous(), eps=0.3)
    assert rel_err(got, want) < 1e-14
    a = torch.full((16,), 1 / 8, dtype=torch.float64)[::2]
    assert rel_err(sinsim_ext.sinkhorn_cost(x, y, eps=0.3, a=a), want) < 1e-14


def test_unreached_tol_warns_and_reports_the_error(gen):
    x, y = points(gen, 30, 3), points(gen, 30, 3)
    unreached = r"did not converge: marginal error .* max_iter=3 iterations, not below tol=1e-12"
    with pytest.warns(RuntimeWarning, match=unreached):  # SinkhornConvergenceWarning is one too
        res = sinsim_ext.sinkhorn(x, y, eps=0.01, tol=1e-12, max_iter=3)
    assert int(res.n_iter) == 3 and float(res.error) > 1e-12
    with pytest.warns(RuntimeWarning, match=r"did not converge: .* not below tol=1e-12"):
        sinsim_ext.sinkhorn_cost(x, y, eps=0.01, tol=1e-12, max_iter=3)
    with pytest.warns(RuntimeWarning, match=r"did not converge: .* not below tol=1e-12"):
        reference.sinkhorn_cost(x, y, eps=0.01, tol=1e-12, max_iter=3)


def test_reached_tol_stops_early_without_warning(gen, recwarn):
    x, y = points(gen, 30, 3), points(gen, 30, 3)
    res = sinsim_ext.sinkhorn(x, y, eps=1.0, tol=1e-6, max_iter=10000)
    assert 1 <= int(res.n_iter) < 10000 and float(res.error) < 1e-6
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_compiled_op_rejects_bad_arguments_itself(gen):
    """C++ callers get the same checks as Python callers (ValueError/TypeError)."""
    op = torch.ops.sinsim_ext.sinkhorn_value
    x, y = points(gen, 1, 5, 3), points(gen, 1, 4, 3)
    a, b = torch.full((1, 5), 0.2, dtype=torch.float64), torch.full((1, 4), 0.25, dtype=torch.float64)
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        op(x, y, a, b, 0.0, "sqeuclidean", 10, 0.0, False)
    with pytest.raises(ValueError, match="cost must be 'sqeuclidean' or 'cosine'"):
        op(x, y, a, b, 0.1, "l1", 10, 0.0, False)
    with pytest.raises(ValueError, match="same feature dimension"):
        op(x, points(gen, 1, 4, 2), a, b, 0.1, "sqeuclidean", 10, 0.0, False)
    with pytest.raises(TypeError, match="must be float32 or float64"):
        op(x.half(), y.half(), a.half(), b.half(), 0.1, "sqeuclidean", 10, 0.0, False)


@pytest.mark.parametrize("fn", IMPLEMENTATIONS + [sinsim_ext.transport_plan, sinsim_ext.SinkhornLoss],
                         ids=lambda f: f"{f.__module__}.{f.__name__}")
def test_eps_as_a_tensor_that_requires_grad_is_refused_not_detached(gen, fn):
    """The operator has no derivative in eps: a tensor eps that asks for one
    is refused, naming eps, instead of being read as a number (its gradient
    silently never arriving). A tensor eps without grad is still a number."""
    x, y = points(gen, 5, 3), points(gen, 4, 3)
    eps = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    if fn is sinsim_ext.transport_plan:
        res = sinsim_ext.sinkhorn(x, y, eps=0.5)
        call = lambda e: fn(x, y, res.f, res.g, eps=e)  # noqa: E731
    elif fn is sinsim_ext.SinkhornLoss:
        call = lambda e: fn(eps=e, normalize=False)(x, y)  # noqa: E731
    else:
        call = lambda e: fn(x, y, eps=e)  # noqa: E731
    with pytest.raises(TypeError, match=r"eps is a tensor that requires grad.*no derivative in eps.*eps\.item\(\)"):
        call(eps)
    detached, number = call(eps.detach()), call(0.5)
    if isinstance(number, sinsim_ext.SinkhornResult):
        detached, number = detached.f, number.f
    assert torch.equal(detached, number)


def test_tol_and_scaling_tensors_that_require_grad_are_refused(gen):
    x, y = points(gen, 5, 3), points(gen, 4, 3)
    for name in ("tol", "scaling"):
        value = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        with pytest.raises(TypeError, match=rf"{name} is a tensor that requires grad"):
            sinsim_ext.sinkhorn_cost(x, y, eps=0.5, **{name: value})


def test_transport_plan_names_potentials_of_the_wrong_shape(gen):
    """f has one entry per point of x, g one per point of y: swapped (or
    batched differently) they are refused by name, not by a reshape error."""
    x, y = points(gen, 5, 3), points(gen, 7, 3)
    res = sinsim_ext.sinkhorn(x, y, eps=0.5)
    with pytest.raises(ValueError, match=re.escape("f must have shape (5,) (one entry per point of x), got (7,)")):
        sinsim_ext.transport_plan(x, y, res.g, res.f, eps=0.5)
    with pytest.raises(ValueError, match=re.escape("g must have shape (7,) (one entry per point of y), got (1, 7)")):
        sinsim_ext.transport_plan(x, y, res.f, res.g[None], eps=0.5)
    with pytest.raises(TypeError, match="f must be a torch.Tensor"):
        sinsim_ext.transport_plan(x, y, res.f.tolist(), res.g, eps=0.5)
    xb, yb = points(gen, 2, 5, 3), points(gen, 2, 7, 3)
    rb = sinsim_ext.sinkhorn(xb, yb, eps=0.5)
    with pytest.raises(ValueError, match=re.escape("f must have shape (2, 5) (one entry per point of x)")):
        sinsim_ext.transport_plan(xb, yb, rb.f[0], rb.g, eps=0.5)
    plan = sinsim_ext.transport_plan(xb, yb, rb.f, rb.g, eps=0.5)
    assert plan.shape == (2, 5, 7) and torch.allclose(plan.sum(-1), torch.full((2, 5), 0.2, dtype=plan.dtype))


@pytest.mark.parametrize("fn", IMPLEMENTATIONS, ids=lambda f: f"{f.__module__}.{f.__name__}")
def test_max_iter_beyond_a_64_bit_integer_is_refused_by_name(gen, fn):
    x, y = points(gen, 5, 3), points(gen, 4, 3)
    for too_many in (2**63, 2**64):
        with pytest.raises(ValueError, match=r"max_iter must be at most 2\*\*63 - 1 .*got " + str(too_many)):
            fn(x, y, eps=0.5, max_iter=too_many, tol=1e-6)
    fn(x, y, eps=0.5, max_iter=2**63 - 1, tol=1e-6)  # the largest: tol stops it
