"""The incremental model at scale: 1,000,000 journeys over 8 channels, NUTS and Laplace.

A simulated world (``engine.simulate``) with 8 channels and known causal effects (one of them
none; no harvesting channel, whose conversion-caused touches no journey model can tell from
causes) is drawn at
``--persons`` (default 1,000,000; the journeys are the persons with at least one touch) and its
event log read with ``read_events``. Then ``Incremental(method="nuts")`` and
``Incremental(method="laplace")`` are fitted (each in its own process, so NUTS pays its
compilation), and for each the script prints and records: the collapsed feature rows, fit time
(sampling and credit), the smallest bulk ESS and largest R-hat of the parameters (NUTS), and the
NMAE of credit shares against the true incremental Shapley credit, next to the rule-based
models' and Markov's. Targets (issue 9): the approximate mode (Laplace) under 60 s and NUTS under 5 minutes.

Usage::

    .venv/bin/python benchmarks/bench_incremental.py
    .venv/bin/python benchmarks/bench_incremental.py --persons 200000

Results go to ``benchmarks/results/incremental.{csv,md}``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGETS = {"laplace": 60.0, "nuts": 300.0}


def world(persons: int, seed: int):
    from engine.simulate import Channel, World

    channels = (
        Channel("video", spend=600, touches=0.6, effect=0.08, recency_days=60, stage="upper",
                early=2.0),
        Channel("display", spend=250, touches=1.0, effect=0.03, recency_days=30,
                stage="upper"),
        Channel("social", spend=300, touches=0.9, effect=0.04, recency_days=20),
        Channel("affiliate", spend=150, touches=0.4, effect=0.02, recency_days=15),
        Channel("retargeting", spend=200, touches=1.4, effect=0.0, stage="lower"),
        Channel("search", spend=400, touches=0.7, effect=0.05, recency_days=10, stage="lower"),
        Channel("email", spend=50, touches=1.2, effect=0.01, recency_days=5, stage="lower"),
        Channel("brand_search", spend=150, touches=0.3, effect=0.01, recency_days=3,
                stage="lower"),
    )
    return World(channels=channels, persons=persons, baseline=0.02, seed=seed,
                 name="eight_channels")


_CHILD = """
import json, pickle, sys, time, warnings
warnings.simplefilter("ignore")
from engine.bench import score
from engine.models import Incremental
method, path, transform = sys.argv[1], sys.argv[2], sys.argv[3]
with open(path, "rb") as f:
    journeys, truth = pickle.load(f)
began = time.perf_counter()
model = Incremental(method=method, transform=transform, rng=1).fit(journeys)
seconds = time.perf_counter() - began
table = model.attribute().table
out = {"method": method, "transform": transform, "fit_s": seconds, "rows": model.n_rows_,
       "nmae": score(table, truth)["nmae"], "coverage": score(table, truth)["coverage"]}
if model.diagnostics_ is not None:
    out["min_ess_bulk"] = float(model.diagnostics_["ess_bulk"].min())
    out["max_r_hat"] = float(model.diagnostics_["r_hat"].max())
    out["divergences"] = model.divergences_
print(json.dumps(out))
"""


def main(argv=None) -> None:
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    from bench_rules import machine

    from engine.bench import score
    from engine.models import get_model
    from engine.simulate import simulate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=["laplace", "nuts"])
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds before a fit is stopped and recorded as not finished")
    parser.add_argument("--transforms", nargs="+", default=["log", "binary"],
                        help="touch-count transforms to fit (binary: presence only, at most "
                        "2^8 distinct rows)")
    parser.add_argument("--others", action=argparse.BooleanOptionalAction, default=True,
                        help="also score the other models on the same journeys")
    args = parser.parse_args(argv)
    line = machine()
    print(line, flush=True)
    began = time.perf_counter()
    sim = simulate(world(args.persons, args.seed))
    simulated = time.perf_counter() - began
    began = time.perf_counter()
    journeys = sim.journeys()
    read = time.perf_counter() - began
    print(f"simulated {args.persons:,} persons in {simulated:.1f} s; read "
          f"{journeys.n_journeys:,} journeys ({journeys.n_touches:,} touches) in {read:.1f} s",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data.pkl"
        with open(data, "wb") as f:
            pickle.dump((journeys, sim.truth), f)
        for transform, method in [(t, m) for t in args.transforms for m in args.methods]:
            began = time.perf_counter()
            try:
                done = subprocess.run([sys.executable, "-c", _CHILD, method, str(data),
                                       transform], check=True, capture_output=True, text=True,
                                      cwd=HERE.parent, timeout=args.timeout)
                result = json.loads(done.stdout.strip().splitlines()[-1])
            except subprocess.TimeoutExpired:
                result = {"method": method, "transform": transform, "fit_s": float("inf"),
                          "rows": 0, "nmae": float("nan"), "coverage": float("nan"),
                          "note": f"stopped after {args.timeout} s"}
            result["process_s"] = time.perf_counter() - began
            result["met"] = result["fit_s"] < TARGETS[method]
            rows.append(result)
            print(json.dumps(result), flush=True)
    others = []
    for name in ["last_touch", "first_touch", "linear", "position_based", "time_decay",
                 "markov", "shapley"] if args.others else []:
        began = time.perf_counter()
        table = get_model(name).fit(journeys).attribute().table
        others.append({"model": name, "nmae": score(table, sim.truth)["nmae"],
                       "seconds": time.perf_counter() - began})
    table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "incremental.csv", index=False)
    lines = [
        f"# Incremental model: {journeys.n_journeys:,} journeys, 8 channels\n",
        f"Machine: {line}.  ",
        f"World: 8 channels (one without effect), {args.persons:,} persons, "
        f"seed {args.seed}; simulated in {simulated:.1f} s, event log read in {read:.1f} s. "
        "Each method fits in its own process (`fit s` includes NUTS compilation and the "
        "credit's Shapley evaluation over 200 draws). NMAE: credit shares against the true "
        "incremental Shapley credit.\n",
        "| transform | method | feature rows | fit s | target | min bulk ESS | max R-hat | "
        "divergences | NMAE | coverage |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
        *[f"| {r['transform']} | {r['method']} | {r['rows']:,} | {r['fit_s']:.1f} | "
          f"{'met' if r['met'] else 'NOT met'} (< {TARGETS[r['method']]:.0f} s) | "
          f"{r.get('min_ess_bulk', float('nan')):.0f} | {r.get('max_r_hat', float('nan')):.3f} | "
          f"{r.get('divergences', '')} | {r['nmae']:.3f} | {r['coverage']:.2f} |"
          for r in rows],
        "",
        "The other models on the same journeys:\n",
        "| model | NMAE | seconds |", "|---|---:|---:|",
        *[f"| {o['model']} | {o['nmae']:.3f} | {o['seconds']:.1f} |" for o in others],
        "",
    ]
    (RESULTS / "incremental.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
