"""Read a path table (ChannelAttribution's layout) into :class:`engine.Journeys`."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InputError
from engine.ingest.queries import case_variants, not_finite
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
    arrow = load_table(source, numeric=(conversions, value, nulls))
    value = _optional(arrow, value, "total_conversion_value")
    nulls = _optional(arrow, nulls, "total_null")
    require_columns(arrow, {"path": path, "conversions": conversions, "value": value,
                            "nulls": nulls}, name)
    n_rows = arrow.num_rows
    numbers = {key: _fast_number(arrow, column) if column else np.zeros(n_rows)
               for key, column in (("conversions", conversions), ("value", value),
                                   ("nulls", nulls))}
    texts = _path_texts(arrow, path, name)
    if not _looks_valid(numbers, texts):
        _explain(arrow, path, conversions, value, nulls, sep, name, engine)

    offsets, raw, parts = _split_paths(texts, sep)
    if offsets[-1] == n_rows:  # one piece per path: the separator never occurs
        _check_separator(texts, path, sep, name)
    channels, codes, mapping = _channels(raw, parts, offsets, path, sep, name, texts)
    notes = []
    if mapping:
        notes.append("channel names differing only in case merged: " + ", ".join(
            f"{k!r}->{v!r}" for k, v in sorted(mapping.items())))
    report = IngestReport(source=name, n_rows=n_rows, n_used=n_rows, notes=tuple(notes))
    for array in (offsets, codes):
        array.flags.writeable = False  # handed over to Journeys, which then need not copy
    journeys = Journeys(channels=channels, offsets=offsets, codes=codes,
                        conversions=numbers["conversions"],
                        value=np.nan_to_num(numbers["value"]), nulls=numbers["nulls"],
                        report=report)
    del arrow, texts, parts
    # Give the parse's buffers back to the system now, not when Arrow's pool gets round to it:
    # they are most of what reading took, and fitting comes next.
    pa.default_memory_pool().release_unused()
    if not _has_repeats(journeys):
        return journeys
    journeys = journeys.unique(engine=engine)
    merged = (f"{n_rows - journeys.n_journeys} rows repeated an earlier path and were summed "
              "into it")
    return replace(journeys, report=replace(report, notes=(merged, *report.notes)))


def _path_texts(arrow, path, name) -> pa.ChunkedArray:
    """The path column as text; an error if it holds something else (lists, binary data)."""
    try:
        return arrow[path].cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise InputError(f"paths must be text, not {arrow[path].type}", source=name,
                         column=path) from None


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
    value present where there are conversions, no path missing (blank paths are caught with
    empty channel names)."""
    conversions, value, nulls = numbers["conversions"], numbers["value"], numbers["nulls"]
    if any(array is None for array in numbers.values()):
        return False
    for array in (conversions, nulls):
        if not (np.isfinite(array).all() and (array >= 0).all()):
            return False
    if np.any((conversions > 0) & np.isnan(value)) or np.any(np.isinf(value)) \
            or np.any(value < 0):
        return False
    return texts.null_count == 0


def _explain(arrow, path, conversions, value, nulls, sep, name, engine) -> None:
    """Find and raise the first bad cell, naming its row (a relational query: the slow path,
    run only when the fast parse saw something wrong)."""
    from engine.ingest import backend

    con = backend.connect(engine)
    t = backend.table(arrow.select([path, conversions] + [c for c in (value, nulls) if c]
                                   + [ROW]), con)
    _check_rows(_numbers(t, path, conversions, value, nulls), path, conversions, value, nulls,
                sep, name, con)
    raise InputError("a count or value is NaN where only an empty cell is allowed", source=name)


_HASH_BASE = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64
_HASH_INVERSE = pow(_HASH_BASE, -1, 2 ** 64)
_HASH_BLOCK = 1 << 20  # touches hashed at a time: the work arrays stay small


def _has_repeats(journeys: Journeys) -> bool:
    """Whether two rows may hold the same path, by a vectorised polynomial hash of each row's
    codes (modulo 2**64); exact when all hashes differ, and equal hashes go to the relational
    merge, which is exact.

    Rows are hashed in blocks of about ``_HASH_BLOCK`` touches. In a block, touch ``i`` weighs
    ``B**i``; a row's sum is brought back to its own first touch by multiplying with
    ``B**-start``.
    """
    n = journeys.n_journeys
    if n < 2:
        return False
    offsets, codes = journeys.offsets, journeys.codes
    bounds = np.unique(np.searchsorted(offsets, np.arange(0, offsets[-1], _HASH_BLOCK)))
    bounds = np.append(bounds[bounds < n], n)
    widest = int(np.diff(offsets[bounds]).max())
    with np.errstate(over="ignore"):
        powers = np.full(widest, np.uint64(_HASH_BASE))
        powers[0] = 1
        np.multiply.accumulate(powers, out=powers)
        inverse = np.full(widest, np.uint64(_HASH_INVERSE))
        inverse[0] = 1
        np.multiply.accumulate(inverse, out=inverse)
        hashes = np.empty(n, dtype=np.uint64)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            first, last = offsets[lo], offsets[hi]
            terms = codes[first:last].astype(np.uint64)
            terms += np.uint64(1)
            terms *= powers[:last - first]
            starts = offsets[lo:hi] - first
            block = np.add.reduceat(terms, starts)
            block *= inverse[starts]
            hashes[lo:hi] = block
        hashes ^= journeys.lengths.astype(np.uint64)
    hashes.sort()
    return bool(np.any(hashes[1:] == hashes[:-1]))


def _split_chunk(chunk: pa.Array, sep: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """One chunk of paths: touch counts per path, distinct raw pieces, piece index per touch."""
    lists = pc.split_pattern(chunk, sep)
    pieces = pc.dictionary_encode(pc.list_flatten(lists))
    return (np.diff(lists.offsets.to_numpy()), pieces.dictionary.to_pylist(),
            pieces.indices.to_numpy(zero_copy_only=False))


def _split_paths(texts: pa.ChunkedArray, sep: str):
    """Split every path at ``sep``, chunk by chunk on a few threads (Arrow kernels release the
    GIL), and number the distinct raw pieces across chunks.

    Returns the CSR offsets, the distinct raw pieces, and per chunk ``(touch offset, piece ids
    of its touches in the global numbering)`` as ``(start, remap, local index)``.
    """
    chunks = [c for c in texts.chunks if len(c)]
    workers = max(1, min(len(chunks), os.cpu_count() or 1, 8))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            split = list(pool.map(_split_chunk, chunks, [sep] * len(chunks)))
    else:
        split = [_split_chunk(c, sep) for c in chunks]
    number: dict[str, int] = {}
    lengths = np.concatenate([counts for counts, _, _ in split])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    parts, touch = [], 0
    for counts, dictionary, index in split:
        remap = np.array([number.setdefault(piece, len(number)) for piece in dictionary],
                         dtype=np.int32)
        parts.append((touch, remap, index))
        touch += len(index)
    return offsets, list(number), parts


_WHITESPACE = re.compile(r"[\t\n\f\r ]+")


def _channels(raw: list[str], parts, offsets: np.ndarray, path, sep, name, texts):
    """Channel vocabulary and codes from the raw pieces between separators.

    Names are cleaned (as :func:`engine.ingest.queries.clean_name`), checked and merged across
    case variants once per distinct raw piece, not once per touch.
    """
    cleaned = [_WHITESPACE.sub(" ", piece).strip(" ") for piece in raw]

    def first_row(entry: int) -> int:
        for start, remap, index in parts:
            local = np.flatnonzero(remap == entry)
            if len(local):
                hits = np.flatnonzero(np.isin(index, local))
                if len(hits):
                    return int(np.searchsorted(offsets, start + hits[0], side="right"))
        raise AssertionError("a piece with no touch")

    for message, bad in (
            ("a channel name between separators is empty", lambda c: c == ""),
            (f"uses a reserved channel name (one of {', '.join(RESERVED_CHANNELS)})",
             lambda c: c in RESERVED_CHANNELS),
            ("a channel name ends in '-' or '=' before the separator '>'; the paths look "
             "separated by '->' or '=>': pass that as sep",
             lambda c: sep.strip() == ">" and c[-1:] in ("-", "="))):
        hits = [i for i, c in enumerate(cleaned) if bad(c)]
        if hits:
            row = min(first_row(i) for i in hits)
            cell = texts[row - 1].as_py()
            if not cell.strip():
                message = f"path is empty ({cell!r})"
            raise InputError(message, source=name, column=path, row=row)
    counts = np.zeros(len(raw))
    for _, remap, index in parts:
        np.add.at(counts, remap, np.bincount(index, minlength=len(remap)))
    totals: dict[str, int] = {}
    for name_, count in zip(cleaned, counts.tolist()):
        totals[name_] = totals.get(name_, 0) + count
    mapping = case_variants(list(totals), list(totals.values()))
    final = [mapping.get(c, c) for c in cleaned]
    channels = tuple(sorted(set(final)))
    code_of = {c: i for i, c in enumerate(channels)}
    lookup = np.array([code_of[c] for c in final], dtype=np.int32)
    codes = np.empty(int(offsets[-1]), dtype=np.int32)
    for start, remap, index in parts:
        np.take(lookup[remap], index, out=codes[start:start + len(index)])
    return channels, codes, mapping


def _optional(arrow, column, default):
    """A measure column named by default may be absent (then 0); one named by the user may not."""
    if column is not None and column == default and column not in arrow.column_names:
        return None
    return column


def _numbers(t, path, conversions, value, nulls):
    """Per-row table with the raw cells kept beside their numeric parse."""
    import ibis

    def number(column):
        kind = t[column].type()
        if kind.is_string():
            return t[column].strip().try_cast("float64")
        if kind.is_numeric() or kind.is_boolean() or kind.is_null():
            return t[column].cast("float64")
        return ibis.null("float64")  # dates, lists...: not a number

    zero = ibis.literal(0.0)
    return t.select(
        ROW, path, raw_conversions=t[conversions].cast("string"), conversions=number(conversions),
        raw_value=t[value].cast("string") if value else ibis.literal("0"),
        value=number(value) if value else zero,
        raw_nulls=t[nulls].cast("string") if nulls else ibis.literal("0"),
        nulls=number(nulls) if nulls else zero)


def _check_rows(rows, path, conversions, value, nulls, sep, name, con):
    from engine.ingest import backend

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
        checks[f"{label} is NaN or infinite"] = (column, not_finite(number))
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
