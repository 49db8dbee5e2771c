"""Run a command under torchrun: the driver runs it, the workers serve it.

``train/run.py`` (both protocols) calls :func:`run_distributed` when
``WORLD_SIZE > 1``. Exit statuses: the driver's is the command's; a worker
returns 0 when the driver finished (even with an error: the driver printed
it), 1 when it lost contact with the others or could not do its part, 143
when torchrun stopped it (SIGTERM), 130 on Ctrl-C.
"""

from __future__ import annotations

import sys
from typing import Callable

from ..errors import TrainerError
from .context import Stopped, finish, first_line, lost_contact, start
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
    except Stopped:
        print(f"error: {ctx.who()}: stopped by SIGTERM (torchrun stops every process of the job when one of them "
              f"fails: its error is above); {RESUME}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        if ctx.is_driver:
            print(f"\ninterrupted; {RESUME}", file=sys.stderr)
        return 130
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
