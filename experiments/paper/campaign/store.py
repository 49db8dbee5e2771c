"""A campaign cell's own record, ``campaign.json``, and what a folder's files say about it.

Each cell run the campaign command starts writes ``campaign.json`` into the
cell's folder before training: the stage that asked for it, the plan's
sha256, the registered code fingerprint it runs under, the git state of the
checkout, the machine, the start time; and again with ``finished`` when its
``results.json`` is written. A folder with a ``results.json`` but no
``campaign.json`` was not made by the campaign command (a copy from another
run, a hand merge): the command refuses to go on until it is removed, and the
report never counts it.

A worker stopped at the deadline can be cut between writing ``results.json``
and recording ``finished``. Such a folder is not foreign: its record says the
campaign started it, and its ``results.json`` names the code fingerprint the
record registered. :func:`complete_cut_record` records it as finished (with
``recorded_after_a_stop``), so the next session neither refuses it nor trains
it again; results whose fingerprint differs from the record stay foreign.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Optional

from train import atomic_write_json


CAMPAIGN_JSON = "campaign.json"


class ForeignCell(RuntimeError):
    """A cell folder holds results the campaign command did not make."""


def write_campaign_record(folder, record: Dict) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(folder) / CAMPAIGN_JSON, record)


def read_campaign_record(folder) -> Optional[Dict]:
    path = Path(folder) / CAMPAIGN_JSON
    return json.loads(path.read_text()) if path.is_file() else None


def _cut_results_written_at(folder: Path, record: Optional[Dict]) -> Optional[str]:
    """When the campaign wrote ``results.json`` but a stop cut the record before ``finished``: the time the
    results were written, provided they name the code fingerprint the record registered; else None."""
    results = folder / "results.json"
    if record is None or "finished" in record or not results.is_file():
        return None
    try:
        ran_under = (json.loads(results.read_text()).get("code") or {}).get("fingerprint")
    except (OSError, ValueError):
        return None
    if ran_under is None or ran_under != record.get("code_fingerprint"):
        return None
    return datetime.fromtimestamp(results.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def complete_cut_record(folder) -> bool:
    """Record as finished a cell whose results the campaign wrote before a stop cut its record; returns
    whether it did."""
    folder = Path(folder)
    record = read_campaign_record(folder)
    written = _cut_results_written_at(folder, record)
    if written is None:
        return False
    write_campaign_record(folder, {**record, "finished": written, "recorded_after_a_stop": True})
    return True


def state(folder) -> str:
    """``finished``, ``failed``, ``partial`` (a checkpoint or a start), ``empty``; raises
    :class:`ForeignCell` for results without a campaign record."""
    folder = Path(folder)
    record = read_campaign_record(folder)
    has_results = (folder / "results.json").is_file()
    if has_results and _cut_results_written_at(folder, record) is not None:
        return "finished"
    if has_results and (record is None or "finished" not in record):
        raise ForeignCell(f"{folder} holds a results.json that the campaign command did not finish (no "
                          f"{CAMPAIGN_JSON} with 'finished'): results are never merged by hand. Remove the folder "
                          "to run the cell here, or move it out of the campaign")
    if has_results:
        return "finished"
    if (folder / "failed.json").is_file():
        return "failed"
    if record is not None or (folder / "checkpoint.pt").is_file():
        return "partial"
    return "empty"
