"""SinSim: SimCLR plus a Sinkhorn regulariser between the two views.

    L = NT-Xent(z1, z2) + lambda * W_eps(s1, s2)

with ``s = h`` (encoder features, 512-d for ResNet-18; the paper's choice,
``--sinkhorn-on features``) or ``s = z`` (projections,
``--sinkhorn-on projection``). See :class:`sinsim_ext.losses.SinSimLoss`.
"""

from __future__ import annotations

from sinsim_ext.losses import SinSimLoss

from .simclr import SimCLR


class SinSim(SimCLR):
    name = "sinsim"
    # SimCLR's recipe (see simclr.py); lambda = 0.1, eps = 0.05 and 100
    # iterations are the config defaults (DESIGN.md section 4).
    defaults = dict(SimCLR.defaults)

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        self.loss = SinSimLoss(
            temperature=cfg.temperature,
            weight=cfg.sinkhorn_weight,
            eps=cfg.sinkhorn_eps,
            cost=cfg.sinkhorn_cost,
            normalize=cfg.sinkhorn_normalize,
            max_iter=cfg.sinkhorn_iters,
            debias=cfg.sinkhorn_debias,
            backend=cfg.sinkhorn_backend,
            check_finite=False,  # no device sync in the step; the engine watches the loss
        )
        self.on_features = cfg.sinkhorn_on == "features"

    def loss_terms(self, x1, x2):
        (h1, h2), (z1, z2) = self.encode_pair(x1, x2)
        s1, s2 = (h1, h2) if self.on_features else (z1, z2)
        terms = self.loss.terms(z1, z2, s1, s2)
        return self.loss.combine(terms), terms
