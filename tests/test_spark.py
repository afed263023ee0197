"""The Spark backend: the same Ibis queries on a local Spark session give the same journeys, the
same rejection reports and the same model results as embedded DuckDB.

Marked ``spark``: they need pyspark and Java 17 (``make test`` installs both). A Spark query costs
about a second on a laptop-sized session, so the cases are few and each covers a lot.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.cli import main as cli
from engine.datasets import example_path
from engine.models import get_model
from engine.simulate import scenario, simulate
from tests.snowplow import snowplow_journeys
from tests.test_journey_table import assert_same_journeys

pytestmark = pytest.mark.spark

DP6 = "tests/data/dp6_test_fixtures/test_dataset_multiple_conversions.csv"


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime (make test installs openjdk-17-jre-headless)")
    from engine.ingest.backend import spark_session

    return spark_session()


@pytest.fixture(scope="module")
def b2b_events():
    return simulate(scenario("b2b", persons=800, seed=11)).events


def same_models(a, b, names):
    for name in names:
        params = {"n_draws": 10, "rng": 0} if name in ("markov", "shapley") else {}
        left = get_model(name, **params).fit(a).attribute().table
        right = get_model(name, **params).fit(b).attribute().table
        pd.testing.assert_frame_equal(left, right, rtol=1e-9, obj=name)


PATH_MODELS = ["first_touch", "last_touch", "last_non_direct", "linear", "position_based",
               "markov", "shapley"]


def test_example_path_table_and_every_model(spark):
    duck = engine.read_paths(example_path())
    on_spark = engine.read_paths(example_path(), engine="spark")
    assert_same_journeys(on_spark, duck)
    assert on_spark.report == duck.report
    same_models(duck, on_spark, PATH_MODELS)


def test_fixture_logs_with_utm_grouping_and_identity_stitching(spark):
    for read in (lambda **kw: snowplow_journeys(**kw),
                 lambda **kw: engine.read_events(DP6, person="user_pseudo_id",
                                                 identities=["user_id"],
                                                 timestamp="event_time",
                                                 conversion="is_conversion_purchase",
                                                 channel="source_medium", **kw)):
        duck, on_spark = read(), read(engine="spark")
        assert_same_journeys(on_spark, duck)
        assert on_spark.report == duck.report


def test_journeys_kept_on_spark_give_the_same_statistics_and_models(spark, b2b_events):
    duck = engine.read_events(b2b_events, account="account_id")
    with engine.read_events(b2b_events, account="account_id", engine="spark",
                            collect=False) as table:
        assert table.engine == "spark"
        assert_same_journeys(table.collect(), duck)
        assert table.report == duck.report
        with engine.read_events(b2b_events, account="account_id", collect=False) as local:
            for spark_chain, duck_chain in [(table.transitions(2), local.transitions(2))]:
                for name in ("grams", "source", "target", "count", "value"):
                    np.testing.assert_allclose(getattr(spark_chain, name),
                                               getattr(duck_chain, name), rtol=1e-12)
            sets, duck_sets = table.coalitions(), local.coalitions()
            np.testing.assert_array_equal(sets.masks, duck_sets.masks)
            np.testing.assert_allclose(sets.conversions, duck_sets.conversions, rtol=1e-12)
            unique, duck_unique = table.unique(), local.unique()
            assert unique.paths().tolist() == duck_unique.paths().tolist()
            np.testing.assert_allclose(unique.nulls, duck_unique.nulls, rtol=1e-12)
            # Shapley's bootstrap draws from merged paths on a table, from journeys otherwise.
            same_models(local, table, PATH_MODELS + ["time_decay", "w_shaped", "full_path"])
        same_models(duck, table, ["markov", "linear", "w_shaped"])


def test_spark_dataframe_source_numbers_rows_like_the_file(spark, b2b_events, tmp_path):
    path = tmp_path / "events.parquet"
    b2b_events.to_parquet(path, index=False)
    frame = spark.read.parquet(str(path))
    on_spark = engine.read_events(frame, account="account_id")
    duck = engine.read_events(path, account="account_id")
    assert_same_journeys(on_spark, duck)
    assert on_spark.report.rejected == duck.report.rejected
    assert on_spark.report.first_row == duck.report.first_row


def test_cli_engine_option(spark, tmp_path):
    """On Spark the CLI keeps the journeys on the cluster (a JourneyTable); same table."""
    outs = []
    for name in ("duckdb", "spark"):
        out = tmp_path / f"{name}.csv"
        assert cli(["run", DP6, "--format", "events", "--person", "user_pseudo_id",
                    "--timestamp", "event_time", "--conversion", "is_conversion_purchase",
                    "--channel", "source_medium", "--model", "linear", "--model", "markov",
                    "--model", "time_decay", "--engine", name,
                    "--out", str(out), "--quiet"]) == 0
        outs.append(pd.read_csv(out))
    pd.testing.assert_frame_equal(outs[0], outs[1])


# -- random event logs ------------------------------------------------------------------------

PERSONS = ["u1", "u2", "U1", "u 3", "", None]
TIMES = ["2024-03-01T10:00:00", "2024-03-01T10:00:00Z", "2024-03-01T12:00:00+02:00",
         "2024-03-02", "2024-02-10 08:30", "2024-03-01T10:00:00.000001", "not a time", "", None]
CHANNELS = ["Search", "search", " Email ", "Social  Ads", "", None]
TYPES = ["touch", "TOUCH", "conversion", "lead", "opportunity", "unsubscribe", None]
REVENUE = ["10", "0", "-5", "nan", "inf", "abc", "", None, "1e3"]


@st.composite
def event_logs(draw):
    """Several small random logs side by side (persons kept apart by a prefix): one Spark read
    checks them all, since journeys of different persons do not interact."""
    parts = []
    for part in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 25))

        def column(values, n=n):
            return draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))

        persons = [p if p in ("", None) else f"log{part}:{p}" for p in column(PERSONS)]
        parts.append(pd.DataFrame({"person_id": persons, "timestamp": column(TIMES),
                                   "channel": column(CHANNELS), "event_type": column(TYPES),
                                   "revenue": column(REVENUE)}, dtype=object))
    return pd.concat(parts, ignore_index=True)


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(log=event_logs())
def test_random_event_logs_give_the_same_journeys_or_the_same_error(spark, log):
    outcomes = []
    for name in ("duckdb", "spark"):
        try:
            outcomes.append(engine.read_events(log, engine=name, lookback_days=3))
        except engine.errors.InputError as error:
            outcomes.append(str(error))
    duck, on_spark = outcomes
    if isinstance(duck, str):
        assert on_spark == duck
    else:
        assert_same_journeys(on_spark, duck)
        assert on_spark.report == duck.report
