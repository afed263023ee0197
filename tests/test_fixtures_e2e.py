"""End to end from raw events to paths and last-touch credit, on two published fixtures.

Snowplow's dbt-snowplow-fractribution integration test (events -> channels -> paths, with
expected outputs) and DP6's Marketing-Attribution-Models fixtures (repeat conversions, user-id
stitching; expected values computed by hand in the tests). See each folder's SOURCE.md.

Semantic differences from Snowplow, by design:
- we split a person's events at every conversion and keep what follows the last conversion as a
  non-converting journey; Snowplow lists non-converting paths only for people who never converted.
  So our non-converting journeys are Snowplow's plus the tails of converting customers.
- Snowplow's ``transformed_path`` (its "exposure" transform) collapses consecutive repeats; ours
  is ``collapse_repeats=True``.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import engine
from tests.snowplow import SNOWPLOW, snowplow_journeys

DATA = Path(__file__).parent / "data"
DP6 = DATA / "dp6_test_fixtures"

def expected(name):
    return pd.read_csv(SNOWPLOW / "expected" / f"snowplow_fractribution_{name}_expected.csv")


@pytest.fixture(scope="module")
def snowplow():
    return snowplow_journeys()


def frame(journeys):
    return pd.DataFrame({"customer_id": journeys.person, "path": journeys.paths(),
                         "conversions": journeys.conversions, "revenue": journeys.value,
                         "conversion_tstamp": journeys.end})


def test_snowplow_channels_match_the_expected_session_counts(snowplow):
    counts = expected("channel_counts").groupby("channel")["number_of_sessions"].sum()
    # Touches cut by the 30-day lookback are not in our journeys; count them back per channel.
    assert snowplow.report.rejected == {"touch outside the lookback window": 7}
    unbounded = snowplow_journeys(lookback_days=None)
    ours = pd.Series(unbounded.codes).map(dict(enumerate(unbounded.channels))).value_counts()
    pd.testing.assert_series_equal(ours.sort_index(), counts.sort_index(), check_names=False)


def test_snowplow_paths_to_conversion(snowplow):
    want = expected("paths_to_conversion").set_index("customer_id").sort_index()
    ours = frame(snowplow)
    ours = ours[ours.conversions > 0].set_index("customer_id").sort_index()
    assert ours.index.tolist() == want.index.tolist()
    assert ours["path"].tolist() == want["path"].tolist()
    np.testing.assert_allclose(ours["revenue"], want["revenue"])
    np.testing.assert_array_equal(ours["conversion_tstamp"].to_numpy(),
                                  pd.to_datetime(want["conversion_tstamp"]).to_numpy())
    collapsed = frame(snowplow_journeys(collapse_repeats=True))
    collapsed = collapsed[collapsed.conversions > 0].set_index("customer_id").sort_index()
    assert collapsed["path"].tolist() == want["transformed_path"].tolist()


def test_snowplow_paths_to_non_conversion(snowplow):
    want = expected("paths_to_non_conversion").set_index("customer_id")["path"]
    ours = frame(snowplow)
    ours = ours[ours.conversions == 0].set_index("customer_id")["path"]
    assert ours.reindex(want.index).tolist() == want.tolist()
    converters = set(frame(snowplow).query("conversions > 0").customer_id)
    assert set(ours.index) - set(want.index) <= converters


def test_snowplow_last_touch_credit(snowplow):
    want = expected("channel_attribution").query("ATTRIBUTION_TYPE == 'last_touch'")
    want = want.set_index("CHANNEL")[["CONVERSIONS", "REVENUE"]].sort_index()
    ours = engine.models.LastTouch().fit(snowplow).attribute().table.set_index("channel")
    ours = ours.reindex(want.index)
    np.testing.assert_allclose(ours["conversions"], want["CONVERSIONS"])
    np.testing.assert_allclose(ours["value"], want["REVENUE"])
    assert snowplow.total_value == pytest.approx(500.92)


def dp6(name, conversion):
    return engine.read_events(DP6 / name, person="user_pseudo_id", identities=["user_id"],
                              timestamp="event_time", channel="source_medium",
                              conversion=conversion)


def test_dp6_journeys_reset_after_each_conversion_and_respect_the_lookback():
    journeys = dp6("test_dataset.csv", "is_conversion_purchase")
    assert list(zip(journeys.person, journeys.paths(), journeys.conversions)) == [
        ("A", "direct > google_ads > direct", 1.0),   # A's July 2021 seo visit is 6 months old
        ("B", "seo > direct", 0.0),
        ("C", "direct > crm > direct", 1.0),
        ("D", "seo > direct > direct", 1.0),          # D converts twice: two journeys
        ("D", "direct > direct > seo > direct", 1.0)]
    assert journeys.report.rejected == {"touch outside the lookback window": 1}
    assert journeys.report.first_row == {"touch outside the lookback window": 1}
    credit = engine.models.LastTouch().fit(journeys).attribute().table.set_index("channel")
    assert credit["conversions"].to_dict() == {"crm": 0, "direct": 4, "google_ads": 0, "seo": 0}
    first = engine.models.FirstTouch().fit(journeys).attribute().table.set_index("channel")
    assert first["conversions"].to_dict() == {"crm": 0, "direct": 3, "google_ads": 0, "seo": 1}


def test_dp6_several_purchases_in_one_session():
    journeys = dp6("test_dataset_multiple_conversions.csv", "n_purchases")
    assert journeys.total_conversions == 6
    assert (journeys.person[-1], journeys.paths()[-1], journeys.conversions[-1]) == (
        "E", "direct > crm > direct", 2.0)
    credit = engine.models.LastTouch().fit(journeys).attribute().table.set_index("channel")
    assert credit.loc["direct", "conversions"] == 6


def test_dp6_user_id_stitches_devices():
    events = pd.read_csv(DP6 / "test_dataset.csv")
    # Person B logs in as A1 (A's user id) on another device: B's visits join A's history.
    events.loc[events.user_pseudo_id == "B", "user_id"] = "A1"
    journeys = engine.read_events(events, person="user_pseudo_id", identities=["user_id"],
                                  timestamp="event_time", channel="source_medium",
                                  conversion="is_conversion_purchase")
    assert "B" not in set(journeys.person)
    assert ("A", "seo > direct", 0.0) in list(zip(journeys.person, journeys.paths(),
                                                  journeys.conversions))
