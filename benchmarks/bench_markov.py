"""Markov attribution on a path table: attribution-engine against ChannelAttribution.

For each path table (``--sizes``, journeys) and each order 1, 2 and 3, times in one process
after imports, on the same CSV file:

* engine: ``engine.read_paths(file)`` then ``Markov(order=k, n_draws=0).fit(j).attribute()``
  (exact removal effects, no intervals), and the same with ``n_draws=200`` (90 % intervals from
  200 posterior draws);
* ChannelAttribution: ``pandas.read_csv(file)`` then ``markov_model(df, "path",
  "total_conversions", var_value="total_conversion_value", var_null="total_null", order=k,
  seed=0)`` (random walks, one replicate).

Both sides first warm up on a tiny table, and the engine once on each file. Then each side
runs once more per order in a fresh child process; the parent times the whole process
(interpreter start and imports included) and the child reports its peak resident memory
(``VmHWM``).

ChannelAttribution merges consecutive repeats of a channel and simulates, so its credit is
compared with ours fitted with ``collapse_repeats=True``: the table gives the largest absolute
difference in conversion shares per order. ChannelAttribution (GPL) is used only as an external
oracle, through its public API.

Usage::

    .venv/bin/python benchmarks/bench_markov.py                 # 1M journeys, made if missing
    .venv/bin/python benchmarks/bench_markov.py --sizes 1000000 10000000 --repeats 3

Results go to ``benchmarks/results/markov.{csv,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results"
ORDERS = (1, 2, 3)
N_DRAWS = 200
TARGET_RATIO = 5.0
TARGET_PROCESS_RATIO = 3.0
TARGET_INTERVALS = 10.0
TARGET_EXACT = 1e-9


def peer_markov():
    """ChannelAttribution's ``markov_model``, imported without its banner on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        from ChannelAttribution import markov_model
    return markov_model


def run_ours(data: Path, order: int, n_draws: int = 0, collapse_repeats: bool = False):
    import engine
    from engine.models import Markov

    began = time.perf_counter()
    journeys = engine.read_paths(data)
    read = time.perf_counter()
    result = Markov(order=order, n_draws=n_draws, collapse_repeats=collapse_repeats,
                    rng=0).fit(journeys).attribute()
    done = time.perf_counter()
    return {"read": read - began, "fit": done - read, "total": done - began}, result


def run_peer(data: Path, order: int, markov_model):
    began = time.perf_counter()
    frame = pd.read_csv(data)
    read = time.perf_counter()
    table = markov_model(frame, "path", "total_conversions", var_value="total_conversion_value",
                         var_null="total_null", order=order, seed=0, verbose=False,
                         flg_pro=False)
    done = time.perf_counter()
    return {"read": read - began, "fit": done - read, "total": done - began}, table


def share_difference(ours, peer: pd.DataFrame) -> float:
    """Largest absolute difference between the two tools' conversion shares."""
    theirs = peer.assign(channel=peer["channel_name"].astype(str).str.strip())
    theirs = theirs.set_index("channel")["total_conversions"]
    mine = ours.table.set_index("channel")["conversions"]
    channels = mine.index.union(theirs.index)
    mine = mine.reindex(channels, fill_value=0.0)
    theirs = theirs.reindex(channels, fill_value=0.0)
    return float(np.max(np.abs(mine / mine.sum() - theirs / theirs.sum())))


def peak_memory_gib() -> float:
    """This process's peak resident memory since it started its program, in GiB.

    ``VmHWM`` belongs to the process's own address space, which exec replaces; ``ru_maxrss``
    (``getrusage``, ``os.wait4``) survives exec on Linux and would start from the parent's
    resident size at fork, hiding any child peak below the parent's.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise SystemExit("no VmHWM in /proc/self/status: peak memory needs Linux")


def child(side: str, data: Path, order: int) -> None:
    """One side's whole run in this process; prints its work time and peak memory as JSON."""
    if side == "engine":
        timing, _ = run_ours(data, order)
    else:
        timing, _ = run_peer(data, order, peer_markov())
    print(json.dumps({"work_s": timing["total"], "peak_gib": peak_memory_gib()}))


def run_child(side: str, data: Path, order: int) -> dict:
    """Wall time of a fresh process doing one side's run, imports included, and its peak."""
    began = time.perf_counter()
    process = subprocess.run([sys.executable, __file__, "--child", side, str(data), str(order)],
                             stdout=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"{side} child run (order {order}, {data.name}) failed")
    return {"process_s": wall, **json.loads(process.stdout.strip().splitlines()[-1])}


def dense_error(data: Path, order: int) -> float:
    """Largest absolute difference between the engine's removal effects (conversions and
    value) and those of dense solves (``numpy.linalg.solve``) of the same fitted chain."""
    import engine
    from engine.models import Markov

    model = Markov(order=order, n_draws=0).fit(engine.read_paths(data))
    chain = model.chain_
    n = chain.n_transient
    probability = chain.probability()
    inner = chain.target < n
    q = np.zeros((n, n))
    q[chain.source[inner], chain.target[inner]] = probability[inner]
    into = chain.target == chain.conversion
    b = np.zeros((n, 2))
    b[chain.source[into], 0] = probability[into]
    b[chain.source[into], 1] = probability[into] * chain.reward[into]
    intact = np.linalg.solve(np.eye(n) - q, b)[0]
    dense = []
    for removed in chain.contains.T:
        kept = ~removed
        solved = np.linalg.solve(np.eye(kept.sum()) - q[np.ix_(kept, kept)], b[kept])[0]
        dense.append(1 - solved / intact)
    ours = model.removal_effects_[["removal_effect_conversions", "removal_effect_value"]]
    return float(np.abs(ours.to_numpy() - np.array(dense)).max())


def warm_up(markov_model) -> None:
    """First calls pay one-off costs (DuckDB start, lazy imports); pay them on a tiny table."""
    from make_data import path_table

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "warm_up.csv"
        path_table(2_000, rng=np.random.default_rng(0)).to_csv(data, index=False)
        run_ours(data, 1)
        run_ours(data, 1, n_draws=N_DRAWS)
        run_peer(data, 1, markov_model)


def path_file(journeys: int) -> Path:
    data = DATA / f"paths_{journeys}.csv"
    if not data.exists():
        from make_data import main as make_data

        make_data(["--what", "paths", "--journeys", str(journeys), "--out", str(DATA)])
    return data


def bench_size(data: Path, repeats: int, markov_model) -> list[dict]:
    runs = {(order, kind): [] for order in ORDERS for kind in ("ours", "intervals", "peer")}
    processes = {(order, side): [] for order in ORDERS for side in ("engine", "peer")}
    tables = {}
    for _ in range(repeats):
        for order in ORDERS:
            timing, _ = run_ours(data, order)
            runs[order, "ours"].append(timing)
            timing, _ = run_ours(data, order, n_draws=N_DRAWS)
            runs[order, "intervals"].append(timing)
            timing, tables[order] = run_peer(data, order, markov_model)
            runs[order, "peer"].append(timing)
            print(f"  order {order}: engine {runs[order, 'ours'][-1]['total']:.2f} s "
                  f"({runs[order, 'intervals'][-1]['total']:.2f} s with intervals), "
                  f"ChannelAttribution {timing['total']:.2f} s", flush=True)
    for order in ORDERS:
        for side in ("engine", "peer"):
            for _ in range(repeats):
                processes[order, side].append(run_child(side, data, order))

    def median(values, key):
        return statistics.median(value[key] for value in values)

    rows = []
    for order in ORDERS:
        _, collapsed = run_ours(data, order, collapse_repeats=True)
        ours, intervals, peer = (runs[order, kind] for kind in ("ours", "intervals", "peer"))
        mine, theirs = processes[order, "engine"], processes[order, "peer"]
        rows.append({
            "file": data.name, "order": order,
            "engine_read_s": median(ours, "read"), "engine_fit_s": median(ours, "fit"),
            "engine_s": median(ours, "total"),
            "engine_intervals_fit_s": median(intervals, "fit"),
            "engine_intervals_s": median(intervals, "total"),
            "peer_read_s": median(peer, "read"), "peer_fit_s": median(peer, "fit"),
            "peer_s": median(peer, "total"),
            "speed_ratio": median(peer, "total") / median(ours, "total"),
            "intervals_over_point_fit": median(intervals, "fit") / median(ours, "fit"),
            "intervals_over_point_total": median(intervals, "total") / median(ours, "total"),
            "engine_process_s": median(mine, "process_s"),
            "peer_process_s": median(theirs, "process_s"),
            "process_ratio": median(theirs, "process_s") / median(mine, "process_s"),
            "engine_peak_gib": max(run["peak_gib"] for run in mine),
            "peer_peak_gib": max(run["peak_gib"] for run in theirs),
            "max_share_diff": share_difference(collapsed, tables[order]),
            "dense_max_error": dense_error(data, order),
        })
    return rows


def verdicts(table: pd.DataFrame) -> list[str]:
    def met(ok) -> str:
        return "met" if bool(np.all(ok)) else "NOT met"

    return [
        (f"Exact to {TARGET_EXACT:g} against dense solves (largest removal-effect error): "
         f"{met(table.dense_max_error <= TARGET_EXACT)} ({table.dense_max_error.max():.1e})."),
        (f"In one process: at least {TARGET_RATIO:g}x faster than ChannelAttribution at every "
         f"order and size: {met(table.speed_ratio >= TARGET_RATIO)} "
         f"({table.speed_ratio.min():.2f}x to {table.speed_ratio.max():.2f}x)."),
        (f"Whole process, imports included: at least {TARGET_PROCESS_RATIO:g}x: "
         f"{met(table.process_ratio >= TARGET_PROCESS_RATIO)} "
         f"({table.process_ratio.min():.2f}x to {table.process_ratio.max():.2f}x)."),
        (f"Peak memory no higher than ChannelAttribution's: "
         f"{met(table.engine_peak_gib <= table.peer_peak_gib)} (engine/ChannelAttribution "
         f"{(table.engine_peak_gib / table.peer_peak_gib).min():.2f} to "
         f"{(table.engine_peak_gib / table.peer_peak_gib).max():.2f})."),
        (f"Intervals ({N_DRAWS} draws) under {TARGET_INTERVALS:g}x a point fit: "
         f"{met(table.intervals_over_point_fit < TARGET_INTERVALS)} (fit only "
         f"{table.intervals_over_point_fit.min():.1f}x to "
         f"{table.intervals_over_point_fit.max():.1f}x; read + fit "
         f"{table.intervals_over_point_total.min():.1f}x to "
         f"{table.intervals_over_point_total.max():.1f}x)."),
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000],
                        help="journeys per path table, made with make_data.py if missing "
                        "(default 1000000)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per cell, in process and in a child (default 1); medians "
                        "are reported, and the worst peak memory")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, data, order = args.child
        child(side, Path(data), int(order))
        return

    from bench_rules import machine

    import engine
    from engine.models import Markov

    files = [path_file(size) for size in args.sizes]
    markov_model = peer_markov()
    warm_up(markov_model)
    print(machine())
    rows, described = [], []
    for data in files:
        journeys = engine.read_paths(data)
        Markov(n_draws=0).fit(journeys)
        described.append(
            f"`{data.name}`: {journeys.total_conversions + journeys.nulls.sum():,.0f} journeys, "
            f"{journeys.n_journeys:,} unique paths, {journeys.n_touches:,} touches, "
            f"{journeys.n_channels} channels, {journeys.total_conversions:,.0f} conversions")
        print(described[-1].replace("`", ""), flush=True)
        rows.extend(bench_size(data, args.repeats, markov_model))
    table = pd.DataFrame(rows)

    columns = {"file": "file", "order": "order", "engine_s": "engine s",
               "engine_intervals_s": f"engine s ({N_DRAWS} draws)", "peer_s": "CA s",
               "speed_ratio": "CA/engine", "intervals_over_point_fit": "draws/point (fit)",
               "engine_process_s": "engine process s", "peer_process_s": "CA process s",
               "process_ratio": "CA/engine (process)", "engine_peak_gib": "engine peak GiB",
               "peer_peak_gib": "CA peak GiB", "max_share_diff": "max abs share diff"}
    shown = table[list(columns)].rename(columns=columns)
    print(f"\nMedian of {args.repeats} run(s), seconds; CA = ChannelAttribution:")
    print(shown.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print()
    for line in verdicts(table):
        print(line)

    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "markov.csv", index=False, float_format="%.4g")
    header = "| " + " | ".join(columns.values()) + " |"
    markdown = [
        "# Markov attribution on a path table: engine vs ChannelAttribution\n",
        *[f"Data: {line}.  " for line in described],
        f"Machine: {machine()}.  ",
        (f"Median of {args.repeats} run(s) after warm-ups (tiny table; one engine fit per file). "
         "`engine s` is "
         "`read_paths` + `Markov(order=k, n_draws=0).fit().attribute()` in one process, `CA s` "
         "`pandas.read_csv` + `markov_model(..., order=k, seed=0)`; `process s` is a fresh "
         "process doing the same, imports included, whose peak RSS (`VmHWM`) is the peak memory. "
         "`draws/point (fit)` is the fit time with 200 posterior draws over the point fit. "
         "`max abs share diff` compares conversion shares with ours fitted with "
         "`collapse_repeats=True` (ChannelAttribution merges repeats and simulates).\n"),
        header, "|" + "---|" * 2 + "---:|" * (len(columns) - 2),
        *["| " + " | ".join(f"{value:.3g}" if isinstance(value, float) else str(value)
                            for value in row) + " |"
          for row in table[list(columns)].itertuples(index=False)],
        "", *verdicts(table),
    ]
    (args.out / "markov.md").write_text("\n".join(markdown) + "\n")
    print(f"\nsaved {args.out / 'markov.csv'} and {args.out / 'markov.md'}")


if __name__ == "__main__":
    main()
