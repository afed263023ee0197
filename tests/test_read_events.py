"""read_events: journey building from touchpoint logs, row accounting and bad input."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.ingest.channels import DEFAULT_CHANNEL_GROUPING


def log(*rows, columns=("person_id", "timestamp", "channel", "event_type", "revenue")):
    return pd.DataFrame(list(rows), columns=list(columns))


def summary(journeys):
    return list(zip(journeys.person.tolist(), journeys.paths().tolist(),
                    journeys.conversions.tolist(), journeys.value.tolist()))


def test_split_at_every_conversion_and_trailing_open_journey():
    events = log(("u", "2024-01-01", "a", "touch", None),
                 ("u", "2024-01-02", "b", "touch", None),
                 ("u", "2024-01-02", None, "conversion", 10.0),
                 ("u", "2024-01-05", "c", "touch", None),
                 ("u", "2024-01-06", None, "purchase", "5"),
                 ("u", "2024-01-07", "a", "touch", None))
    journeys = engine.read_events(events)
    assert summary(journeys) == [("u", "a > b", 1.0, 10.0), ("u", "c", 1.0, 5.0),
                                 ("u", "a", 0.0, 0.0)]
    assert journeys.nulls.tolist() == [0.0, 0.0, 1.0]
    assert journeys.ages.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert journeys.report.n_used == 6 and journeys.report.n_rejected == 0


def test_rows_are_ordered_by_time_not_by_input_order():
    events = log(("u", "2024-01-03", None, "conversion", 1.0),
                 ("u", "2024-01-02", "b", "touch", None),
                 ("u", "2024-01-01", "a", "touch", None))
    assert engine.read_events(events).paths().tolist() == ["a > b"]


def test_touch_at_the_conversion_time_belongs_to_that_conversion():
    events = log(("u", "2024-01-01 10:00", None, "conversion", 1.0),
                 ("u", "2024-01-01 10:00", "a", "touch", None))
    journeys = engine.read_events(events)
    assert summary(journeys) == [("u", "a", 1.0, 1.0)]


def test_lookback_window_cuts_old_touches_and_counts_them():
    events = log(("u", "2024-01-01", "old", "touch", None),
                 ("u", "2024-02-20", "new", "touch", None),
                 ("u", "2024-02-21", None, "conversion", 3.0))
    journeys = engine.read_events(events, lookback_days=30)
    assert journeys.paths().tolist() == ["new"]
    assert journeys.report.rejected == {"touch outside the lookback window": 1}
    assert journeys.report.first_row == {"touch outside the lookback window": 1}
    assert engine.read_events(events, lookback_days=None).paths().tolist() == ["old > new"]


def test_conversion_without_any_touch_in_window_is_reported():
    events = log(("u", "2024-01-01", "a", "touch", None),
                 ("u", "2024-06-01", None, "conversion", 3.0),
                 ("v", "2024-06-01", "b", "touch", None))
    journeys = engine.read_events(events, lookback_days=7)
    assert journeys.paths().tolist() == ["b"]
    assert journeys.report.rejected == {
        "touch outside the lookback window": 1,
        "conversion or milestone with no touch in the lookback window": 1}


@pytest.mark.parametrize("days", [0, -3, float("nan"), float("inf")])
def test_bad_lookback_is_an_error(days):
    with pytest.raises(engine.InputError, match="lookback_days"):
        engine.read_events(log(("u", "2024-01-01", "a", "touch", None)), lookback_days=days)


def test_exact_duplicate_events_are_dropped_and_counted():
    events = log(("u", "2024-01-01", "a", "touch", None),
                 ("u", "2024-01-01", "a", "touch", None),
                 ("u", "2024-01-02", None, "conversion", 4.0),
                 ("u", "2024-01-02", None, "conversion", 4.0))
    journeys = engine.read_events(events)
    assert summary(journeys) == [("u", "a", 1.0, 4.0)]
    assert journeys.report.rejected == {"duplicate event": 2}
    assert journeys.report.first_row == {"duplicate event": 2}


def test_collapse_repeats_keeps_the_first_of_a_run():
    events = log(("u", "2024-01-01", "a", "touch", None), ("u", "2024-01-02", "a", "touch", None),
                 ("u", "2024-01-03", "b", "touch", None), ("u", "2024-01-04", "a", "touch", None),
                 ("u", "2024-01-05", None, "conversion", 1.0))
    assert engine.read_events(events).paths().tolist() == ["a > a > b > a"]
    collapsed = engine.read_events(events, collapse_repeats=True)
    assert collapsed.paths().tolist() == ["a > b > a"]
    assert collapsed.ages.tolist() == [4.0, 2.0, 1.0]
    assert collapsed.report.rejected == {"repeat touch collapsed": 1}


def test_milestones_flag_the_touch_that_created_lead_and_opportunity():
    events = log(("acme", "2024-01-01", "ads", "touch", None),
                 ("acme", "2024-01-02", "webinar", "touch", None),
                 ("acme", "2024-01-02 12:00", None, "lead", None),
                 ("acme", "2024-01-03", "email", "touch", None),
                 ("acme", "2024-01-04", "call", "touch", None),
                 ("acme", "2024-01-04", None, "opportunity", None),
                 ("acme", "2024-01-05", "demo", "touch", None),
                 ("acme", "2024-01-06", None, "conversion", 100.0))
    journeys = engine.read_events(events)
    assert journeys.milestones.tolist() == [0, 1, 0, 2, 0]
    credit = engine.models.WShaped().fit(journeys).attribute().table.set_index("channel")
    assert credit.loc["webinar", "value"] == pytest.approx(30.0)
    assert credit.loc["call", "value"] == pytest.approx(30.0)
    assert credit.loc["demo", "value"] == pytest.approx(5.0)


def test_milestone_before_any_touch_flags_nothing_but_is_used():
    events = log(("u", "2024-01-01", None, "lead", None), ("u", "2024-01-02", "a", "touch", None),
                 ("u", "2024-01-03", None, "conversion", 1.0))
    journeys = engine.read_events(events)
    assert journeys.milestones.tolist() == [0]
    assert journeys.report.n_used == 3


def test_account_rolls_contacts_into_one_journey():
    events = pd.DataFrame({
        "person_id": ["ann", "bob", "bob", "cy", None],
        "account": ["acme", "acme", "acme", "zen", "zen"],
        "timestamp": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-01", "2024-01-02"],
        "channel": ["ads", "email", None, "seo", "ads"],
        "event_type": ["touch", "touch", "conversion", "touch", "touch"]})
    journeys = engine.read_events(events, account="account")
    assert summary(journeys) == [("acme", "ads > email", 1.0, 0.0), ("zen", "seo > ads", 0.0, 0.0)]
    missing = events.assign(account=["acme", None, "acme", "zen", "zen"])
    report = engine.read_events(missing, account="account").report
    assert report.rejected == {"missing account id": 1} and report.first_row == {
        "missing account id": 2}


def test_identity_columns_stitch_devices_into_one_person():
    events = pd.DataFrame({
        "cookie": ["c1", "c2", "c2", "c3"],
        "login": [None, "u1", None, None],
        "timestamp": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-01"],
        "channel": ["display", "email", None, "seo"],
        "event_type": ["touch", "touch", "conversion", "touch"]})
    linked = events.assign(login=["u1", "u1", None, None])
    journeys = engine.read_events(linked, person="cookie", identities=["login"])
    assert summary(journeys) == [("c1", "display > email", 1.0, 0.0), ("c3", "seo", 0.0, 0.0)]
    apart = engine.read_events(events, person="cookie", identities=["login"])
    assert apart.paths().tolist() == ["display", "email", "seo"]


def test_identity_map_links_identifiers(tmp_path):
    events = log(("c1", "2024-01-01", "display", "touch", None),
                 ("c2", "2024-01-02", "email", "touch", None),
                 ("c2", "2024-01-03", None, "conversion", 9.0),
                 columns=("cookie", "timestamp", "channel", "event_type", "revenue"))
    pairs = tmp_path / "map.csv"
    pairs.write_text("cookie,email\nc1,x@y.z\nc2,x@y.z\nc9,\n")
    journeys = engine.read_events(events, person="cookie", identity_map=pairs)
    assert summary(journeys) == [("c1", "display > email", 1.0, 9.0)]
    assert any("missing identifier" in note for note in journeys.report.notes)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(engine.InputError, match="exactly two identifier columns"):
        engine.read_events(events, person="cookie", identity_map=bad)


@pytest.mark.parametrize("source, medium, campaign, expected", [
    ("google", "cpc", "brand", "Paid Search"),
    ("(direct)", "(none)", None, "Direct"),
    (None, None, None, "Direct"),
    ("facebook", "paid_social", "spring", "Paid Social"),
    ("facebook", "cpc", None, "Paid Social"),
    ("newsletter", "email", None, "Email"),
    ("google", "organic", None, "Organic Search"),
    ("bing", "referral", None, "Organic Search"),
    ("partner.com", "referral", None, "Referral"),
    ("linkedin.com", "referral", None, "Organic Social"),
    ("dsp", "display", None, "Display"),
    ("awin", "affiliate", None, "Affiliates"),
    ("something", "odd", None, "Other"),
])
def test_default_channel_grouping_from_utm(source, medium, campaign, expected):
    events = pd.DataFrame({"person_id": ["u"], "timestamp": ["2024-01-01"],
                           "utm_source": [source], "utm_medium": [medium],
                           "utm_campaign": [campaign]})
    assert engine.read_events(events).channels == (expected,)


def test_custom_channel_grouping_and_its_errors():
    events = pd.DataFrame({"person_id": ["u", "u"], "timestamp": ["2024-01-01", "2024-01-02"],
                           "utm_source": ["google", "crm"], "utm_medium": ["cpc", "mail"]})
    rules = [{"channel": "Search", "source": "^GOOGLE$"}, {"channel": "Rest"}]
    assert engine.read_events(events, channel_grouping=rules).paths().tolist() == ["Search > Rest"]
    with pytest.raises(engine.InputError, match="bad pattern"):
        engine.read_events(events, channel_grouping=[{"channel": "x", "source": "("}])
    with pytest.raises(engine.InputError, match="unknown field 'colour'"):
        engine.read_events(events, channel_grouping=[{"channel": "x", "colour": "red"}])
    with pytest.raises(engine.InputError, match="needs a non-empty 'channel'"):
        engine.read_events(events, channel_grouping=[{"source": "x"}])
    unmatched = engine.read_events(events, channel_grouping=[{"channel": "S", "source": "google"}])
    assert unmatched.report.rejected == {"missing channel": 1}
    assert DEFAULT_CHANNEL_GROUPING[-1] == {"channel": "Other"}


def test_every_bad_row_is_counted_with_its_reason():
    events = log(("u", "2024-01-01", "a", "touch", None),
                 (None, "2024-01-01", "a", "touch", None),
                 ("u", "yesterday", "a", "touch", None),
                 ("u", None, "a", "touch", None),
                 ("u", "2024-01-01", "a", "telepathy", None),
                 ("u", "2024-01-01", " ", "touch", None),
                 ("u", "2024-01-02", None, "conversion", "-5"),
                 ("u", "2024-01-03", "b", "touch", None),
                 ("u", "2024-01-04", None, "conversion", "lots"),
                 ("u", "2024-01-05", "c", "touch", None),
                 ("u", "2024-01-06", None, "conversion", "NaN"),
                 ("u", "2024-01-07", "d", "touch", None),
                 ("u", "2024-01-08", None, "conversion", "7"))
    journeys = engine.read_events(events)
    report = journeys.report
    assert report.rejected == {
        "missing person id": 1, "unparseable timestamp": 1, "missing timestamp": 1,
        "unknown event type": 1, "missing channel": 1,
        "negative revenue (conversion kept, value 0)": 1,
        "revenue not a number (conversion kept, value 0)": 1,
        "revenue NaN or infinite (conversion kept, value 0)": 1}
    assert report.first_row["unknown event type"] == 5
    assert report.n_used == 5 and report.n_rows == 13
    assert "missing person id" in str(report)
    # A conversion with unusable revenue still ends its journey (value 0), so later touches
    # are not credited with it.
    assert summary(journeys) == [("u", "a", 1.0, 0.0), ("u", "b", 1.0, 0.0),
                                 ("u", "c", 1.0, 0.0), ("u", "d", 1.0, 7.0)]


def test_simultaneous_touches_keep_input_order_whatever_their_names():
    events = log(("u", "2024-01-01", "Search", "touch", None),
                 ("u", "2024-01-01", "Email", "touch", None),
                 ("u", "2024-01-02", None, "conversion", 1.0))
    assert engine.read_events(events).paths().tolist() == ["Search > Email"]
    renamed = events.replace({"Search": "Zebra", "Email": "Aardvark"})
    assert engine.read_events(renamed).paths().tolist() == ["Zebra > Aardvark"]


def test_logs_without_milestone_events_carry_no_milestones():
    journeys = engine.read_events(log(("u", "2024-01-01", "a", "touch", None),
                                      ("u", "2024-01-02", None, "conversion", 1.0)))
    assert journeys.milestones is None
    with pytest.raises(engine.MissingDataError, match="milestones"):
        engine.models.WShaped().fit(journeys)


def test_account_log_without_a_person_column():
    events = pd.DataFrame({"account_id": ["acme", "acme"], "timestamp": ["2024-01-01", "2024-01-02"],
                           "channel": ["ads", None], "event_type": ["touch", "conversion"]})
    journeys = engine.read_events(events, account="account_id")
    assert summary(journeys) == [("acme", "ads", 1.0, 0.0)]


def test_conversion_column_counts_conversions_on_touch_rows():
    events = pd.DataFrame({"person_id": ["u", "u", "v"],
                           "timestamp": ["2024-01-01", "2024-01-02", "2024-01-01"],
                           "channel": ["a", "b", "c"], "bought": ["no", "2", "maybe"]})
    journeys = engine.read_events(events, conversion="bought")
    assert summary(journeys) == [("u", "a > b", 2.0, 0.0)]
    assert journeys.report.rejected == {"conversion count not a non-negative number": 1}


def test_timestamps_with_offsets_are_compared_in_utc():
    events = log(("u", "2024-01-01T10:00:00+02:00", "a", "touch", None),
                 ("u", "2024-01-01T09:00:00Z", "b", "touch", None),
                 ("u", "2024-01-01T09:30:00", None, "conversion", 1.0))
    journeys = engine.read_events(events)
    assert journeys.paths().tolist() == ["a > b"]
    assert journeys.ages.tolist() == pytest.approx([1.5 / 24, 0.5 / 24])


def test_channel_names_are_cleaned_and_case_variants_merged():
    events = log(("u", "2024-01-01", "  Paid   Search ", "touch", None),
                 ("u", "2024-01-02", "paid search", "touch", None),
                 ("u", "2024-01-03", "Paid Search", "touch", None))
    journeys = engine.read_events(events)
    assert journeys.channels == ("Paid Search",)
    assert any("case" in note for note in journeys.report.notes)


def test_parquet_with_typed_columns(tmp_path):
    events = pd.DataFrame({"person_id": ["u", "u"],
                           "timestamp": pd.to_datetime(["2024-01-01", "2024-01-03"]),
                           "channel": ["a", None], "event_type": ["touch", "conversion"],
                           "revenue": [np.nan, 12.5]})
    path = tmp_path / "events.parquet"
    events.to_parquet(path)
    journeys = engine.read_events(path)
    assert summary(journeys) == [("u", "a", 1.0, 12.5)]
    assert journeys.start[0] == np.datetime64("2024-01-01")


def test_reserved_channel_name_is_an_error_naming_the_row():
    events = log(("u", "2024-01-01", "a", "touch", None), ("u", "2024-01-02", "(null)", "touch", None))
    with pytest.raises(engine.InputError, match=r"row 2.*reserved"):
        engine.read_events(events)


def test_schema_errors_name_the_column():
    events = log(("u", "2024-01-01", "a", "touch", None))
    with pytest.raises(engine.InputError, match="'user'.*found"):
        engine.read_events(events, person="user")
    with pytest.raises(engine.InputError, match="'medium'"):
        engine.read_events(events, channel="medium")
    with pytest.raises(engine.InputError, match="no channel column"):
        engine.read_events(events.drop(columns="channel"))
    with pytest.raises(engine.InputError, match="no usable event rows"):
        engine.read_events(log((None, "2024-01-01", "a", "touch", None)))
    with pytest.raises(engine.InputError, match="event_types"):
        engine.read_events(events, event_types={"click": ["x"]})


@settings(max_examples=25)
@given(st.lists(st.tuples(st.sampled_from(["u1", "u2", None]), st.integers(0, 60),
                          st.sampled_from(["a", "b", None]),
                          st.sampled_from(["touch", "conversion", "lead", "bogus"]),
                          st.sampled_from([None, 1.0, -1.0, "x"])), min_size=1, max_size=25),
       st.sampled_from([None, 10, 30]), st.booleans())
def test_every_row_is_accounted_for(rows, lookback, collapse):
    events = log(*[(p, "2024-01-01T00:00:00Z", c, e, r) for p, d, c, e, r in rows])
    events["timestamp"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(
        [d for _, d, _, _, _ in rows], unit="D")
    try:
        journeys = engine.read_events(events, lookback_days=lookback, collapse_repeats=collapse)
    except engine.InputError as exc:
        assert "no usable event rows" in str(exc)
        return
    report = journeys.report
    assert report.n_used + report.n_rejected == len(events)
    used_conversions = journeys.conversions.sum()
    assert used_conversions <= sum(e == "conversion" for _, _, _, e, _ in rows)
    assert np.all(journeys.ages >= 0)
