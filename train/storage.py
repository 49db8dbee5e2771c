"""Every file the trainer writes, written so that nothing already there is lost.

* :func:`atomic_write_bytes` writes ``.<name>.<pid>-<random>.tmp`` next to
  the target, flushes it to disk and renames it over the target
  (``os.replace``): a killed run or a full disk leaves the old file or the
  new one, never a torn one. The temporary file is created with mode 0666
  minus the umask (0644 under the usual 022), like any file a program
  writes, not ``tempfile``'s private 0600.
* With ``keep_previous`` the file being replaced is kept under a second
  name first (a hard link: no copy), for the checkpoints' previous one.
* A temporary file left by a kill between the write and the rename is
  removed by :func:`remove_stale_temporaries` when the next run takes the
  folder (it holds the folder's lock then, see :mod:`train.run_lock`, so no
  live writer can own it). Only names of that exact form are removed, so a
  file the trainer did not write is never deleted.
* Every ``OSError`` becomes a :class:`~train.errors.StorageError` whose one
  line names the path, the reason (read-only, disk full, a file where a
  folder should be...) and what was kept.

No torch here: the command line imports this before it parses its arguments.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, List, Optional

from .errors import StorageError

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EFBIG: "the file is too large for this file system",
}
# What temporary_name writes: .<name>.<pid>-<hex>.tmp (nothing else is ours to remove)
_TEMPORARY = re.compile(r"^\..+\.[0-9]+-[0-9a-f]+\.tmp$")


def reason(exc: OSError) -> str:
    """A short human reason for ``exc`` ("no space left on the device")."""
    return _REASONS.get(exc.errno, exc.strerror or type(exc).__name__)


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError`` that reached the top of the command."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{reason(exc)} ({type(exc).__name__}, errno {exc.errno})"


def _first_file_in(path: Path) -> Optional[Path]:
    """The first ancestor of ``path`` (or itself) that exists and is not a folder."""
    for part in reversed([path, *path.parents]):
        if part.exists() and not part.is_dir():
            return part
    return None


def ensure_folder(path, flag: str = "--out") -> Path:
    """Create ``path`` (and its parents) as a folder, or say in one line why
    not; ``flag`` is the option that named it (``--out``)."""
    path = Path(path)
    in_the_way = _first_file_in(path)
    if in_the_way == path:
        raise StorageError(f"{flag} {path} is a file, not a folder; pass a folder (new or existing) to {flag}")
    if in_the_way is not None:
        raise StorageError(f"cannot create the folder {path}: {in_the_way} is a file, not a folder; "
                           f"pass another {flag}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the folder {path}: {reason(exc)}; pass another {flag}") from exc
    return path


def _write_and_sync(f, data: bytes) -> None:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_name(path: Path) -> Path:
    """``.<name>.<pid>-<8 hex digits>.tmp`` next to ``path`` (the pattern
    :func:`remove_stale_temporaries` recognises, and no other)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source``: a second name for the same
    file (a hard link) where the file system has them, else a copy."""
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
            raise
        shutil.copyfile(source, target)


def keep_as(path: Path, previous: Path) -> None:
    """Make ``previous`` hold what ``path`` holds now, atomically (the old
    ``previous`` stays whole until the new one replaces it)."""
    try:
        if previous.exists() and os.path.samefile(path, previous):
            return  # already two names of one file (the last save did not get as far as replacing ``path``)
    except OSError:
        pass
    tmp = temporary_name(previous)
    try:
        _link_or_copy(path, tmp)
        os.replace(tmp, previous)
        tmp.unlink(missing_ok=True)  # rename() between two links of one file leaves both
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise StorageError(f"cannot keep {path} as {previous.name}: {reason(exc)}; {path.name} and the "
                               f"previous {previous.name} are unchanged. Free some space or fix the folder and "
                               "continue (--resume; the paper protocol: the same command)") from exc
        raise


def atomic_write_bytes(path, data: bytes, keep_previous: Optional[Path] = None) -> None:
    """Replace ``path`` by ``data`` atomically; on failure the old file is
    untouched. ``keep_previous``: once ``data`` is safely on disk, and before
    it replaces ``path``, the old ``path`` is kept under this name (so that
    at every moment both names hold a whole file)."""
    path = Path(path)
    ensure_folder(path.parent)  # the run folder (or one inside it) named by --out
    existed = path.exists()
    tmp = temporary_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {reason(exc)}; nothing was changed there. "
                           "Make the folder writable or pass another --out") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            _write_and_sync(f, data)
        if keep_previous is not None and existed:
            keep_as(path, keep_previous)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError):
            kept = f"the previous {path.name} is unchanged" if existed else f"no {path.name} was written"
            advice = "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "fix the folder"
            raise StorageError(f"cannot write {path}: {reason(exc)}; {kept}. {advice.capitalize()} and continue "
                               "(--resume; the paper protocol: the same command), or pass another --out") from exc
        raise
    _sync_folder(path.parent)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_text(path, text: str) -> None:
    """Append ``text`` to a log file (``run.log``), naming the path on failure."""
    path = Path(path)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise StorageError(f"cannot append to {path}: {reason(exc)}; the lines already there are kept. "
                           "Free some space or fix the folder, then run the same command again") from exc


def remove_stale_temporaries(folder) -> List[str]:
    """Delete the temporary files an interrupted write left in ``folder``
    (named by :func:`temporary_name`, ``.<name>.<pid>-<hex>.tmp``; a user's
    ``.notes.tmp`` is not one); returns their names. Call it only while
    holding the folder's lock."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if _TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except OSError as exc:
                raise StorageError(f"cannot remove the leftover temporary file {entry.path}: {reason(exc)}") from exc
            removed.append(entry.name)
    return sorted(removed)
