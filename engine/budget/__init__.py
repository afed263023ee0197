"""Budget planning over a response-model protocol: scenarios, optimisation, target mode.

Everything here calls only the :class:`ResponseModel` protocol (``channels``,
``current_allocation()``, ``predict(allocations)``), so any fitted response model plugs in: the
Bayesian MMM, or :class:`Curves` (known saturation curves, for tests and examples).

- :func:`scenarios`: outcome of several allocations, compared with the current plan draw by draw;
- :func:`optimise`: the allocation of a total that maximises the expected outcome or a
  risk-aware objective, with per-channel bounds, marginal returns and stability across draws;
- :func:`target`: the cheapest plan that reaches a target outcome with a stated probability;
- :func:`parse_allocation`, :func:`parse_bounds`, :func:`resolve_bounds`: the text forms the
  CLI passes through (``"search=+20%,display=-10%"``, ``"search=0.5:2"``, ``"tv=0:1e5abs"``).

Examples
--------
>>> from engine.budget import Curves, optimise, scenarios
>>> model = Curves(["search", "display"], beta=[300.0, 100.0], scale=[1500.0, 500.0],
...                current=[1000.0, 1000.0], outcome_name="orders")
>>> scenarios(model, ["search=+50%,display=-50%"])["difference"].round(2).tolist()
[0.0, 14.15]
>>> optimise(model, 2000.0, n_resamples=0).allocation.round(3).tolist()
[1500.0, 500.0]
"""

from engine.budget.curves import SATURATIONS, Curves, exponential_saturation, hill, log1p_saturation
from engine.budget.optimiser import (OBJECTIVES, OptimiseResult, TargetResult,
                                     harrell_davis_weights, objective_function, optimise, project,
                                     target)
from engine.budget.parse import Bound, parse_allocation, parse_bounds, resolve_bounds
from engine.budget.protocol import ResponseModel, check_model, predict_draws, response_draws
from engine.budget.scenario import scenarios

__all__ = ["ResponseModel", "check_model", "predict_draws", "response_draws",
           "Curves", "SATURATIONS", "hill", "log1p_saturation", "exponential_saturation",
           "Bound", "parse_allocation", "parse_bounds", "resolve_bounds",
           "scenarios", "optimise", "target", "OptimiseResult", "TargetResult", "OBJECTIVES",
           "objective_function", "harrell_davis_weights", "project"]
