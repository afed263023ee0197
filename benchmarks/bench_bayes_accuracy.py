"""Bayesian ROAS accuracy over many simulated series: the engine against PyMC-Marketing's MMM.

``bench_bayes.py`` times both tools to convergence on two seeds; one seed's largest error is a
noisy verdict (a single weakly identified channel decides it). This script fits both tools, with
the same fixed settings as ``bench_bayes.py`` (geometric adstock with 8 lags, logistic
saturation, seasonality of order 2, nutpie, 4 chains, ``target_accept`` 0.9) and a fixed number
of draws (= tune, default 1000), on ``media_series(156, 8 channels, rng=seed)`` for each seed,
and scores each channel's posterior mean ROAS (carryover after the window included, for both
tools, as in ``bench_bayes.py``) against the truth: relative error, and whether the 90 %
interval covers the truth.

The summary pools every channel of every seed: mean and median relative error, the mean over
seeds of the largest error per seed, the 90 % coverage, the mean interval width relative to the
truth, and a paired comparison per seed (how often the engine's mean error is lower, and the
Wilcoxon signed-rank p-value of the paired per-seed mean errors).

Usage (seeds 1-24 by default; ``--peer-from`` reuses PyMC-Marketing's fits)::

    .venv/bin/python benchmarks/bench_bayes_accuracy.py
    .venv/bin/python benchmarks/bench_bayes_accuracy.py \
        --peer-from benchmarks/results/bayes_accuracy_peer.csv

Results go to ``benchmarks/results/bayes_accuracy.{csv,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bayes import (
    CI_LEVEL,
    RESULTS,
    TOOLS,
    accuracy,
    diagnostics,
    fit_engine,
    fit_peer,
    machine_line,
    simulated_dataset,
)


def score(seed: int, draws: int, tools=TOOLS) -> list[dict]:
    """Per-channel rows for ``tools`` on one simulated series."""
    data = simulated_dataset(seed)
    rows = []
    for tool in tools:
        fit = fit_engine if tool == "engine" else fit_peer
        began = time.perf_counter()
        result = fit(data, draws, seed)
        rhat, ess = diagnostics(result["carryover"])
        found = accuracy(result["carryover"], data.truth_carryover)
        print(f"  seed {seed} {tool:>14}: errors {np.round(found['error'], 3).tolist()}, "
              f"max R-hat {rhat.max():.3f}, min ESS {ess.min():.0f}, "
              f"{result['divergences']} div, {time.perf_counter() - began:.0f} s", flush=True)
        for c, channel in enumerate(data.channels):
            truth = data.truth_carryover[c]
            rows.append({
                "seed": seed, "tool": tool, "channel": channel, "truth": truth,
                "spend_share": data.frame[channel].sum() / data.frame[data.channels].sum().sum(),
                "mean": found["mean"][c], "lower": found["lower"][c], "upper": found["upper"][c],
                "rel_error": found["error"][c], "covered": bool(found["covered"][c]),
                "rel_width": (found["upper"][c] - found["lower"][c]) / truth,
                "rhat": rhat[c], "ess_bulk": ess[c], "divergences": result["divergences"]})
    return rows


def summarise(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Pooled accuracy per tool and the paired per-seed comparison."""
    from scipy.stats import wilcoxon

    per_seed = table.groupby(["tool", "seed"]).rel_error.agg(["mean", "max"]).reset_index()
    summary = pd.DataFrame({
        tool: {
            "mean rel error": group.rel_error.mean(),
            "median rel error": group.rel_error.median(),
            "mean of per-seed max error": per_seed[per_seed.tool == tool]["max"].mean(),
            "90% coverage": group.covered.mean(),
            "mean rel 90% width": group.rel_width.mean(),
            "max R-hat": group.rhat.max(),
            "min bulk ESS": group.ess_bulk.min(),
            "fits with divergences": int((group.groupby("seed").divergences.first() > 0).sum()),
        } for tool, group in table.groupby("tool", sort=False)})
    ours = per_seed[per_seed.tool == "engine"].set_index("seed")
    peer = per_seed[per_seed.tool == "pymc-marketing"].set_index("seed")
    lines = []
    for stat, label in (("mean", "mean error over channels"), ("max", "largest error")):
        diff = ours[stat] - peer[stat]
        p = wilcoxon(ours[stat], peer[stat]).pvalue if len(diff) >= 5 and diff.any() else np.nan
        lines.append(f"Per seed, {label}: engine lower on {(diff < 0).sum()} of {len(diff)} "
                     f"seeds (mean difference engine - PyMC-Marketing {diff.mean():+.3f}; "
                     f"Wilcoxon signed-rank p = {p:.2g}).")
    return summary, lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 25)))
    parser.add_argument("--draws", type=int, default=1000, help="draws = tune (default 1000)")
    parser.add_argument("--peer-from", type=Path,
                        help="reuse PyMC-Marketing's rows from an earlier bayes_accuracy.csv "
                        "(same seeds and draws) instead of fitting it again: for a change "
                        "that touches only the engine")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    print(machine_line())
    tools = ("engine",) if args.peer_from else TOOLS
    for tool in tools:  # warm imports and caches, untimed
        (fit_engine if tool == "engine" else fit_peer)(simulated_dataset(args.seeds[0]), 50, 0)
    rows = [r for seed in args.seeds for r in score(seed, args.draws, tools)]
    table = pd.DataFrame(rows)
    if args.peer_from:
        earlier = pd.read_csv(args.peer_from)
        peer = earlier[(earlier.tool == "pymc-marketing") & earlier.seed.isin(args.seeds)]
        if sorted(peer.seed.unique()) != sorted(args.seeds):
            raise SystemExit(f"{args.peer_from} lacks PyMC-Marketing rows for some seeds")
        table = pd.concat([table, peer[table.columns]], ignore_index=True)
    summary, lines = summarise(table)
    print()
    print(summary.to_string(float_format=lambda x: f"{x:.3g}"))
    for line in lines:
        print(line)

    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "bayes_accuracy.csv", index=False, float_format="%.4g")
    markdown = [
        "# Bayesian ROAS accuracy over simulated series: engine vs PyMC-Marketing MMM\n",
        f"Machine: {machine_line()}.  ",
        (f"Seeds {', '.join(map(str, args.seeds))}: `media_series(156, 8 channels, rng=seed)`, "
         f"both tools with draws = tune = {args.draws}, 4 chains, nutpie, target_accept 0.9, "
         f"sampler seed = data seed. Errors are |posterior mean - truth| / truth of the ROAS "
         f"with carryover after the window; coverage of the truth by the "
         f"{CI_LEVEL:.0%} interval; {len(table) // 2} channels per tool."
         + (f" PyMC-Marketing's rows are those of an earlier run ({args.peer_from.name}, "
            "same seeds and settings): only the engine changed." if args.peer_from else "")
         + "\n"),
        "| | " + " | ".join(summary.columns) + " |",
        "|---|" + "---:|" * len(summary.columns),
        *[f"| {name} | " + " | ".join(f"{v:.3g}" for v in values) + " |"
          for name, values in summary.iterrows()],
        "", *lines,
    ]
    (args.out / "bayes_accuracy.md").write_text("\n".join(markdown) + "\n")
    print(f"\nsaved {args.out / 'bayes_accuracy.csv'} and {args.out / 'bayes_accuracy.md'}")


if __name__ == "__main__":
    main()
