"""Bayesian ROAS: the engine's ``BayesianROAS`` against PyMC-Marketing's MMM, time to convergence.

Two datasets: PyMC-Marketing's ``mmm_example.csv`` (179 weeks, 2 channels, known data-generating
process, see ``tests/data/pymc_marketing_mmm/SOURCE.md``) and a simulated 156-week, 8-channel
series from ``engine.simulate.media_series`` (truth returned with it). Both tools fit geometric
adstock (``l_max = 8``) and logistic saturation with yearly seasonality of order 2, sampled by
nutpie with the same chains, draws, tune, ``target_accept`` and seed.

For each tool and dataset the fit starts at ``draws = tune = 500`` with 4 chains and doubles both
until every channel's ROAS has R-hat < 1.01 and bulk ESS >= 400 with no divergences (capped at
4000 draws). The R-hat and ESS are ArviZ's (rank-normalised), computed the same way for both tools
on the posterior ROAS draws, chains kept apart. For the converged fit the table gives the wall time
(model build + compile + sampling), the sampling alone (``nutpie.sample``), the worst ROAS's bulk
ESS per second, and the error of the posterior mean ROAS against the truth (relative, per channel
and the largest), with the coverage of the truth by the 90 % interval. Before that, each tool
fits each dataset once with 50 draws, untimed, so that imports and PyTensor's compilation caches
are warm for every timed fit alike (the compile step still runs in every timed fit).

ROAS definitions. The engine's ROAS is the contribution over the window with the carryover after
the window counted (spend followed by ``max_lag`` periods of none), over spend. PyMC-Marketing's
``channel_contribution`` (times ``target_scale``: original units) covers the dates of the data
only, so the carryover of the last weeks' spend past the end is lost. Both are reported for
PyMC-Marketing: ``window`` (its own contributions summed, against the truth over the window) and
``carryover`` (its posterior adstock, saturation and beta applied to the spend followed by 8
empty weeks, against the engine's truth). Verdicts use the carryover definition for both tools.

Usage::

    .venv/bin/python benchmarks/bench_bayes.py                     # both datasets, seeds 1, 2
    .venv/bin/python benchmarks/bench_bayes.py --datasets example --seeds 3 --repeats 3

Results go to ``benchmarks/results/bayes.{csv,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
EXAMPLE = ROOT / "tests" / "data" / "pymc_marketing_mmm" / "mmm_example.csv"
MAX_LAG = 8
SEASONALITY = 2
CHAINS = 4
TARGET_ACCEPT = 0.9
FIRST_DRAWS = 500
MAX_DRAWS = 4000
WARM_UP_DRAWS = 50
RHAT = 1.01
ESS = 400
CI_LEVEL = 0.9
TARGET_SPEED = 2.0
TOOLS = ("engine", "pymc-marketing")


class Dataset:
    """One benchmark dataset: the frame, its columns and the true ROAS in both definitions."""

    def __init__(self, name, frame, date, channels, controls, truth_carryover, truth_window):
        self.name, self.frame, self.date = name, frame, date
        self.channels, self.controls = list(channels), list(controls)
        self.truth_carryover = np.asarray(truth_carryover, dtype=float)
        self.truth_window = np.asarray(truth_window, dtype=float)


def true_roas(spend, alpha, lam, weight, n_periods, scale=1.0):
    """True ROAS with and without the carryover after the window, per channel.

    The data-generating process applied its curves to ``spend / scale``.
    """
    from engine.models.bayes.components import GeometricAdstock, LogisticSaturation

    padded = np.vstack([spend, np.zeros((MAX_LAG, spend.shape[1]))])
    curve = LogisticSaturation().apply(GeometricAdstock(MAX_LAG).apply(
        padded / scale, {"alpha": np.asarray(alpha, dtype=float)}),
        {"lam": np.asarray(lam, dtype=float)})
    contribution = curve * np.asarray(weight, dtype=float)
    return (contribution.sum(axis=0) / spend.sum(axis=0),
            contribution[:n_periods].sum(axis=0) / spend.sum(axis=0))


def example_dataset() -> Dataset:
    """``mmm_example.csv``: truth from its generating process (as ``tests/test_bayes.py``)."""
    frame = pd.read_csv(EXAMPLE)
    spend = frame[["x1", "x2"]].to_numpy()
    carryover, window = true_roas(spend, [0.4, 0.2], [4.0, 3.0], [3000.0, 2000.0], len(frame))
    return Dataset("mmm_example", frame, "date_week", ["x1", "x2"], ["event_1", "event_2"],
                   carryover, window)


def simulated_dataset(seed: int) -> Dataset:
    """``media_series(156, 8 channels)``: truth from the returned parameters."""
    from engine.simulate import media_series

    channels = [f"ch{i}" for i in range(1, 9)]
    frame, truth = media_series(156, channels, rng=seed)
    spend = frame[channels].to_numpy()
    scale = np.array([s[s > 0].mean() for s in spend.T])
    carryover, window = true_roas(spend, truth["alpha"], truth["lam"], truth["beta"],
                                  len(frame), scale)
    np.testing.assert_allclose(carryover, truth["roas"], rtol=1e-9)
    return Dataset("simulated_156x8", frame, "date", channels, ["event"], carryover, window)


class SampleTimer:
    """Times ``nutpie.compile_pymc_model`` and ``nutpie.sample``, which both tools call."""

    def __init__(self):
        self.compile = self.sample = 0.0

    @contextlib.contextmanager
    def installed(self):
        import nutpie

        compile_model, sample = nutpie.compile_pymc_model, nutpie.sample

        def timed(function, slot):
            def wrapper(*args, **kwargs):
                began = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    setattr(self, slot, getattr(self, slot) + time.perf_counter() - began)
            return wrapper

        nutpie.compile_pymc_model = timed(compile_model, "compile")
        nutpie.sample = timed(sample, "sample")
        try:
            yield self
        finally:
            nutpie.compile_pymc_model, nutpie.sample = compile_model, sample


def fit_engine(data: Dataset, draws: int, seed: int) -> dict:
    """``BayesianROAS`` fit; ROAS draws ``(chain, draw, channel)``, carryover included."""
    from engine.models.bayes import BayesianROAS

    timer = SampleTimer()
    with timer.installed(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        began = time.perf_counter()
        model = BayesianROAS(adstock="geometric", saturation="logistic", max_lag=MAX_LAG,
                             seasonality=SEASONALITY, draws=draws, tune=draws, chains=CHAINS,
                             sampler="nutpie", target_accept=TARGET_ACCEPT, rng=seed).fit(
            data.frame, date=data.date, target="y", channels=data.channels,
            controls=data.controls)
        wall = time.perf_counter() - began
    roas = model.roas_draws_.reshape(CHAINS, draws, len(data.channels))
    return {"wall_s": wall, "compile_s": timer.compile, "sample_s": timer.sample,
            "carryover": roas, "window": None, "divergences": model.divergences_,
            "own_converged": bool(model.converged_)}


def fit_peer(data: Dataset, draws: int, seed: int) -> dict:
    """PyMC-Marketing's multidimensional ``MMM``; ROAS in both definitions.

    Its trend comes in as a control column ``t`` (0, 1, 2, ...), as in its example notebook;
    the engine has a linear trend built in.
    """
    from pymc_marketing.mmm import GeometricAdstock, LogisticSaturation
    from pymc_marketing.mmm.multidimensional import MMM

    frame = data.frame.assign(t=np.arange(len(data.frame), dtype=float))
    frame[data.date] = pd.to_datetime(frame[data.date])
    X = frame[[data.date, *data.channels, *data.controls, "t"]]
    timer = SampleTimer()
    with timer.installed(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        began = time.perf_counter()
        mmm = MMM(date_column=data.date, channel_columns=data.channels, target_column="y",
                  adstock=GeometricAdstock(l_max=MAX_LAG), saturation=LogisticSaturation(),
                  control_columns=[*data.controls, "t"], yearly_seasonality=SEASONALITY)
        idata = mmm.fit(X, frame["y"], progressbar=False, random_seed=seed,
                        nuts_sampler="nutpie", draws=draws, tune=draws, chains=CHAINS,
                        target_accept=TARGET_ACCEPT)
        wall = time.perf_counter() - began
    posterior = idata.posterior
    target_scale = float(np.asarray(idata.constant_data["target_scale"]).squeeze())
    channel_scale = np.asarray(idata.constant_data["channel_scale"].sel(channel=data.channels))
    spend = frame[data.channels].to_numpy(dtype=float)
    totals = spend.sum(axis=0)
    within = np.asarray(posterior["channel_contribution"].transpose(
        "chain", "draw", "date", "channel").sel(channel=data.channels)) * target_scale
    contribution = peer_contributions(posterior, data.channels, spend, channel_scale,
                                      target_scale)
    # The carryover figures reuse its posterior through the same formulas; check they agree
    # with its own contributions over the window before trusting them past the window.
    np.testing.assert_allclose(contribution[:, :, :len(spend)], within, rtol=1e-6,
                               atol=1e-9 * target_scale)
    return {"wall_s": wall, "compile_s": timer.compile, "sample_s": timer.sample,
            "carryover": contribution.sum(axis=2) / totals,
            "window": within.sum(axis=2) / totals,
            "divergences": int(np.asarray(idata.sample_stats["diverging"]).sum()),
            "own_converged": None}


def peer_contributions(posterior, channels, spend, channel_scale, target_scale):
    """PyMC-Marketing's media curve (normalised geometric adstock, then logistic saturation
    times ``saturation_beta``) on spend followed by ``MAX_LAG`` empty periods, in outcome units:
    ``(chain, draw, period, channel)``."""
    def draws(name):
        return np.asarray(posterior[name].transpose("chain", "draw", "channel").sel(
            channel=channels))

    alpha, lam, beta = draws("adstock_alpha"), draws("saturation_lam"), draws("saturation_beta")
    padded = np.vstack([spend, np.zeros((MAX_LAG, spend.shape[1]))]) / channel_scale
    weights = alpha[None] ** np.arange(MAX_LAG)[:, None, None, None]  # (L, chain, draw, C)
    weights = weights / weights.sum(axis=0)
    adstocked = np.zeros(alpha.shape[:2] + padded.shape)
    for lag in range(MAX_LAG):
        shifted = np.vstack([np.zeros((lag, padded.shape[1])), padded[:len(padded) - lag]])
        adstocked += weights[lag][:, :, None, :] * shifted
    decay = np.exp(-lam[:, :, None, :] * adstocked)
    return beta[:, :, None, :] * (1 - decay) / (1 + decay) * target_scale


def diagnostics(roas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalised R-hat and bulk ESS per channel of ``(chain, draw, channel)`` draws."""
    import arviz as az

    rhat = np.array([float(az.rhat(roas[:, :, c])) for c in range(roas.shape[2])])
    ess = np.array([float(az.ess(roas[:, :, c], method="bulk")) for c in range(roas.shape[2])])
    return rhat, ess


def accuracy(roas: np.ndarray, truth: np.ndarray) -> dict:
    """Posterior mean, relative error, interval and coverage per channel of ``(chain, draw,
    channel)`` draws, and the Monte Carlo standard error of each mean relative to the truth
    (ArviZ's ``mcse(method="mean")``): the part of an error that more draws would change."""
    import arviz as az

    flat = roas.reshape(-1, roas.shape[2])
    tail = (1 - CI_LEVEL) / 2
    lower, upper = np.quantile(flat, tail, axis=0), np.quantile(flat, 1 - tail, axis=0)
    error = np.abs(flat.mean(axis=0) - truth) / truth
    mcse = np.array([np.asarray(az.mcse(roas[:, :, c], method="mean")).item()
                     for c in range(roas.shape[2])])
    return {"mean": flat.mean(axis=0), "error": error, "lower": lower, "upper": upper,
            "covered": (lower <= truth) & (truth <= upper), "mcse": mcse / truth}


def converge(tool: str, data: Dataset, seed: int) -> dict:
    """Double draws and tune from ``FIRST_DRAWS`` until the ROAS converge (or ``MAX_DRAWS``)."""
    fit = fit_engine if tool == "engine" else fit_peer
    draws, tried = FIRST_DRAWS, []
    while True:
        result = fit(data, draws, seed)
        rhat, ess = diagnostics(result["carryover"])
        converged = bool((rhat < RHAT).all() and (ess >= ESS).all()
                         and result["divergences"] == 0)
        tried.append(f"{draws}: R-hat {rhat.max():.3f}, ESS {ess.min():.0f}, "
                     f"{result['divergences']} div, {result['wall_s']:.0f} s")
        print(f"  {tool:>14} {data.name} draws=tune={draws}: {tried[-1]}", flush=True)
        if converged or draws >= MAX_DRAWS:
            return {**result, "draws": draws, "converged": converged, "rhat": rhat, "ess": ess,
                    "tried": "; ".join(tried)}
        draws *= 2


def row(tool: str, data: Dataset, runs: list[dict]) -> dict:
    """One table row from repeated converged fits (medians of times; accuracy of the first)."""
    first = runs[0]
    wall = statistics.median(r["wall_s"] for r in runs)
    sample = statistics.median(r["sample_s"] for r in runs)
    carry = accuracy(first["carryover"], data.truth_carryover)
    out = {
        "dataset": data.name, "tool": tool, "channels": len(data.channels),
        "periods": len(data.frame), "converged": all(r["converged"] for r in runs),
        "draws": first["draws"], "wall_s": wall,
        "compile_s": statistics.median(r["compile_s"] for r in runs), "sample_s": sample,
        "max_rhat": float(first["rhat"].max()), "min_ess_bulk": float(first["ess"].min()),
        "ess_per_s": float(first["ess"].min()) / first["wall_s"],
        "ess_per_sample_s": float(first["ess"].min()) / first["sample_s"],
        "divergences": first["divergences"],
        "max_rel_error": float(carry["error"].max()),
        "max_rel_error_mcse": float(carry["mcse"][np.argmax(carry["error"])]),
        "mean_rel_error": float(carry["error"].mean()),
        "coverage": float(carry["covered"].mean()),
        "errors": " ".join(f"{e:.3f}" for e in carry["error"]),
        "window_max_rel_error": np.nan, "window_coverage": np.nan,
        "engine_own_converged": first["own_converged"], "tried": first["tried"],
    }
    if first["window"] is not None:
        window = accuracy(first["window"], data.truth_window)
        out["window_max_rel_error"] = float(window["error"].max())
        out["window_coverage"] = float(window["covered"].mean())
    return out


def verdicts(table: pd.DataFrame) -> list[str]:
    lines = []
    for (seed, dataset), group in table.groupby(["seed", "dataset"], sort=False):
        name = f"{dataset}, seed {seed}"
        ours = group.set_index("tool").loc["engine"]
        peer = group.set_index("tool").loc["pymc-marketing"]
        if not (ours.converged and peer.converged):
            lines.append(f"{name}: not both converged by {MAX_DRAWS} draws (engine "
                         f"{ours.converged}, PyMC-Marketing {peer.converged}); speed NOT compared.")
        else:
            speed = peer.wall_s / ours.wall_s
            lines.append(
                f"{name}: at least {TARGET_SPEED:g}x faster to the same convergence: "
                f"{'met' if speed >= TARGET_SPEED else 'NOT met'} ({speed:.2f}x wall, "
                f"{peer.sample_s / ours.sample_s:.2f}x sampling alone; engine "
                f"{ours.wall_s:.1f} s at {ours.draws} draws, PyMC-Marketing {peer.wall_s:.1f} s "
                f"at {peer.draws}).")
        # A larger error by less than twice the Monte Carlo error of the two means is a tie:
        # more draws could reverse it.
        noise = 2 * np.hypot(ours.max_rel_error_mcse, peer.max_rel_error_mcse)
        verdict = ("met" if ours.max_rel_error <= peer.max_rel_error
                   else "met within Monte Carlo error"
                   if ours.max_rel_error - peer.max_rel_error <= noise else "NOT met")
        lines.append(
            f"{name}: ROAS error no worse (largest relative error, carryover included): "
            f"{verdict} (engine {ours.max_rel_error:.4f}, PyMC-Marketing "
            f"{peer.max_rel_error:.4f}, 2 x Monte Carlo error of the difference {noise:.4f}; "
            f"90 % coverage {ours.coverage:.0%} vs {peer.coverage:.0%}).")
    return lines


def machine_line() -> str:
    import importlib.metadata

    from bench_rules import machine

    versions = ", ".join(f"{name} {importlib.metadata.version(name)}"
                         for name in ("pymc", "pytensor", "nutpie", "arviz", "pymc-marketing"))
    return f"{machine()}; {versions}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=("example", "simulated"),
                        default=["example", "simulated"])
    parser.add_argument("--repeats", type=int, default=1,
                        help="converged fits per tool and dataset (default 1); the draws found "
                        "by the first are reused, times are medians")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2],
                        help="each seed is the sampler seed of both tools and the seed of the "
                        "simulation (default 1 2)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    print(machine_line())
    rows = []
    for seed, name in [(seed, name) for seed in args.seeds for name in args.datasets]:
        data = example_dataset() if name == "example" else simulated_dataset(seed)
        print(f"{data.name}: {len(data.frame)} periods, {len(data.channels)} channels; true ROAS "
              f"(carryover included) {np.round(data.truth_carryover, 3).tolist()}", flush=True)
        for tool in TOOLS:
            fit = fit_engine if tool == "engine" else fit_peer
            fit(data, WARM_UP_DRAWS, seed)
            first = converge(tool, data, seed)
            runs = [first]
            for _ in range(args.repeats - 1):
                again = fit(data, first["draws"], seed)
                runs.append({**first, **{k: again[k] for k in ("wall_s", "compile_s",
                                                                "sample_s")}})
            rows.append({"seed": seed, **row(tool, data, runs)})
    table = pd.DataFrame(rows)

    columns = {"seed": "seed", "dataset": "dataset", "tool": "tool", "draws": "draws=tune",
               "converged": "converged", "wall_s": "wall s", "compile_s": "compile s",
               "sample_s": "sampling s", "max_rhat": "max R-hat", "min_ess_bulk": "min bulk ESS",
               "ess_per_s": "ESS/s (wall)", "ess_per_sample_s": "ESS/s (sampling)",
               "divergences": "divergences", "max_rel_error": "max rel error",
               "mean_rel_error": "mean rel error", "coverage": "90% coverage",
               "window_max_rel_error": "max rel error (window)",
               "window_coverage": "90% coverage (window)"}
    shown = table[list(columns)].rename(columns=columns)
    print()
    print(shown.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print()
    for line in verdicts(table):
        print(line)

    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "bayes.csv", index=False, float_format="%.4g")
    header = "| " + " | ".join(columns.values()) + " |"
    markdown = [
        "# Bayesian ROAS: engine vs PyMC-Marketing MMM, time to a converged fit\n",
        f"Machine: {machine_line()}.  ",
        (f"Seeds {', '.join(map(str, args.seeds))} (sampler seed of both tools, and seed of "
         f"the simulated data), {CHAINS} chains, nutpie, target_accept {TARGET_ACCEPT}; "
         f"draws = tune doubled from {FIRST_DRAWS} until every ROAS has R-hat < {RHAT} and "
         f"bulk ESS >= {ESS} with no divergences (cap {MAX_DRAWS}). Times are the median of "
         f"{args.repeats} converged fit(s), after one untimed 50-draw warm-up fit per tool and "
         "dataset: `wall s` is model build + compile + sampling, `sampling s` "
         "`nutpie.sample` alone. ESS/s is the worst ROAS's bulk ESS over the time. Errors are "
         "|posterior mean - truth| / truth of the ROAS with carryover after the window; "
         "`(window)` columns are PyMC-Marketing's own in-window contributions against the "
         "in-window truth.\n"),
        header, "|" + "---:|---|---|" + "---:|" * (len(columns) - 3),
        *["| " + " | ".join(f"{value:.3g}" if isinstance(value, float) else str(value)
                            for value in values) + " |"
          for values in table[list(columns)].itertuples(index=False)],
        "", "Per-channel relative errors (carryover included) and the draws tried:", "",
        *[f"* {r.dataset}, seed {r.seed}, {r.tool}: errors {r.errors}; tried {r.tried}"
          for r in table.itertuples(index=False)],
        "", *verdicts(table),
    ]
    (args.out / "bayes.md").write_text("\n".join(markdown) + "\n")
    print(f"\nsaved {args.out / 'bayes.csv'} and {args.out / 'bayes.md'}")


if __name__ == "__main__":
    main()
