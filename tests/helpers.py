"""Small input builders shared by the operator tests."""

from __future__ import annotations

import torch

from sinsim_ext.costs import COSTS as _COST_TABLE
from sinsim_ext.testing import rel_err  # noqa: F401  (re-exported for the tests)

#: Every ground cost of the operator: the tests parametrised over the costs run each.
COSTS = tuple(_COST_TABLE)


def points(gen, *shape, dtype=torch.float64, scale=1.0, device="cpu"):
    return (scale * torch.randn(*shape, generator=gen, dtype=dtype)).to(device)


def unit_points(gen, *shape, dtype=torch.float64, device="cpu"):
    p = torch.randn(*shape, generator=gen, dtype=dtype)
    return (p / p.norm(dim=-1, keepdim=True)).to(device)


def simplex(gen, *shape, dtype=torch.float64, device="cpu"):
    w = torch.rand(*shape, generator=gen, dtype=dtype) + 0.1
    return (w / w.sum(-1, keepdim=True)).to(device)
