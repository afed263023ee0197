"""Journeys validation, the model face's state handling, and the Attribution table."""

import pickle

import numpy as np
import pytest

import engine
from engine import Attribution, Journeys
from engine.models import Linear


def test_journeys_reject_non_integer_codes_and_unknown_milestone_flags():
    base = dict(channels=["a", "b"], offsets=[0, 1], conversions=[1.0], value=[0.0], nulls=[0.0])
    with pytest.raises(engine.InputError, match="codes must be integers"):
        Journeys(codes=np.array([1.7]), **base)
    with pytest.raises(engine.InputError, match="milestones holds flags"):
        Journeys(codes=[1], milestones=np.array([300]), **base)
    with pytest.raises(engine.InputError, match="milestones holds flags"):
        Journeys(codes=[1], milestones=np.array([4]), **base)
    with pytest.raises(engine.InputError, match=r"conversions\[0\] is nan"):
        Journeys(codes=[1], **{**base, "conversions": [np.nan]})
    with pytest.raises(engine.InputError, match="journey 0 has no touches"):
        Journeys(codes=[], **{**base, "offsets": [0, 0]})


def test_journeys_are_read_only_even_after_pickling():
    journeys = Journeys.from_lists([["a", "b"]], conversions=[1])
    for copy in (journeys, pickle.loads(pickle.dumps(journeys))):
        with pytest.raises(ValueError):
            copy.codes[0] = 1
        with pytest.raises(AttributeError):
            copy.channels = ("x",)


def test_set_params_after_fit_forgets_the_fit():
    journeys = Journeys.from_lists([["a", "a", "b"]], conversions=[1])
    model = Linear().fit(journeys)
    model.set_params(per="channel")
    with pytest.raises(engine.NotFittedError):
        model.attribute()
    assert model.fit(journeys).attribute().table["conversions"].tolist() == [0.5, 0.5]


def test_compare_refuses_two_models_with_one_name():
    journeys = Journeys.from_lists([["a", "b"]], conversions=[1])
    with pytest.raises(engine.EngineError, match="'linear' appears twice"):
        engine.compare([Linear(), Linear(per="channel")], journeys)


def test_share_is_undefined_without_conversions():
    result = Attribution.from_credit("last_touch", ["a", "b"], conversions=[0.0, 0.0],
                                     value=[0.0, 0.0])
    assert result.table["share"].isna().all()
    assert result.table["conversions_lower"].isna().all()


def test_plot_draws_one_bar_per_channel():
    import matplotlib

    matplotlib.use("Agg")
    result = Attribution.from_credit("m", ["a", "b", "c"], conversions=[1.0, 2.0, 3.0],
                                     value=[1.0, 1.0, 1.0], conversions_lower=[0.5, 1.5, 2.5],
                                     conversions_upper=[1.5, 2.5, 3.5])
    ax = result.plot()
    assert len(ax.patches) == 3
    assert [p.get_width() for p in ax.patches] == [1.0, 2.0, 3.0]
    with pytest.raises(engine.EngineError, match="metric"):
        result.plot(metric="roas")
