"""From the plan to cell runs: which folder each (stage, block, cell, seed) is, in the plan's order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..cells import SINKHORN_FIELDS, Cell
from ..collect import CellRecords, load_cell
from ..spec import SINSIM
from .plan import Block, CellSpec, Plan, Stage, cell_of
from .store import read_campaign_record

Decisions = Dict[str, Dict[str, Any]]


def sinkhorn_defaults(plan: Plan) -> Dict[str, Any]:
    """The Sinkhorn settings a sinsim cell gets when it names none: the trainer's, then the plan's."""
    defaults = {f: SINSIM.defaults[f] for f in SINKHORN_FIELDS}
    defaults.update({k: v for k, v in plan.settings.items() if k in defaults})
    return defaults


@dataclass(frozen=True)
class PlannedCell:
    """A block's cell: its spec as written, resolved (None while it waits for a decision), and its Cell."""

    block: Block
    written: CellSpec
    spec: Optional[CellSpec]
    cell: Optional[Cell]

    @property
    def waiting_for(self) -> List[str]:
        return sorted({stage for stage, _ in self.written.references.values()})


def planned_cells(plan: Plan, block: Block, decisions: Decisions) -> List[PlannedCell]:
    defaults = sinkhorn_defaults(plan)
    out = []
    for written in block.cells:
        spec = written.resolve(decisions)
        cell = None if spec is None else cell_of(block.dataset, block.epochs, spec, defaults)
        out.append(PlannedCell(block, written, spec, cell))
    return out


@dataclass(frozen=True)
class Job:
    """One cell run: a cell of a block at one seed."""

    stage: Stage
    block: Block
    cell: Cell
    seed: int

    def folder(self, out) -> Path:
        return self.cell.path(out, self.seed)

    @property
    def label(self) -> str:
        return f"stage {self.stage.id}: {self.cell.dataset} {self.cell.name} seed {self.seed}"


def all_jobs(plan: Plan, decisions: Decisions) -> Tuple[List[Job], List[Tuple[Stage, PlannedCell]]]:
    """``(jobs, waiting)``: every runnable cell run in the plan's order
    (stage, block, then seed by seed so that a cut budget leaves whole pairs),
    each folder once (the first stage that asks for it); and the cells that
    wait for an undecided stage."""
    jobs: List[Job] = []
    seen = set()
    waiting = []
    for stage in plan.stages:
        for block in stage.blocks:
            cells = planned_cells(plan, block, decisions)
            waiting += [(stage, pc) for pc in cells if pc.cell is None]
            for seed in block.seeds:
                for pc in cells:
                    if pc.cell is None or (pc.cell.path(".", seed)) in seen:
                        continue
                    seen.add(pc.cell.path(".", seed))
                    jobs.append(Job(stage, block, pc.cell, seed))
    return jobs, waiting


def block_records(out, block: Block, cell: Cell) -> CellRecords:
    """The cell's records over the block's seeds, counting only results the
    campaign command finished (:mod:`.store`): a foreign ``results.json`` is
    left out here, and the command refuses to run beside it."""
    rec = load_cell(out, cell, block.seeds)
    for seed in list(rec.results):
        record = read_campaign_record(rec.folders[seed])
        if record is None or "finished" not in record:
            rec.results.pop(seed)
            rec.folders.pop(seed)
    return rec
