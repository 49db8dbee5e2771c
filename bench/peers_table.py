"""The equal-accuracy table (markdown) from the outcomes of ``bench/test_peers.py``.

    python bench/peers_table.py peers.jsonl [more.jsonl ...]

reads the JSON lines that ``SINSIM_PEERS_JSON`` collected (a later line for
the same cell and solver replaces an earlier one) and prints one table per n:
a row per solver, a column per (points, eps); each entry is the median time
of value + gradient at the smallest budget that met both targets, the budget
(iterations; GeomLoss: its schedule), and the ratio to the fastest entry of
the column; "not reached" gives the value / gradient errors at the cap. The end-of-run summary of ``pytest bench/`` prints the same table.
"""

from __future__ import annotations

import json
import math
import sys

RESULTS: list = []  # the rows recorded in this pytest run


def _fmt_time(s: float) -> str:
    if math.isnan(s):
        return "untimed"
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _row_order(name: str):
    """This operator first, then GeomLoss, POT, OTT; scalings in increasing order."""
    family = next((i for i, f in enumerate(("sinsim, plain", "sinsim", "GeomLoss", "POT", "OTT")) if name.startswith(f)), 9)
    tail = name.rsplit(" ", 1)[-1]
    return family, float(tail) if tail.replace(".", "", 1).isdigit() else 0.0


def _load_range(rows) -> str:
    """The load average over the rows (``load``, or a transcribed ``load_range``)."""
    lows = [r["load_range"][0] if "load_range" in r else r["load"] for r in rows]
    highs = [r["load_range"][1] if "load_range" in r else r["load"] for r in rows]
    return f"{min(lows):.1f}-{max(highs):.1f}"


def _cell(r, best) -> str:
    if r is None:
        return "not run"
    if not r["reached"]:
        reason = r["reason"]
        if reason.startswith("no reference"):
            return "no float64 reference"
        where = reason.replace("not reached", "").replace(" at this scaling", "").replace(" in ", "", 1).strip()
        where = f"{where}; " if where else ""
        return f"not reached ({where}errors {r['value_error']:.2g} / {r['grad_error']:.2g})"
    budget = "" if r.get("budget") is None else f", {r['budget']} it"
    # a transcribed row keeps the ratio printed with it (its time is rounded)
    ratio = r.get("ratio", r["median_s"] / best if best and not math.isnan(r["median_s"]) else math.nan)
    return f"{_fmt_time(r['median_s'])}{budget}" + ("" if math.isnan(ratio) else f", {ratio:.1f}x")


def tables(rows):
    """One ``(caption, header, body)`` per n: a row per solver, a column per (points, eps)."""
    latest = {}
    for r in rows:
        latest[(r["n"], r["dataset"], r["eps"], r["solver"])] = r
    rows = list(latest.values())
    out = []
    for n in sorted({r["n"] for r in rows}):
        here = [r for r in rows if r["n"] == n]
        cols = sorted({(r["dataset"], r["eps"]) for r in here}, key=lambda c: (c[0] != "unit", -c[1]))
        solvers = sorted(dict.fromkeys(r["solver"] for r in here), key=_row_order)
        best = {}
        for c in cols:
            times = [r["median_s"] for r in here if (r["dataset"], r["eps"]) == c and r["reached"] and not math.isnan(r["median_s"])]
            best[c] = min(times) if times else math.nan
        caption = (f"n = {n} (d = 128, float32, value + gradient; {here[0].get('device', 'cpu')}, "
                   f"threads {here[0]['threads']}, load average {_load_range(here)})")
        header = ["solver"] + [f"{ds} eps={eps:g}" for ds, eps in cols]
        body = [[s] + [_cell(latest.get((n, c[0], c[1], s)), best[c]) for c in cols] for s in solvers]
        out.append((caption, header, body))
    return out


def markdown(rows) -> str:
    out = []
    for caption, header, body in tables(rows):
        out.append(caption + "\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|---" * len(header) + "|")
        out.extend("| " + " | ".join(row) + " |" for row in body)
        out.append("")
    return "\n".join(out)


def main(paths) -> None:
    rows = []
    for p in paths:
        with open(p) as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    print(markdown(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
