"""SimCLR (Chen et al., ICML 2020, arXiv:2002.05709): NT-Xent on projections.

Hyper-parameters and their sources: ``train/recipes/methods/simclr.toml``.
"""

from __future__ import annotations

import torch

from sinsim_ext.losses import NTXentLoss

from ..models import mlp
from .base import Method


class SimCLR(Method):
    name = "simclr"

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        p = cfg.params
        self.projector = mlp(feature_dim, p["proj_hidden_dim"], p["proj_output_dim"])
        self.ntxent = NTXentLoss(p["temperature"])

    def encode_pair(self, x1, x2):
        """Features and projections of both views, in one batched pass."""
        h = self.backbone(torch.cat([x1, x2]))
        z = self.projector(h)
        return h.chunk(2), z.chunk(2)

    def embed(self, x1, x2):
        _, (z1, z2) = self.encode_pair(x1, x2)
        return z1, z2

    def loss_from(self, z1, z2):
        loss = self.ntxent(z1, z2)
        return loss, {"ntxent": loss}
