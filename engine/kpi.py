"""Marketing KPIs per model and channel, from journeys, an optional spend table and attribution.

Every table here is computed with array operations over the CSR touch arrays of
:class:`engine.Journeys` (``bincount``, ``unique``, sorted cumulative sums); Python loops run
only over models.

Counting rules shared by every function:

- A journey row stands for ``conversions + nulls`` journeys, of which ``conversions`` converted:
  each conversion ends its own journey, as in ChannelAttribution's path-table layout and in
  event logs, which are split at every conversion. A row with ``conversions=2, nulls=0`` is
  therefore two converting journeys, and a conversion rate (``conversions / journeys``) always
  lies in [0, 1].
- A ratio whose denominator is zero (or unknown) is NaN, never ``inf`` and never a made-up 0.
- Channel names in a spend table are trimmed and their inner runs of whitespace collapsed to one
  space, as ingestion does for journeys; they are then matched to journey channels exactly
  (case-sensitive).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from engine.compare import resolve_models
from engine.errors import EngineError, InputError, MissingDataError
from engine.ingest.sources import ROW, load_table, require_columns, source_name
from engine.journeys import MILESTONES, Journeys

_TOP_PATHS_BY = ("conversions", "journeys", "value")
_DAY_US = 86_400_000_000


def read_spend(source, *, date: str = "date", channel: str = "channel",
               spend: str = "spend") -> pd.DataFrame:
    """Read a spend table: what was spent on each channel on each date.

    Parameters
    ----------
    source : str, pathlib.Path, pandas.DataFrame or pyarrow.Table
        CSV (optionally ``.gz``) or Parquet file, or a table.
    date, channel, spend : str
        Names of the date, channel and amount columns. Other columns are ignored.

    Returns
    -------
    pandas.DataFrame
        Columns ``date`` (datetime64; time-zone-aware stamps converted to UTC and made naive),
        ``channel`` (str, trimmed, inner whitespace collapsed) and ``spend`` (float), one row per
        input row, in input order.

    Raises
    ------
    InputError
        A missing column, or a row with a missing or unparseable date, a missing or blank
        channel, or a spend that is missing, not a number, NaN, infinite or negative. The
        message names the file, the column and the (1-based data) row.

    Notes
    -----
    Dates are parsed as ISO 8601 first (``2024-03-01``, ``2024-03-01 10:00``,
    ``2024-03-01T10:00+02:00``); values that are not ISO are parsed with pandas' per-value
    inference (``Mar 1 2024``, ``03/01/2024`` as month first).

    Examples
    --------
    >>> import pandas as pd
    >>> from engine.kpi import read_spend
    >>> raw = pd.DataFrame({"date": ["2024-01-01", "2024-01-02"],
    ...                     "channel": ["  paid   search", "email"], "spend": ["100", 20]})
    >>> table = read_spend(raw)
    >>> table["channel"].tolist(), table["spend"].tolist()
    (['paid search', 'email'], [100.0, 20.0])
    >>> str(table["date"].dt.date.iloc[1])
    '2024-01-02'
    """
    name = source_name(source)
    table = load_table(source)
    require_columns(table, {"date": date, "channel": channel, "spend": spend}, name)
    rows = table[ROW].to_numpy()
    return pd.DataFrame({
        "date": _parse_dates(table[date], rows, name, date),
        "channel": _parse_channels(table[channel], rows, name, channel),
        "spend": _parse_amounts(table[spend], rows, name, spend),
    })


def _first_bad(bad: np.ndarray, rows: np.ndarray, message, name: str, column: str) -> None:
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        raise InputError(message(at), source=name, column=column, row=int(rows[at]))


def _parse_dates(values: pa.ChunkedArray, rows, name: str, column: str) -> np.ndarray:
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        raw = values.to_pandas()
    else:
        raw = pc.cast(values, pa.string()).to_pandas().str.strip()
    missing = raw.isna().to_numpy() | (raw.astype(str) == "").to_numpy()
    _first_bad(missing, rows, lambda at: "date is missing", name, column)
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    retry = parsed.isna().to_numpy()
    if retry.any():
        parsed[retry] = pd.to_datetime(raw[retry], errors="coerce", utc=True, format="mixed")
    _first_bad(parsed.isna().to_numpy(), rows,
               lambda at: f"cannot parse {raw.iloc[at]!r} as a date", name, column)
    return parsed.dt.tz_localize(None).to_numpy().astype("datetime64[us]")


def _parse_channels(values: pa.ChunkedArray, rows, name: str, column: str) -> np.ndarray:
    text = pc.cast(values, pa.string()).to_pandas()
    missing = text.isna().to_numpy()
    cleaned = text.fillna("").str.replace(r"\s+", " ", regex=True).str.strip()
    _first_bad(missing | (cleaned == "").to_numpy(), rows, lambda at: "channel is missing or blank",
               name, column)
    return cleaned.to_numpy(dtype=object)


def _parse_amounts(values: pa.ChunkedArray, rows, name: str, column: str) -> np.ndarray:
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        text = None
        amounts = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        missing = values.is_null().to_numpy(zero_copy_only=False)
    else:
        text = pc.cast(values, pa.string()).to_pandas()
        missing = (text.isna() | (text.str.strip() == "")).to_numpy()
        amounts = pd.to_numeric(text.str.strip(), errors="coerce").to_numpy(dtype=float)
    amounts = np.where(missing, np.nan, amounts)
    parsed_nan = np.ones(len(amounts), bool) if text is None else (
        text.str.strip().str.lower().isin(["nan", "+nan", "-nan"]).to_numpy())
    reason = np.select([missing, np.isnan(amounts) & parsed_nan, np.isnan(amounts),
                        np.isinf(amounts), amounts < 0], [1, 2, 3, 4, 5], default=0)
    shown = values.to_pandas()

    def message(at):
        if reason[at] == 1:
            return "spend is missing (empty or NaN); every row needs an amount"
        value = shown.iloc[at]
        value = value.item() if isinstance(value, np.generic) else value
        what = {2: "is NaN", 3: "is not a number", 4: "is infinite", 5: "is negative"}
        return (f"spend {value!r} {what[int(reason[at])]}; every row needs a finite, "
                "non-negative amount")

    _first_bad(reason > 0, rows, message, name, column)
    return amounts


def stage_journeys(journeys: Journeys, stage: str) -> Journeys:
    """The journeys cut at a B2B milestone, for attributing leads or opportunities.

    Each journey that has a touch flagged with ``stage`` keeps its touches up to and including
    the first such touch, and "converts" once there; journeys that never reached the stage are
    left out. Attribution models fitted on the result credit channels with the stage.

    Parameters
    ----------
    journeys : Journeys
        Journeys with ``milestones``.
    stage : {"lead", "opportunity"}
        Milestone flag to cut at (1 = lead-creation touch, 2 = opportunity-creation touch).

    Returns
    -------
    Journeys
        One row per journey that reached the stage, in the original order, over the same channel
        vocabulary: ``conversions`` 1, ``value`` 0, ``nulls`` 0. Milestones, person and start are
        kept; touch ages are counted from the stage touch (which has age 0) and ``end`` is the
        stage touch's time when ages and end are both known (``None`` otherwise).

    Raises
    ------
    MissingDataError
        The journeys have no milestones (a path table).

    Examples
    --------
    >>> import numpy as np
    >>> from engine import Journeys
    >>> from engine.kpi import stage_journeys
    >>> j = Journeys.from_lists([["ad", "web", "mail", "call"], ["ad", "call"], ["web"]],
    ...                         conversions=[1, 0, 1],
    ...                         milestones=np.array([0, 1, 2, 0, 0, 0, 3], dtype=np.uint8))
    >>> stage_journeys(j, "lead").paths().tolist()
    ['ad > web', 'web']
    >>> stage_journeys(j, "opportunity").paths().tolist()
    ['ad > web > mail', 'web']
    """
    if stage not in MILESTONES:
        raise EngineError(f"stage must be one of {sorted(MILESTONES)}, not {stage!r}")
    _check(journeys)
    journeys.require("milestones", model=f"{stage} attribution")
    flagged = np.flatnonzero(journeys.milestones & MILESTONES[stage])
    rows, first = np.unique(journeys.journey_index[flagged], return_index=True)
    stage_touch = flagged[first]
    cut = np.full(journeys.n_journeys, -1, dtype=np.int64)
    cut[rows] = journeys.position[stage_touch]
    keep = journeys.position <= cut[journeys.journey_index]
    lengths = cut[rows] + 1
    ages = end = None
    if journeys.ages is not None:
        stage_age = journeys.ages[stage_touch]
        # Journeys do not enforce ages that fall along the path; a touch logged after the stage
        # touch with an older age must not get a negative age.
        ages = np.clip(journeys.ages[keep] - np.repeat(stage_age, lengths), 0.0, None)
        if journeys.end is not None:
            end = journeys.end[rows] - np.round(stage_age * _DAY_US).astype("timedelta64[us]")

    def pick(array):
        return None if array is None else array[rows]

    n = len(rows)
    return replace(journeys, offsets=np.concatenate([[0], np.cumsum(lengths)]),
                   codes=journeys.codes[keep], conversions=np.ones(n), value=np.zeros(n),
                   nulls=np.zeros(n), ages=ages, milestones=journeys.milestones[keep],
                   person=pick(journeys.person), start=pick(journeys.start), end=end,
                   report=None)


def channel_kpis(journeys: Journeys, spend=None, models=("last_touch",), *, start=None,
                 end=None, skip_unsupported: bool = False) -> pd.DataFrame:
    """Spend, attributed credit, cost and return metrics per model and channel.

    Parameters
    ----------
    journeys : Journeys
    spend : str, pathlib.Path, pandas.DataFrame or pyarrow.Table, optional
        Spend table read with :func:`read_spend` (columns ``date, channel, spend``; use
        :func:`read_spend` directly for other column names). It is summed per channel over all
        its dates, or over ``start <= date <= end``.
    models : iterable of str or AttributionModel
        Models (registered names, instances, or ``"all"``; see
        :func:`engine.compare.resolve_models`). They are fitted on copies, so instances given
        here are left as they were.
    start, end : date-like, optional
        Inclusive bounds on the spend table's dates. The journeys are not filtered: select them
        before calling (a path table has no dates).
    skip_unsupported : bool
        Leave out models that need data the journeys lack (e.g. ``w_shaped`` on a path table)
        instead of raising :class:`engine.MissingDataError`; they are listed with the reason in
        ``attrs["skipped"]``.

    Returns
    -------
    pandas.DataFrame
        One row per (model, channel), models in the given order, channels alphabetical: every
        journey channel and every spend channel. Columns:

        - ``model, channel``
        - ``spend``: total spend; NaN when the channel is not in the spend table (or no spend
          table is given).
        - ``conversions, value``: the model's attributed conversions and revenue (0 for a
          channel with spend but no touches).
        - ``cost_per_order = spend / conversions``, ``roas = value / spend``.
        - ``leads, opportunities``: credit for reaching the lead / opportunity stage, from the
          same model fitted on :func:`stage_journeys`; NaN when the journeys have no
          milestones or the model cannot run on stage journeys. ``cost_per_lead = spend / leads``,
          ``cost_per_opportunity = spend / opportunities``.
        - ``touches``: the channel's total touch volume: every touch of a journey row counts
          ``conversions + nulls`` times (the journeys the row stands for), converting or not.
        - ``touches_per_conversion = touches / conversions``,
          ``touches_per_lead = touches / leads``,
          ``value_per_conversion = value / conversions``, ``value_per_touch = value / touches``.

        Ratios with a zero or unknown denominator are NaN. ``attrs["unmatched_spend_channels"]``
        lists the spend channels that no journey touches (sorted).

    Raises
    ------
    MissingDataError
        A model needs data the journeys lack (unless ``skip_unsupported``).

    Examples
    --------
    >>> import pandas as pd
    >>> from engine import Journeys
    >>> from engine.kpi import channel_kpis
    >>> j = Journeys.from_lists([["search", "email"], ["email"]], conversions=[1, 1],
    ...                         value=[30.0, 10.0], nulls=[1, 0])
    >>> spend = pd.DataFrame({"date": ["2024-01-01"] * 3, "channel": ["search", "email", "tv"],
    ...                       "spend": [10.0, 5.0, 50.0]})
    >>> kpis = channel_kpis(j, spend, models=["first_touch"])
    >>> kpis[["channel", "spend", "conversions", "roas", "touches"]].to_dict("list")
    {'channel': ['email', 'search', 'tv'], 'spend': [5.0, 10.0, 50.0], 'conversions': [1.0, 1.0, 0.0], 'roas': [2.0, 3.0, 0.0], 'touches': [3.0, 2.0, 0.0]}
    >>> kpis.attrs["unmatched_spend_channels"]
    ['tv']
    """
    _check(journeys)
    spent = None if spend is None else _spend_by_channel(read_spend(spend), start, end)
    unmatched = [] if spent is None else sorted(set(spent.index) - set(journeys.channels))
    channels = sorted(set(journeys.channels) | set(unmatched))
    stages = {}
    if journeys.milestones is not None:
        stages = {"leads": stage_journeys(journeys, "lead"),
                  "opportunities": stage_journeys(journeys, "opportunity")}
    volume = np.bincount(journeys.codes, (journeys.conversions + journeys.nulls)[
        journeys.journey_index], minlength=journeys.n_channels)
    touches = pd.Series(volume, index=journeys.channels).reindex(channels, fill_value=0.0)
    spend_column = (np.full(len(channels), np.nan) if spent is None
                    else spent.reindex(channels).to_numpy(dtype=float))

    blocks, skipped = [], {}
    for model in resolve_models(models):
        try:
            credit = _credit(model, journeys, channels)
        except MissingDataError as exc:
            if not skip_unsupported:
                raise
            skipped[model.name] = str(exc)
            continue
        block = pd.DataFrame({"model": model.name, "channel": channels, "spend": spend_column,
                              "conversions": credit["conversions"].to_numpy(),
                              "value": credit["value"].to_numpy()})
        for column in ("leads", "opportunities"):
            block[column] = _stage_credit(model, stages.get(column), channels)
        block["touches"] = touches.to_numpy()
        blocks.append(block)
    table = pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(
        columns=["model", "channel", "spend", "conversions", "value", "leads", "opportunities",
                 "touches"])
    table = table.astype({c: float for c in table.columns if c not in ("model", "channel")})
    out = pd.DataFrame({
        "model": table["model"], "channel": table["channel"], "spend": table["spend"],
        "conversions": table["conversions"], "value": table["value"],
        "cost_per_order": _ratio(table["spend"], table["conversions"]),
        "roas": _ratio(table["value"], table["spend"]),
        "leads": table["leads"], "cost_per_lead": _ratio(table["spend"], table["leads"]),
        "opportunities": table["opportunities"],
        "cost_per_opportunity": _ratio(table["spend"], table["opportunities"]),
        "touches": table["touches"],
        "touches_per_conversion": _ratio(table["touches"], table["conversions"]),
        "touches_per_lead": _ratio(table["touches"], table["leads"]),
        "value_per_conversion": _ratio(table["value"], table["conversions"]),
        "value_per_touch": _ratio(table["value"], table["touches"]),
    })
    out.attrs["unmatched_spend_channels"] = unmatched
    out.attrs["skipped"] = skipped
    return out


def _spend_by_channel(spend: pd.DataFrame, start, end) -> pd.Series:
    keep = np.ones(len(spend), dtype=bool)
    for bound, name, inside in ((start, "start", np.greater_equal), (end, "end", np.less_equal)):
        if bound is not None:
            keep &= inside(spend["date"].to_numpy(), _timestamp(bound, name).to_datetime64())
    return spend[keep].groupby("channel", sort=True)["spend"].sum()


def _timestamp(value, name: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise EngineError(f"{name} must be a date, not {value!r}") from None
    if stamp is pd.NaT:
        raise EngineError(f"{name} must be a date, not {value!r}")
    return stamp.tz_convert(None) if stamp.tzinfo is not None else stamp


def _credit(model, journeys: Journeys, channels: list) -> pd.DataFrame:
    """The model's conversions and value per channel (0 where it gives none), on a fresh copy."""
    if journeys.n_journeys == 0:
        return pd.DataFrame({"conversions": 0.0, "value": 0.0}, index=channels)
    fresh = type(model)(**model.get_params())
    table = fresh.fit(journeys).attribute().table
    return (table.groupby("channel")[["conversions", "value"]].sum()
            .reindex(channels, fill_value=0.0))


def _stage_credit(model, stage: Journeys | None, channels: list):
    """The model's credit for reaching a stage; NaN without milestones, or when the model cannot
    run on stage journeys (they have no non-converting journeys, which e.g. Markov needs)."""
    if stage is None:
        return np.nan
    try:
        return _credit(model, stage, channels)["conversions"].to_numpy()
    except MissingDataError:
        return np.nan


def _ratio(numerator, denominator) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _check(journeys) -> None:
    if not isinstance(journeys, Journeys):
        raise EngineError(f"expected engine.Journeys, got {type(journeys).__name__}; use "
                          "engine.read_paths or engine.read_events")


def _require(journeys: Journeys, *names: str, what: str) -> None:
    lacking = [name for name in names if getattr(journeys, name) is None]
    if lacking:
        raise MissingDataError(
            f"{what} needs journeys with {' and '.join(names)}, which these journeys lack "
            f"({', '.join(lacking)}); read an event log (engine.read_events) instead of a path "
            "table")


def _first_channels(journeys: Journeys) -> np.ndarray:
    return journeys.codes[journeys.offsets[:-1]]


def _per_channel(channels: tuple, codes: np.ndarray, /, **sums: np.ndarray) -> pd.DataFrame:
    """Sums of per-row arrays grouped by a channel code per row, for the channels that occur."""
    n = len(channels)
    present = np.bincount(codes, minlength=n) > 0
    frame = pd.DataFrame({"channel": np.asarray(channels, dtype=object)[present]})
    for column, weights in sums.items():
        frame[column] = np.bincount(codes, weights, minlength=n)[present].astype(float)
    return frame


def _sorted(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    return frame.sort_values([by, "channel"], ascending=[False, True],
                             kind="stable").reset_index(drop=True)


def conversion_by_first_touch(journeys: Journeys) -> pd.DataFrame:
    """Journeys, conversions and conversion rate by the channel of the first touch.

    The "conversion by lead source" report: which channels bring in journeys that go on to
    convert.

    Parameters
    ----------
    journeys : Journeys

    Returns
    -------
    pandas.DataFrame
        ``channel, journeys, conversions, conversion_rate, value``: one row per channel that
        opens at least one journey row, by ``journeys`` descending (ties by channel).
        ``journeys`` counts ``conversions + nulls`` per row (each conversion ends its own
        journey), so ``conversion_rate = conversions / journeys`` is the share of journeys that
        converted, in [0, 1] (NaN for a channel whose rows stand for no journey).

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.kpi import conversion_by_first_touch
    >>> j = Journeys.from_lists([["a", "b"], ["a"], ["b", "a"]], conversions=[1, 0, 2],
    ...                         value=[10.0, 0.0, 5.0], nulls=[1, 2, 0])
    >>> conversion_by_first_touch(j).to_dict("list")
    {'channel': ['a', 'b'], 'journeys': [4.0, 2.0], 'conversions': [1.0, 2.0], 'conversion_rate': [0.25, 1.0], 'value': [10.0, 5.0]}
    """
    _check(journeys)
    frame = _per_channel(journeys.channels, _first_channels(journeys),
                         journeys=journeys.conversions + journeys.nulls,
                         conversions=journeys.conversions, value=journeys.value)
    frame.insert(3, "conversion_rate", _ratio(frame["conversions"], frame["journeys"]))
    return _sorted(frame, "journeys")


def ltv_by_acquisition(journeys: Journeys) -> pd.DataFrame:
    """Lifetime conversions and revenue of persons by the channel that acquired them.

    A person's acquisition channel is the first touch of their earliest journey (by ``start``;
    ties by row order). All of the person's conversions and revenue, over every journey, count
    for that channel.

    Only what the journeys hold is counted: :func:`engine.read_events` leaves out conversions
    with no touch inside the lookback window (they are counted in ``journeys.report``) and cuts
    older touches, which can change the acquiring touch. For lifetime figures read the log with
    ``lookback_days=None``.

    Parameters
    ----------
    journeys : Journeys
        Journeys with ``person`` and ``start`` (an event log).

    Returns
    -------
    pandas.DataFrame
        ``channel, persons, conversions, value, value_per_person``: one row per channel that
        acquired at least one person, by ``persons`` descending (ties by channel).

    Raises
    ------
    MissingDataError
        The journeys lack ``person`` or ``start`` (a path table).
    InputError
        A journey has no person.

    Examples
    --------
    >>> import numpy as np
    >>> from engine import Journeys
    >>> from engine.kpi import ltv_by_acquisition
    >>> start = np.array(["2024-01-05", "2024-01-01", "2024-01-03"], dtype="datetime64[us]")
    >>> j = Journeys.from_lists([["email"], ["search", "email"], ["social"]],
    ...                         conversions=[1, 1, 0], value=[40.0, 60.0, 0.0], nulls=[0, 0, 1],
    ...                         person=np.array(["ann", "ann", "bob"]), start=start)
    >>> ltv_by_acquisition(j).to_dict("list")
    {'channel': ['search', 'social'], 'persons': [1, 1], 'conversions': [2.0, 0.0], 'value': [100.0, 0.0], 'value_per_person': [100.0, 0.0]}
    """
    _check(journeys)
    _require(journeys, "person", "start", what="ltv_by_acquisition")
    person, _ = pd.factorize(pd.Series(journeys.person))
    if (person < 0).any():
        raise InputError(f"journey row {int(np.flatnonzero(person < 0)[0])} has no person; "
                         "every journey needs one for lifetime value")
    rows = np.arange(journeys.n_journeys)
    order = np.lexsort((rows, journeys.start, person))
    _, earliest = np.unique(person[order], return_index=True)
    acquired_by = _first_channels(journeys)[order[earliest]]
    n_persons = len(earliest)
    frame = _per_channel(
        journeys.channels, acquired_by, persons=np.ones(n_persons),
        conversions=np.bincount(person, journeys.conversions, minlength=n_persons),
        value=np.bincount(person, journeys.value, minlength=n_persons))
    frame["persons"] = frame["persons"].astype(np.int64)
    frame["value_per_person"] = _ratio(frame["value"], frame["persons"])
    return _sorted(frame, "persons")


def time_to_convert(journeys: Journeys, by: str | None = "first_touch") -> pd.DataFrame:
    """Days from a converting journey's first touch to its conversion.

    The first touch is the first one the journey kept: with :func:`engine.read_events`'s lookback
    window, times are at most ``lookback_days``. Read the log with ``lookback_days=None`` to
    measure the whole journey.

    Parameters
    ----------
    journeys : Journeys
        Journeys with ``start`` and ``end`` (an event log).
    by : {"first_touch", None}
        Group by the channel of the first touch, or report all journeys together (one row,
        channel ``"all"``).

    Returns
    -------
    pandas.DataFrame
        ``channel, conversions, mean_days, median_days`` over converting journeys only, one row
        per group that has conversions, by ``conversions`` descending (ties by channel). Each
        journey row is weighted by its conversions: ``median_days`` is the median of the row
        durations repeated ``conversions`` times (for integer counts; the 50 % point of the
        conversion-weighted distribution, with the midpoint of the two central values when the
        cumulative weight hits exactly one half).

    Raises
    ------
    MissingDataError
        The journeys lack ``start`` or ``end`` (a path table).
    InputError
        A converting journey has no start or end time (NaT).

    Examples
    --------
    >>> import numpy as np
    >>> from engine import Journeys
    >>> from engine.kpi import time_to_convert
    >>> start = np.array(["2024-01-01", "2024-01-01", "2024-01-02"], dtype="datetime64[us]")
    >>> end = np.array(["2024-01-03", "2024-01-11", "2024-01-03"], dtype="datetime64[us]")
    >>> j = Journeys.from_lists([["a"], ["a", "b"], ["b"]], conversions=[1, 1, 2],
    ...                         start=start, end=end)
    >>> time_to_convert(j).to_dict("list")
    {'channel': ['a', 'b'], 'conversions': [2.0, 2.0], 'mean_days': [6.0, 1.0], 'median_days': [6.0, 1.0]}
    >>> time_to_convert(j, by=None).to_dict("list")
    {'channel': ['all'], 'conversions': [4.0], 'mean_days': [3.5], 'median_days': [1.5]}
    """
    _check(journeys)
    if by not in ("first_touch", None):
        raise EngineError(f"by must be 'first_touch' or None, not {by!r}")
    _require(journeys, "start", "end", what="time_to_convert")
    converting = np.flatnonzero(journeys.conversions > 0)
    days = (journeys.end[converting] - journeys.start[converting]) / np.timedelta64(1, "D")
    unknown = np.isnan(days)
    if unknown.any():
        raise InputError(f"journey row {int(converting[unknown][0])} converts but has no start "
                         "or end time; time to convert needs both")
    weights = journeys.conversions[converting]
    if by is None:
        names = np.array(["all"], dtype=object)
        groups = np.zeros(len(converting), dtype=np.int64)
    else:
        names = np.asarray(journeys.channels, dtype=object)
        groups = _first_channels(journeys)[converting].astype(np.int64)
    n_groups = len(names)
    conversions = np.bincount(groups, weights, minlength=n_groups)
    present = conversions > 0
    frame = pd.DataFrame({
        "channel": names[present], "conversions": conversions[present],
        "mean_days": _ratio(np.bincount(groups, weights * days, minlength=n_groups),
                            conversions)[present],
        "median_days": _weighted_median(groups, days, weights, n_groups)[present]})
    return _sorted(frame, "conversions")


def _weighted_median(groups, values, weights, n_groups: int) -> np.ndarray:
    """Per-group median of ``values`` weighted by positive ``weights`` (NaN for empty groups)."""
    out = np.full(n_groups, np.nan)
    if len(values) == 0:
        return out
    order = np.lexsort((values, groups))
    group, value, weight = groups[order], values[order], weights[order]
    total = np.bincount(group, weight, minlength=n_groups)
    before = np.concatenate([[0.0], np.cumsum(total)[:-1]])
    within = np.cumsum(weight) - before[group]
    half = total[group] / 2
    tolerance = 1e-9 * total[group]
    reached = np.flatnonzero(within >= half - tolerance)
    present, first = np.unique(group[reached], return_index=True)
    at = reached[first]
    after = np.minimum(at + 1, len(value) - 1)
    exact = (np.abs(within[at] - half[at]) <= tolerance[at]) & (group[after] == group[at])
    out[present] = np.where(exact, (value[at] + value[after]) / 2, value[at])
    return out


def path_length(journeys: Journeys) -> pd.DataFrame:
    """Journeys, conversions and conversion rate by the number of touches.

    Parameters
    ----------
    journeys : Journeys

    Returns
    -------
    pandas.DataFrame
        ``length, journeys, conversions, conversion_rate``: one row per path length that
        occurs, by length. ``journeys`` counts ``conversions + nulls`` per row. ``attrs`` holds
        ``mean_length_converting`` (mean touches per conversion, weighted by conversions) and
        ``mean_length_all`` (mean touches per journey, weighted by ``conversions + nulls``),
        NaN when there is nothing to average.

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.kpi import path_length
    >>> j = Journeys.from_lists([["a"], ["a", "b"], ["b", "c"]], conversions=[1, 1, 0],
    ...                         nulls=[3, 0, 2])
    >>> table = path_length(j)
    >>> table.to_dict("list")
    {'length': [1, 2], 'journeys': [4.0, 3.0], 'conversions': [1.0, 1.0], 'conversion_rate': [0.25, 0.3333333333333333]}
    >>> table.attrs
    {'mean_length_converting': 1.5, 'mean_length_all': 1.4285714285714286}
    """
    _check(journeys)
    counts = journeys.conversions + journeys.nulls
    lengths, inverse = np.unique(journeys.lengths, return_inverse=True)
    frame = pd.DataFrame({"length": lengths.astype(np.int64),
                          "journeys": np.bincount(inverse, counts, minlength=len(lengths)),
                          "conversions": np.bincount(inverse, journeys.conversions,
                                                     minlength=len(lengths))})
    frame["conversion_rate"] = _ratio(frame["conversions"], frame["journeys"])
    frame.attrs["mean_length_converting"] = float(
        _ratio(journeys.lengths @ journeys.conversions, journeys.total_conversions))
    frame.attrs["mean_length_all"] = float(_ratio(journeys.lengths @ counts, counts.sum()))
    return frame


def top_paths(journeys: Journeys, n: int | None = 10, by: str = "conversions") -> pd.DataFrame:
    """The most frequent (or most converting, or most valuable) paths.

    Identical paths are merged first (:meth:`engine.Journeys.unique`).

    Parameters
    ----------
    journeys : Journeys
    n : int or None
        Number of paths to return (``None``: all).
    by : {"conversions", "journeys", "value"}
        Ranking column, descending; ties are broken by path, alphabetically.

    Returns
    -------
    pandas.DataFrame
        ``path, journeys, conversions, conversion_rate, value`` with paths written
        ``a > b > c``; ``journeys`` counts ``conversions + nulls``.

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.kpi import top_paths
    >>> j = Journeys.from_lists([["a", "b"], ["b"], ["a", "b"]], conversions=[1, 3, 1],
    ...                         value=[10.0, 6.0, 5.0], nulls=[2, 1, 0])
    >>> top_paths(j, n=1).to_dict("list")
    {'path': ['b'], 'journeys': [4.0], 'conversions': [3.0], 'conversion_rate': [0.75], 'value': [6.0]}
    >>> top_paths(j, by="value")["path"].tolist()
    ['a > b', 'b']
    """
    _check(journeys)
    if by not in _TOP_PATHS_BY:
        raise EngineError(f"by must be one of {', '.join(_TOP_PATHS_BY)}, not {by!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise EngineError(f"n must be a positive whole number of paths (or None), not {n!r}")
    merged = journeys.unique()
    counts = merged.conversions + merged.nulls
    frame = pd.DataFrame({"path": merged.paths(), "journeys": counts,
                          "conversions": merged.conversions,
                          "conversion_rate": _ratio(merged.conversions, counts),
                          "value": merged.value})
    frame = frame.sort_values([by, "path"], ascending=[False, True], kind="stable")
    return (frame if n is None else frame.head(int(n))).reset_index(drop=True)


def summary(journeys: Journeys, spend=None, models=("last_touch",),
            n_paths: int = 10) -> dict[str, pd.DataFrame]:
    """Every KPI table the journeys allow, by name.

    Parameters
    ----------
    journeys : Journeys
    spend : str, pathlib.Path, pandas.DataFrame or pyarrow.Table, optional
        Spend table (see :func:`read_spend`), summed over all its dates.
    models : iterable of str or AttributionModel
        Models for :func:`channel_kpis`.
    n_paths : int
        Number of paths in ``"paths"``.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``"channels"`` (:func:`channel_kpis`), ``"first_touch"``
        (:func:`conversion_by_first_touch`), ``"paths"`` (:func:`top_paths` by conversions),
        ``"path_length"`` (:func:`path_length`), then ``"time_to_convert"``
        (:func:`time_to_convert`) when the journeys have start and end times and ``"ltv"``
        (:func:`ltv_by_acquisition`) when they have persons and start times.

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.kpi import summary
    >>> j = Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 1], nulls=[1, 0])
    >>> list(summary(j))
    ['channels', 'first_touch', 'paths', 'path_length']
    """
    tables = {"channels": channel_kpis(journeys, spend, models),
              "first_touch": conversion_by_first_touch(journeys),
              "paths": top_paths(journeys, n=n_paths),
              "path_length": path_length(journeys)}
    if journeys.start is not None and journeys.end is not None:
        tables["time_to_convert"] = time_to_convert(journeys)
    if journeys.person is not None and journeys.start is not None:
        tables["ltv"] = ltv_by_acquisition(journeys)
    return tables
