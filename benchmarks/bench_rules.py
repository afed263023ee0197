"""Rule-based attribution on a path table: attribution-engine against ChannelAttribution.

Times, in one process and on the same CSV file:

* engine: ``engine.read_paths(file)`` followed by every rule model that runs on a path table
  (first_touch, last_touch, last_non_direct, linear, linear per channel, position_based,
  custom_position), each ``fit(...).attribute()``;
* ChannelAttribution: ``pandas.read_csv(file)`` followed by ``heuristic_models`` (first touch,
  last touch and linear touch, conversions and value).

Each side runs once to warm up, then ``--repeats`` times, alternating; best and median wall
times are reported. The numbers of the models both tools share are checked to agree (1e-6
relative). ChannelAttribution (GPL) is used only as an external oracle, through its public API.

Usage::

    .venv/bin/python benchmarks/bench_rules.py            # makes the data first if missing
    .venv/bin/python benchmarks/bench_rules.py --data my_paths.csv --repeats 7

Results go to ``benchmarks/results/rules_paths.{csv,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

import engine
from engine.models import (CustomPosition, FirstTouch, LastNonDirect, LastTouch, Linear,
                           PositionBased)

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE / "data" / "paths_1000000.csv"
RESULTS = HERE / "results"
TOLERANCE = 1e-6
TARGET_RATIO = 5.0
# Models both tools compute: engine model name -> ChannelAttribution column prefix.
SHARED = {"first_touch": "first_touch", "last_touch": "last_touch", "linear": "linear_touch"}


def rule_models():
    """The rule models that run on a path table (no touch times or milestones needed)."""
    return [FirstTouch(), LastTouch(), LastNonDirect(), Linear(), Linear(per="channel"),
            PositionBased(), CustomPosition(head=(0.3, 0.1), tail=(0.4,), middle=0.2)]


def run_engine(data: Path) -> tuple[dict, list]:
    began = time.perf_counter()
    journeys = engine.read_paths(data)
    read = time.perf_counter()
    results = [model.fit(journeys).attribute() for model in rule_models()]
    done = time.perf_counter()
    return {"read": read - began, "models": done - read, "total": done - began}, results


def run_peer(data: Path, heuristic_models) -> tuple[dict, pd.DataFrame]:
    began = time.perf_counter()
    frame = pd.read_csv(data)
    read = time.perf_counter()
    table = heuristic_models(frame, "path", "total_conversions",
                             var_value="total_conversion_value", sep=">", flg_pro=False)
    done = time.perf_counter()
    return {"read": read - began, "models": done - read, "total": done - began}, table


def agreement(ours: list, peer: pd.DataFrame) -> pd.DataFrame:
    """Largest relative difference per shared model and measure."""
    peer = peer.assign(channel_name=peer["channel_name"].astype(str).str.strip())
    peer = peer.set_index("channel_name")
    rows = []
    for result in ours:
        prefix = SHARED.get(result.model)
        if prefix is None or result.params.get("per", "touch") != "touch":
            continue
        table = result.table.set_index("channel")
        for measure in ("conversions", "value"):
            mine = table[measure]
            theirs = peer[f"{prefix}_{measure}"].reindex(mine.index).fillna(0.0)
            scale = np.maximum(np.abs(theirs.to_numpy()), 1e-12)
            worst = float(np.max(np.abs(mine.to_numpy() - theirs.to_numpy()) / scale))
            rows.append({"model": result.model, "measure": measure, "max_rel_diff": worst,
                         "agree": worst <= TOLERANCE and set(peer.index) <= set(mine.index)})
    return pd.DataFrame(rows)


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in
                         ("attribution-engine", "channelattribution", "duckdb",
                          "ibis-framework", "numpy", "pandas"))
    return (f"{os.cpu_count()} CPU cores ({cpu}), {memory:.0f} GiB RAM, Python "
            f"{platform.python_version()}; {versions}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="path table CSV (default: make the 1M-journey table if missing)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not args.data.exists():
        if args.data != DEFAULT_DATA:
            parser.error(f"{args.data} does not exist")
        from make_data import main as make_data

        make_data(["--what", "paths", "--out", str(args.data.parent)])
    with contextlib.redirect_stdout(io.StringIO()):
        from ChannelAttribution import heuristic_models

    journeys = engine.read_paths(args.data)
    n_journeys = journeys.total_conversions + journeys.nulls.sum()
    print(f"{args.data}: {len(pd.read_csv(args.data, usecols=['path'])):,} rows, "
          f"{journeys.n_journeys:,} unique paths, {journeys.n_touches:,} touches, "
          f"{journeys.n_channels} channels, {n_journeys:,.0f} journeys, "
          f"{journeys.total_conversions:,.0f} conversions")
    print(machine())

    with contextlib.redirect_stdout(io.StringIO()):
        run_engine(args.data)
        run_peer(args.data, heuristic_models)
    times = {"engine": [], "ChannelAttribution": []}
    for _ in range(args.repeats):
        timing, ours = run_engine(args.data)
        times["engine"].append(timing)
        with contextlib.redirect_stdout(io.StringIO()):
            timing, peer = run_peer(args.data, heuristic_models)
        times["ChannelAttribution"].append(timing)

    steps = {"engine": {"read": "engine.read_paths", "models": "7 rule models (fit + attribute)",
                        "total": "total"},
             "ChannelAttribution": {"read": "pandas.read_csv", "models": "heuristic_models",
                                    "total": "total"}}
    rows = [{"tool": tool, "step": label, "best_s": min(t[key] for t in runs),
             "median_s": statistics.median(t[key] for t in runs)}
            for tool, runs in times.items() for key, label in steps[tool].items()]
    table = pd.DataFrame(rows)
    total = table[table.step == "total"].set_index("tool")
    ratio_best = total.at["ChannelAttribution", "best_s"] / total.at["engine", "best_s"]
    ratio_median = total.at["ChannelAttribution", "median_s"] / total.at["engine", "median_s"]
    check = agreement(ours, peer)
    speed = (f"speed ratio (ChannelAttribution time / engine time): {ratio_best:.2f}x (best), "
             f"{ratio_median:.2f}x (median); target: at least {TARGET_RATIO:g}x, "
             + ("met" if ratio_median >= TARGET_RATIO else "NOT met"))

    print(f"\nBest and median of {args.repeats} runs (after one warm-up run each), seconds:")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"\n{speed}")
    print(f"\nAgreement with ChannelAttribution (relative tolerance {TOLERANCE:g}):")
    print(check.to_string(index=False, float_format=lambda x: f"{x:.2e}"))
    print("all agree" if check["agree"].all() else "DISAGREEMENT")

    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "rules_paths.csv", index=False, float_format="%.4f")
    markdown = [
        "# Rule models on a path table: engine vs ChannelAttribution\n",
        f"Data: `{args.data.name}` ({n_journeys:,.0f} journeys, {journeys.n_journeys:,} unique "
        f"paths, {journeys.n_touches:,} touches, {journeys.n_channels} channels).  ",
        f"Machine: {machine()}.  ",
        f"Best and median of {args.repeats} runs after one warm-up, in one process.\n",
        "| tool | step | best (s) | median (s) |", "|---|---|---:|---:|",
        *[f"| {r.tool} | {r.step} | {r.best_s:.3f} | {r.median_s:.3f} |"
          for r in table.itertuples()],
        f"\n{speed[0].upper()}{speed[1:]}.\n",
        f"Agreement (first, last, linear touch; relative tolerance {TOLERANCE:g}): "
        + ("all agree" if check["agree"].all() else "DISAGREEMENT") + "\n",
        "| model | measure | max relative difference |", "|---|---|---:|",
        *[f"| {r.model} | {r.measure} | {r.max_rel_diff:.2e} |" for r in check.itertuples()],
    ]
    (args.out / "rules_paths.md").write_text("\n".join(markdown) + "\n")
    print(f"\nsaved {args.out / 'rules_paths.csv'} and {args.out / 'rules_paths.md'}")


if __name__ == "__main__":
    main()
