"""Read a path table (ChannelAttribution's layout) into :class:`engine.Journeys`."""

from __future__ import annotations

import re
from dataclasses import replace

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InputError
from engine.ingest import backend
from engine.ingest.queries import case_variants
from engine.ingest.report import IngestReport
from engine.ingest.sources import ROW, load_table, require_columns, source_name
from engine.journeys import RESERVED_CHANNELS, Journeys

# Longer separators first: "a -> b" must suggest "->", not ">" (which would leave "a -").
_OTHER_SEPARATORS = ("->", "=>", ">", "|", ",", ";", "/", "+")


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
    n_rows = arrow.num_rows
    numbers = {key: _fast_number(arrow, column) if column else np.zeros(n_rows)
               for key, column in (("conversions", conversions), ("value", value),
                                   ("nulls", nulls))}
    texts = arrow[path].cast(pa.string()).combine_chunks()
    if not _looks_valid(numbers, texts):
        _explain(arrow, path, conversions, value, nulls, sep, name, engine)
    if not pc.any(pc.match_substring(texts, sep)).as_py():
        _check_separator(texts, path, sep, name)

    lists = pc.split_pattern(texts, sep)
    offsets = lists.offsets.to_numpy().astype(np.int64)
    pieces = pc.dictionary_encode(pc.list_flatten(lists))
    channels, codes, mapping = _channels(pieces, offsets, path, sep, name)
    notes = []
    if mapping:
        notes.append("channel names differing only in case merged: " + ", ".join(
            f"{k!r}->{v!r}" for k, v in sorted(mapping.items())))
    report = IngestReport(source=name, n_rows=n_rows, n_used=n_rows, notes=tuple(notes))
    journeys = Journeys(channels=channels, offsets=offsets - offsets[0], codes=codes,
                        conversions=numbers["conversions"],
                        value=np.nan_to_num(numbers["value"]), nulls=numbers["nulls"],
                        report=report)
    if not _has_repeats(journeys):
        return journeys
    journeys = journeys.unique(engine=engine)
    merged = (f"{n_rows - journeys.n_journeys} rows repeated an earlier path and were summed "
              "into it")
    return replace(journeys, report=replace(report, notes=(merged, *report.notes)))


def _fast_number(arrow, column) -> np.ndarray | None:
    """A count or value column as floats (missing = NaN); None when some cell is not a number."""
    values = arrow[column].combine_chunks()
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = pc.utf8_trim_whitespace(values)
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)
    try:
        return values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _looks_valid(numbers, texts) -> bool:
    """True when no cell needs explaining: every count present, finite and non-negative, every
    value present where there are conversions, every path with a non-blank character."""
    conversions, value, nulls = numbers["conversions"], numbers["value"], numbers["nulls"]
    if any(array is None for array in numbers.values()):
        return False
    for array in (conversions, nulls):
        if not (np.isfinite(array).all() and (array >= 0).all()):
            return False
    if np.any((conversions > 0) & np.isnan(value)) or np.any(np.isinf(value)) \
            or np.any(value < 0):
        return False
    return texts.null_count == 0 and pc.all(pc.match_substring_regex(texts, r"\S")).as_py()


def _explain(arrow, path, conversions, value, nulls, sep, name, engine) -> None:
    """Find and raise the first bad cell, naming its row (a relational query: the slow path,
    run only when the fast parse saw something wrong)."""
    con = backend.connect(engine)
    t = backend.table(arrow.select([path, conversions] + [c for c in (value, nulls) if c]
                                   + [ROW]), con)
    _check_rows(_numbers(t, path, conversions, value, nulls), path, conversions, value, nulls,
                sep, name, con)
    raise InputError("a count or value is NaN where only an empty cell is allowed", source=name)


def _has_repeats(journeys: Journeys) -> bool:
    """Whether two rows may hold the same path: a hash of each row's channel sequence
    (vectorised), exact when all hashes differ; equal hashes go to the relational merge."""
    if journeys.n_journeys < 2:
        return False
    position = journeys.position
    weights = np.random.default_rng(0).integers(1, 2**63, int(position.max()) + 1,
                                                dtype=np.uint64)
    with np.errstate(over="ignore"):
        terms = (journeys.codes.astype(np.uint64) + np.uint64(1)) * weights[position]
        hashes = np.add.reduceat(terms, journeys.offsets[:-1]) ^ journeys.lengths.astype(
            np.uint64)
    hashes.sort()
    return bool(np.any(hashes[1:] == hashes[:-1]))


_WHITESPACE = re.compile(r"[\t\n\f\r ]+")


def _channels(pieces: pa.DictionaryArray, offsets: np.ndarray, path, sep, name):
    """Channel vocabulary and codes from the dictionary-encoded pieces between separators.

    Names are cleaned (as :func:`engine.ingest.queries.clean_name`), checked and merged across
    case variants once per distinct raw piece, not once per touch.
    """
    raw = pieces.dictionary.to_pylist()
    index = pieces.indices.to_numpy(zero_copy_only=False)
    cleaned = [_WHITESPACE.sub(" ", piece).strip(" ") for piece in raw]

    def first_row(entry: int) -> int:
        touch = int(np.flatnonzero(index == entry)[0])
        return int(np.searchsorted(offsets, offsets[0] + touch, side="right"))

    for message, bad in (
            ("a channel name between separators is empty", lambda c: c == ""),
            (f"uses a reserved channel name (one of {', '.join(RESERVED_CHANNELS)})",
             lambda c: c in RESERVED_CHANNELS),
            ("a channel name ends in '-' or '=' before the separator '>'; the paths look "
             "separated by '->' or '=>': pass that as sep",
             lambda c: sep.strip() == ">" and c[-1:] in ("-", "="))):
        hits = [i for i, c in enumerate(cleaned) if bad(c)]
        if hits:
            raise InputError(message, source=name, column=path,
                             row=min(first_row(i) for i in hits))
    counts = np.bincount(index, minlength=len(raw))
    totals: dict[str, int] = {}
    for name_, count in zip(cleaned, counts.tolist()):
        totals[name_] = totals.get(name_, 0) + count
    mapping = case_variants(list(totals), list(totals.values()))
    final = [mapping.get(c, c) for c in cleaned]
    channels = tuple(sorted(set(final)))
    code_of = {c: i for i, c in enumerate(channels)}
    lookup = np.array([code_of[c] for c in final], dtype=np.int32)
    return channels, lookup[index], mapping


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


def _check_separator(texts, path, sep, name):
    """No path has ``sep``: fine for one-channel paths, an error if another separator is used."""
    for other in _OTHER_SEPARATORS:
        if other != sep and pc.any(pc.match_substring(texts, other)).as_py():
            raise InputError(f"no path contains the separator {sep!r} but paths contain "
                             f"{other!r}; pass sep={other!r}", source=name, column=path)
