"""Shapley attribution: the solvers' axioms, closed forms, sampling error, value functions."""

from __future__ import annotations

from itertools import permutations
from math import factorial

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import EngineError, MissingDataError
from engine.models import Markov, Shapley
from engine.models.shapley import (all_coalitions, coalition_counts, mobius, shapley_exact,
                                   shapley_from_observed, shapley_sampled)

VALUES = ("simplified", "ordered", "conversion_rate", "model", "casv")


def brute_force(v: np.ndarray) -> np.ndarray:
    """Shapley values by the definition: average marginal contribution over all orders."""
    n = int(len(v)).bit_length() - 1
    phi = np.zeros(n)
    for order in permutations(range(n)):
        mask = 0
        for player in order:
            phi[player] += v[mask | 1 << player] - v[mask]
            mask |= 1 << player
    return phi / factorial(n)


games = st.integers(1, 8).flatmap(lambda n: st.lists(
    st.floats(-100, 100, allow_nan=False), min_size=1 << n, max_size=1 << n)).map(np.array)


@given(games)
@settings(max_examples=60, deadline=None)
def test_efficiency(v):
    assert shapley_exact(v).sum() == pytest.approx(v[-1] - v[0], abs=1e-8)


@given(games, st.data())
@settings(max_examples=60, deadline=None)
def test_symmetry(v, data):
    n = int(len(v)).bit_length() - 1
    if n < 2:
        return
    i, j = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    masks = np.arange(1 << n)
    bit_i, bit_j = (masks >> i) & 1, (masks >> j) & 1
    swapped = masks & ~(1 << i) & ~(1 << j) | bit_i << j | bit_j << i
    symmetric = v + v[swapped]  # a game in which i and j are interchangeable
    phi = shapley_exact(symmetric).ravel()
    assert phi[i] == pytest.approx(phi[j], abs=1e-8)


@given(games, st.data())
@settings(max_examples=60, deadline=None)
def test_null_player(v, data):
    n = int(len(v)).bit_length() - 1
    j = data.draw(st.integers(0, n - 1))
    masks = np.arange(1 << n)
    null = v[masks & ~(1 << j)]  # adding j never changes the worth
    phi = shapley_exact(null).ravel()
    assert phi[j] == pytest.approx(0, abs=1e-9)


@given(games, st.data())
@settings(max_examples=60, deadline=None)
def test_additivity(v, data):
    w = np.array(data.draw(st.lists(st.floats(-100, 100, allow_nan=False), min_size=len(v),
                                    max_size=len(v))))
    np.testing.assert_allclose(shapley_exact(v + w), shapley_exact(v) + shapley_exact(w),
                               atol=1e-8)
    both = shapley_exact(np.column_stack([v, w]))  # several games at once
    np.testing.assert_allclose(both[:, 1], shapley_exact(w).ravel(), atol=1e-9)


@given(st.integers(1, 6).flatmap(lambda n: st.lists(
    st.floats(-10, 10, allow_nan=False), min_size=1 << n, max_size=1 << n)).map(np.array))
@settings(max_examples=30, deadline=None)
def test_exact_solver_is_the_definition(v):
    np.testing.assert_allclose(shapley_exact(v).ravel(), brute_force(v), atol=1e-9)


@given(games)
@settings(max_examples=40, deadline=None)
def test_solver_on_observed_coalitions_equals_the_dense_one(v):
    n = int(len(v)).bit_length() - 1
    v = v.copy()
    v[0] = 0.0
    keep = np.random.default_rng(len(v)).random(len(v)) < 0.4
    sparse = np.where(keep, v, 0.0)
    members = all_coalitions(n)[keep]
    np.testing.assert_allclose(shapley_from_observed(members, v[keep][:, None]).ravel(),
                               shapley_exact(sparse).ravel(), atol=1e-8)


def test_mobius_inverts_the_subset_sum():
    rng = np.random.default_rng(0)
    dividends = rng.normal(size=1 << 6)
    members = all_coalitions(6)
    subset = (members[:, None, :] | ~members[None, :, :]).all(axis=2)  # T subset of S
    v = subset.astype(float) @ dividends
    np.testing.assert_allclose(mobius(v).ravel(), dividends, atol=1e-10)


def test_sampled_solver_converges_to_the_exact_one_within_its_error():
    rng = np.random.default_rng(1)
    n = 8
    v = rng.normal(size=1 << n) + 3 * np.bitwise_count(np.arange(1 << n)) ** 1.5
    exact = shapley_exact(v).ravel()
    table = v

    def evaluate(members):
        return table[members.astype(np.int64) @ (1 << np.arange(n))][:, None]

    phi, error = shapley_sampled(evaluate, n, 4_000, rng=2)
    z = (phi.ravel() - exact) / error.ravel()
    assert np.all(np.abs(z) < 4.5), z
    # More permutations, smaller error.
    _, finer = shapley_sampled(evaluate, n, 16_000, rng=3)
    assert np.all(finer < error)


# -- the model ------------------------------------------------------------------------------------

def credit(result) -> pd.DataFrame:
    return result.table.set_index("channel")


@pytest.fixture(scope="module")
def example():
    return engine.load_example()


def test_simplified_closed_form_equals_the_exact_solver(example):
    model = Shapley(n_draws=0).fit(example)
    coalitions = model.coalitions_
    n = example.n_channels
    masks = coalitions.members.astype(np.int64) @ (1 << np.arange(n))
    dividends = np.zeros((1 << n, 2))
    dividends[masks] = np.column_stack([coalitions.conversions, coalitions.value])
    v = dividends.copy()  # v(S) = sum over T subset of S of R(T): the zeta transform
    for bit in range(n):
        view = v.reshape(-1, 2, 1 << bit, 2)
        view[:, 1] += view[:, 0]
    exact = shapley_exact(v)
    values = model.shapley_values_
    np.testing.assert_allclose(values[["shapley_conversions", "shapley_value"]], exact,
                               rtol=1e-12)
    # Efficient: the credit is the Shapley value itself.
    np.testing.assert_allclose(credit(model.attribute())["conversions"],
                               values.set_index("channel")["shapley_conversions"], rtol=1e-12)


def test_simplified_splits_each_conversion_over_its_distinct_channels():
    journeys = engine.Journeys.from_lists([["a", "b", "a"], ["a"], ["b", "c"]],
                                          conversions=[3, 1, 2], value=[30, 5, 8],
                                          nulls=[1, 0, 0])
    table = credit(Shapley(n_draws=0).fit(journeys).attribute())
    assert table["conversions"].tolist() == [2.5, 2.5, 1.0]
    assert table["value"].tolist() == [20.0, 19.0, 4.0]


@pytest.mark.parametrize("value", VALUES)
def test_credit_sums_to_totals_and_every_draw_does(example, value):
    model = Shapley(value=value, n_draws=20, rng=0).fit(example)
    table = model.attribute().table
    assert table["conversions"].sum() == pytest.approx(example.total_conversions)
    assert table["value"].sum() == pytest.approx(example.total_value)
    np.testing.assert_allclose(model.draws_["conversions"].sum(axis=1),
                               example.total_conversions)
    assert (table["conversions"] >= 0).all()


@pytest.mark.parametrize("value", ["simplified", "ordered", "conversion_rate", "casv"])
def test_channel_never_in_a_converting_journey_gets_nothing(value):
    # z also never leads on to a conversion, which a first-order chain (casv) would credit.
    journeys = engine.Journeys.from_lists(
        [["a", "b"], ["b"], ["a"], ["b", "z"], ["z"], ["c", "a"]],
        conversions=[3, 2, 1, 0, 0, 1], value=[30, 10, 4, 0, 0, 3], nulls=[2, 5, 3, 4, 6, 1])
    table = credit(Shapley(value=value, n_draws=10, rng=1).fit(journeys).attribute())
    assert table.loc["z", ["conversions", "value", "conversions_upper"]].tolist() == [0, 0, 0]


def test_ordered_credit_per_position_adds_up_to_the_simplified_credit(example):
    model = Shapley(value="ordered", n_draws=0).fit(example)
    by_position = model.position_credit_.groupby("channel")[["conversions", "value"]].sum()
    simplified = credit(Shapley(n_draws=0).fit(example).attribute())
    np.testing.assert_allclose(by_position.loc[simplified.index], simplified[["conversions",
                                                                             "value"]])
    small = engine.Journeys.from_lists([["b", "a", "b", "c"]], conversions=[3], nulls=[0])
    positions = Shapley(value="ordered", n_draws=0).fit(small).position_credit_
    assert positions[["channel", "position", "conversions"]].values.tolist() == [
        ["a", 2, 1.0], ["b", 1, 1.0], ["c", 3, 1.0]]


def test_conversion_rate_game_by_hand():
    # Sets {a}: 1 of 4 convert, {b}: 1 of 2, {a, b}: 3 of 4; unobserved {} is 0.
    journeys = engine.Journeys.from_lists([["a"], ["b"], ["a", "b"]], conversions=[1, 1, 3],
                                          nulls=[3, 1, 1])
    model = Shapley(value="conversion_rate", n_draws=0).fit(journeys)
    phi = model.shapley_values_.set_index("channel")["shapley_conversions"]
    # phi_a = (v(a) - 0) / 2 + (v(ab) - v(b)) / 2 = (0.25 + 0.25) / 2
    assert phi["a"] == pytest.approx(0.25)
    assert phi["b"] == pytest.approx(0.5)
    assert credit(model.attribute())["conversions"].tolist() == pytest.approx([5 / 3, 10 / 3])


def test_conversion_rate_with_a_model_for_unobserved_coalitions(example):
    zero = Shapley(value="conversion_rate", n_draws=0).fit(example)
    filled = Shapley(value="conversion_rate", unobserved="model", n_draws=0).fit(example)
    assert filled.exact_
    assert not np.allclose(zero.shapley_values_["shapley_conversions"],
                           filled.shapley_values_["shapley_conversions"])


def test_model_value_function_exact_and_sampled_agree(example):
    exact = Shapley(value="model", n_draws=0).fit(example)
    sampled = Shapley(value="model", n_draws=0, max_exact_channels=6, n_permutations=4_000,
                      rng=0).fit(example)
    assert exact.exact_ and not sampled.exact_
    values = sampled.shapley_values_
    z = (values["shapley_conversions"] - exact.shapley_values_["shapley_conversions"]) \
        / values["standard_error_conversions"]
    assert (z.abs() < 4.5).all()


def test_model_accepts_any_scikit_learn_classifier(example):
    from sklearn.tree import DecisionTreeClassifier

    model = Shapley(value="model", classifier=DecisionTreeClassifier(max_depth=3,
                                                                     random_state=0),
                    n_draws=0).fit(example)
    assert model.attribute().table["conversions"].sum() == pytest.approx(
        example.total_conversions)


def test_casv_values_sum_to_the_chain_conversion_probability(example):
    model = Shapley(value="casv", n_draws=0).fit(example)
    markov = Markov(n_draws=0).fit(example)
    assert model.shapley_values_["shapley_conversions"].sum() == pytest.approx(
        markov.conversion_probability_, rel=1e-9)
    # With two channels the game is small enough to check by hand.
    journeys = engine.Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 1], nulls=[1, 1])
    phi = Shapley(value="casv", n_draws=0).fit(journeys).shapley_values_["shapley_conversions"]
    # P = 1/2; only b: 1/4 (a's walks die); only a: 0. phi_a = (0 + 1/4) / 2, phi_b = 3/8.
    assert phi.tolist() == pytest.approx([1 / 8, 3 / 8])


def test_many_channels_are_exact_on_observed_coalitions_and_sampled_for_a_model():
    rng = np.random.default_rng(5)
    names = [f"ch{i:02d}" for i in range(70)]  # more than one 62-bit mask word
    paths = [list(rng.choice(names, size=rng.integers(1, 5))) for _ in range(3_000)]
    conversions = rng.binomial(1, 0.3, size=len(paths)).astype(float)
    journeys = engine.Journeys.from_lists(paths, conversions=conversions,
                                          nulls=1.0 - conversions)
    coalitions = coalition_counts(journeys)
    assert coalitions.masks.shape[1] == 2
    assert (coalitions.size == [len(set(p)) for p in paths][0]).any()
    rate = Shapley(value="conversion_rate", n_draws=0).fit(journeys)
    assert rate.exact_
    model = Shapley(value="model", n_draws=0, n_permutations=200, rng=0).fit(journeys)
    assert not model.exact_
    assert model.attribute().table["conversions"].sum() == pytest.approx(conversions.sum())


def test_coalition_masks_per_journey():
    journeys = engine.Journeys.from_lists([["b", "a", "b"], ["c"], ["a", "b"], ["c", "c"]],
                                          conversions=[1, 0, 2, 1], value=[1, 0, 4, 2],
                                          nulls=[0, 3, 1, 1])
    c = coalition_counts(journeys)
    assert c.members.tolist() == [[True, True, False], [False, False, True]]
    assert c.conversions.tolist() == [3, 1] and c.nulls.tolist() == [1, 4]
    assert c.value.tolist() == [5, 2] and c.index.tolist() == [0, 1, 0, 1]
    assert c.lookup(c.masks[::-1]).tolist() == [1, 0]
    assert c.lookup(np.array([[1]])).tolist() == [-1]


def test_intervals_are_reproducible_and_bracket_the_estimate(example):
    first = Shapley(n_draws=100, rng=4).fit(example).attribute()
    again = Shapley(n_draws=100, rng=np.random.default_rng(4)).fit(example).attribute()
    pd.testing.assert_frame_equal(first.table, again.table)
    table = credit(first)
    big = table["conversions"] > 500
    assert (table.loc[big, "conversions_lower"] < table.loc[big, "conversions"]).all()
    assert (table.loc[big, "conversions"] < table.loc[big, "conversions_upper"]).all()
    assert first.draws["conversions"].shape == (100, example.n_channels)


def test_bayesian_bootstrap_intervals_cover_the_truth():
    # Two channels, a's journeys convert at 0.3 and b's at 0.1: simplified credit is
    # proportional to the conversions each set makes, so the truth is known.
    rng = np.random.default_rng(7)
    covered = 0
    replicates = 60
    for _ in range(replicates):
        n = rng.multinomial(2_000, [0.5, 0.5])
        conv = rng.binomial(n, [0.3, 0.1]).astype(float)
        journeys = engine.Journeys.from_lists([["a"], ["b"]], conversions=conv,
                                              nulls=n - conv)
        model = Shapley(n_draws=200, rng=int(rng.integers(1 << 30))).fit(journeys)
        draws = model.draws_["conversions"][:, 0] / conv.sum()  # a's share
        lower, upper = np.quantile(draws, [0.05, 0.95])
        covered += lower <= 0.75 <= upper
    assert 0.8 <= covered / replicates <= 0.98


def test_bad_parameters_and_input(example):
    with pytest.raises(EngineError, match="value must be one of"):
        Shapley(value="banzhaf").fit(example)
    with pytest.raises(EngineError, match="max_exact_channels"):
        Shapley(max_exact_channels=40).fit(example)
    with pytest.raises(EngineError, match="classifier"):
        Shapley(value="model", classifier=object()).fit(example)
    no_nulls = engine.Journeys.from_lists([["a"], ["b"]], conversions=[1, 1])
    with pytest.raises(MissingDataError, match="nulls"):
        Shapley(value="conversion_rate").fit(no_nulls)
    assert Shapley(n_draws=0).fit(no_nulls).attribute().table["conversions"].sum() == 2
    nothing = engine.Journeys.from_lists([["a"]], conversions=[0], nulls=[3])
    with pytest.raises(MissingDataError, match="no conversions"):
        Shapley().fit(nothing)
