"""SinSim: SimCLR plus a Sinkhorn regulariser between the two views.

    L = NT-Xent(z1, z2) + lambda * T_eps(s1, s2)

Two choices, both flags (and grid axes of ``--protocol paper``):

* **the term** ``T`` (``--sinkhorn-term``):

  - ``entropic``: ``OT_eps(s1, s2)``, the entropic optimal-transport cost:
    the SinSim paper's equation (3), taken literally. It has an entropic
    bias: for n well-spread points ``OT_eps(X, X)`` is about ``eps log n``,
    and it falls towards 0 when the whole batch crowds into one spot, so it
    can be lowered by collapsing the batch, not only by aligning the views
    (docs/design/maths.md, "The debiased Sinkhorn divergence").
  - ``divergence``: the debiased Sinkhorn divergence
    ``S_eps = OT(s1, s2) - OT(s1, s1)/2 - OT(s2, s2)/2`` (Feydy et al.,
    AISTATS 2019; the loss of Genevay et al., AISTATS 2018, that the paper
    cites): 0 when the two views' batches coincide, whatever their spread.
    Collapse still pays when the two views differ: with the embeddings
    L2-normalised (``--sinkhorn-normalize``), a large common offset crowds
    both views into one spot on the sphere and drives ``S_eps`` towards 0
    too (``OT`` between nearly equal clouds), so neither term is immune to
    it; the centred geometry every run records tells the two apart.

* **where it acts** (``--sinkhorn-on``): the encoder features ``h``
  (512-d for ResNet-18; the paper names h) or the projections ``z``.

See :class:`sinsim_ext.losses.SinSimLoss`. The default is in
``train/config.py`` and docs/trainer/paper.md says which evidence chose it.
"""

from __future__ import annotations

from sinsim_ext.losses import SinSimLoss

from .simclr import SimCLR

TERMS = {"entropic": False, "divergence": True}  # term -> debias


class SinSim(SimCLR):
    name = "sinsim"
    # SimCLR's recipe (see simclr.py); lambda = 0.1, eps = 0.05 and 100
    # iterations are the config defaults (the workload of docs/performance/index.md).
    defaults = dict(SimCLR.defaults)

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        if cfg.sinkhorn_term not in TERMS:
            raise ValueError(f"sinkhorn_term must be one of {tuple(TERMS)}, got {cfg.sinkhorn_term!r}")
        if cfg.sinkhorn_on not in ("features", "projection"):
            raise ValueError(f"sinkhorn_on must be 'features' or 'projection', got {cfg.sinkhorn_on!r}")
        self.loss = SinSimLoss(
            temperature=cfg.temperature,
            weight=cfg.sinkhorn_weight,
            eps=cfg.sinkhorn_eps,
            cost=cfg.sinkhorn_cost,
            normalize=cfg.sinkhorn_normalize,
            max_iter=cfg.sinkhorn_iters,
            tol=cfg.sinkhorn_tol,
            debias=TERMS[cfg.sinkhorn_term],
            backend=cfg.sinkhorn_backend,
            check_finite=False,  # no device sync in the step; the engine watches the loss
        )
        self.on_features = cfg.sinkhorn_on == "features"
        # Under torchrun, the row-sharded Sinkhorn term (sinsim_ext.distributed.ShardedSinkhornLoss)
        # when train.parallel.model chooses it: it takes this process's rows, not the gathered batch.
        self.sharded_sinkhorn = None

    def convergence_limits(self):
        return {"sinkhorn_error": self.loss.sinkhorn.tolerance}

    def embed(self, x1, x2):
        (h1, h2), (z1, z2) = self.encode_pair(x1, x2)
        s1, s2 = (h1, h2) if self.on_features else (z1, z2)
        return z1, z2, s1, s2

    def loss_from(self, z1, z2, s1, s2):
        terms = self.loss.terms(z1, z2, s1, s2)
        return self.loss.combine(terms), terms

    def loss_terms(self, x1, x2):
        if self.sharded_sinkhorn is None:
            return super().loss_terms(x1, x2)
        z1, z2, s1, s2 = self.embed(x1, x2)
        z1, z2 = self.batch.gather(z1, z2)
        value, error = self.sharded_sinkhorn.value_and_error(s1, s2)
        terms = {"ntxent": self.loss.ntxent(z1, z2), "sinkhorn": value, "sinkhorn_error": error}
        return self.loss.combine(terms), terms
