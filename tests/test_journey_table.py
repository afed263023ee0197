"""Journeys kept on the engine (``read_events(..., collect=False)``): every aggregate a model reads
equals the same statistic of the collected journeys, and models fitted on the table give the
results they give on the journeys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import engine
from engine.ingest.table import JourneyTable
from engine.models import Markov, Shapley
from engine.models.markov import transition_counts
from engine.models.shapley import coalition_counts
from engine.simulate import scenario, simulate


@pytest.fixture(scope="module")
def b2b_events():
    return simulate(scenario("b2b", persons=1500, seed=3)).events


@pytest.fixture(scope="module")
def world_events():
    return simulate(scenario("null_channel", persons=3000, seed=5)).events


def assert_same_journeys(a, b):
    assert a.channels == b.channels
    for name in ("offsets", "codes", "conversions", "value", "nulls", "ages", "milestones",
                 "person", "start", "end"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None and x.dtype.kind == "f":
            # Sums of values (identical paths merged) may run in another order: equal to the
            # last few bits, not bit for bit.
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=0, err_msg=name)
        elif x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)


def by_path(journeys) -> pd.DataFrame:
    frame = pd.DataFrame({"path": journeys.paths(), "conversions": journeys.conversions,
                          "value": journeys.value, "nulls": journeys.nulls})
    return frame.groupby("path").sum().sort_index()


def test_collect_equals_read_events(b2b_events):
    journeys = engine.read_events(b2b_events, account="account_id")
    table = engine.read_events(b2b_events, account="account_id", collect=False)
    with table:
        assert isinstance(table, JourneyTable)
        assert table.n_journeys == journeys.n_journeys
        assert table.n_touches == journeys.n_touches
        assert table.total_conversions == pytest.approx(journeys.total_conversions)
        assert table.total_value == pytest.approx(journeys.total_value)
        assert table.report == journeys.report
        assert_same_journeys(table.collect(batch_rows=97), journeys)
    assert journeys.milestones is not None and journeys.milestones.any()


def test_parquet_is_scanned_in_place_with_the_same_result(b2b_events, tmp_path):
    path = tmp_path / "events.parquet"
    b2b_events.to_parquet(path, index=False)
    from_file = engine.read_events(path, account="account_id")
    from_frame = engine.read_events(b2b_events, account="account_id")
    assert_same_journeys(from_file, from_frame)
    assert from_file.report.rejected == from_frame.report.rejected
    assert from_file.report.first_row == from_frame.report.first_row


def test_unique_paths_equal(world_events):
    journeys = engine.read_events(world_events)
    with engine.read_events(world_events, collect=False) as table:
        unique = table.unique()
    assert unique.n_journeys < journeys.n_journeys
    pd.testing.assert_frame_equal(by_path(unique), by_path(journeys.unique()))


@pytest.mark.parametrize("order,collapse", [(1, False), (2, False), (3, False), (2, True)])
def test_transition_counts_equal(world_events, order, collapse):
    journeys = engine.read_events(world_events)
    with engine.read_events(world_events, collect=False) as table:
        relational = table.transitions(order, collapse)
    expected = transition_counts(journeys, order, collapse)
    np.testing.assert_array_equal(relational.grams, expected.grams)
    np.testing.assert_array_equal(relational.source, expected.source)
    np.testing.assert_array_equal(relational.target, expected.target)
    np.testing.assert_allclose(relational.count, expected.count, rtol=1e-12)
    np.testing.assert_allclose(relational.value, expected.value, rtol=1e-12)


def test_coalitions_equal(world_events):
    journeys = engine.read_events(world_events)
    with engine.read_events(world_events, collect=False) as table:
        relational = table.coalitions()
    expected = coalition_counts(journeys)
    np.testing.assert_array_equal(relational.masks, expected.masks)
    for name in ("conversions", "nulls", "value"):
        np.testing.assert_allclose(getattr(relational, name), getattr(expected, name),
                                   rtol=1e-12)


@pytest.mark.parametrize("model", [
    Markov(order=2, n_draws=20, rng=1),
    Markov(order=1, collapse_repeats=True, n_draws=0),
    Shapley(value="conversion_rate", n_draws=0),
])
def test_models_fit_on_the_table_as_on_the_journeys(world_events, model):
    journeys = engine.read_events(world_events)
    on_journeys = model.fit(journeys).attribute().table
    with engine.read_events(world_events, collect=False) as table:
        on_table = model.fit(table).attribute().table
    pd.testing.assert_frame_equal(on_table, on_journeys, rtol=1e-9)


def test_table_refuses_what_it_lacks(world_events):
    with engine.read_events(world_events, collect=False) as table:
        with pytest.raises(engine.MissingDataError, match="milestones"):
            engine.models.WShaped().fit(table)


@pytest.mark.parametrize("name", ["first_touch", "last_touch", "last_non_direct", "linear",
                                  "time_decay", "position_based", "w_shaped", "full_path"])
def test_rules_on_the_table_as_on_the_journeys(b2b_events, name):
    model = engine.models.get_model(name)
    journeys = engine.read_events(b2b_events, account="account_id")
    on_journeys = model.fit(journeys).attribute().table
    with engine.read_events(b2b_events, account="account_id", collect=False) as table:
        on_table = model.fit(table).attribute().table
    pd.testing.assert_frame_equal(on_table, on_journeys, rtol=1e-9)


def test_read_events_reports_progress(world_events):
    heard = []
    engine.read_events(world_events, progress=heard.append)
    assert heard[0].startswith("reading ") and "duckdb" in heard[0]
    assert "ordering events and splitting journeys at conversions" in heard
    assert heard[-1].startswith("collected ") and heard[-1].endswith(" touches")
