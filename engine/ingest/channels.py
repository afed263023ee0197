"""Channel grouping: UTM source / medium / campaign to marketing channels.

A grouping is an ordered list of rules; the first rule whose conditions all match names the
channel. A rule is a mapping with a ``"channel"`` and any number of conditions ``field: regex``,
where ``field`` is ``source``, ``medium``, ``campaign`` or any column of the event log, and the
regular expression is searched case-insensitively in the field's value (a missing value is the
empty string). A rule with no condition matches everything (use it last, as the fallback).

The default grouping follows the spirit of Google Analytics' default channel group, reduced to
the channels most teams report on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import ibis

from engine.errors import InputError

_SEARCH = r"google|bing|yahoo|baidu|duckduckgo|yandex|ecosia|naver|seznam"
_SOCIAL = (r"facebook|instagram|linkedin|lnkd\.in|twitter|^t\.co$|^x\.com$|tiktok|pinterest|"
           r"reddit|snapchat|youtube|threads|quora")

DEFAULT_CHANNEL_GROUPING: tuple[dict, ...] = (
    {"channel": "Direct", "source": r"^\(?direct\)?$", "medium": r"^$|^\(?(none|not set)\)?$"},
    {"channel": "Direct", "source": r"^$", "medium": r"^$|^\(?(none|not set)\)?$"},
    {"channel": "Paid Search", "medium": r"^(cpc|ppc|paid[ _-]?search|sem|sea)$",
     "source": _SEARCH},
    {"channel": "Paid Social", "medium": r"^(paid[ _-]?social|social[ _-]?paid|cpc|ppc|cpm|paid)$",
     "source": _SOCIAL},
    {"channel": "Paid Search", "medium": r"^(cpc|ppc|paid[ _-]?search|sem|sea)$"},
    {"channel": "Display", "medium": r"^(display|banner|cpm|expandable|interstitial|programmatic)$"},
    {"channel": "Email", "medium": r"e[ _-]?mail|newsletter"},
    {"channel": "Email", "source": r"e[ _-]?mail|newsletter"},
    {"channel": "Affiliates", "medium": r"^affiliates?$"},
    {"channel": "Organic Search", "medium": r"^organic$"},
    {"channel": "Organic Search", "source": _SEARCH, "medium": r"^(referral|)$"},
    {"channel": "Organic Social", "medium": r"^(social|social[ _-]?network|social[ _-]?media|sm)$"},
    {"channel": "Organic Social", "source": _SOCIAL},
    {"channel": "Referral", "medium": r"^referral$"},
    {"channel": "Other"},
)


def validate_grouping(rules, columns: Sequence[str], name: str) -> tuple[dict, ...]:
    """Check a grouping: a non-empty sequence of rules with a channel and compilable patterns."""
    if isinstance(rules, Mapping) or isinstance(rules, str) or not isinstance(rules, Sequence):
        raise InputError("channel_grouping must be a list of rules like "
                         "{'channel': 'Email', 'medium': '^email$'}", source=name)
    if not rules:
        raise InputError("channel_grouping has no rules", source=name)
    allowed = {"source", "medium", "campaign", *columns}
    for i, rule in enumerate(rules):
        if not isinstance(rule, Mapping) or not str(rule.get("channel", "")).strip():
            raise InputError(f"channel_grouping rule {i + 1} needs a non-empty 'channel'",
                             source=name)
        for field, pattern in rule.items():
            if field == "channel":
                continue
            if field not in allowed:
                raise InputError(f"channel_grouping rule {i + 1} tests unknown field {field!r}",
                                 source=name)
            try:
                re.compile(str(pattern))
            except re.error as exc:
                raise InputError(f"channel_grouping rule {i + 1}: bad pattern {pattern!r} "
                                 f"for {field!r} ({exc})", source=name) from None
    return tuple(dict(rule) for rule in rules)


def group_channels(fields: Mapping[str, ibis.Value], rules: Sequence[Mapping]) -> ibis.Value:
    """The channel of every row: the first matching rule's channel (NULL if none matches)."""
    cleaned = {k: v.cast("string").fill_null("").strip() for k, v in fields.items()}
    branches = []
    for rule in rules:
        conditions = [cleaned[field].re_search(f"(?i){pattern}")
                      for field, pattern in rule.items() if field != "channel"]
        condition = ibis.literal(True)
        for c in conditions:
            condition = condition & c
        branches.append((condition, ibis.literal(str(rule["channel"]))))
    return ibis.cases(*branches, else_=ibis.null("string"))
