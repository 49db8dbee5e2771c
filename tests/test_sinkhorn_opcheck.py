"""torch.library.opcheck on every op of the library, as pytorch/extension-cpp
tests its ops: the schema matches what the kernels do (no undeclared
mutation or aliasing), the Autograd registration is right, the fake (meta)
kernels give the real kernels' shapes, dtypes and strides, and AOT dispatch
(torch.compile's path) gives the eager results, dynamic shapes included.

The ops that return strings (which back ends and instruction sets a build
has, the CUDA paths a SINSIM_CUDA_KERNEL value selects) take no tensors:
opcheck's AOT-dispatch test compares tensor outputs only, so they get the
other three tests.
"""

from __future__ import annotations

import pytest
import torch

import sinsim_ext  # noqa: F401  (registers the ops)
from sinsim_ext import ops
from sinsim_ext._checks import check_values, prepare

from helpers import COSTS, points, simplex

OPS = torch.ops.sinsim_ext


def _problem(gen, dtype, batch, n=6, m=5, d=3, weights=False):
    x, y = points(gen, batch, n, d, dtype=dtype), points(gen, batch, m, d, dtype=dtype)
    a = simplex(gen, batch, n, dtype=dtype) if weights else None
    b = simplex(gen, batch, m, dtype=dtype) if weights else None
    return x, y, a, b


VALUE_CASES = [
    dict(dtype=torch.float64, cost=cost, debias=debias, weights=weights)
    for cost in COSTS for debias in (False, True) for weights in (False, True)
] + [
    dict(dtype=torch.float32, cost="sqeuclidean", debias=True, tol=1e-4),
    dict(dtype=torch.float64, cost="cosine", scaling=0.7, max_iter=30),
    dict(dtype=torch.float64, cost="sqeuclidean", debias=True, cost_mode="online"),
]


def _op_args(gen, case, requires_grad):
    case = dict(case)
    dtype, weights = case.pop("dtype"), case.pop("weights", False)
    x, y, a, b = _problem(gen, dtype, 2, weights=weights)
    pb = prepare(x, y, a=a, b=b, eps=0.5, max_iter=case.pop("max_iter", 20), **case)
    args = ops._op_inputs(pb)
    if requires_grad:
        args = tuple(t.clone().requires_grad_() if i < 4 else t for i, t in enumerate(args))
    return args


def _ids(case):
    return "-".join(f"{k}={v}".replace("torch.", "") for k, v in case.items())


@pytest.mark.parametrize("case", VALUE_CASES, ids=_ids)
def test_opcheck_sinkhorn_value(gen, case):
    torch.library.opcheck(OPS.sinkhorn_value.default, _op_args(gen, case, requires_grad=True))


@pytest.mark.parametrize("case", [c for c in VALUE_CASES if "tol" not in c and "scaling" not in c], ids=_ids)
def test_opcheck_sinkhorn_value_backward(gen, case):
    x, y, a, b, eps, cost, max_iter, tol, debias, scaling, online = _op_args(gen, case, requires_grad=False)
    out = OPS.sinkhorn_value(x, y, a, b, eps, cost, max_iter, tol, debias, scaling, online)
    grad = torch.linspace(0.5, 1.5, x.shape[0], dtype=x.dtype)
    torch.library.opcheck(OPS.sinkhorn_value_backward.default,
                          (grad, x, y, a, b, *out[1:7], eps, cost, debias, online))


@pytest.mark.parametrize("cost", COSTS)
def test_opcheck_check_values(gen, cost):
    x, y, a, b = _problem(gen, torch.float64, 2, weights=True)
    torch.library.opcheck(check_values, (x, y, a, b, True, True, cost))


@pytest.mark.parametrize("name, args", [
    ("compiled_backends", ()),
    ("cpu_capability", ()),
    ("cpu_capabilities", ()),
    ("cuda_kernel_parts", ("v2",)),
])
def test_opcheck_reporting_ops(name, args):
    torch.library.opcheck(getattr(OPS, name).default, args,
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


def test_every_op_of_the_library_is_checked():
    """A new op of the library needs its opcheck here."""
    checked = {"sinkhorn_value", "sinkhorn_value_backward", "check_values", "compiled_backends", "cpu_capability",
               "cpu_capabilities", "cuda_kernel_parts"}
    registered = {name.split("::")[1] for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("sinsim_ext::")}
    assert registered == checked
