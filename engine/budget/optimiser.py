"""Budget optimisation over posterior draws: best allocation of a total, and the cheapest plan
that reaches a target.

Problem
    Maximise ``objective(Y(x))`` over allocations ``x`` with ``sum(x) = total`` and
    ``lower <= x <= upper``, where ``Y(x)`` are the model's outcome draws for ``x``. Objectives:

    - ``"mean"``: the expected outcome ``mean_d Y_d``;
    - ``"mean_sd"``: ``mean - risk * sd`` over the draws (population sd), which penalises plans
      whose outcome is uncertain;
    - ``"cvar"``: the mean of the worst ``risk`` fraction of draws (conditional value at risk;
      with ``m = risk * n_draws`` not whole, the next draw counts with weight ``m - floor(m)``);
    - ``"quantile"``: the largest ``q`` with ``P(Y >= q) >= 1 - risk``, counted over the draws
      (the ``ceil((1 - risk) n)``-th largest draw).

    At an optimum of ``"mean"``, the marginal return ``dE[Y]/dx_c`` is equal across the channels
    off their bounds (the Lagrange multiplier of the total), lower on channels at their lower
    bound and higher on channels at their upper bound.

Method
    :func:`scipy.optimize.minimize` with ``method="SLSQP"`` over the shares ``w = x / total``
    (bounds ``lower / total``, ``upper / total``, equality ``sum(w) = 1``), with the objective
    shifted and scaled so that its gradient at the first start is of order 1: SLSQP's tolerances
    are absolute. Gradients are central finite differences (forward at zero spend) of the
    objective, all ``2 n_channels + 1`` allocations predicted in one ``predict`` call. Several
    starts (the current plan scaled to the total, an equal split, random points of the simplex
    from ``rng``), each projected onto the feasible set, and the best end point is kept. The
    result is projected once more (Euclidean projection onto the bounded simplex, then the
    rounding remainder put on the channel with the most room), so the bounds hold exactly and
    the total to rounding, which is checked.

Stability
    The optimum is recomputed on ``n_resamples`` bootstrap resamples of the posterior draws
    (draws drawn with replacement, the same objective, started from the full optimum); the
    spread of each channel's optimal spend across resamples (sd and the 5 % and 95 %
    quantiles) says how much the recommendation rests on posterior noise.

Target
    The cheapest total whose best allocation reaches ``target`` with probability at least
    ``probability`` (counted over the draws). At each total tried, the allocation maximises the
    outcome reached with that probability (the ``"quantile"`` objective); the total is found by
    a bracketing root search on ``reached - target`` (Illinois regula falsi, with a bisection
    step whenever two steps did not halve the bracket, geometric while the bracket spans more
    than a factor 4). The bracket starts at the sum of the lower bounds and ``max_total``; the
    first total gets ``n_starts`` starts, later ones start from the allocations at the
    bracket's ends. With increasing response curves the best reachable quantile grows with the
    total, which is what makes a bracketing search valid.

Smoothing of the quantile
    One order statistic has a gradient that jumps whenever two draws swap ranks, which stalls
    SLSQP. The ``"quantile"`` objective is therefore searched through its Harrell-Davis version
    (a smooth weighting of all order statistics, :func:`harrell_davis_weights`), and every end
    point is judged, and reported, by the exact order statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import pandas as pd

from engine.budget._common import check_ci_level, check_rng, interval
from engine.budget.parse import resolve_bounds
from engine.budget.protocol import check_model, predict_draws, response_draws
from engine.errors import EngineError

OBJECTIVES = ("mean", "mean_sd", "cvar", "quantile")
DEFAULT_RISK = {"mean": None, "mean_sd": 1.0, "cvar": 0.1, "quantile": 0.1}
# Central differences: relative step of a channel's spend, plus a floor (a share of the
# total per channel, at least of one unit) so that channels at zero spend get a usable step.
_STEP = 1e-5
_STEP_FLOOR = 1e-2
# Slack of ceil() when a probability times n_draws should be whole (0.07 * 100 = 7.000...01).
_CEIL_SLACK = 1e-9
# SLSQP works on shares scaled to gradients of order 1, so these are relative tolerances.
_FTOL = 1e-12
_MAX_ITERATIONS = 500
_PROJECTION_ITERATIONS = 200
_REMAINDER_STEPS = 16
_TOTAL_TOLERANCE = 1e-9
# Target mode: a secant step is kept this share of the bracket away from its ends.
_TARGET_MARGIN = 1e-3
_MAX_TARGET_STEPS = 200


def _check_risk(objective: str, risk):
    if objective not in OBJECTIVES:
        raise EngineError(f"budget: objective must be one of {', '.join(OBJECTIVES)}, not "
                          f"{objective!r}")
    if risk is None:
        return DEFAULT_RISK[objective]
    if objective == "mean":
        raise EngineError("budget: objective 'mean' takes no risk")
    ok = isinstance(risk, Real) and not isinstance(risk, bool) and math.isfinite(risk)
    if objective == "mean_sd" and not (ok and risk >= 0):
        raise EngineError(f"budget: risk of 'mean_sd' must be a number >= 0, not {risk!r}")
    if objective == "cvar" and not (ok and 0 < risk <= 1):
        raise EngineError(f"budget: risk of 'cvar' must be a fraction in (0, 1], not {risk!r}")
    if objective == "quantile" and not (ok and 0 < risk < 1):
        raise EngineError(f"budget: risk of 'quantile' must be a fraction in (0, 1), not "
                          f"{risk!r}")
    return float(risk)


def _quantile_reducer(probability: float):
    """The largest ``q`` with a share ``>= probability`` of draws at or above it, per column."""
    def reduce(draws):
        n = len(draws)
        index = n - max(1, math.ceil(probability * n - _CEIL_SLACK))
        return np.partition(draws, index, axis=0)[index]
    return reduce


def harrell_davis_weights(n: int, level: float) -> np.ndarray:
    """Weights of the sorted draws in the Harrell-Davis estimate of the ``level`` quantile.

    ``w_i = I_{i/n}(a, b) - I_{(i-1)/n}(a, b)`` with ``a = level (n + 1)``,
    ``b = (1 - level)(n + 1)`` and ``I`` the regularised incomplete beta function (Harrell and
    Davis 1982, *Biometrika* 69(3), 635-640). A weighted sum of order statistics with smooth
    weights: unlike a single order statistic, its gradient barely jumps where two draws swap
    ranks, which is what a gradient-based optimiser needs.

    Examples
    --------
    >>> w = harrell_davis_weights(5, 0.5)
    >>> bool(np.isclose(w.sum(), 1.0)), bool(np.allclose(w, w[::-1]))
    (True, True)
    """
    from scipy.special import betainc

    a, b = level * (n + 1), (1.0 - level) * (n + 1)
    return np.diff(betainc(a, b, np.arange(n + 1) / n))


def _smooth_quantile_reducer(probability: float):
    """Harrell-Davis estimate of the ``1 - probability`` quantile, per column."""
    weights = {}

    def reduce(draws):
        n = len(draws)
        if n not in weights:
            weights[n] = harrell_davis_weights(n, 1.0 - probability)
        return weights[n] @ np.sort(draws, axis=0)
    return reduce


def objective_function(objective: str = "mean", risk=None):
    """The objective as a function from draws ``(n_draws, k)`` to values ``(k,)``.

    Parameters
    ----------
    objective : {"mean", "mean_sd", "cvar", "quantile"}
    risk : float, optional
        ``lambda`` of ``"mean_sd"`` (default 1), the tail fraction of ``"cvar"`` (default 0.1)
        or of ``"quantile"`` (default 0.1: the outcome reached with probability 0.9).

    Examples
    --------
    >>> draws = np.array([[1.0], [2.0], [3.0], [10.0]])
    >>> [float(objective_function(name, risk)(draws)[0]) for name, risk in
    ...  [("mean", None), ("cvar", 0.5), ("cvar", 0.3), ("quantile", 0.25)]]
    [4.0, 1.5, 1.1666666666666667, 2.0]
    """
    risk = _check_risk(objective, risk)
    if objective == "mean":
        return lambda draws: draws.mean(axis=0)
    if objective == "mean_sd":
        return lambda draws: draws.mean(axis=0) - risk * draws.std(axis=0)
    if objective == "quantile":
        return _quantile_reducer(1.0 - risk)

    def cvar(draws):
        n = len(draws)
        tail = risk * n
        whole = min(math.floor(tail + _CEIL_SLACK), n)
        part = max(tail - whole, 0.0)
        if whole == n:
            return draws.mean(axis=0)
        low = np.partition(draws, whole, axis=0)
        return (low[:whole].sum(axis=0) + part * low[whole]) / tail
    return cvar


def project(allocation, total: float, lower, upper) -> np.ndarray:
    """Closest allocation (Euclidean) with ``sum = total`` and ``lower <= x <= upper``.

    Spend within ``1e-9 * total`` of a bound is put on the bound, and the bounds hold exactly;
    the rounding remainder of the total goes to the channel off its bounds with the most room,
    so the sum matches ``total`` to rounding.

    Parameters
    ----------
    allocation, lower, upper : array, shape (n_channels,)
    total : float
        Must lie within ``[sum(lower), sum(upper)]``.

    Returns
    -------
    ndarray, shape (n_channels,)

    Examples
    --------
    >>> upper = np.array([np.inf, np.inf, 0.5])
    >>> project(np.array([5.0, 1.0, 0.0]), 3.0, np.zeros(3), upper).tolist()
    [3.0, 0.0, 0.0]
    >>> upper = np.array([4.0, np.inf, 0.5])
    >>> project(np.array([5.0, 1.0, 0.0]), 9.0, np.zeros(3), upper).tolist()
    [4.0, 4.5, 0.5]
    """
    y = np.asarray(allocation, dtype=float)
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    # sum(clip(y - shift)) falls from >= total at `low` to sum(lower) <= total at `high`.
    low, high = float(np.min(y - lower)) - total, float(np.max(y - lower))
    for _ in range(_PROJECTION_ITERATIONS):
        middle = 0.5 * (low + high)
        if not low < middle < high:
            break
        if np.clip(y - middle, lower, upper).sum() >= total:
            low = middle
        else:
            high = middle
    x = np.clip(y - low, lower, upper)
    # The bisection finds which channels sit on a bound; the shift of the others is then exact.
    free = (y - low > lower) & (y - low < upper)
    if free.any():
        shift = (y[free].sum() - (total - x[~free].sum())) / free.sum()
        x[free] = np.clip(y[free] - shift, lower[free], upper[free])
    # An optimiser stops a hair inside an active bound: put it on the bound.
    snap = _TOTAL_TOLERANCE * max(total, 1.0)
    x = np.where(x < lower + snap, lower, np.where(x > upper - snap, upper, x))
    inside = (x > lower) & (x < upper)
    for _ in range(_REMAINDER_STEPS):
        remainder = total - x.sum()
        if remainder == 0:
            break
        room = upper - x if remainder > 0 else x - lower
        j = int(np.argmax(np.where(inside, room, -1.0) if inside.any() else room))
        moved = x[j] + remainder
        if moved == x[j]:
            # The remainder is below one ulp of x[j], but the sum may still move by one.
            moved = np.nextafter(x[j], np.inf if remainder > 0 else -np.inf)
        x[j] = min(max(moved, lower[j]), upper[j])
    return x


class _Problem:
    """The objective of one total over a set of posterior draws, with its gradient.

    ``reduce`` is the objective; ``smooth`` (default ``reduce``) the version the gradient-based
    search follows.
    """

    def __init__(self, model, total: float, lower, upper, reduce, rows=None, smooth=None):
        self.model, self.total, self.lower, self.upper = model, total, lower, upper
        self.reduce, self.smooth, self.rows = reduce, smooth or reduce, rows
        self.n_evaluations = 0

    def draws(self, allocations) -> np.ndarray:
        draws = predict_draws(self.model, allocations)
        self.n_evaluations += len(allocations)
        return draws if self.rows is None else draws[self.rows]

    def values(self, allocations) -> np.ndarray:
        return self.reduce(self.draws(allocations))

    def value_and_gradient(self, x, reduce=None) -> tuple[float, np.ndarray]:
        """Objective at ``x`` and its central-difference gradient (forward at zero spend)."""
        n = len(x)
        up = _STEP * (x + _STEP_FLOOR * max(self.total, 1.0) / n)
        down = np.minimum(up, x)
        if hasattr(self.model, "response"):
            # Additive in channels: moving channel c changes only its own part, so the 2n
            # moved points come from one call for all channels at x, x + up and x - down.
            outcome = self.draws(x[None])  # counts one evaluation; the 2n others below
            parts = response_draws(self.model, np.vstack([x, x + up, x - down]))
            if self.rows is not None:
                parts = parts[self.rows]
            self.n_evaluations += 2 * n
            draws = np.hstack([outcome, outcome + parts[:, 1] - parts[:, 0],
                               outcome + parts[:, 2] - parts[:, 0]])
        else:
            draws = self.draws(np.vstack([x, x + np.diag(up), x - np.diag(down)]))
        values = (reduce or self.smooth)(draws)
        return float(values[0]), (values[1:n + 1] - values[n + 1:]) / (up + down)


@dataclass
class _Solution:
    allocation: np.ndarray
    value: float
    converged: bool
    n_converged: int
    n_starts: int
    message: str


def _solve(problem: _Problem, starts: list) -> _Solution:
    """Best SLSQP end point over the starts (each projected onto the feasible set first)."""
    from scipy.optimize import minimize

    total, lower, upper = problem.total, problem.lower, problem.upper
    starts = [project(s, total, lower, upper) for s in starts]
    slack = _TOTAL_TOLERANCE * max(total, 1.0)
    if len(lower) == 1 or total <= np.sum(lower) + slack or total >= np.sum(upper) - slack:
        x = project(starts[0], total, lower, upper)
        return _Solution(x, float(problem.values(x[None])[0]), True, 0, 0,
                         "the bounds leave a single allocation")
    reference, gradient = problem.value_and_gradient(starts[0])
    scale = total * float(np.max(np.abs(gradient)))
    if not (np.isfinite(scale) and scale > 0):
        scale = max(abs(reference), 1.0)
    cache = {}

    def evaluate(w):
        key = w.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = problem.value_and_gradient(total * np.clip(w, 0.0, None))
        return cache[key]

    share_bounds = list(zip(lower / total, np.minimum(upper / total, 1.0)))
    constraint = {"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}
    best, n_converged = None, 0
    for start in starts:
        result = minimize(lambda w: -(evaluate(w)[0] - reference) / scale, start / total,
                          jac=lambda w: -total * evaluate(w)[1] / scale, method="SLSQP",
                          bounds=share_bounds, constraints=[constraint],
                          options={"ftol": _FTOL, "maxiter": _MAX_ITERATIONS})
        n_converged += bool(result.success)
        # SLSQP follows `smooth`; the end point is judged by the objective itself, and a start
        # that SLSQP could not improve on is kept.
        candidates = np.vstack([project(total * result.x, total, lower, upper), start])
        for x, value in zip(candidates, problem.values(candidates)):
            if best is None or value > best.value:
                best = _Solution(x, float(value), bool(result.success), 0, len(starts),
                                 str(result.message))
    best.n_converged = n_converged
    return best


def _starts(current, total, n_channels, n_starts, rng, extra=()) -> list:
    """``extra`` starts, then the current plan scaled to the total, an equal split, then random
    points of the simplex, ``n_starts`` besides ``extra`` in all."""
    fixed = [current * (total / current.sum())] if current.sum() > 0 else []
    fixed.append(np.full(n_channels, total / n_channels))
    chosen = fixed[:n_starts]
    n_random = n_starts - len(chosen)
    if n_random > 0:
        chosen += list(total * rng.dirichlet(np.ones(n_channels), size=n_random))
    return [*extra, *chosen]


def _check_total(total, lower, upper) -> float:
    if not isinstance(total, Real) or isinstance(total, bool) or not math.isfinite(total) \
            or total < 0:
        raise EngineError(f"budget: total must be a finite non-negative number, not {total!r}")
    total = float(total)
    slack = _TOTAL_TOLERANCE * max(total, 1.0)
    if lower.sum() > total + slack or upper.sum() < total - slack:
        raise EngineError(f"budget: the bounds cannot hold a total of {total:g}: the lower "
                          f"bounds sum to {lower.sum():g} and the upper bounds to "
                          f"{upper.sum():g}")
    return total


def _check_feasible(x, total, lower, upper) -> None:
    if not (np.all(x >= lower) and np.all(x <= upper)
            and abs(x.sum() - total) <= _TOTAL_TOLERANCE * max(total, 1.0)):
        raise AssertionError(f"budget: the allocation {x.tolist()} breaks its bounds or its "
                             f"total {total!r}")


@dataclass(frozen=True, eq=False)
class OptimiseResult:
    """An optimised allocation and what it is expected to bring.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per channel: ``channel``, ``current``, ``optimal``, ``change``
        (``optimal - current``), ``bound_lower``, ``bound_upper``, ``at_bound`` (``"lower"``,
        ``"upper"`` or ``""``), ``marginal_return`` (``dE[outcome]/dx`` at the optimum, central
        differences), and the stability columns ``optimal_sd``, ``optimal_q05``, ``optimal_q95``
        (spread of the optimal spend across bootstrap resamples of the draws; NaN when
        ``n_resamples=0``).
    allocation : ndarray, shape (n_channels,)
        The optimal spend per channel (the ``optimal`` column).
    total : float
    objective : str
    risk : float or None
    objective_value : float
        The objective at the optimum.
    outcome, outcome_lower, outcome_upper : float
        Mean and ``ci_level`` interval of the outcome at the optimum.
    current_outcome : float
        Mean outcome of the current plan (whose total may differ from ``total``).
    uplift, uplift_lower, uplift_upper : float
        Outcome at the optimum minus the current plan's, per draw (paired), summarised.
    probability_better : float
        Share of draws in which the optimum beats the current plan.
    converged : bool
        Whether SLSQP reported success from the start that gave the best allocation.
    n_converged, n_starts : int
        Starts that reported success, and starts run.
    message : str
        SLSQP's message for the best start.
    n_evaluations : int
        Allocations predicted in all (optimisation, resamples and summaries).
    ci_level : float
    outcome_name : str
    draws : ndarray, shape (n_draws,)
        Outcome draws at the optimum.
    resamples : ndarray, shape (n_resamples, n_channels)
        Optimal allocation of every bootstrap resample.
    """

    table: pd.DataFrame
    allocation: np.ndarray
    total: float
    objective: str
    risk: float | None
    objective_value: float
    outcome: float
    outcome_lower: float
    outcome_upper: float
    current_outcome: float
    uplift: float
    uplift_lower: float
    uplift_upper: float
    probability_better: float
    converged: bool
    n_converged: int
    n_starts: int
    message: str
    n_evaluations: int
    ci_level: float
    outcome_name: str
    draws: np.ndarray = field(repr=False)
    resamples: np.ndarray = field(repr=False)


def _bounds_and_checks(model, bounds, ci_level, rng, n_starts, n_resamples):
    channels, current = check_model(model)
    lower, upper = resolve_bounds(bounds, current, channels)
    for name, value, least in (("n_starts", n_starts, 1), ("n_resamples", n_resamples, 0)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < least:
            raise EngineError(f"budget: {name} must be an integer >= {least}, not {value!r}")
    return channels, current, lower, upper, check_ci_level(ci_level), check_rng(rng)


def _result(model, problem: _Problem, solution: _Solution, channels, current, objective, risk,
            ci_level, n_resamples, rng) -> OptimiseResult:
    """Summaries, marginal returns and stability of an optimal allocation."""
    x, total, lower, upper = solution.allocation, problem.total, problem.lower, problem.upper
    _check_feasible(x, total, lower, upper)
    draws = problem.draws(np.vstack([x, current]))
    _, marginal = problem.value_and_gradient(x, reduce=lambda d: d.mean(axis=0))

    n_draws = len(draws)
    resamples = np.empty((n_resamples, len(x)))
    for b in range(n_resamples):
        rows = rng.integers(0, n_draws, size=n_draws)
        sub = _Problem(model, total, lower, upper, problem.reduce, rows, problem.smooth)
        resamples[b] = _solve(sub, [x]).allocation
        problem.n_evaluations += sub.n_evaluations
    if n_resamples:
        spread = (resamples.std(axis=0), *np.quantile(resamples, [0.05, 0.95], axis=0))
    else:
        spread = (np.full(len(x), np.nan),) * 3

    slack = _TOTAL_TOLERANCE * max(total, 1.0)
    at_bound = np.where(x <= lower + slack, "lower", np.where(x >= upper - slack, "upper", ""))
    table = pd.DataFrame({"channel": list(channels), "current": current, "optimal": x,
                          "change": x - current, "bound_lower": lower, "bound_upper": upper,
                          "at_bound": at_bound, "marginal_return": marginal,
                          "optimal_sd": spread[0], "optimal_q05": spread[1],
                          "optimal_q95": spread[2]})
    uplift = draws[:, 0] - draws[:, 1]
    outcome_lower, outcome_upper = interval(draws[:, 0], ci_level)
    uplift_lower, uplift_upper = interval(uplift, ci_level)
    return OptimiseResult(
        table=table, allocation=x.copy(), total=total, objective=objective, risk=risk,
        objective_value=solution.value, outcome=float(draws[:, 0].mean()),
        outcome_lower=float(outcome_lower), outcome_upper=float(outcome_upper),
        current_outcome=float(draws[:, 1].mean()), uplift=float(uplift.mean()),
        uplift_lower=float(uplift_lower), uplift_upper=float(uplift_upper),
        probability_better=float((uplift > 0).mean()), converged=solution.converged,
        n_converged=solution.n_converged, n_starts=solution.n_starts, message=solution.message,
        n_evaluations=problem.n_evaluations, ci_level=ci_level,
        outcome_name=getattr(model, "outcome_name", "outcome"), draws=draws[:, 0].copy(),
        resamples=resamples)


def optimise(model, total, bounds=None, objective: str = "mean", risk=None, *,
             n_starts: int = 5, n_resamples: int = 20, ci_level: float = 0.9,
             rng=None) -> OptimiseResult:
    """Allocation of ``total`` that maximises the objective over the posterior draws.

    Parameters
    ----------
    model : ResponseModel
    total : float
        Spend to allocate over the planning horizon.
    bounds : None, str, sequence of str, or mapping, optional
        Per-channel bounds, read by :func:`resolve_bounds`: spec strings such as
        ``"search=0.5:2"`` are multipliers of the current spend (``"tv=0:1e5abs"`` amounts); a
        mapping takes :class:`Bound` objects or ``(lower, upper)`` amounts. Default: ``[0, inf)``.
    objective : {"mean", "mean_sd", "cvar", "quantile"}, default "mean"
        See the module docstring.
    risk : float, optional
        ``lambda`` of ``"mean_sd"`` (default 1.0); tail fraction of ``"cvar"`` and
        ``"quantile"`` (default 0.1).
    n_starts : int, default 5
        Optimiser starts: the current plan scaled to the total, an equal split, then random.
    n_resamples : int, default 20
        Bootstrap resamples of the draws for the stability columns (0 skips them).
    ci_level : float, default 0.9
    rng : None, int or numpy.random.Generator
        Seed of the random starts and the resamples.

    Returns
    -------
    OptimiseResult

    Raises
    ------
    EngineError
        When the bounds cannot hold the total, or on a bad argument.

    Examples
    --------
    Log curves ``beta_c log(1 + x_c / K_c)`` have the optimum ``x_c = beta_c / lambda - K_c``
    with ``lambda = sum(beta) / (total + sum(K))``: here ``lambda = 0.1`` and ``x = (1500,
    500)``.

    >>> from engine.budget import Curves
    >>> model = Curves(["search", "display"], beta=[300.0, 100.0], scale=[1500.0, 500.0],
    ...                current=[1000.0, 1000.0])
    >>> result = optimise(model, 2000.0, n_resamples=0)
    >>> result.table[["channel", "optimal", "marginal_return"]].round(4)
       channel  optimal  marginal_return
    0   search   1500.0              0.1
    1  display    500.0              0.1
    >>> optimise(model, 2000.0, bounds="display=0:0.25").allocation.tolist()
    [1750.0, 250.0]
    """
    channels, current, lower, upper, ci_level, rng = _bounds_and_checks(
        model, bounds, ci_level, rng, n_starts, n_resamples)
    risk = _check_risk(objective, risk)
    total = _check_total(total, lower, upper)
    smooth = _smooth_quantile_reducer(1.0 - risk) if objective == "quantile" else None
    problem = _Problem(model, total, lower, upper, objective_function(objective, risk),
                       smooth=smooth)
    solution = _solve(problem, _starts(current, total, len(channels), n_starts, rng))
    return _result(model, problem, solution, channels, current, objective, risk, ci_level,
                   n_resamples, rng)


@dataclass(frozen=True, eq=False)
class TargetResult:
    """The cheapest plan found that reaches a target outcome with a stated probability.

    Attributes
    ----------
    target : float
    probability : float
        The probability asked for.
    achieved_probability : float
        Share of draws in which the plan's outcome reaches the target (``>= probability``).
    total : float
        The plan's total spend.
    quantile : float
        Outcome the plan reaches with the requested probability (at least ``target``).
    plan : OptimiseResult
        The plan (objective ``"quantile"``), with its table, intervals and uplift.
    n_iterations : int
        Totals tried by the search.
    """

    target: float
    probability: float
    achieved_probability: float
    total: float
    quantile: float
    plan: OptimiseResult = field(repr=False)
    n_iterations: int

    @property
    def allocation(self) -> np.ndarray:
        """The plan's spend per channel."""
        return self.plan.allocation

    @property
    def table(self) -> pd.DataFrame:
        """The plan's allocation table (see :class:`OptimiseResult`)."""
        return self.plan.table


def target(model, target, probability: float = 0.8, bounds=None, *, max_total=None,
           rtol: float = 1e-4, n_starts: int = 4, n_resamples: int = 0, ci_level: float = 0.9,
           rng=None) -> TargetResult:
    """Cheapest total, and its allocation, with ``P(outcome >= target) >= probability``.

    Parameters
    ----------
    model : ResponseModel
    target : float
        Outcome to reach over the horizon (baseline included, as ``predict`` returns it).
    probability : float, default 0.8
        Required share of posterior draws at or above the target.
    bounds : optional
        Per-channel bounds, as in :func:`optimise`.
    max_total : float, optional
        Largest total to consider. Default: the sum of the upper bounds when finite, else 100
        times the current total.
    rtol : float, default 1e-4
        The bisection stops when the bracket on the total is narrower than ``rtol`` times it.
    n_starts : int, default 4
        Optimiser starts at the first total (``max_total``); later totals start from the
        allocations found at the ends of the bracket.
    n_resamples : int, default 0
        Bootstrap resamples for the stability columns of the final plan.
    ci_level : float, default 0.9
    rng : None, int or numpy.random.Generator

    Returns
    -------
    TargetResult

    Raises
    ------
    EngineError
        When no plan within the bounds and ``max_total`` reaches the target with the
        probability (the message gives the best value reached), or on a bad argument.

    Examples
    --------
    Four equally likely draws scale one log curve by 0.8, 0.9, 1.1 and 1.2; with probability
    0.75 the outcome is at least ``0.9 * 100 * log(1 + x / 1000)``, which reaches 90 at
    ``x = 1000 (e - 1)``.

    >>> from engine.budget import Curves
    >>> model = Curves(["search"], beta=[[80.0], [90.0], [110.0], [120.0]], scale=[1000.0],
    ...                current=[1000.0])
    >>> result = target(model, 90.0, probability=0.75)
    >>> round(float(result.total / (1000 * (np.e - 1))), 3), result.achieved_probability
    (1.0, 0.75)
    """
    channels, current, lower, upper, ci_level, rng = _bounds_and_checks(
        model, bounds, ci_level, rng, n_starts, n_resamples)
    if not isinstance(target, Real) or isinstance(target, bool) or not math.isfinite(target):
        raise EngineError(f"budget: target must be a finite number, not {target!r}")
    if not isinstance(probability, Real) or isinstance(probability, bool) \
            or not 0 < probability < 1:
        raise EngineError(f"budget: probability must be between 0 and 1, not {probability!r}")
    if not isinstance(rtol, Real) or isinstance(rtol, bool) or not 0 < rtol < 1:
        raise EngineError(f"budget: rtol must be between 0 and 1, not {rtol!r}")
    target, probability = float(target), float(probability)
    if max_total is None:
        limit = upper.sum() if np.isfinite(upper.sum()) else 100.0 * current.sum()
        if limit <= 0:
            raise EngineError("budget: the current plan spends nothing and no upper bounds are "
                              "given; pass max_total")
    else:
        limit = min(_check_total(max_total, lower, np.full_like(upper, np.inf)), upper.sum())
    limit = max(limit, lower.sum())
    reduce, smooth = _quantile_reducer(probability), _smooth_quantile_reducer(probability)

    def attempt(total, warm, n_fresh=0):
        problem = _Problem(model, total, lower, upper, reduce, smooth=smooth)
        starts = _starts(current, total, len(channels), n_fresh, rng,
                         extra=[w * (total / w.sum()) for w in warm if w.sum() > 0])
        solution = _solve(problem, starts or [np.full(len(channels), total / len(channels))])
        reached = (problem.draws(solution.allocation[None])[:, 0] >= target).mean()
        return problem, solution, reached >= probability

    best = attempt(limit, [], n_starts)
    if not best[2]:
        raise EngineError(f"budget: target {target:g} is out of reach with probability "
                          f"{probability:g}: the best plan found within the bounds (total "
                          f"{limit:g}) reaches {best[1].value:g} with that probability")
    below = attempt(lower.sum(), [best[1].allocation])
    n_iterations = 2
    if below[2]:
        best = below
    # Illinois (regula falsi that halves the value of an end kept twice) on the outcome reached
    # minus the target, bracketed by an infeasible and a feasible total; a bisection step
    # whenever two steps did not halve the bracket.
    a, fa = lower.sum(), below[1].value - target
    b, fb = best[0].total, best[1].value - target
    widths, side = [b - a], 0
    while not below[2] and b - a > rtol * b and n_iterations < _MAX_TARGET_STEPS:
        width = b - a
        if len(widths) >= 3 and width > 0.5 * widths[-3]:
            c = math.sqrt(a * b) if 0 < 4 * a < b else 0.5 * (a + b)
        else:
            c = b - fb * width / (fb - fa)
        c = min(max(c, a + _TARGET_MARGIN * width), b - _TARGET_MARGIN * width)
        trial = attempt(c, [best[1].allocation, below[1].allocation])
        n_iterations += 1
        value = trial[1].value - target
        if trial[2]:
            best, b, fb = trial, c, value
            fa = fa / 2 if side == 1 else fa
            side = 1
        else:
            below, a, fa = trial, c, value
            fb = fb / 2 if side == -1 else fb
            side = -1
        widths.append(b - a)
    problem, solution, _ = best
    plan = _result(model, problem, solution, channels, current, "quantile",
                   round(1.0 - probability, 12), ci_level, n_resamples, rng)
    achieved = float((plan.draws >= target).mean())
    return TargetResult(target=target, probability=probability, achieved_probability=achieved,
                        total=plan.total, quantile=solution.value, plan=plan,
                        n_iterations=n_iterations)
