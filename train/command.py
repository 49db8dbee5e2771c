"""How a command ends: every failure a user can act on as one line on stderr and an exit status.

* a :class:`train.errors.TrainerError` (or one of the command's own
  ``expected`` errors): ``error: <message>``, status 1;
* an ``OSError`` from the file system: ``error: <what failed, where>``, status 1;
* a clean stop (SIGTERM, SIGINT: :class:`train.stopping.RunStopped`): where it
  stopped and what to do next, status 128 + the signal;
* a ``KeyboardInterrupt`` that arrives before the stop handler is installed,
  or is raised by a library: ``interrupted`` and what to do next, status 130.

No traceback for any of them: each message names the fix.
"""

from __future__ import annotations

import sys
from typing import Callable, Tuple, Type

from .errors import TrainerError
from .stopping import RunStopped, stopped_line
from .storage import describe_os_error


def run_command(body: Callable[[], int], then: str, expected: Tuple[Type[BaseException], ...] = ()) -> int:
    """``body()``'s exit status, or the status and one line for its failure;
    ``then`` says how to continue after a stop or an interrupt."""
    try:
        return body()
    except (TrainerError, *expected) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except RunStopped as exc:
        print(stopped_line(exc, then), file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"interrupted; {then}", file=sys.stderr)
        return 130
