r"""Row-sharded Sinkhorn across the processes of a ``torch.distributed`` group.

When a global batch is spread over ``W`` processes (data parallel training),
each process ``r`` holds its rows ``x_r`` (``n_r`` points) of the first
cloud and ``y_r`` (``m_r``) of the second. Gathering both clouds and solving
on every process (the *gathered* solve) keeps the whole ``n x m`` cost matrix
on each of them; here process ``r`` keeps only its rows of it,
``C_r = C(x_r, y)`` (``n_r x m``), so the memory per process falls by ``W``.

Problem and iteration: exactly those of :func:`sinsim_ext.sinkhorn_cost`
(docs/design/maths.md) with uniform weights ``a_i = 1/n``, ``b_j = 1/m``
(``n = W n_r``, ``m = W m_r``), in the same order, so value and gradient are
the single-process kernel's up to rounding::

    g_j = -eps LSE_i(log a_i + (f_i - C_ij) / eps)        (column update; f = 0 first)
    repeat max_iter times:
        f_i = -eps LSE_j(log b_j + (g_j - C_ij) / eps)    (row update)
        g   = column update of f                          (not after the last row update)
    value = <a, f> + <b, g>

* **Row update**: local. Process ``r`` holds every ``g_j`` and its own rows
  of ``C``, so it updates its ``f_i`` alone.
* **Column update**: a log-sum-exp over all rows ``i``, which are spread over
  the processes. Each process forms the partial
  ``l_rj = LSE_{i in r}(f_i/eps - C_ij/eps)`` of its rows for every column,
  and two all-reduces of ``m`` numbers combine them exactly:
  ``M_j = max_r l_rj`` (all-reduce MAX), then
  ``S_j = sum_r exp(l_rj - M_j)`` (all-reduce SUM), and
  ``LSE_i = M_j + log S_j``: the rescaled sum of the usual stable
  log-sum-exp, split at the process boundary (SwAV's distributed Sinkhorn
  combines its column sums the same way, without the log domain). Every
  process then holds the same ``g``.
* **Value**: ``<a, f>`` is a sum over the rows: one all-reduce of one number.
* **Debiased divergence** ``S = OT(x, y) - OT(x, x)/2 - OT(y, y)/2``: the
  symmetric problems keep the averaged update ``p <- (p + T(p))/2`` with
  ``T(p)_i = -eps LSE_j(log a_j + (p_j - C_ij)/eps)``. Process ``r`` computes
  ``T(p)`` on its rows (``C(x_r, x)``, ``n_r x n``); the full ``T(p)`` comes
  from an all-reduce SUM of the zero-padded pieces (exact: the other
  entries add zeros). The three problems run in lockstep, so an iteration
  costs two collectives whatever ``debias`` is: an all-reduce MAX of ``m``
  numbers and one all-reduce SUM of ``m`` (+ ``n + m`` with ``debias``).

Backward (envelope theorem, docs/design/maths.md): with the plan
``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, ``dOT/dx_i`` needs row
``i`` of ``P`` only (local), while ``dOT/dy_j = sum_i (...)`` sums over all
rows: each process computes its rows' part for every column and one
all-reduce SUM (``(m + [n + m]) x d`` numbers) adds them. The rows of ``P``
are recomputed from the saved potentials in blocks, so the backward keeps
no ``n_r x m`` matrix between forward and backward.

Gradient convention: the value and gradients are those of the *gathered*
computation ``sinkhorn_cost(all_gather(x), all_gather(y))`` written with
:func:`torch.distributed.nn.functional.all_gather`, whose backward sums each
shard's gradient over the processes. So if process ``r`` back-propagates the
cotangent ``c_r``, its shards receive ``(sum_r c_r) dS/dx_r`` and
``(sum_r c_r) dS/dy_r``. In data-parallel training every process computes the
same global loss (cotangent ``c``), its shards get ``W c dS/dx_r``, and
DistributedDataParallel's average over the ``W`` processes divides the
``W`` out again: the parameters get exactly the single-process gradient.
For the plain derivative of the value with respect to your own shard,
back-propagate ``value / W``.

Memory per process: the ``n_r x m`` block ``C_r`` (+ ``n_r x n`` and
``m_r x m`` with ``debias``) plus temporaries of at most ``CHUNK_ENTRIES``
entries per block row chunk; the gathered solve keeps ``n x m`` (x 3 with
``debias``) on every process.

The options are :class:`sinsim_ext.SinkhornOptions`, checked as the
single-process solve checks them (:func:`sinsim_ext._checks.prepare`: the
points, their values, the options), its convergence report too
(:mod:`sinsim_ext.convergence`); the cost is the table's
(:mod:`sinsim_ext.costs`).

Limits (each raises a clear error): uniform weights only; the same number
of rows ``n_r`` (and ``m_r``) on every process; the options of
:data:`UNSUPPORTED` at their defaults only (no ``tol``: every process runs
``max_iter`` iterations, a stopping test would cost a collective per
iteration; no eps-scaling; no ``cost_mode``); no double backward or forward
mode. All processes of ``group`` must call it with the same options (it is a
collective).
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ._checks import Problem, prepare, value_flags
from .convergence import warn_unconverged
from .costs import cost_matrix, cost_vjp
from .losses import SinkhornLoss
from .options import OptionAttributes, SinkhornOptions
from .result import debiased

__all__ = ["CHUNK_ENTRIES", "UNSUPPORTED", "ShardedSinkhornLoss", "sharded_sinkhorn_cost"]

#: Largest temporary (entries) a row chunk of a block makes: the log-sum-exps
#: and the backward's plan rows are computed this many entries at a time.
CHUNK_ENTRIES = 1 << 22

#: The options the sharded solve takes at their default only, and why.
UNSUPPORTED = {
    "tol": "runs exactly max_iter iterations (a stopping test would cost a collective per iteration)",
    "scaling": "runs plain iterations (eps-scaling is not implemented there)",
    "cost_mode": "keeps its rows of the cost matrix (cost_mode chooses the compiled operator's memory use)",
}
_DEFAULTS = SinkhornOptions()

_SUM, _MAX = dist.ReduceOp.SUM, dist.ReduceOp.MAX
# (group, rank, n_r, m_r, d) whose sizes were checked against the other processes'
_CHECKED_SHAPES: set = set()


class _Group:
    """The process group and this process's place in it."""

    def __init__(self, group):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "sharded_sinkhorn_cost needs an initialised torch.distributed process group "
                "(torch.distributed.init_process_group, or launch with torchrun); in one process use "
                "sinsim_ext.sinkhorn_cost")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)

    def all_reduce(self, t: torch.Tensor, op=_SUM) -> torch.Tensor:
        dist.all_reduce(t, op=op, group=self.group)
        return t

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous(), group=self.group)
        return torch.cat(parts)

    def mine(self, rows_per_rank: int) -> slice:
        return slice(self.rank * rows_per_rank, (self.rank + 1) * rows_per_rank)

    def padded(self, local: torch.Tensor, total: int) -> torch.Tensor:
        """``local`` at this process's place in a zero vector of ``total`` entries."""
        full = local.new_zeros(total)
        full[self.mine(local.shape[0])] = local
        return full


def _chunks(rows: int, cols: int) -> List[slice]:
    step = max(1, CHUNK_ENTRIES // max(cols, 1))
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]


class _Block:
    """This process's rows ``X_r`` of a transport problem against all of its
    columns ``Y``, stored as ``K = -C(X_r, Y) / eps`` (``n_r x m``)."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, eps: float, cost: str):
        self.K = cost_matrix(rows, cols, cost).div_(-eps)
        self.chunks = _chunks(*self.K.shape)

    def row_lse(self, w: torch.Tensor) -> torch.Tensor:
        """``LSE_j(K_ij + w_j)`` for each local row ``i``."""
        return torch.cat([torch.logsumexp(self.K[c] + w, dim=1) for c in self.chunks])

    def col_lse(self, u: torch.Tensor) -> torch.Tensor:
        """``LSE_{i local}(K_ij + u_i)`` for each column ``j`` (this process's partial)."""
        out = None
        for c in self.chunks:
            part = torch.logsumexp(self.K[c] + u[c, None], dim=0)
            out = part if out is None else torch.logaddexp(out, part)
        return out


def _row_error(f_old: torch.Tensor, f_new: torch.Tensor, weight: float, eps: float) -> torch.Tensor:
    """``sum_i a_i |exp((f_old_i - f_new_i)/eps) - 1|``: the row-marginal L1 error before the update."""
    return weight * torch.expm1((f_old - f_new) / eps).abs().sum()


def _solve(grp: _Group, x_r, y_r, x, y, eps: float, cost: str, iters: int, debias: bool):
    """The lockstep solve of OT(x, y) (and OT(x, x), OT(y, y) with ``debias``).

    Returns ``(value, potentials, errors)``; ``potentials`` are this process's
    ``f`` rows and the full ``g`` of OT(x, y), then ``(T(p), p)`` in full of
    each symmetric problem."""
    n, m = grp.world * x_r.shape[0], y.shape[0]
    log_a, log_b = -math.log(n), -math.log(m)
    xy = _Block(x_r, y, eps, cost)
    f = x_r.new_zeros(x_r.shape[0])

    def column_sums(f):  # local partial LSE, its all-reduced max, the rescaled terms to sum
        part = xy.col_lse(f / eps)
        top = grp.all_reduce(part.clone(), _MAX)
        return top, torch.exp(part - top)

    def column_update(top, total):
        return -eps * (log_a + top + torch.log(total))

    top, terms = column_sums(f)
    g = column_update(top, grp.all_reduce(terms))
    if debias:
        xx, yy = _Block(x_r, x, eps, cost), _Block(y_r, y, eps, cost)
        p_x, p_y = x.new_zeros(n), y.new_zeros(m)
    err_xy = err_x = err_y = None
    for t in range(1, iters + 1):
        last = t == iters
        f_new = -eps * (log_b + xy.row_lse(g / eps))
        err_xy = _row_error(f, f_new, 1.0 / n, eps)
        f = f_new
        pieces = []
        if not last:
            top, terms = column_sums(f)
            pieces.append(terms)
        if debias:
            q_x = -eps * (log_a + xx.row_lse(p_x / eps))  # T(p_x) on this process's rows
            q_y = -eps * (log_b + yy.row_lse(p_y / eps))
            pieces += [grp.padded(q_x, n), grp.padded(q_y, m)]
        if not pieces:
            break
        summed = grp.all_reduce(torch.cat(pieces))
        if not last:
            g = column_update(top, summed[:m])
            summed = summed[m:]
        if debias:
            q_x, q_y = summed[:n], summed[n:]
            err_x, err_y = _row_error(p_x, q_x, 1.0 / n, eps), _row_error(p_y, q_y, 1.0 / m, eps)
            if not last:
                p_x, p_y = 0.5 * (p_x + q_x), 0.5 * (p_y + q_y)
    local = grp.all_reduce(torch.stack([f.sum(), err_xy]))  # <a, f> needs every row; so does the error
    value = local[0] / n + g.sum() / m
    potentials = [f, g]
    errors = [local[1]]
    if debias:
        value = debiased(value, (q_x.sum() + p_x.sum()) / n, (q_y.sum() + p_y.sum()) / m)
        potentials += [q_x, p_x, q_y, p_y]
        errors += [err_x, err_y]
    return value, potentials, torch.stack(errors)


def _plan_vjp(rows, cols, f_rows, g, weight: float, eps: float, cost: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(dOT/d rows, this process's part of dOT/d cols)`` from the plan rows
    ``P_ij = weight * exp((f_i + g_j - C_ij) / eps)``, computed in row chunks."""
    grad_rows = torch.empty_like(rows)
    grad_cols = torch.zeros_like(cols)
    for c in _chunks(rows.shape[0], cols.shape[0]):
        P = torch.exp((f_rows[c, None] + g - cost_matrix(rows[c], cols, cost)) / eps).mul_(weight)
        gr, gc = cost_vjp(rows[c], cols, P, cost)
        grad_rows[c] = gr
        grad_cols += gc
    return grad_rows, grad_cols


class _ShardedSinkhorn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_r, y_r, grp: _Group, eps: float, cost: str, iters: int, debias: bool):
        y = grp.gather_rows(y_r)
        x = grp.gather_rows(x_r) if debias else None
        value, potentials, errors = _solve(grp, x_r, y_r, x, y, eps, cost, iters, debias)
        ctx.save_for_backward(x_r, y_r, y, *([x] if debias else []), *potentials)
        ctx.grp, ctx.eps, ctx.cost, ctx.debias = grp, eps, cost, debias
        ctx.mark_non_differentiable(errors)
        return value, errors

    @staticmethod
    def backward(ctx, grad_value, _grad_errors):
        grp, eps, cost, debias = ctx.grp, ctx.eps, ctx.cost, ctx.debias
        if debias:
            x_r, y_r, y, x, f, g, q_x, p_x, q_y, p_y = ctx.saved_tensors
        else:
            x_r, y_r, y, f, g = ctx.saved_tensors
        n, m = grp.world * x_r.shape[0], y.shape[0]
        mine_x, mine_y = grp.mine(x_r.shape[0]), grp.mine(y_r.shape[0])
        grad_x, cols_y = _plan_vjp(x_r, y, f, g, 1.0 / (n * m), eps, cost)
        pieces = [cols_y]
        if debias:
            rows_xx, cols_xx = _plan_vjp(x_r, x, q_x[mine_x], p_x, 1.0 / (n * n), eps, cost)
            rows_yy, cols_yy = _plan_vjp(y_r, y, q_y[mine_y], p_y, 1.0 / (m * m), eps, cost)
            pieces += [cols_xx, cols_yy]
        cotangent = torch.zeros(1, dtype=x_r.dtype, device=x_r.device) if grad_value is None else grad_value.reshape(1)
        summed = grp.all_reduce(torch.cat([p.flatten() for p in pieces] + [cotangent.to(x_r.dtype)]))
        total, summed = summed[-1], summed[:-1]
        d = x_r.shape[1]
        cols_y = summed[: m * d].view(m, d)
        grad_y = cols_y[mine_y].clone()
        if debias:
            cols_xx = summed[m * d : (m + n) * d].view(n, d)
            cols_yy = summed[(m + n) * d :].view(m, d)
            grad_x = debiased(grad_x, rows_xx, cols_xx[mine_x])
            grad_y = debiased(grad_y, rows_yy, cols_yy[mine_y])
        return total * grad_x, total * grad_y, None, None, None, None, None


def _check_shapes(grp: _Group, x_r: torch.Tensor, y_r: torch.Tensor) -> None:
    """Every process must hold as many rows (and features) as this one: one
    small all-gather the first time a shape is seen."""
    key = (id(grp.group), grp.rank, x_r.shape[0], y_r.shape[0], x_r.shape[1])
    if key in _CHECKED_SHAPES:
        return
    mine = torch.tensor([x_r.shape[0], y_r.shape[0], x_r.shape[1]], dtype=torch.int64, device=x_r.device)
    every = grp.gather_rows(mine.view(1, 3)).tolist()
    if any(row != every[0] for row in every):
        raise ValueError(
            "sharded_sinkhorn_cost needs the same shard shape on every process; (x rows, y rows, d) per rank: "
            + ", ".join(f"rank {r}: {tuple(s)}" for r, s in enumerate(every)))
    _CHECKED_SHAPES.add(key)


def _check_values(grp: _Group, pb: Problem) -> None:
    """The value checks of the single-process solve (:func:`sinsim_ext._checks.value_flags`)
    on every process: every process raises the same error (one all-gather of
    the flags), none is left waiting."""
    flags = value_flags(pb.x, pb.y, pb.a, pb.b, False, False, pb.options.cost)
    every = grp.gather_rows(torch.stack(list(flags.values())).to(torch.int64).view(1, -1)).tolist()  # (ranks, checks)
    for k, message in enumerate(flags):
        ranks = [r for r, bad in enumerate(every) if bad[k]]
        if ranks:
            raise ValueError(f"{message} (on rank {', '.join(map(str, ranks))})")


def unsupported(options: SinkhornOptions) -> dict:
    """``{option: why}`` of the options the sharded solve does not implement
    (those of :data:`UNSUPPORTED` away from their defaults)."""
    return {name: why for name, why in UNSUPPORTED.items() if getattr(options, name) != getattr(_DEFAULTS, name)}


def sharded_sinkhorn_cost(
    x: torch.Tensor,
    y: torch.Tensor,
    options: Optional[SinkhornOptions] = None,
    *,
    return_error: bool = False,
    group=None,
    **fields,
):
    r"""``OT_eps`` (or with ``debias`` the Sinkhorn divergence) between the
    point clouds whose rows are spread over the processes of ``group``.

    A collective: every process of ``group`` (default: the whole world)
    calls it with its own shards and the same options, and gets the same
    value. See the module docstring for the maths and the gradient
    convention (that of the gathered computation).

    Args:
        x: this process's rows of the first cloud, ``(n_r, d)``; the same
            ``n_r`` on every process.
        y: this process's rows of the second cloud, ``(m_r, d)``.
        options: a :class:`sinsim_ext.SinkhornOptions`, as for
            :func:`sinsim_ext.sinkhorn_cost` (uniform weights): ``eps``,
            ``cost``, ``max_iter``, ``debias``, ``check_finite``; the options
            of :data:`UNSUPPORTED` (``tol``, ``scaling``, ``cost_mode``) at
            their defaults only.
        fields: options by name, replacing those of ``options``.
        return_error: also return the final L1 row-marginal error (the worst
            of the problems with ``debias``; the same on every process) as a
            detached device tensor, and do not warn: the caller reads it
            (:mod:`sinsim_ext.convergence`; the trainer does every
            ``--check-every`` steps). Without it an unconverged result warns
            (:class:`sinsim_ext.SinkhornConvergenceWarning`) on the CPU, and
            on GPUs with ``check_finite=True``, as :func:`sinsim_ext.sinkhorn_cost`.
        group: the ``torch.distributed`` process group.

    Returns:
        The value, a scalar in the promoted dtype of ``x`` and ``y`` (half
        precision inputs are computed in float32); differentiable in ``x``
        and ``y`` (first-order reverse mode). With ``return_error``,
        ``(value, error)``.
    """
    options = SinkhornOptions.resolve(options, fields, "sharded_sinkhorn_cost")
    for name, why in unsupported(options).items():
        raise ValueError(f"{name}: the row-sharded Sinkhorn solve {why}; pass {name}={getattr(_DEFAULTS, name)!r}")
    for name, t in (("x", x), ("y", y)):
        if isinstance(t, torch.Tensor) and t.dim() != 2:
            raise ValueError(f"{name} must be this process's rows, shape (n_r, d); got {tuple(t.shape)} "
                             "(batches of problems are not supported by the sharded solve)")
    pb = prepare(x, y, options.replace(check_finite=False), caller="sharded_sinkhorn_cost")
    grp = _Group(group)
    x_r, y_r = pb.x[0], pb.y[0]
    _check_shapes(grp, x_r, y_r)
    if options.check_finite:
        _check_values(grp, pb)
    value, errors = _ShardedSinkhorn.apply(x_r, y_r, grp, options.eps, options.cost, options.max_iter, options.debias)
    value = value.to(pb.out_dtype)
    if return_error:
        return value, errors.detach().amax()
    warn_unconverged(errors, options)
    return value


class ShardedSinkhornLoss(OptionAttributes, nn.Module):
    r""":class:`sinsim_ext.losses.SinkhornLoss` on a batch spread over the
    processes of ``group``: each process passes its rows of the two views'
    embeddings and gets the loss of the whole batch, from the row-sharded
    solve (:func:`sharded_sinkhorn_cost`; gradient convention there).

    Build it from a ``SinkhornLoss`` with :meth:`like` so both compute the
    same term: the same :class:`sinsim_ext.SinkhornOptions` and ``normalize``
    (``backend`` does not apply: this is plain PyTorch plus collectives, on
    any device).
    """

    def __init__(self, options: Optional[SinkhornOptions] = None, *, normalize: bool = True, group=None, **fields):
        super().__init__()
        self.options = SinkhornOptions.resolve(options, fields, "ShardedSinkhornLoss", base=SinkhornLoss.DEFAULTS)
        refused = unsupported(self.options)
        if refused:
            raise NotImplementedError(
                f"the row-sharded Sinkhorn solve does not implement the option(s) {sorted(refused)}: "
                + "; ".join(f"it {why}" for why in refused.values())
                + "; gather the batch and use SinkhornLoss instead (the trainer: --sinkhorn-shard never)")
        self.normalize = bool(normalize)
        self.group = group

    @classmethod
    def like(cls, loss: nn.Module, group=None) -> "ShardedSinkhornLoss":
        """The sharded twin of a :class:`sinsim_ext.SinkhornLoss` (its options and
        ``normalize``); ``NotImplementedError`` for options the sharded solve does not implement."""
        return cls(loss.options, normalize=loss.normalize, group=group)

    def _solve(self, x: torch.Tensor, y: torch.Tensor, return_error: bool):
        with torch.autocast(device_type=x.device.type, enabled=False):
            x, y = x.float(), y.float()
            if self.normalize:
                x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
            return sharded_sinkhorn_cost(x, y, self.options, return_error=return_error, group=self.group)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._solve(x, y, return_error=False)

    def value_and_error(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(value, error)`` as :meth:`sinsim_ext.SinkhornLoss.value_and_error`: the final
        marginal error as a detached device tensor, no warning, no extra synchronisation."""
        return self._solve(x, y, return_error=True)

    def extra_repr(self) -> str:
        o = self.options
        return f"eps={o.eps}, cost={o.cost!r}, normalize={self.normalize}, max_iter={o.max_iter}, debias={o.debias}"

