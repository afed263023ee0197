"""The report's charts: matplotlib ``Figure`` objects drawn from the report's tables, and their
inline SVG.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot), so building a
report leaves no global figure state behind and needs no display. Draw them inside
``matplotlib.rc_context(STYLE)``: rcParams are read when artists are created.
"""

from __future__ import annotations

import io
import re

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from engine.report.markup import escape

# Text stays text in the SVG (searchable, crisp, small); the browser picks the sans-serif font.
STYLE = {
    "svg.fonttype": "none", "font.family": "sans-serif", "font.size": 9.5,
    "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#9aa5b1",
    "axes.labelcolor": "#1f2933", "axes.titlesize": 10.5, "axes.titlelocation": "left",
    "axes.titlecolor": "#1f2933", "xtick.color": "#5f6b7a", "ytick.color": "#5f6b7a",
    "xtick.labelcolor": "#1f2933", "ytick.labelcolor": "#1f2933", "grid.color": "#e3e7ed",
    "grid.linewidth": 0.8, "legend.frameon": False, "legend.fontsize": 9,
    "figure.facecolor": "white", "axes.facecolor": "white",
}
ACCENT = "#2f5d8a"
SOFT = "#b9cde3"
# Distinct, print-safe colours; one per model, in the order the models are listed.
PALETTE = ("#2f5d8a", "#e07b39", "#4a9c6d", "#c4473f", "#8064a8", "#8c6d4f", "#d16ba5",
           "#7f7f7f", "#b5a22e", "#3fa7b5", "#9fb7d6", "#f0b27a", "#66a182", "#e5989b")
WIDTH = 9.0  # inches: the report's content column at SVG's 72 pt per inch


def colours(names) -> dict:
    """One palette colour per name, in order (cycling past the palette's length).

    Examples
    --------
    >>> colours(["markov", "linear"])
    {'markov': '#2f5d8a', 'linear': '#e07b39'}
    """
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def to_svg(figure: Figure, chart_id: str, label: str = "") -> str:
    """The figure as an ``<svg>`` element to inline in HTML.

    The XML prologue, the RDF metadata and the namespace declarations (which HTML does not need)
    are dropped; the element ids inside are salted with ``chart_id``, so that several charts on
    one page never share an id and a chart of the same data is written byte for byte the same.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> figure = Figure(figsize=(2, 1))
    >>> _ = figure.subplots().plot([0, 1], [1, 0])
    >>> svg = to_svg(figure, "chart-demo", "a line")
    >>> svg.startswith('<svg role="img" aria-label="a line"'), "http" in svg
    (True, False)
    """
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart_id}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, count=1, flags=re.DOTALL)
    svg = re.sub(r'\s+xmlns(?::\w+)?="[^"]*"', "", svg)
    return svg.replace("<svg", f'<svg role="img" aria-label="{escape(label)}"', 1)


def _thousands(axis) -> None:
    """Tick labels with thousands separators (25,000 rather than 25000), small ones as they
    are (0.5)."""
    axis.set_major_formatter(ticker.FuncFormatter(
        lambda x, _: f"{x:,.0f}" if abs(x) >= 1000 else f"{x:g}"))


def _figure(height: float, width: float = WIDTH) -> tuple[Figure, object]:
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots()


def _errors(values, lower, upper):
    """``xerr`` for bars: distances to the bounds, or None where no bound is known."""
    if lower is None or upper is None:
        return None
    low = np.asarray(lower, dtype=float)
    high = np.asarray(upper, dtype=float)
    if not np.isfinite(low).any():
        return None
    values = np.asarray(values, dtype=float)
    return np.nan_to_num(np.vstack([values - low, high - values]).clip(min=0))


def grouped_bars(values: pd.DataFrame, lower: pd.DataFrame | None = None,
                 upper: pd.DataFrame | None = None, *, xlabel: str, palette: dict,
                 reference: float | None = None) -> Figure:
    """Horizontal bars, one group per row of ``values`` (top to bottom) and one bar per column,
    with interval whiskers where ``lower``/``upper`` are known (not NaN); ``reference`` draws a
    dashed vertical line (break-even).

    Examples
    --------
    >>> import pandas as pd
    >>> wide = pd.DataFrame({"first_touch": [3.0, 1.0], "linear": [2.0, 2.0]}, index=["a", "b"])
    >>> figure = grouped_bars(wide, xlabel="conversions", palette=colours(wide.columns))
    >>> len(figure.axes[0].patches)
    4
    """
    n_rows, n_groups = values.shape
    height = min(40.0, max(2.2, n_rows * (0.065 * n_groups + 0.25) + 0.9 + 0.2 * (n_groups > 5)))
    figure, ax = _figure(height)
    rows = np.arange(n_rows)
    bar = 0.82 / n_groups
    for k, column in enumerate(values.columns):
        xerr = None
        if lower is not None and upper is not None:
            xerr = _errors(values[column], lower[column], upper[column])
        ax.barh(rows - 0.41 + bar * (k + 0.5), values[column].fillna(0.0), height=bar,
                color=palette[column], label=str(column), xerr=xerr,
                error_kw={"ecolor": "#1f2933", "elinewidth": 0.7, "capsize": 1.5})
    if reference is not None:
        ax.axvline(reference, color="#5f6b7a", lw=0.8, ls="--")
    ax.set_yticks(rows, [str(i) for i in values.index])
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    _thousands(ax.xaxis)
    ax.grid(axis="x")
    ax.set_axisbelow(True)
    ax.tick_params(axis="y", length=0)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(n_groups, 5),
              handlelength=1.0, columnspacing=1.2)
    return figure


def interval_bars(labels, values, lower=None, upper=None, *, xlabel: str,
                  colour: str = ACCENT, percent: bool = False) -> Figure:
    """One horizontal bar per label, largest on top, with interval whiskers when known.

    Examples
    --------
    >>> figure = interval_bars(["a", "b"], [0.5, 0.2], [0.4, 0.1], [0.6, 0.3], xlabel="effect")
    >>> [t.get_text() for t in figure.axes[0].get_yticklabels()]
    ['a', 'b']
    """
    frame = pd.DataFrame({"label": [str(x) for x in labels],
                          "value": np.asarray(values, dtype=float),
                          "lower": np.nan if lower is None else np.asarray(lower, dtype=float),
                          "upper": np.nan if upper is None else np.asarray(upper, dtype=float)})
    frame = frame.sort_values("value", ascending=False, kind="stable")
    figure, ax = _figure(max(2.0, 0.3 * len(frame) + 0.9))
    rows = np.arange(len(frame))
    ax.barh(rows, frame["value"], height=0.65, color=colour,
            xerr=_errors(frame["value"], frame["lower"], frame["upper"]),
            error_kw={"ecolor": "#1f2933", "elinewidth": 0.8, "capsize": 2.5})
    ax.set_yticks(rows, frame["label"])
    ax.set_ylim(len(frame) - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    if percent:
        ax.xaxis.set_major_formatter(ticker.PercentFormatter(1.0))
    else:
        _thousands(ax.xaxis)
    ax.grid(axis="x")
    ax.set_axisbelow(True)
    ax.tick_params(axis="y", length=0)
    return figure


def heatmap(matrix: pd.DataFrame, *, label: str) -> Figure:
    """A square matrix of correlations in colour (1 blue, 0 white, -1 red) with each value
    written in its cell; NaN cells are grey and marked with a dash.

    Examples
    --------
    >>> import pandas as pd
    >>> m = pd.DataFrame([[1.0, 0.5], [0.5, 1.0]], index=["a", "b"], columns=["a", "b"])
    >>> sorted(t.get_text() for t in heatmap(m, label="rank correlation").axes[0].texts)
    ['0.50', '0.50', '1.00', '1.00']
    """
    n = len(matrix)
    size = min(8.0, max(3.0, 0.6 * n + 1.6))
    figure, ax = _figure(size, width=size + 0.4)
    values = matrix.to_numpy(dtype=float)
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#e3e7ed")
    # Vector cells (not an image): crisp at any zoom, and cheaper to write than a bitmap.
    ax.pcolormesh(np.ma.masked_invalid(values), cmap=cmap, vmin=-1, vmax=1,
                  edgecolors="white", linewidth=1.5)
    for i in range(n):
        for j in range(n):
            value = values[i, j]
            text = "–" if np.isnan(value) else f"{value:.2f}"
            dark = np.isfinite(value) and abs(value) > 0.6
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center",
                    fontsize=8.5 if n < 10 else 7, color="white" if dark else "#1f2933")
    names = [str(x) for x in matrix.index]
    ax.set_xticks(np.arange(n) + 0.5, names, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(n) + 0.5, names)
    ax.set_xlim(0, n)
    ax.set_ylim(n, 0)
    ax.set_aspect("equal")
    ax.tick_params(length=0)
    ax.set_title(label)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return figure


def path_lengths(table: pd.DataFrame, cap: int = 15, min_journeys: float = 10) -> Figure:
    """Journeys (light) and conversions (dark) by number of touches, the conversion rate as a
    line on the right axis (where at least ``min_journeys`` journeys have that length); lengths
    above ``cap`` are pooled in one bar.

    ``table`` is :func:`engine.kpi.path_length`.

    Examples
    --------
    >>> import engine
    >>> from engine.kpi import path_length
    >>> j = engine.Journeys.from_lists([["a"], ["a", "b"]], conversions=[1, 0], nulls=[20, 12])
    >>> figure = path_lengths(path_length(j))
    >>> [t.get_text() for t in figure.axes[0].get_xticklabels()]
    ['1', '2']
    """
    pooled = table.assign(length=table["length"].clip(upper=cap + 1))
    pooled = pooled.groupby("length", sort=True)[["journeys", "conversions"]].sum()
    labels = [str(x) if x <= cap else f"{cap + 1}+" for x in pooled.index]
    # A rate over a handful of journeys is noise that would dominate the line's scale.
    journeys = pooled["journeys"].to_numpy()
    rate = np.divide(pooled["conversions"].to_numpy(), journeys,
                     out=np.full(len(pooled), np.nan), where=journeys >= min_journeys)
    figure, ax = _figure(3.4)
    where = np.arange(len(pooled))
    ax.bar(where, pooled["journeys"], width=0.75, color=SOFT, label="journeys")
    ax.bar(where, pooled["conversions"], width=0.45, color=ACCENT, label="conversions")
    ax.set_xticks(where, labels)
    ax.set_xlabel("touches in the journey")
    ax.set_ylabel("journeys / conversions")
    _thousands(ax.yaxis)
    ax.grid(axis="y")
    ax.set_axisbelow(True)
    right = ax.twinx()
    right.plot(where, rate, color="#e07b39", marker="o", ms=3.5, lw=1.5,
               label="conversion rate")
    right.yaxis.set_major_formatter(ticker.PercentFormatter(1.0))
    shown = rate[np.isfinite(rate)]
    right.set_ylim(0, max(0.05, float(shown.max(initial=0.0)) * 1.15))
    right.spines["right"].set_visible(True)
    right.set_ylabel("conversion rate")
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="lower left",
              bbox_to_anchor=(0.0, 1.0), ncols=3)
    return figure


def time_to_convert(days: np.ndarray, weights: np.ndarray) -> Figure:
    """Histogram of days from first touch to conversion, weighted by conversions, with the
    median marked.

    Examples
    --------
    >>> import numpy as np
    >>> figure = time_to_convert(np.array([0.5, 2.0, 9.0]), np.array([1.0, 2.0, 1.0]))
    >>> figure.axes[0].texts[0].get_text()
    'median 2.0 days'
    """
    figure, ax = _figure(3.0)
    top = float(np.ceil(days.max())) if len(days) else 1.0
    step = max(1.0, np.ceil(top / 40))
    bins = np.arange(0.0, top + step, step)
    ax.hist(days, bins=bins, weights=weights, color=ACCENT, edgecolor="white", linewidth=0.5)
    if len(days):
        order = np.argsort(days)
        cumulative = np.cumsum(weights[order])
        median = float(days[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
        ax.axvline(median, color="#e07b39", lw=1.5, ls="--")
        ax.annotate(f"median {median:.1f} days", (median, 1), xycoords=("data", "axes fraction"),
                    xytext=(4, -4), textcoords="offset points", va="top", color="#e07b39")
    ax.set_xlabel("days from the first touch to the conversion")
    ax.set_ylabel("conversions")
    ax.grid(axis="y")
    ax.set_axisbelow(True)
    return figure


def roas(table: pd.DataFrame, *, outcome: str) -> Figure:
    """ROAS bars with their intervals and marginal ROAS as diamonds with theirs, per channel;
    break-even (1) dashed when the outcome is revenue.

    ``table`` is :attr:`engine.models.bayes.BayesianROAS.roas_`.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"channel": ["tv", "search"], "roas": [0.8, 2.5],
    ...                       "roas_lower": [0.5, 2.0], "roas_upper": [1.1, 3.0],
    ...                       "mroas": [0.4, 1.5], "mroas_lower": [0.2, 1.0],
    ...                       "mroas_upper": [0.6, 2.0]})
    >>> [t.get_text() for t in roas(table, outcome="revenue").axes[0].get_yticklabels()]
    ['search', 'tv']
    """
    frame = table.sort_values("roas", ascending=False, kind="stable")
    figure, ax = _figure(max(2.2, 0.45 * len(frame) + 1.1))
    rows = np.arange(len(frame))
    ax.barh(rows, frame["roas"], height=0.55, color=ACCENT, label="ROAS",
            xerr=_errors(frame["roas"], frame["roas_lower"], frame["roas_upper"]),
            error_kw={"ecolor": "#1f2933", "elinewidth": 0.8, "capsize": 2.5})
    ax.errorbar(frame["mroas"], rows + 0.3,
                xerr=_errors(frame["mroas"], frame["mroas_lower"], frame["mroas_upper"]),
                fmt="D", ms=4.5, color="#e07b39", elinewidth=0.8, capsize=2,
                label="marginal ROAS (next unit of spend)")
    if outcome == "revenue":
        ax.axvline(1.0, color="#5f6b7a", lw=0.8, ls="--")
    ax.set_yticks(rows, [str(c) for c in frame["channel"]])
    ax.set_ylim(len(frame) - 0.4, -0.6)
    ax.set_xlabel(f"{outcome} per unit of spend")
    ax.grid(axis="x")
    ax.set_axisbelow(True)
    ax.tick_params(axis="y", length=0)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2)
    return figure


def drawn(plot, height: float, width: float = WIDTH, *, thousands: bool = False,
          **kwargs) -> Figure:
    """A figure drawn by a model's ``plot_*(ax=...)`` method (``thousands``: separate the
    thousands of the y axis).

    Examples
    --------
    >>> def plot(ax):
    ...     ax.plot([0, 1], [0, 5000])
    >>> figure = drawn(plot, 2.0, thousands=True)
    >>> figure.axes[0].yaxis.get_major_formatter()(5000, 0)
    '5,000'
    """
    figure, ax = _figure(height, width)
    plot(ax=ax, **kwargs)
    if thousands:
        _thousands(ax.yaxis)
    return figure
