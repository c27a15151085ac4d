"""Render a pytest-benchmark JSON file (``bash tasks.sh bench`` writes bench/results.json) as the
Markdown tables of bench/RESULTS.md: one table per benchmark file, each case with its median,
and the figures the case derived (``extra_info``: per-op costs, rates, ratios).

Usage: python tools/bench_report.py bench/results.json > /tmp/tables.md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def _time(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:,.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _extra(info: dict) -> str:
    return ", ".join(f"{k} = {v:,}" if isinstance(v, (int, float)) and not isinstance(v, bool)
                     else f"{k} = {v}" for k, v in sorted(info.items()))


def render(data: dict) -> str:
    groups = defaultdict(list)
    for bench in data["benchmarks"]:
        groups[bench["fullname"].split("::")[0]].append(bench)
    machine = data.get("machine_info", {})
    out = [f"Run {data.get('datetime', '?')} on {machine.get('cpu', {}).get('brand_raw', '?')} "
           f"({machine.get('python_implementation', '')} {machine.get('python_version', '')}).", ""]
    for path, benches in sorted(groups.items()):
        out += [f"### {path}", "", "| case | median | rounds | derived |", "|---|---|---|---|"]
        for bench in benches:
            stats = bench["stats"]
            out.append(f"| `{bench['name']}` | {_time(stats['median'])} | {stats['rounds']} | "
                       f"{_extra(bench.get('extra_info', {}))} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        print(render(json.load(f)))
