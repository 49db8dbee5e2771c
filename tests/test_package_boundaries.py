"""What the trainer's package boundaries promise: the experiments build on its public API only, the trainer
never imports the experiments (its entry script dispatches to them), and no infrastructure names a method."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import train

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def test_the_public_api_resolves():
    for name in train.__all__:
        assert getattr(train, name) is not None, name


def test_the_experiments_use_the_trainers_public_api_only():
    offences = []
    for path in sorted((ROOT / "experiments").rglob("*.py")):
        for line, module, names in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if module == "train":
                offences += [f"{where}: train.{n} is not public" for n in names or [] if n not in train.__all__]
            elif module.startswith("train."):
                offences.append(f"{where}: imports {module}, a module of the trainer")
    assert not offences, "\n".join(offences)


def test_the_trainer_does_not_import_the_experiments():
    for path in sorted((ROOT / "train").rglob("*.py")):
        if path == ROOT / "train" / "run.py":  # the entry script: --protocol paper / campaign
            continue
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) experiments\b", text, re.M), path


def test_no_infrastructure_compares_against_a_method_name():
    """Methods differ through their recipes and their classes' hooks, never through
    ``if cfg.method == "sinsim"`` outside train/methods/."""
    names = "|".join(train.METHOD_NAMES)
    pattern = re.compile(rf"""(==|!=|\bin)\s*\(?["']({names})["']""")
    offences = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
                for path in sorted((ROOT / "train").rglob("*.py")) if "methods" not in path.parts
                for i, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offences, "\n".join(offences)
