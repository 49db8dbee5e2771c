"""The campaign's plan: a committed TOML file, read and checked here.

A plan fixes, before any of its runs, what will be run and how it will be
judged::

    schema = 1
    title = "..."
    written = "2026-12-03"
    primary_hypothesis = "..."          # prose, shown in the report
    [settings]                          # Config fields shared by every cell (training and evaluation)
    batch_size = 512
    [[stages]]
    id = "a"                            # stages run in the order written
    title = "..."
    rule = "choose_term"                # a rule of experiments.paper.campaign.rules
    rule_text = "..."                   # the rule in words, as pre-registered
    [[stages.blocks]]
    dataset = "cifar10"
    epochs = 20
    seeds = [0, 1, 2]
    settings = { knn_every = 5 }        # optional, on top of [settings]
    cells = [ { method = "simclr" },
              { method = "sinsim", sinkhorn_term = "@a.sinkhorn_term", sinkhorn_weight = 1.0 } ]
    [[history]]                         # every change after the plan was first registered
    date = "..."
    change = "..."
    reason = "..."

A cell value ``"@<stage>.<key>"`` is the decision ``key`` of an earlier
stage's rule (:mod:`.rules`): the cell cannot run before that stage is
decided. A cell's folder is ``cells/<dataset>/<name>-e<epochs>/seed<S>``,
its name as in :mod:`experiments.paper.cells` (``simclr``,
``sinsim-entropic-lam1-eps0.05-features``, ``random-init``); two blocks that
ask for the same folder must ask for the same settings, so a cell shared by
two stages (stage c's SimCLR seeds 0-2 are stage d's CIFAR-10 SimCLR) is
trained once.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from train import DATASETS, METHOD_NAMES, Config, setting_names

from ..cells import RANDOM_INIT, SINKHORN_FIELDS, Cell, method_cell, sinsim_cell
from ..spec import RUN_ONLY_FIELDS, SINSIM

SCHEMA = 1
CELL_KEYS = {"method", "sinkhorn_term", "sinkhorn_weight", "sinkhorn_eps", "sinkhorn_on"}
# Config fields a plan may not set: where and how fast a cell runs is the command line's business.
FORBIDDEN_SETTINGS = set(RUN_ONLY_FIELDS) - {"knn_every"}
# Block settings that change what a run logs, not what it computes: blocks may share a cell despite them.
MONITOR_SETTINGS = {"knn_every"}


class PlanError(ValueError):
    """The plan file is malformed or asks for something impossible."""


@dataclass(frozen=True)
class CellSpec:
    """One configuration of a block, possibly waiting for a decision."""

    method: str
    values: Tuple[Tuple[str, Any], ...] = ()  # Sinkhorn settings (SinSim only)

    @property
    def references(self) -> Dict[str, Tuple[str, str]]:
        """``{field: (stage, decision key)}`` for every ``"@stage.key"`` value."""
        out = {}
        for k, v in self.values:
            if isinstance(v, str) and v.startswith("@"):
                stage, _, key = v[1:].partition(".")
                out[k] = (stage, key)
        return out

    def resolve(self, decisions: Dict[str, Dict[str, Any]]) -> Optional["CellSpec"]:
        """The spec with every reference replaced by its stage's decision, or
        None while a referenced stage is undecided."""
        values = dict(self.values)
        for k, (stage, key) in self.references.items():
            if key not in decisions.get(stage, {}):
                return None
            values[k] = decisions[stage][key]
        return CellSpec(self.method, tuple(sorted(values.items())))


@dataclass(frozen=True)
class Block:
    stage: str
    dataset: str
    epochs: int
    seeds: Tuple[int, ...]
    cells: Tuple[CellSpec, ...]
    settings: Tuple[Tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Stage:
    id: str
    title: str
    rule: str
    rule_text: str
    blocks: Tuple[Block, ...]
    note: str = ""


@dataclass
class Plan:
    path: Path
    sha256: str
    title: str
    written: str
    primary_hypothesis: str
    settings: Dict[str, Any]
    stages: List[Stage]
    history: List[Dict[str, str]] = field(default_factory=list)

    def stage(self, stage_id: str) -> Stage:
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise KeyError(stage_id)

    def base_config(self, block: Block, run: Dict[str, Any]) -> Config:
        """The shared Config of ``block``'s cells: the plan's settings, the
        block's, its epochs, and the command line's run-only fields ``run``."""
        values = {**self.settings, **dict(block.settings), "epochs": block.epochs, "dataset": block.dataset}
        values.update({k: v for k, v in run.items() if k in setting_names()})
        return Config.from_settings(values)


def cell_of(dataset: str, epochs: int, spec: CellSpec, defaults: Dict[str, Any]) -> Cell:
    """The :class:`~experiments.paper.cells.Cell` of a resolved spec, its name
    suffixed with the epochs (blocks of one dataset differ in budget)."""
    if spec.method == RANDOM_INIT:
        base = Cell(dataset, RANDOM_INIT, RANDOM_INIT)
    elif spec.method == "sinsim":
        v = {**defaults, **dict(spec.values)}
        base = sinsim_cell(dataset, float(v["sinkhorn_weight"]), float(v["sinkhorn_eps"]), v["sinkhorn_on"],
                           v["sinkhorn_term"])
    else:
        base = method_cell(dataset, spec.method)
    if base.method == RANDOM_INIT:  # untrained: the budget does not apply
        return base
    return Cell(dataset, f"{base.name}-e{epochs}", base.method, base.overrides)


def _require(table: Dict[str, Any], key: str, kind, where: str):
    if key not in table:
        raise PlanError(f"{where}: missing '{key}'")
    value = table[key]
    if not isinstance(value, kind):
        raise PlanError(f"{where}: '{key}' must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _settings(table: Dict[str, Any], where: str) -> Dict[str, Any]:
    known = setting_names()
    for k in table:
        if k not in known:
            raise PlanError(f"{where}: '{k}' is not a trainer setting (train/config.py Config) nor a method's "
                            "hyper-parameter (train/recipes/methods/)")
        if k in FORBIDDEN_SETTINGS or k in ("dataset", "method", "seed", "epochs"):
            raise PlanError(f"{where}: '{k}' is set by the plan's blocks or the command line, not by settings")
    return dict(table)


def _cell(raw: Any, where: str, stage_ids: Sequence[str]) -> CellSpec:
    if not isinstance(raw, dict):
        raise PlanError(f"{where}: a cell is a table like {{ method = \"simclr\" }}, got {raw!r}")
    unknown = set(raw) - CELL_KEYS
    if unknown:
        raise PlanError(f"{where}: unknown cell keys {sorted(unknown)}; allowed: {sorted(CELL_KEYS)}")
    method = _require(raw, "method", str, where)
    if method not in METHOD_NAMES and method != RANDOM_INIT:
        raise PlanError(f"{where}: method {method!r} is not one of {list(METHOD_NAMES) + [RANDOM_INIT]}")
    values = {k: v for k, v in raw.items() if k != "method"}
    if values and method != "sinsim":
        raise PlanError(f"{where}: only sinsim cells take Sinkhorn settings, {method} got {sorted(values)}")
    spec = CellSpec(method, tuple(sorted(values.items())))
    for k, (stage, key) in spec.references.items():
        if stage not in stage_ids:
            raise PlanError(f"{where}: {k} = \"@{stage}.{key}\" names no earlier stage (earlier: {list(stage_ids)})")
    return spec


def read_plan(path) -> Plan:
    """Parse and check the plan at ``path`` (:class:`PlanError` says what is wrong)."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan ({exc.strerror or exc})") from exc
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: not valid TOML ({exc})") from exc
    where = str(path)
    if raw.get("schema") != SCHEMA:
        raise PlanError(f"{where}: schema must be {SCHEMA}, got {raw.get('schema')!r}")
    settings = _settings(raw.get("settings", {}), f"{where} [settings]")
    stages: List[Stage] = []
    for i, st in enumerate(_require(raw, "stages", list, where)):
        sw = f"{where} stage {i + 1}"
        sid = _require(st, "id", str, sw)
        if sid in [s.id for s in stages]:
            raise PlanError(f"{sw}: stage id {sid!r} is used twice")
        blocks = []
        for j, bl in enumerate(st.get("blocks", [])):
            bw = f"{sw} ({sid}) block {j + 1}"
            dataset = _require(bl, "dataset", str, bw)
            if dataset not in DATASETS:
                raise PlanError(f"{bw}: dataset {dataset!r} is not one of {list(DATASETS)}")
            epochs = _require(bl, "epochs", int, bw)
            seeds = _require(bl, "seeds", list, bw)
            if epochs < 1 or not seeds or any(not isinstance(s, int) or s < 0 for s in seeds) \
                    or len(set(seeds)) != len(seeds):
                raise PlanError(f"{bw}: epochs must be >= 1 and seeds distinct non-negative integers")
            cells = tuple(_cell(c, f"{bw} cell {k + 1}", [s.id for s in stages])
                          for k, c in enumerate(_require(bl, "cells", list, bw)))
            extra = _settings(bl.get("settings", {}), f"{bw} settings")
            blocks.append(Block(sid, dataset, epochs, tuple(seeds), cells, tuple(sorted(extra.items()))))
        stages.append(Stage(sid, _require(st, "title", str, sw), _require(st, "rule", str, sw),
                            _require(st, "rule_text", str, sw), tuple(blocks), st.get("note", "")))
    from .rules import RULES

    for s in stages:
        if s.rule not in RULES:
            raise PlanError(f"{where} stage {s.id}: rule {s.rule!r} is not one of {sorted(RULES)}")
    history = raw.get("history", [])
    for k, h in enumerate(history):
        for key in ("date", "change", "reason"):
            _require(h, key, str, f"{where} history entry {k + 1}")
    plan = Plan(path=path, sha256=hashlib.sha256(raw_bytes).hexdigest(), title=_require(raw, "title", str, where),
                written=_require(raw, "written", str, where),
                primary_hypothesis=_require(raw, "primary_hypothesis", str, where), settings=settings,
                stages=stages, history=list(history))
    _check_shared_folders(plan)
    return plan


def _check_shared_folders(plan: Plan) -> None:
    """Two blocks asking for one folder must mean one configuration."""
    defaults = {f: SINSIM.defaults[f] for f in SINKHORN_FIELDS}
    seen: Dict[Tuple[str, str], Tuple[str, Tuple]] = {}
    for stage in plan.stages:
        for block in stage.blocks:
            for spec in block.cells:
                if spec.references:
                    continue  # decided later; checked when it resolves (the cell identity)
                cell = cell_of(block.dataset, block.epochs, spec,
                               {**defaults, **{k: v for k, v in plan.settings.items() if k in defaults}})
                key = (block.dataset, cell.name)
                computed = tuple((k, v) for k, v in block.settings if k not in MONITOR_SETTINGS)
                mine = (stage.id, computed)
                if key in seen and seen[key][1] != computed:
                    raise PlanError(f"{plan.path}: cell {block.dataset}/{cell.name} is asked for by stage "
                                    f"{seen[key][0]} and stage {stage.id} with different block settings "
                                    f"({dict(seen[key][1])} vs {dict(block.settings)}); give one of them another "
                                    "budget or the same settings")
                seen.setdefault(key, mine)
