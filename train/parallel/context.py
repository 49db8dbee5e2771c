"""The process group of a torchrun job and the driver's messages to the workers.

Two groups:

* the **default group** (NCCL on GPUs, gloo on CPUs) carries the training
  collectives: DistributedDataParallel's gradient all-reduce, the loss's
  all-gathers, BatchNorm and Sinkhorn reductions. Its timeout is
  ``--dist-timeout`` minutes: a collective that waits longer (a process
  hangs, or a machine vanished without closing its connections) fails
  instead of hanging for ever;
* the **control group** (gloo, on the CPU) carries the driver's messages
  (:meth:`Context.send`, :meth:`Context.receive`). The workers wait there
  while the driver evaluates a finished run, which may take much longer
  than a training collective, so its timeout is long (a week).

A process that dies closes its sockets, so a gloo collective in the other
processes fails at once ("Connection closed by peer"), and torchrun stops the
others of its machine when one fails (SIGTERM, which :mod:`train.stopping`
defers during training: the next collective then fails);
:func:`lost_contact` turns that into a one-line error.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

import torch
import torch.distributed as dist

from .env import torchrun_local_rank, torchrun_rank, torchrun_world_size

CONTROL_TIMEOUT = timedelta(days=7)

_CURRENT: Optional["Context"] = None


@dataclass
class Context:
    rank: int
    world: int
    local_rank: int
    backend: str  # of the default group: "nccl" or "gloo"
    control: Any  # the gloo group of the driver's messages
    job_open: bool = False  # the workers are inside a pretraining run with the driver

    @property
    def is_driver(self) -> bool:
        return self.rank == 0

    def who(self) -> str:
        return f"rank {self.rank} of {self.world}"

    def make_trainer(self, cfg, method, images, views, optimizer, scheduler, batch_size: int, **options):
        """This rank's data-parallel trainer of a run (:func:`.trainer.make_trainer`)."""
        from .trainer import make_trainer

        return make_trainer(self, cfg, method, images, views, optimizer, scheduler, batch_size, **options)

    def send(self, message: Any) -> None:
        """The driver sends ``message`` (anything ``torch.save`` takes) to every worker."""
        buffer = io.BytesIO()
        torch.save(message, buffer)
        payload = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
        size = torch.tensor([payload.numel()], dtype=torch.int64)
        dist.broadcast(size, src=0, group=self.control)
        dist.broadcast(payload, src=0, group=self.control)

    def receive(self) -> Any:
        """A worker waits for the driver's next message (tensors come on the CPU)."""
        size = torch.zeros(1, dtype=torch.int64)
        dist.broadcast(size, src=0, group=self.control)
        payload = torch.empty(int(size.item()), dtype=torch.uint8)
        dist.broadcast(payload, src=0, group=self.control)
        return torch.load(io.BytesIO(payload.numpy().tobytes()), map_location="cpu", weights_only=False)


def current() -> Optional[Context]:
    """The job's context, or None in a plain one-process run."""
    return _CURRENT


def start(device: str, timeout_minutes: float) -> Context:
    """Join the torchrun job: the default group for ``device`` ("cuda": NCCL,
    one GPU per process, ``LOCAL_RANK``; "cpu": gloo) and the control group."""
    global _CURRENT
    local_rank = torchrun_local_rank()
    if device == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise SystemExit(f"error: rank {torchrun_rank()}: LOCAL_RANK {local_rank} but this machine has "
                             f"{count} GPU(s); start at most {count} processes per machine (--nproc-per-node)")
        torch.cuda.set_device(local_rank)
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    _CURRENT = Context(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, backend=backend,
                       control=control)
    if _CURRENT.world != torchrun_world_size():
        raise RuntimeError(f"torch.distributed has {_CURRENT.world} processes, WORLD_SIZE says {torchrun_world_size()}")
    return _CURRENT


def finish() -> None:
    """Leave the job."""
    global _CURRENT
    if dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None


_LOST = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out", "timeout",
         "nccl", "socket", "connection refused", "ncclremoteerror", "ncclsystemerror")


def lost_contact(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another process
    stopped, hung or became unreachable."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(k in text for k in _LOST)


def first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")
