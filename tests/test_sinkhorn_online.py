"""The online cost mode (cost recomputed in blocks, never stored) against the
stored-cost mode: values, potentials and gradients, on odd sizes, both costs,
batches, zero weights, eps-scaling and the exact-form fallback."""

from __future__ import annotations

import warnings

import pytest
import torch

import sinsim_ext
from sinsim_ext import SinkhornConvergenceWarning, ops

from helpers import COSTS, points, rel_err, simplex

TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


def _value_and_grads(x, y, mode, **kw):
    xg, yg = x.clone().requires_grad_(), y.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SinkhornConvergenceWarning)
        v = sinsim_ext.sinkhorn_cost(xg, yg, cost_mode=mode, **kw)
    return (v, *torch.autograd.grad(v.sum(), (xg, yg)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("n, m", [(1, 7), (33, 17), (1000, 257)])
@pytest.mark.parametrize("debias", [False, True])
def test_online_agrees_with_stored(gen, dtype, cost, n, m, debias):
    x, y = points(gen, n, 5, dtype=dtype), points(gen, m, 5, dtype=dtype)
    kw = dict(eps=0.1, cost=cost, debias=debias, max_iter=40)
    for got, want in zip(_value_and_grads(x, y, "online", **kw), _value_and_grads(x, y, "stored", **kw)):
        assert rel_err(got, want) < TOL[dtype]


def test_online_agrees_on_batches_weights_scaling_and_the_exact_fallback(gen):
    """eps = 1e-3 on spread points: the first column update's shift guess
    (0) is far off, so the exact two-pass form runs (merged across row blocks
    in the online mode); zero weights; a batch; eps-scaling."""
    x, y = points(gen, 3, 41, 4, scale=3.0), points(gen, 3, 29, 4, scale=3.0)
    a, b = simplex(gen, 3, 41), simplex(gen, 3, 29)
    a[:, 5] = 0
    a = a / a.sum(-1, keepdim=True)
    for kw in (dict(eps=1e-3, max_iter=30), dict(eps=1e-3, max_iter=60, scaling=0.8)):
        got = _value_and_grads(x, y, "online", a=a, b=b, **kw)
        want = _value_and_grads(x, y, "stored", a=a, b=b, **kw)
        for g_, w_ in zip(got, want):
            assert rel_err(g_, w_) < 1e-11
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SinkhornConvergenceWarning)
            r_on = sinsim_ext.sinkhorn(x, y, a=a, b=b, cost_mode="online", **kw)
            r_st = sinsim_ext.sinkhorn(x, y, a=a, b=b, cost_mode="stored", **kw)
        assert torch.equal(r_on.n_iter, r_st.n_iter)
        assert rel_err(r_on.f, r_st.f) < 1e-11 and rel_err(r_on.g, r_st.g) < 1e-11


def test_auto_goes_online_above_the_threshold(gen, monkeypatch):
    x, y = points(gen, 30, 3), points(gen, 20, 3)
    pb = sinsim_ext._checks.prepare(x, y, eps=0.1, cost="sqeuclidean")
    assert not ops._use_online(pb, False, "auto")
    assert ops._use_online(pb, False, "online") and not ops._use_online(pb, False, "stored")
    monkeypatch.setattr(ops, "ONLINE_THRESHOLD_BYTES", 30 * 20 * 8 - 1)
    assert ops._use_online(pb, False, "auto")
    monkeypatch.setattr(ops, "ONLINE_THRESHOLD_BYTES", 30 * 30 * 8 - 1)
    assert ops._use_online(pb, True, "auto") and not ops._use_online(pb, False, "auto")
    got = sinsim_ext.sinkhorn_cost(x, y, eps=0.1, debias=True)  # auto: online now
    assert rel_err(got, sinsim_ext.sinkhorn_cost(x, y, eps=0.1, debias=True, cost_mode="stored")) < 1e-12


def test_bad_cost_mode_is_refused(gen):
    x, y = points(gen, 5, 2), points(gen, 4, 2)
    with pytest.raises(ValueError, match=r"cost_mode must be one of \('auto', 'stored', 'online'\), got 'lazy'"):
        sinsim_ext.sinkhorn_cost(x, y, cost_mode="lazy")
