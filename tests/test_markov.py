"""The Markov removal-effect model: exact algebra, simulation, ChannelAttribution, intervals."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import engine
from engine.models import Markov
from engine.models import markov
from engine.models.markov import (absorption, dirichlet_draws, posterior_absorption,
                                  removal_effects, simulate_walks, transition_counts)
from tests.reference.channelattribution_heuristics import (LARGE_CHANNELS, MARKOV_ORDER1,
                                                           MARKOV_ORDER1_REMOVAL_EFFECTS)
from tests.reference.channelattribution_markov import TRANSITIONS_ORDER1

EXACT = 1e-12


def effects(model) -> pd.DataFrame:
    return model.removal_effects_.set_index("channel")


def credit(result) -> pd.DataFrame:
    return result.table.set_index("channel")


def dense_absorption(chain, removals=(), probability=None):
    """Conversion probability and value from (start) by dense solves, one per removal."""
    n = chain.n_transient
    probability = chain.probability() if probability is None else probability
    q = np.zeros((n, n))
    b = np.zeros((n, 2))
    inner = chain.target < n
    q[chain.source[inner], chain.target[inner]] = probability[inner]
    into = chain.target == chain.conversion
    b[chain.source[into], 0] = probability[into]
    b[chain.source[into], 1] = probability[into] * chain.reward[into]
    rows = [np.linalg.solve(np.eye(n) - q, b)[0]]
    for removed in removals:
        kept = ~np.asarray(removed)
        rows.append(np.linalg.solve(np.eye(kept.sum()) - q[np.ix_(kept, kept)], b[kept])[0])
    return np.array(rows)


def simulate_journeys(start, transitions, n_journeys, rng, value=10.0) -> engine.Journeys:
    """Journeys walked through a known first-order chain over channels ``0..C-1``.

    ``start`` (C,) are the first-touch probabilities; ``transitions`` (C, C + 2) the next-channel
    probabilities followed by those of converting and of leaving without converting.
    """
    n_channels = len(start)
    cumulative = np.cumsum(transitions, axis=1)
    walk = np.arange(n_journeys)
    state = np.searchsorted(np.cumsum(start), rng.random(n_journeys), side="right")
    touches_walk, touches_code = [walk], [state]
    converted = np.zeros(n_journeys, dtype=bool)
    while len(walk):
        step = (rng.random(len(walk))[:, None] > cumulative[state]).sum(axis=1)
        converted[walk[step == n_channels]] = True
        going = step < n_channels
        walk, state = walk[going], step[going]
        touches_walk.append(walk)
        touches_code.append(state)
    journey = np.concatenate(touches_walk)
    order = np.argsort(journey, kind="stable")
    lengths = np.bincount(journey, minlength=n_journeys)
    return engine.Journeys(channels=[f"c{i}" for i in range(n_channels)],
                           offsets=np.concatenate([[0], np.cumsum(lengths)]),
                           codes=np.concatenate(touches_code)[order],
                           conversions=converted.astype(float), value=converted * value,
                           nulls=(~converted).astype(float))


def true_removal_effects(start, transitions) -> np.ndarray:
    """Removal effects of a known first-order chain, by dense algebra on its parameters."""
    n_channels = len(start)
    q = transitions[:, :n_channels]
    b = transitions[:, n_channels]

    def converts(kept):
        x = np.zeros(n_channels)
        x[kept] = np.linalg.solve(np.eye(kept.sum()) - q[np.ix_(kept, kept)], b[kept])
        return start @ x

    everything = converts(np.ones(n_channels, dtype=bool))
    return np.array([1 - converts(np.arange(n_channels) != c) / everything
                     for c in range(n_channels)])


KNOWN_START = np.array([0.5, 0.3, 0.2])
KNOWN_TRANSITIONS = np.array([  # to c0, c1, c2, (conversion), (null)
    [0.10, 0.35, 0.15, 0.10, 0.30],
    [0.20, 0.05, 0.30, 0.05, 0.40],
    [0.25, 0.20, 0.10, 0.25, 0.20]])


@pytest.fixture(scope="module")
def hand_journeys():
    return engine.Journeys.from_lists([["a", "b"], ["a", "c"], ["b"], ["c", "b"]],
                                      conversions=[1, 1, 2, 1], value=[10, 20, 30, 5],
                                      nulls=[1, 1, 0, 1])


@pytest.fixture(scope="module")
def example_point(example_journeys):
    return Markov(n_draws=0).fit(example_journeys)


# -- exact algebra ------------------------------------------------------------------------------
def test_hand_computed_three_channel_example(hand_journeys):
    # Journeys (conversions, nulls, value): a>b (1, 1, 10), a>c (1, 1, 20), b (2, 0, 30),
    # c>b (1, 1, 5): 8 journeys, 5 conversions, value 65.
    # Counts: start->a 4, start->b 2, start->c 2; a->b 2, a->c 2; b->conv 4, b->null 2;
    # c->b 2, c->conv 1, c->null 1. Rewards (value per conversion): b 45/4, c 20.
    # Absorption x = P(conversion | state):
    #   x_b = 2/3, x_c = 1/4 + 1/2 x_b = 7/12, x_a = (x_b + x_c)/2 = 5/8,
    #   P = x_start = x_a/2 + x_b/4 + x_c/4 = 5/8 (= 5 conversions / 8 journeys).
    # Value v: v_b = 2/3 * 45/4 = 15/2, v_c = 1/4 * 20 + v_b/2 = 35/4, v_a = 65/8, V = 65/8.
    # Without a: P = x_b/4 + x_c/4 = 5/16 -> RE 1/2;  V = 15/8 + 35/16 = 65/16 -> RE 1/2.
    # Without b: x_c = 1/4, x_a = 1/8 -> P = 1/8 -> RE 4/5;  v_c = 5, v_a = 5/2 -> V = 5/2
    #   -> RE 9/13.
    # Without c: x_a = 1/3 -> P = 1/3 -> RE 7/15;  v_a = 15/4 -> V = 15/4 -> RE 7/13.
    # Conversions: RE sum 53/30, credit 5 * (15, 24, 14)/53. Value: RE sum 45/26, credit
    # 65 * (13, 18, 14)/45.
    model = Markov(n_draws=0).fit(hand_journeys)
    re = effects(model)
    F = Fraction
    expected_re = {"a": (F(1, 2), F(1, 2)), "b": (F(4, 5), F(9, 13)), "c": (F(7, 15), F(7, 13))}
    for channel, (conversions, value) in expected_re.items():
        assert abs(re.loc[channel, "removal_effect_conversions"] - float(conversions)) < EXACT
        assert abs(re.loc[channel, "removal_effect_value"] - float(value)) < EXACT
    table = credit(model.attribute())
    np.testing.assert_allclose(table["conversions"], [5 * 15 / 53, 5 * 24 / 53, 5 * 14 / 53],
                               rtol=0, atol=EXACT)
    np.testing.assert_allclose(table["value"], [65 * 13 / 45, 65 * 18 / 45, 65 * 14 / 45],
                               rtol=0, atol=EXACT)
    assert abs(model.conversion_probability_ - 5 / 8) < EXACT
    solved = absorption(model.chain_)[0, 0]
    np.testing.assert_allclose(solved, [5 / 8, 65 / 8], rtol=0, atol=EXACT)
    assert table[["conversions_lower", "value_upper"]].isna().all().all()


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("collapse", [False, True])
def test_iteration_matches_dense_solves(example_journeys, order, collapse):
    chain = transition_counts(example_journeys, order, collapse)
    removals = chain.contains.T
    dense = dense_absorption(chain, removals)
    ours = absorption(chain, removals=removals)[0]
    assert np.abs(ours - dense).max(axis=0) / dense[0] == pytest.approx([0, 0], abs=EXACT)


def test_posterior_draws_are_solved_to_their_tolerance(example_journeys):
    chain = transition_counts(example_journeys, order=2)
    removals = chain.contains.T
    draws = dirichlet_draws(chain, 6, rng=4)
    solved = posterior_absorption(chain, 6, 4, removals)
    for draw, ours in zip(draws, solved):
        dense = dense_absorption(chain, removals, draw)
        # Certified to 1e-6 of the intact chain's value in the same draw.
        assert (np.abs(ours - dense).max(axis=0) <= 1e-6 * dense[0]).all()


def test_posterior_draws_do_not_depend_on_batching_or_threads(example_journeys, monkeypatch):
    chain = transition_counts(example_journeys, order=2)
    removals = chain.contains.T
    together = absorption(chain, dirichlet_draws(chain, 9, rng=2), removals,
                          tolerance=markov._DRAW_TOLERANCE)
    np.testing.assert_array_equal(posterior_absorption(chain, 9, 2, removals), together)
    monkeypatch.setattr(markov, "_BLOCK_ENTRIES", 1)  # one draw per block
    monkeypatch.setattr(markov.os, "cpu_count", lambda: 3)
    np.testing.assert_allclose(posterior_absorption(chain, 9, 2, removals), together,
                               rtol=1e-6)


def test_grouping_by_lookup_and_by_hash_agree():
    keys = np.random.default_rng(0).integers(0, 50, 1_000)
    for size in (50, 10 ** 12):  # a dense lookup table, then a hash factorisation
        distinct, index = markov._group(keys, size)
        expected, inverse = np.unique(keys, return_inverse=True)
        np.testing.assert_array_equal(distinct, expected)
        np.testing.assert_array_equal(index, inverse)


def test_states_beyond_the_lookup_table_are_counted_alike(example_journeys, monkeypatch):
    dense = transition_counts(example_journeys, order=3)
    monkeypatch.setattr(markov, "_DENSE_KEYS", 0)
    hashed = transition_counts(example_journeys, order=3)
    for field in ("grams", "source", "target", "count", "value"):
        np.testing.assert_array_equal(getattr(hashed, field), getattr(dense, field))


@pytest.mark.parametrize("order", [1, 2, 3, 4, 6])
def test_conversion_probability_is_the_observed_rate(example_journeys, order):
    # Fitted counts conserve flow, so the chain converts exactly as often as the journeys did.
    journeys = example_journeys
    n = (journeys.conversions + journeys.nulls).sum()
    chain = transition_counts(journeys, order)
    np.testing.assert_allclose(absorption(chain)[0, 0],
                               [journeys.total_conversions / n, journeys.total_value / n],
                               rtol=EXACT)


def test_collapsing_repeats_changes_nothing_at_order_one(example_journeys):
    kept = Markov(n_draws=0).fit(example_journeys)
    collapsed = Markov(n_draws=0, collapse_repeats=True).fit(example_journeys)
    assert (kept.chain_.source == kept.chain_.target).any()
    assert not (collapsed.chain_.source == collapsed.chain_.target).any()
    # Removal effects are exact to ~1e-15 of the conversion probability, so a small effect
    # (1 - P_c / P close to 0) is exact in absolute terms, not relative ones.
    np.testing.assert_allclose(effects(collapsed).to_numpy(dtype=float),
                               effects(kept).to_numpy(dtype=float), rtol=EXACT, atol=1e-14,
                               equal_nan=True)


def test_journeys_that_loop_for_long_are_solved_exactly():
    # Walks stay in the a <-> b loop for about 100 steps: the slowest case for the iteration.
    journeys = engine.Journeys.from_lists([["a", "b"] * 50, ["b", "a"] * 60, ["c", "a"]],
                                          conversions=[3, 1, 1], value=[30, 5, 1],
                                          nulls=[2, 4, 1])
    for order in (1, 2):
        chain = transition_counts(journeys, order)
        dense = dense_absorption(chain, chain.contains.T)
        ours = absorption(chain, removals=chain.contains.T)[0]
        assert np.abs(ours - dense).max(axis=0) / dense[0] == pytest.approx([0, 0], abs=EXACT)


def test_journeys_without_value_get_no_value_credit():
    journeys = engine.Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 1], nulls=[1, 1])
    model = Markov(n_draws=10, rng=0).fit(journeys)
    table = model.attribute().table
    assert table[["value", "value_lower", "value_upper"]].eq(0).all().all()
    assert model.removal_effects_["removal_effect_value"].isna().all()
    assert table["conversions"].tolist() == pytest.approx([2 / 3, 4 / 3])


def test_value_on_rows_without_conversions_earns_nothing():
    paths = [["a", "b"], ["a", "c"], ["b"], ["c", "b"], ["b"]]
    conversions, nulls = [1, 1, 2, 1, 0], [1, 1, 0, 1, 2]
    plain = engine.Journeys.from_lists(paths, conversions=conversions, nulls=nulls,
                                       value=[10, 20, 30, 5, 0])
    odd = engine.Journeys.from_lists(paths, conversions=conversions, nulls=nulls,
                                     value=[10, 20, 30, 5, 1000])
    before = effects(Markov(n_draws=0).fit(plain))
    after = effects(Markov(n_draws=0).fit(odd))
    pd.testing.assert_frame_equal(after, before)


def test_order_k_states_are_the_last_k_channels():
    journeys = engine.Journeys.from_lists([["a", "b", "b", "c"]], conversions=[1], nulls=[1])
    chain = transition_counts(journeys, order=3)
    path = [(chain.states[s], chain.states[t]) for s, t in zip(chain.source, chain.target)]
    assert path == [("(start)", "a"), ("a", "a > b"), ("a > b", "a > b > b"),
                    ("a > b > b", "b > b > c"), ("b > b > c", "(conversion)"),
                    ("b > b > c", "(null)")]
    collapsed = transition_counts(journeys, order=3, collapse_repeats=True)
    assert collapsed.states[1:-2] == ("a", "a > b", "a > b > c")


def test_removing_states_that_end_in_a_channel_equals_removing_it(example_journeys):
    chain = transition_counts(example_journeys, order=3)
    ends_in = chain.last_channel[:, None] == np.arange(example_journeys.n_channels)
    np.testing.assert_allclose(removal_effects(chain, removals=ends_in.T),
                               removal_effects(chain), rtol=EXACT, atol=EXACT)
    assert (chain.contains.sum() > ends_in.sum())


def test_state_removal(example_journeys):
    by_state = Markov(n_draws=0, removal="state").fit(example_journeys)
    by_channel = Markov(n_draws=0).fit(example_journeys)
    pd.testing.assert_frame_equal(credit(by_state.attribute()), credit(by_channel.attribute()),
                                  rtol=EXACT)

    second = Markov(order=2, n_draws=0, removal="state").fit(example_journeys)
    chain = second.chain_
    states = second.state_removal_effects_
    assert len(states) == chain.n_transient - 1
    single = np.eye(chain.n_transient, dtype=bool)[1:]
    dense = dense_absorption(chain, single)
    np.testing.assert_allclose(states["removal_effect_conversions"],
                               1 - dense[1:, 0] / dense[0, 0], rtol=1e-10, atol=EXACT)
    summed = states.groupby("channel")[["removal_effect_conversions",
                                        "removal_effect_value"]].sum()
    np.testing.assert_allclose(effects(second)[summed.columns].loc[summed.index], summed,
                               rtol=EXACT)
    table = credit(second.attribute())
    np.testing.assert_allclose(table["conversions"].sum(), example_journeys.total_conversions)

    drawn = Markov(order=2, removal="state", n_draws=10, rng=0).fit(example_journeys)
    bounds = credit(drawn.attribute())
    assert (bounds["conversions_lower"] <= bounds["conversions_upper"]).all()
    np.testing.assert_allclose(drawn.draws_["conversions"].sum(axis=1),
                               example_journeys.total_conversions)


# -- independent check: random walks --------------------------------------------------------------
@pytest.mark.parametrize("order", [1, 2])
def test_exact_agrees_with_random_walks(example_journeys, order):
    chain = transition_counts(example_journeys, order)
    exact = absorption(chain, removals=chain.contains.T)[0]
    n_walks = 60_000
    for channel in range(example_journeys.n_channels):
        walks = simulate_walks(chain, n_walks, rng=100 + channel,
                               removed=chain.contains[:, channel])
        converts = walks.converted.mean()
        assert abs(converts - exact[1 + channel, 0]) <= 3 * np.sqrt(
            exact[1 + channel, 0] * (1 - exact[1 + channel, 0]) / n_walks)
        assert abs(walks.value.mean() - exact[1 + channel, 1]) <= 3 * walks.value.std() / np.sqrt(
            n_walks) + EXACT


@pytest.mark.parametrize("order", [1, 3])
def test_removal_effect_is_probability_of_visiting_given_conversion(example_journeys, order):
    chain = transition_counts(example_journeys, order)
    exact = removal_effects(chain)[0]
    walks = simulate_walks(chain, 200_000, rng=7)
    converted = walks.visited[walks.converted]
    p = converted.mean(axis=0)
    assert np.all(np.abs(p - exact[:, 0]) <= 3 * np.sqrt(exact[:, 0] * (1 - exact[:, 0])
                                                          / len(converted)) + EXACT)


def test_value_removal_effect_is_value_share_of_visiting_walks(example_journeys):
    # Order 1 only: at order 3 a few rare states earn up to 187 per conversion (median 4), too
    # skewed at this sample size for a normal-theory error of the simulated value.
    chain = transition_counts(example_journeys)
    exact = removal_effects(chain)[0]
    walks = simulate_walks(chain, 200_000, rng=8)
    # A ratio estimator sum(v h) / sum(v), with its delta-method standard error.
    v = walks.value[:, None]
    ratio = (v * walks.visited).sum(axis=0) / v.sum()
    error = np.sqrt(((v * (walks.visited - ratio)) ** 2).sum(axis=0)) / v.sum()
    assert np.all(np.abs(ratio - exact[:, 1]) <= 3 * error + EXACT)


# -- ChannelAttribution ---------------------------------------------------------------------------
def test_transition_matrix_matches_channelattribution(example_journeys):
    # Exact: ChannelAttribution's transition probabilities are ratios of counts. It collapses
    # consecutive repeats (no self-transitions in its matrix), hence collapse_repeats=True.
    table = Markov(n_draws=0, collapse_repeats=True).fit(example_journeys).transition_table()
    ours = table.set_index(["from_state", "to_state"])["probability"]
    theirs = pd.Series({(f, t): p for f, t, p in TRANSITIONS_ORDER1})
    assert sorted(ours.index) == sorted(theirs.index)
    np.testing.assert_allclose(ours.loc[theirs.index], theirs, rtol=EXACT, atol=0)


def test_removal_effects_match_channelattribution(example_journeys):
    # ChannelAttribution simulates: its removal effects are all multiples of 1/2350, i.e.
    # proportions among 2350 simulated conversions (the fraction that visited the channel), so
    # each has binomial standard error sqrt(p (1 - p) / 2350), about 0.01. The value version
    # weights those conversions by value, whose (Kish) effective sample size is smaller: the
    # binomial error is a strict tolerance for it. Credit is RE / sum(RE) * total, so its error
    # is about the RE error over sum(RE). Only the large channels are compared (the others have
    # a handful of simulated conversions).
    n_simulated = 2350
    reference = pd.DataFrame(MARKOV_ORDER1_REMOVAL_EFFECTS).T
    assert np.allclose(reference["conversions"] * n_simulated,
                       np.round(reference["conversions"] * n_simulated))
    model = Markov(n_draws=0, collapse_repeats=True).fit(example_journeys)
    ours = effects(model)
    table = credit(model.attribute())
    reference_sum = reference["conversions"].sum()
    for channel in LARGE_CHANNELS:
        for metric in ("conversions", "value"):
            p = reference.loc[channel, metric]
            tolerance = 3 * np.sqrt(p * (1 - p) / n_simulated)
            assert abs(ours.loc[channel, f"removal_effect_{metric}"] - p) <= tolerance
        p = reference.loc[channel, "conversions"]
        tolerance = 3 * np.sqrt(p * (1 - p) / n_simulated) / reference_sum
        assert abs(table.loc[channel, "conversions"] - MARKOV_ORDER1[channel]["conversions"]) \
            <= tolerance * example_journeys.total_conversions


# -- properties -----------------------------------------------------------------------------------
def test_credit_and_every_draw_sum_to_totals(example_journeys):
    result = Markov(order=2, n_draws=50, rng=1).fit(example_journeys).attribute()
    np.testing.assert_allclose(result.table["conversions"].sum(),
                               example_journeys.total_conversions, rtol=EXACT)
    np.testing.assert_allclose(result.table["value"].sum(), example_journeys.total_value,
                               rtol=EXACT)
    assert result.draws["conversions"].shape == result.draws["value"].shape == (50, 12)
    np.testing.assert_allclose(result.draws["conversions"].sum(axis=1),
                               example_journeys.total_conversions, rtol=EXACT)
    np.testing.assert_allclose(result.draws["value"].sum(axis=1), example_journeys.total_value,
                               rtol=EXACT)


def test_channel_that_cannot_reach_a_conversion_gets_nothing():
    # "z" appears only in non-converting journeys, always last: from it every walk ends in
    # (null). (A channel absent from converting journeys can still earn credit when the chain
    # can pass from it to channels that convert.)
    journeys = engine.Journeys.from_lists(
        [["a", "b"], ["b"], ["a", "z"], ["z"], ["b", "a", "z"]],
        conversions=[2, 1, 0, 0, 0], value=[20, 5, 0, 0, 0], nulls=[1, 3, 2, 4, 1])
    model = Markov(order=2, n_draws=20, rng=0).fit(journeys)
    table = credit(model.attribute())
    assert table.loc["z", ["conversions", "value", "conversions_upper"]].tolist() == [0, 0, 0]
    assert effects(model).loc["z", "removal_effect_conversions"] == 0
    assert table["conversions"].sum() == pytest.approx(3)


def test_relabelling_channels_permutes_credit(example_journeys):
    mapping = dict(zip(example_journeys.channels, example_journeys.channels[::-1]))
    before = credit(Markov(order=2, n_draws=0).fit(example_journeys).attribute())
    after = credit(Markov(order=2, n_draws=0).fit(
        example_journeys.rename_channels(mapping)).attribute())
    after = after.rename(index={v: k for k, v in mapping.items()}).loc[before.index]
    np.testing.assert_allclose(after[["conversions", "value"]], before[["conversions", "value"]],
                               rtol=1e-10)


def test_rows_that_weigh_nothing_change_nothing(example_journeys):
    extra = engine.Journeys.from_lists([["alpha", "mi", "beta"]], conversions=[0], nulls=[0])
    joined = engine.Journeys(
        channels=example_journeys.channels,
        offsets=np.concatenate([example_journeys.offsets,
                                example_journeys.offsets[-1] + extra.offsets[1:]]),
        codes=np.concatenate([example_journeys.codes, [
            example_journeys.channels.index(c) for c in ("alpha", "mi", "beta")]]),
        conversions=np.append(example_journeys.conversions, 0),
        value=np.append(example_journeys.value, 0), nulls=np.append(example_journeys.nulls, 0))
    before = Markov(order=2, n_draws=0).fit(example_journeys)
    after = Markov(order=2, n_draws=0).fit(joined)
    assert after.chain_.n_transient == before.chain_.n_transient
    pd.testing.assert_frame_equal(credit(after.attribute()), credit(before.attribute()))


def test_second_order_fit_of_first_order_data_gives_the_same_credit():
    journeys = simulate_journeys(KNOWN_START, KNOWN_TRANSITIONS, 100_000,
                                 np.random.default_rng(11))
    truth = true_removal_effects(KNOWN_START, KNOWN_TRANSITIONS)
    first = Markov(n_draws=0).fit(journeys)
    second = Markov(order=2, n_draws=0).fit(journeys)
    third = Markov(order=3, n_draws=0).fit(journeys)
    share = [credit(m.attribute())["share"].to_numpy() for m in (first, second, third)]
    np.testing.assert_allclose(share[1], share[0], atol=0.01)
    np.testing.assert_allclose(share[2], share[0], atol=0.01)
    np.testing.assert_allclose(effects(second)["removal_effect_conversions"], truth, atol=0.02)
    np.testing.assert_allclose(share[0], truth / truth.sum(), atol=0.01)


def interval_coverage(n_replicates, n_journeys, seed):
    """Share of (replicate, channel) pairs whose 90 % (and 50 %) removal-effect interval covers
    the known chain's removal effect."""
    truth = true_removal_effects(KNOWN_START, KNOWN_TRANSITIONS)
    rng = np.random.default_rng(seed)
    hits = {0.9: [], 0.5: []}
    for _ in range(n_replicates):
        journeys = simulate_journeys(KNOWN_START, KNOWN_TRANSITIONS, n_journeys, rng)
        model = Markov(n_draws=200, rng=rng).fit(journeys)
        draws = model.draws_["removal_effect_conversions"]
        for level, covered in hits.items():
            lower, upper = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
            covered.extend((lower <= truth) & (truth <= upper))
        frame = effects(model)
        assert np.allclose(frame["removal_effect_conversions_lower"],
                           np.quantile(draws, 0.05, axis=0))
    return {level: float(np.mean(h)) for level, h in hits.items()}


def test_interval_coverage_on_a_known_chain():
    coverage = interval_coverage(n_replicates=25, n_journeys=1_000, seed=2024)
    # 75 intervals: 90 % nominal has a binomial spread of about 3.5 points.
    assert 0.8 <= coverage[0.9] <= 0.98
    # Negative control: the narrower interval covers clearly less often.
    assert coverage[0.5] < 0.7


@pytest.mark.slow
def test_interval_coverage_on_a_known_chain_many_replicates():
    # 3,000 intervals (three per replicate, correlated): nominal within about 3 points.
    coverage = interval_coverage(n_replicates=1_000, n_journeys=2_000, seed=7)
    assert 0.87 <= coverage[0.9] <= 0.93
    assert 0.46 <= coverage[0.5] <= 0.54


def test_dirichlet_draws_centre_on_the_fitted_probabilities(example_journeys):
    chain = transition_counts(example_journeys)
    draws = dirichlet_draws(chain, 2_000, rng=3)
    assert (draws > 0).all()
    # Posterior mean (count + 1/d) / (row count + 1), d transitions observed from the row.
    degree = np.bincount(chain.source)[chain.source]
    mean = (chain.count + 1 / degree) / (chain.out_count[chain.source] + 1)
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.005)
    np.testing.assert_allclose(mean, chain.probability(), atol=0.02)


def test_intervals_are_reproducible_and_bracket_the_estimate(example_journeys):
    first = Markov(n_draws=100, rng=5).fit(example_journeys).attribute()
    again = Markov(n_draws=100, rng=np.random.default_rng(5)).fit(example_journeys).attribute()
    pd.testing.assert_frame_equal(first.table, again.table)
    table = credit(first)
    large = list(LARGE_CHANNELS)
    assert (table.loc[large, "conversions_lower"] < table.loc[large, "conversions"]).all()
    assert (table.loc[large, "conversions"] < table.loc[large, "conversions_upper"]).all()
    assert (table.loc[large, "value_lower"] < table.loc[large, "value_upper"]).all()
    assert first.ci_level == 0.9
    wider = credit(Markov(n_draws=100, rng=5, ci_level=0.99).fit(example_journeys).attribute())
    assert (wider["conversions_upper"] >= table["conversions_upper"]).all()


@pytest.mark.parametrize("order", [4, 5, 6])
def test_high_orders_fit(example_journeys, order):
    model = Markov(order=order, collapse_repeats=True, n_draws=0).fit(example_journeys)
    table = model.attribute().table
    np.testing.assert_allclose(table["conversions"].sum(), example_journeys.total_conversions)
    assert model.conversion_probability_ == pytest.approx(
        example_journeys.total_conversions
        / (example_journeys.conversions + example_journeys.nulls).sum(), rel=EXACT)


# -- inspection -----------------------------------------------------------------------------------
def test_transition_table(example_point):
    table = example_point.transition_table()
    assert list(table.columns) == ["from_state", "to_state", "count", "probability"]
    np.testing.assert_allclose(table.groupby("from_state")["probability"].sum(), 1.0)
    assert set(table["to_state"]) >= {"(conversion)", "(null)"}
    assert "(start)" not in set(table["to_state"])
    assert table.query("from_state == '(start)'")["count"].sum() == pytest.approx(88387)


def test_graph_export(example_point, tmp_path):
    nx = pytest.importorskip("networkx")
    graph = example_point.to_networkx()
    table = example_point.transition_table()
    assert graph.number_of_edges() == len(table)
    assert graph.nodes["(start)"]["kind"] == "start"
    row = table.iloc[0]
    assert graph.edges[row.from_state, row.to_state]["probability"] == row.probability
    path = tmp_path / "chain.graphml"
    example_point.write_graphml(path)
    back = nx.read_graphml(path)
    assert back.number_of_edges() == graph.number_of_edges()
    assert back.edges[row.from_state, row.to_state]["count"] == row["count"]


def test_plot_graph(example_journeys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = Markov(n_draws=0).fit(example_journeys)
    ax = model.plot_graph(min_probability=0.05)
    assert ax.get_title().startswith("markov (order 1)")
    table = model.transition_table()
    assert len(ax.patches) == (table["probability"] >= 0.05).sum()
    plt.close(ax.figure)


def test_removal_effects_frame(example_point):
    frame = example_point.removal_effects_
    assert list(frame.columns[:1]) == ["channel"]
    assert {"removal_effect_conversions", "removal_effect_value"} <= set(frame.columns)
    assert frame["removal_effect_conversions"].between(0, 1).all()
    assert frame[["removal_effect_conversions_lower"]].isna().all().all()


def test_inspection_before_fit_raises():
    with pytest.raises(engine.NotFittedError, match="markov"):
        Markov().transition_table()


# -- bad input ------------------------------------------------------------------------------------
def test_no_nulls_is_an_error():
    journeys = engine.Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 2])
    with pytest.raises(engine.MissingDataError, match="non-converting"):
        Markov().fit(journeys)


def test_no_conversions_is_an_error():
    journeys = engine.Journeys.from_lists([["a", "b"], ["b"]], conversions=[0, 0], nulls=[1, 2])
    with pytest.raises(engine.MissingDataError, match="no conversions"):
        Markov().fit(journeys)


def test_one_channel_is_an_error():
    journeys = engine.Journeys.from_lists([["a", "a"], ["a"], ["b"]], conversions=[1, 0, 0],
                                          nulls=[1, 2, 0])
    with pytest.raises(engine.InputError, match="fewer than two channels"):
        Markov().fit(journeys)


@pytest.mark.parametrize("name", ["(start)", "(conversion)", "(null)"])
def test_reserved_state_names_are_rejected(name):
    with pytest.raises(engine.InputError, match="reserved"):
        engine.Journeys.from_lists([["a", name]], conversions=[1], nulls=[1])


def test_empty_journeys_are_rejected():
    with pytest.raises(engine.InputError, match="no touches"):
        engine.Journeys(channels=["a"], offsets=[0, 1, 1], codes=[0], conversions=[1, 0],
                        value=[0, 0], nulls=[0, 1])


@pytest.mark.parametrize("params, message", [
    ({"order": 0}, "order"), ({"order": 7}, "order"), ({"order": 1.5}, "order"),
    ({"order": True}, "order"), ({"collapse_repeats": "yes"}, "collapse_repeats"),
    ({"removal": "touch"}, "removal"), ({"ci_level": 1.0}, "ci_level"),
    ({"n_draws": -1}, "n_draws"), ({"n_draws": 2.5}, "n_draws"), ({"rng": "seed"}, "rng")])
def test_bad_parameters(hand_journeys, params, message):
    with pytest.raises(engine.EngineError, match=message):
        Markov(**params).fit(hand_journeys)
