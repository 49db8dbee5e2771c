"""Pre-registration: which plan and which code the campaign's cells may run with.

``OUT/registry.jsonl`` is append-only; each line registers the plan (its
sha256 and its number of history entries) and the code (its content
fingerprint, :func:`train.provenance.code_fingerprint`, and per-file
hashes) with a reason. Registering is done on a checkout whose git metadata
is trustworthy (the development machine), and the line is committed with the
results, so a device machine with a stale copy of the git metadata can still
prove what it ran.

Rules (:func:`register`):

* the plan file is committed (tracked, no uncommitted change), so the plan a
  cell ran under is in the history before the cell's numbers exist;
* a changed plan needs a new ``[[history]]`` entry saying what changed and
  why (the plan is changed only there, before the changed cells run);
* the code that computes the numbers has no uncommitted change, so its
  fingerprint names a commit.

A cell runs only under the latest registration: the current plan's sha256
and the current code's fingerprint must both be the ones registered last
(:func:`require_registered`), else the command refuses and names what
changed. Changed code is registered again with a reason (for example "the
trainer became a package; the digits results are bit-identical"); the report
lists every registration and which cells ran under each.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

from train import append_text, changed_files, code_fingerprint, fingerprint_paths, git_state

from .plan import Plan

REGISTRY = "registry.jsonl"
ROOT = Path(__file__).resolve().parents[3]  # the repository: git runs there


class RegistrationError(RuntimeError):
    """The plan or the code is not registered, or cannot be registered as it is."""


def read_registry(out) -> List[Dict]:
    path = Path(out) / REGISTRY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _git_status(paths: List[str]) -> Optional[str]:
    """``git status --porcelain`` of ``paths`` (untracked files included), or None without git."""
    try:
        proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *paths], cwd=ROOT,
                              capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout


def _tracked(path: Path) -> bool:
    try:
        subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=ROOT, capture_output=True,
                       timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def register(plan: Plan, out, reason: str, check_git: bool = True) -> Dict:
    """Append a registration of ``plan`` and the current code to ``OUT/registry.jsonl``."""
    if not reason.strip():
        raise RegistrationError("--register needs a reason (what this registration is for)")
    if check_git:
        plan_path = plan.path.resolve()
        status = _git_status([str(plan_path)])
        if status is None:
            raise RegistrationError("registering needs a git checkout (to show that the plan is committed)")
        if not _tracked(plan_path) or status.strip():
            raise RegistrationError(f"{plan.path} has uncommitted changes or is not tracked: commit the plan before "
                                    "registering it (pre-registration means the plan is in the history first)")
        code = _git_status(fingerprint_paths())
        if code and code.strip():
            lines = ", ".join(line[3:] for line in code.splitlines()[:5])
            raise RegistrationError(f"the code has uncommitted changes ({lines}): commit them, so that the "
                                    "registered fingerprint names a commit")
    previous = read_registry(out)
    if previous and previous[-1]["plan_sha256"] != plan.sha256 \
            and len(plan.history) <= previous[-1]["plan_history_entries"]:
        raise RegistrationError(f"{plan.path} changed since its last registration without a new [[history]] "
                                "entry: add one (date, change, reason) saying what changed and why")
    fingerprint, files = code_fingerprint()
    entry = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reason": reason.strip(),
        "plan_sha256": plan.sha256,
        "plan_history_entries": len(plan.history),
        "code_fingerprint": fingerprint,
        "git": git_state(),
        "code_files": files,
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    append_text(Path(out) / REGISTRY, json.dumps(entry, sort_keys=True) + "\n")
    return entry


def require_registered(plan: Plan, out) -> str:
    """The current code fingerprint, when the plan and the code are the ones
    registered last; else :class:`RegistrationError` naming what changed."""
    entries = read_registry(out)
    fingerprint, files = code_fingerprint()
    how = (f"python train/run.py --protocol campaign --plan {plan.path} --out {out} --register \"<reason>\" "
           "on a git checkout, then commit the registry")
    if not entries:
        raise RegistrationError(f"{Path(out) / REGISTRY} holds no registration: register the plan before any of "
                                f"its runs ({how})")
    last = entries[-1]
    if last["plan_sha256"] != plan.sha256:
        raise RegistrationError(f"{plan.path} is not the plan registered last (sha256 {plan.sha256[:12]} now, "
                                f"{last['plan_sha256'][:12]} registered): a changed plan needs a [[history]] entry "
                                f"and a new registration ({how})")
    if last["code_fingerprint"] != fingerprint:
        changed = changed_files(last.get("code_files", {}), files)
        listed = ", ".join(f"{p} ({what})" for p, what in list(changed.items())[:8])
        more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
        raise RegistrationError(f"the code is not the code registered last (fingerprint {fingerprint} now, "
                                f"{last['code_fingerprint']} registered; {listed}{more}). Register it with a "
                                f"reason that says why its numbers stay comparable, or restore it ({how})")
    return fingerprint
