"""Load any supported source into one Arrow table with a ``_row`` column (1-based data row).

Sources: a pandas DataFrame, a pyarrow Table, or a path to CSV (any common delimiter, optionally
gzip-compressed) or Parquet. CSV columns are read as text so that validation can name the rows that
do not parse instead of failing the whole file or guessing.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.errors import InputError

ROW = "_row"
_DELIMITERS = ",;\t|"


def source_name(source) -> str:
    """How a source is named in messages: its file name, or the kind of in-memory table."""
    if isinstance(source, (str, Path)):
        return str(source)
    return type(source).__name__


def load_table(source, numeric=()) -> pa.Table:
    """Read ``source`` into an Arrow table and append ``_row`` (1-based data row number).

    ``numeric`` names CSV columns that are probably numbers: they are parsed as floats
    directly, which is faster; if any cell of them does not parse, the whole file is read as
    text instead, so that validation can name the bad cell.

    Raises
    ------
    InputError
        The file is missing, empty, not valid UTF-8, ragged, or has duplicate or empty headers.
    """
    name = source_name(source)
    if isinstance(source, pd.DataFrame):
        table = _from_pandas(source, name)
    elif isinstance(source, pa.Table):
        table = source
    elif isinstance(source, (str, Path)):
        table = _read_file(Path(source), name, numeric)
    else:
        raise InputError(f"unsupported input type {type(source).__name__}; give a file path, "
                         "a pandas DataFrame or a pyarrow Table", source=name)
    _check_headers([str(c) for c in table.column_names], name)
    if ROW in table.column_names:
        raise InputError(f"column name {ROW!r} is reserved", source=name, column=ROW)
    if table.num_rows == 0:
        raise InputError("no data rows", source=name)
    return table.append_column(ROW, pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))


def _from_pandas(frame: pd.DataFrame, name: str) -> pa.Table:
    _check_headers([str(c) for c in frame.columns], name)
    columns = {}
    for column in frame.columns:
        values = frame[column]
        try:
            columns[str(column)] = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Mixed types in one object column (numbers and text): keep every value as text so
            # validation can name the rows that do not parse.
            text = values.map(lambda v: None if pd.isna(v) else str(v), na_action="ignore")
            columns[str(column)] = pa.array(text.astype(object), type=pa.string(),
                                            from_pandas=True)
    return pa.table(columns)


def column_names(source) -> list[str]:
    """The column names of a file (its header, or Parquet schema) without reading its rows.

    Raises
    ------
    InputError
        The file is missing, empty or unreadable.
    """
    path, name = Path(source), source_name(source)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError("file not found or empty", source=name)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        try:
            return pq.read_schema(path).names
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"not a readable Parquet file: {_first_line(exc)}",
                             source=name) from None
    header, _, _ = _csv_head(path, name, compressed=bool(suffixes) and suffixes[-1] == ".gz")
    return header


def _read_file(path: Path, name: str, numeric=()) -> pa.Table:
    if not path.exists():
        raise InputError("file not found", source=name)
    if path.is_dir():
        raise InputError("is a directory, not a file", source=name)
    if path.stat().st_size == 0:
        raise InputError("file is empty", source=name)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"not a readable Parquet file: {_first_line(exc)}",
                             source=name) from None
    return _read_csv(path, name, compressed=bool(suffixes) and suffixes[-1] == ".gz",
                     numeric=numeric)


def _csv_head(path: Path, name: str, *, compressed: bool) -> tuple[list[str], str, list[str]]:
    """The header, the delimiter and the first lines of a CSV file."""
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(65536)
    except OSError as exc:
        raise InputError(f"cannot read the file: {_first_line(exc)}", source=name) from None
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            raise InputError(f"not UTF-8 text (invalid byte at offset {exc.start}); "
                             "re-save the file as UTF-8", source=name) from None
        text = head[: exc.start].decode("utf-8-sig")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InputError("file is empty or its first line (the header) is blank", source=name)
    delimiter = _sniff_delimiter(lines[:50])
    header = next(csv.reader(io.StringIO(lines[0]), delimiter=delimiter))
    _check_headers(header, name)
    return header, delimiter, lines


def _read_csv(path: Path, name: str, *, compressed: bool, numeric=()) -> pa.Table:
    header, delimiter, lines = _csv_head(path, name, compressed=compressed)
    if len(lines) < 2 or not any(line.strip() for line in lines[1:]):
        raise InputError("no data rows (only a header)", source=name)

    def read(numbers):
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.float64() if c in numbers else pa.string() for c in header},
                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False),
        )

    numbers = {c for c in numeric if c} & set(header)
    if numbers:
        try:
            return read(numbers)
        except (pa.ArrowInvalid, UnicodeDecodeError):
            pass  # read again as text: the errors below, or validation, name the bad cell
    try:
        return read(set())
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        message = _first_line(exc)
        if "UTF8" in message or "utf-8" in message.lower() or "utf8" in message.lower():
            message = "not UTF-8 text; re-save the file as UTF-8"
        elif "Expected" in message and "columns" in message:
            row = _ragged_row(path, delimiter, len(header), compressed)
            detail = message.removeprefix("CSV parse error: ").split(":")[0]
            raise InputError(f"malformed CSV: {detail.lower()}", source=name, row=row) from None
        raise InputError(message, source=name) from None


def _ragged_row(path: Path, delimiter: str, width: int, compressed: bool) -> int | None:
    """The first data row whose field count differs from the header's (error path only)."""
    opener = gzip.open if compressed else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        next(reader, None)
        for number, fields in enumerate(reader, start=1):
            if fields and len(fields) != width:
                return number
    return None


def _sniff_delimiter(lines: list[str]) -> str:
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in _DELIMITERS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _check_headers(header: list[str], name: str) -> None:
    blank = [i + 1 for i, h in enumerate(header) if not str(h).strip()]
    if blank:
        raise InputError(f"header cell {blank[0]} is empty; every column needs a name", source=name)
    duplicated = [h for h, n in Counter(header).items() if n > 1]
    if duplicated:
        raise InputError(f"duplicate column name {duplicated[0]!r} in the header", source=name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def require_columns(table: pa.Table, wanted: dict[str, str | None], name: str) -> None:
    """Raise if a required column is absent, listing the columns that exist.

    ``wanted`` maps the keyword argument that names the column (``"path"``) to the column asked
    for (``None`` = not used); the message tells which keyword to change.
    """
    have = [c for c in table.column_names if c != ROW]
    for keyword, column in wanted.items():
        if column is not None and column not in have:
            shown = ", ".join(repr(c) for c in have[:20])
            raise InputError(f"missing {keyword} column (found: {shown}); name the right "
                             f"column with {keyword}=...",
                             source=name, column=column)
