"""Budget planning: analytic optima, exact bounds and totals, risk, target mode, scenarios,
parsing and stability, all through the response-model protocol."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import brentq

from engine import EngineError
from engine.budget import (Bound, Curves, ResponseModel, optimise, parse_allocation, parse_bounds,
                           resolve_bounds, scenarios, target)

CHANNELS = ("search", "display", "social", "tv")
BETA = np.array([300.0, 100.0, 200.0, 50.0])
SCALE = np.array([1500.0, 500.0, 800.0, 300.0])
CURRENT = np.full(4, 1000.0)


def posterior_beta(n_draws=400, seed=1, shape=10.0):
    """Independent gamma draws of every channel's beta, rescaled so their means are BETA."""
    draws = np.random.default_rng(seed).gamma(shape, 1.0, size=(n_draws, len(BETA)))
    return draws / draws.mean(axis=0) * BETA


def log_optimum(beta, scale, total):
    """argmax sum beta log(1 + x / K) s.t. sum x = total: x = beta / lambda - K."""
    lam = beta.sum() / (total + scale.sum())
    return beta / lam - scale, lam


# --- analytic optima ---------------------------------------------------------------------------

def test_log_curves_reach_the_analytic_optimum():
    model = Curves(CHANNELS, beta=posterior_beta(), scale=SCALE, current=CURRENT)
    total = 6000.0
    expected, lam = log_optimum(BETA, SCALE, total)
    assert np.all(expected > 0)
    result = optimise(model, total, n_resamples=0, rng=0)
    np.testing.assert_allclose(result.allocation, expected, rtol=1e-4)
    np.testing.assert_allclose(result.table["marginal_return"], lam, rtol=1e-4)
    exact = model.marginal_return(result.allocation).mean(axis=0)
    np.testing.assert_allclose(exact, exact[0], rtol=1e-4)
    assert result.converged and result.objective == "mean"
    assert result.outcome == pytest.approx(model.predict(expected[None]).mean(), rel=1e-9)


def test_hill_curves_reach_the_analytic_optimum():
    # beta K / (x + K)^2 = lambda gives x = sqrt(beta K / lambda) - K.
    model = Curves(CHANNELS, beta=posterior_beta(), scale=SCALE, current=CURRENT,
                   saturation="hill")
    total = 3000.0
    root = np.sqrt(BETA * SCALE)
    expected = root * (total + SCALE.sum()) / root.sum() - SCALE
    assert np.all(expected > 0)
    result = optimise(model, total, n_resamples=0, rng=0)
    np.testing.assert_allclose(result.allocation, expected, rtol=1e-4)
    marginal = result.table["marginal_return"].to_numpy()
    np.testing.assert_allclose(marginal, marginal[0], rtol=1e-4)


def test_exponential_curves_reach_the_analytic_optimum():
    # beta / K exp(-x / K) = lambda gives x = K log(beta / (K lambda)).
    beta, scale = np.array([300.0, 100.0, 200.0]), np.array([1500.0, 500.0, 800.0])
    model = Curves(CHANNELS[:3], beta=beta, scale=scale, current=CURRENT[:3],
                   saturation="exponential")
    total = 2500.0
    log_lambda = ((scale * np.log(beta / scale)).sum() - total) / scale.sum()
    expected = scale * (np.log(beta / scale) - log_lambda)
    assert np.all(expected > 0)
    result = optimise(model, total, n_resamples=0, rng=0)
    np.testing.assert_allclose(result.allocation, expected, rtol=1e-4)
    np.testing.assert_allclose(result.table["marginal_return"], np.exp(log_lambda), rtol=1e-4)


def test_a_bounded_channel_sits_at_its_bound_and_the_others_share_the_rest():
    model = Curves(CHANNELS, beta=posterior_beta(), scale=SCALE, current=CURRENT)
    total = 6000.0
    unbounded, _ = log_optimum(BETA, SCALE, total)
    cap = 0.5 * unbounded[0]
    result = optimise(model, total, bounds={"search": (0.0, cap)}, n_resamples=0, rng=0)
    table = result.table.set_index("channel")
    assert result.allocation[0] == cap
    assert table.loc["search", "at_bound"] == "upper"
    rest, lam = log_optimum(BETA[1:], SCALE[1:], total - cap)
    np.testing.assert_allclose(result.allocation[1:], rest, rtol=1e-4)
    np.testing.assert_allclose(table["marginal_return"].iloc[1:], lam, rtol=1e-4)
    assert table.loc["search", "marginal_return"] > 1.5 * lam
    assert (table["at_bound"].iloc[1:] == "").all()


def test_a_channel_pushed_to_zero_sits_at_its_lower_bound():
    # A weak channel whose marginal return at zero (beta / K) is below lambda gets nothing.
    beta, scale = np.array([300.0, 1.0]), np.array([1000.0, 1000.0])
    model = Curves(CHANNELS[:2], beta=beta, scale=scale, current=[500.0, 500.0])
    result = optimise(model, 1000.0, n_resamples=0, rng=0)
    assert result.allocation.tolist() == [1000.0, 0.0]
    assert result.table["at_bound"].tolist() == ["", "lower"]


def test_any_model_that_follows_the_protocol_plugs_in():
    class SquareRoot:
        """outcome = sum a_c sqrt(x_c): the optimum puts x_c in proportion to a_c^2."""
        channels = ("a", "b")
        outcome_name = "orders"

        def current_allocation(self):
            return np.array([50.0, 50.0])

        def predict(self, allocations):
            return (np.sqrt(allocations) @ np.array([1.0, 2.0]))[None, :]

    model = SquareRoot()
    assert isinstance(model, ResponseModel)
    result = optimise(model, 100.0, n_resamples=3, rng=0)
    np.testing.assert_allclose(result.allocation, [20.0, 80.0], rtol=1e-4)
    assert result.outcome_name == "orders"
    assert result.outcome_lower == pytest.approx(result.outcome) == result.outcome_upper


def test_models_that_break_the_protocol_are_refused():
    with pytest.raises(EngineError, match="response-model protocol"):
        optimise(object(), 100.0)

    class Wrong(Curves):
        def predict(self, allocations):
            return super().predict(allocations)[:, :1]

    model = Wrong(CHANNELS, beta=BETA, scale=SCALE, current=CURRENT)
    with pytest.raises(EngineError, match="predict returned shape"):
        optimise(model, 100.0)


# --- bounds and totals --------------------------------------------------------------------------

@st.composite
def bounded_problems(draw):
    n = draw(st.integers(2, 5))
    current = np.array(draw(st.lists(st.floats(0.0, 1e4), min_size=n, max_size=n)))
    lower = np.array(draw(st.lists(st.floats(0.0, 2e3), min_size=n, max_size=n)))
    width = draw(st.lists(st.one_of(st.floats(0.0, 5e3), st.just(np.inf)), min_size=n,
                          max_size=n))
    upper = lower + np.array(width)
    top = upper.sum() if np.isfinite(upper.sum()) else lower.sum() + 1e4
    total = draw(st.floats(lower.sum(), top))
    return current, lower, upper, total


@given(bounded_problems(), st.sampled_from(["log1p", "hill", "exponential"]))
def test_totals_and_bounds_hold_exactly(problem, saturation):
    current, lower, upper, total = problem
    n = len(current)
    beta, scale = BETA[np.arange(n) % 4] + 1.0, SCALE[np.arange(n) % 4]
    model = Curves([f"c{i}" for i in range(n)], beta=beta, scale=scale, current=current,
                   saturation=saturation)
    bounds = {f"c{i}": (lower[i], upper[i]) for i in range(n)}
    x = optimise(model, total, bounds=bounds, n_starts=2, n_resamples=0, rng=0).allocation
    assert np.all(x >= lower) and np.all(x <= upper)
    assert x.sum() == pytest.approx(total, rel=1e-12, abs=1e-9)


def test_multiplier_and_absolute_bounds_hold():
    model = Curves(CHANNELS, beta=BETA, scale=SCALE, current=[1000.0, 2000.0, 500.0, 0.0])
    result = optimise(model, 5000.0, bounds=["search=0.5:1.1", "display=1:", "tv=100:200abs"],
                      n_resamples=0, rng=0)
    table = result.table.set_index("channel")
    assert table.loc["search", ["bound_lower", "bound_upper"]].tolist() == [500.0, 1100.0]
    assert table.loc["display", ["bound_lower", "bound_upper"]].tolist() == [2000.0, np.inf]
    assert table.loc["tv", ["bound_lower", "bound_upper"]].tolist() == [100.0, 200.0]
    x = result.allocation
    assert 500.0 <= x[0] <= 1100.0 and x[1] >= 2000.0 and 100.0 <= x[3] <= 200.0
    assert x.sum() == pytest.approx(5000.0, rel=1e-12)


def test_bounds_that_cannot_hold_the_total_are_an_error():
    model = Curves(CHANNELS, beta=BETA, scale=SCALE, current=CURRENT)
    with pytest.raises(EngineError, match="cannot hold a total of 10000") as error:
        optimise(model, 10000.0, bounds=[f"{c}=0:2" for c in CHANNELS])
    assert "\n" not in str(error.value)
    with pytest.raises(EngineError, match="lower bounds sum to 4000"):
        optimise(model, 1000.0, bounds=[f"{c}=1:" for c in CHANNELS])


def test_bounds_that_leave_one_allocation_return_it():
    model = Curves(CHANNELS, beta=BETA, scale=SCALE, current=CURRENT)
    result = optimise(model, 4000.0, bounds=[f"{c}=1:1" for c in CHANNELS], n_resamples=2)
    assert result.allocation.tolist() == CURRENT.tolist()


# --- risk-aware objectives ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def risky_model():
    """Two channels equal on average; the second's effect is far more uncertain."""
    rng = np.random.default_rng(2)
    risky = rng.lognormal(0.0, 0.5, 500)
    beta = np.column_stack([np.full(500, 100.0), 100.0 * risky / risky.mean()])
    return Curves(["steady", "risky"], beta=beta, scale=[1000.0, 1000.0],
                  current=[1000.0, 1000.0])


@pytest.mark.parametrize("objective, risk", [("mean_sd", 1.0), ("cvar", 0.1), ("cvar", 0.5),
                                             ("quantile", 0.1)])
def test_risk_aware_objectives_move_money_away_from_dispersed_draws(risky_model, objective,
                                                                    risk):
    neutral = optimise(risky_model, 2000.0, n_resamples=0, rng=0)
    np.testing.assert_allclose(neutral.allocation, [1000.0, 1000.0], rtol=1e-4)
    averse = optimise(risky_model, 2000.0, objective=objective, risk=risk, n_resamples=0, rng=0)
    assert averse.allocation[1] < 0.8 * neutral.allocation[1]
    assert averse.objective == objective and averse.risk == risk
    draws = risky_model.predict(np.vstack([averse.allocation, neutral.allocation]))
    if objective == "mean_sd":
        value = draws.mean(axis=0) - risk * draws.std(axis=0)
        assert value[0] > value[1]
        assert averse.objective_value == pytest.approx(value[0])


def test_more_risk_aversion_moves_more_money(risky_model):
    spends = [optimise(risky_model, 2000.0, objective="mean_sd", risk=risk, n_resamples=0,
                       rng=0).allocation[1] for risk in (0.25, 0.5, 1.0)]
    assert spends[0] > spends[1] > spends[2]


def test_bad_objectives_and_risks_are_errors(risky_model):
    for kwargs, message in [({"objective": "median"}, "objective must be one of"),
                            ({"objective": "cvar", "risk": 1.5}, "fraction"),
                            ({"objective": "mean_sd", "risk": -1.0}, ">= 0"),
                            ({"objective": "mean", "risk": 1.0}, "takes no risk"),
                            ({"n_starts": 0}, "n_starts"), ({"rng": True}, "rng")]:
        with pytest.raises(EngineError, match=message):
            optimise(risky_model, 2000.0, **kwargs)


# --- target mode --------------------------------------------------------------------------------

def comonotone_model(n_draws=200, seed=3, baseline=100.0):
    """Draws scale every channel by one common factor: the outcome reached with probability p is
    baseline + m_(p) g(x), maximised by the mean optimum, so the cheapest total is known."""
    factor = np.random.default_rng(seed).lognormal(0.0, 0.2, n_draws)
    model = Curves(CHANNELS, beta=factor[:, None] * BETA, scale=SCALE, current=CURRENT,
                   baseline=baseline)
    return model, factor


def reached(model, allocation, goal):
    return (model.predict(np.asarray(allocation)[None, :])[:, 0] >= goal).mean()


def test_target_finds_the_cheapest_total_and_meets_the_probability():
    model, factor = comonotone_model()
    goal, probability = 700.0, 0.8
    result = target(model, goal, probability=probability, rng=0)
    assert result.achieved_probability >= probability
    assert reached(model, result.allocation, goal) == result.achieved_probability
    assert result.quantile >= goal
    assert result.allocation.sum() == pytest.approx(result.total, rel=1e-12)

    n = len(factor)
    m = np.sort(factor)[n - int(np.ceil(probability * n))]

    def shortfall(total):
        x, _ = log_optimum(BETA, SCALE, total)
        return 100.0 + m * (BETA * np.log1p(x / SCALE)).sum() - goal

    cheapest = brentq(shortfall, SCALE.sum(), 1e6)
    assert result.total == pytest.approx(cheapest, rel=2e-4)
    np.testing.assert_allclose(result.allocation, log_optimum(BETA, SCALE, result.total)[0],
                               rtol=1e-3)

    smaller = optimise(model, result.total * (1 - 1e-3), objective="quantile",
                       risk=1 - probability, n_resamples=0, rng=0)
    assert reached(model, smaller.allocation, goal) < probability


def test_target_with_independent_draws_and_bounds():
    model = Curves(CHANNELS, beta=posterior_beta(), scale=SCALE, current=CURRENT, baseline=200.0)
    result = target(model, 900.0, probability=0.9, bounds=["tv=0:1.2", "search=:3"], rng=0)
    assert reached(model, result.allocation, 900.0) >= 0.9
    assert result.allocation[3] <= 1200.0 and result.allocation[0] <= 3000.0
    assert result.table.columns[:3].tolist() == ["channel", "current", "optimal"]
    assert result.plan.objective == "quantile"


def test_target_met_by_the_lower_bounds_costs_their_sum():
    model, _ = comonotone_model()
    result = target(model, 150.0, probability=0.8, bounds=[f"{c}=0.5:2" for c in CHANNELS])
    assert result.total == pytest.approx(2000.0)
    assert result.allocation.tolist() == [500.0] * 4


def test_an_unreachable_target_is_an_error_that_gives_the_best_value():
    model = Curves(CHANNELS, beta=BETA, scale=SCALE, current=CURRENT, saturation="hill")
    # Hill curves saturate: the outcome never exceeds sum(beta) = 650.
    with pytest.raises(EngineError, match=r"target 700 is out of reach with probability 0.8: "
                                          r"the best plan found .* reaches 6[0-4]\d") as error:
        target(model, 700.0, probability=0.8)
    assert "\n" not in str(error.value)
    with pytest.raises(EngineError, match=r"total 8000\)"):
        target(model, 700.0, bounds=[f"{c}=0:2" for c in CHANNELS])


# --- scenarios ----------------------------------------------------------------------------------

def test_scenarios_compare_each_plan_with_the_current_one_draw_by_draw():
    model = Curves(CHANNELS, beta=posterior_beta(200), scale=SCALE, current=CURRENT,
                   outcome_name="orders")
    table = scenarios(model, {"shift": "search=+20%,display=-10%", "tv": {"tv": 2500.0},
                              "same": CURRENT}, ci_level=0.8)
    assert table["scenario"].tolist() == ["current", "shift", "tv", "same"]
    assert table.attrs == {"outcome_name": "orders", "ci_level": 0.8}
    current, shift = table.iloc[0], table.iloc[1]
    assert current[["difference", "difference_lower", "difference_upper"]].tolist() == [0, 0, 0]
    assert np.isnan(current["probability_better"]) and np.isnan(current["roi"])
    assert shift["spend_search"] == 1.2 * 1000.0 and shift["spend_display"] == 0.9 * 1000.0
    assert shift["spend"] == pytest.approx(4100.0)

    draws = model.predict(np.array([CURRENT, [1200.0, 900.0, 1000.0, 1000.0]]))
    paired = draws[:, 1] - draws[:, 0]
    low, high = np.quantile(paired, [0.1, 0.9])
    assert (shift["difference"], shift["difference_lower"], shift["difference_upper"]) == \
        pytest.approx((paired.mean(), low, high))
    # Unpaired, the interval would be as wide as the outcome's own.
    assert high - low < 0.5 * (shift["outcome_upper"] - shift["outcome_lower"])
    assert shift["probability_better"] == (paired > 0).mean()
    assert shift["roi"] == pytest.approx(paired.mean() / 100.0)
    assert table.iloc[2]["spend_tv"] == 2500.0
    assert table.iloc[3]["difference"] == 0 and np.isnan(table.iloc[3]["roi"])


def test_scenarios_from_spec_strings_and_bad_names():
    model = Curves(CHANNELS, beta=BETA, scale=SCALE, current=CURRENT)
    table = scenarios(model, ["search=+20%", "tv=50k"])
    assert table["scenario"].tolist() == ["current", "search=+20%", "tv=50k"]
    assert table.iloc[2]["spend_tv"] == 50000.0
    with pytest.raises(EngineError, match="reserved"):
        scenarios(model, {"current": "tv=0"})
    with pytest.raises(EngineError, match="'radio'"):
        scenarios(model, {"x": {"radio": 5.0}})
    with pytest.raises(EngineError, match="ci_level"):
        scenarios(model, ["tv=0"], ci_level=90)


# --- parsing ------------------------------------------------------------------------------------

def test_parse_allocation_forms():
    current = np.array([1000.0, 2000.0, 0.0, 400.0])
    x = parse_allocation(" search = +20% , display=-10%,social=1.5M, tv=-100", current, CHANNELS)
    assert x.tolist() == [1200.0, 1800.0, 1.5e6, 300.0]
    assert parse_allocation("tv=5e3", current, CHANNELS).tolist() == [1000.0, 2000.0, 0.0,
                                                                       5000.0]
    assert parse_allocation("tv=+2k", current, CHANNELS)[3] == 2400.0


@pytest.mark.parametrize("spec, token", [
    ("radio=+20%", "'radio'"), ("search+20%", "'search+20%'"), ("search=", "'search='"),
    ("search=abc", "'search=abc'"), ("search=20%", "'search=20%'"),
    ("search=+x%", "'search=+x%'"), ("search=-150%", "'search=-150%'"),
    ("tv=-1e9", "'tv=-1e9'"), ("tv=inf", "'tv=inf'"), ("search=1,search=2", "'search'"),
    ("=5", "'=5'"), ("", "names no channel")])
def test_parse_allocation_errors_are_one_line_and_name_the_token(spec, token):
    with pytest.raises(EngineError) as error:
        parse_allocation(spec, CURRENT, CHANNELS)
    message = str(error.value)
    assert token in message and "\n" not in message


def test_parse_bounds_reads_multipliers_and_amounts():
    bounds = parse_bounds(["search=0.5:2", "tv=0:100kabs, display=:1.5", "social=1:inf"])
    assert bounds == {"search": Bound(0.5, 2.0, relative=True),
                      "tv": Bound(0.0, 1e5, relative=False),
                      "display": Bound(0.0, 1.5, relative=True),
                      "social": Bound(1.0, np.inf, relative=True)}
    lower, upper = resolve_bounds(bounds, np.array([100.0, 0.0, 300.0, 400.0]), CHANNELS)
    assert lower.tolist() == [50.0, 0.0, 300.0, 0.0]
    assert upper.tolist() == [200.0, 0.0, np.inf, 1e5]


@pytest.mark.parametrize("spec, token", [
    ("search=2:1", "'search=2:1'"), ("search=1", "'search=1'"), ("search=a:b", "'search=a:b'"),
    ("search=-1:2", "'search=-1:2'"), ("search=1:2:3", "'search=1:2:3'"),
    ("search=0:1,search=0:2", "'search'")])
def test_parse_bounds_errors_are_one_line_and_name_the_token(spec, token):
    with pytest.raises(EngineError) as error:
        parse_bounds(spec)
    assert token in str(error.value) and "\n" not in str(error.value)


def test_bounds_on_unknown_channels_are_errors():
    with pytest.raises(EngineError, match="unknown channel 'radio'"):
        parse_bounds("radio=0:1", channels=CHANNELS)
    with pytest.raises(EngineError, match="unknown channel 'radio'"):
        resolve_bounds({"radio": (0, 1)}, CURRENT, CHANNELS)


# --- stability ----------------------------------------------------------------------------------

def test_stability_is_near_zero_when_all_draws_agree():
    model = Curves(CHANNELS, beta=np.tile(BETA, (50, 1)), scale=SCALE, current=CURRENT)
    result = optimise(model, 6000.0, n_resamples=5, rng=0)
    table = result.table
    assert result.resamples.shape == (5, 4)
    assert (table["optimal_sd"] <= 1e-6 * 6000.0).all()
    np.testing.assert_allclose(table["optimal_q05"], table["optimal"], rtol=1e-6)
    np.testing.assert_allclose(table["optimal_q95"], table["optimal"], rtol=1e-6)


def test_stability_reflects_posterior_spread():
    model = Curves(CHANNELS, beta=posterior_beta(100, shape=4.0), scale=SCALE, current=CURRENT)
    result = optimise(model, 6000.0, n_resamples=10, rng=0)
    table = result.table
    assert (table["optimal_sd"] > 1.0).all()
    np.testing.assert_allclose(table["optimal_sd"], result.resamples.std(axis=0))
    assert (table["optimal_q05"] < table["optimal_q95"]).all()
    assert (table["optimal_q05"] >= result.resamples.min(axis=0)).all()
    np.testing.assert_allclose(result.resamples.sum(axis=1), 6000.0, rtol=1e-12)
    skipped = optimise(model, 6000.0, n_resamples=0, rng=0).table
    assert skipped["optimal_sd"].isna().all()


def test_results_summarise_the_plan_and_repeat_with_the_same_rng():
    model = Curves(CHANNELS, beta=posterior_beta(200), scale=SCALE, current=CURRENT)
    first = optimise(model, 4000.0, n_resamples=4, rng=7)
    again = optimise(model, 4000.0, n_resamples=4, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(first.resamples, again.resamples)
    assert first.table.columns.tolist() == [
        "channel", "current", "optimal", "change", "bound_lower", "bound_upper", "at_bound",
        "marginal_return", "optimal_sd", "optimal_q05", "optimal_q95"]
    assert first.outcome_lower < first.outcome < first.outcome_upper
    paired = first.draws - model.predict(CURRENT[None])[:, 0]
    assert first.uplift == pytest.approx(paired.mean())
    assert first.probability_better == (paired > 0).mean()
    assert first.uplift > 0 and first.n_starts == 5 and first.n_evaluations > 0


class _Opaque:
    """The same response model without ``response``: the optimiser must then predict every
    moved allocation in full."""

    def __init__(self, model):
        self.model, self.channels = model, model.channels

    def current_allocation(self):
        return self.model.current_allocation()

    def predict(self, allocations):
        return self.model.predict(allocations)


def test_the_additive_shortcut_gives_the_same_gradients_and_optimum():
    from engine.budget.optimiser import _Problem, objective_function

    expected_value = objective_function("mean")

    model = Curves(CHANNELS, beta=posterior_beta(), scale=SCALE, current=CURRENT,
                   saturation=["log1p", "hill", "exponential", "log1p"], slope=1.5)
    opaque = _Opaque(model)
    total = 5000.0
    lower, upper = np.zeros(4), np.full(4, np.inf)
    rows = np.random.default_rng(3).integers(0, 400, 400)
    for subset in (None, rows):
        fast = _Problem(model, total, lower, upper, expected_value, subset)
        slow = _Problem(opaque, total, lower, upper, expected_value, subset)
        for x in ([1000.0, 2000.0, 1500.0, 500.0], [0.0, 2500.0, 2500.0, 0.0]):
            value, gradient = fast.value_and_gradient(np.array(x))
            full_value, full_gradient = slow.value_and_gradient(np.array(x))
            np.testing.assert_allclose(value, full_value, rtol=1e-12)
            np.testing.assert_allclose(gradient, full_gradient, rtol=1e-6)
        assert fast.n_evaluations == slow.n_evaluations  # both count 2n + 1 per gradient
    ours = optimise(model, total, n_resamples=3, rng=0)
    theirs = optimise(opaque, total, n_resamples=3, rng=0)
    np.testing.assert_allclose(ours.allocation, theirs.allocation, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.table["optimal_sd"], theirs.table["optimal_sd"], rtol=1e-5,
                               atol=1e-5)
