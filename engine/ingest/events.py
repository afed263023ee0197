"""Read a touchpoint event log into :class:`engine.Journeys`.

The whole reduction from raw rows to journeys is relational (Ibis expressions run by the
backend, DuckDB by default), in this order:

1. parse and validate every row (a row that fails gets its reason and is not used);
2. stitch identifiers into persons, roll contacts up into accounts when asked;
3. drop exact duplicate events;
4. order each person's events (time, then touch < lead < opportunity < conversion, then input
   order) and split them into journeys at every conversion: the touches up to and including the
   converting row form one journey, what follows after the last conversion a non-converting one;
5. keep the touches within ``lookback_days`` before the journey's end (its conversion, or its last
   touch) and, with ``collapse_repeats``, only the first of consecutive touches of one channel;
6. flag the lead- and opportunity-creation touches: the last touch at or before the journey's
   first lead (opportunity) event;
7. aggregate touches into ordered lists per journey, which are the CSR arrays of ``Journeys``.

Every input row ends up used or counted in ``journeys.report`` with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InputError
from engine.ingest import backend
from engine.ingest.channels import (
    DEFAULT_CHANNEL_GROUPING,
    group_channels,
    validate_grouping,
)
from engine.ingest.identity import identity_pairs, map_pairs, node, stitch
from engine.ingest.queries import case_variants, clean_name, not_finite
from engine.ingest.report import IngestReport
from engine.ingest.sources import (
    ROW,
    is_spark_frame,
    open_source,
    require_columns,
    source_name,
)
from engine.ingest.table import JourneyTable, touch_table
from engine.journeys import RESERVED_CHANNELS, Journeys

TOUCH, MILESTONE_LEAD, MILESTONE_OPPORTUNITY, CONVERSION = 0, 1, 2, 3
DEFAULT_EVENT_TYPES = {
    "touch": ("touch", "touchpoint", "visit", "session", "click", "impression", "view",
              "page_view", "pageview"),
    "conversion": ("conversion", "purchase", "order", "transaction", "sale", "won",
                   "closed_won"),
    "lead": ("lead", "lead_created", "mql"),
    "opportunity": ("opportunity", "opportunity_created", "opp", "sql"),
}
_KINDS = {"touch": TOUCH, "lead": MILESTONE_LEAD, "opportunity": MILESTONE_OPPORTUNITY,
          "conversion": CONVERSION}
# How a person's events are ordered to split them into journeys (exact duplicates end up
# adjacent; see _split), and how touches are ordered within a journey.
_EVENT_ORDER = ("ts", "kind", "n_conv", "channel", "revenue", ROW)
_TOUCH_ORDER = ("ts", ROW)
_TRUE = ("true", "t", "yes", "y")
_FALSE = ("false", "f", "no", "n")
# Times that parse but are no event's time: 'infinity', years before 1 or after 9999.
_TIME_RANGE = (datetime(1, 1, 1, tzinfo=UTC),
               datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))

# Reasons a row is not used, as shown in the report.
MISSING_PERSON = "missing person id"
MISSING_ACCOUNT = "missing account id"
MISSING_TIMESTAMP = "missing timestamp"
BAD_TIMESTAMP = "unparseable timestamp"
UNKNOWN_TYPE = "unknown event type"
MISSING_CHANNEL = "missing channel"
BAD_CONVERSION = "conversion count not a non-negative number"
# A conversion whose revenue is unusable still converts (and ends its journey), with value 0.
BAD_REVENUE = "revenue not a number (conversion kept, value 0)"
NEGATIVE_REVENUE = "negative revenue (conversion kept, value 0)"
NONFINITE_REVENUE = "revenue NaN or infinite (conversion kept, value 0)"
DUPLICATE = "duplicate event"
OUTSIDE_WINDOW = "touch outside the lookback window"
REPEAT = "repeat touch collapsed"
NO_TOUCH = "conversion or milestone with no touch in the lookback window"
USED = ""


def read_events(source, *, person: str | None = "person_id", timestamp: str = "timestamp",
                channel: str | None = "channel", event_type: str | None = "event_type",
                conversion: str | None = None, revenue: str | None = "revenue",
                account: str | None = None, identities=(), identity_map=None,
                utm_source: str = "utm_source", utm_medium: str = "utm_medium",
                utm_campaign: str = "utm_campaign", channel_grouping=None, event_types=None,
                lookback_days: float | None = 30, collapse_repeats: bool = False,
                engine: str | None = None, collect: bool = True,
                progress=None) -> Journeys | JourneyTable:
    """Read a touchpoint log (one row per event) and build journeys.

    Parameters
    ----------
    source : str, pathlib.Path, pandas.DataFrame, pyarrow.Table or pyspark.sql.DataFrame
        CSV (any common delimiter, optionally ``.gz``) or Parquet file, or a table.
    person : str or None
        Person (or device/cookie) identifier column. May be None when ``account`` is given.
    timestamp : str
        Event time: a timestamp column, or ISO 8601 text (an offset such as ``Z`` or ``+02:00``
        is honoured; times without one are taken as UTC).
    channel : str or None
        Channel column. When the default column is absent (or ``channel=None``), channels come
        from the UTM columns through ``channel_grouping``.
    event_type : str or None
        Column saying what each row is; values are matched case-insensitively against
        ``event_types``. When the default column is absent every row is a touch.
    conversion : str, optional
        Column with the number of conversions on the row (``1``/``0``, ``true``/``false``, or a
        count): a touch row with conversions is a touch that converted (e.g. a session with a
        purchase), a conversion-type row counts this many conversions (at least one).
    revenue : str or None
        Conversion value; read on converting rows only (0 when the column is absent or empty).
    account : str, optional
        B2B: contacts' events are rolled up into one journey per account.
    identities : sequence of str
        More identifier columns (login, e-mail...): identifiers seen on one row are the same person.
    identity_map : str, pathlib.Path or DataFrame, optional
        Pairs of identifiers known to be the same person: two columns named like ``person`` or
        one of ``identities``.
    utm_source, utm_medium, utm_campaign : str
        UTM columns used when there is no channel column.
    channel_grouping : list of dict, optional
        Rules mapping UTM fields to channels (see :mod:`engine.ingest.channels`); default
        :data:`engine.ingest.channels.DEFAULT_CHANNEL_GROUPING`.
    event_types : dict, optional
        ``{"touch": [...], "conversion": [...], "lead": [...], "opportunity": [...]}``: the values
        of ``event_type`` meaning each kind; default :data:`DEFAULT_EVENT_TYPES`.
    lookback_days : float or None
        Touches older than this before the journey's end are not used (None: no limit).
    collapse_repeats : bool
        Keep only the first of consecutive touches of the same channel.
    engine : str, optional
        Relational engine: ``"duckdb"`` (the default; a Parquet file is scanned in place and
        spilled to disk beyond ``ATTRIBUTION_MEMORY_LIMIT``) or ``"spark"`` (the default when
        ``source`` is a ``pyspark.sql.DataFrame``).
    collect : bool
        True (default): return :class:`engine.Journeys`. False: keep the journeys on the engine
        and return a :class:`engine.ingest.table.JourneyTable`, which models read through small
        aggregates (for logs too large for this process; close it when done).
    progress : callable, optional
        Called with a short message as each step starts (``progress("sorting events")``) and
        as touches come back; the CLI shows them on its progress bar.

    Returns
    -------
    Journeys
        One row per journey (``nulls`` 1 for a non-converting one), with touch ``ages`` (days
        before the journey's end), ``milestones``, ``person`` (the account with ``account``),
        ``start`` and ``end``; ``.report`` accounts for every input row.

    Raises
    ------
    InputError
        Missing columns, empty input, a reserved channel name, bad parameters, or no usable row.

    Examples
    --------
    >>> import pandas as pd, engine
    >>> log = pd.DataFrame({
    ...     "person_id": ["u1", "u1", "u1", "u2"],
    ...     "timestamp": ["2024-01-01", "2024-01-03", "2024-01-04", "2024-01-02"],
    ...     "channel": ["Email", "Paid Search", None, "Display"],
    ...     "event_type": ["touch", "touch", "conversion", "touch"],
    ...     "revenue": [None, None, 80.0, None]})
    >>> journeys = engine.read_events(log)
    >>> journeys.paths().tolist(), journeys.conversions.tolist(), journeys.ages.tolist()
    (['Email > Paid Search', 'Display'], [1.0, 0.0], [3.0, 1.0, 0.0])
    """
    name = source_name(source)
    engine = engine or ("spark" if is_spark_frame(source) else "duckdb")
    con = backend.connect(engine)
    opened = open_source(source, con, engine)
    present = set(opened.column_names)
    if person is None and account is None:
        raise InputError("give a person or an account column", source=name)
    if account is not None:
        person = _optional(person, "person_id", present)
    event_type = _optional(event_type, "event_type", present)
    revenue = _optional(revenue, "revenue", present)
    if channel == "channel" and channel not in present:
        channel = None
    utm = {"source": utm_source, "medium": utm_medium, "campaign": utm_campaign}
    utm = {k: v for k, v in utm.items() if v in present}
    if channel is None and not utm:
        raise InputError(f"no channel column (looked for 'channel') and no UTM columns "
                         f"({utm_source}, {utm_medium}, {utm_campaign}); name one with "
                         "channel=... or utm_source=...", source=name)
    identities = [identities] if isinstance(identities, str) else list(identities)
    require_columns(opened, {"person": person, "timestamp": timestamp, "channel": channel,
                            "event_type": event_type, "conversion": conversion,
                            "revenue": revenue, "account": account}, name)
    for column in identities:
        require_columns(opened, {"identities": column}, name)
    grouping = None if channel else validate_grouping(
        DEFAULT_CHANNEL_GROUPING if channel_grouping is None else channel_grouping,
        [c for c in opened.column_names if c != ROW], name)
    kinds = _event_kinds(event_types, name)
    if lookback_days is not None and not (np.isfinite(lookback_days) and lookback_days > 0):
        raise InputError(f"lookback_days must be a positive number of days or None, not "
                         f"{lookback_days!r}", source=name)

    notes: list[str] = []
    n_rows = opened.num_rows
    say = progress or (lambda message: None)
    say(f"reading {n_rows:,} rows on {engine}")
    scratch = backend.Scratch(con)
    try:
        t = opened.table
        id_columns = [c for c in [person, *identities] if c]
        mapping = _stitched(t, person, identities, identity_map, id_columns, notes, con)
        say("parsing and validating rows")
        rows = scratch.keep(_parse(
            t, person=person, timestamp=timestamp, channel=channel, utm=utm, grouping=grouping,
            event_type=event_type, kinds=kinds, conversion=conversion, revenue=revenue,
            account=account, identities=identities, mapping=mapping))
        fates, kinds_seen = _row_checks(rows, name, con)
        say("ordering events and splitting journeys at conversions")
        events = scratch.keep(_split(rows))
        scratch.drop(rows)
        dups = events.filter(events.dup)
        fates.append(backend.fetch(dups.aggregate(fate=ibis.literal(DUPLICATE), n=dups.count(),
                                                  first=dups[ROW].min()), con))
        say("applying the lookback window")
        touches = scratch.keep(_touch_fates(events.filter(~events.dup), lookback_days,
                                            collapse_repeats))
        say("counting what happened to every row")
        kept, channels, variants = _merge_case_variants(touches.filter(touches.fate == USED),
                                                        con)
        if variants:
            notes.append("channel names differing only in case merged: " + ", ".join(
                f"{k!r}->{v!r}" for k, v in sorted(variants.items())))
        fates += _used_fates(events, touches, con)
        report = _report(fates, name, n_rows, notes)
        if not channels:
            raise InputError("no usable event rows: " + "; ".join(
                f"{n} {reason}" for reason, n in report.rejected.items()), source=name)
        has_milestones = bool(kinds_seen & {MILESTONE_LEAD, MILESTONE_OPPORTUNITY})
        say("building the touch table")
        final = scratch.keep(touch_table(kept, channels, has_milestones, _TOUCH_ORDER))
        scratch.drop(touches)
        scratch.drop(events)
    except BaseException:
        scratch.close()
        raise
    table = JourneyTable(final, channels, report, has_milestones, con, scratch)
    if not collect:
        return table
    with table:
        return table.collect(progress=progress)


def _row_checks(rows, name, con) -> tuple[list[pa.Table], set]:
    """Rejected rows by reason, the event kinds present; raise on a reserved channel name."""
    found = backend.fetch(rows.group_by(["reason", "kind"]).aggregate(
        n=rows.count(), first=rows[ROW].min(),
        reserved=rows[ROW].min(where=rows.channel.isin(RESERVED_CHANNELS))), con)
    table = found.to_pydict()
    reserved = [r for r, reason in zip(table["reserved"], table["reason"])
                if r is not None and reason is None]
    if reserved:
        raise InputError(f"uses a reserved channel name (one of {', '.join(RESERVED_CHANNELS)})",
                         source=name, row=min(reserved))
    rejected = found.filter(pc.is_valid(found["reason"]))
    fates = [pa.table({"fate": rejected["reason"], "n": rejected["n"], "first": rejected["first"]})]
    kinds = {k for k, reason in zip(table["kind"], table["reason"]) if reason is None}
    return fates, kinds


def _split(rows):
    """Valid rows with ``dup`` (exact repeat of the previous event) and ``seq``, the journey number
    within the person: the number of converting rows before it.

    One ordering serves both, so the engine sorts once: by time; at equal times touch < lead <
    opportunity < conversion (a touch at the conversion's time belongs to it) and
    non-converting before converting rows (a touch at the time of a converting touch joins its
    journey); then the other fields, so exact duplicates are adjacent; then input order. The
    order of touches inside a journey is set later by time and input order alone.
    """
    valid = rows.filter(rows.reason.isnull()).drop("reason")
    order = [valid[c] for c in _EVENT_ORDER]
    previous = ibis.window(group_by=valid.key, order_by=order)
    dup = ibis.and_(*[valid[c].lag().over(previous).identical_to(valid[c])
                      for c in _EVENT_ORDER[:-1]]).fill_null(False)
    valid = valid.mutate(dup=dup)
    converts = ((valid.n_conv > 0) & ~valid.dup).cast("int64")
    cumulative = ibis.cumulative_window(group_by=valid.key,
                                        order_by=[valid[c] for c in _EVENT_ORDER])
    return valid.mutate(seq=converts.sum().over(cumulative) - converts)


def _touch_fates(events, lookback_days, collapse_repeats):
    """Touch rows joined to their journey's end, with ``fate``: used, outside the window, or a
    collapsed repeat."""
    ends = events.group_by(["key", "seq"]).aggregate(
        end=ibis.coalesce(events.ts.max(where=events.n_conv > 0),
                          events.ts.max(where=events.kind == TOUCH), events.ts.max()),
        conversions=events.n_conv.sum(),
        value=events.revenue.sum(where=events.n_conv > 0).fill_null(0.0),
        lead_ts=events.ts.min(where=events.kind == MILESTONE_LEAD),
        opportunity_ts=events.ts.min(where=events.kind == MILESTONE_OPPORTUNITY))
    touches = events.filter(events.kind == TOUCH).drop("dup").join(ends, ["key", "seq"])
    inside = ibis.literal(True) if lookback_days is None else (
        touches.ts >= touches.end - ibis.interval(seconds=int(round(lookback_days * 86400))))
    touches = touches.mutate(fate=ibis.cases((~inside, OUTSIDE_WINDOW), else_=USED))
    if not collapse_repeats:
        return touches
    previous = touches.channel.lag().over(ibis.window(
        group_by=[touches.key, touches.seq, touches.fate],
        order_by=[touches[c] for c in _TOUCH_ORDER]))
    repeat = (touches.fate == USED) & previous.notnull() & (previous == touches.channel)
    return touches.mutate(fate=ibis.cases((repeat, REPEAT), else_=touches.fate))


def _merge_case_variants(kept, con):
    """Kept touches with case variants of a name merged, the final vocabulary (alphabetical),
    and the merged spellings."""
    vocabulary = backend.fetch(kept.group_by("channel").aggregate(n=kept.count()), con)
    names = vocabulary["channel"].to_pylist()
    variants = case_variants(names, vocabulary["n"].to_pylist())
    if variants:
        kept = kept.mutate(channel=kept.channel.substitute(variants))
    return kept, tuple(sorted({variants.get(c, c) for c in names})), variants


def _used_fates(events, touches, con) -> list[pa.Table]:
    """Fates of the touch rows, and of the other rows: used when their journey kept a touch.

    A used converting row whose revenue was unusable is reported under that issue."""
    def reported(fate, issue):
        return ibis.cases(((fate == USED) & issue.notnull(), issue), else_=fate)

    touch_fate = reported(touches.fate, touches.issue)
    touch_fates = backend.fetch(touches.group_by(fate=touch_fate).aggregate(
        n=touches.count(), first=touches[ROW].min()), con)
    live = touches.filter(touches.fate == USED).select("key", "seq").distinct().mutate(
        live=ibis.literal(True))
    others = events.filter(~events.dup & (events.kind != TOUCH))
    per_journey = others.group_by(["key", "seq", "issue"]).aggregate(n=others.count(),
                                                                    first=others[ROW].min())
    per_journey = per_journey.left_join(live, ["key", "seq"])
    fate = ibis.cases((per_journey.live.fill_null(False), USED), else_=NO_TOUCH)
    per_journey = per_journey.mutate(fate=reported(fate, per_journey.issue))
    other_fates = backend.fetch(per_journey.group_by("fate").aggregate(
        n=per_journey.n.sum(), first=per_journey.first.min()), con)
    return [touch_fates, other_fates]


def _report(fates: list[pa.Table], name, n_rows, notes) -> IngestReport:
    rejected, first, used = {}, {}, 0
    for table in fates:
        for fate, n, row in zip(*(table[c].to_pylist() for c in ("fate", "n", "first"))):
            if not n:
                continue
            if fate == USED:
                used += int(n)
            else:
                rejected[fate] = rejected.get(fate, 0) + int(n)
                first[fate] = row if fate not in first else min(first[fate], row)
    # Reasons in the order a reader meets them (the engine's group order is arbitrary).
    rejected = {fate: rejected[fate] for fate in sorted(rejected, key=lambda f: (first[f], f))}
    return IngestReport(source=name, n_rows=n_rows, n_used=used, rejected=rejected,
                        first_row={fate: first[fate] for fate in rejected}, notes=tuple(notes))


def _optional(column, default, present):
    """A column named by default may be absent (the feature is off); one named by the user not."""
    return None if column == default and column not in present else column


def _event_kinds(event_types, name) -> dict[str, int]:
    spec = DEFAULT_EVENT_TYPES if event_types is None else event_types
    if not isinstance(spec, Mapping) or set(spec) - set(_KINDS) or "touch" not in spec:
        raise InputError("event_types must map 'touch' (and optionally 'conversion', 'lead', "
                         "'opportunity') to lists of event type values", source=name)
    kinds = {}
    for kind, values in spec.items():
        for value in [values] if isinstance(values, str) else values:
            key = str(value).strip().lower()
            if key in kinds and kinds[key] != _KINDS[kind]:
                raise InputError(f"event type {value!r} is listed under two kinds", source=name)
            kinds[key] = _KINDS[kind]
    return kinds


def _stitched(t, person, identities, identity_map, id_columns, notes, con):
    """``(node, person)`` table of stitched identifiers, or None when there is nothing to stitch."""
    if not identities and identity_map is None:
        return None
    pairs = [identity_pairs(t, person, identities, con)] if person else []
    if identity_map is not None:
        pairs.append(map_pairs(identity_map, id_columns, notes))
    table = stitch(pa.concat_tables(pairs) if pairs else pa.table({}), person)
    return backend.table(table, con)


def _text(value):
    """Identifiers as text, compared exactly (no trimming: an id is opaque)."""
    return value if value.type().is_string() else value.cast("string")


def _blank(value):
    if value.type().is_string():
        return value.isnull() | (value.length() == 0)
    return value.isnull()


def _number(value):
    """Text or numbers as float64; values of other types (dates, lists...) as not a number."""
    if value.type().is_string():
        return value.strip().try_cast("float64")
    if value.type().is_numeric() or value.type().is_boolean() or value.type().is_null():
        return value.cast("float64")
    return ibis.null("float64")


def _lookup(t, columns: list[str], derive, name: str):
    """Join ``t`` to a small table of its distinct ``columns`` values with ``derive(values)``
    computed once per distinct combination (cleaning text per row costs far more)."""
    values = t.select(**{f"_{name}_{i}": t[c] for i, c in enumerate(columns)}).distinct()
    values = values.mutate(**{name: derive([values[f"_{name}_{i}"] for i in range(len(columns))])})
    joined = t.left_join(values, [t[c].identical_to(values[f"_{name}_{i}"])
                                  for i, c in enumerate(columns)])
    return joined.drop(*[f"_{name}_{i}" for i in range(len(columns))])


def _parse(t, *, person, timestamp, channel, utm, grouping, event_type, kinds, conversion,
           revenue, account, identities, mapping):
    """One row per input row: ``_row, key, ts, kind, channel, n_conv, revenue, reason``.

    Built in projections so each derived column is computed once and referred to by name
    (nested inline, the CASE expressions would be repeated in every later use); event types and
    channel names are derived once per distinct value.
    """
    id_columns = [c for c in [person, *identities] if c]
    if mapping is not None:
        for column in id_columns:
            lookup = mapping.rename(**{f"node_{column}": "node", f"person_{column}": "person"})
            t = t.left_join(lookup, node(column, t[column]) == lookup[f"node_{column}"])
    if event_type:
        def kind_of(values):
            label = _text(values[0]).strip().lower()
            return ibis.cases(*[(label.isin([v for v, k in kinds.items() if k == code]), code)
                                for code in sorted(set(kinds.values()))], else_=None)

        t = _lookup(t, [event_type], kind_of, "kind")
    if channel:
        t = _lookup(t, [channel], lambda values: clean_name(values[0]), "name")
    else:
        referenced = {f for rule in grouping for f in rule if f != "channel"}
        fields = {f: utm.get(f, f) for f in referenced if f in utm or f in t.columns}
        names = sorted(fields)
        t = _lookup(t, [fields[f] for f in names], lambda values: clean_name(group_channels(
            dict(zip(names, values)), grouping)), "name")

    if mapping is not None:
        # An identifier linked to nothing is its own person.
        person_key = ibis.coalesce(*[
            ibis.coalesce(t[f"person_{c}"], _text(t[c]) if c == person
                          else ibis.literal(f"{c}:") + _text(t[c])) for c in id_columns])
    else:
        person_key = _text(t[person]) if person else None
    if account:
        # The journey key is the account: a contact without a person id still counts.
        key, key_missing = _text(t[account]), _blank(t[account])
    else:
        key, key_missing = person_key, ibis.and_(*[_blank(t[c]) for c in id_columns])

    raw_ts = t[timestamp]
    ts = (raw_ts.strip() if raw_ts.type().is_string() else raw_ts).try_cast("timestamp('UTC')")
    if conversion:
        raw = t[conversion]
        if raw.type().is_string():
            flag = raw.strip().lower()
            count = ibis.cases((flag.isin(_TRUE), 1.0), (flag.isin(_FALSE) | (flag == ""), 0.0),
                               else_=flag.try_cast("float64"))
        else:
            count = _number(raw)
        # A NaN count is given (and bad) on every engine: PySpark's notnull is false for NaN.
        count_given = raw.notnull() | raw.isnan() if raw.type().is_floating() else raw.notnull()
    else:
        count, count_given = ibis.literal(0.0), ibis.literal(False)
    parsed = t.select(ROW, key=key, key_missing=key_missing, ts=ts, ts_missing=_blank(raw_ts),
                      kind=t["kind"] if event_type else ibis.literal(TOUCH),
                      conv_count=count, count_given=count_given, name=t["name"],
                      money=_number(t[revenue]) if revenue else ibis.literal(0.0),
                      money_missing=_blank(t[revenue]) if revenue else ibis.literal(True))

    p = parsed
    count = p.conv_count
    count_bad = p.count_given & (count.isnull() | not_finite(count) | (count < 0))
    count = count.fill_null(0.0)
    p = p.mutate(count_bad=count_bad, n_conv=ibis.cases(
        (p.kind == CONVERSION, ibis.cases((count > 0, count), else_=1.0)),
        (p.kind == TOUCH, count), else_=0.0))

    converting = p.n_conv > 0
    checks = [(p.key_missing, MISSING_ACCOUNT if account else MISSING_PERSON),
              (p.ts_missing, MISSING_TIMESTAMP),
              (p.ts.isnull() | ~p.ts.between(*_TIME_RANGE), BAD_TIMESTAMP),
              (p.kind.isnull(), UNKNOWN_TYPE),
              ((p.kind == TOUCH) & (p.name.isnull() | (p.name == "")), MISSING_CHANNEL),
              (p.count_bad, BAD_CONVERSION)]
    # NaN first: PySpark's isnull is also true for NaN, DuckDB's is not.
    money_issue = ibis.cases(
        (converting & not_finite(p.money), NONFINITE_REVENUE),
        (converting & ~p.money_missing & p.money.isnull(), BAD_REVENUE),
        (converting & (p.money < 0), NEGATIVE_REVENUE), else_=None) if revenue \
        else ibis.null("string")
    return p.select(ROW, key=p.key, ts=p.ts, kind=p.kind,
                    channel=ibis.cases((p.kind == TOUCH, p.name), else_=None),
                    n_conv=p.n_conv,
                    revenue=ibis.cases((converting & money_issue.isnull(),
                                        p.money.fill_null(0.0)), else_=0.0),
                    reason=ibis.cases(*checks, else_=None), issue=money_issue)
