"""Journeys kept on the relational engine, for logs too large to bring to this process.

``read_events(..., collect=False)`` returns a :class:`JourneyTable` instead of
:class:`engine.Journeys`: the journeys stay on the engine (DuckDB, spilling to disk, or a Spark
cluster) as one table with a row per touch, and models ask it for the small aggregates they
need, each one Ibis query shared by every engine:

* :meth:`JourneyTable.unique` — the distinct paths with their counts (an ``engine.Journeys``);
* :meth:`JourneyTable.transitions` — the order-k transition counts of the Markov chain;
* :meth:`JourneyTable.coalitions` — conversions, nulls and value per channel set;
* :func:`engine.ingest.rule_queries.rule_credit` — rule-based credit per channel;
* :meth:`JourneyTable.collect` — everything, as ``engine.Journeys`` (touch arrays streamed in
  batches).

The touch table's columns: ``key`` (person or account), ``seq`` (journey number of the key),
``position`` (0-based), ``length``, ``code`` (index into :attr:`JourneyTable.channels`), ``age``
(days before the journey's end), ``milestone`` (1 lead-creation touch, 2 opportunity-creation
touch), ``ts``, ``end``, and the journey's ``conversions``, ``value`` and ``nulls`` on each of its
touches.
"""

from __future__ import annotations

from functools import cached_property

import ibis
import numpy as np
import pyarrow as pa

from engine.errors import EngineError, InputError, MissingDataError
from engine.ingest import backend
from engine.ingest.report import IngestReport
from engine.journeys import Journeys

_JOURNEY = ("key", "seq")
_DAY_US = 86_400e6


def touch_table(kept: ibis.Table, channels: tuple[str, ...], has_milestones: bool,
                order: tuple[str, ...]) -> ibis.Table:
    """The touch table (see the module) from the kept touches of the event reader: ``key, seq,
    channel, ts, end, conversions, value, lead_ts, opportunity_ts`` and the ``order`` columns
    that order touches within a journey.

    A journey's lead (opportunity) touch is its last touch at or before its first lead
    (opportunity) event.
    """
    journey = ibis.window(group_by=[kept[c] for c in _JOURNEY],
                          order_by=[kept[c] for c in order])
    whole = ibis.window(group_by=[kept[c] for c in _JOURNEY])
    t = kept.mutate(position=ibis.row_number().over(journey),
                    length=kept.ts.count().over(whole),
                    code=kept.channel.cases(*[(c, i) for i, c in enumerate(channels)]).cast(
                        "int32"))
    milestone = ibis.literal(0, type="int32")
    if has_milestones:
        for column, flag in (("lead_ts", 1), ("opportunity_ts", 2)):
            last = ibis.ifelse(t.ts <= t[column], t.position, -1).max().over(whole)
            milestone = milestone + ibis.ifelse(t.position == last, flag, 0).cast("int32")
    conversions = t.conversions.cast("float64")
    return t.select(
        "key", "seq", position=t.position.cast("int64"), length=t.length.cast("int64"),
        code=t.code, age=t.end.delta(t.ts, unit="microsecond").cast("float64") / _DAY_US,
        milestone=milestone, ts=t.ts, end=t.end, conversions=conversions,
        value=t.value.cast("float64"),
        nulls=ibis.ifelse(conversions == 0, 1.0, 0.0).cast("float64"))


class JourneyTable:
    """Journeys kept on a relational engine (see the module).

    Use it as a context manager, or call :meth:`close`, to free the engine's tables.

    Attributes
    ----------
    channels : tuple of str
        The channel vocabulary (alphabetical); ``code`` indexes into it.
    report : IngestReport
        What happened to every input row.
    touches : ibis.Table
        The touch table.
    engine : str
        ``"duckdb"`` or ``"spark"``.
    """

    def __init__(self, touches: ibis.Table, channels: tuple[str, ...], report: IngestReport,
                 has_milestones: bool, con, scratch: backend.Scratch | None = None):
        self.touches = touches
        self.channels = tuple(channels)
        self.report = report
        self.has_milestones = bool(has_milestones)
        self.con = con
        self.engine = backend.name(con)
        self._scratch = scratch

    # -- housekeeping ---------------------------------------------------------------------------
    def close(self) -> None:
        """Drop the engine's tables behind this journey table."""
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None

    def __enter__(self) -> JourneyTable:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"JourneyTable({self.n_journeys} journeys, {self.n_touches} touches, "
                f"{len(self.channels)} channels, engine={self.engine!r})")

    # -- summary --------------------------------------------------------------------------------
    @cached_property
    def _summary(self) -> dict:
        t = self.touches
        first = t.position == 0
        weighted = (t.conversions + t.nulls) > 0
        row = backend.fetch(t.aggregate(
            n_touches=t.count(), n_journeys=first.sum(),
            conversions=t.conversions.sum(where=first), value=t.value.sum(where=first),
            nulls=t.nulls.sum(where=first),
            channels_weighted=t.code.nunique(where=weighted)), self.con).to_pylist()[0]
        return {k: (0 if v is None else v) for k, v in row.items()}

    @property
    def n_journeys(self) -> int:
        return int(self._summary["n_journeys"])

    @property
    def n_touches(self) -> int:
        return int(self._summary["n_touches"])

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def total_conversions(self) -> float:
        return float(self._summary["conversions"])

    @property
    def total_value(self) -> float:
        return float(self._summary["value"])

    @property
    def total_nulls(self) -> float:
        return float(self._summary["nulls"])

    @property
    def channels_touched(self) -> int:
        """Channels touched by journeys that weigh something (conversions or nulls)."""
        return int(self._summary["channels_weighted"])

    def require(self, *what: str, model: str = "this model") -> None:
        """Raise :class:`MissingDataError` unless the journeys carry ``ages``/``milestones``
        (ages always: the table comes from an event log)."""
        if "milestones" in what and not self.has_milestones:
            raise MissingDataError(f"{model} needs touch milestones, which these journeys "
                                   "lack; read an event log with lead/opportunity events")

    # -- aggregates -------------------------------------------------------------------------
    def unique(self) -> Journeys:
        """The distinct paths with their conversions, value and nulls summed, ordered by path
        (ages, milestones and persons do not survive the merge)."""
        t = self.touches
        per_journey = t.group_by(list(_JOURNEY)).aggregate(
            touches=ibis.struct({"position": t.position, "code": t.code}).collect(),
            conversions=t.conversions.max(), value=t.value.max(), nulls=t.nulls.max())
        paths = per_journey.select(path=per_journey.touches.sort().map(lambda s: s.code),
                                   conversions=per_journey.conversions,
                                   value=per_journey.value, nulls=per_journey.nulls)
        merged = paths.group_by("path").aggregate(
            conversions=paths.conversions.sum(), value=paths.value.sum(),
            nulls=paths.nulls.sum()).order_by("path")
        out = backend.fetch(merged, self.con)
        offsets, codes = _csr(out["path"])
        return Journeys(channels=self.channels, offsets=offsets, codes=codes,
                        conversions=out["conversions"].to_numpy(), value=out["value"].to_numpy(),
                        nulls=out["nulls"].to_numpy(), report=self.report)

    def coalitions(self):
        """Conversions, nulls and value per distinct channel set
        (:class:`engine.models.shapley.Coalitions`, without the per-journey ``index``)."""
        from engine.models.shapley import coalition_query, coalitions_from

        t = self.touches.filter(self.touches.position == 0)
        journeys = t.select(*_JOURNEY, "conversions", "value", "nulls")
        sets = coalition_query(self.touches, list(_JOURNEY), self.n_channels)
        rows = sets.join(journeys, list(_JOURNEY))
        words = [c for c in sets.columns if c.startswith("w")]
        grouped = rows.group_by(words).aggregate(conversions=rows.conversions.sum(),
                                                 nulls=rows.nulls.sum(), value=rows.value.sum())
        return coalitions_from(backend.fetch(grouped, self.con), words, self.channels)

    def transitions(self, order: int = 1, collapse_repeats: bool = False):
        """Transition counts of the order-``order`` absorbing chain
        (:class:`engine.models.markov.MarkovChain`), equal to
        :func:`engine.models.markov.transition_counts` of the collected journeys."""
        from engine.models.markov import chain_from_counts, check_order

        order = check_order(order, self.n_channels)
        base = self.n_channels + 1
        t = self.touches
        t = t.filter((t.conversions + t.nulls) > 0)
        journey = ibis.window(group_by=[t[c] for c in _JOURNEY], order_by=t.position)
        if collapse_repeats:
            t = t.filter((t.position == 0) | (t.code != t.code.lag().over(journey)))
            journey = ibis.window(group_by=[t[c] for c in _JOURNEY], order_by=t.position)
            t = t.mutate(position=ibis.row_number().over(journey).cast("int64"),
                         length=t.code.count().over(ibis.window(
                             group_by=[t[c] for c in _JOURNEY])).cast("int64"))
            journey = ibis.window(group_by=[t[c] for c in _JOURNEY], order_by=t.position)
        gram = ibis.literal(0, type="int64")
        for back in range(order):
            code = t.code if back == 0 else t.code.lag(back).over(journey)
            digit = ibis.ifelse(t.position >= back, code.cast("int64") + 1, 0)
            gram = gram + digit * (base ** back)
        t = t.mutate(gram=gram)
        t = t.mutate(previous=t.gram.lag().over(journey).fill_null(0))
        weight = t.conversions + t.nulls
        edges = backend.fetch(t.group_by(["previous", "gram"]).aggregate(
            count=weight.sum()), self.con)
        last = t.filter(t.position == t.length - 1)
        ends = backend.fetch(last.group_by("gram").aggregate(
            conversions=last.conversions.sum(), nulls=last.nulls.sum(),
            value=ibis.ifelse(last.conversions > 0, last.value, 0.0).sum()), self.con)
        if edges.num_rows == 0:
            raise EngineError("markov: no journey has conversions or nulls to count")
        return chain_from_counts(
            self.channels, order, edges["previous"].to_numpy(), edges["gram"].to_numpy(),
            edges["count"].to_numpy(), ends["gram"].to_numpy(), ends["conversions"].to_numpy(),
            ends["nulls"].to_numpy(), ends["value"].to_numpy())

    def collect(self, batch_rows: int = 1_000_000, progress=None) -> Journeys:
        """All journeys as :class:`engine.Journeys`, ordered by key and journey number.

        One small row per journey comes back in one piece; per touch only its code, age and
        milestone flags, streamed in batches into preallocated arrays. ``progress`` (a callable)
        hears how far it got.
        """
        say = progress or (lambda message: None)
        say("collecting the journeys")
        t = self.touches
        per_journey = backend.fetch(t.group_by(list(_JOURNEY)).aggregate(
            n=t.count(), start=t.ts.min(), end=t.end.max(), conversions=t.conversions.max(),
            value=t.value.max(), nulls=t.nulls.max()).order_by(list(_JOURNEY)), self.con)
        lengths = per_journey["n"].to_numpy()
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        n = int(offsets[-1])
        codes, ages = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.float64)
        milestones = np.empty(n, dtype=np.uint8) if self.has_milestones else None
        columns = ["code", "age", *(["milestone"] if self.has_milestones else [])]
        at = reported = 0
        for batch in backend.batches(t.order_by([*_JOURNEY, "position"]).select(*columns),
                                     self.con, batch_rows):
            size = batch.num_rows
            codes[at:at + size] = batch.column("code").to_numpy(zero_copy_only=False)
            ages[at:at + size] = batch.column("age").to_numpy(zero_copy_only=False)
            if milestones is not None:
                milestones[at:at + size] = batch.column("milestone").to_numpy(
                    zero_copy_only=False)
            at += size
            if at >= reported + n // 10 or at == n:  # a line per tenth, not per batch
                reported = at
                say(f"collected {at:,} of {n:,} touches")
        if at != n:
            raise InputError(f"the engine returned {at} touches for journeys of {n}; the input "
                             "changed while it was read", source=self.report.source)
        return Journeys(
            channels=self.channels, offsets=offsets, codes=codes,
            conversions=per_journey["conversions"].to_numpy(),
            value=per_journey["value"].to_numpy(), nulls=per_journey["nulls"].to_numpy(),
            ages=ages, milestones=milestones,
            person=per_journey["key"].to_numpy(zero_copy_only=False),
            start=_micros(per_journey["start"]).astype("datetime64[us]"),
            end=_micros(per_journey["end"]).astype("datetime64[us]"), report=self.report)


def _csr(lists) -> tuple[np.ndarray, np.ndarray]:
    from engine.ingest.queries import csr

    offsets, values = csr(lists)
    return offsets, values.to_numpy(zero_copy_only=False).astype(np.int32)


def _micros(column) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
