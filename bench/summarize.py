"""Print a compact table from a pytest-benchmark JSON file.

    python bench/summarize.py results.json

One row per entry: group, name, host median (ms), GPU event median (ms, when
recorded), peak extra memory (MB) and the recorded relative errors.
"""

from __future__ import annotations

import json
import sys


def rows(path):
    data = json.load(open(path))
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        yield (
            b.get("group") or "",
            b["name"].split("[", 1)[-1].rstrip("]") if "[" in b["name"] else b["name"],
            1e3 * b["stats"]["median"],
            info.get("gpu_median_ms"),
            info.get("peak_extra_MB"),
            info.get("value_rel_err_vs_float64"),
            info.get("grad_rel_err_vs_float64"),
        )


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main(path):
    print(f"{'group':44s} {'entry':28s} {'host ms':>9s} {'gpu ms':>9s} {'peak MB':>9s} {'val err':>9s} {'grad err':>9s}")
    for group, name, host, gpu, peak, verr, gerr in sorted(rows(path)):
        print(
            f"{group:44s} {name:28s} {host:9.3f} {fmt(gpu, '9.3f')} {fmt(peak, '9.1f')} "
            f"{fmt(verr, '9.1e')} {fmt(gerr, '9.1e')}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
