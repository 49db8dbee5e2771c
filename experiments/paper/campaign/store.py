"""A campaign cell's own record, ``campaign.json``, and what a folder's files say about it.

Each cell run the campaign command starts writes ``campaign.json`` into the
cell's folder before training: the stage that asked for it, the plan's
sha256, the registered code fingerprint it runs under, the git state of the
checkout, the machine, the start time; and again with ``finished`` when its
``results.json`` is written. A folder with a ``results.json`` but no
``campaign.json`` was not made by the campaign command (a copy from another
run, a hand merge): the command refuses to go on until it is removed, and the
report never counts it.
"""

from __future__ import annotations

import json
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


def state(folder) -> str:
    """``finished``, ``failed``, ``partial`` (a checkpoint or a start), ``empty``; raises
    :class:`ForeignCell` for results without a campaign record."""
    folder = Path(folder)
    record = read_campaign_record(folder)
    has_results = (folder / "results.json").is_file()
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
