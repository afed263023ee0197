"""Hardening: random and malformed input to the readers, and outputs written whole or not at all.

Whatever the input, ``read_events`` and ``read_paths`` either raise a one-line
:class:`engine.InputError` or return journeys whose report accounts for every input row and whose
totals match the rows used. A file the command line writes appears whole or not at all: a write
that fails half-way leaves no partial file, and an older file as it was.
"""

from __future__ import annotations

import csv
import gzip
import math
import re
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import engine
from engine.cli import main
from engine.journeys import RESERVED_CHANNELS

EVENT_COLUMNS = ["person_id", "timestamp", "channel", "event_type", "revenue"]
PATH_COLUMNS = ["path", "total_conversions", "total_conversion_value", "total_null"]
# What both readers take for whitespace in channel names (ASCII only, as SQL's \s).
SPACE = "\t\n\f\r "
# read_events runs a dozen queries per call: fewer examples of it keep the module quick.
FUZZ_EVENTS, FUZZ_PATHS = (
    settings(max_examples=n, deadline=None,
             suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    for n in (40, 60))

# -- strategies ----------------------------------------------------------------------------------
# Each cell is drawn from a (good, bad) pair. Half of the examples are clean, so that results
# are checked as often as errors; in the other half about one cell in four is bad.

# NUL characters make a whole CSV file unreadable (tested on their own below), and reserved
# channel names are an error for the whole input: both would hide everything else.
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=5)
IDS = (st.sampled_from(["u1", "u2", "U1", " u1", "ü", "用户", "a,b", 'q"x']),
       st.one_of(st.none(), TEXT, st.sampled_from(["", " "])))
TIMES = st.datetimes(min_value=datetime(2023, 12, 1), max_value=datetime(2024, 2, 1))
TIMESTAMPS = (
    st.builds(lambda t, sep, offset: t.isoformat(sep=sep) + offset, TIMES,
              st.sampled_from(["T", " "]), st.sampled_from(["", "Z", "+02:00", "-05:30"])),
    st.one_of(st.none(), TEXT, st.sampled_from(
        ["", " ", "garbage", "2024-02-30", "2024-13-01", "infinity", "-infinity", "99999-01-01",
         "0000-00-00", "2024-01-01T10:00:00+25:00x"])))
CHANNELS = (
    st.sampled_from(["Email", "email", " Paid  Search ", "paid search", "Display", "é", "日本",
                     "a\nb", "x" * 5000]),
    st.one_of(st.none(), TEXT, st.sampled_from(["", "  "])))
KINDS = (st.sampled_from(["touch", "touch", "conversion", " Purchase ", "CLICK"]),
         st.sampled_from(["bogus", "", None]))
MILESTONES = ("lead", "opportunity")
REVENUES = (
    st.one_of(st.none(), st.floats(0, 1e6), st.integers(0, 10 ** 6),
              st.sampled_from(["", "12.5", " 7 ", "1e3"])),
    st.one_of(st.floats(), st.integers(-10 ** 20, 10 ** 20), TEXT, st.sampled_from(
        ["nan", "inf", "-inf", "Infinity", "abc", "1e400", "-5", "0x10", str(10 ** 30)])))
COUNTS = (
    st.one_of(st.integers(0, 20), st.floats(0, 1e6), st.sampled_from([" 3 ", "1e3", "2.5"])),
    st.one_of(TEXT, st.sampled_from([-1, -0.5, float("nan"), float("inf"), "nan", "inf", "-inf",
                                     "abc", "", None, "1e400"])))
PIECES = (  # a few common channels, so that rows repeat paths
    st.one_of(st.sampled_from(["a", "b", "B", " Email "]),
              st.sampled_from(["paid  search", "Paid Search", "é", "日本", "x" * 3000])),
    st.one_of(st.sampled_from(["", " ", "a -", "(null)"]), st.text(st.characters(
        exclude_categories=("Cs",), exclude_characters="\x00>"), max_size=4)))


def cells(draw):
    """A function drawing one cell from a (good, bad) pair, as dirty as this example is."""
    dirty = draw(st.booleans())

    def cell(pair):
        good, bad = pair
        return draw(st.integers(1, 4).flatmap(lambda k: bad if dirty and k == 1 else good))
    return cell


@st.composite
def event_rows(draw, milestones=True):
    cell = cells(draw)
    kinds = (KINDS[0], st.one_of(KINDS[1], st.sampled_from(MILESTONES))) if milestones \
        else KINDS
    n = draw(st.integers(1, 14))
    return [tuple(cell(pair) for pair in (IDS, TIMESTAMPS, CHANNELS, kinds, REVENUES))
            for _ in range(n)]


@st.composite
def path_rows(draw):
    cell = cells(draw)
    sep = draw(st.sampled_from([">", " > ", ">  "]))
    rows = []
    for _ in range(draw(st.integers(1, 10))):
        path = sep.join(cell(PIECES) for _ in range(draw(st.integers(1, 3))))
        rows.append((path, cell(COUNTS), cell(COUNTS), cell(COUNTS)))
    return rows


def frame(rows, columns) -> pd.DataFrame:
    return pd.DataFrame([list(r) for r in rows], columns=columns, dtype=object)


def write_csv(path, rows, columns):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    return path


# -- what every reader must do -----------------------------------------------------------------

def read_or_error(reader, source, **options):
    """The journeys, or None after checking that the failure is a one-line InputError."""
    try:
        journeys = reader(source, **options)
    except engine.InputError as exc:
        assert "\n" not in str(exc) and str(exc).strip(), repr(str(exc))
        event("InputError")
        return None
    event("journeys")
    return journeys


def number(cell) -> float | None:
    """A cell as the readers parse numbers: text stripped, anything else as a float."""
    if cell is None:
        return None
    if isinstance(cell, str):
        cell = cell.strip()
        if not cell or not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?|[+-]?(nan|inf|"
                                        r"infinity)", cell, re.IGNORECASE):
            return None
    return float(cell)


def check_accounting(report, n_rows):
    assert report.n_rows == n_rows
    assert report.n_used + sum(report.rejected.values()) == n_rows
    assert all(n > 0 for n in report.rejected.values())


def check_events(journeys, rows, exact):
    """Accounting and totals of read_events against the rows (no conversion column: each used
    conversion row is one conversion ending one journey)."""
    report = journeys.report
    check_accounting(report, len(rows))
    n_touches = int(journeys.offsets[-1])
    assert len(journeys.codes) == n_touches and np.all(np.diff(journeys.offsets) >= 1)
    kept = sum(n for reason, n in report.rejected.items() if "conversion kept" in reason)
    used_others = report.n_used + kept - n_touches  # conversion and milestone rows used
    assert used_others >= 0
    conversions = journeys.conversions
    assert set(conversions.tolist()) <= {0.0, 1.0}
    assert conversions.sum() <= used_others
    if exact:
        assert conversions.sum() == used_others
    money = {number(r) for *_, r in rows}
    allowed = {m for m in money if m is not None and math.isfinite(m) and m >= 0} | {0.0}
    assert set(journeys.value.tolist()) <= allowed
    assert np.all(journeys.value[conversions == 0] == 0)
    np.testing.assert_array_equal(journeys.nulls, (conversions == 0).astype(float))
    assert np.all(np.isfinite(journeys.ages)) and np.all(journeys.ages >= 0)
    assert all(c and c == c.strip(SPACE) and c not in RESERVED_CHANNELS
               for c in journeys.channels)
    assert np.all(journeys.start <= journeys.end)


def blank(cell, nan_is_blank) -> bool:
    if isinstance(cell, float) and math.isnan(cell):
        return nan_is_blank
    return cell is None or isinstance(cell, str) and not cell.strip()


def check_paths(journeys, rows, nan_is_blank):
    """read_paths uses every row or raises: the totals are the sums over all rows. (A NaN in a
    pandas frame is a missing value; in a CSV file it is the text 'nan'.)"""
    report = journeys.report
    check_accounting(report, len(rows))
    assert report.n_used == len(rows)
    conversions = [number(c) for _, c, _, _ in rows]
    nulls = [number(n) for _, _, _, n in rows]
    values = [0.0 if blank(v, nan_is_blank) and c == 0 else number(v)
              for (_, _, v, _), c in zip(rows, conversions)]
    for measure, cells in (("conversions", conversions), ("value", values), ("nulls", nulls)):
        assert all(x is not None and math.isfinite(x) and x >= 0 for x in cells), measure
        assert getattr(journeys, measure).sum() == pytest.approx(math.fsum(cells), rel=1e-9)
    pieces = {re.sub(f"[{SPACE}]+", " ", piece).strip(" ").lower()
              for path, *_ in rows for piece in path.split(">")}
    assert {c.lower() for c in journeys.channels} == pieces


# -- property tests ------------------------------------------------------------------------------

@FUZZ_EVENTS
@given(rows=event_rows(), lookback=st.sampled_from([None, 30]))
def test_read_events_on_random_frames(rows, lookback):
    journeys = read_or_error(engine.read_events, frame(rows, EVENT_COLUMNS),
                             lookback_days=lookback)
    if journeys is not None:
        check_events(journeys, rows, exact=not any(r[3] in MILESTONES for r in rows))


@FUZZ_EVENTS
@given(rows=event_rows(milestones=False))
def test_read_events_on_random_csv_files(rows, tmp_path):
    source = write_csv(tmp_path / "events.csv", rows, EVENT_COLUMNS)
    journeys = read_or_error(engine.read_events, source, lookback_days=None)
    if journeys is not None:
        check_events(journeys, rows, exact=True)


@FUZZ_PATHS
@given(rows=path_rows())
def test_read_paths_on_random_frames(rows):
    journeys = read_or_error(engine.read_paths, frame(rows, PATH_COLUMNS))
    if journeys is not None:
        check_paths(journeys, rows, nan_is_blank=True)


@FUZZ_PATHS
@given(rows=path_rows())
def test_read_paths_on_random_csv_files(rows, tmp_path):
    journeys = read_or_error(engine.read_paths, write_csv(tmp_path / "paths.csv", rows,
                                                          PATH_COLUMNS))
    if journeys is not None:
        check_paths(journeys, rows, nan_is_blank=False)


# -- malformed files ----------------------------------------------------------------------------

HEADER = ",".join(PATH_COLUMNS) + "\n"
EVENTS_HEADER = ",".join(EVENT_COLUMNS) + "\n"


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


GOOD_PARQUET = parquet_bytes(pa.table({"path": ["a > b"] * 500, "total_conversions": [1.0] * 500}))
GZIPPED = gzip.compress((HEADER + "a > b,1,2,0\n" * 20000).encode())

# name, content, what the message says, the row it names (None: no row; ...: any)
BROKEN = [
    ("latin1.csv", (HEADER + "café > b,1,2,0\n").encode("latin-1"), "not UTF-8", 1),
    ("latin1_late.csv", (HEADER + "a,1,2,0\n" * 10000 + "café,1,2,0\n").encode("latin-1"),
     "not UTF-8", 10001),
    ("latin1_after_quoted_newline.csv",
     (HEADER + '"a >\nb",1,2,0\n' + "a,1,2,0\n" * 10000 + "café,1,2,0\n").encode("latin-1"),
     "not UTF-8", 10002),
    ("utf16.csv", (HEADER + "a > b,1,2,0\n").encode("utf-16"), "NUL bytes", None),
    ("utf16le_no_bom.csv", (HEADER + "a > b,1,2,0\n").encode("utf-16-le"), "NUL bytes", None),
    ("nul.csv", (HEADER + "a,1,2,0\na\x00b > c,1,2,0\n").encode(), "NUL bytes", 2),
    ("nul_late.csv", (HEADER + "a,1,2,0\n" * 10000 + "a\x00,1,2,0\n").encode(), "NUL bytes",
     10001),
    ("too_many_fields.csv", (HEADER + "a,1,2,0\nb,1,2,0,9\n").encode(),
     "expected 4 columns, got 5", 2),
    ("too_few_fields.csv", (HEADER + "a,1,2,0\nb,1\n").encode(), "expected 4 columns, got 2", 2),
    ("duplicate_header.csv", b"path,total_conversions,path\na,1,b\n",
     "duplicate column name 'path'", None),
    ("empty_header_cell.csv", b"path,,total_conversions\na,b,1\n", "header cell 2 is empty",
     None),
    ("header_only.csv", HEADER.encode(), "no data rows", None),
    ("empty.csv", b"", "empty", None),
    ("blank.csv", b"\n\n  \n", "empty", None),
    ("garbage.csv", bytes(range(256)) * 64, "not UTF-8", ...),
    ("garbage_no_nul.csv", bytes(range(1, 256)) * 64, "not UTF-8", ...),
    ("one_long_line.csv", b"x" * 200_000, "longer than 64 KiB", None),
    ("corrupt.parquet", b"PAR1" + bytes(range(256)) + b"PAR1", "not a readable Parquet", None),
    ("truncated.parquet", GOOD_PARQUET[:-40], "not a readable Parquet", None),
    ("not_gzip.csv.gz", (HEADER + "a,1,2,0\n").encode(), "cannot read the file", None),
    ("truncated.csv.gz", GZIPPED[:len(GZIPPED) // 2], "cannot read the file", None),
    ("truncated_small.csv.gz", gzip.compress((HEADER + "a,1,2,0\n").encode())[:-12],
     "cannot read the file", None),
    ("bad_crc.csv.gz", GZIPPED[:-8] + bytes(4) + GZIPPED[-4:], "cannot read the file", None),
]


@pytest.mark.parametrize("reader", [engine.read_paths, engine.read_events])
@pytest.mark.parametrize("name, content, message, row", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_files_are_one_line_errors_naming_file_and_row(tmp_path, reader, name, content,
                                                              message, row):
    source = tmp_path / name
    source.write_bytes(content)
    with pytest.raises(engine.InputError, match=re.escape(message)) as caught:
        reader(source)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(str(source))
    assert row is ... or caught.value.row == row


@pytest.mark.parametrize("reader", [engine.read_paths, engine.read_events])
def test_a_directory_and_a_missing_file(tmp_path, reader):
    for source, message in ((tmp_path, "directory"), (tmp_path / "nope.csv", "not found")):
        with pytest.raises(engine.InputError, match=message) as caught:
            reader(source)
        assert "\n" not in str(caught.value) and str(source) in str(caught.value)


def paths_of(journeys) -> dict:
    return dict(zip(journeys.paths(), zip(journeys.conversions, journeys.value,
                                          journeys.nulls)))


@pytest.mark.parametrize("name, content", [
    ("bom.csv", b"\xef\xbb\xbf" + (HEADER + "a > b,1,2,0\nc,0,0,3\n").encode()),
    ("crlf.csv", (HEADER + "a > b,1,2,0\nc,0,0,3\n").replace("\n", "\r\n").encode()),
    ("cr.csv", (HEADER + "a > b,1,2,0\nc,0,0,3\n").replace("\n", "\r").encode()),
    ("quoted_newline.csv", (HEADER + '"a >\n b",1,2,0\n"c\r\n",0,0,3\n').encode()),
    ("blank_lines.csv", (HEADER + "\na > b,1,2,0\n\n\nc,0,0,3\n\n").encode()),
    ("semicolons.csv", (HEADER.replace(",", ";") + "a > b;1;2;0\nc;0;0;3\n").encode()),
    ("gzip.csv.gz", gzip.compress((HEADER + "a > b,1,2,0\nc,0,0,3\n").encode())),
])
def test_odd_but_valid_csv_files(tmp_path, name, content):
    source = tmp_path / name
    source.write_bytes(content)
    journeys = engine.read_paths(source)
    assert paths_of(journeys) == {"a > b": (1.0, 2.0, 0.0), "c": (0.0, 0.0, 3.0)}
    check_accounting(journeys.report, 2)


def test_a_ten_megabyte_field_is_read_whole(tmp_path):
    long = "x" * 10_000_000
    source = tmp_path / "long.csv"
    source.write_text(HEADER + f"a > {long},1,2,0\nb,0,0,1\n")
    journeys = engine.read_paths(source)
    assert journeys.channels == ("a", "b", long)
    assert journeys.conversions.tolist() == [1.0, 0.0]
    events = tmp_path / "long_events.csv"
    events.write_text(EVENTS_HEADER + f"u,2024-01-01,{long},touch,\nu,2024-01-02,,conversion,5\n")
    journeys = engine.read_events(events)
    assert journeys.channels == (long,) and journeys.value.tolist() == [5.0]


def test_ragged_event_rows_name_the_row(tmp_path):
    source = tmp_path / "events.csv"
    source.write_text(EVENTS_HEADER + "u,2024-01-01,a,touch,\nu,2024-01-02,b\n")
    with pytest.raises(engine.InputError, match="expected 5 columns, got 3") as caught:
        engine.read_events(source)
    assert caught.value.row == 2


MIXED_OFFSETS = [("u", "2024-01-01T10:00:00+02:00", "a", "touch", None),   # 08:00 UTC
                 ("u", "2024-01-01T07:00:00Z", "b", "touch", None),        # 07:00
                 ("u", "2024-01-01T04:00:00-05:00", "c", "touch", None),   # 09:00
                 ("u", "2024-01-01 09:30:00", None, "conversion", 10.0),   # naive: 09:30
                 ("v", "2024-01-01T23:30:00-01:00", "d", "touch", None),   # 00:30 next day
                 ("v", "2024-01-02T02:00:00+01:00", None, "conversion", 5.0)]  # 01:00


@pytest.mark.parametrize("kind", ["csv", "parquet", "frame"])
def test_mixed_timezone_offsets_in_one_column_are_converted_to_utc(tmp_path, kind):
    if kind == "csv":
        source = write_csv(tmp_path / "events.csv", MIXED_OFFSETS, EVENT_COLUMNS)
    elif kind == "parquet":
        source = tmp_path / "events.parquet"
        frame(MIXED_OFFSETS, EVENT_COLUMNS).astype({"revenue": float}).to_parquet(source)
    else:
        source = frame(MIXED_OFFSETS, EVENT_COLUMNS)
    journeys = engine.read_events(source)
    assert journeys.paths().tolist() == ["b > a > c", "d"]
    np.testing.assert_allclose(journeys.ages * 24, [2.5, 1.5, 0.5, 0.5])
    assert journeys.value.tolist() == [10.0, 5.0]
    assert journeys.end.tolist() == [datetime(2024, 1, 1, 9, 30), datetime(2024, 1, 2, 1, 0)]


def test_times_that_parse_but_are_no_event_time_are_rejected():
    rows = [("u", t, "a", "touch", None) for t in
            ("infinity", "-infinity", "99999-01-01", "-0001-01-01", "epoch", "2024-01-01")]
    journeys = engine.read_events(frame(rows, EVENT_COLUMNS), lookback_days=None)
    assert journeys.report.rejected == {"unparseable timestamp": 4}
    assert journeys.start.tolist() == [datetime(1970, 1, 1)]
    assert np.all(np.isfinite(journeys.ages))


def test_nan_and_infinity_in_numeric_parquet_columns(tmp_path):
    events = tmp_path / "events.parquet"
    pq.write_table(pa.table({
        "person_id": ["u"] * 8,
        "timestamp": pa.array(pd.date_range("2024-01-01", periods=8, freq="D")),
        "channel": ["a", None] * 4,
        "event_type": ["touch", "conversion"] * 4,
        "revenue": pa.array([None, np.nan, None, np.inf, None, -np.inf, None, 7.5])}), events)
    journeys = engine.read_events(events)
    assert journeys.report.rejected == {"revenue NaN or infinite (conversion kept, value 0)": 3}
    assert journeys.report.first_row == {"revenue NaN or infinite (conversion kept, value 0)": 2}
    assert journeys.value.tolist() == [0.0, 0.0, 0.0, 7.5]
    assert journeys.conversions.tolist() == [1.0] * 4
    paths = tmp_path / "paths.parquet"
    for column, cell, message in (("total_conversions", np.nan, "conversions is NaN"),
                                  ("total_null", np.inf, "nulls is NaN or infinite"),
                                  ("total_conversion_value", -np.inf, "value is NaN")):
        table = {"path": ["a", "b > a"], "total_conversions": [1.0, 2.0],
                 "total_conversion_value": [1.0, 2.0], "total_null": [0.0, 1.0]}
        table[column] = pa.array([table[column][0], cell])
        pq.write_table(pa.table(table), paths)
        with pytest.raises(engine.InputError, match=message) as caught:
            engine.read_paths(paths)
        assert (caught.value.row, caught.value.column) == (2, column)


@pytest.mark.parametrize("column, values, message", [
    ("path", pa.array([["a"], ["b"]]), "paths must be text"),
    ("path", pa.array([b"a", b"\xff"]), "paths must be text"),
    ("total_conversions", pa.array([datetime(2024, 1, 1)] * 2), "conversions is not a number"),
    ("total_null", pa.array([{"x": 1}] * 2), "nulls is not a number"),
])
def test_columns_of_the_wrong_type_in_a_path_table(column, values, message):
    table = {"path": ["a", "b"], "total_conversions": [1, 2], "total_null": [0, 1]}
    table[column] = values
    with pytest.raises(engine.InputError, match=message) as caught:
        engine.read_paths(pa.table(table))
    assert caught.value.column == column and "\n" not in str(caught.value)


def test_columns_of_odd_types_in_an_event_log():
    import decimal

    table = pa.table({
        "person_id": pa.array(np.array([1, 1, 2], dtype=np.float16)),
        "timestamp": pa.array(["2024-01-01", "2024-01-02", "2024-01-03"]),
        "channel": pa.array([b"a", b"b", b"c"]),
        "event_type": ["touch", "conversion", "touch"],
        "revenue": pa.array([None, [1.0], None]),
        "extra": pa.array([decimal.Decimal(1)] * 3, pa.decimal256(40, 0))})
    journeys = engine.read_events(table)
    assert journeys.paths().tolist() == ["a", "c"]
    assert journeys.report.rejected == {"revenue not a number (conversion kept, value 0)": 1}
    frame = pd.DataFrame({"person_id": ["u", "u"], "timestamp": ["2024-01-01", "2024-01-02"],
                          "channel": ["a", None], "event_type": ["touch", "conversion"],
                          "revenue": [None, 10 ** 30]}, dtype=object)
    assert engine.read_events(frame).value.tolist() == [1e30]


# -- the command line ---------------------------------------------------------------------------

def cli_error(capsys, args) -> str:
    """Run the CLI; it must fail with status 2 and one line on stderr, no traceback."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("attribution: error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("name, data_format, message", [
    ("latin1.csv", "paths", "row 1: the row is not UTF-8"),
    ("too_many_fields.csv", "paths", "row 2: malformed CSV"),
    ("utf16.csv", "events", "NUL bytes"),
    ("truncated.parquet", "events", "not a readable Parquet"),
    ("truncated.csv.gz", "paths", "cannot read the file"),
    ("garbage.csv", "events", "not UTF-8"),
])
def test_cli_on_broken_files(tmp_path, capsys, name, data_format, message):
    source = tmp_path / name
    source.write_bytes({b[0]: b[1] for b in BROKEN}[name])
    out = tmp_path / "out.csv"
    err = cli_error(capsys, ["run", source, "--model", "last_touch", "--format", data_format,
                             "--out", out])
    assert message in err and str(source) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("data_format", ["paths", "events"])
def test_cli_on_a_directory_and_a_missing_file(tmp_path, capsys, data_format):
    for source in (tmp_path, tmp_path / "nope.csv"):
        cli_error(capsys, ["run", source, "--model", "last_touch", "--format", data_format,
                           "--out", tmp_path / "out.csv"])
    assert list(tmp_path.iterdir()) == []


# -- outputs are written whole or not at all ----------------------------------------------------

DISK_FULL = OSError(28, "No space left on device")


def fail_halfway(self, target, *args, **kwargs):
    """A writer that writes the start of its file, then fails."""
    with open(target, "wb") as handle:
        handle.write(b"the first half of")
    raise DISK_FULL


def folder_after_failure(capsys, args, folder) -> dict:
    """Run the CLI expecting the disk-full failure; the folder's files and their bytes."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("attribution: error: ")
    assert "cannot write (No space left on device)" in err
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    from engine._atomic import atomic_path

    out = tmp_path / "table.csv"
    out.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(out) as partial:
        partial.write_text("half")
        raise RuntimeError("interrupted")
    with (pytest.raises(engine.EngineError, match="table.csv: cannot write") as caught,
          atomic_path(out) as partial):
        fail_halfway(None, partial)
    assert "\n" not in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"] and out.read_text() == "old\n"
    with atomic_path(out) as partial:
        partial.write_text("new\n")
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"] and out.read_text() == "new\n"


@pytest.mark.parametrize("name, writer", [("credit.csv", "to_csv"),
                                          ("credit.parquet", "to_parquet")])
def test_run_out_failing_halfway(tmp_path, capsys, monkeypatch, name, writer):
    source = tmp_path / "paths.csv"
    source.write_text(HEADER + "a > b,1,2,0\n")
    out = tmp_path / name
    out.write_bytes(b"old")
    monkeypatch.setattr(pd.DataFrame, writer, fail_halfway)
    left = folder_after_failure(capsys, ["run", source, "-m", "last_touch", "--out", out],
                                tmp_path)
    assert left == {"paths.csv": source.read_bytes(), name: b"old"}


@pytest.mark.bayes
def test_roas_save_failing_halfway(tmp_path, capsys, monkeypatch, tiny_roas_model_file):
    import arviz as az

    from engine.models.bayes import BayesianROAS

    fitted = BayesianROAS.load(tiny_roas_model_file)

    def fit(self, *args, **kwargs):  # the saved fit stands in for sampling
        self.__dict__.update(vars(fitted))
        return self

    monkeypatch.setattr(BayesianROAS, "fit", fit)
    data = tmp_path / "weekly.csv"
    pd.DataFrame({"date": ["2024-01-01"], "y": [1.0], "x1": [1.0]}).to_csv(data, index=False)
    roas = ["-q", "roas", data, "--date", "date", "--target", "y", "--channels", "x1"]
    out = tmp_path / "model.nc"
    assert main([str(a) for a in [*roas, "--save", out]]) == 0
    saved = out.read_bytes()
    monkeypatch.setattr(az.InferenceData, "to_netcdf", fail_halfway)
    left = folder_after_failure(capsys, [*roas, "--save", out], tmp_path)
    assert left == {"weekly.csv": data.read_bytes(), "model.nc": saved}


def test_report_failing_halfway(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    out = tmp_path / "report.html"
    out.write_text("<html>old</html>")
    monkeypatch.setattr(Path, "write_text", lambda self, *args, **kwargs: fail_halfway(None, self))
    left = folder_after_failure(capsys, ["report", "example", "-m", "last_touch", "--out", out],
                                tmp_path)
    assert left == {"report.html": b"<html>old</html>"}


def test_simulate_failing_halfway_keeps_the_earlier_world(tmp_path, capsys, monkeypatch):
    world = tmp_path / "world"
    simulate = ["-q", "simulate", "--scenario", "markov_world", "--persons", "200", "--weeks",
                "8", "--out", world]
    assert main([str(a) for a in [*simulate, "--seed", "1"]]) == 0
    before = {p.name: p.read_bytes() for p in world.iterdir()}
    assert sorted(before) == ["events.parquet", "truth.csv", "weekly.csv", "world.json"]
    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_halfway)  # after events.parquet
    assert folder_after_failure(capsys, [*simulate, "--seed", "2"], world) == before


def test_bench_plot_failing_halfway(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    out, plot = tmp_path / "bench.csv", tmp_path / "bench.png"
    out.write_bytes(b"old table")
    plot.write_bytes(b"old plot")
    monkeypatch.setattr(Figure, "savefig", fail_halfway)
    left = folder_after_failure(capsys, [
        "-q", "bench", "--scenario", "markov_world", "-m", "last_touch", "-r", "1", "--persons",
        "200", "--weeks", "8", "--out", out, "--plot", plot], tmp_path)
    assert left["bench.png"] == b"old plot" and sorted(left) == ["bench.csv", "bench.png"]
    assert left["bench.csv"] != b"old table"  # written, whole, before the plot failed
    assert pd.read_csv(out)["model"].tolist() == ["last_touch"]
