r"""The compiled Sinkhorn operator: ``torch.ops.sinsim_ext`` and what PyTorch needs around it.

The C++ library (``csrc/``) declares two ops and implements them for CPU and,
when built with CUDA, for CUDA:

* ``sinkhorn_value``: solves the problem(s) and returns the value together
  with the dual potentials, iteration counts and marginal errors;
* ``sinkhorn_value_backward``: the envelope-theorem gradient of the value
  with respect to the points, from the saved potentials only.

This module registers their fake kernels (so ``torch.compile`` can trace
them), a vmap rule, and an Autograd kernel (the autograd.Function
``_SinkhornValue``, which also has forward mode), and chooses the cost mode;
:mod:`sinsim_ext.functions` holds the public functions that call it.

Differentiation (docs/design/maths.md, "The first-order backward"). At the fixed point the value
``OT = <a, f> + <b, g>`` has ``dOT/dC = P`` with
``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, ``dOT/da = f`` and
``dOT/db = g`` (the potentials' own derivatives drop out: envelope theorem),
so for the squared Euclidean cost ``grad_x = 2 (diag(P 1) x - P y)`` and
``grad_y = 2 (diag(P^T 1) y - P^T x)``.

* First-order reverse mode (``backward()``, ``autograd.grad`` without
  ``create_graph``): the compiled ``sinkhorn_value_backward``, one pass over
  the cost matrix; time and memory do not depend on ``max_iter``.
* Everything else (double backward, forward mode, ``torch.func``): the same
  gradient written in PyTorch (:func:`sinsim_ext.costs.cost_vjp`) with
  potentials whose own derivatives come from the implicit function theorem
  (:mod:`sinsim_ext.implicit`), so the gradient can be differentiated again.

Both are exact at convergence; after a fixed small number of iterations the
first is the gradient of the current plan's transport cost, the usual choice
in practice.

Adding an option: a field of :class:`sinsim_ext.SinkhornOptions`; if the
kernels read it, also an argument of the op: the C++ schema
(``csrc/core/ops.cpp``), the fields of :class:`_OpOptions` (in schema order)
and :func:`_op_inputs`. Everything else handles the op's options as one
opaque tuple. Adding an output: :class:`_Outputs`, :data:`_OUTPUT_BATCH_DIM`
and the fake kernel.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch

try:
    from . import _C  # noqa: F401  (loading the library registers the ops)
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        "sinsim_ext._C, the compiled Sinkhorn library, could not be loaded "
        f"({exc}). Build it from the repository root with "
        "`pip install -e . --no-build-isolation` (see README.md)."
    ) from exc

from . import _cuda_kernel
from ._batching import fold, unfold
from ._checks import Problem
from ._modes import functorch_active, has_tangent, is_compiling, refuse_nested_forward_mode
from .convergence import warn_unconverged
from .costs import cost_matrix, cost_vjp
from .implicit import implicit_potentials, plan
from .options import COST_MODES, SinkhornOptions
from .result import debiased

__all__ = ["CUDA_ONLINE_MEMORY_FRACTION", "ONLINE_THRESHOLD_BYTES", "backends"]

_VALUE = "sinsim_ext::sinkhorn_value"
_BACKWARD = "sinsim_ext::sinkhorn_value_backward"
_N_TENSORS = 4  # the op's leading tensor arguments: x, y, a, b


class _OpOptions(NamedTuple):
    """The op's non-tensor arguments, in schema order after ``x, y, a, b``
    (:class:`sinsim_ext.SinkhornOptions` as the op takes them)."""

    eps: float
    cost: str
    max_iter: int
    tol: float  # 0: no tol
    debias: bool
    scaling: float = 0.0  # eps-scaling ratio in (0, 1); 0: plain iterations
    online: bool = False  # recompute the cost in blocks (CPU), see cost_mode

    def options(self) -> SinkhornOptions:
        """The solve's options (``check_finite`` off: the op does not check values)."""
        return SinkhornOptions(eps=self.eps, cost=self.cost, max_iter=self.max_iter, tol=self.tol or None,
                               scaling=self.scaling or None, debias=self.debias, check_finite=False)


class _Outputs(NamedTuple):
    """The op's outputs, in schema order. Only ``value`` is differentiable."""

    value: torch.Tensor  # (B,)
    f: torch.Tensor  # (B, n)
    g: torch.Tensor  # (B, m)
    f_xx: torch.Tensor  # (B, n) with debias, else (0,)
    g_xx: torch.Tensor
    f_yy: torch.Tensor  # (B, m) with debias, else (0,)
    g_yy: torch.Tensor
    n_iter: torch.Tensor  # (problems, B), problems = 3 with debias else 1
    error: torch.Tensor  # (problems, B)


# Where each output keeps its batch dimension (vmap folds the mapped one into it).
_OUTPUT_BATCH_DIM = _Outputs(value=0, f=0, g=0, f_xx=0, g_xx=0, f_yy=0, g_yy=0, n_iter=1, error=1)


ONLINE_THRESHOLD_BYTES = 1 << 30
"""``cost_mode="auto"`` recomputes the cost online (CPU) when the stored mode
would hold more than this many bytes: the ``(B, n, m)`` plan of the backward
(``B * max(n m, n^2, m^2) * itemsize``, the squares with ``debias``), which is
also the order of the stored costs of the forward. 1 GiB: n = m = 16,384 in
float32. The online mode costs ``d`` multiply-adds per entry and pass instead
of a load (docs/performance/convergence.md, "The online cost mode")."""


CUDA_ONLINE_MEMORY_FRACTION = 0.25
"""On CUDA, with the online mode selected (``SINSIM_CUDA_KERNEL=online`` or
``v2``), ``cost_mode="auto"`` recomputes the cost online when the stored costs
of the forward would take more than this fraction of the device's memory:
recomputing costs about ``2 d`` operations per entry and pass against one
load (bench/NOTES.md), so it is chosen for memory only."""


def stored_cost_bytes(batch: int, n: int, m: int, itemsize: int, debias: bool) -> int:
    """Bytes of the costs the CUDA forward stores: ``(B, n, m)``, plus
    ``(B, n, n)`` and ``(B, m, m)`` with ``debias`` (the three problems run together)."""
    entries = n * m + (n * n + m * m if debias else 0)
    return batch * entries * itemsize


def online_by_memory_cuda(batch: int, n: int, m: int, itemsize: int, debias: bool, total_memory: int) -> bool:
    """``cost_mode="auto"`` on CUDA (online mode selected): online when the
    stored costs would exceed :data:`CUDA_ONLINE_MEMORY_FRACTION` of ``total_memory``."""
    return stored_cost_bytes(batch, n, m, itemsize, debias) > CUDA_ONLINE_MEMORY_FRACTION * total_memory


_BACKENDS = tuple(torch.ops.sinsim_ext.compiled_backends())


def _use_online(pb: Problem, debias: bool, cost_mode: str) -> bool:
    """Whether the op recomputes the cost online, for a ``cost_mode`` of :data:`COST_MODES`."""
    cuda_parts = _cuda_kernel.selected_for(pb.x.device.type, _BACKENDS)
    if cost_mode != "auto":
        return cost_mode == "online"
    batch, n, m = pb.x.shape[0], pb.x.shape[1], pb.y.shape[1]
    if pb.x.device.type == "cuda":
        if "online" not in cuda_parts:
            return False  # the verified CUDA kernels keep the stored cost
        total = torch.cuda.get_device_properties(pb.x.device).total_memory
        return online_by_memory_cuda(batch, n, m, pb.x.element_size(), debias, total)
    if pb.x.device.type != "cpu":
        return False
    entries = max(n * m, n * n, m * m) if debias else n * m
    return batch * entries * pb.x.element_size() > ONLINE_THRESHOLD_BYTES


def _op_inputs(pb: Problem) -> tuple:
    """The arguments of ``torch.ops.sinsim_ext.sinkhorn_value`` for a validated problem."""
    opt = pb.options
    options = _OpOptions(
        eps=opt.eps,
        cost=opt.cost,
        max_iter=opt.max_iter,
        tol=opt.tol if opt.tol is not None else 0.0,
        debias=opt.debias,
        scaling=opt.scaling if opt.scaling is not None else 0.0,
        online=_use_online(pb, opt.debias, opt.cost_mode),
    )
    return (pb.x, pb.y, pb.a, pb.b, *options)


def _split(inputs) -> Tuple[tuple, _OpOptions]:
    return tuple(inputs[:_N_TENSORS]), _OpOptions(*inputs[_N_TENSORS:])


# --------------------------------------------------------------------------- fake kernels


@torch.library.register_fake(_VALUE)
def _sinkhorn_value_fake(x, y, a, b, *options):
    opt = _OpOptions(*options)
    batch, n, m = x.shape[0], x.shape[1], y.shape[1]
    problems = 3 if opt.debias else 1

    def sym(size):
        return x.new_empty((batch, size)) if opt.debias else x.new_empty((0,))

    return tuple(
        _Outputs(
            value=x.new_empty((batch,)),
            f=x.new_empty((batch, n)),
            g=x.new_empty((batch, m)),
            f_xx=sym(n),
            g_xx=sym(n),
            f_yy=sym(m),
            g_yy=sym(m),
            n_iter=x.new_empty((problems, batch), dtype=torch.int32),
            error=x.new_empty((problems, batch)),
        )
    )


@torch.library.register_fake(_BACKWARD)
def _sinkhorn_value_backward_fake(grad, x, y, a, b, f, g, f_xx, g_xx, f_yy, g_yy, eps, cost, debias, online=False):
    return torch.empty_like(x), torch.empty_like(y)


# --------------------------------------------------------------------------- vmap


def _value_vmap(apply, info, in_dims, *inputs):
    """Fold the mapped dimension into the op's batch dimension (see ``_batching``)."""
    size = info.batch_size
    tensors, opt = _split(inputs)
    out = _Outputs(*apply(*fold(size, in_dims[:_N_TENSORS], tensors), *opt))
    warn_unconverged(out.error, opt.options(), stacklevel=5)
    # Outputs with no elements are "absent" placeholders (the symmetric
    # potentials without debias): not mapped.
    dims = tuple(None if t.numel() == 0 else d for t, d in zip(out, _OUTPUT_BATCH_DIM))
    results = tuple(t if d is None else unfold(t, size, d) for t, d in zip(out, dims))
    return results, dims


torch.library.register_vmap(
    _VALUE, lambda info, in_dims, *inputs: _value_vmap(torch.ops.sinsim_ext.sinkhorn_value, info, in_dims, *inputs)
)


# --------------------------------------------------------------------------- autograd


def _setup_context(ctx, inputs, output):
    (x, y, a, b), opt = _split(inputs)
    out = _Outputs(*output)
    saved = (x, y, a, b, out.f, out.g, out.f_xx, out.g_xx, out.f_yy, out.g_yy)
    ctx.save_for_backward(*saved)
    ctx.save_for_forward(*saved)
    ctx.opt = opt
    ctx.mark_non_differentiable(*out[1:])


def _compiled_gradient(grad_value, x, y, a, b, potentials, opt: _OpOptions, needs):
    """The fast first-order backward: the C++ op for the points, the potentials for the weights."""
    f, g, f_xx, g_xx, f_yy, g_yy = potentials
    grad_x = grad_y = grad_a = grad_b = None
    if needs[0] or needs[1]:
        grad_x, grad_y = torch.ops.sinsim_ext.sinkhorn_value_backward(
            grad_value, x, y, a, b, f, g, f_xx, g_xx, f_yy, g_yy, opt.eps, opt.cost, opt.debias, opt.online
        )
    if needs[2]:
        df = debiased(f, f_xx, g_xx) if opt.debias else f
        grad_a = grad_value.unsqueeze(-1) * df
    if needs[3]:
        dg = debiased(g, f_yy, g_yy) if opt.debias else g
        grad_b = grad_value.unsqueeze(-1) * dg
    return grad_x, grad_y, grad_a, grad_b


def _problem_gradient(x, y, a, b, f0, g0, opt: _OpOptions):
    """``(dOT/dx, dOT/dy, dOT/da, dOT/db)`` of one problem, as differentiable PyTorch."""
    C = cost_matrix(x, y, opt.cost)
    f, g = implicit_potentials(C, a, b, f0, g0, opt.eps)
    grad_x, grad_y = cost_vjp(x, y, plan(C, f, g, a, b, opt.eps), opt.cost)
    return grad_x, grad_y, f, g


def _differentiable_gradient(x, y, a, b, potentials, opt: _OpOptions):
    """Gradient of the value (per unit cotangent) that can itself be differentiated."""
    f, g, f_xx, g_xx, f_yy, g_yy = potentials
    grad_x, grad_y, grad_a, grad_b = _problem_gradient(x, y, a, b, f, g, opt)
    if opt.debias:
        gx1, gx2, ga1, ga2 = _problem_gradient(x, x, a, a, f_xx, g_xx, opt)
        gy1, gy2, gb1, gb2 = _problem_gradient(y, y, b, b, f_yy, g_yy, opt)
        grad_x, grad_y = debiased(grad_x, gx1, gx2), debiased(grad_y, gy1, gy2)
        grad_a, grad_b = debiased(grad_a, ga1, ga2), debiased(grad_b, gb1, gb2)
    return grad_x, grad_y, grad_a, grad_b


def _backward_with(differentiable: bool, ctx, grad_value):
    x, y, a, b, *potentials = ctx.saved_tensors
    needs = ctx.needs_input_grad[:_N_TENSORS]
    if differentiable:
        grads = _differentiable_gradient(x, y, a, b, potentials, ctx.opt)
        scale = (grad_value.view(-1, 1, 1), grad_value.view(-1, 1, 1), grad_value.view(-1, 1), grad_value.view(-1, 1))
        grads = tuple(gr * s if need else None for gr, s, need in zip(grads, scale, needs))
    else:
        grads = _compiled_gradient(grad_value, x, y, a, b, potentials, ctx.opt, needs)
    return (*grads, *([None] * len(_OpOptions._fields)))


class _SinkhornValue(torch.autograd.Function):
    """The op with every autograd mode: reverse (any order), forward, ``torch.func``.

    It is the op's Autograd kernel, so the public functions call the op
    (``torch.compile`` traces the op; dynamo could not trace an
    autograd.Function with a custom ``jvp``), except inside ``torch.func``
    transforms, where they apply this Function directly.
    """

    @staticmethod
    def forward(*inputs):
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.sinsim_ext.sinkhorn_value(*inputs)

    setup_context = staticmethod(_setup_context)

    @staticmethod
    def backward(ctx, grad_value, *_unused):
        x, y, a, b = ctx.saved_tensors[:_N_TENSORS]
        fast = not (torch.is_grad_enabled() or functorch_active() or has_tangent(grad_value, x, y, a, b))
        return _backward_with(not fast, ctx, grad_value)

    @staticmethod
    def jvp(ctx, *tangents):
        refuse_nested_forward_mode()
        x, y, a, b, *potentials = ctx.saved_tensors
        grads = _differentiable_gradient(x, y, a, b, potentials, ctx.opt)
        value_dot = torch.zeros_like(grads[0][..., 0, 0])
        for grad, tangent in zip(grads, tangents[:_N_TENSORS]):
            if tangent is not None:
                value_dot = value_dot + (grad * tangent).flatten(1).sum(-1)
        return (value_dot, *([None] * (len(_Outputs._fields) - 1)))

    @staticmethod
    def vmap(info, in_dims, *inputs):
        return _value_vmap(_SinkhornValue.apply, info, in_dims, *inputs)


def _value_autograd_kernel(keyset, *inputs):
    """The op's Autograd kernel (what ``torch.library.register_autograd`` would
    install, plus forward mode): the Function when something differentiates,
    else straight to the device kernel."""
    tensors = inputs[:_N_TENSORS]
    if functorch_active():
        raise RuntimeError(
            "torch.func transforms (grad, vjp, jvp, vmap, jacrev, jacfwd, hessian) of the raw op "
            "torch.ops.sinsim_ext.sinkhorn_value are not supported: apply them to "
            "sinsim_ext.sinkhorn_cost or sinsim_ext.sinkhorn, which support them in eager mode, "
            "or to sinsim_ext.reference."
        )
    if (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)) or has_tangent(*tensors):
        return _SinkhornValue.apply(*inputs)
    with torch._C._AutoDispatchBelowAutograd():
        return torch.ops.sinsim_ext.sinkhorn_value.default.redispatch(
            keyset & torch._C._after_autograd_keyset, *inputs
        )


_LIB = torch.library.Library("sinsim_ext", "IMPL")  # kept alive: owns the registration below
_LIB.impl("sinkhorn_value", _value_autograd_kernel, "Autograd", with_keyset=True)


def value_op(pb: Problem, *, detach: bool = False) -> _Outputs:
    """The op on a validated problem, through its Autograd kernel; inside
    torch.func transforms the Function directly (an op's Autograd kernel
    cannot start a Function there). ``detach``: solve only (no derivative of
    the op's outputs is recorded)."""
    inputs = _op_inputs(pb)
    if detach:
        inputs = tuple(t.detach() for t in inputs[:_N_TENSORS]) + inputs[_N_TENSORS:]
    if not is_compiling() and functorch_active():
        return _Outputs(*_SinkhornValue.apply(*inputs))
    return _Outputs(*torch.ops.sinsim_ext.sinkhorn_value(*inputs))


def double_backward_guard(*inputs) -> Optional[torch.Tensor]:
    """A zero whose backward reads the inputs that require grad (under torch.compile).

    AOTAutograd refuses double backward by attaching an erroring node to the
    compiled backward's saved tensors that require grad; when it saves only
    activations (the Sinkhorn op's outputs and views of the inputs) it attaches
    it to a dummy leaf instead (torch/_functorch/_aot_autograd/runtime_wrappers.py,
    CompiledFunctionBackward), and a double backward that reaches the inputs by
    another path silently drops the compiled part. Saving the inputs themselves
    restores PyTorch's "does not currently support double backward" error.
    """
    zero = None
    for t in inputs:
        if isinstance(t, torch.Tensor) and t.requires_grad:
            term = 0.0 * t.abs().amax()  # its backward reads t; a max cannot overflow
            zero = term if zero is None else zero + term
    return zero


# --------------------------------------------------------------------------- build


def backends() -> Tuple[str, ...]:
    """The back ends compiled into this build, e.g. ``("cpu", "cuda")``."""
    return tuple(torch.ops.sinsim_ext.compiled_backends())
