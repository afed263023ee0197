"""Hand-checked edge cases of every rule in ``engine.models.rules``, plus compare and get_model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import engine
from engine.journeys import BASELINE
from engine import Journeys
from engine.models import (REGISTRY, CustomPosition, FirstTouch, FullPath, LastNonDirect,
                           LastTouch, Linear, PositionBased, TimeDecay, WShaped, available_models,
                           get_model)
from engine.models.rules import RuleModel

RULES = sorted(name for name, cls in REGISTRY.items() if issubclass(cls, RuleModel))


def one(path, **extra) -> Journeys:
    """One converting journey worth 10 over ``path``; channels keep their first-seen order."""
    channels = list(dict.fromkeys(path))
    return Journeys(channels=channels, offsets=[0, len(path)],
                    codes=[channels.index(c) for c in path], conversions=[1.0], value=[10.0],
                    nulls=[0.0], **extra)


def weights(model, journeys) -> list:
    """Per-touch weights of a fitted rule model, rounded for hand-checked comparison."""
    return np.round(model.fit(journeys).touch_weights_, 12).tolist()


def by_channel(result: engine.Attribution, column="conversions") -> dict:
    return result.table.set_index("channel")[column].round(12).to_dict()


def flags(*values) -> np.ndarray:
    return np.array(values, dtype=np.uint8)


# -- first / last touch ------------------------------------------------------------------------

@pytest.mark.parametrize("path, first, last", [
    (["a"], [1.0], [1.0]),
    (["a", "b"], [1.0, 0.0], [0.0, 1.0]),
    (["a", "b", "a"], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]),
])
def test_first_and_last_touch(path, first, last):
    assert weights(FirstTouch(), one(path)) == first
    assert weights(LastTouch(), one(path)) == last


def test_repeated_channel_and_non_converting_journeys():
    j = Journeys.from_lists([["a", "b", "a"], ["b", "c"]], conversions=[2, 0], value=[30.0, 0],
                            nulls=[1, 7])
    assert by_channel(LastTouch().fit(j).attribute()) == {"a": 2.0, "b": 0.0, "c": 0.0}
    assert by_channel(FirstTouch().fit(j).attribute(), "value") == {"a": 30.0, "b": 0.0,
                                                                      "c": 0.0}


# -- last non-direct ---------------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    (["seo", "email", "direct"], [0, 1, 0]),
    (["seo", "direct", "email", "direct"], [0, 0, 1, 0]),
    (["email", "seo"], [0, 1]),
    (["direct"], [1]),
    (["direct", "(direct)", "(none)"], [0, 0, 1]),
    (["direct traffic", "email", "Direct Traffic"], [0, 1, 0]),
])
def test_last_non_direct(path, expected):
    assert weights(LastNonDirect(), one(path)) == expected


def test_last_non_direct_direct_only_journeys_credit_their_last_touch():
    j = Journeys.from_lists([["Direct", "DIRECT"], ["direct"], ["(none)", "(direct)"]],
                            conversions=[1, 2, 4])
    result = LastNonDirect().fit(j).attribute()
    assert by_channel(result) == {"(direct)": 4.0, "(none)": 0.0, "DIRECT": 1.0, "Direct": 0.0,
                                  "direct": 2.0}


@pytest.mark.parametrize("name", ["Direct", "DIRECT", "dIrEcT", "(Direct)", "(NONE)"])
def test_last_non_direct_matches_direct_names_case_insensitively(name):
    assert weights(LastNonDirect(), one(["seo", name])) == [1, 0]


def test_last_non_direct_custom_direct_list():
    path = ["seo", "Brand", "direct"]
    assert weights(LastNonDirect(direct=["brand"]), one(path)) == [0, 0, 1]
    assert weights(LastNonDirect(direct=("brand", "DIRECT")), one(path)) == [1, 0, 0]
    assert weights(LastNonDirect(direct=[]), one(path)) == [0, 0, 1]
    assert weights(LastNonDirect(direct=["nothing-like-it"]), one(path)) == [0, 0, 1]


@pytest.mark.parametrize("direct", ["direct", None, 3])
def test_last_non_direct_direct_must_be_a_list(direct, rich_journeys):
    model = LastNonDirect(direct=direct)
    assert model.direct == direct
    with pytest.raises(engine.EngineError, match="list of channel names"):
        model.fit(rich_journeys)


# -- linear ------------------------------------------------------------------------------------

def test_linear_per_touch_and_per_channel():
    path = ["a", "b", "a", "c"]
    assert weights(Linear(), one(path)) == [0.25] * 4
    assert weights(Linear(per="touch"), one(path)) == [0.25] * 4
    third, sixth = round(1 / 3, 12), round(1 / 6, 12)
    assert weights(Linear(per="channel"), one(path)) == [sixth, third, sixth, third]


def test_linear_per_channel_across_journeys():
    j = Journeys.from_lists([["a", "a", "a", "b"], ["b"], ["c", "c"]], conversions=[2, 1, 3],
                            value=[20.0, 10.0, 30.0])
    assert by_channel(Linear(per="channel").fit(j).attribute()) == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert by_channel(Linear().fit(j).attribute(), "value") == {"a": 15.0, "b": 15.0, "c": 30.0}


@pytest.mark.parametrize("per", ["touches", "Channel", None, ["touch"]])
def test_linear_rejects_unknown_per_at_fit(per, rich_journeys):
    model = Linear(per=per)
    with pytest.raises(engine.EngineError, match="per must be"):
        model.fit(rich_journeys)


# -- time decay --------------------------------------------------------------------------------

def test_time_decay_equal_ages_share_equally():
    path = ["a", "b", "c", "d"]
    assert weights(TimeDecay(), one(path, ages=[3.0, 3.0, 3.0, 3.0])) == [0.25] * 4
    assert weights(TimeDecay(), one(path, ages=[9.0, 1.0, 1.0, 1.0])) == pytest.approx(
        [1 / (1 + 3 * 2 ** (8 / 7))] + [2 ** (8 / 7) / (1 + 3 * 2 ** (8 / 7))] * 3, rel=1e-12)


@pytest.mark.parametrize("half_life, ages, expected", [
    (7, [14.0, 7.0, 0.0], [1 / 7, 2 / 7, 4 / 7]),
    (7.0, [7.0, 0.0], [1 / 3, 2 / 3]),
    (1, [3.0, 2.0, 1.0, 0.0], [1 / 15, 2 / 15, 4 / 15, 8 / 15]),
    (14, [14.0, 0.0], [1 / 3, 2 / 3]),
    (7, [0.0, 7.0], [2 / 3, 1 / 3]),
    (7, [5.0], [1.0]),
    (np.int64(7), [7.0, 0.0], [1 / 3, 2 / 3]),
    (np.float32(7), [7.0, 0.0], [1 / 3, 2 / 3]),
])
def test_time_decay_half_life(half_life, ages, expected):
    path = [f"c{i}" for i in range(len(ages))]
    assert weights(TimeDecay(half_life=half_life), one(path, ages=ages)) == pytest.approx(
        expected, rel=1e-12)


def test_time_decay_very_old_touches_do_not_underflow():
    model = TimeDecay(half_life=1)
    assert weights(model, one(["a", "b"], ages=[1e6 + 1, 1e6])) == pytest.approx([1 / 3, 2 / 3])
    assert weights(model, one(["a", "b"], ages=[1e6, 1e6])) == [0.5, 0.5]
    assert weights(model, one(["a", "b"], ages=[1e6, 0.0])) == [0.0, 1.0]
    assert weights(TimeDecay(half_life=1e-3), one(["a", "b"], ages=[5e3, 5e3])) == [0.5, 0.5]
    result = model.fit(one(["a"], ages=[1e300])).attribute()
    assert by_channel(result) == {"a": 1.0}


@pytest.mark.parametrize("half_life", [0, -1, -0.5, float("nan"), float("inf"), "7", None, [7]])
def test_time_decay_rejects_bad_half_life_at_fit(half_life, rich_journeys):
    model = TimeDecay(half_life=half_life)
    with pytest.raises(engine.EngineError, match="half_life"):
        model.fit(rich_journeys)


# -- position based ----------------------------------------------------------------------------

@pytest.mark.parametrize("n, expected", [
    (1, [1.0]),
    (2, [0.5, 0.5]),
    (3, [0.4, 0.2, 0.4]),
    (4, [0.4, 0.1, 0.1, 0.4]),
    (6, [0.4, 0.05, 0.05, 0.05, 0.05, 0.4]),
])
def test_position_based_u_shape(n, expected):
    path = [f"c{i}" for i in range(n)]
    assert weights(PositionBased(), one(path)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n, expected", [
    (1, [1.0]),
    (2, [0.75, 0.25]),
    (3, [0.6, 0.2, 0.2]),
    (4, [0.6, 0.1, 0.1, 0.2]),
])
def test_position_based_uneven_ends_share_in_proportion(n, expected):
    path = [f"c{i}" for i in range(n)]
    assert weights(PositionBased(first=0.6, last=0.2), one(path)) == pytest.approx(expected,
                                                                                   rel=1e-12)


def test_position_based_edge_settings():
    four = one(["a", "b", "c", "d"])
    assert weights(PositionBased(first=1, last=0), four) == [1, 0, 0, 0]
    assert weights(PositionBased(first=0, last=1), four) == [0, 0, 0, 1]
    assert weights(PositionBased(first=0.5, last=0.5), four) == [0.5, 0, 0, 0.5]
    assert weights(PositionBased(first=0, last=0), four) == [0, 0.5, 0.5, 0]


def test_position_based_with_no_weight_left_splits_equally():
    # All credit to the middle: journeys without a middle touch must not lose their conversions.
    j = Journeys.from_lists([["a"], ["a", "b"], ["a", "b", "c"]], conversions=[1, 2, 4])
    model = PositionBased(first=0, last=0).fit(j)
    assert np.round(model.touch_weights_, 12).tolist() == [1.0, 0.5, 0.5, 0.0, 1.0, 0.0]
    assert by_channel(model.attribute()) == {"a": 2.0, "b": 5.0, "c": 0.0}


@pytest.mark.parametrize("params", [
    {"first": 0.7, "last": 0.5},
    {"first": -0.1, "last": 0.4},
    {"first": 0.4, "last": float("nan")},
    {"first": 0.4, "last": float("inf")},
    {"first": None},
    {"first": "x"},
    {"first": (0.4,)},
])
def test_position_based_rejects_bad_shares_at_fit(params, rich_journeys):
    model = PositionBased(**params)
    with pytest.raises(engine.EngineError, match="position_based"):
        model.fit(rich_journeys)


# -- custom position ---------------------------------------------------------------------------

SHARES = {"head": (0.5, 0.2), "tail": (0.2,), "middle": 0.1}


@pytest.mark.parametrize("n, expected", [
    (1, [1.0]),
    (2, [0.5 / 0.9, 0.4 / 0.9]),
    (3, [5 / 9, 2 / 9, 2 / 9]),
    (4, [0.5, 0.2, 0.1, 0.2]),
    (5, [0.5, 0.2, 0.05, 0.05, 0.2]),
    (7, [0.5, 0.2, 0.025, 0.025, 0.025, 0.025, 0.2]),
])
def test_custom_position_renormalises_short_journeys(n, expected):
    path = [f"c{i}" for i in range(n)]
    assert weights(CustomPosition(**SHARES), one(path)) == pytest.approx(expected, rel=1e-12)


def test_custom_position_defaults_match_position_based(rich_journeys):
    custom = CustomPosition().fit(rich_journeys).touch_weights_
    np.testing.assert_allclose(custom, PositionBased().fit(rich_journeys).touch_weights_,
                               rtol=1e-12)


def test_custom_position_weights_sum_to_one_with_lists_and_arrays():
    path = ["a", "b", "c", "d"]
    model = CustomPosition(head=[0.25, 0.25], tail=np.array([0.25, 0.25]), middle=0)
    assert weights(model, one(path)) == [0.25] * 4


@pytest.mark.parametrize("params, match", [
    ({"head": (0.5,), "tail": (0.4,), "middle": 0.2}, "sum to 1"),
    ({"head": (0.3,), "tail": (0.3,), "middle": 0.2}, "sum to 1"),
    ({"head": (1.2,), "tail": (-0.4,), "middle": 0.2}, "non-negative"),
    ({"head": (float("nan"),), "tail": (0.4,), "middle": 0.2}, "finite"),
    ({"head": 0.4, "tail": 0.4, "middle": 0.2}, "head"),
    ({"head": None, "tail": (0.4,), "middle": 0.2}, "head"),
    ({"head": ("a",), "tail": (0.4,), "middle": 0.8}, "custom_position"),
])
def test_custom_position_rejects_bad_weights_at_fit(params, match, rich_journeys):
    model = CustomPosition(**params)
    with pytest.raises(engine.EngineError, match=match):
        model.fit(rich_journeys)


# -- W-shaped and full path --------------------------------------------------------------------

FIVE = ["ad", "web", "mail", "call", "demo"]


@pytest.mark.parametrize("path, milestones, w_shaped, full_path", [
    # Each role on its own touch.
    (FIVE, flags(0, 1, 0, 2, 0), [0.3, 0.3, 0.05, 0.3, 0.05],
     [0.225, 0.225, 0.1, 0.225, 0.225]),
    # The first touch also created the lead: it holds both shares.
    (["a", "b", "c", "d"], flags(1, 0, 2, 0), [0.6, 0.05, 0.3, 0.05], [0.45, 0.1, 0.225, 0.225]),
    # One touch created both the lead and the opportunity.
    (["a", "b", "c"], flags(0, 3, 0), [0.3, 0.6, 0.1], [0.25, 0.5, 0.25]),
    # The closing touch created the opportunity; no touch is left for the rest share.
    (["a", "b", "c"], flags(0, 1, 2), [1 / 3, 1 / 3, 1 / 3], [0.25, 0.25, 0.5]),
    # One touch holding every role.
    (["a"], flags(3), [1.0], [1.0]),
    (["a"], flags(0), [1.0], [1.0]),
    # No milestone at all: only first (and last) and the rest remain, renormalised.
    (["a", "b", "c"], flags(0, 0, 0), [0.75, 0.125, 0.125], [0.225 / 0.55, 0.1 / 0.55,
                                                              0.225 / 0.55]),
    (["a", "b", "c", "d"], flags(0, 0, 0, 0), [0.3 / 0.4] + [0.1 / 3 / 0.4] * 3,
     [9 / 22, 1 / 11, 1 / 11, 9 / 22]),
    (["a", "b"], flags(0, 0), [0.75, 0.25], [0.5, 0.5]),
    # A lead but never an opportunity.
    (["a", "b", "c", "d"], flags(0, 1, 0, 0), [3 / 7, 3 / 7, 1 / 14, 1 / 14],
     [0.225 / 0.775, 0.225 / 0.775, 0.1 / 0.775, 0.225 / 0.775]),
])
def test_milestone_rules(path, milestones, w_shaped, full_path):
    journeys = one(path, milestones=milestones)
    assert weights(WShaped(), journeys) == pytest.approx(w_shaped, rel=1e-12)
    assert weights(FullPath(), journeys) == pytest.approx(full_path, rel=1e-12)


def test_milestone_rules_credit_channels_across_journeys():
    j = Journeys.from_lists([FIVE, ["web", "ad"]], conversions=[1, 2], value=[100.0, 0.0],
                            milestones=flags(0, 1, 0, 2, 0, 1, 0))
    result = WShaped().fit(j).attribute()
    # Second journey: web is first and lead (0.6), ad takes the rest (0.1) -> 6/7 and 1/7.
    expected = {"ad": 0.3 + 2 / 7, "call": 0.3, "demo": 0.05, "mail": 0.05, "web": 0.3 + 12 / 7}
    assert by_channel(result) == pytest.approx(expected, rel=1e-12)
    assert by_channel(result, "value") == pytest.approx(
        {"ad": 30.0, "call": 30.0, "demo": 5.0, "mail": 5.0, "web": 30.0}, rel=1e-12)


# -- shared edge cases -------------------------------------------------------------------------

@pytest.mark.parametrize("name", RULES)
def test_single_touch_gets_all_the_credit(name):
    model = get_model(name)
    journeys = one(["a"], ages=[4.0], milestones=flags(0))
    assert by_channel(model.fit(journeys).attribute()) == {"a": 1.0}
    assert by_channel(model.attribute(), "value") == {"a": 10.0}


@pytest.mark.parametrize("name", RULES)
def test_non_converting_journeys_contribute_nothing(name):
    j = Journeys.from_lists([["a", "b"], ["b", "c"]], conversions=[0, 3], value=[0.0, 6.0],
                            nulls=[50, 0], ages=[3.0, 0.0, 3.0, 0.0], milestones=flags(0, 0, 0, 0))
    result = get_model(name).fit(j).attribute()
    assert by_channel(result)["a"] == 0.0
    assert result.table["conversions"].sum() == pytest.approx(3.0, rel=1e-12)


# -- compare -----------------------------------------------------------------------------------

def test_compare_returns_one_long_table(rich_journeys):
    table = engine.compare(["first_touch", "linear", LastTouch()], rich_journeys)
    assert list(table.columns[:9]) == ["model", "channel", "conversions", "conversions_lower",
                                       "conversions_upper", "value", "value_lower",
                                       "value_upper", "share"]
    assert table["model"].tolist() == (["first_touch"] * 5 + ["linear"] * 5
                                       + ["last_touch"] * 5)
    assert table.index.tolist() == list(range(15))
    assert table.attrs["skipped"] == {}
    sums = table.groupby("model")["conversions"].sum()
    np.testing.assert_allclose(sums, rich_journeys.total_conversions, rtol=1e-9)
    alone = Linear().fit(rich_journeys).attribute().table
    pd.testing.assert_frame_equal(table[table["model"] == "linear"].reset_index(drop=True),
                                  alone)


def test_compare_accepts_one_name_and_reports_progress(rich_journeys):
    seen = []
    table = engine.compare("time_decay", rich_journeys, on_model=seen.append)
    assert set(table["model"]) == {"time_decay"}
    assert [type(m) for m in seen] == [TimeDecay]


def test_compare_all(rich_journeys):
    table = engine.compare("all", rich_journeys)
    assert sorted(table["model"].unique()) == sorted(REGISTRY)
    # One row per model and channel, and the incremental model's (baseline) row.
    assert len(table[table["channel"] != BASELINE]) == len(REGISTRY) * rich_journeys.n_channels
    assert sorted(engine.compare(["ALL"], rich_journeys)["model"].unique()) == sorted(REGISTRY)


def test_compare_skip_unsupported(example_journeys):
    with pytest.raises(engine.MissingDataError, match="time_decay"):
        engine.compare(["first_touch", "time_decay"], example_journeys)
    table = engine.compare("all", example_journeys, skip_unsupported=True)
    needing = {name for name, cls in REGISTRY.items() if cls.requires}
    assert set(table.attrs["skipped"]) == needing
    assert {"time_decay", "w_shaped", "full_path"} <= needing
    assert "ages" in table.attrs["skipped"]["time_decay"]
    assert "milestones" in table.attrs["skipped"]["w_shaped"]
    assert set(table["model"]) == set(REGISTRY) - needing


def test_compare_skipping_everything_keeps_the_columns(example_journeys):
    table = engine.compare(["w_shaped", "full_path"], example_journeys, skip_unsupported=True)
    assert table.empty
    assert list(table.columns[:2]) == ["model", "channel"]
    assert set(table.attrs["skipped"]) == {"w_shaped", "full_path"}


def test_compare_unknown_model(rich_journeys):
    with pytest.raises(engine.EngineError, match="unknown model 'nope'"):
        engine.compare(["first_touch", "nope"], rich_journeys)


# -- get_model and available_models ------------------------------------------------------------

def test_get_model_by_name():
    assert isinstance(get_model("last_touch"), LastTouch)
    assert isinstance(get_model(" Last-Touch "), LastTouch)
    model = get_model("linear", per="channel")
    assert isinstance(model, Linear) and model.per == "channel"


def test_get_model_unknown_name_lists_the_available_ones():
    with pytest.raises(engine.EngineError, match="unknown model 'markovv'") as info:
        get_model("markovv")
    assert "first_touch" in str(info.value) and "w_shaped" in str(info.value)


def test_get_model_unknown_parameter():
    with pytest.raises(engine.EngineError, match="'order'"):
        get_model("first_touch", order=2)
    with pytest.raises(engine.EngineError, match="'half_lif'"):
        get_model("time_decay", half_lif=3)


def test_available_models():
    table = available_models()
    assert list(table.columns) == ["name", "description", "requires"]
    assert table["name"].tolist() == sorted(REGISTRY)
    requires = table.set_index("name")["requires"]
    assert requires["time_decay"] == "ages" and requires["first_touch"] == ""
