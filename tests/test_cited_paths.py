"""Every repository path that the code, the docs or the README cite exists.

A moved or renamed file leaves its old path behind in docstrings, pages and
error messages; this test finds those. It reads the tracked files (``git
ls-files``), collects each token that looks like a repository path ending in
a file extension (``docs/design/maths.md``, ``csrc/core/sinkhorn.h``) and
checks that the path exists in the checkout. Committed run reports under
``results/`` are records of past runs and keep the paths of their day.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TOP_FOLDERS = ("docs", "bench", "csrc", "sinsim_ext", "train", "tests", "experiments", "examples", "results", ".ci")
EXTENSIONS = ("md", "rst", "py", "h", "cpp", "cu", "cuh", "sh", "toml", "json", "jsonl", "txt", "cfg", "yaml")
CITING_FILES = re.compile(r"\.(py|h|cpp|cu|cuh|md|rst|toml|sh|txt|cfg)$")
PATH_TOKEN = re.compile(
    r"(?<![\w./-])((?:%s)/[A-Za-z0-9_./-]*\.(?:%s))(?![\w/])" % ("|".join(re.escape(t) for t in TOP_FOLDERS),
                                                            "|".join(EXTENSIONS))
)

# Paths that name a file a command writes (an output), not one that must be there already.
OUTPUTS = {
    "bench/measurements/shared-cores.json",  # bench/shared_cores.py --json OUTPUT, in its usage line
}


def tracked_citing_files():
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    for name in listed.splitlines():
        if name.startswith("results/") or name.startswith("tests/") or not CITING_FILES.search(name):
            continue
        yield name


def cited_paths(text):
    for match in PATH_TOKEN.finditer(text):
        yield match.group(1)


def test_the_path_pattern_finds_citations_and_ignores_non_paths():
    text = ("see docs/design/maths.md, and csrc/core/sinkhorn.h; the tag train/loss is no file; "
            "nor is ../shared/data/cifar10.json, and a glob results/*/report.md is skipped")
    assert list(cited_paths(text)) == ["docs/design/maths.md", "csrc/core/sinkhorn.h"]


def test_every_cited_repository_path_exists():
    missing = {}
    for name in tracked_citing_files():
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        for path in cited_paths(text):
            if path not in OUTPUTS and not (ROOT / path).exists():
                missing.setdefault(path, []).append(name)
    assert not missing, "cited paths that do not exist (path <- citing files):\n" + "\n".join(
        f"  {path} <- {', '.join(sorted(set(files)))}" for path, files in sorted(missing.items())
    )
