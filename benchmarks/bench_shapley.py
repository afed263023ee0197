"""Shapley attribution on path tables: exact and sampled games, against mta and mam.

Three parts, each on 1,000,000-journey path tables from ``make_data.py`` (``--journeys``):

* exact: 12, 16 and 20 channels (``--channels``). The coalition query (``coalition_counts``:
  the channel set of every journey, then counts per distinct set) is timed alone, then every
  value function (``simplified``, ``conversion_rate`` with zero and with model fill for
  unobserved sets, ``model``, ``casv``) twice: the fit with the query's result handed in, which
  is the time *after* the query, and the whole ``Shapley(value=..., n_draws=0).fit``. A value
  function that takes more than a minute after the query (``casv`` evaluates 2^n Markov
  removals) runs once, with the query handed in only.
* sampled: 100 channels (``--sampled-channels``), ``value="model"`` and
  ``value="conversion_rate", unobserved="model"`` with ``max_exact_channels=20``. The number of
  permutations doubles from 20 until, with each of 5 seeds, the largest channel standard error
  is under 0.5 % of the total credit (the sum of the game's positive Shapley values), for
  conversions and for value (a standard error from a few dozen permutations is itself noisy,
  so one lucky seed is not enough). The time is the median fit of those 5 seeds; the fit at
  the default 2,000 permutations is timed too.
* peers, on the 12-channel table as a pandas DataFrame: ``mta`` 0.0.9 (``MTA.shapley``, the
  simplified game over all channels, and ``MTA.shao``, Shao & Li's second-order probabilistic
  model) and ``mam`` 2.1.1 (``MAM.run_shapley``, DP6's per-journey Shapley of the
  conversion-rate game, with ``max_size=None`` and with its default ``max_size=4``). Each is
  timed from the DataFrame to per-channel credit, as is the engine value function that
  computes the same game (``read_paths(frame)`` + ``fit`` + ``attribute``), and the largest
  absolute difference in conversion share is reported. ``MTA(data)`` with its defaults
  (synthetic exposure times and loop removal, which change no channel set) is timed once
  unless ``--skip-mta-default-init``; the timed peer runs skip both.

Every timing is the median of ``--repeats`` runs in one process, after warm-ups on a tiny
table. Peers that fail are reported with their exact error instead of a time.

Usage::

    .venv/bin/python benchmarks/bench_shapley.py               # makes the data first if missing
    .venv/bin/python benchmarks/bench_shapley.py --repeats 1 --skip-mta-default-init

Results go to ``benchmarks/results/shapley.{csv,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import statistics
import time
import traceback
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results"
EXACT_CHANNELS = (12, 16, 20)
PEER_CHANNELS = 12
GAMES = {
    "simplified": {"value": "simplified"},
    "conversion_rate": {"value": "conversion_rate"},
    "conversion_rate, model fill": {"value": "conversion_rate", "unobserved": "model"},
    "model": {"value": "model"},
    "casv": {"value": "casv"},
}
SAMPLED_GAMES = ("model", "conversion_rate, model fill")
SLOW_S = 60.0
MAX_EXACT_CHANNELS = 20
FIRST_PERMUTATIONS = 20
MAX_PERMUTATIONS = 20_480
DEFAULT_PERMUTATIONS = 2_000
SEEDS = (0, 1, 2, 3, 4)
TARGET_EXACT_S = 2.0
TARGET_SAMPLED_S = 30.0
TARGET_RELATIVE_SE = 0.005


def versions() -> str:
    return ", ".join(f"{name} {importlib.metadata.version(name)}" for name in
                     ("scikit-learn", "mta", "marketing-attribution-models", "polars"))


def path_file(n_journeys: int, n_channels: int) -> Path:
    from make_data import main as make_data
    from make_data import path_file_name

    data = DATA / path_file_name(n_journeys, n_channels)
    if not data.exists():
        make_data(["--what", "paths", "--journeys", str(n_journeys), "--channels",
                   str(n_channels), "--out", str(DATA)])
    return data


def describe(data: Path, journeys, coalitions) -> str:
    n_journeys = journeys.total_conversions + journeys.nulls.sum()
    return (f"`{data.name}`: {n_journeys:,.0f} journeys, {journeys.n_journeys:,} unique paths, "
            f"{journeys.n_touches:,} touches, {journeys.n_channels} channels, "
            f"{journeys.total_conversions:,.0f} conversions, {len(coalitions.masks):,} distinct "
            "channel sets")


def timed(function, *args, **kwargs):
    began = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - began, result


@contextlib.contextmanager
def coalitions_given(coalitions):
    """``Shapley.fit`` with the coalition query's result handed in, so that only the work after
    the query is timed (``fit`` looks ``coalition_counts`` up in its module at call time)."""
    from engine.models import shapley

    with mock.patch.object(shapley, "coalition_counts", lambda journeys: coalitions):
        yield


def shapley(game: str, **params):
    from engine.models import Shapley

    return Shapley(**{"n_draws": 0, "rng": 0, "max_exact_channels": MAX_EXACT_CHANNELS,
                      **GAMES[game], **params})


def relative_error(model) -> float:
    """Largest channel standard error over the sum of positive Shapley values, the worse of
    conversions and value."""
    values = model.shapley_values_
    return max(float(values[f"standard_error_{measure}"].max()
                     / values[f"shapley_{measure}"].clip(lower=0).sum())
               for measure in ("conversions", "value"))


# -- part 1: exact -------------------------------------------------------------------------------

def bench_exact(data: Path, repeats: int) -> tuple[list[dict], str]:
    import engine
    from engine.models.shapley import coalition_counts

    journeys = engine.read_paths(data)
    coalitions = coalition_counts(journeys)
    described = describe(data, journeys, coalitions)
    print(described.replace("`", ""), flush=True)
    query = [timed(coalition_counts, journeys)[0] for _ in range(repeats)]
    rows = []
    for game in GAMES:
        fits, after = [], []
        for _ in range(repeats):
            with coalitions_given(coalitions):
                seconds, given = timed(shapley(game).fit, journeys)
            after.append(seconds)
            if not given.exact_:
                raise SystemExit(f"{game} at {journeys.n_channels} channels was not exact")
            if seconds > SLOW_S:
                break
            seconds, model = timed(shapley(game).fit, journeys)
            fits.append(seconds)
            if not np.allclose(model.phi_, given.phi_, rtol=1e-12, atol=0.0):
                raise SystemExit(f"{game}: the fit with the query handed in differs")
        rows.append({"part": "exact", "file": data.name, "channels": journeys.n_channels,
                     "coalitions": len(coalitions.masks), "tool": "engine", "game": game,
                     "runs": len(after), "query_s": statistics.median(query),
                     "fit_s": statistics.median(fits) if fits else np.nan,
                     "after_query_s": statistics.median(after)})
        print(f"  {game}: after the query {rows[-1]['after_query_s']:.3f} s, whole fit "
              f"{rows[-1]['fit_s']:.3f} s (query {rows[-1]['query_s']:.3f} s; "
              f"{len(after)} run(s))", flush=True)
    return rows, described


# -- part 2: sampled -----------------------------------------------------------------------------

def bench_sampled(data: Path, repeats: int) -> tuple[list[dict], str]:
    import engine
    from engine.models.shapley import coalition_counts

    journeys = engine.read_paths(data)
    coalitions = coalition_counts(journeys)
    described = describe(data, journeys, coalitions)
    print(described.replace("`", ""), flush=True)
    query = statistics.median(timed(coalition_counts, journeys)[0] for _ in range(repeats))
    rows = []
    for game in SAMPLED_GAMES:
        n_permutations, searched = FIRST_PERMUTATIONS, 0.0
        while True:
            fits = [timed(shapley(game, n_permutations=n_permutations, rng=seed).fit, journeys)
                    for seed in SEEDS]
            searched += sum(seconds for seconds, _ in fits)
            errors = [relative_error(model) for _, model in fits]
            print(f"  {game}: {n_permutations} permutations, largest standard error "
                  f"{100 * min(errors):.3f}-{100 * max(errors):.3f} % of the total over "
                  f"{len(SEEDS)} seeds, {statistics.median(seconds for seconds, _ in fits):.2f} s",
                  flush=True)
            if max(errors) < TARGET_RELATIVE_SE or n_permutations >= MAX_PERMUTATIONS:
                break
            n_permutations *= 2
        if any(model.exact_ for _, model in fits):
            raise SystemExit(f"{game} at {journeys.n_channels} channels was not sampled")
        with coalitions_given(coalitions):
            after = [timed(shapley(game, n_permutations=n_permutations).fit, journeys)[0]
                     for _ in range(repeats)]
        seconds, model = timed(shapley(game, n_permutations=DEFAULT_PERMUTATIONS).fit, journeys)
        rows.append({"part": "sampled", "file": data.name, "channels": journeys.n_channels,
                     "coalitions": len(coalitions.masks), "tool": "engine", "game": game,
                     "runs": len(SEEDS), "query_s": query,
                     "fit_s": statistics.median(seconds for seconds, _ in fits),
                     "after_query_s": statistics.median(after),
                     "n_permutations": n_permutations, "relative_se": max(errors),
                     "search_s": searched, "default_fit_s": seconds,
                     "default_relative_se": relative_error(model)})
    return rows, described


# -- part 3: peers -------------------------------------------------------------------------------

def grouped_journeys(frame: pd.DataFrame) -> pd.DataFrame:
    """mam's ``grouped_journey`` layout: one row per path and outcome, with its count."""
    converting = frame[frame.total_conversions > 0]
    lost = frame[frame.total_null > 0]
    return pd.concat([
        pd.DataFrame({"path": converting.path, "occurrences": converting.total_conversions,
                      "has_conversion": True}),
        pd.DataFrame({"path": lost.path, "occurrences": lost.total_null,
                      "has_conversion": False}),
    ], ignore_index=True)


def run_mta(frame: pd.DataFrame, method: str) -> pd.Series:
    from mta import MTA

    with contextlib.redirect_stdout(io.StringIO()):
        model = MTA(data=frame, add_timepoints=False, allow_loops=True)
        getattr(model, method)()
    return pd.Series(model.attribution[method], dtype=float)


def run_mam(frame: pd.DataFrame, max_size: int | None) -> pd.Series:
    from mam import MAM

    model = MAM(grouped_journeys(frame), format_type="grouped_journey", channels_colname="path",
                journey_with_conv_colname="has_conversion", occurrences_colname="occurrences",
                path_separator=" > ")
    result = model.run_shapley(max_size=max_size, value_column="conv_rate").to_pandas()
    return result.set_index("channels")["attribution"].astype(float)


def run_engine(frame: pd.DataFrame, game: str) -> pd.Series:
    import engine

    table = shapley(game).fit(engine.read_paths(frame)).attribute().table
    return table.set_index("channel")["conversions"]


# tool, call, what it computes, runner, the engine game computing the same
PEERS = [
    ("mta", "MTA(frame).shapley()",
     ("exact Shapley over all channels of v(S) = conversions of the journeys whose channel set "
      "is inside S: the simplified game"), lambda frame: run_mta(frame, "shapley"), "simplified"),
    ("mta", "MTA(frame).shao()",
     ("Shao & Li's probabilistic model: P(conv | channel in journey) plus half the average "
      "pair interaction, per converting journey; a second-order approximation of the "
      "conversion-rate game, on journeys containing the channels rather than exactly them"),
     lambda frame: run_mta(frame, "shao"), "conversion_rate"),
    ("mam", "MAM(...).run_shapley(max_size=None)",
     ("per converting channel set T, the Shapley values of the conversion-rate game "
      "restricted to T's channels (v = observed conversion rate of the exact set, 0 when "
      "unobserved or never converting), rescaled to T's conversions and summed"),
     lambda frame: run_mam(frame, None), "conversion_rate"),
    ("mam", "MAM(...).run_shapley() (max_size=4)",
     "the same, after cutting every channel set to its 4 alphabetically last channels",
     lambda frame: run_mam(frame, 4), "conversion_rate"),
]


def shares(credit: pd.Series) -> pd.Series:
    return credit / credit.sum()


def share_difference(peer: pd.Series, ours: pd.Series) -> float:
    channels = ours.index.union(peer.index)
    return float((shares(peer).reindex(channels, fill_value=0.0)
                  - shares(ours).reindex(channels, fill_value=0.0)).abs().max())


def bench_peers(data: Path, repeats: int, default_init: bool) -> tuple[list[dict], pd.DataFrame]:
    frame = pd.read_csv(data)
    engine_times, engine_credit = {}, {}
    for game in GAMES:
        times = [timed(run_engine, frame, game) for _ in range(repeats)]
        engine_times[game] = statistics.median(seconds for seconds, _ in times)
        engine_credit[game] = times[-1][1]
    rows, matrix = [], {}
    for tool, call, computes, runner, game in PEERS:
        row = {"part": "peer", "file": data.name, "channels": PEER_CHANNELS, "tool": tool,
               "game": game, "call": call, "computes": computes,
               "engine_s": engine_times[game]}
        try:
            times = [timed(runner, frame) for _ in range(repeats)]
        except Exception as exc:  # noqa: BLE001 - a peer that breaks is a result to report
            row["error"] = "".join(traceback.format_exception_only(exc)).strip()
            print(f"  {tool} {call}: FAILED: {row['error']}", flush=True)
            rows.append(row)
            continue
        credit = times[-1][1]
        row.update(runs=repeats, peer_s=statistics.median(seconds for seconds, _ in times),
                   max_share_diff=share_difference(credit, engine_credit[game]))
        row["speed_ratio"] = row["peer_s"] / row["engine_s"]
        matrix[f"{tool} {call}"] = {other: share_difference(credit, ours)
                                    for other, ours in engine_credit.items()}
        print(f"  {tool} {call}: {row['peer_s']:.2f} s, engine {game} {row['engine_s']:.3f} s; "
              f"largest share difference {row['max_share_diff']:.2e}", flush=True)
        rows.append(row)
    if default_init:
        from mta import MTA

        with contextlib.redirect_stdout(io.StringIO()):
            seconds, _ = timed(MTA, data=frame)
        rows.append({"part": "peer", "file": data.name, "channels": PEER_CHANNELS,
                     "tool": "mta", "call": "MTA(frame) with its defaults",
                     "computes": "preparation only: synthetic exposure times, loop removal",
                     "runs": 1, "peer_s": seconds})
        print(f"  mta MTA(frame) with its defaults: {seconds:.1f} s", flush=True)
    return rows, pd.DataFrame(matrix).T


def warm_up() -> None:
    """Pay one-off costs (DuckDB start, scikit-learn and scipy imports, the peers' first calls)
    on a tiny table."""
    from make_data import path_table

    import engine

    frame = path_table(2_000, PEER_CHANNELS, rng=np.random.default_rng(0))
    journeys = engine.read_paths(frame)
    for game in GAMES:
        shapley(game).fit(journeys)
    shapley("model", max_exact_channels=4, n_permutations=4).fit(journeys)
    for _, _, _, runner, _ in PEERS:
        with contextlib.suppress(Exception):
            runner(frame)


# -- report --------------------------------------------------------------------------------------

def verdicts(table: pd.DataFrame) -> list[str]:
    lines = []
    exact = table[(table.part == "exact") & (table.channels == max(EXACT_CHANNELS))]
    for row in exact.itertuples():
        met = "met" if row.after_query_s < TARGET_EXACT_S else "NOT met"
        whole = ("not run: over a minute, one run" if np.isnan(row.fit_s)
                 else f"whole fit {row.fit_s:.2f} s")
        lines.append(f"Exact, {row.channels} channels, `{row.game}`: under {TARGET_EXACT_S:g} s "
                     f"after the coalition query: **{met}** ({row.after_query_s:.2f} s after a "
                     f"{row.query_s:.2f} s query; {whole}).")
    for row in table[table.part == "sampled"].itertuples():
        error_met = row.relative_se < TARGET_RELATIVE_SE
        met = "met" if error_met and row.fit_s < TARGET_SAMPLED_S else "NOT met"
        lines.append(
            f"Sampled, {row.channels} channels, `{row.game}`: standard error under "
            f"{100 * TARGET_RELATIVE_SE:g} % of the total credit in under "
            f"{TARGET_SAMPLED_S:g} s: **{met}** ({row.n_permutations} permutations, largest "
            f"standard error {100 * row.relative_se:.2f} % over {len(SEEDS)} seeds, whole fit "
            f"{row.fit_s:.2f} s of which the query {row.query_s:.2f} s; at the default "
            f"{DEFAULT_PERMUTATIONS:,} permutations {row.default_fit_s:.2f} s and "
            f"{100 * row.default_relative_se:.2f} %).")
    return lines


def markdown_table(frame: pd.DataFrame, columns: dict) -> list[str]:
    def cell(value) -> str:
        if value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.3g}"
        if isinstance(value, (int, np.integer)):
            return f"{value:,}"
        return str(value)

    shown = frame[[column for column in columns if column in frame]]
    return ["| " + " | ".join(columns[column] for column in shown) + " |",
            "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(shown[column]) else "---"
                           for column in shown) + "|",
            *["| " + " | ".join(cell(value) for value in row) + " |"
              for row in shown.itertuples(index=False)]]


EXACT_COLUMNS = {"channels": "channels", "coalitions": "channel sets", "game": "value function",
                 "runs": "runs", "query_s": "query s", "after_query_s": "after query s",
                 "fit_s": "whole fit s"}
SAMPLED_COLUMNS = {"channels": "channels", "coalitions": "channel sets", "game": "value function",
                   "n_permutations": "permutations", "relative_se": "largest SE / total",
                   "query_s": "query s", "after_query_s": "after query s",
                   "fit_s": "whole fit s", "search_s": "search s",
                   "default_fit_s": f"whole fit s, {DEFAULT_PERMUTATIONS:,} permutations",
                   "default_relative_se": f"largest SE / total, {DEFAULT_PERMUTATIONS:,}"}
PEER_COLUMNS = {"tool": "peer", "call": "call", "game": "engine value function",
                "peer_s": "peer s", "engine_s": "engine s", "speed_ratio": "peer/engine",
                "max_share_diff": "max abs share diff", "error": "error"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journeys", type=int, default=1_000_000,
                        help="journeys per path table, made with make_data.py if missing "
                        "(default 1000000)")
    parser.add_argument("--channels", type=int, nargs="+", default=list(EXACT_CHANNELS),
                        help="channel counts for the exact part (default 12 16 20)")
    parser.add_argument("--sampled-channels", type=int, default=100,
                        help="channels for the sampled part (default 100)")
    parser.add_argument("--peer-journeys", type=int, default=None,
                        help="journeys in the 12-channel table the peers run on (default: "
                        "--journeys)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per timing; medians are reported (default 3)")
    parser.add_argument("--skip-mta-default-init", action="store_true",
                        help="do not time MTA(frame) with its default preparation (about 90 s)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from bench_rules import machine

    exact_files = [path_file(args.journeys, n) for n in args.channels]
    sampled_file = path_file(args.journeys, args.sampled_channels)
    peer_file = path_file(args.peer_journeys or args.journeys, PEER_CHANNELS)
    machine_line = f"{machine()}, {versions()}"
    print(machine_line)
    began = time.perf_counter()
    warm_up()

    rows, described = [], []
    print("\nExact Shapley:")
    for data in exact_files:
        cells, line = bench_exact(data, args.repeats)
        rows.extend(cells)
        described.append(line)
    print(f"\nSampled Shapley (max_exact_channels={MAX_EXACT_CHANNELS}):")
    cells, line = bench_sampled(sampled_file, args.repeats)
    rows.extend(cells)
    described.append(line)
    print(f"\nPeers on {peer_file.name}:")
    cells, matrix = bench_peers(peer_file, args.repeats, not args.skip_mta_default_init)
    rows.extend(cells)
    if peer_file not in exact_files:
        described.append(f"`{peer_file.name}` (peers)")
    table = pd.DataFrame(rows)
    elapsed = time.perf_counter() - began

    counts = ["channels", "coalitions", "runs", "n_permutations"]
    table = table.astype({column: "Int64" for column in counts if column in table})
    parts = {part: table[table.part == part].dropna(axis=1, how="all")
             for part in ("exact", "sampled", "peer")}
    print(f"\nMedian of {args.repeats} run(s), seconds:")
    print(parts["exact"][list(EXACT_COLUMNS)].to_string(index=False,
                                                        float_format=lambda x: f"{x:.3g}"))
    print()
    print(parts["sampled"][list(SAMPLED_COLUMNS)].to_string(index=False,
                                                            float_format=lambda x: f"{x:.3g}"))
    print()
    print(parts["peer"][[c for c in PEER_COLUMNS if c in parts["peer"]]].to_string(
        index=False, float_format=lambda x: f"{x:.3g}"))
    print("\nLargest absolute difference in conversion share, peer against each engine value "
          "function:")
    print(matrix.to_string(float_format=lambda x: f"{x:.3g}"))
    print()
    for line in verdicts(table):
        print(line)
    print(f"\n{elapsed:.0f} s in all")

    args.out.mkdir(parents=True, exist_ok=True)
    table.drop(columns=["computes"]).to_csv(args.out / "shapley.csv", index=False,
                                            float_format="%.4g")
    matrix_lines = markdown_table(matrix.reset_index(names="peer"),
                                  {"peer": "peer", **{game: game for game in matrix.columns}})
    markdown = [
        "# Shapley attribution: exact and sampled, engine vs mta and mam\n",
        *[f"Data: {line}.  " for line in described],
        f"Machine: {machine_line}.  ",
        (f"Median of {args.repeats} run(s) in one process after warm-ups on a tiny table; "
         f"{elapsed:.0f} s in all. `query s` is `coalition_counts(journeys)`, `after query s` "
         "`Shapley(value=..., n_draws=0).fit(journeys)` with the query's result handed in, "
         f"`whole fit s` the same fit doing its own query (not run, and no repeat, where the "
         f"fit after the query took over {SLOW_S:g} s).\n"),
        "## Exact\n", *markdown_table(parts["exact"], EXACT_COLUMNS), "",
        (f"## Sampled (max_exact_channels={MAX_EXACT_CHANNELS})\n\nPermutations double from "
         f"{FIRST_PERMUTATIONS} until the largest channel standard error is under "
         f"{100 * TARGET_RELATIVE_SE:g} % of the sum of positive Shapley values (conversions "
         f"and value) with each of the seeds {', '.join(map(str, SEEDS))}; `largest SE / "
         "total` is the worst seed's, `whole fit s` the median seed's fit, `search s` the time "
         "of all the fits of the search.\n"),
        *markdown_table(parts["sampled"], SAMPLED_COLUMNS), "",
        ("## Peers\n\nFrom the pandas DataFrame of the path table to per-channel credit; the "
         "engine's time is `read_paths(frame)` + `fit` + `attribute` of the value function that "
         "computes the same game. mta runs with `add_timepoints=False, allow_loops=True` "
         "(neither changes a channel set).\n"),
        *markdown_table(parts["peer"], PEER_COLUMNS), "",
        *[f"* {row.tool} `{row.call}`: {row.computes}." for row in parts["peer"].itertuples()],
        ("\nLargest absolute difference in conversion share against every engine value "
         "function:\n"),
        *matrix_lines, "",
        *verdicts(table),
    ]
    (args.out / "shapley.md").write_text("\n".join(markdown) + "\n")
    print(f"\nsaved {args.out / 'shapley.csv'} and {args.out / 'shapley.md'}")


if __name__ == "__main__":
    main()
