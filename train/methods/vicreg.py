"""VICReg (Bardes, Ponce, LeCun, ICLR 2022, arXiv:2105.04906): variance,
invariance and covariance terms on the expander's outputs.

The coefficients are solo-learn's (da Costa et al., JMLR 2022,
``scripts/pretrain/cifar/vicreg.yaml``): invariance 25, variance 25,
covariance 1 (also the paper, section 4.3), with solo-learn's sum of the two
views' variance terms (``solo/losses/vicreg.py``; the authors' code halves
it). The other hyper-parameters and their sources:
``train/recipes/methods/vicreg.toml``.
"""

from __future__ import annotations

from sinsim_ext.losses import VICRegLoss

from ..models import mlp
from .base import Method


class VICReg(Method):
    name = "vicreg"

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        self.projector = mlp(feature_dim, cfg.params["proj_hidden_dim"], cfg.params["proj_output_dim"], layers=3)
        self.vicreg = VICRegLoss(sim_weight=25.0, var_weight=25.0, cov_weight=1.0, variance_views="sum")

    def embed(self, x1, x2):
        return self.projector(self.backbone(x1)), self.projector(self.backbone(x2))

    def loss_from(self, z1, z2):
        terms = self.vicreg.terms(z1, z2)
        return self.vicreg.combine(terms), terms
