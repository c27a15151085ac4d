"""Turn a pytest-benchmark JSON file (``bash tasks.sh bench`` writes bench/results.json) into the
PNG plots that bench/RESULTS.md shows:

* ``bursts.png``: events/s and the client's CPU time per event against burst size (10 k .. 10 M
  events of 100 B): a fresh writer per burst, a warm writer, a fresh reader
  (``bench/test_bench_fresh.py``);
* ``pooling.png``: acknowledged events/s pooled and dedicated, by number of writers (one writer
  and 100 writers, ``bench/test_bench_clients.py``);
* ``twins.png``: compiled over pure (the speed-up, log scale) for each operation measured on
  both twins (``test_bench_codec.py``, ``test_bench_appends.py``, ``test_bench_records.py``,
  ``test_bench_pool.py``).

Usage: ``python bench/plot.py bench/results.json [OUT_DIR]`` (default: the JSON file's folder).
Needs matplotlib (the ``bench`` extra: ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

BURSTS = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000, "10M": 10_000_000}
_PARAMS = re.compile(r"^(?P<test>[^\[]+)(?:\[(?P<params>.*)\])?$")


def _cases(data: dict) -> dict[str, dict]:
    return {bench["name"]: bench for bench in data["benchmarks"]}


def _rate(bench: dict) -> float | None:
    return bench.get("extra_info", {}).get("events_per_s")


def plot_bursts(cases: dict[str, dict], out: Path) -> Path | None:
    """events/s (wall) and the client's CPU time per event, which a shared machine disturbs
    less, against burst size."""
    series = {"fresh writer per burst": "test_fresh_writer", "warm writer": "test_warm_writer",
              "fresh reader (read_event)": "test_fresh_reader"}
    fig, (rate_ax, cpu_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = False
    for label, test in series.items():
        found = [(n, cases[f"{test}[{size}]"]["extra_info"]) for size, n in BURSTS.items()
                 if f"{test}[{size}]" in cases]
        points = [(n, info) for n, info in found if info.get("events_per_s")]
        if not points:
            continue
        xs = [n for n, _ in points]
        rate_ax.plot(xs, [info["events_per_s"] / 1e6 for _, info in points], marker="o",
                     label=label)
        cpu = [(n, info["client_cpu_ns_per_event"]) for n, info in points
               if "client_cpu_ns_per_event" in info]
        if cpu:
            cpu_ax.plot(*zip(*cpu), marker="o", label=label)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for ax in (rate_ax, cpu_ax):
        ax.set_xscale("log")
        ax.set_xticks(list(BURSTS.values()), list(BURSTS))
        ax.set_ylim(bottom=0)
        ax.set_xlabel("events per burst (100 B each)")
        ax.grid(True, alpha=0.3)
    rate_ax.set_ylabel("million events/s")
    rate_ax.set_title("events/s (server in its own process)")
    cpu_ax.set_ylabel("client CPU ns per event")
    cpu_ax.set_title("client CPU per event (flat: no cost grows with N)")
    rate_ax.legend()
    return _save(fig, out / "bursts.png")


def plot_pooling(cases: dict[str, dict], out: Path) -> Path | None:
    rows = {"pooled": [("test_one_writer[write_nowait-pooled]", 1),
                       ("test_hundred_writers[pooled]", 100)],
            "dedicated": [("test_one_writer[write_nowait-dedicated]", 1),
                          ("test_hundred_writers[dedicated]", 100)]}
    fig, ax = plt.subplots(figsize=(6, 4.2))
    width = 0.38
    drawn = False
    for i, (label, points) in enumerate(rows.items()):
        found = [(j, _rate(cases[name])) for j, (name, _) in enumerate(points) if name in cases]
        if found:
            ax.bar([j + (i - 0.5) * width for j, _ in found], [r / 1e6 for _, r in found], width,
                   label=label)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xticks([0, 1], ["1 writer", "100 writers"])
    ax.set_ylabel("million acknowledged events/s")
    ax.set_title("Pooled vs dedicated connections (100 B events)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, out / "pooling.png")


def _twin_pairs(cases: dict[str, dict]) -> list[tuple[str, float]]:
    """(operation, pure median / compiled median) for every case run on both twins."""
    pairs = []
    for name, bench in sorted(cases.items()):
        match = _PARAMS.match(name)
        params = (match.group("params") or "").split("-") if match else []
        if "compiled" not in params:
            continue
        pure_name = name.replace("compiled", "pure", 1)
        if pure_name not in cases:
            continue
        rest = "-".join(p for p in params if p != "compiled")
        label = match.group("test").removeprefix("test_") + (f" {rest}" if rest else "")
        pairs.append((label, cases[pure_name]["stats"]["median"] / bench["stats"]["median"]))
    return pairs


def plot_twins(cases: dict[str, dict], out: Path) -> Path | None:
    pairs = _twin_pairs(cases)
    if not pairs:
        return None
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.22 * len(pairs) + 1)))
    labels, ratios = zip(*pairs)
    ax.barh(range(len(pairs)), ratios)
    ax.set_yticks(range(len(pairs)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.axvline(5.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("compiled speed-up over pure (pure median / compiled median, log)")
    ax.set_title("Compiled vs pure twin, per operation")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, out / "twins.png")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[0])
    out = Path(argv[1]) if len(argv) == 2 else source.parent
    with open(source, encoding="utf-8") as f:
        cases = _cases(json.load(f))
    for plot in (plot_bursts, plot_pooling, plot_twins):
        path = plot(cases, out)
        print(path if path is not None else f"{plot.__name__}: no such cases in {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
