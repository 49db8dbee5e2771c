"""Which differentiation modes and program transforms are active right now.

The operator picks its path from these: a fast compiled backward when nothing
will differentiate it again, differentiable PyTorch otherwise.
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD


def is_compiling() -> bool:
    """True while ``torch.compile`` (dynamo) traces the caller."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def functorch_active() -> bool:
    """True inside a ``torch.func`` transform (grad, vjp, jvp, vmap, jacrev, ...)."""
    peek = getattr(torch._C._functorch, "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def _count_transforms(kind: str) -> int:
    """How many ``torch.func`` transforms of a kind ("Vmap", "Jvp", "Grad") are active."""
    try:
        from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
        from torch._C._functorch import TransformType
    except ImportError:  # pragma: no cover - older or newer torch layouts
        return int(functorch_active())
    return sum(i.key() == getattr(TransformType, kind) for i in retrieve_all_functorch_interpreters())


def in_vmap() -> bool:
    """True inside ``torch.func.vmap`` (at any depth of nested transforms):
    data-dependent reads such as ``.item()`` are not allowed there."""
    return _count_transforms("Vmap") > 0


def refuse_nested_forward_mode() -> None:
    """Raise inside an autograd.Function's ``jvp`` when an outer forward-mode
    transform is active too (``jvp`` of ``jvp``, ``jacfwd`` of ``jacfwd``).

    PyTorch (2.14) does not propagate the outer tangent through a custom
    Function's ``jvp``: the outer derivative would silently come out as 0.
    """
    if _count_transforms("Jvp") >= 2:
        raise RuntimeError(
            "nested forward-mode differentiation (torch.func.jvp of jvp, jacfwd of jacfwd) through the "
            "Sinkhorn operator is not supported: PyTorch does not carry the outer tangent through a custom "
            "autograd.Function's jvp and would return 0. Take the outer derivative in reverse mode "
            "(torch.func.jacrev(torch.func.jacfwd(f)), torch.func.hessian(f), or torch.func.jvp of "
            "torch.func.grad), or use sinsim_ext.reference."
        )


def has_tangent(*tensors: torch.Tensor) -> bool:
    """True when some tensor carries a forward-mode tangent (``torch.autograd.forward_ad``)."""
    return any(fwAD.unpack_dual(t).tangent is not None for t in tensors)


def derivatives_wanted(*tensors: torch.Tensor) -> bool:
    """Will anything differentiate a function of ``tensors``: reverse mode
    (grad enabled and an input requires grad), forward mode, or a transform?"""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return True
    return has_tangent(*tensors) or functorch_active()
