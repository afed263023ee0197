"""Snowplow's dbt-snowplow-fractribution fixture read as journeys: shared by the end-to-end
and Fractribution tests, so that its channel rules live in one place."""

from pathlib import Path

import pandas as pd

import engine

SNOWPLOW = Path(__file__).parent / "data" / "snowplow_fractribution_fixture"

# Snowplow's default channel classification (its dbt macro `channel_classification`), written
# as our grouping rules: the first matching rule wins.
SNOWPLOW_CHANNELS = [
    {"channel": "Paid_Search_Brand", "medium": "^(cpc|ppc)$", "campaign": "brand"},
    {"channel": "Paid_Search_Generic", "medium": "^(cpc|ppc)$", "campaign": "generic"},
    {"channel": "Paid_Search_Other", "medium": "^(cpc|ppc)$"},
    {"channel": "Organic_Search", "medium": "^organic$"},
    {"channel": "Display_Prospecting", "medium": "^(display|cpm|banner)$", "campaign": "prospect"},
    {"channel": "Display_Retargeting", "medium": "^(display|cpm|banner)$",
     "campaign": "re-?targeting|re-?marketing"},
    {"channel": "Display_Other", "medium": "^(display|cpm|banner)$"},
    {"channel": "Video", "campaign": "video|youtube"},
    {"channel": "Video", "source": "video|youtube"},
    {"channel": "Paid_Social_Prospecting", "medium": "^social$", "campaign": "prospect"},
    {"channel": "Paid_Social_Retargeting", "medium": "^social$",
     "campaign": "re-?targeting|re-?marketing"},
    {"channel": "Paid_Social_Other", "medium": "^social$"},
    {"channel": "Direct", "source": r"^\(direct\)$"},
    {"channel": "Referral", "medium": "^referral$"},
    {"channel": "Email", "medium": "^email$"},
    {"channel": "Other_Advertising", "medium": "^(cpc|ppc|cpv|cpa|affiliates)$"},
    {"channel": "Unmatched_Channel"},
]


def snowplow_journeys(**options):
    events = pd.read_csv(SNOWPLOW / "source" / "snowplow_fractribution_events.csv", dtype=str)
    # Snowplow marks a conversion by a transaction total on the event; its customer id is the
    # domain user id prefixed with "f".
    events["converted"] = events["tr_total"].notna()
    events["customer_id"] = "f" + events["domain_userid"]
    return engine.read_events(
        events, person="customer_id", timestamp="derived_tstamp", channel=None,
        event_type="event_name", event_types={"touch": ["page_view"], "conversion": ["checkout"]},
        conversion="converted", revenue="tr_total", utm_source="mkt_source",
        utm_medium="mkt_medium", utm_campaign="mkt_campaign", channel_grouping=SNOWPLOW_CHANNELS,
        **options)
