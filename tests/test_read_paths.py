"""``engine.read_paths``: the path tables it accepts, and a one-line error for each bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import engine
from engine import InputError

HEADER = "path,total_conversions,total_conversion_value,total_null\n"


@pytest.fixture
def write(tmp_path):
    """Write text (or bytes) to a file under tmp_path and return its path."""
    def write(name, content):
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path
    return write


def as_dict(journeys) -> dict:
    """{path: (conversions, value, nulls)}: what was read, independent of row order."""
    return {p: (c, v, n) for p, c, v, n in zip(journeys.paths(), journeys.conversions,
                                               journeys.value, journeys.nulls)}


def assert_accounts_for(journeys, n_rows):
    report = journeys.report
    assert report.n_rows == n_rows
    assert report.n_used + report.n_rejected == n_rows


# -- good input --------------------------------------------------------------------------------

def test_reads_the_channelattribution_layout(write):
    path = write("paths.csv", HEADER + "a > b,2,30.5,1\nb,0,0,4\nc > a > c,1,9.5,0\n")
    journeys = engine.read_paths(path)
    assert journeys.channels == ("a", "b", "c")
    assert journeys.paths().tolist() == ["a > b", "b", "c > a > c"]
    assert journeys.conversions.tolist() == [2.0, 0.0, 1.0]
    assert journeys.value.tolist() == [30.5, 0.0, 9.5]
    assert journeys.nulls.tolist() == [1.0, 4.0, 0.0]
    assert journeys.ages is None and journeys.milestones is None
    assert_accounts_for(journeys, 3)
    assert journeys.report.source == str(path) and journeys.report.notes == ()


def test_whitespace_around_channels_is_ignored(write):
    path = write("ws.csv", HEADER + " a>b ,1,1,0\na  >   b,2,2,0\n\ta >b\t,0,0,5\n"
                 "paid   search > a,1,3,0\n")
    journeys = engine.read_paths(path)
    assert as_dict(journeys) == {"a > b": (3.0, 3.0, 5.0), "paid search > a": (1.0, 3.0, 0.0)}
    assert journeys.channels == ("a", "b", "paid search")
    assert_accounts_for(journeys, 4)


@pytest.mark.parametrize("sep, paths", [
    ("->", ["a -> b", "b->c", " c ->a "]),
    ("|", ["a|b", "b | c", "c|a"]),
    ("=>", ["a=>b", "b => c", "c=>a"]),
])
def test_custom_separators(write, sep, paths):
    rows = "".join(f"{p},1,2,0\n" for p in paths)
    journeys = engine.read_paths(write("sep.csv", HEADER + rows), sep=sep)
    assert journeys.paths().tolist() == ["a > b", "b > c", "c > a"]


def test_comma_separated_paths_inside_a_semicolon_csv(write):
    path = write("semi.csv", "path;total_conversions;total_conversion_value;total_null\n"
                             "a,b;1;2,5;0\nb, c;3;1;2\n")
    with pytest.raises(InputError, match="not a number"):
        # "2,5" is not a number: a decimal comma is an error, never silently 25 or 2.
        engine.read_paths(path, sep=",")
    path = write("semi.csv", "path;total_conversions;total_conversion_value;total_null\n"
                             "a,b;1;2.5;0\nb, c;3;1;2\n")
    journeys = engine.read_paths(path, sep=",")
    assert as_dict(journeys) == {"a > b": (1.0, 2.5, 0.0), "b > c": (3.0, 1.0, 2.0)}


def test_custom_column_names(write):
    path = write("named.csv", "journey,conv,revenue,lost\nx > y,2,20,3\ny,1,5,0\n")
    journeys = engine.read_paths(path, path="journey", conversions="conv", value="revenue",
                                 nulls="lost")
    assert as_dict(journeys) == {"x > y": (2.0, 20.0, 3.0), "y": (1.0, 5.0, 0.0)}


@pytest.mark.parametrize("header, rows", [
    ("path,total_conversions\n", "a > b,2\nb,1\n"),
    ("path,total_conversions,total_null\n", "a > b,2,0\nb,1,0\n"),
    ("path,total_conversions,total_conversion_value\n", "a > b,2,0\nb,1,0\n"),
])
def test_value_and_nulls_columns_may_be_absent(write, header, rows):
    journeys = engine.read_paths(write("short.csv", header + rows))
    assert journeys.value.tolist() == [0.0, 0.0]
    assert journeys.nulls.tolist() == [0.0, 0.0]
    assert journeys.conversions.tolist() == [2.0, 1.0]


def test_value_and_nulls_can_be_switched_off(write):
    path = write("off.csv", HEADER + "a,1,7,2\n")
    journeys = engine.read_paths(path, value=None, nulls=None)
    assert as_dict(journeys) == {"a": (1.0, 0.0, 0.0)}


def test_empty_value_where_nothing_converted_is_zero(write):
    journeys = engine.read_paths(write("v.csv", HEADER + "a > b,1,2,0\nc,0,,3\nc,0,,1\n"))
    assert as_dict(journeys) == {"a > b": (1.0, 2.0, 0.0), "c": (0.0, 0.0, 4.0)}


def test_rows_repeating_a_path_are_summed(write):
    path = write("dup.csv", HEADER + "a > b,1,10,0\nb,0,0,2\na>b,2,5,1\n a > b ,0,0,4\n")
    journeys = engine.read_paths(path)
    assert journeys.paths().tolist() == ["a > b", "b"]
    assert as_dict(journeys) == {"a > b": (3.0, 15.0, 5.0), "b": (0.0, 0.0, 2.0)}
    assert_accounts_for(journeys, 4)
    assert journeys.report.n_used == 4
    assert any("2 rows repeated an earlier path" in note for note in journeys.report.notes)


def test_repeated_paths_are_found_across_hash_blocks(monkeypatch):
    from engine.ingest import paths

    monkeypatch.setattr(paths, "_HASH_BLOCK", 3)  # several blocks, rows straddling them
    distinct = engine.Journeys.from_lists([["a", "b"], ["b", "a", "c"], ["c"], ["a", "b", "a"],
                                           ["b"], ["a", "c", "b", "a"]], conversions=[1] * 6)
    assert not paths._has_repeats(distinct)
    rows = distinct.path_lists().to_pylist()
    for row in range(6):
        repeated = engine.Journeys.from_lists(rows + [rows[row]], conversions=[1] * 7)
        assert paths._has_repeats(repeated), row


def test_numbers_that_need_a_second_read_as_text(write):
    # " 2" does not parse as a number in a fast typed read; the text read trims it.
    journeys = engine.read_paths(write("p.csv", HEADER + 'a > b," 2",3.5, 1\nb,0,,4\n'))
    assert as_dict(journeys) == {"a > b": (2.0, 3.5, 1.0), "b": (0.0, 0.0, 4.0)}


def test_case_variants_are_merged_to_the_most_frequent_spelling(write):
    path = write("case.csv", HEADER + "Search > email,1,1,0\nsearch > Email,2,2,0\n"
                 "search,3,3,0\nSEARCH > x,0,0,1\n")
    journeys = engine.read_paths(path)
    # search: 2 of 4 spellings; email/Email tie, so the alphabetically first wins.
    assert journeys.channels == ("Email", "search", "x")
    assert as_dict(journeys) == {"search > Email": (3.0, 3.0, 0.0), "search": (3.0, 3.0, 0.0),
                                 "search > x": (0.0, 0.0, 1.0)}
    notes = " ".join(journeys.report.notes)
    assert "case merged" in notes and "'Search'->'search'" in notes
    assert "'email'->'Email'" in notes and "'SEARCH'->'search'" in notes
    assert_accounts_for(journeys, 4)


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_delimiters_are_detected(write, delimiter):
    header = delimiter.join(["path", "total_conversions", "total_conversion_value",
                             "total_null"])
    rows = [delimiter.join(["a > b", "1", "2.5", "3"]), delimiter.join(["c", "2", "1", "0"])]
    journeys = engine.read_paths(write("d.csv", "\n".join([header, *rows]) + "\n"))
    assert as_dict(journeys) == {"a > b": (1.0, 2.5, 3.0), "c": (2.0, 1.0, 0.0)}


def test_quoted_cells_bom_and_crlf(write):
    text = '\ufeffpath,total_conversions,total_conversion_value,total_null\r\n' \
           '"a > b",1,2,0\r\n"c, the channel > a",1,1,0\r\n'
    journeys = engine.read_paths(write("q.csv", text))
    assert journeys.paths().tolist() == ["a > b", "c, the channel > a"]


def test_gzip_csv(tmp_path):
    path = tmp_path / "paths.csv.gz"
    path.write_bytes(gzip.compress((HEADER + "a > b,1,2,3\nb,0,0,1\n").encode()))
    journeys = engine.read_paths(path)
    assert as_dict(journeys) == {"a > b": (1.0, 2.0, 3.0), "b": (0.0, 0.0, 1.0)}
    assert_accounts_for(journeys, 2)


FRAME = pd.DataFrame({"path": ["a > b", "b", "a>b"], "total_conversions": [1, 0, 2],
                      "total_conversion_value": [10.0, 0.0, 5.0], "total_null": [0, 3, 1]})
EXPECTED = {"a > b": (3.0, 15.0, 1.0), "b": (0.0, 0.0, 3.0)}


def test_parquet(tmp_path):
    path = tmp_path / "paths.parquet"
    FRAME.to_parquet(path)
    journeys = engine.read_paths(path)
    assert as_dict(journeys) == EXPECTED
    assert_accounts_for(journeys, 3)


def test_pandas_dataframe():
    journeys = engine.read_paths(FRAME)
    assert as_dict(journeys) == EXPECTED
    assert journeys.report.source == "DataFrame"
    assert_accounts_for(journeys, 3)


def test_pandas_dataframe_with_nullable_and_string_columns():
    frame = pd.DataFrame({"path": pd.array(["a > b", "c"], dtype="string"),
                          "total_conversions": pd.array([1, 2], dtype="Int64"),
                          "total_conversion_value": ["1.5", "2"]})
    assert as_dict(engine.read_paths(frame)) == {"a > b": (1.0, 1.5, 0.0), "c": (2.0, 2.0, 0.0)}


def test_pyarrow_table():
    journeys = engine.read_paths(pa.Table.from_pandas(FRAME, preserve_index=False))
    assert as_dict(journeys) == EXPECTED
    assert journeys.report.source == "Table"


def test_the_shipped_example(example_journeys):
    assert example_journeys.n_journeys == 5408
    assert example_journeys.n_channels == 12
    assert example_journeys.total_conversions == 19785
    assert example_journeys.nulls.sum() + example_journeys.total_conversions == 88387
    np.testing.assert_allclose(example_journeys.total_value, 74802.97, rtol=1e-6)
    assert_accounts_for(example_journeys, 10000)


# -- bad input ---------------------------------------------------------------------------------

def raises(source, *, row=None, column=None, match=None, **kwargs) -> str:
    """Assert read_paths fails with a one-line InputError naming the source, row and column."""
    with pytest.raises(InputError, match=match) as info:
        engine.read_paths(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    name = str(source) if not isinstance(source, (pd.DataFrame, pa.Table)) else None
    if name:
        assert message.startswith(name)
    if row is not None:
        assert info.value.row == row and f"row {row}" in message
    if column is not None:
        assert info.value.column == column and repr(column) in message
    return message


@pytest.mark.parametrize("header, column, role", [
    ("paths,total_conversions\n", "path", "path"),
    ("path,conversions\n", "total_conversions", "conversions"),
])
def test_missing_required_column_lists_the_columns_found(write, header, column, role):
    source = write("cols.csv", header + "a,1\n")
    found = ", ".join(repr(c) for c in header.strip().split(","))
    message = raises(source, column=column, match=f"missing {role} column")
    assert f"(found: {found})" in message


def test_explicitly_named_value_column_must_exist(write):
    source = write("v.csv", "path,total_conversions\na,1\n")
    raises(source, column="revenue", match="missing value column", value="revenue")
    raises(source, column="lost", match="missing nulls column", nulls="lost")


def test_file_not_found(tmp_path):
    raises(tmp_path / "nope.csv", match="file not found")


@pytest.mark.parametrize("content, match", [
    ("", "empty"),
    ("\n\n", "empty"),
    (HEADER, "no data rows"),
    (HEADER + "\n\n", "no data rows"),
])
def test_empty_and_header_only_files(write, content, match):
    raises(write("empty.csv", content), match=match)


def test_empty_tables():
    raises(FRAME.iloc[:0], match="no data rows")


@pytest.mark.parametrize("header, match", [
    ("path,total_conversions,path\n", "duplicate column name 'path'"),
    ("path,,total_conversions\n", "header cell 2 is empty"),
    ("path,total_conversions, \n", "header cell 3 is empty"),
])
def test_bad_header(write, header, match):
    raises(write("h.csv", header + "a,1,2\n"), match=match)


def test_bad_header_in_a_dataframe():
    frame = pd.DataFrame([["a", 1, 2]], columns=["path", "total_conversions", "path"])
    raises(frame, match="duplicate column name 'path'")


def test_ragged_row(write):
    message = raises(write("ragged.csv", HEADER + "a,1,2,0\nb,1,2,0,9\nc,1,2,0\n"),
                     match="malformed CSV")
    assert "row 2" in message and "expected 4 columns, got 5" in message


def test_arrow_separator_read_with_plain_gt_is_caught(write):
    raises(write("arrows.csv", HEADER + "a,1,2,0\na -> b,1,2,0\n"), column="path",
           match="'->'", row=2)


def test_non_utf8_bytes(write):
    raises(write("latin1.csv", (HEADER + "caf\xe9 > b,1,2,0\n").encode("latin-1")),
           match="not UTF-8")


def test_non_utf8_bytes_far_into_the_file(write):
    rows = "a > b,1,2,0\n" * 10000
    source = write("late.csv", (HEADER + rows + "caf\xe9,1,2,0\n").encode("latin-1"))
    raises(source, match="not UTF-8")


@pytest.mark.parametrize("cell, match", [
    ("nan", "conversions is NaN or infinite"),
    ("NaN", "conversions is NaN or infinite"),
    ("-1", "conversions is negative"),
    ("-0.5", "conversions is negative"),
    ("inf", "conversions is NaN or infinite"),
    ("-inf", "conversions is"),
    ("abc", "conversions is not a number"),
    ("1,5", "conversions is not a number"),
    ("", "conversions is missing"),
    (" ", "conversions is missing"),
])
def test_bad_conversion_counts_name_row_and_column(write, cell, match):
    rows = f"a > b,1,2,0\nb,1,2,0\nc,\"{cell}\",2,0\n"
    raises(write("bad.csv", HEADER + rows), row=3, column="total_conversions", match=match)


@pytest.mark.parametrize("column, row, match", [
    ("total_null", "a,1,2,x", "nulls is not a number"),
    ("total_null", "a,1,2,-3", "nulls is negative"),
    ("total_null", "a,1,2,", "nulls is missing"),
    ("total_conversion_value", "a,1,,0", "value is missing"),
    ("total_conversion_value", "a,1,inf,0", "value is NaN or infinite"),
    ("total_conversion_value", "a,1,-5,0", "value is negative"),
    ("total_conversion_value", "a,1,$5,0", "value is not a number"),
])
def test_bad_value_and_null_cells(write, column, row, match):
    raises(write("bad.csv", HEADER + "b,1,2,0\n" + row + "\n"), row=2, column=column,
           match=match)


def test_bad_counts_in_a_dataframe():
    frame = FRAME.copy()
    frame.loc[1, "total_conversions"] = np.nan
    raises(frame, row=2, column="total_conversions", match="conversions is missing")
    frame.loc[1, "total_conversions"] = -2
    raises(frame, row=2, column="total_conversions", match="negative")
    frame.loc[1, "total_conversions"] = np.inf
    raises(frame, row=2, column="total_conversions", match="infinite")
    frame = FRAME.astype({"total_null": object})
    frame.loc[2, "total_null"] = "many"
    raises(frame, row=3, column="total_null", match="not a number")


@pytest.mark.parametrize("path", ["", "   ", '""'])
def test_empty_path(write, path):
    raises(write("p.csv", HEADER + f"a,1,2,0\n{path},1,2,0\n"), row=2, column="path",
           match="path is empty")


def test_missing_path_in_a_dataframe():
    frame = FRAME.copy()
    frame.loc[2, "path"] = None
    raises(frame, row=3, column="path", match="path is empty")


@pytest.mark.parametrize("path", ["a > > b", "a >", "> a", "a >  > b", "a > b >"])
def test_empty_channel_between_separators(write, path):
    raises(write("c.csv", HEADER + f"a > b,1,2,0\nb,1,2,0\n{path},1,2,0\n"), row=3,
           column="path", match="channel name between separators is empty")


@pytest.mark.parametrize("path", ["(start) > a", "a > (conversion)", "a > (null) > b", "(null)"])
def test_reserved_channel_names(write, path):
    message = raises(write("r.csv", HEADER + f"a,1,2,0\n{path},1,2,0\n"), row=2, column="path",
                     match="reserved channel name")
    assert "(start)" in message


def test_separator_never_used_while_another_is(write):
    source = write("s.csv", HEADER + '"a,b",1,2,0\nc,1,2,0\n')
    message = raises(source, column="path", match="no path contains the separator '>'")
    assert "sep=','" in message
    raises(write("s2.csv", HEADER + "a -> b,1,2,0\n"), column="path", match="'->'", sep="|")


def test_single_channel_paths_need_no_separator(write):
    journeys = engine.read_paths(write("one.csv", HEADER + "a,1,2,0\nb,1,2,0\n"))
    assert journeys.paths().tolist() == ["a", "b"]


def test_blank_separator_is_refused(write):
    raises(write("ok.csv", HEADER + "a,1,2,0\n"), match="separator ' ' is blank", sep=" ")


def test_unsupported_source_type():
    with pytest.raises(InputError, match="unsupported input type list"):
        engine.read_paths([["a", 1]])


def test_corrupt_parquet(write):
    raises(write("bad.parquet", b"PAR1 this is not parquet"), match="Parquet")


def test_parquet_with_bad_counts(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"path": ["a", "b"], "total_conversions": [1.0, -1.0]}), path)
    raises(path, row=2, column="total_conversions", match="negative")
