"""KPIs from ``engine.kpi``: hand-computed numbers on small journeys, spend-file errors, stage
journeys, and path reports on the shipped example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import engine
from engine import Journeys
from engine.datasets import example_path
from engine.kpi import (channel_kpis, conversion_by_first_touch, ltv_by_acquisition, path_length,
                        read_spend, stage_journeys, summary, time_to_convert, top_paths)
from engine.models import FirstTouch, LastTouch

KPI_COLUMNS = ["model", "channel", "spend", "conversions", "value", "cost_per_order", "roas",
               "leads", "cost_per_lead", "opportunities", "cost_per_opportunity", "touches",
               "touches_per_conversion", "touches_per_lead", "value_per_conversion",
               "value_per_touch"]
NAN = float("nan")


def flags(*values) -> np.ndarray:
    return np.array(values, dtype=np.uint8)


def days(*values) -> np.ndarray:
    return np.array(values, dtype="datetime64[us]")


def records(frame: pd.DataFrame, key: str = "channel") -> dict:
    """``{key: {column: value}}`` with floats rounded, for comparing with hand-computed tables."""
    return {row[key]: {c: (round(v, 9) if isinstance(v, float) else v)
                       for c, v in row.items() if c != key}
            for row in frame.to_dict("records")}


def assert_same(actual: dict, expected: dict) -> None:
    """Dict equality where NaN equals NaN."""
    assert actual.keys() == expected.keys()
    for key, row in expected.items():
        for column, value in row.items():
            got = actual[key][column]
            if isinstance(value, float) and np.isnan(value):
                assert np.isnan(got), (key, column, got)
            else:
                assert got == pytest.approx(value), (key, column, got)


@pytest.fixture
def b2b() -> Journeys:
    """Four event journeys with lead (1) and opportunity (2) flags, hand-checkable."""
    return Journeys.from_lists(
        [["search", "email", "direct"], ["social", "search"], ["email"],
         ["social", "email", "search"]],
        conversions=[1, 0, 1, 1], value=[100.0, 0.0, 50.0, 30.0], nulls=[0, 1, 0, 0],
        milestones=flags(1, 2, 0, 0, 1, 0, 0, 3, 0))


@pytest.fixture
def spend_table() -> pd.DataFrame:
    return pd.DataFrame({
        "date": ["2024-01-01", "2024-02-01", "2024-01-01", "2024-01-15", "2024-02-05"],
        "channel": ["search", " search ", "email", "social", "tv"],
        "spend": [150.0, 50.0, 0.0, 40.0, 70.0]})


# -- read_spend --------------------------------------------------------------------------------

def test_read_spend_csv_cleans_channels_and_parses_types(tmp_path):
    path = tmp_path / "spend.csv"
    path.write_text("day,source,cost,note\n"
                    "2024-03-01,  Paid   Search ,120.5,x\n"
                    "2024-03-02 10:00,email,0,\n"
                    "Mar 3 2024,Paid Search,7,\n"
                    "2024-03-04T10:00+02:00,email,1,\n")
    table = read_spend(path, date="day", channel="source", spend="cost")
    assert list(table.columns) == ["date", "channel", "spend"]
    assert table["date"].dtype.kind == "M"
    assert table["date"].astype(str).tolist() == ["2024-03-01 00:00:00", "2024-03-02 10:00:00",
                                                  "2024-03-03 00:00:00", "2024-03-04 08:00:00"]
    assert table["channel"].tolist() == ["Paid Search", "email", "Paid Search", "email"]
    assert table["spend"].tolist() == [120.5, 0.0, 7.0, 1.0]
    assert table["spend"].dtype == np.float64


def test_read_spend_parquet_and_time_zones(tmp_path):
    stamps = pd.to_datetime(["2024-03-01 10:00", "2024-03-02 00:00"]).tz_localize("Etc/GMT-2")
    frame = pd.DataFrame({"date": stamps, "channel": ["a", "b"], "spend": [1, 2]})
    path = tmp_path / "spend.parquet"
    frame.to_parquet(path)
    table = read_spend(path)
    assert table["date"].astype(str).tolist() == ["2024-03-01 08:00:00", "2024-03-01 22:00:00"]
    assert table["spend"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("column, cell, message", [
    ("date", "yesterday", "cannot parse 'yesterday' as a date"),
    ("date", "", "date is missing"),
    ("channel", "   ", "channel is missing or blank"),
    ("spend", "12 EUR", "is not a number"),
    ("spend", "-3", "is negative"),
    ("spend", "nan", "is NaN"),
    ("spend", "inf", "is infinite"),
    ("spend", "", "spend is missing"),
])
def test_read_spend_bad_cells_name_file_row_and_column(tmp_path, column, cell, message):
    good = {"date": "2024-01-01", "channel": "search", "spend": "10"}
    bad = dict(good, **{column: cell})
    path = tmp_path / "spend.csv"
    rows = [good, good, bad, good]
    path.write_text("date,channel,spend\n" + "".join(
        f"{r['date']},{r['channel']},{r['spend']}\n" for r in rows))
    with pytest.raises(engine.InputError) as error:
        read_spend(path)
    text = str(error.value)
    assert str(path) in text and "row 3" in text and f"column {column!r}" in text
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize("spend, message", [
    ([1.0, np.nan], "spend is missing"), ([1.0, -2.0], "spend -2.0 is negative"),
    ([1.0, np.inf], "spend inf is infinite"), ([1.0, "x"], "spend 'x' is not a number")])
def test_read_spend_bad_dataframe_values(spend, message):
    frame = pd.DataFrame({"date": ["2024-01-01", "2024-01-02"], "channel": ["a", "b"],
                          "spend": pd.Series(spend, dtype=object if "x" in spend else float)})
    with pytest.raises(engine.InputError, match=rf"DataFrame, row 2, column 'spend': {message}"):
        read_spend(frame)


def test_read_spend_missing_column_lists_what_exists():
    frame = pd.DataFrame({"day": ["2024-01-01"], "channel": ["a"], "spend": [1.0]})
    with pytest.raises(engine.InputError, match=r"column 'date': missing date column .*'day'"):
        read_spend(frame)


# -- stage journeys ----------------------------------------------------------------------------

def test_stage_journeys_truncate_at_the_first_flagged_touch():
    j = Journeys.from_lists(
        [["a", "b", "c", "d"], ["c", "d"], ["b", "b", "a"]], conversions=[1, 1, 0],
        value=[10.0, 20.0, 0.0], nulls=[0, 0, 1],
        ages=np.array([9.0, 6.0, 2.0, 0.0, 3.0, 0.0, 5.0, 4.0, 1.0]),
        milestones=flags(0, 1, 2, 0, 0, 0, 1, 1, 2),
        person=np.array(["p", "q", "r"]), start=days("2024-01-01", "2024-01-03", "2024-01-05"),
        end=days("2024-01-10", "2024-01-06", "2024-01-10"))
    leads = stage_journeys(j, "lead")
    assert leads.paths().tolist() == ["a > b", "b"]
    assert leads.conversions.tolist() == [1.0, 1.0]
    assert leads.value.tolist() == [0.0, 0.0] and leads.nulls.tolist() == [0.0, 0.0]
    assert leads.ages.tolist() == [3.0, 0.0, 0.0]
    assert leads.milestones.tolist() == [0, 1, 1]
    assert leads.person.tolist() == ["p", "r"]
    assert leads.start.tolist() == j.start[[0, 2]].tolist()
    assert leads.end.astype(str).tolist() == ["2024-01-04T00:00:00.000000",
                                              "2024-01-05T00:00:00.000000"]
    assert leads.channels == j.channels

    opportunities = stage_journeys(j, "opportunity")
    assert opportunities.paths().tolist() == ["a > b > c", "b > b > a"]
    assert opportunities.ages.tolist() == [7.0, 4.0, 0.0, 4.0, 3.0, 0.0]


def test_stage_journeys_match_a_loop_reference(rich_journeys):
    j = rich_journeys
    for stage, flag in (("lead", 1), ("opportunity", 2)):
        expected = []
        for row in range(j.n_journeys):
            touches = slice(j.offsets[row], j.offsets[row + 1])
            hits = np.flatnonzero(j.milestones[touches] & flag)
            if len(hits):
                expected.append(j.codes[touches][: hits[0] + 1].tolist())
        cut = stage_journeys(j, stage)
        got = [cut.codes[cut.offsets[i]:cut.offsets[i + 1]].tolist()
               for i in range(cut.n_journeys)]
        assert got == expected
        assert cut.total_conversions == len(expected)
        assert np.all(cut.milestones[cut.offsets[1:] - 1] & flag)
        assert np.all(cut.ages[cut.offsets[1:] - 1] == 0)


def test_stage_journeys_without_reaching_the_stage_is_empty():
    j = Journeys.from_lists([["a", "b"]], conversions=[1], milestones=flags(0, 1))
    empty = stage_journeys(j, "opportunity")
    assert empty.n_journeys == 0 and empty.n_touches == 0


def test_stage_journeys_need_milestones_and_a_known_stage(b2b):
    path_table = Journeys.from_lists([["a"]], conversions=[1])
    with pytest.raises(engine.MissingDataError, match="milestones"):
        stage_journeys(path_table, "lead")
    with pytest.raises(engine.EngineError, match="stage must be one of"):
        stage_journeys(b2b, "sale")


# -- channel KPIs ------------------------------------------------------------------------------

def test_channel_kpis_hand_computed(b2b, spend_table):
    kpis = channel_kpis(b2b, spend_table, models=["last_touch"])
    assert list(kpis.columns) == KPI_COLUMNS
    assert kpis["channel"].tolist() == ["direct", "email", "search", "social", "tv"]
    assert kpis.attrs["unmatched_spend_channels"] == ["tv"]
    columns = KPI_COLUMNS[2:]
    expected = {
        # No spend row: spend and every cost metric unknown.
        "direct": [NAN, 1, 100, NAN, NAN, 0, NAN, 0, NAN, 1, 1, NAN, 100, 100],
        # Zero spend: costs are 0 where something was bought, ROAS unknown (never inf).
        "email": [0, 1, 50, 0, NAN, 1, 0, 2, 0, 3, 3, 3, 50, 50 / 3],
        "search": [200, 1, 30, 200, 0.15, 2, 100, 0, NAN, 3, 3, 1.5, 30, 10],
        "social": [40, 0, 0, NAN, 0, 0, NAN, 0, NAN, 2, NAN, NAN, NAN, 0],
        "tv": [70, 0, 0, NAN, 0, 0, NAN, 0, NAN, 0, NAN, NAN, NAN, NAN],
    }
    assert_same(records(kpis.drop(columns="model")),
                {c: dict(zip(columns, map(float, v))) for c, v in expected.items()})
    assert not np.isinf(kpis[columns].to_numpy(dtype=float)).any()


def test_channel_kpis_totals_per_model(b2b, spend_table):
    kpis = channel_kpis(b2b, spend_table, models=["last_touch", FirstTouch(), "linear"])
    assert kpis["model"].unique().tolist() == ["last_touch", "first_touch", "linear"]
    totals = kpis.groupby("model", sort=False)[["conversions", "value", "leads",
                                                "opportunities", "touches", "spend"]].sum()
    assert totals["conversions"].tolist() == pytest.approx([3.0] * 3)
    assert totals["value"].tolist() == pytest.approx([180.0] * 3)
    assert totals["leads"].tolist() == pytest.approx([3.0] * 3)
    assert totals["opportunities"].tolist() == pytest.approx([2.0] * 3)
    assert totals["touches"].tolist() == [9.0] * 3
    assert totals["spend"].tolist() == [310.0] * 3
    first = records(kpis[kpis["model"] == "first_touch"].drop(columns="model"))
    # First touch on the lead stage: search (j0), social (j1 and j3).
    assert {c: first[c]["leads"] for c in first} == {"direct": 0, "email": 0, "search": 1,
                                                     "social": 2, "tv": 0}
    assert first["social"]["touches_per_lead"] == pytest.approx(first["social"]["touches"] / 2)
    assert np.isnan(first["email"]["touches_per_lead"])


def test_channel_kpis_totals_on_rich_journeys(rich_journeys):
    kpis = channel_kpis(rich_journeys, models="all")
    reached_lead = (np.bincount(rich_journeys.journey_index,
                                rich_journeys.milestones & 1) > 0).sum()
    for model, block in kpis.groupby("model"):
        if model == "incremental":  # channels get the incremental part; the rest is baseline
            assert 0 < block["conversions"].sum() < rich_journeys.total_conversions
            assert 0 < block["value"].sum() < rich_journeys.total_value
            continue
        assert block["conversions"].sum() == pytest.approx(rich_journeys.total_conversions), model
        assert block["value"].sum() == pytest.approx(rich_journeys.total_value), model
        if block["leads"].notna().all():
            assert block["leads"].sum() == pytest.approx(reached_lead), model
        else:
            # Stage journeys all convert: models that need non-converting journeys give NaN.
            assert block["leads"].isna().all() and model in ("markov", "incremental"), model
    assert set(kpis["model"]) == set(engine.models.REGISTRY)


def test_channel_kpis_spend_date_filters(b2b, spend_table):
    kpis = channel_kpis(b2b, spend_table, start="2024-01-01", end="2024-01-31")
    assert kpis.set_index("channel")["spend"].to_dict() == pytest.approx(
        {"direct": NAN, "email": 0.0, "search": 150.0, "social": 40.0}, nan_ok=True)
    assert kpis.attrs["unmatched_spend_channels"] == []
    later = channel_kpis(b2b, spend_table, start=pd.Timestamp("2024-02-01"))
    assert later.set_index("channel")["spend"].dropna().to_dict() == {"search": 50.0, "tv": 70.0}
    with pytest.raises(engine.EngineError, match="start must be a date"):
        channel_kpis(b2b, spend_table, start="soon")


def test_channel_kpis_without_milestones_or_spend_are_nan_not_zero():
    j = Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 0], value=[5.0, 0.0],
                            nulls=[0, 2])
    kpis = channel_kpis(j)
    for column in ("spend", "cost_per_order", "roas", "leads", "cost_per_lead", "opportunities",
                   "cost_per_opportunity"):
        assert kpis[column].isna().all(), column
    assert kpis["touches"].tolist() == [1.0, 3.0]
    assert kpis.attrs["unmatched_spend_channels"] == []


def test_channel_kpis_spend_file_whitespace_matching_and_errors(tmp_path):
    j = Journeys.from_lists([["paid search"], ["Email"]], conversions=[2, 1], value=[8.0, 3.0])
    path = tmp_path / "spend.csv"
    path.write_text("date,channel,spend\n2024-01-01,  paid   search,4\n2024-01-01,email,3\n")
    kpis = channel_kpis(j, path)
    assert kpis.set_index("channel")["spend"].to_dict() == pytest.approx(
        {"Email": NAN, "email": 3.0, "paid search": 4.0}, nan_ok=True)
    assert kpis.attrs["unmatched_spend_channels"] == ["email"]
    assert kpis.set_index("channel").loc["paid search", "cost_per_order"] == 2.0
    path.write_text("date,channel,spend\n2024-01-01,email,lots\n")
    with pytest.raises(engine.InputError, match="row 1, column 'spend'"):
        channel_kpis(j, path)


def test_channel_kpis_fit_copies_and_skip_unsupported(example_journeys):
    model = LastTouch()
    kpis = channel_kpis(example_journeys, models=[model, "time_decay"], skip_unsupported=True)
    assert not hasattr(model, "journeys_")
    assert kpis["model"].unique().tolist() == ["last_touch"]
    assert "time_decay" in kpis.attrs["skipped"]
    with pytest.raises(engine.MissingDataError, match="time_decay"):
        channel_kpis(example_journeys, models=["time_decay"])


# -- conversion by first touch -----------------------------------------------------------------

def test_conversion_by_first_touch_hand_computed():
    j = Journeys.from_lists([["a", "b"], ["b", "a"], ["a"], ["c", "a"]],
                            conversions=[1, 2, 0, 0], value=[10.0, 7.0, 0.0, 0.0],
                            nulls=[3, 0, 4, 0])
    table = conversion_by_first_touch(j)
    assert list(table.columns) == ["channel", "journeys", "conversions", "conversion_rate",
                                   "value"]
    # A row with two conversions and no nulls stands for two converting journeys (rate 1); a
    # row standing for no journey gives an unknown rate.
    assert_same(records(table), {
        "a": {"journeys": 8, "conversions": 1, "conversion_rate": 0.125, "value": 10},
        "b": {"journeys": 2, "conversions": 2, "conversion_rate": 1.0, "value": 7},
        "c": {"journeys": 0, "conversions": 0, "conversion_rate": NAN, "value": 0}})
    assert table["channel"].tolist() == ["a", "b", "c"]


def test_conversion_by_first_touch_totals(example_journeys):
    table = conversion_by_first_touch(example_journeys)
    j = example_journeys
    assert table["journeys"].sum() == j.total_conversions + j.nulls.sum()
    assert table["conversions"].sum() == j.total_conversions
    assert table["value"].sum() == pytest.approx(j.total_value)
    assert table["journeys"].is_monotonic_decreasing
    assert table["conversion_rate"].between(0, 1).all()


# -- lifetime value by acquisition channel -----------------------------------------------------

def test_ltv_by_acquisition_hand_computed():
    j = Journeys.from_lists(
        [["email"], ["search", "email"], ["social"], ["display"], ["social", "search"], ["tv"]],
        conversions=[1, 1, 0, 1, 1, 0], value=[40.0, 60.0, 0.0, 25.0, 15.0, 0.0],
        nulls=[0, 0, 1, 0, 0, 1],
        person=np.array(["ann", "ann", "bob", "cy", "cy", "dee"]),
        start=days("2024-01-05", "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-03",
                   "2024-01-09"))
    table = ltv_by_acquisition(j)
    assert list(table.columns) == ["channel", "persons", "conversions", "value",
                                   "value_per_person"]
    # cy's two journeys start together: the earlier row (display) acquired them.
    assert records(table) == {
        "display": {"persons": 1, "conversions": 2.0, "value": 40.0, "value_per_person": 40.0},
        "search": {"persons": 1, "conversions": 2.0, "value": 100.0, "value_per_person": 100.0},
        "social": {"persons": 1, "conversions": 0.0, "value": 0.0, "value_per_person": 0.0},
        "tv": {"persons": 1, "conversions": 0.0, "value": 0.0, "value_per_person": 0.0}}
    assert table["value"].sum() == j.total_value


def test_ltv_by_acquisition_needs_persons(example_journeys):
    with pytest.raises(engine.MissingDataError, match="person and start"):
        ltv_by_acquisition(example_journeys)
    j = Journeys.from_lists([["a"], ["b"]], conversions=[1, 1],
                            person=np.array(["x", None], dtype=object),
                            start=days("2024-01-01", "2024-01-02"))
    with pytest.raises(engine.InputError, match="journey row 1 has no person"):
        ltv_by_acquisition(j)


# -- time to convert ---------------------------------------------------------------------------

def test_time_to_convert_hand_computed():
    j = Journeys.from_lists(
        [["a"], ["a", "b"], ["b"], ["a"], ["c"]], conversions=[1, 1, 2, 0, 1],
        start=days("2024-01-01", "2024-01-01", "2024-01-02", "2024-01-01", "2024-01-01T12:00"),
        end=days("2024-01-03", "2024-01-11", "2024-01-03", "2024-03-01", "2024-01-02"),
        nulls=[0, 0, 0, 1, 0])
    table = time_to_convert(j)
    assert list(table.columns) == ["channel", "conversions", "mean_days", "median_days"]
    # The non-converting journey (60 days) is left out.
    assert records(table) == {
        "a": {"conversions": 2.0, "mean_days": 6.0, "median_days": 6.0},
        "b": {"conversions": 2.0, "mean_days": 1.0, "median_days": 1.0},
        "c": {"conversions": 1.0, "mean_days": 0.5, "median_days": 0.5}}
    overall = time_to_convert(j, by=None)
    # Durations 2, 10, 1, 1 (weight 2) and 0.5: median of [0.5, 1, 1, 2, 10] is 1.
    assert records(overall) == {"all": {"conversions": 5.0, "mean_days": 2.9,
                                        "median_days": 1.0}}


def test_time_to_convert_median_equals_the_median_of_repeated_rows():
    rng = np.random.default_rng(7)
    n = 300
    channels = [str(c) for c in rng.choice(["a", "b", "c", "d"], size=n)]
    conversions = rng.integers(0, 4, size=n)
    start = np.datetime64("2024-01-01", "us") + rng.integers(0, 10**6, size=n).astype(
        "timedelta64[s]")
    duration = rng.integers(0, 40, size=n).astype("timedelta64[D]")
    j = Journeys.from_lists([[c] for c in channels], conversions=conversions,
                            nulls=(conversions == 0).astype(float), start=start,
                            end=start + duration)
    table = time_to_convert(j).set_index("channel")
    for channel in table.index:
        rows = np.array(channels) == channel
        repeated = np.repeat(duration[rows].astype(float), conversions[rows])
        assert table.loc[channel, "median_days"] == np.median(repeated)
        assert table.loc[channel, "mean_days"] == pytest.approx(repeated.mean())
        assert table.loc[channel, "conversions"] == len(repeated)


def test_time_to_convert_needs_times(example_journeys):
    with pytest.raises(engine.MissingDataError, match="start and end"):
        time_to_convert(example_journeys)
    j = Journeys.from_lists([["a"], ["b"]], conversions=[1, 1],
                            start=days("2024-01-01", "NaT"), end=days("2024-01-02", "2024-01-03"))
    with pytest.raises(engine.InputError, match="journey row 1 converts but has no start"):
        time_to_convert(j)
    with pytest.raises(engine.EngineError, match="by must be"):
        time_to_convert(j, by="last_touch")


# -- path length and top paths -----------------------------------------------------------------

def test_path_length_hand_computed():
    j = Journeys.from_lists([["a"], ["a", "b"], ["b", "c"], ["c", "c", "c"]],
                            conversions=[1, 1, 0, 2], nulls=[3, 0, 2, 0])
    table = path_length(j)
    assert table.to_dict("list") == {"length": [1, 2, 3], "journeys": [4.0, 3.0, 2.0],
                                     "conversions": [1.0, 1.0, 2.0],
                                     "conversion_rate": [0.25, 1 / 3, 1.0]}
    assert table.attrs["mean_length_converting"] == pytest.approx((1 + 2 + 6) / 4)
    assert table.attrs["mean_length_all"] == pytest.approx((4 + 6 + 6) / 9)


def test_path_length_on_the_example(example_journeys):
    table = path_length(example_journeys)
    assert table["length"].is_monotonic_increasing
    assert table["conversions"].sum() == example_journeys.total_conversions
    assert table["journeys"].sum() == (example_journeys.total_conversions
                                       + example_journeys.nulls.sum())


@pytest.fixture(scope="module")
def raw_example_paths() -> pd.DataFrame:
    """The shipped CSV grouped by path with pandas: an independent check of top_paths."""
    raw = pd.read_csv(example_path())
    raw["path"] = raw["path"].str.replace(r"\s*>\s*", " > ", regex=True).str.strip()
    grouped = raw.groupby("path").agg(conversions=("total_conversions", "sum"),
                                      nulls=("total_null", "sum"),
                                      value=("total_conversion_value", "sum"))
    grouped["journeys"] = grouped["conversions"] + grouped["nulls"]
    return grouped.reset_index()


@pytest.mark.parametrize("by", ["conversions", "journeys", "value"])
def test_top_paths_on_the_example(example_journeys, raw_example_paths, by):
    top = top_paths(example_journeys, n=10, by=by)
    assert list(top.columns) == ["path", "journeys", "conversions", "conversion_rate", "value"]
    assert len(top) == 10
    assert top[by].is_monotonic_decreasing
    expected = raw_example_paths.sort_values(
        [by, "path"], ascending=[False, True]).head(10)
    assert top["path"].tolist() == expected["path"].tolist()
    for column in ("journeys", "conversions", "value"):
        assert top[column].to_numpy() == pytest.approx(expected[column].to_numpy())
    assert top["conversion_rate"].to_numpy() == pytest.approx(
        (expected["conversions"] / expected["journeys"]).to_numpy())


def test_top_paths_known_leaders(example_journeys):
    top = top_paths(example_journeys, n=3)
    assert top["path"].tolist()[:2] == ["alpha > alpha > alpha", "eta"]
    everything = top_paths(example_journeys, n=None)
    assert len(everything) == example_journeys.unique().n_journeys
    assert everything["conversions"].sum() == example_journeys.total_conversions


def test_top_paths_merges_duplicates_and_breaks_ties_by_path():
    j = Journeys.from_lists([["b"], ["a", "b"], ["b"], ["c"]], conversions=[1, 2, 1, 0],
                            value=[1.0, 2.0, 3.0, 0.0], nulls=[1, 0, 0, 0])
    top = top_paths(j, n=None)
    assert_same(records(top, key="path"), {
        "a > b": {"journeys": 2, "conversions": 2, "conversion_rate": 1.0, "value": 2},
        "b": {"journeys": 3, "conversions": 2, "conversion_rate": 2 / 3, "value": 4},
        "c": {"journeys": 0, "conversions": 0, "conversion_rate": NAN, "value": 0}})
    assert top["path"].tolist() == ["a > b", "b", "c"]
    assert top_paths(j, by="journeys")["path"].tolist() == ["b", "a > b", "c"]
    for bad in ({"by": "rate"}, {"n": 0}, {"n": 2.5}, {"n": True}):
        with pytest.raises(engine.EngineError):
            top_paths(j, **bad)


# -- summary -----------------------------------------------------------------------------------

def test_summary_on_a_path_table(example_journeys):
    tables = summary(example_journeys, models=["last_touch", "first_touch"], n_paths=5)
    assert list(tables) == ["channels", "first_touch", "paths", "path_length"]
    assert len(tables["paths"]) == 5
    assert tables["channels"]["model"].unique().tolist() == ["last_touch", "first_touch"]


def test_summary_on_event_journeys(b2b, spend_table):
    j = Journeys.from_lists(
        [b2b.paths()[i].split(" > ") for i in range(b2b.n_journeys)],
        conversions=b2b.conversions, value=b2b.value, nulls=b2b.nulls, milestones=b2b.milestones,
        person=np.array(["p", "p", "q", "r"]),
        start=days("2024-01-01", "2024-01-02", "2024-01-01", "2024-01-04"),
        end=days("2024-01-03", "2024-01-05", "2024-01-01", "2024-01-08"))
    tables = summary(j, spend_table)
    assert list(tables) == ["channels", "first_touch", "paths", "path_length", "time_to_convert",
                            "ltv"]
    assert tables["channels"].attrs["unmatched_spend_channels"] == ["tv"]
    assert tables["ltv"]["persons"].sum() == 3
    assert tables["time_to_convert"]["conversions"].sum() == 3
