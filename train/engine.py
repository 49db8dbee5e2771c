"""The pretraining loop.

The whole pretraining set lives on the device as uint8; each step indexes a
batch out of a per-epoch permutation, augments it on the device and takes an
optimiser step, all without a DataLoader (as in KellerJordan/cifar10-airbench).
On CUDA the step runs under bf16 autocast with channels-last activations, and
optionally ``torch.compile``.

A step never synchronises with the device: the loss is accumulated on the
device, and only every ``check_every`` steps and at the end of each epoch is
it read back, together with the norm of all weights, in one transfer. That is
when a diverging run is stopped (:class:`TrainingDiverged`):

* a NaN/inf loss (the step index of the first one is tracked on the device,
  so the error names it);
* exploding weights: a NaN/inf norm, or a norm more than
  ``GROWTH_LIMIT`` (100) times that of the freshly initialised model (the
  same reference for a resumed run, whose model is initialised with the same
  seed before the checkpoint is loaded). Weight decay keeps a healthy run's
  norm within a small factor of its start; BatchNorm keeps the loss finite
  while the weights run away, so the loss alone does not show this;
* an exploding loss: the mean loss since the last check more than
  ``GROWTH_LIMIT`` times ``max(1, |reference|)``, the reference being the
  mean over the run's first check window (kept in the checkpoint). Every
  method's healthy loss stays within a small factor of its start.

Convergence of an inner solver (SinSim's Sinkhorn term): terms the method
names in ``convergence_limits()`` (``sinkhorn_error``, the final marginal
error of each step's solve) are kept as their running maximum on the device,
read in the same transfer, and a step whose solve ended above its limit gives
a :class:`sinsim_ext.SinkhornConvergenceWarning` naming the steps and what to
change. An error of NaN means unknown (the solve is beyond what its float
precision resolves at this eps, :mod:`sinsim_ext.resolution`): it warns too,
saying so. ``metrics.csv`` gets the epoch's maximum as a column (NaN if any
step's was).

Progress within an epoch is shown by :class:`train.progress.EpochProgress`.

Stopping (:mod:`train.stopping`): before every step the trainer asks
whether a stop was requested (SIGTERM, SIGINT); if so it raises
:class:`TrainingStopped` at that step boundary, and :meth:`Trainer.state_dict`
then holds the epoch in progress (its permutation, the steps done, the
loss, term and convergence accumulators), so that a run resumed from the
checkpoint written there continues exactly as if it had not stopped.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from . import cpu_threads, stopping
from .augment import TwoViews
from .methods import Method
from .progress import EpochProgress

GROWTH_LIMIT = 100.0


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN/inf or exploded; the message says
    which, by which step, and the numbers."""


class NonFiniteLossError(TrainingDiverged):
    """The training loss became NaN or inf."""


class ExplodingTraining(TrainingDiverged):
    """The weights' norm or the loss grew beyond ``GROWTH_LIMIT`` times its start."""


class TrainingStopped(Exception):
    """A stop signal was honoured at the boundary before step ``done + 1``
    of ``epoch`` (``done`` steps of it finished, 0: at its start)."""

    def __init__(self, signum: int, epoch: int, done: int, steps: int):
        super().__init__(signum, epoch, done, steps)
        self.signum, self.epoch, self.done, self.steps = signum, epoch, done, steps


@dataclass
class EpochInProgress:
    """Everything an epoch accumulates, so that it can stop and resume
    between two steps. Tensors live on the training device."""

    epoch: int
    order: torch.Tensor  # the epoch's permutation
    steps: int  # of the epoch
    done: int  # steps finished
    loss_sum: torch.Tensor
    term_sums: Dict[str, torch.Tensor]
    worst: Dict[str, torch.Tensor]  # convergence reports since the last check
    epoch_worst: Dict[str, float]
    first_bad: torch.Tensor
    window: tuple  # (steps, loss sum) at the last check
    lr: float  # at the start of the epoch
    seconds: float  # spent on it before this session

    def state_dict(self) -> Dict:
        cpu = lambda t: t.detach().cpu()  # noqa: E731
        return {"epoch": self.epoch, "order": cpu(self.order), "steps": self.steps, "done": self.done,
                "loss_sum": cpu(self.loss_sum), "term_sums": {k: cpu(v) for k, v in self.term_sums.items()},
                "worst": {k: cpu(v) for k, v in self.worst.items()}, "epoch_worst": dict(self.epoch_worst),
                "first_bad": cpu(self.first_bad), "window": tuple(self.window), "lr": self.lr,
                "seconds": self.seconds}

    @classmethod
    def from_state(cls, state: Dict, device: torch.device) -> "EpochInProgress":
        on = lambda t: t.to(device)  # noqa: E731
        return cls(epoch=state["epoch"], order=on(state["order"]), steps=state["steps"], done=state["done"],
                   loss_sum=on(state["loss_sum"]), term_sums={k: on(v) for k, v in state["term_sums"].items()},
                   worst={k: on(v) for k, v in state["worst"].items()}, epoch_worst=dict(state["epoch_worst"]),
                   first_bad=on(state["first_bad"]), window=tuple(state["window"]), lr=state["lr"],
                   seconds=state["seconds"])


def weight_norm(module: torch.nn.Module) -> torch.Tensor:
    """The L2 norm of all parameters together, as a 0-d tensor on their device (no sync)."""
    norms = torch._foreach_norm([p.detach() for p in module.parameters()])
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


@dataclass
class EpochStats:
    epoch: int
    loss: float
    terms: Dict[str, float]
    lr: float
    seconds: float
    images_per_second: float

    def row(self) -> Dict[str, float]:
        return {"epoch": self.epoch, "loss": self.loss, **self.terms, "lr": self.lr,
                "seconds": self.seconds, "images_per_second": self.images_per_second}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """Runs epochs of self-supervised training of ``method`` on ``images``."""

    def __init__(
        self,
        method: Method,
        images: torch.Tensor,
        views: TwoViews,
        optimizer: torch.optim.Optimizer,
        scheduler,
        *,
        batch_size: int,
        epochs: int,
        generator: torch.Generator,
        precision: str = "fp32",
        compile: bool = False,
        check_every: int = 50,
        progress: Optional[bool] = None,
        progress_every: float = 30.0,
        label: str = "",
        step: Optional[Callable] = None,
        order_generator: Optional[torch.Generator] = None,
        rows: Optional[slice] = None,
    ):
        """``step``: the training step, ``(x1, x2) -> (loss, terms)`` (default
        ``method.training_step``; under torchrun the DistributedDataParallel
        module). ``order_generator``: draws each epoch's permutation (default
        ``generator``, which also draws the augmentations). ``rows``: the part
        of each batch of ``batch_size`` this process trains on (default all)."""
        self.method, self.images, self.views = method, images, views
        self.optimizer, self.scheduler = optimizer, scheduler
        self.device = images.device
        self.batch_size = min(batch_size, len(images))
        self.steps_per_epoch = len(images) // self.batch_size
        self.epochs = epochs
        self.total_steps = self.steps_per_epoch * epochs
        self.generator = generator
        self.order_generator = generator if order_generator is None else order_generator
        self.rows = rows
        self.check_every = check_every
        self.progress = progress  # None: a bar on a terminal, else lines every progress_every s
        self.progress_every = progress_every
        self.label = label
        # Divergence references: the freshly initialised weights (this runs
        # before a checkpoint is restored) and the first checked loss.
        self.initial_weight_norm = float(weight_norm(method))
        self.reference_loss: Optional[float] = None
        self.in_progress: Optional[EpochInProgress] = None  # an epoch stopped between two steps
        self.on_check: Optional[Callable[[int, float, float], None]] = None  # (steps done, window's mean loss, lr)
        self.channels_last = self.device.type == "cuda"
        self.autocast = (
            (lambda: torch.autocast("cuda", dtype=torch.bfloat16))
            if precision == "bf16"
            else contextlib.nullcontext
        )
        self.step_fn: Callable = method.training_step if step is None else step
        if compile:
            self.step_fn = torch.compile(self.step_fn)
            views.compile()
        if self.channels_last:
            method.to(memory_format=torch.channels_last)

    def _train_step(self, batch: torch.Tensor):
        v1, v2 = self.views(batch, self.generator)
        if self.channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            loss, terms = self.step_fn(v1, v2)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach(), terms

    @property
    def generators(self) -> Dict[str, torch.Generator]:
        """The run's own generators, by the name the checkpoint keeps them under."""
        if self.order_generator is self.generator:
            return {"data": self.generator}
        return {"order": self.order_generator, "augment": self.generator}

    def state_dict(self) -> Dict:
        """What a resumed run needs to judge divergence exactly as an
        uninterrupted one, and the epoch in progress when it stopped between
        two steps."""
        return {"reference_loss": self.reference_loss,
                "in_progress": None if self.in_progress is None else self.in_progress.state_dict()}

    def load_state_dict(self, state: Dict) -> None:
        self.reference_loss = state.get("reference_loss")
        partial = state.get("in_progress")
        self.in_progress = None if partial is None else EpochInProgress.from_state(partial, self.device)

    def stop_requested(self) -> Optional[int]:
        """The signal of a stop to honour before the next step, or None."""
        return stopping.requested()

    def _begin_epoch(self, epoch: int) -> EpochInProgress:
        """The epoch stopped earlier (restored from the checkpoint), or a fresh one."""
        if self.in_progress is not None and self.in_progress.epoch == epoch:
            return self.in_progress
        return EpochInProgress(
            epoch=epoch, order=torch.randperm(len(self.images), generator=self.order_generator, device=self.device),
            steps=self.steps_per_epoch, done=0, loss_sum=torch.zeros((), device=self.device), term_sums={}, worst={},
            epoch_worst={}, first_bad=torch.full((), -1, dtype=torch.long, device=self.device), window=(0, 0.0),
            lr=self.optimizer.param_groups[0]["lr"], seconds=0.0)

    def train_epoch(self, epoch: int, first_step: int) -> EpochStats:
        """One pass over a fresh permutation (or the rest of the epoch a
        stopped run left); ``epoch`` counts from 1."""
        self.method.train()
        resuming = self.in_progress is not None and self.in_progress.epoch == epoch
        signum = self.stop_requested()
        if signum is not None and not resuming:  # before the permutation is drawn from the generator
            raise TrainingStopped(signum, epoch, 0, self.steps_per_epoch)
        run = self._begin_epoch(epoch)
        self.in_progress = None
        limits = self.method.convergence_limits()
        _sync(self.device)
        start = time.perf_counter()
        progress = EpochProgress(label=self.label, epoch=epoch, epochs=self.epochs, steps=self.steps_per_epoch,
                                 batch_size=self.batch_size, steps_before=first_step, total_steps=self.total_steps,
                                 every=self.progress_every, bar=self.progress, start_at=run.done)
        try:
            for i in range(run.done, self.steps_per_epoch):
                signum = self.stop_requested()
                if signum is not None:
                    _sync(self.device)
                    run.seconds += time.perf_counter() - start
                    self.in_progress = run
                    raise TrainingStopped(signum, epoch, i, self.steps_per_epoch)
                step = first_step + i
                idx = run.order[i * self.batch_size : (i + 1) * self.batch_size]
                if self.rows is not None:
                    idx = idx[self.rows]
                loss, terms = self._train_step(self.images[idx])
                self.method.after_optimizer_step(step + 1, self.total_steps)
                run.loss_sum += loss
                for k, v in terms.items():
                    if k in limits:
                        v = v.detach().float().amax()
                        run.worst[k] = torch.maximum(run.worst[k], v) if k in run.worst else v
                    else:
                        run.term_sums[k] = run.term_sums.get(k, 0) + v.float()
                run.first_bad = torch.where((run.first_bad < 0) & ~torch.isfinite(loss), step, run.first_bad)
                run.done = i + 1
                if (i + 1) % self.check_every == 0 or i + 1 == self.steps_per_epoch:
                    before = run.window
                    run.window = self._check(run.loss_sum, run.first_bad, run.window, i + 1, step, epoch, run.worst,
                                             limits, run.epoch_worst)
                    run.worst = {}
                    progress.checked(i + 1, run.window[1] / (i + 1))
                    if self.on_check is not None:
                        mean = (run.window[1] - before[1]) / (run.window[0] - before[0])
                        self.on_check(step + 1, mean, self.optimizer.param_groups[0]["lr"])
                progress.step(i + 1)
                cpu_threads.between_steps()
        finally:
            progress.close()
        _sync(self.device)
        seconds = run.seconds + time.perf_counter() - start
        n = self.steps_per_epoch
        return EpochStats(
            epoch=epoch,
            loss=run.loss_sum.item() / n,
            terms={**{k: v.item() / n for k, v in run.term_sums.items()}, **run.epoch_worst},
            lr=run.lr,
            seconds=seconds,
            images_per_second=n * self.batch_size / seconds,
        )

    def _check(self, loss_sum: torch.Tensor, first_bad: torch.Tensor, window: tuple, done: int, step: int,
               epoch: int, worst: Optional[Dict[str, torch.Tensor]] = None,
               limits: Optional[Dict[str, float]] = None, epoch_worst: Optional[Dict[str, float]] = None) -> tuple:
        """Read the loss, the first bad step, the weights' norm and the
        convergence reports back (one transfer) and raise
        :class:`TrainingDiverged` if the run diverges; warn when an inner solve
        did not converge; returns the new window ``(done, loss sum)``."""
        worst = worst or {}
        read = torch.stack([loss_sum.double(), first_bad.double(), weight_norm(self.method).double(),
                            *(v.double() for v in worst.values())]).tolist()
        total, bad, norm = read[:3]
        self._report_convergence(dict(zip(worst, read[3:])), limits or {}, epoch_worst, done - window[0], step, epoch)
        where = f"by step {step + 1} (epoch {epoch})"
        if bad >= 0:
            raise NonFiniteLossError(f"the training loss became NaN/inf at step {int(bad) + 1} (epoch {epoch})")
        if not math.isfinite(norm) or norm > GROWTH_LIMIT * self.initial_weight_norm:
            raise ExplodingTraining(
                f"the weights exploded {where}: their norm grew from {self.initial_weight_norm:.4g} at "
                f"initialisation to {norm:.4g} (the limit is {GROWTH_LIMIT:.0f}x)")
        mean = (total - window[1]) / (done - window[0])
        if self.reference_loss is None:
            self.reference_loss = mean
        elif abs(mean) > GROWTH_LIMIT * max(1.0, abs(self.reference_loss)):
            raise ExplodingTraining(
                f"the loss exploded {where}: its mean over the last {done - window[0]} steps is {mean:.4g}, "
                f"against {self.reference_loss:.4g} at the start (the limit is {GROWTH_LIMIT:.0f}x)")
        return done, total

    @staticmethod
    def _report_convergence(values: Dict[str, float], limits: Dict[str, float],
                            epoch_worst: Optional[Dict[str, float]], steps: int, step: int, epoch: int) -> None:
        for name, value in values.items():
            if epoch_worst is not None:  # NaN (unknown) wins: it is worse than any number
                before = epoch_worst.get(name, value)
                epoch_worst[name] = value if math.isnan(value) else max(before, value)
            if value < limits[name]:
                continue
            from sinsim_ext import SinkhornConvergenceWarning

            where = f"in the {steps} steps up to step {step + 1} (epoch {epoch})"
            if math.isnan(value):
                message = (f"{name} could not be measured (NaN) {where}: the Sinkhorn solve cannot resolve its plan "
                           "or value in its floating-point precision at this --sinkhorn-eps (eps far below or far "
                           "above the costs, sinsim_ext.resolution), so the term's value and gradient cannot be "
                           "trusted. Choose --sinkhorn-eps nearer the costs' scale (with --sinkhorn-normalize the "
                           "costs lie in [0, 4], the default eps is 0.05)")
            else:
                message = (f"{name} reached {value:.3g} (above {limits[name]:g}) {where}: the Sinkhorn term did not "
                           "converge, so its value and gradient are those of an unconverged plan. Raise "
                           "--sinkhorn-iters, or raise --sinkhorn-eps.")
            warnings.warn(message, SinkhornConvergenceWarning, stacklevel=2)

    def fit(self, start_epoch: int, on_epoch_end: Callable[[EpochStats], None]) -> List[EpochStats]:
        """Train epochs ``start_epoch + 1 .. epochs``, calling ``on_epoch_end``
        after each one (checkpointing, logging)."""
        stats = []
        for epoch in range(start_epoch + 1, self.epochs + 1):
            s = self.train_epoch(epoch, first_step=(epoch - 1) * self.steps_per_epoch)
            on_epoch_end(s)
            stats.append(s)
        return stats
