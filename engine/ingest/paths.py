"""Read a path table (ChannelAttribution's layout) into :class:`engine.Journeys`."""

from __future__ import annotations

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InputError
from engine.ingest import backend
from engine.ingest.queries import case_variants, clean_name, csr, encode_channels
from engine.ingest.report import IngestReport
from engine.ingest.sources import ROW, load_table, require_columns, source_name
from engine.journeys import RESERVED_CHANNELS, Journeys

# Longer separators first: "a -> b" must suggest "->", not ">" (which would leave "a -").
_OTHER_SEPARATORS = ("->", "=>", ">", "|", ",", ";", "/", "+")
# Beyond this many distinct pieces to rename, a CASE per touch costs more than cleaning each touch.
_MAX_SUBSTITUTIONS = 64


def read_paths(source, *, path: str = "path", conversions: str = "total_conversions",
               value: str | None = "total_conversion_value", nulls: str | None = "total_null",
               sep: str = ">", engine: str | None = None) -> Journeys:
    """Read a path table: one row per path with its conversions, value and non-conversions.

    Parameters
    ----------
    source : str, pathlib.Path, pandas.DataFrame or pyarrow.Table
        CSV (any of ``, ; tab |`` as delimiter, optionally ``.gz``) or Parquet file, or a table.
    path : str
        Column holding the path, channels separated by ``sep`` (whitespace around channel names
        is ignored, runs of inner whitespace count as one space).
    conversions : str
        Column with the number of converting journeys with this path.
    value : str or None
        Column with their total conversion value. If the default column is absent, value is 0;
        an empty cell is 0 where the row has no conversions.
    nulls : str or None
        Column with the number of non-converting journeys with this path (0 when absent).
    sep : str
        Separator between channels in ``path``.
    engine : str, optional
        Relational engine for the parsing and aggregation (``"duckdb"``, the default).

    Returns
    -------
    Journeys
        Unique paths (rows with the same path after cleaning are summed), in order of first
        appearance, without touch ages or milestones. ``.report`` accounts for every row.

    Raises
    ------
    InputError
        Missing column, empty input, empty path or channel name, a reserved channel name,
        a count that is missing, not a number, negative or infinite, or a separator that never
        occurs while another one does. The message names the row.

    Examples
    --------
    >>> import pandas as pd, engine
    >>> table = pd.DataFrame({"path": ["a > b", "b", " a>b "], "total_conversions": [1, 0, 2],
    ...                       "total_conversion_value": [5.0, 0.0, 3.0], "total_null": [0, 4, 1]})
    >>> journeys = engine.read_paths(table)
    >>> journeys.paths().tolist(), journeys.conversions.tolist(), journeys.nulls.tolist()
    (['a > b', 'b'], [3.0, 0.0], [1.0, 4.0])
    """
    name = source_name(source)
    if not sep or not sep.strip() and sep != "\t":
        raise InputError(f"separator {sep!r} is blank; give the string between channels, "
                         "e.g. sep='>'", source=name)
    arrow = load_table(source)
    value = _optional(arrow, value, "total_conversion_value")
    nulls = _optional(arrow, nulls, "total_null")
    require_columns(arrow, {"path": path, "conversions": conversions, "value": value,
                            "nulls": nulls}, name)
    con = backend.connect(engine)
    t = backend.table(arrow.select([path, conversions] + [c for c in (value, nulls) if c]
                                   + [ROW]), con)
    rows = _numbers(t, path, conversions, value, nulls)
    _check_rows(rows, path, conversions, value, nulls, sep, name, con)

    mapping, lists = _channel_lists(rows, path, sep, name, con)
    per_row = rows.mutate(_path=lists)
    merged = (per_row.group_by("_path")
              .aggregate(first=per_row[ROW].min(), n=per_row.count(),
                         conversions=per_row.conversions.sum(),
                         value=per_row.value.fill_null(0.0).sum(), nulls=per_row.nulls.sum())
              .order_by("first"))
    out = backend.fetch(merged, con)
    offsets, names = csr(out["_path"])
    channels, codes = encode_channels(names)
    n_rows = arrow.num_rows
    notes = []
    if out.num_rows < n_rows:
        notes.append(f"{n_rows - out.num_rows} rows repeated an earlier path and were summed "
                     "into it")
    if mapping:
        notes.append("channel names differing only in case merged: " + ", ".join(
            f"{k!r}->{v!r}" for k, v in sorted(mapping.items())))
    report = IngestReport(source=name, n_rows=n_rows, n_used=n_rows, notes=tuple(notes))
    return Journeys(channels=channels, offsets=offsets, codes=codes,
                    conversions=out["conversions"].to_numpy(), value=out["value"].to_numpy(),
                    nulls=out["nulls"].to_numpy(), report=report)


def _optional(arrow, column, default):
    """A measure column named by default may be absent (then 0); one named by the user may not."""
    if column is not None and column == default and column not in arrow.column_names:
        return None
    return column


def _numbers(t, path, conversions, value, nulls):
    """Per-row table with the raw cells kept beside their numeric parse."""
    def number(column):
        return t[column].cast("string").strip().try_cast("float64") if t[column].type().is_string() \
            else t[column].cast("float64")

    zero = ibis.literal(0.0)
    return t.select(
        ROW, path, raw_conversions=t[conversions].cast("string"), conversions=number(conversions),
        raw_value=t[value].cast("string") if value else ibis.literal("0"),
        value=number(value) if value else zero,
        raw_nulls=t[nulls].cast("string") if nulls else ibis.literal("0"),
        nulls=number(nulls) if nulls else zero)


def _check_rows(rows, path, conversions, value, nulls, sep, name, con):
    p = rows[path].cast("string")
    # lstrip() == "" is strip() == "" but stops at the first non-blank character; a right
    # strip walks the whole of every (long) path string.
    checks = {"path is empty": (path, p.isnull() | (p.lstrip() == ""))}
    for column, label, raw, number in ((conversions, "conversions", rows.raw_conversions,
                                        rows.conversions),
                                       (nulls, "nulls", rows.raw_nulls, rows.nulls),
                                       (value, "value", rows.raw_value, rows.value)):
        if column is None:
            continue
        missing = raw.isnull() | (raw.strip() == "")
        if label == "value":
            missing = missing & (rows.conversions > 0)
        checks[f"{label} is missing"] = (column, missing)
        checks[f"{label} is not a number"] = (column, raw.notnull() & (raw.strip() != "")
                                              & number.isnull())
        checks[f"{label} is NaN or infinite"] = (column, number.isnan() | number.isinf())
        checks[f"{label} is negative"] = (column, number < 0)
    aggregates = {f"c{i}": rows[ROW].min(where=flag) for i, (_, flag) in enumerate(checks.values())}
    aggregates["with_sep"] = p.contains(sep).sum()
    found = backend.fetch(rows.aggregate(**aggregates), con).to_pylist()[0]
    first_bad = [(found[f"c{i}"], message, column)
                 for i, (message, (column, _)) in enumerate(checks.items())
                 if found[f"c{i}"] is not None]
    if first_bad:
        row, message, column = min(first_bad)
        cell = backend.fetch(rows.filter(rows[ROW] == row).select(
            v=rows[column].cast("string") if column == path else
            {conversions: rows.raw_conversions, value: rows.raw_value,
             nulls: rows.raw_nulls}[column]), con)["v"][0].as_py()
        raise InputError(f"{message} ({cell!r})", source=name, column=column, row=row)
    if not found["with_sep"]:
        _check_separator(rows, path, sep, name, con)


def _check_separator(rows, path, sep, name, con):
    p = rows[path].cast("string")
    counts = backend.fetch(rows.aggregate(**{f"s{i}": p.contains(s).sum()
                                             for i, s in enumerate(_OTHER_SEPARATORS)}), con)
    used = [s for i, s in enumerate(_OTHER_SEPARATORS)
            if s != sep and counts[f"s{i}"][0].as_py()]
    if used:
        raise InputError(f"no path contains the separator {sep!r} but paths contain "
                         f"{used[0]!r}; pass sep={used[0]!r}", source=name, column=path)


def _channel_lists(rows, path, sep, name, con):
    """Check the channel names; return the case-variant mapping and each row's list of names.

    :func:`clean_name` depends only on the raw text between two separators, and
    ``clean_name(raw) == clean_name(raw.strip())``, so names are cleaned, checked and counted
    once per distinct raw piece (a small table) rather than once per touch. The per-row lists
    then substitute the few raw pieces (else the few trimmed pieces) that cleaning or case
    merging changes: regular expressions, and even a trim, over every touch cost more.
    """
    split = rows[path].cast("string").split(sep)
    pieces = rows.select(ROW, raw=split).unnest("raw")
    distinct = pieces.group_by("raw").aggregate(n=pieces.count(), first=pieces[ROW].min())
    found = backend.fetch(distinct.select("raw", "n", "first", trimmed=distinct.raw.strip(),
                                          channel=clean_name(distinct.raw)), con)
    channel, first = found["channel"], found["first"]
    checks = [(pc.equal(channel, ""), "a channel name between separators is empty"),
              (pc.is_in(channel, pa.array(RESERVED_CHANNELS)),
               f"uses a reserved channel name (one of {', '.join(RESERVED_CHANNELS)})")]
    if sep.strip() == ">":
        checks.append((pc.match_substring_regex(channel, r"[-=]$"),
                       "a channel name ends in '-' or '=' before the separator '>'; the paths "
                       "look separated by '->' or '=>': pass that as sep"))
    for bad, message in checks:
        row = pc.min(pc.filter(first, bad)).as_py()
        if row is not None:
            raise InputError(message, source=name, column=path, row=row)
    vocabulary = found.group_by("channel").aggregate([("n", "sum")])
    mapping = case_variants(vocabulary["channel"].to_pylist(), vocabulary["n_sum"].to_pylist())
    final = [mapping.get(clean, clean) for clean in channel.to_pylist()]
    trimmed = split.map(lambda c: c.strip())
    for keys, pieces in ((found["raw"], split), (found["trimmed"], trimmed)):
        fixes = {key: name for key, name in zip(keys.to_pylist(), final) if name != key}
        if len(fixes) <= _MAX_SUBSTITUTIONS:
            break
    else:
        names = split.map(clean_name)
        return mapping, names.map(lambda c: c.substitute(mapping)) if mapping else names
    return mapping, pieces.map(lambda c: c.substitute(fixes)) if fixes else pieces
