"""Which code produced a run: the git commit of the repository and whether
its tracked files differed from that commit.

Every run records this in its ``results.json`` (``code``), so a report can
say when it mixes runs of different code. A tree with uncommitted changes
to tracked files is *dirty*; its ``diff_sha256`` (of ``git diff HEAD``)
tells two dirty trees of the same commit apart. Untracked files are not
counted (run outputs and build products live there).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Dict, Optional

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
    """``3dc6425``, ``3dc6425 + uncommitted changes (diff 1a2b...)``, or ``not recorded``."""
    if not state:
        return "not recorded"
    short = state.get("short") or str(state.get("commit", "?"))[:7]
    if state.get("dirty") or state.get("uncommitted_changes"):
        diff = state.get("diff_sha256")
        return f"{short} + uncommitted changes" + (f" (diff {diff})" if diff else "")
    return str(short)
