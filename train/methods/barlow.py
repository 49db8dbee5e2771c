"""Barlow Twins (Zbontar et al., ICML 2021, arXiv:2103.03230): the
cross-correlation of the two views' projections is pushed to the identity.

Hyper-parameters and their sources: ``train/recipes/methods/barlow.toml``.
"""

from __future__ import annotations

from sinsim_ext.losses import BarlowTwinsLoss

from ..models import mlp
from .base import Method


class BarlowTwins(Method):
    name = "barlow"

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        p = cfg.params
        self.projector = mlp(feature_dim, p["proj_hidden_dim"], p["proj_output_dim"], layers=3)
        self.barlow = BarlowTwinsLoss(lambda_offdiag=p["barlow_lambda"], scale=p["barlow_scale"])

    def embed(self, x1, x2):
        return self.projector(self.backbone(x1)), self.projector(self.backbone(x2))

    def loss_from(self, z1, z2):
        loss = self.barlow(z1, z2)
        return loss, {"barlow": loss}
