"""Run a command under torchrun: the driver runs it, the workers serve it.

``train/run.py`` (both protocols) calls :func:`run_distributed` when
``WORLD_SIZE > 1``. Exit statuses: the driver's is the command's; a worker
returns 0 when the driver finished (even with an error: the driver printed
it), 1 when it lost contact with the others or could not do its part, 143
(SIGTERM) or 130 (SIGINT) when it was told to stop (:mod:`train.stopping`;
the driver says where the job stopped).

A stop signal reaches every process (torchrun passes on what it gets). During
training the ranks agree at the next divergence check (``--check-every``
steps) to stop at the same step, the driver saves the checkpoint with every
rank's generators, and the workers go back to wait for the driver, which
tells them to stop. A worker defers the signal all the time: outside
training it waits for the driver's next message.
"""

from __future__ import annotations

import sys
from typing import Callable

from ..errors import TrainerError
from ..stopping import RunStopped, stopped_line
from .context import finish, first_line, lost_contact, start
from .worker import serve

RESUME = "continue with the same torchrun command plus --resume (the driver's last checkpoint is kept)"


def run_distributed(device: str, timeout_minutes: float, driver: Callable[[], int]) -> int:
    """Join the job, run ``driver`` on rank 0 and :func:`.worker.serve` on
    the others, leave the job; returns this process's exit status."""
    ctx = start(device, timeout_minutes)
    try:
        if ctx.is_driver:
            status = driver()
            if not ctx.job_open:  # the workers wait for a message (not inside a run): release them
                ctx.send(("stop",))
            return status
        return serve(ctx)
    except RunStopped as exc:  # outside a run (the driver reports the stops inside one), or a second signal
        if ctx.is_driver:
            print(stopped_line(exc, RESUME), file=sys.stderr)
        return exc.exit_status
    except TrainerError as exc:  # a worker that cannot do its part (its data is missing, ...)
        print(f"error: {ctx.who()}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not lost_contact(exc):
            raise
        print(f"error: {ctx.who()}: a collective failed ({first_line(exc)}): another process of the job stopped, "
              f"hung or cannot be reached (its own error, if any, is above; torchrun's summary below names the first "
              f"process that failed as the Root Cause), so this one stops too; {RESUME}",
              file=sys.stderr)
        return 1
    finally:
        finish()
