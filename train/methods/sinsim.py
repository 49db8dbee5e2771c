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

See :class:`sinsim_ext.losses.SinSimLoss`. The defaults are in its recipe
(``train/recipes/methods/sinsim.toml``) and docs/trainer/paper.md says which
evidence chose the term.
"""

from __future__ import annotations

from sinsim_ext.losses import SinSimLoss

from .simclr import SimCLR

TERMS = {"entropic": False, "divergence": True}  # term -> debias
#: ``--sinkhorn-shard auto`` shards the Sinkhorn solve when the gathered
#: solve's cost matrices would take more than this many bytes per process
#: (bench/test_distributed.py compares the two; docs/scaling.md: the
#: sharded solve saves memory, the fused kernel on the gathered problem is faster).
AUTO_SHARD_BYTES = 256 << 20


def gathered_sinkhorn_bytes(global_batch: int, debias: bool) -> int:
    """Memory of the gathered solve's float32 cost matrices on each process."""
    return 4 * global_batch * global_batch * (3 if debias else 1)


def shards_sinkhorn(mode: str, global_batch: int, debias: bool, tol=None) -> bool:
    """Whether the Sinkhorn term is solved row-sharded under torchrun
    (``--sinkhorn-shard``). ``auto`` never shards a solve with a stopping
    tolerance (``--sinkhorn-tol``), which the sharded solve does not implement."""
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"--sinkhorn-shard must be auto, always or never, got {mode!r}")
    if mode != "auto":
        return mode == "always"
    if tol is not None:
        return False
    return gathered_sinkhorn_bytes(global_batch, debias) > AUTO_SHARD_BYTES


class SinSim(SimCLR):
    name = "sinsim"

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        p = cfg.params
        self.loss = SinSimLoss(
            temperature=p["temperature"],
            weight=p["sinkhorn_weight"],
            eps=p["sinkhorn_eps"],
            cost=p["sinkhorn_cost"],
            normalize=p["sinkhorn_normalize"],
            max_iter=p["sinkhorn_iters"],
            tol=p["sinkhorn_tol"],
            debias=TERMS[p["sinkhorn_term"]],
            backend=p["sinkhorn_backend"],
            check_finite=False,  # no device sync in the step; the engine watches the loss
        )
        self.on_features = p["sinkhorn_on"] == "features"
        # Under torchrun, the row-sharded Sinkhorn term (sinsim_ext.distributed.ShardedSinkhornLoss)
        # when distribute() chooses it: it takes this process's rows, not the gathered batch.
        self.sharded_sinkhorn = None

    def convergence_limits(self):
        return {"sinkhorn_error": self.loss.sinkhorn.tolerance}

    def distribute(self, batch, global_batch):
        """The gathered outputs, and the row-sharded Sinkhorn solve when
        :func:`shards_sinkhorn` chooses it (its gradient is by construction
        the gathered solve's: :mod:`sinsim_ext.distributed`)."""
        super().distribute(batch, global_batch)
        p = self.params
        if shards_sinkhorn(p["sinkhorn_shard"], global_batch, TERMS[p["sinkhorn_term"]], p["sinkhorn_tol"]):
            from sinsim_ext.distributed import ShardedSinkhornLoss

            self.sharded_sinkhorn = ShardedSinkhornLoss.like(self.loss.sinkhorn)

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
