"""The ground-truth simulator at scale: 1,000,000 persons per scenario, target under 60 s.

For each scenario (``--scenarios``, default all) and size (``--persons``, default 1,000,000),
times ``simulate(scenario(...))`` (touches, conversions, the event log, weekly aggregates and
the truth over all 2^n channel sets) and ``Simulation.save`` (events.parquet, weekly.csv,
truth.csv, world.json) in a fresh process each, and records the process's peak memory. Then,
once per scenario at ``--bench-persons`` (default 20,000), the time ``run_bench`` takes for all
registered journey models on one replicate.

Usage::

    .venv/bin/python benchmarks/bench_simulate.py
    .venv/bin/python benchmarks/bench_simulate.py --persons 100000 1000000 --scenarios b2b

Results go to ``benchmarks/results/simulate.{csv,md}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGET_S = 60.0

_CHILD = """
import json, resource, sys, tempfile, time
from engine.simulate import scenario, simulate
name, persons = sys.argv[1], int(sys.argv[2])
began = time.perf_counter()
sim = simulate(scenario(name, persons=persons, seed=1))
simulated = time.perf_counter() - began
with tempfile.TemporaryDirectory() as folder:
    began = time.perf_counter()
    sim.save(folder)
    saved = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"simulate_s": simulated, "save_s": saved, "peak_gib": peak,
                  "units": sim.summary["units"], "touches": sim.summary["touches"],
                  "events": len(sim.events), "conversions": sim.summary["conversions"]}))
"""


def run_child(name: str, persons: int) -> dict:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, name, str(persons)], check=True,
                          capture_output=True, text=True, cwd=HERE.parent)
    whole = time.perf_counter() - began
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": whole}


def main(argv=None) -> None:
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    from bench_rules import machine

    from engine.bench import run_bench
    from engine.simulate import SCENARIOS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--bench-persons", type=int, default=20_000)
    args = parser.parse_args(argv)
    line = machine()
    print(line, flush=True)
    rows = []
    for name in args.scenarios:
        for persons in args.persons:
            row = {"scenario": name, "persons": persons, **run_child(name, persons)}
            row["total_s"] = row["simulate_s"] + row["save_s"]
            row["met"] = row["total_s"] < TARGET_S
            rows.append(row)
            print(f"{name:>13} {persons:>10,}: simulate {row['simulate_s']:.1f} s, save "
                  f"{row['save_s']:.1f} s, process {row['process_s']:.1f} s, peak "
                  f"{row['peak_gib']:.2f} GiB, {row['events']:,} events", flush=True)
    table = pd.DataFrame(rows)
    bench_rows = []
    for name in args.scenarios:
        began = time.perf_counter()
        result = run_bench(name, models="all", replicates=1, persons=args.bench_persons)
        bench_rows.append({"scenario": name, "persons": args.bench_persons,
                           "models": int((result["status"] == "ok").sum()),
                           "bench_s": time.perf_counter() - began})
        print(f"run_bench {name}: {bench_rows[-1]['bench_s']:.1f} s", flush=True)
    bench = pd.DataFrame(bench_rows)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "simulate.csv", index=False)
    lines = [
        "# Simulator: 1,000,000 persons per scenario (target under 60 s)\n",
        f"Machine: {line}.  ",
        "Each row is a fresh process: `simulate s` is `simulate(scenario(name, persons, "
        "seed=1))` (touches, conversions, event log, weekly aggregates, truth over all 2^n "
        "channel sets), `save s` writing the four files, `process s` the whole process "
        "(imports included), `peak GiB` its peak resident memory.\n",
        "| scenario | persons | units | events | conversions | simulate s | save s | "
        "simulate + save s | process s | peak GiB | under 60 s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *[f"| {r.scenario} | {r.persons:,} | {r.units:,} | {r.events:,} | {r.conversions:,} | "
          f"{r.simulate_s:.2f} | {r.save_s:.2f} | {r.total_s:.2f} | {r.process_s:.2f} | "
          f"{r.peak_gib:.2f} | {'met' if r.met else 'NOT met'} |"
          for r in table.itertuples()],
        "",
        f"`run_bench(scenario, models='all', replicates=1, persons={args.bench_persons:,})`: "
        "simulate, read the events with `read_events`, fit and score every registered model.\n",
        "| scenario | models scored | seconds |", "|---|---:|---:|",
        *[f"| {r.scenario} | {r.models} | {r.bench_s:.1f} |" for r in bench.itertuples()],
        "",
    ]
    (RESULTS / "simulate.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'simulate.md'}")


if __name__ == "__main__":
    main()
