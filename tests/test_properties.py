"""Properties of Journeys and of every rule model on random journeys (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from engine import Journeys
from engine.journeys import LEAD, OPPORTUNITY
from engine.models import REGISTRY
from engine.models.rules import DEFAULT_DIRECT, RuleModel

RULES = sorted(name for name, cls in REGISTRY.items() if issubclass(cls, RuleModel))
# Defaults, plus settings that reach the rules' edge cases (empty middles, zero shares).
VARIANTS = [(name, {}) for name in RULES] + [
    ("linear", {"per": "channel"}),
    ("time_decay", {"half_life": 0.5}),
    ("position_based", {"first": 0.0, "last": 0.0}),
    ("position_based", {"first": 1.0, "last": 0.0}),
    ("custom_position", {"head": (0.5, 0.2), "tail": (0.2,), "middle": 0.1}),
    ("custom_position", {"head": (0.0, 0.0), "tail": (0.0,), "middle": 1.0}),
    ("last_non_direct", {"direct": ["email", "Direct"]}),
]
DIRECT = {str(d).casefold() for _, params in VARIANTS
          for d in params.get("direct", DEFAULT_DIRECT)}
NAMES = ["direct", "Direct", "(none)", "email", "search", "display", "social", "tv", "radio"]


@st.composite
def journeys(draw, max_length=8, with_extras=True):
    """Random journeys: random channels and paths, counts, values, ages and milestones."""
    channels = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    paths = draw(st.lists(
        st.lists(st.integers(0, len(channels) - 1), min_size=1, max_size=max_length),
        min_size=1, max_size=15))
    n = len(paths)
    count = st.one_of(st.integers(0, 20).map(float),
                      st.floats(0, 1e4, allow_nan=False, allow_infinity=False))
    conversions = np.array(draw(st.lists(count, min_size=n, max_size=n)))
    value = np.array(draw(st.lists(st.floats(0, 1e6), min_size=n, max_size=n)))
    nulls = np.array(draw(st.lists(st.integers(0, 50), min_size=n, max_size=n)), dtype=float)
    lengths = np.array([len(p) for p in paths])
    extra = {}
    if with_extras:
        n_touches = int(lengths.sum())
        extra["ages"] = np.array(draw(st.lists(
            st.one_of(st.floats(0, 400), st.sampled_from([0.0, 7.0, 1e6])),
            min_size=n_touches, max_size=n_touches)))
        extra["milestones"] = _milestones(draw, lengths)
    return Journeys(channels=channels, offsets=np.concatenate([[0], np.cumsum(lengths)]),
                    codes=np.concatenate(paths), conversions=conversions,
                    value=value, nulls=nulls, **extra)


def _milestones(draw, lengths) -> np.ndarray:
    """At most one lead and one opportunity per journey, the opportunity at or after the lead."""
    flags = []
    for length in lengths:
        journey = np.zeros(length, dtype=np.uint8)
        lead = draw(st.one_of(st.none(), st.integers(0, length - 1)))
        if lead is not None:
            journey[lead] |= LEAD
            opportunity = draw(st.one_of(st.none(), st.integers(lead, length - 1)))
            if opportunity is not None:
                journey[opportunity] |= OPPORTUNITY
        flags.append(journey)
    return np.concatenate(flags)


def credit(name, params, journeys) -> dict:
    """{channel: (conversions, value)} from a fitted rule model's arrays (no table, for speed)."""
    model = REGISTRY[name](**params).fit(journeys)
    return dict(zip(model.channels_, zip(model.conversions_, model.value_)))


def assert_close(left: dict, right: dict, label=""):
    assert sorted(left) == sorted(right), label
    channels = sorted(left)
    np.testing.assert_allclose([left[c] for c in channels], [right[c] for c in channels],
                               rtol=1e-9, atol=1e-9, err_msg=label)


@given(j=journeys(), data=st.data())
def test_every_rule_sums_to_totals_and_ignores_labels_and_order(j, data):
    rows = data.draw(st.permutations(range(j.n_journeys)), label="rows")
    codes = np.array(data.draw(st.permutations(range(j.n_channels)), label="codes"))
    channels = np.empty(j.n_channels, dtype=object)
    channels[codes] = j.channels
    recoded = replace(j, channels=tuple(channels), codes=codes[j.codes])
    # Only channels no variant treats as direct are renamed: "direct" has a meaning.
    plain = [c for c in j.channels if c.casefold() not in DIRECT]
    mapping = dict(zip(plain, data.draw(st.permutations(plain), label="names")))
    renamed = j.rename_channels(mapping)
    shuffled = j.take(rows)

    for name, params in VARIANTS:
        label = f"{name}{params}"
        before = credit(name, params, j)
        conversions, value = np.array(list(before.values())).reshape(-1, 2).T
        assert np.isfinite(conversions).all() and np.isfinite(value).all(), label
        assert (conversions >= 0).all() and (value >= 0).all(), label
        np.testing.assert_allclose(conversions.sum(), j.total_conversions, rtol=1e-9, atol=1e-9,
                                   err_msg=label)
        np.testing.assert_allclose(value.sum(), j.total_value, rtol=1e-9, atol=1e-6,
                                   err_msg=label)
        assert_close(credit(name, params, shuffled), before, label)
        assert_close(credit(name, params, recoded), before, label)
        assert_close(credit(name, params, renamed),
                     {mapping.get(c, c): v for c, v in before.items()}, label)


@given(j=journeys(max_length=1))
def test_single_touch_journeys_get_the_same_credit_under_every_rule(j):
    conversions = np.bincount(j.codes, j.conversions, minlength=j.n_channels)
    value = np.bincount(j.codes, j.value, minlength=j.n_channels)
    expected = dict(zip(j.channels, zip(conversions, value)))
    for name, params in VARIANTS:
        assert_close(credit(name, params, j), expected, f"{name}{params}")


@given(base=journeys(with_extras=False), data=st.data())
def test_unique_preserves_totals_and_paths(base, data):
    # Rows drawn with repetition, so that identical paths are common.
    rows = data.draw(st.lists(st.integers(0, base.n_journeys - 1), min_size=1, max_size=30))
    j = base.take(rows)
    merged = j.unique()
    paths = merged.paths().tolist()
    assert len(set(paths)) == len(paths)
    assert set(paths) == set(j.paths())
    assert merged.channels == j.channels
    for name in ("conversions", "value", "nulls"):
        np.testing.assert_allclose(getattr(merged, name).sum(), getattr(j, name).sum(),
                                   rtol=1e-12)
    frame = j.to_frame().groupby("path", sort=False).sum()
    np.testing.assert_allclose(merged.to_frame().set_index("path").loc[frame.index], frame,
                               rtol=1e-12)
    # Rows keep the order of each path's first appearance.
    assert paths == list(dict.fromkeys(j.paths().tolist()))


@given(j=journeys(), data=st.data())
def test_take_round_trip(j, data):
    rows = np.array(data.draw(st.permutations(range(j.n_journeys))))
    back = j.take(rows).take(np.argsort(rows))
    for name in ("offsets", "codes", "conversions", "value", "nulls", "ages", "milestones"):
        np.testing.assert_array_equal(getattr(back, name), getattr(j, name))
    assert back.channels == j.channels
    assert j.take(rows).paths().tolist() == j.paths()[rows].tolist()

    subset = np.array(data.draw(st.lists(st.integers(0, j.n_journeys - 1), min_size=1)))
    taken = j.take(subset)
    assert taken.paths().tolist() == j.paths()[subset].tolist()
    np.testing.assert_array_equal(taken.conversions, j.conversions[subset])
    np.testing.assert_array_equal(taken.ages, np.concatenate(
        [j.ages[j.offsets[r]:j.offsets[r + 1]] for r in subset]))
