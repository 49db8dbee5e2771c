"""A run owns its output folder: ``OUT/run.lock``, held for the run's life.

The lock is an exclusive ``flock`` on ``OUT/run.lock``, a file that records
its owner (pid, host, start time, command line). The kernel drops the lock
when its process dies, however it dies, so:

* a second run on the same folder finds the lock held and refuses to start,
  naming the owner (:class:`~train.errors.FolderBusy`), before it touches
  anything;
* a run that was killed leaves ``run.lock`` behind but not the lock: the
  next run takes it over and says whose it was (a *stale* lock).

A finished run deletes ``run.lock``. Taking a folder also removes the
temporary files an interrupted write left there
(:func:`train.storage.remove_stale_temporaries`): nobody else can be writing
them while we hold the lock. Locks are re-entrant within a process (the
single protocol locks ``OUT`` and then each method's folder, which may be
``OUT`` itself), and nested folders each get their own lock. A run also
refuses a folder inside one that another live run owns (a single run pointed
at ``OUT/<method>`` of a ``--method all`` run, or at a paper cell); the other
way round, a run that reaches a folder held by another stops with the same
error, and ``--method all`` takes every method folder at its start. The
exception: a process that declares it works for the owner
(:func:`work_inside`, a campaign's worker) may take folders inside the
owner's.

``flock`` works on local file systems and on NFS v4 (as a POSIX lock). Where
the file system has no locks at all, the run goes on with a warning that
says it is unprotected.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Tuple

from .errors import FolderBusy, StorageError
from .storage import ensure_folder, reason, remove_stale_temporaries

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

LOCK_NAME = "run.lock"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}

# folder (resolved) -> [fd or None, depth]; None: held without a kernel lock
_held: Dict[Path, list] = {}
# folder (resolved) -> pid of the run this process works for inside it (work_inside)
_delegated: Dict[Path, int] = {}


def _owner_record() -> Dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": " ".join(sys.argv)}


def _read_owner(fd: int) -> Optional[Dict]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 1 << 16).decode("utf-8", "replace")
        owner = json.loads(text) if text.strip() else None
        return owner if isinstance(owner, dict) else None
    except (OSError, ValueError):
        return None


def describe(owner: Optional[Dict]) -> str:
    if not owner:
        return "a process that has not written its name yet"
    return (f"pid {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')} "
            f"(command: {owner.get('command')})")


def _open_locked(path: Path) -> Tuple[Optional[int], Optional[Dict]]:
    """``(fd, previous owner)`` of ``path`` locked by us; ``(None, None)``
    when the file system has no locks. Raises FolderBusy when held."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise StorageError(f"cannot write in {path.parent}: {reason(exc)} (creating its {path.name}); "
                               "make the folder writable or pass another --out") from exc
        if fcntl is None:
            os.close(fd)
            return None, None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise FolderBusy(f"{path.parent} is in use by another run: {describe(owner)}. Wait for it to finish "
                             f"(or stop it), or pass another --out") from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_LOCKS:
                return None, None
            raise StorageError(f"cannot lock {path}: {reason(exc)}") from exc
        # The previous owner may have deleted the file between our open and
        # our flock: then we locked an orphan inode and must try again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd, _read_owner(fd)
        os.close(fd)


def _busy_ancestor(folder: Path) -> None:
    """Refuse ``folder`` when a folder above it is owned by another live run
    (a single run pointed into a ``--method all`` or paper folder)."""
    if fcntl is None:
        return
    for above in folder.resolve().parents:
        lock = above / LOCK_NAME
        if above in _held or not lock.is_file():
            continue
        try:
            fd = os.open(lock, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            if _delegated.get(above) is not None and owner and owner.get("pid") == _delegated[above] \
                    and owner.get("host") == socket.gethostname():
                continue  # this process works inside the folder on its owner's behalf (work_inside)
            raise FolderBusy(f"{folder} is inside {above}, which is in use by another run: {describe(owner)}. "
                             "Wait for it to finish (or stop it), or pass another --out") from None
        except OSError:
            pass
        finally:
            os.close(fd)


def work_inside(folder, owner_pid: int) -> None:
    """Declare that this process works inside ``folder`` on behalf of the run
    ``owner_pid`` that holds it (a campaign's worker process): folders below
    it may then be taken while that run holds ``folder``, and only then."""
    _delegated[Path(folder).resolve()] = owner_pid


def _write_owner(fd: int, path: Path) -> None:
    data = json.dumps(_owner_record()).encode("utf-8") + b"\n"
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.fsync(fd)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {reason(exc)}; pass another --out") from exc


@contextmanager
def hold_run_folder(folder, log: Callable[[str], None] = print) -> Iterator[Path]:
    """Create ``folder`` if needed and own it for the ``with`` block:
    refuse (:class:`FolderBusy`) when a live run holds it, take over a stale
    lock, and remove leftover temporary files."""
    folder = Path(folder)
    if folder.resolve() not in _held:
        _busy_ancestor(folder)  # before anything is created here
    folder = ensure_folder(folder)
    key = folder.resolve()
    if key in _held:  # re-entered by the same process
        _held[key][1] += 1
        try:
            yield folder
        finally:
            _held[key][1] -= 1
        return
    path = folder / LOCK_NAME
    fd, previous = _open_locked(path)
    try:
        if fd is None:
            log(f"warning: {folder} is on a file system without file locks: nothing stops another run "
                "from writing there at the same time")
        else:
            if previous and previous.get("pid") != os.getpid():
                log(f"note: took over {path} from {describe(previous)}: that run no longer holds it "
                    "(it was killed or crashed)")
            _write_owner(fd, path)
        removed = remove_stale_temporaries(folder)
        if removed:
            log(f"note: removed {len(removed)} temporary file(s) an interrupted write left in {folder}: "
                + ", ".join(removed))
        _held[key] = [fd, 1]
        try:
            yield folder
        finally:
            del _held[key]
            if fd is not None:
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass  # the folder turned read-only: the kernel lock still ends with us
    finally:
        if fd is not None:
            os.close(fd)
