"""The contract every registered attribution model keeps (our ``check_estimator``).

Parametrised over ``engine.models.REGISTRY``, so a newly registered model is checked without
touching this file.
"""

from __future__ import annotations

import inspect
import pickle
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import engine
from engine.models import REGISTRY
from engine.journeys import BASELINE
from engine.models.rules import DEFAULT_DIRECT

COLUMNS = ["model", "channel", "conversions", "conversions_lower", "conversions_upper", "value",
           "value_lower", "value_upper", "share"]
BOUNDS = ["conversions_lower", "conversions_upper", "value_lower", "value_upper"]
MODELS = sorted(REGISTRY)
RTOL = 1e-9


def params_of(cls) -> dict:
    """``__init__`` parameters (other than self) and their defaults."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p for p in parameters if p.name != "self"}


def has_rng(cls) -> bool:
    return "rng" in params_of(cls)


def make(name: str):
    """A fresh model with default parameters, seeded when it takes an ``rng``."""
    cls = REGISTRY[name]
    return cls(rng=0) if has_rng(cls) else cls()


def credit(result: engine.Attribution) -> pd.DataFrame:
    """The table indexed by channel, with the point estimates only."""
    return result.table.set_index("channel")[["conversions", "value", "share"]]


def assert_same_credit(left: pd.DataFrame, right: pd.DataFrame):
    """Same point credit per channel, whatever the row order."""
    assert sorted(left.index) == sorted(right.index)
    np.testing.assert_allclose(left.to_numpy(), right.loc[left.index].to_numpy(), rtol=RTOL,
                               atol=1e-9)


@pytest.fixture(scope="module")
def fitted(rich_journeys):
    """Every model fitted once on the rich journeys: {name: (model, result)}."""
    cache = {}

    def get(name):
        if name not in cache:
            model = make(name)
            cache[name] = (model, model.fit(rich_journeys).attribute())
        return cache[name]

    return get


@pytest.fixture(scope="module")
def other_journeys(make_rich_journeys):
    """Different journeys over a different channel vocabulary, for the refit check."""
    return make_rich_journeys(seed=7, n_journeys=60, channels=("affiliate", "radio", "tv"))


def test_registry_holds_the_documented_rule_models():
    assert {"first_touch", "last_touch", "last_non_direct", "linear", "time_decay",
            "position_based", "custom_position", "w_shaped", "full_path"} <= set(REGISTRY)


@pytest.mark.parametrize("name", MODELS)
def test_name_and_description(name):
    cls = REGISTRY[name]
    assert cls.name == name
    assert name == name.lower() and " " not in name and "-" not in name
    assert cls.description and "\n" not in cls.description
    assert set(cls.requires) <= {"ages", "milestones"}


@pytest.mark.parametrize("name", MODELS)
def test_params_are_keyword_only_with_defaults_stored_unchanged(name):
    cls = REGISTRY[name]
    params = params_of(cls)
    for p in params.values():
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}: {p.name} is not keyword-only"
        assert p.default is not inspect.Parameter.empty, f"{name}: {p.name} has no default"
    assert cls().get_params() == {k: p.default for k, p in params.items()}

    # __init__ does no work: any object is stored as given, validation waits for fit.
    sentinels = {k: object() for k in params}
    model = cls(**sentinels)
    assert all(model.get_params()[k] is v for k, v in sentinels.items())
    assert not [a for a in vars(model) if a.endswith("_") and not a.startswith("_")]


@pytest.mark.parametrize("name", MODELS)
def test_set_params_round_trips_and_rejects_unknown(name):
    model = make(name)
    assert model.set_params(**model.get_params()) is model
    with pytest.raises(engine.EngineError, match="no_such_param"):
        model.set_params(no_such_param=1)


@pytest.mark.parametrize("name", MODELS)
def test_attribute_before_fit_raises(name):
    with pytest.raises(engine.NotFittedError, match=name):
        make(name).attribute()


@pytest.mark.parametrize("name", MODELS)
def test_fit_returns_self_and_rejects_non_journeys(name, rich_journeys):
    model = make(name)
    assert model.fit(rich_journeys) is model
    with pytest.raises(engine.EngineError, match="Journeys"):
        make(name).fit(rich_journeys.to_frame())


@pytest.mark.parametrize("name", MODELS)
def test_table_schema(name, fitted, rich_journeys):
    _, result = fitted(name)
    table = result.table
    assert isinstance(result, engine.Attribution)
    assert list(table.columns[: len(COLUMNS)]) == COLUMNS
    # One row per channel, and a model that separates the conversions no channel caused may
    # add one (baseline) row.
    channels = table[table["channel"] != BASELINE]
    assert len(channels) == rich_journeys.n_channels
    assert sorted(channels["channel"]) == sorted(rich_journeys.channels)
    assert len(table) - len(channels) in (0, 1)
    assert (table["model"] == name).all()
    assert result.model == name
    for column in COLUMNS[2:]:
        assert pd.api.types.is_float_dtype(table[column]), column
    assert np.isfinite(table[["conversions", "value", "share"]].to_numpy()).all()


@pytest.mark.parametrize("name", MODELS)
def test_credit_sums_to_totals(name, fitted, rich_journeys):
    table = fitted(name)[1].table
    np.testing.assert_allclose(table["conversions"].sum(), rich_journeys.total_conversions,
                               rtol=RTOL)
    np.testing.assert_allclose(table["value"].sum(), rich_journeys.total_value, rtol=RTOL)
    np.testing.assert_allclose(table["share"].sum(), 1.0, rtol=RTOL)


@pytest.mark.parametrize("name", MODELS)
def test_bounds(name, fitted):
    model, result = fitted(name)
    table = result.table
    if not has_rng(type(model)):
        assert result.draws is None
        assert table[BOUNDS].isna().all().all(), "deterministic models have NaN bounds"
    else:
        for metric in ("conversions", "value"):
            lower, upper = table[f"{metric}_lower"], table[f"{metric}_upper"]
            assert np.isfinite(lower).all() and np.isfinite(upper).all()
            assert (lower <= upper).all()


@pytest.mark.parametrize("name", MODELS)
def test_refit_forgets(name, fitted, rich_journeys, other_journeys):
    model = make(name).fit(rich_journeys)
    refitted = model.fit(other_journeys).attribute()
    fresh_model = make(name).fit(other_journeys)
    fresh = fresh_model.attribute()
    assert model.journeys_ is other_journeys
    assert sorted(set(refitted.channels) - {BASELINE}) == sorted(other_journeys.channels)
    assert {a for a in vars(model) if a.endswith("_")} == \
        {a for a in vars(fresh_model) if a.endswith("_")}
    pd.testing.assert_frame_equal(refitted.table, fresh.table)


@pytest.mark.parametrize("name", MODELS)
def test_relabelling_channels_permutes_credit(name, fitted, rich_journeys):
    _, before = fitted(name)
    names = [c for c in rich_journeys.channels if c.casefold() not in DEFAULT_DIRECT]
    # A cycle over the non-direct channels: "direct" carries meaning for last_non_direct.
    mapping = dict(zip(names, names[1:] + names[:1]))
    after = make(name).fit(rich_journeys.rename_channels(mapping)).attribute()
    assert_same_credit(credit(after), credit(before).rename(index=mapping))


@pytest.mark.parametrize("name", MODELS)
def test_channel_codes_order_does_not_matter(name, fitted, rich_journeys):
    _, before = fitted(name)
    permutation = np.random.default_rng(3).permutation(rich_journeys.n_channels)
    channels = np.empty(rich_journeys.n_channels, dtype=object)
    channels[permutation] = rich_journeys.channels
    recoded = replace(rich_journeys, channels=tuple(channels),
                      codes=permutation[rich_journeys.codes])
    assert_same_credit(credit(make(name).fit(recoded).attribute()), credit(before))


@pytest.mark.parametrize("name", MODELS)
def test_shuffling_journeys_changes_nothing(name, fitted, rich_journeys):
    _, before = fitted(name)
    order = np.random.default_rng(5).permutation(rich_journeys.n_journeys)
    assert_same_credit(credit(make(name).fit(rich_journeys.take(order)).attribute()),
                       credit(before))


@pytest.mark.parametrize("name", [n for n in MODELS if has_rng(REGISTRY[n])])
def test_fixed_rng_reproduces(name, rich_journeys):
    cls = REGISTRY[name]
    first = cls(rng=123).fit(rich_journeys).attribute()
    second = cls(rng=123).fit(rich_journeys).attribute()
    generator = cls(rng=np.random.default_rng(123)).fit(rich_journeys).attribute()
    pd.testing.assert_frame_equal(first.table, second.table)
    assert np.isfinite(generator.table["conversions"]).all()


@pytest.mark.parametrize("name", MODELS)
def test_pickle_round_trip(name, fitted):
    model, result = fitted(name)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.get_params().keys() == model.get_params().keys()
    pd.testing.assert_frame_equal(clone.attribute().table, result.table)


@pytest.mark.parametrize("name", [n for n in MODELS if not REGISTRY[n].requires])
def test_fits_the_shipped_example(name, example_journeys):
    table = make(name).fit(example_journeys).attribute().table
    assert (table["channel"] != BASELINE).sum() == example_journeys.n_channels == 12
    np.testing.assert_allclose(table["conversions"].sum(), 19785, rtol=RTOL)
    np.testing.assert_allclose(table["value"].sum(), example_journeys.total_value, rtol=RTOL)


def test_models_needing_extra_data_are_the_expected_ones():
    needs = {name for name in MODELS if REGISTRY[name].requires}
    assert {"time_decay", "w_shaped", "full_path"} <= needs
    assert REGISTRY["time_decay"].requires == ("ages",)
    assert REGISTRY["w_shaped"].requires == REGISTRY["full_path"].requires == ("milestones",)


@pytest.mark.parametrize("name", [n for n in MODELS if REGISTRY[n].requires])
def test_missing_data_raises_on_a_path_table(name, example_journeys):
    with pytest.raises(engine.MissingDataError, match=REGISTRY[name].requires[0]) as info:
        make(name).fit(example_journeys)
    assert name in str(info.value)


@pytest.mark.parametrize("name", [n for n in MODELS if REGISTRY[n].requires])
def test_missing_data_message_names_what_is_missing(name, rich_journeys):
    for missing in REGISTRY[name].requires:
        lacking = replace(rich_journeys, **{missing: None})
        with pytest.raises(engine.MissingDataError, match=f"touch {missing}"):
            make(name).fit(lacking)
