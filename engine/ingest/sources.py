"""Load any supported source as a table with a ``_row`` column (1-based data row).

Sources: a pandas DataFrame, a pyarrow Table, a path to CSV (any common delimiter, optionally
gzip-compressed) or Parquet, or a ``pyspark.sql.DataFrame``. CSV columns are read as text so that
validation can name the rows that do not parse instead of failing the whole file or guessing.

:func:`load_table` reads into Arrow (small inputs, path tables). :func:`open_source` gives the
relational engine a table without reading it here when it can: DuckDB scans a Parquet file
itself (streaming, spilling to disk beyond its memory limit), Spark reads Parquet and Spark
DataFrames on its executors.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.errors import InputError

ROW = "_row"
_DELIMITERS = ",;\t|"
_HEAD_BYTES = 65536
# Arrow's CSV reader needs a whole row inside one block; a longer row is read again with larger
# blocks, up to this size.
_MAX_BLOCK = 1 << 28
# A NUL character, or a byte that is not UTF-8 as decoded with "surrogateescape".
_NOT_TEXT = re.compile("[\x00\udc80-\udcff]")


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
    elif is_spark_frame(source):
        table = source.toArrow()
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
    table = _scannable(table)
    return table.append_column(ROW, pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))


def _scannable(table: pa.Table) -> pa.Table:
    """Half floats and 256-bit decimals, which the query engine cannot scan, as float64."""
    for i, field in enumerate(table.schema):
        if pa.types.is_float16(field.type) or pa.types.is_decimal256(field.type):
            table = table.set_column(i, field.name, table[i].cast(pa.float64()))
    return table


@dataclass(frozen=True)
class Source:
    """An input opened on a relational engine: its name for messages, its columns (``_row``
    included), its number of data rows, and the Ibis table."""

    name: str
    column_names: list[str]
    num_rows: int
    table: object


def is_spark_frame(source) -> bool:
    """Whether ``source`` is a ``pyspark.sql.DataFrame`` (without importing pyspark)."""
    return type(source).__module__.startswith("pyspark.sql") and hasattr(source, "schema")


def _is_parquet(source) -> bool:
    return isinstance(source, (str, Path)) and Path(source).suffix.lower() in (".parquet", ".pq")


def open_source(source, con, engine: str) -> Source:
    """``source`` as an Ibis table on ``con`` (engine ``"duckdb"`` or ``"spark"``) with ``_row``.

    Parquet files are scanned by the engine, Spark DataFrames stay on Spark; anything else is
    read with :func:`load_table` and handed over from memory.

    Raises
    ------
    InputError
        As :func:`load_table`.
    """
    import ibis

    name = source_name(source)
    if is_spark_frame(source):
        if engine != "spark":
            raise InputError("a Spark DataFrame needs engine='spark'", source=name)
        return _spark_source(source, name, con)
    if _is_parquet(source):
        path = Path(source)
        schema = _parquet_schema(path, name)
        if engine == "spark":
            from engine.ingest.backend import spark_session

            return _spark_source(spark_session().read.parquet(str(path.resolve())), name, con)
        _check_headers(schema.names, name)
        if ROW in schema.names:
            raise InputError(f"column name {ROW!r} is reserved", source=name, column=ROW)
        rows = pq.ParquetFile(path).metadata.num_rows
        if rows == 0:
            raise InputError("no data rows", source=name)
        if "file_row_number" in schema.names:
            raise InputError("column name 'file_row_number' is reserved in Parquet input",
                             source=name, column="file_row_number")
        scan = con.read_parquet(path, table_name=f"engine_source_{uuid.uuid4().hex}",
                                file_row_number=True)
        table = scan.mutate(**{ROW: scan.file_row_number + 1}).drop("file_row_number")
        return Source(name, [*schema.names, ROW], rows, table)
    arrow = load_table(source)
    return Source(name, arrow.column_names, arrow.num_rows, ibis.memtable(arrow))


def _parquet_schema(path: Path, name: str) -> pa.Schema:
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError("file not found or empty", source=name)
    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {_first_line(exc)}", source=name) \
            from None


def _spark_source(frame, name: str, con) -> Source:
    """A Spark DataFrame with ``_row``: its rows numbered 1, 2, ... in the frame's order.

    ``monotonically_increasing_id`` holds the partition in its upper bits and the position in
    the partition in the lower 33; one small aggregate gives each partition's first row.
    """
    from pyspark.sql import functions as F

    columns = list(frame.columns)
    _check_headers(columns, name)
    if ROW in columns:
        raise InputError(f"column name {ROW!r} is reserved", source=name, column=ROW)
    ids = frame.withColumn("_id", F.monotonically_increasing_id()).withColumn(
        "_part", F.shiftright("_id", 33))
    sizes = sorted((r["_part"], r["count"]) for r in ids.groupBy("_part").count().collect())
    rows = sum(size for _, size in sizes)
    if rows == 0:
        raise InputError("no data rows", source=name)
    firsts, total = [], 0
    for part, size in sizes:
        firsts.append((part, total))
        total += size
    offsets = ids.sparkSession.createDataFrame(firsts, "_part long, _first long")
    numbered = ids.join(F.broadcast(offsets), "_part").withColumn(
        ROW, F.col("_first") + F.col("_id").bitwiseAND((1 << 33) - 1) + 1).select(
        *[F.col(f"`{c}`") for c in columns], ROW)
    view = f"engine_source_{uuid.uuid4().hex}"
    numbered.createOrReplaceTempView(view)
    return Source(name, [*columns, ROW], rows, con.table(view))


def _from_pandas(frame: pd.DataFrame, name: str) -> pa.Table:
    _check_headers([str(c) for c in frame.columns], name)
    columns = {}
    for column in frame.columns:
        values = frame[column]
        try:
            columns[str(column)] = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
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
    if _is_parquet(path):
        return _parquet_schema(path, name).names
    suffixes = [s.lower() for s in path.suffixes]
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
            head = handle.read(_HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read the file: {_first_line(exc)}", source=name) from None
    lines = head.decode("utf-8-sig", errors="replace").splitlines()
    if not lines or not lines[0].strip():
        raise InputError("file is empty or its first line (the header) is blank", source=name)
    if len(lines) == 1 and len(head) == _HEAD_BYTES:
        raise InputError(f"the first line is longer than {_HEAD_BYTES // 1024} KiB; is this a "
                         "CSV file with a header?", source=name)
    delimiter = _sniff_delimiter(lines[:50])
    if b"\x00" in head or not _utf8(head):
        raise _not_text(path, name, delimiter, compressed)
    header = next(csv.reader(io.StringIO(lines[0]), delimiter=delimiter))
    _check_headers(header, name)
    return header, delimiter, lines


def _utf8(head: bytes) -> bool:
    """Whether the first bytes of a file are UTF-8 (a character cut at their end is fine)."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return len(head) == _HEAD_BYTES and exc.start >= len(head) - 3
    return True


def _read_csv(path: Path, name: str, *, compressed: bool, numeric=()) -> pa.Table:
    header, delimiter, lines = _csv_head(path, name, compressed=compressed)
    if len(lines) < 2 or not any(line.strip() for line in lines[1:]):
        raise InputError("no data rows (only a header)", source=name)
    numbers = {c for c in numeric if c} & set(header)
    try:
        table = _parse_csv(path, header, delimiter, numbers)
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:
        raise _csv_error(exc, path, name, delimiter, len(header), compressed) from None
    for column in table.columns:
        if pa.types.is_string(column.type) and _has_nul(column):
            raise _not_text(path, name, delimiter, compressed)
    return table


def _parse_csv(path: Path, header: list[str], delimiter: str, numbers: set[str]) -> pa.Table:
    """Arrow's parse of the rows; ``numbers`` columns as floats if all of their cells parse.

    If a cell of them does not, the whole file is read as text, so that validation can name
    the bad cell."""
    block_size = 1 << 20
    while True:
        try:
            return pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(column_names=header, skip_rows=1,
                                               block_size=block_size),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.float64() if c in numbers else pa.string()
                                  for c in header},
                    null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            if "straddl" in str(exc) and block_size < _MAX_BLOCK:
                block_size *= 16  # a row longer than a block
            elif numbers:
                numbers = set()
            else:
                raise


def _csv_error(exc: BaseException, path: Path, name: str, delimiter: str, width: int,
               compressed: bool) -> InputError:
    """The one-line error for a CSV file that Arrow could not parse, naming the row if it can."""
    message = _first_line(exc)
    if "UTF8" in message or "utf-8" in message.lower() or "utf8" in message.lower():
        return _not_text(path, name, delimiter, compressed)
    if "Expected" in message and "columns" in message:
        row, _ = _first_row(path, delimiter, compressed, lambda fields: len(fields) != width)
        detail = message.removeprefix("CSV parse error: ").split(":")[0]
        return InputError(f"malformed CSV: {detail.lower()}", source=name, row=row)
    if "straddl" in message:
        return InputError(f"a row is longer than {_MAX_BLOCK >> 20} MiB", source=name)
    if not isinstance(exc, pa.ArrowInvalid):
        message = f"cannot read the file: {message}"
    return InputError(message, source=name)


def _not_text(path: Path, name: str, delimiter: str, compressed: bool) -> InputError:
    """The error for a file that is not UTF-8 text, naming the first row that is not."""
    row, fields = _first_row(path, delimiter, compressed,
                             lambda fields: any(_NOT_TEXT.search(f) for f in fields))
    nul = fields is not None and any("\x00" in f for f in fields)
    what = "has NUL bytes: not UTF-8 text (UTF-16? binary?)" if nul else "is not UTF-8 text"
    subject = "the header" if row == 0 else "the row" if row else "the file"
    return InputError(f"{subject} {what}; re-save the file as UTF-8", source=name,
                      row=row or None)


def _has_nul(column: pa.ChunkedArray) -> bool:
    """Whether a text column holds a NUL character (a scan of its bytes, not per value)."""
    for chunk in column.chunks:
        offsets, data = chunk.buffers()[1:3]
        if data is None or len(chunk) == 0:
            continue
        bounds = np.frombuffer(offsets, np.int32, len(chunk) + 1, 4 * chunk.offset)
        start, stop = int(bounds[0]), int(bounds[-1])
        if stop > start and np.frombuffer(data, np.uint8, stop - start, start).min() == 0:
            return True
    return False


def _first_row(path: Path, delimiter: str, compressed: bool, bad) -> tuple[int | None, list]:
    """The number of the first record (0: the header) whose fields are ``bad``, and the fields
    (error path only; ``(None, None)`` if none is, or the file cannot be read to the end).

    Blank lines are not counted, as Arrow's reader skips them."""
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape",
                    newline="") as handle:
            records = (fields for fields in csv.reader(handle, delimiter=delimiter) if fields)
            for number, fields in enumerate(records):
                if bad(fields):
                    return number, fields
    except (OSError, EOFError, zlib.error, csv.Error):
        pass  # unreadable further on, or a field over csv's size limit: the row stays unknown
    return None, None


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
