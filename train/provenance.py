"""Which code produced a run: the git commit of the repository and whether
its tracked files differed from that commit, and a fingerprint of the code's
content that needs no git metadata.

Every run records this in its ``results.json`` (``code``), so a report can
say when it mixes runs of different code. A tree with uncommitted changes
to tracked files is *dirty*; its ``diff_sha256`` (of ``git diff HEAD``)
tells two dirty trees of the same commit apart. Untracked files are not
counted (run outputs and build products live there).

A copy of the working tree whose git metadata is stale (a device machine's
snapshot) records the wrong commit; :func:`code_fingerprint` hashes the
files themselves instead: every source file of the operator (``sinsim_ext/``,
``csrc/``, ``setup.py``) and of the trainer (``train/``, its recipes in
``train/recipes/`` included). The experiments (``experiments/``), which plan
runs and report on them but compute none of their numbers, are outside it.
Two trees with the same fingerprint train the same way.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Dict, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, timeout=20, check=True).stdout


def git_state() -> Optional[Dict[str, object]]:
    """``{"commit", "short", "dirty", "diff_sha256"}`` of the repository, or
    None when it is not a git checkout (or git is missing)."""
    try:
        commit = _git("rev-parse", "HEAD").decode().strip()
        diff = _git("diff", "HEAD", "--no-ext-diff", "--binary")
    except (OSError, subprocess.SubprocessError):
        return None
    return {
        "commit": commit,
        "short": commit[:7],
        "dirty": bool(diff),
        "diff_sha256": hashlib.sha256(diff).hexdigest()[:16] if diff else None,
    }


def code_label(state: Optional[Dict[str, object]]) -> str:
    """``3dc6425``, ``3dc6425 + uncommitted changes (diff 1a2b...)``, either with ``[code <fingerprint>]``
    when the run recorded one, ``code <fingerprint>`` without git, or ``not recorded``."""
    if not state:
        return "not recorded"
    fingerprint = f"code {state['fingerprint']}" if state.get("fingerprint") else ""
    if not state.get("commit"):
        return fingerprint or "not recorded"
    label = str(state.get("short") or str(state["commit"])[:7])
    if state.get("dirty") or state.get("uncommitted_changes"):
        diff = state.get("diff_sha256")
        label += " + uncommitted changes" + (f" (diff {diff})" if diff else "")
    return f"{label} [{fingerprint}]" if fingerprint else label


FINGERPRINT_DIRS = ("sinsim_ext", "csrc", "train")
FINGERPRINT_FILES = ("setup.py",)
FINGERPRINT_SUFFIXES = (".py", ".h", ".cpp", ".cu", ".cuh", ".toml", ".yaml", ".yml")
FINGERPRINT_EXCLUDED: tuple = ()  # paths under FINGERPRINT_DIRS that compute no number


def fingerprint_paths() -> list:
    """The folders and files (relative to the repository root) the fingerprint covers, before exclusions."""
    return list(FINGERPRINT_DIRS) + list(FINGERPRINT_FILES)


def code_files(root: Path = ROOT) -> Dict[str, str]:
    """``{relative path: sha256 of its bytes}`` of the files the fingerprint covers."""
    paths = [root / f for f in FINGERPRINT_FILES if (root / f).is_file()]
    for folder in FINGERPRINT_DIRS:
        paths += [p for p in (root / folder).rglob("*") if p.is_file() and p.suffix in FINGERPRINT_SUFFIXES]
    hashes = {}
    for path in paths:
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel.split("/") or any(rel == e or rel.startswith(e + "/") for e in FINGERPRINT_EXCLUDED):
            continue
        hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(hashes.items()))


def code_fingerprint(root: Path = ROOT) -> Tuple[str, Dict[str, str]]:
    """``(fingerprint, per-file hashes)``: the fingerprint is 16 hex digits of
    the sha256 over the sorted ``path: hash`` lines."""
    files = code_files(root)
    lines = "".join(f"{path}: {digest}\n" for path, digest in files.items())
    return hashlib.sha256(lines.encode()).hexdigest()[:16], files


def changed_files(before: Dict[str, str], after: Dict[str, str]) -> Dict[str, str]:
    """``{path: "added" | "removed" | "changed"}`` between two :func:`code_files` maps."""
    out = {p: "removed" for p in before if p not in after}
    out.update({p: "added" for p in after if p not in before})
    out.update({p: "changed" for p in before if p in after and before[p] != after[p]})
    return dict(sorted(out.items()))


def code_state() -> Dict[str, object]:
    """What a run records as its ``code``: :func:`git_state` (when there is
    git) and the content ``fingerprint``."""
    return {**(git_state() or {}), "fingerprint": code_fingerprint()[0]}
