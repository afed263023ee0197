"""Assemble the report: one self-contained HTML page from journeys, models, spend and a fitted
Bayesian ROAS model."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from functools import partial
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

import engine
from engine import kpi
from engine._atomic import atomic_path
from engine.compare import compare
from engine.errors import EngineError
from engine.journeys import Journeys
from engine.models import REGISTRY, AttributionModel, Markov, Shapley, get_model
from engine.report import charts
from engine.report.markup import (
    STYLESHEET,
    count,
    escape,
    figure,
    money,
    note,
    number,
    percent,
    section,
    table,
    tiles,
)

# Seed of the models the report builds by name, so that a report repeats exactly.
SEED = 0
# Transitions rarer than this are left out of the Markov graph: they would hide the main flows.
GRAPH_MIN_PROBABILITY = 0.1
# Section ids (the page's anchors) and headings, in page order.
HEADINGS = {"summary": "Data summary", "credit": "Credit by model",
            "agreement": "Do the models agree?", "markov": "Markov chain",
            "shapley": "Shapley values", "kpis": "Cost and return per channel",
            "roas": "Bayesian ROAS", "guide": "How to read each model"}

# What each model family means, for the reader who does not know the models.
GUIDE = {
    "Rule-based models (first touch, last touch, last non-direct, linear, position based, time "
    "decay, W-shaped, full path)": (
        "Each conversion is split over the touches of its journey by a fixed rule: all to the "
        "first or the last touch, equal parts to every touch, more to the first and last "
        "touches, or more to recent touches. They are simple and transparent, but the rule is "
        "chosen, not learned from the data, so they show where credit lands under that rule "
        "rather than what each channel caused. Comparing first and last touch shows which "
        "channels open journeys and which close them."),
    "Markov removal effect": (
        "The journeys are treated as walks between channels that end in a conversion or not. A "
        "channel's removal effect is the share of conversions that would be lost if every "
        "journey through that channel stopped there. Conversions are split in proportion to the "
        "removal effects, so a channel gets credit for the paths it keeps alive, wherever it "
        "sits. The intervals show how much the estimate could move with the amount of data "
        "available."),
    "Shapley values": (
        "Channels are seen as players of a team who share the conversions. Each channel gets its "
        "average extra contribution over all the orders in which the team could have been "
        "assembled, which makes the split fair in a precise sense: channels that always appear "
        "together share equally, a channel that adds nothing gets nothing. Like every model on "
        "observed journeys it measures association, not a controlled experiment."),
    "Fractribution": (
        "Google's path-level model (often sold as \"Shapley\"): for every path it compares the "
        "conversion rate of the path with the rate of the same path without each channel, and "
        "splits the path's conversions by those leave-one-out differences. Channels whose "
        "removal hurts the conversion rate the most get the most credit."),
    "Incremental (Bayesian conversion model)": (
        "A model of how likely a journey is to convert given its touches, with a baseline for "
        "people who would have converted anyway, fitted with uncertainty. Each conversion is "
        "split between the baseline and the channels by how much each channel raised that "
        "journey's chance to convert (a Shapley split of the counterfactual: the same journey "
        "without the channel). So a channel that appears often but changes nothing gets "
        "little, and the (baseline) row shows the conversions no channel caused. Like every "
        "model on observed journeys it cannot see a confounder: a channel aimed at people who "
        "were going to buy anyway still looks effective."),
    "Bayesian ROAS and mROAS": (
        "A media-mix model fitted to spend and results over time (no journeys needed), with "
        "carry-over and diminishing returns. ROAS is the revenue (or conversions) a channel "
        "brought per unit spent over the whole period; marginal ROAS (mROAS) is what the next "
        "unit would bring at the current level of spend. When mROAS is well below ROAS the "
        "channel is saturating: extra budget does more elsewhere. The ranges are credible "
        "intervals (90 % by default): given the model and the data, the true value lies inside "
        "with that probability."),
}


def build_report(journeys: Journeys, *, models="all", spend=None, roas_model=None,
                 title: str | None = None, source: str | None = None,
                 on_step: Callable[[str], None] | None = None) -> str:
    """A self-contained HTML report of the journeys and every model's credit.

    The page needs nothing else to open (no script, no web font, no image file): charts are
    inline SVG, the stylesheet is inline. Sections: data summary (key figures, rejected rows,
    path lengths, time to convert, top paths), credit of every model side by side, agreement
    between the models, Markov transitions and removal effects, Shapley values, cost and return
    per channel (with ``spend``), Bayesian ROAS (with ``roas_model``), how to read each model.

    Parameters
    ----------
    journeys : Journeys
    models : "all", str, AttributionModel or iterable of them
        Models to compare (registered names or instances). Models the journeys cannot support
        (e.g. ``time_decay`` on a path table) are listed with the reason instead. Instances are
        fitted on copies; models built from names get ``rng=0`` so reports repeat exactly.
    spend : str, pathlib.Path, pandas.DataFrame or pyarrow.Table, optional
        Spend per channel and date (:func:`engine.kpi.read_spend`): adds cost per order, cost
        per lead and ROAS per channel.
    roas_model : engine.models.bayes.BayesianROAS, optional
        A fitted (or loaded) model: adds its ROAS table, fit and response curves.
    title : str, optional
        Page title (default: "Attribution report").
    source : str, optional
        Name of the input shown in the report (default: the file the journeys were read from).
    on_step : callable, optional
        Called with a short description before each section (progress reporting).

    Returns
    -------
    str
        The HTML document.

    Raises
    ------
    EngineError
        ``journeys`` is not :class:`engine.Journeys`, an unknown model, an unfitted
        ``roas_model``; :class:`engine.InputError` for a bad spend table.

    Examples
    --------
    >>> import engine
    >>> from engine.report import build_report
    >>> j = engine.Journeys.from_lists([["search", "email"], ["email"], ["display", "search"]],
    ...                                conversions=[2, 1, 0], value=[50.0, 20.0, 0.0],
    ...                                nulls=[1, 2, 3])
    >>> page = build_report(j, models=["last_touch", "linear"], title="Demo")
    >>> page.startswith("<!DOCTYPE html>"), 'id="chart-credit"' in page
    (True, True)
    """
    if not isinstance(journeys, Journeys):
        raise EngineError(f"build_report expects engine.Journeys, got "
                          f"{type(journeys).__name__}; use engine.read_paths or "
                          "engine.read_events")
    if roas_model is not None and not hasattr(roas_model, "roas_"):
        raise EngineError("roas_model is not fitted; fit it (or BayesianROAS.load a saved one) "
                          "before building the report")
    step = on_step or (lambda description: None)
    resolved = _resolve(models)
    spent = None if spend is None else kpi.read_spend(spend)
    report = journeys.report
    source = source or (report.source if report is not None else "journeys")
    title = title or "Attribution report"
    generated = datetime.datetime.now(datetime.UTC)

    sections = {}
    with matplotlib.rc_context(charts.STYLE):
        step("data summary")
        sections["summary"] = _summary(journeys)
        credit = _compare(resolved, journeys, step)
        palette = charts.colours(dict.fromkeys(credit["model"]))
        sections["credit"] = _credit(credit, palette)
        sections["agreement"] = _agreement(credit)
        step("markov")
        sections["markov"] = _markov(journeys)
        step("shapley")
        sections["shapley"] = _shapley(journeys)
        if spent is not None:
            step("cost and return")
            runnable = [model for model in resolved if model.name in palette]
            sections["kpis"] = _kpis(journeys, spent, runnable, palette)
        if roas_model is not None:
            step("bayesian roas")
            journey_model = next((m for m in resolved if m.name == "incremental"
                                  and hasattr(m, "draws_")), None)
            sections["roas"] = _roas(roas_model, journey_model, spent)
    sections["guide"] = _guide()
    return _page(title, source, generated, journeys, sections)


def write_report(path, journeys: Journeys, **options) -> Path:
    """Build the report (:func:`build_report`, same options) and write it to ``path``.

    The page is written to a temporary file in the same folder and renamed into place, so a
    failure never leaves a partial report (nor replaces an older one with one).

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import engine, pathlib, tempfile
    >>> from engine.report import write_report
    >>> j = engine.Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 1], nulls=[1, 2])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     out = write_report(pathlib.Path(folder) / "report.html", j, models=["linear"])
    ...     out.read_text(encoding="utf-8").rstrip().endswith("</html>")
    True
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise EngineError(f"{path}: the folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise EngineError(f"{path}: is a folder, not a file")
    page = build_report(journeys, **options)
    with atomic_path(path) as partial:
        partial.write_text(page, encoding="utf-8")
    return path


# -- models ---------------------------------------------------------------------------------

def _resolve(models) -> list[AttributionModel]:
    """Fresh model instances: copies of the given instances, named models seeded."""
    if isinstance(models, (str, AttributionModel)):
        models = [models]
    names, resolved = [], []
    for model in models:
        if isinstance(model, AttributionModel):
            resolved.append(type(model)(**model.get_params()))
        elif str(model).strip().lower() == "all":
            names.extend(sorted(REGISTRY))
        else:
            names.append(get_model(model).name)
    for name in dict.fromkeys(names):
        model = get_model(name)
        if getattr(model, "rng", SEED) is None:
            model.set_params(rng=SEED)
        resolved.append(model)
    return resolved


def _compare(models: list[AttributionModel], journeys: Journeys, step) -> pd.DataFrame:
    """:func:`engine.compare` one model at a time, so that a model these journeys cannot
    support (too few channels, no conversions, no touch times...) is listed with its reason in
    ``attrs["skipped"]`` instead of stopping the report."""
    tables, skipped = [], {}
    for model in models:
        step(f"fitting {model.name}")
        try:
            table_ = compare([model], journeys, skip_unsupported=True)
        except EngineError as exc:
            skipped[model.name] = str(exc)
            continue
        skipped.update(table_.attrs["skipped"])
        if len(table_):
            tables.append(table_)
    credit = pd.concat(tables, ignore_index=True) if tables else compare([], journeys)
    credit.attrs["skipped"] = skipped
    return credit


# -- sections -------------------------------------------------------------------------------
# Each returns (explanation, body): a plain-language paragraph (HTML) and the section's content.

def _summary(journeys: Journeys) -> tuple[str, str]:
    counts = journeys.conversions + journeys.nulls
    total = float(counts.sum())
    conversions = journeys.total_conversions
    parts = [tiles([
        ("journeys", number(total)), ("conversions", number(conversions)),
        ("conversion rate", percent(conversions / total) if total else "–"),
        ("value", money(journeys.total_value)),
        ("touches", number(float(journeys.lengths @ counts))),
        ("channels", number(journeys.n_channels)),
    ])]
    if journeys.n_journeys != total:
        parts.append(f'<p class="explain">{number(journeys.n_journeys)} distinct journey rows '
                     f"stand for these {number(total)} journeys.</p>")
    parts.append(_rows(journeys.report))

    lengths = kpi.path_length(journeys)
    parts.append("<h3>How long are the journeys?</h3>"
                 '<p class="explain">Number of touches before a journey converted or ended. '
                 "Bars count journeys (light) and conversions (dark); the line is the share of "
                 "journeys of that length that converted. On average a conversion took "
                 f"{number(lengths.attrs['mean_length_converting'])} touches.</p>")
    parts.append(figure("chart-path-length", charts.to_svg(
        charts.path_lengths(lengths), "chart-path-length", "journeys by number of touches")))
    if journeys.ages is not None:
        parts.append(_time_to_convert(journeys))

    parts.append("<h3>Top paths</h3>"
                 '<p class="explain">The ten sequences of channels that brought the most '
                 "conversions.</p>")
    parts.append(table(kpi.top_paths(journeys, n=10),
                       {"journeys": count, "conversions": count, "conversion_rate": percent,
                        "value": money},
                       labels={"conversion_rate": "conversion rate"}, css_id="table-top-paths"))
    explanation = ("What the data holds: the journeys (sequences of marketing touches of one "
                   "person, ending in a conversion or not), how many converted, and what they "
                   "were worth. Every model below divides these same conversions between the "
                   "channels.")
    return explanation, "".join(parts)


def _rows(report) -> str:
    """How the input rows were used: tiles, and the reasons rows were left out."""
    if report is None:
        return ""
    parts = ["<h3>Input rows</h3>", tiles([("rows read", number(report.n_rows)),
                                           ("rows used", number(report.n_used)),
                                           ("rows not used", number(report.n_rejected))])]
    if report.n_rejected:
        parts.append('<p class="explain">Rows that could not be used, by reason, with the first '
                     "row where each happened (to look it up in the file).</p>")
        parts.append(table(report.table, {"first_row": lambda x: number(x, digits=0)},
                           labels={"first_row": "first row"}, css_id="table-rejected"))
    else:
        parts.append('<p class="explain">Every input row went into the journeys.</p>')
    if report.notes:
        items = "".join(f"<li>{escape(text)}</li>" for text in report.notes)
        parts.append(f'<ul class="reasons">{items}</ul>')
    return "".join(parts)


def _time_to_convert(journeys: Journeys) -> str:
    # A touch's age is days before its journey's end, so the oldest touch of a converting
    # journey measures the time from its first touch to the conversion.
    converting = journeys.conversions > 0
    oldest = np.maximum.reduceat(journeys.ages, journeys.offsets[:-1])
    days, weights = oldest[converting], journeys.conversions[converting]
    parts = [("<h3>How long does it take to convert?</h3>"
              '<p class="explain">Days from the first touch of a journey (within the lookback '
              "window) to its conversion. A long tail means many conversions need weeks of "
              "nurturing; credit for the first touches matters for them.</p>")]
    if not len(days):
        return parts[0] + note("No journey converted: there is no time to convert.")
    parts.append(figure("chart-time-to-convert", charts.to_svg(
        charts.time_to_convert(days, weights), "chart-time-to-convert",
        "conversions by days to convert")))
    if journeys.start is not None and journeys.end is not None:
        parts.append(table(kpi.time_to_convert(journeys),
                           {"conversions": count, "mean_days": lambda x: number(x, 1),
                            "median_days": lambda x: number(x, 1)},
                           labels={"channel": "first touch", "mean_days": "mean days",
                                   "median_days": "median days"},
                           caption="By the channel of the first touch",
                           css_id="table-time-to-convert"))
    return "".join(parts)


def _credit(credit: pd.DataFrame, palette: dict) -> tuple[str, str]:
    explanation = ("Each model splits the same conversions between the channels in its own way; "
                   "a column adds up to the total conversions. Where models differ, the "
                   "channel's role depends on the assumption you make about how marketing works "
                   '(see <a href="#guide">How to read each model</a>). Whiskers and the small '
                   "ranges are the intervals (90 % by default) of the models that estimate "
                   "their own uncertainty.")
    parts = []
    if credit.empty:
        parts.append(note("None of the models could run on these journeys."))
    else:
        wide, lower, upper = _wide(credit, "conversions")
        parts.append(figure("chart-credit", charts.to_svg(
            charts.grouped_bars(wide, lower, upper, xlabel="attributed conversions",
                                palette=palette),
            "chart-credit", "attributed conversions per channel and model")))
        cells = pd.DataFrame({"channel": wide.index})
        for model in wide.columns:
            cells[model] = [_with_interval(v, lo, hi, count) for v, lo, hi in
                            zip(wide[model], lower[model], upper[model])]
        totals = ["total"] + [count(wide[model].sum()) for model in wide.columns]
        parts.append(table(cells, dict.fromkeys(wide.columns, str), right=wide.columns,
                           footer=totals, css_id="table-credit"))
    skipped = credit.attrs.get("skipped", {})
    if skipped:
        items = "".join(f"<li><code>{escape(name)}</code>: {escape(reason)}</li>"
                        for name, reason in skipped.items())
        parts.append("<h3>Models not run</h3>"
                     '<p class="explain">These models cannot run on this data, most often '
                     "because they need information it does not carry.</p>"
                     f'<ul class="reasons" id="skipped-models">{items}</ul>')
    return explanation, "".join(parts)


def _wide(credit: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, ...]:
    """``metric`` and its bounds as channel x model tables, channels by mean credit."""
    models = list(dict.fromkeys(credit["model"]))
    frames = [credit.pivot(index="channel", columns="model", values=column)[models]
              for column in (metric, f"{metric}_lower", f"{metric}_upper")]
    order = frames[0].mean(axis=1).sort_values(ascending=False, kind="stable").index
    return tuple(frame.loc[order].rename_axis(index=None, columns=None) for frame in frames)


def _with_interval(value, lower, upper, shown=number) -> str:
    """A cell: the value, and below it the interval when one is known."""
    text = shown(value)
    if np.isfinite(lower) and np.isfinite(upper):
        text += f"<small>{shown(lower)}–{shown(upper)}</small>"
    return text


def _agreement(credit: pd.DataFrame) -> tuple[str, str]:
    explanation = ("How similarly two models rank the channels (Spearman rank correlation of "
                   "their credit): 1 means the same order from most to least credited, 0 no "
                   "relation, negative an opposite order. Channels that all models rank alike "
                   "can be judged with confidence; where models disagree, test before moving "
                   "budget.")
    models = list(dict.fromkeys(credit["model"]))
    if len(models) < 2 or credit["channel"].nunique() < 3:
        return explanation, note("Agreement needs at least two models and three channels.")
    wide = credit.pivot(index="channel", columns="model", values="conversions")[models]
    matrix = wide.corr(method="spearman").rename_axis(index=None, columns=None)
    parts = [figure("chart-agreement", charts.to_svg(
        charts.heatmap(matrix, label="rank correlation"), "chart-agreement",
        "rank correlation of the models' credit"))]
    pairs = matrix.where(np.triu(np.ones(matrix.shape, dtype=bool), k=1)).stack()
    if len(pairs):
        (first, second), lowest = pairs.idxmin(), pairs.min()
        parts.append(f'<p class="explain">Least alike: <strong>{escape(first)}</strong> and '
                     f"<strong>{escape(second)}</strong> (rank correlation {lowest:.2f}); "
                     f"average over all pairs {pairs.mean():.2f}.</p>")
    return explanation, "".join(parts)


def _markov(journeys: Journeys) -> tuple[str, str]:
    explanation = ("The journeys as a map of moves between channels (a first-order Markov "
                   "chain): from the start, to a channel, to another, until a conversion or the "
                   "end without one. A channel's removal effect is the share of conversions that "
                   "would be lost if journeys could not pass through it.")
    try:
        model = Markov(order=1, rng=SEED).fit(journeys)
    except EngineError as exc:
        return explanation, note(f"The Markov chain cannot be fitted to these journeys: {exc}")
    effects = model.removal_effects_.sort_values("removal_effect_conversions",
                                                 ascending=False, kind="stable")
    effect, lower, upper = (effects[f"removal_effect_conversions{end}"]
                            for end in ("", "_lower", "_upper"))
    parts = [(f'<p class="explain">Overall, a journey converts with probability '
              f"{percent(model.conversion_probability_)}. Line width shows how often one step "
              f"follows another; moves taken less than {GRAPH_MIN_PROBABILITY:.0%} of the time "
              "are left out.</p>"),
             figure("chart-markov-graph", charts.to_svg(
                 charts.drawn(model.plot_graph, 6.2, min_probability=GRAPH_MIN_PROBABILITY),
                 "chart-markov-graph", "transition graph"), "Moves between channels"),
             "<h3>Removal effects</h3>",
             figure("chart-removal-effects", charts.to_svg(
                 charts.interval_bars(effects["channel"], effect, lower, upper,
                                      xlabel="conversions lost without the channel",
                                      percent=True),
                 "chart-removal-effects", "removal effect per channel"))]
    credit = model.attribute().table.set_index("channel").loc[effects["channel"]]
    shown = pd.DataFrame({
        "channel": effects["channel"].to_numpy(),
        "removal effect": [_with_interval(v, lo, hi, percent)
                           for v, lo, hi in zip(effect, lower, upper)],
        "conversions": credit["conversions"].to_numpy(),
        "share": credit["share"].to_numpy()})
    parts.append(table(shown, {"removal effect": str, "conversions": count, "share": percent},
                       right=["removal effect"], css_id="table-removal-effects"))
    transitions = model.transition_table().sort_values("count", ascending=False, kind="stable")
    parts.append("<details><summary>All transitions (from, to, how often, probability)"
                 "</summary>"
                 + table(transitions.reset_index(drop=True), {"probability": percent},
                         labels={"from_state": "from", "to_state": "to"},
                         css_id="table-transitions")
                 + "</details>")
    return explanation, "".join(parts)


def _shapley(journeys: Journeys) -> tuple[str, str]:
    explanation = ("Shapley values share each conversion between the channels that worked "
                   "together on it, by each channel's average extra contribution to the group. "
                   "The whiskers are 90 % intervals from resampling the journeys.")
    try:
        frame = Shapley(rng=SEED).fit(journeys).attribute().table
    except EngineError as exc:
        return explanation, note(f"Shapley values cannot be computed for these journeys: {exc}")
    frame = frame.sort_values("conversions", ascending=False, kind="stable")
    parts = [figure("chart-shapley", charts.to_svg(
        charts.interval_bars(frame["channel"], frame["conversions"], frame["conversions_lower"],
                             frame["conversions_upper"], xlabel="attributed conversions"),
        "chart-shapley", "Shapley values per channel"))]
    shown = pd.DataFrame({
        "channel": frame["channel"],
        "conversions": [_with_interval(v, lo, hi, count) for v, lo, hi in zip(
            frame["conversions"], frame["conversions_lower"], frame["conversions_upper"])],
        "share": frame["share"], "value": frame["value"]})
    parts.append(table(shown, {"conversions": str, "share": percent, "value": money},
                       right=["conversions"], css_id="table-shapley"))
    return explanation, "".join(parts)


def _kpis(journeys: Journeys, spent: pd.DataFrame, models: list,
          palette: dict) -> tuple[str, str]:
    explanation = ("Spend per channel against the credit each model gives it. ROAS is revenue "
                   "per unit of spend (above 1 the channel pays for itself under that model); "
                   "cost per order (CPA) is spend per attributed conversion, cost per lead "
                   "(CPL) per attributed lead. The same spend can look cheap under one model "
                   "and expensive under another: that spread is the uncertainty of attribution.")
    kpis = kpi.channel_kpis(journeys, spent, models, skip_unsupported=True)
    if kpis.empty:
        return explanation, note("None of the models could run on these journeys.")
    names = list(dict.fromkeys(kpis["model"]))
    spend = kpis.drop_duplicates("channel").set_index("channel")["spend"]

    def wide(column: str) -> pd.DataFrame:
        return (kpis.pivot(index="channel", columns="model", values=column)[names]
                .rename_axis(index=None, columns=None))

    roas = wide("roas").loc[spend.index[spend.notna()]]
    order = roas.mean(axis=1).sort_values(ascending=False, kind="stable").index
    parts = []
    if len(order):
        parts.append(figure("chart-kpi-roas", charts.to_svg(
            charts.grouped_bars(roas.loc[order], xlabel="ROAS (attributed value per unit of "
                                "spend)", palette=palette, reference=1.0),
            "chart-kpi-roas", "ROAS per channel and model"), "Dashed line: break-even (ROAS 1)"))
    tables = [("roas", "ROAS", lambda x: number(x, 2)),
              ("cost_per_order", "Cost per order (CPA)", money)]
    if kpis["leads"].notna().any():
        tables.append(("cost_per_lead", "Cost per lead (CPL)", money))
    for column, caption, shown in tables:
        frame = wide(column).loc[order]
        frame.insert(0, "spend", spend.loc[order])
        frame.insert(0, "channel", order)
        parts.append(table(frame.reset_index(drop=True),
                           {"spend": money, **dict.fromkeys(names, shown)}, caption=caption,
                           css_id=f"table-kpi-{column.replace('_', '-')}"))
    unmatched = kpis.attrs.get("unmatched_spend_channels", [])
    if unmatched:
        parts.append(note("Spend with no touch in the journeys (so no attributed credit): "
                          f"{', '.join(unmatched)}. Check that channel names match."))
    unpaid = [c for c in spend.index[spend.isna()] if c in journeys.channels]
    if unpaid:
        parts.append('<p class="explain">Channels without spend in the table (organic or not '
                     f"tracked): {escape(', '.join(unpaid))}.</p>")
    return explanation, "".join(parts)


def _roas(model, journey_model=None, spent=None) -> tuple[str, str]:
    outcome, level = model.outcome_, f"{model.ci_level:.0%}"
    roas = model.roas_
    explanation = ("A media-mix model fitted to spend and results over time: how much "
                   f"{escape(outcome)} each channel brought per unit of spend (ROAS), and what "
                   "the next unit of spend would bring (marginal ROAS). Bars and diamonds show "
                   f"the estimates, whiskers their {level} credible intervals.")
    parts = []
    if not getattr(model, "converged_", True):
        parts.append(note("The sampler did not converge (R-hat, effective sample size or "
                          "divergences): treat these numbers as rough and fit with more draws."))
    parts.append(figure("chart-roas", charts.to_svg(
        charts.roas(roas, outcome=outcome), "chart-roas", "ROAS and marginal ROAS")))
    shown = pd.DataFrame({"channel": roas["channel"], "spend": roas["spend"]})
    labels = {"value": f"{outcome} brought", "roas": "ROAS", "mroas": "marginal ROAS"}
    for column, label in labels.items():
        style = money if column == "value" else (lambda x: number(x, 2))
        shown[label] = [_with_interval(v, lo, hi, style) for v, lo, hi in zip(
            roas[column], roas[f"{column}_lower"], roas[f"{column}_upper"])]
    parts.append(table(shown, {"spend": money, **dict.fromkeys(labels.values(), str)},
                       right=labels.values(), caption=f"Estimates with {level} credible "
                       "intervals", css_id="table-roas"))
    parts.append("<h3>Does the model fit?</h3>"
                 '<p class="explain">The observed results (black) against what the model '
                 "predicts (blue, with its range). A good fit follows the ups and downs; "
                 "periods far outside the band point to something the model does not know "
                 "(a promotion, a stock-out).</p>")
    parts.append(figure("chart-roas-fit", charts.to_svg(
        charts.drawn(model.plot_fit, 3.6, thousands=True), "chart-roas-fit",
        "posterior predictive fit")))
    parts.append("<h3>What if spend changed?</h3>"
                 '<p class="explain">Each channel\'s contribution as its spend goes from zero '
                 "to twice the current level (dot), the others unchanged. Where a curve "
                 "flattens, more budget buys little.</p>")
    parts.append(figure("chart-response-curves", charts.to_svg(
        charts.drawn(model.plot_response_curves, 4.2, thousands=True),
        "chart-response-curves", "response curves")))
    if journey_model is not None and spent is not None:
        parts.append(_roas_side_by_side(model, journey_model, spent))
    return explanation, "".join(parts)


def _roas_side_by_side(model, journey_model, spent: pd.DataFrame) -> str:
    """The media-mix ROAS next to the incremental model's ROAS from journeys, per channel
    both know and the spend table prices: two independent estimates of the same quantity."""
    level = f"{model.ci_level:.0%}"
    known = set(journey_model.journeys_.channels)
    spend = spent[spent["channel"].isin(known)].groupby("channel")["spend"].sum()
    journeys = journey_model.roas(spend[spend > 0], outcome=model.outcome_).set_index("channel")
    mix = model.roas_.set_index("channel")
    shared = [c for c in mix.index if c in journeys.index]
    head = ('<h3>Journeys and media mix side by side</h3><p class="explain">The same question '
            "answered twice: the media-mix model from spend and results over time, the "
            "incremental model from who saw what and who converted (its credit per unit of "
            f"the spend table's spend). Intervals are {level}; where they overlap the two "
            "views agree. They can differ when the spend table and the time series cover "
            "different periods.</p>")
    if not shared:
        return head + note("No channel is in both the media-mix model and the journeys (with "
                           "spend): check that channel names match.")
    style = partial(number, digits=2)
    rows = pd.DataFrame({
        "channel": shared,
        "media mix ROAS": [_with_interval(mix.loc[c, "roas"], mix.loc[c, "roas_lower"],
                                          mix.loc[c, "roas_upper"], style) for c in shared],
        "journeys ROAS": [_with_interval(journeys.loc[c, "roas"], journeys.loc[c, "roas_lower"],
                                         journeys.loc[c, "roas_upper"], style) for c in shared],
        "agree": ["yes" if max(mix.loc[c, "roas_lower"], journeys.loc[c, "roas_lower"])
                  <= min(mix.loc[c, "roas_upper"], journeys.loc[c, "roas_upper"]) else "no"
                  for c in shared]})
    return head + table(rows, {"media mix ROAS": str, "journeys ROAS": str, "agree": str},
                        right=["media mix ROAS", "journeys ROAS"],
                        caption="ROAS from the media-mix model and from journeys",
                        css_id="table-roas-agreement")


def _guide() -> tuple[str, str]:
    items = "".join(f"<dt>{escape(name)}</dt><dd>{escape(text)}</dd>"
                    for name, text in GUIDE.items())
    explanation = ("No attribution model observes what would have happened without a channel; "
                   "each answers the question with a different assumption. Read them together: "
                   "where they agree, the answer is robust.")
    return explanation, f'<dl class="guide">{items}</dl>'


# -- page -----------------------------------------------------------------------------------

def _page(title: str, source: str, generated: datetime.datetime, journeys: Journeys,
          sections: dict) -> str:
    stamp = generated.strftime("%Y-%m-%d %H:%M UTC")
    total = float((journeys.conversions + journeys.nulls).sum())
    keys = [key for key in HEADINGS if key in sections]
    contents = "".join(f'<li><a href="#{key}">{escape(HEADINGS[key])}</a></li>' for key in keys)
    body = "".join(section(key, HEADINGS[key], *sections[key]) for key in keys)
    version = escape(engine.__version__)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="attribution-engine {version}">'
        f"<title>{escape(title)}</title>"
        # An empty icon: otherwise the browser asks for /favicon.ico next to the file.
        '<link rel="icon" href="data:,">'
        f"<style>{STYLESHEET}</style></head><body>"
        f'<header class="masthead"><div class="wrap"><h1>{escape(title)}</h1>'
        f"<p>{escape(source)} · {number(total)} journeys · "
        f"{number(journeys.total_conversions)} conversions · generated {stamp}</p>"
        "</div></header>"
        f'<nav class="toc"><ol>{contents}</ol></nav>'
        f'<main class="wrap">{body}</main>'
        f'<footer class="colophon"><div class="wrap">Made with attribution-engine {version} '
        f"on {stamp} from {escape(source)}.</div></footer>"
        "</body></html>\n")
