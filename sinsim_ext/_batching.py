"""``torch.func.vmap`` rules for functions that already take a batch dimension.

Every function of the operator works on batches of problems: tensors shaped
``(B, ...)``. Under ``vmap`` over ``V`` elements the rule folds the mapped
dimension into that batch, ``(V, B, ...) -> (V * B, ...)``, calls the
function once on plain tensors (so data-dependent steps, such as a solver's
convergence test, keep working), and unfolds the results.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch


def fold(batch_size: int, in_dims: Sequence[Optional[int]], args: Sequence[Any]) -> list:
    """Move each tensor's mapped dim to the front (expanding unmapped tensors
    that carry a batch dimension) and merge it with the batch dimension.

    Tensors with no elements (the placeholders some outputs use for "absent")
    and non-tensors pass through unchanged.
    """
    out = []
    for arg, dim in zip(args, in_dims):
        if not isinstance(arg, torch.Tensor) or (arg.numel() == 0 and dim is None):
            out.append(arg)
            continue
        arg = arg.movedim(dim, 0) if dim is not None else arg.expand(batch_size, *arg.shape)
        out.append(arg.reshape(batch_size * arg.shape[1], *arg.shape[2:]))
    return out


def unfold(t: torch.Tensor, batch_size: int, batch_dim: int = 0) -> torch.Tensor:
    """Split the merged ``V * B`` dimension at ``batch_dim`` back into ``(V, B)``
    and return the tensor with ``V`` at ``batch_dim``."""
    shape = t.shape
    return t.reshape(*shape[:batch_dim], batch_size, shape[batch_dim] // batch_size, *shape[batch_dim + 1 :])
