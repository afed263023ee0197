"""Markov order selection by out-of-sample prediction of conversion."""

import numpy as np
import pandas as pd
import pytest

import engine
from engine import Journeys
from engine.models.markov import conversion_probability, select_order, transition_counts


def second_order_world():
    # Conversion depends on the channel before the last one: order 1 cannot see it.
    return Journeys.from_lists([["x", "a"], ["y", "a"], ["z"]], conversions=[900, 100, 300],
                               value=[900.0, 100.0, 300.0], nulls=[100, 900, 700])


def test_second_order_signal_selects_order_two():
    table, best = select_order(second_order_world(), max_order=3)
    assert best == 2
    first, second = table.set_index("order").loc[[1, 2], "auc"]
    assert second > 0.8 > first
    assert table.set_index("order").loc[2, "log_loss"] < table.set_index("order").loc[1, "log_loss"]


def test_conversion_probability_reads_the_end_state():
    chain = transition_counts(second_order_world(), order=2)
    test = Journeys.from_lists([["x", "a"], ["y", "a"], ["z"], ["q"]], conversions=[0, 0, 0, 0],
                               nulls=[1, 1, 1, 1])
    p = conversion_probability(chain, test)
    assert p[:3] == pytest.approx([0.9, 0.1, 0.3])
    # "q" is unknown to the chain: the overall conversion rate.
    assert p[3] == pytest.approx(1300 / 3000)


def test_split_by_person_keeps_each_person_on_one_side():
    rng = np.random.default_rng(3)
    n = 400
    person = np.repeat([f"p{i}" for i in range(n // 2)], 2)
    last = rng.choice(["a", "b"], n)
    converted = rng.random(n) < np.where(last == "a", 0.8, 0.2)
    rows = []
    for i in range(n):
        rows.append((person[i], f"2024-01-{1 + i % 2:02d}T{i % 24:02d}:00", last[i], "touch"))
        if converted[i]:
            rows.append((person[i], f"2024-01-{1 + i % 2:02d}T{i % 24:02d}:30", None,
                         "conversion"))
    events = pd.DataFrame(rows, columns=["person_id", "timestamp", "channel", "event_type"])
    journeys = engine.read_events(events, lookback_days=None)
    table, best = select_order(journeys, max_order=2)
    assert table.loc[0, "auc"] > 0.7


@pytest.mark.parametrize("kwargs, match", [({"max_order": 0}, "max_order"),
                                           ({"test_size": 1.5}, "test_size")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(engine.EngineError, match=match):
        select_order(second_order_world(), **kwargs)
