"""VICReg (Bardes, Ponce, LeCun, ICLR 2022, arXiv:2105.04906): variance,
invariance and covariance terms on the expander's outputs."""

from __future__ import annotations

from sinsim_ext.losses import VICRegLoss

from ..models import mlp
from .base import Method


class VICReg(Method):
    name = "vicreg"
    # Coefficients 25 / 25 / 1: the paper, section 4.3. ResNet-18 on CIFAR,
    # solo-learn scripts/pretrain/cifar/vicreg.yaml: LARS lr 0.3 per 256
    # images, weight decay 1e-4, 3-layer expander 2048-2048-2048 (the paper's
    # ImageNet expander: 8192 wide). Augmentations: BYOL's (paper, section 4.1).
    defaults = dict(optimizer="lars", lr=0.3, weight_decay=1e-4, proj_hidden_dim=2048, proj_output_dim=2048)
    recipe = "byol"

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        self.projector = mlp(feature_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, layers=3)
        self.vicreg = VICRegLoss(sim_weight=25.0, var_weight=25.0, cov_weight=1.0)

    def loss_terms(self, x1, x2):
        z1 = self.projector(self.backbone(x1))
        z2 = self.projector(self.backbone(x2))
        terms = self.vicreg.terms(z1, z2)
        return self.vicreg.combine(terms), terms
