"""Score attribution models against the simulator's ground truth.

For every scenario and replicate, :func:`run_bench` simulates a world (``engine.simulate``),
reads its event log into journeys with :func:`engine.read_events` (the same path users' data
takes), fits every model, and scores its credit against the truth:

* ``nmae``: normalised mean absolute error of the channels' credit shares against the shares of
  the true incremental Shapley credit (``truth.shapley_conversions``; for the ROAS model, of
  revenue: ``truth.shapley_value``): ``sum |share - true share| / sum true share``. 0 is
  perfect; 2 is the most two sets of shares can differ.
* ``nmae_removal``: the same against the shares of the true removal effects
  (``incremental_conversions``, or ``incremental_value``).
* ``rank_corr``: Spearman correlation of the model's credit with the true Shapley credit (for
  the ROAS model: its ROAS with the true ROAS); NaN when either is constant.
* ``coverage``: for models with intervals, the share of channels whose interval covers the
  truth (credit-share intervals against the true share; the ROAS model's ROAS interval against
  the true ROAS); NaN for deterministic models.
* ``seconds``: fitting and attributing (or sampling), wall clock.

A researcher's own model is scored the same way: subclass
:class:`engine.models.AttributionModel` with a ``name`` (which registers it, so ``"all"``
includes it) or pass an instance in ``models``.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from engine._atomic import atomic_path
from engine.errors import EngineError, MissingDataError

#: Columns of the table :func:`run_bench` returns.
COLUMNS = ["scenario", "model", "replicate", "nmae", "nmae_removal", "rank_corr", "coverage",
           "seconds", "status", "channels", "persons", "seed"]
#: Name of the aggregate Bayesian ROAS model in the table.
ROAS_MODEL = "bayes_roas"


def shares(credit) -> np.ndarray:
    """Credit as shares of its total (all zeros when the total is not positive)."""
    credit = np.asarray(credit, dtype=float)
    total = credit.sum()
    return credit / total if total > 0 else np.zeros_like(credit)


def nmae(estimate, truth) -> float:
    """``sum |shares(estimate) - shares(truth)| / sum shares(truth)``.

    Examples
    --------
    >>> nmae([1, 1, 2], [1, 1, 2]), nmae([2, 0], [0, 2])
    (0.0, 2.0)
    """
    return float(np.abs(shares(estimate) - shares(truth)).sum())


def rank_correlation(estimate, truth) -> float:
    """Spearman's rank correlation, NaN when either side is constant."""
    from scipy.stats import spearmanr

    estimate, truth = np.asarray(estimate, dtype=float), np.asarray(truth, dtype=float)
    if len(estimate) < 2 or np.ptp(estimate) == 0 or np.ptp(truth) == 0:
        return float("nan")
    return float(spearmanr(estimate, truth).statistic)


def score(table: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Scores of one model's attribution table (``Attribution.table``) against ``truth``.

    Channels the model does not credit count as zero; channels only the model knows (not in
    the world) are ignored.
    """
    credit = table.set_index("channel").reindex(truth["channel"])
    conversions = credit["conversions"].fillna(0.0).to_numpy(dtype=float)
    target = truth["shapley_conversions"].to_numpy(dtype=float)
    result = {"nmae": nmae(conversions, target),
              "nmae_removal": nmae(conversions, truth["incremental_conversions"]),
              "rank_corr": rank_correlation(conversions, target), "coverage": float("nan")}
    lower = credit["conversions_lower"].to_numpy(dtype=float)
    upper = credit["conversions_upper"].to_numpy(dtype=float)
    known = np.isfinite(lower) & np.isfinite(upper)
    if known.any() and conversions.sum() > 0:
        true_share = shares(target)[known]
        total = conversions.sum()
        result["coverage"] = float(np.mean((lower[known] / total <= true_share + 1e-12)
                                           & (true_share <= upper[known] / total + 1e-12)))
    return result


def score_roas(roas: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Scores of the Bayesian ROAS model's table (``BayesianROAS.roas_``) against ``truth``,
    over the channels it modelled (those with spend)."""
    fitted = roas.set_index("channel")
    rows = truth[truth["channel"].isin(fitted.index)].set_index("channel")
    fitted = fitted.loc[rows.index]
    true_roas = rows["roas"].to_numpy(dtype=float)
    inside = (fitted["roas_lower"] <= true_roas) & (true_roas <= fitted["roas_upper"])
    return {"nmae": nmae(fitted["value"], rows["shapley_value"]),
            "nmae_removal": nmae(fitted["value"], rows["incremental_value"]),
            "rank_corr": rank_correlation(fitted["roas"], true_roas),
            "coverage": float(inside.mean())}


def _seed(base: int, scenario_index: int, replicate: int) -> int:
    """A distinct, reproducible world seed per scenario and replicate."""
    sequence = np.random.SeedSequence([int(base), scenario_index, replicate])
    return int(sequence.generate_state(1)[0])


def _models(models) -> list:
    from engine.compare import resolve_models

    return resolve_models(models)


def _seeded(model, seed: int):
    """A fresh copy of ``model`` with its ``rng`` set to ``seed`` when it has one left unset."""
    fresh = type(model)(**model.get_params())
    params = fresh.get_params()
    if "rng" in params and params["rng"] is None:
        fresh.set_params(rng=seed)
    return fresh


def run_bench(scenarios="all", *, models="all", replicates: int = 3, persons: int = 20_000,
              weeks: int = 52, seed: int = 0, roas: bool = False, roas_options=None,
              on_step: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run ``models`` on every scenario over ``replicates`` simulated worlds; one row per
    scenario, model and replicate (columns :data:`COLUMNS`).

    Parameters
    ----------
    scenarios : str, list of str or World
        Scenario names (``"all"``: every named scenario) or :class:`engine.simulate.World`
        objects (their ``name`` names them in the table).
    models : "all", or list of names / model instances
        Journey models; ``"all"`` is every registered model with default parameters.
    replicates : int
        Worlds per scenario, each with its own seed derived from ``seed``.
    persons, weeks : int
        Size of each named scenario's world.
    roas : bool
        Also fit the Bayesian ROAS model on each world's weekly spend and revenue (slow: NUTS).
    roas_options : dict, optional
        Keyword arguments for :class:`engine.models.bayes.BayesianROAS` (draws, chains, ...).
    on_step : callable, optional
        Called with a short description before each step (progress reporting).

    Returns
    -------
    pandas.DataFrame
        ``status`` is ``ok``, ``skipped: <reason>`` (the journeys lack what the model needs,
        e.g. milestones outside the ``b2b`` scenario) or ``failed: <error>``; metrics are NaN
        unless ``ok``.

    Examples
    --------
    >>> table = run_bench("markov_world", models=["markov", "first_touch"], replicates=1,
    ...                   persons=3000)
    >>> table["model"].tolist(), table["status"].tolist()
    (['markov', 'first_touch'], ['ok', 'ok'])
    >>> bool(table["nmae"].iloc[0] < table["nmae"].iloc[1])   # the right model wins here
    True
    """
    from engine.simulate import SCENARIOS, World, scenario, simulate

    if isinstance(scenarios, (str, World)):
        scenarios = [scenarios]
    worlds = []
    for item in scenarios:
        if isinstance(item, World):
            worlds.append(item)
        elif str(item).strip().lower() == "all":
            worlds.extend(scenario(name, persons=persons, weeks=weeks) for name in SCENARIOS)
        else:
            worlds.append(scenario(str(item), persons=persons, weeks=weeks))
    if not worlds:
        raise EngineError("bench: no scenario given")
    if not (isinstance(replicates, (int, np.integer)) and replicates >= 1):
        raise EngineError(f"bench: replicates must be a positive integer, not {replicates!r}")
    chosen = _models(models)
    if not chosen and not roas:
        raise EngineError("bench: no model given")
    step = on_step or (lambda message: None)
    rows = []
    for index, world in enumerate(worlds):
        for replicate in range(int(replicates)):
            world_seed = _seed(seed, index, replicate)
            step(f"{world.name} #{replicate}: simulating")
            sim = simulate(world, seed=world_seed)
            journeys = sim.journeys()
            base = {"scenario": world.name, "replicate": replicate,
                    "channels": len(world.channels), "persons": world.persons,
                    "seed": world_seed}
            for model in chosen:
                label = _label(model)
                step(f"{world.name} #{replicate}: {label}")
                rows.append({**base, "model": label,
                             **_run_model(_seeded(model, world_seed), journeys, sim.truth)})
            if roas:
                step(f"{world.name} #{replicate}: {ROAS_MODEL}")
                rows.append({**base, "model": ROAS_MODEL,
                             **_run_roas(sim, world_seed, roas_options or {})})
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def _label(model) -> str:
    """The model's registered name, or its class name in snake_case for an unregistered one."""
    if model.name:
        return model.name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(model).__name__).lower()


def _blank(status: str) -> dict:
    nan = float("nan")
    return {"nmae": nan, "nmae_removal": nan, "rank_corr": nan, "coverage": nan,
            "seconds": nan, "status": status}


def _run_model(model, journeys, truth) -> dict:
    began = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = model.fit(journeys).attribute().table
    except MissingDataError as exc:
        return _blank(f"skipped: {str(exc).split(';')[0]}")
    except Exception as exc:  # a researcher's model failing must not stop the run
        return _blank(f"failed: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - began
    return {**score(table, truth), "seconds": seconds, "status": "ok"}


def _run_roas(sim, seed: int, options: dict) -> dict:
    from engine.models.bayes import BayesianROAS

    weekly = sim.weekly
    channels = [c for c in sim.world.channel_names if weekly[c].sum() > 0]
    settings = {"draws": 500, "tune": 500, "chains": 2, "rng": seed, "progress": False,
                **options}
    began = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = BayesianROAS(**settings).fit(weekly, date="date", target="revenue",
                                                 channels=channels)
    except Exception as exc:
        return _blank(f"failed: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - began
    return {**score_roas(model.roas_, sim.truth), "seconds": seconds, "status": "ok"}


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric per scenario and model over the replicates that ran (``runs``)."""
    ok = table[table["status"] == "ok"]
    metrics = ["nmae", "nmae_removal", "rank_corr", "coverage", "seconds"]
    out = ok.groupby(["scenario", "model"], sort=False)[metrics].mean()
    out.insert(0, "runs", ok.groupby(["scenario", "model"], sort=False).size())
    return out.reset_index().sort_values(["scenario", "nmae"], kind="stable",
                                         ignore_index=True)


def plot_bench(table: pd.DataFrame, path=None, metric: str = "nmae"):
    """One panel per scenario: each model's ``metric`` over the replicates (points) and their
    mean (bar), models sorted best first. Saved to ``path`` when given; returns the figure."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ok = table[(table["status"] == "ok") & table[metric].notna()]
    if ok.empty:
        raise EngineError(f"bench: nothing to plot (no successful run with {metric})")
    names = list(dict.fromkeys(ok["scenario"]))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.0), squeeze=False,
                             sharex=True)
    for ax, name in zip(axes[0], names):
        part = ok[ok["scenario"] == name]
        order = part.groupby("model")[metric].mean().sort_values()
        ypos = np.arange(len(order))
        ax.barh(ypos, order.to_numpy(), color="#9ecae1")
        for y, model in zip(ypos, order.index):
            values = part.loc[part["model"] == model, metric].to_numpy()
            ax.plot(values, np.full(len(values), y), "o", color="#08519c", markersize=3)
        ax.set_yticks(ypos, order.index)
        ax.invert_yaxis()
        ax.set_title(name)
        ax.set_xlabel(metric + (" (lower is better)" if metric.startswith("nmae") else ""))
    fig.tight_layout()
    if path is not None:
        with atomic_path(path) as partial:
            fig.savefig(partial, dpi=120)
    return fig
