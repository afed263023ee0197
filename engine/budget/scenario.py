"""What-if scenarios: predicted outcome of several allocations, each compared with the current
plan draw by draw."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from engine.budget._common import as_allocation, check_ci_level, interval
from engine.budget.protocol import check_model, predict_draws
from engine.errors import EngineError

CURRENT = "current"


def scenarios(model, scenarios, ci_level: float = 0.9) -> pd.DataFrame:
    """Predicted outcome of each scenario and its difference to the current plan.

    Parameters
    ----------
    model : ResponseModel
    scenarios : mapping of name to allocation, or sequence of spec strings
        An allocation is a spec string (``"search=+20%,display=-10%"``, see
        :func:`parse_allocation`), a mapping of channel to amount (unnamed channels keep their
        current spend) or an array of shape ``(n_channels,)``. A sequence of spec strings names
        each scenario by its spec. The name ``"current"`` is reserved for the current plan.
    ci_level : float, default 0.9
        Level of the equal-tailed intervals over the posterior draws.

    Returns
    -------
    pandas.DataFrame
        One row per scenario, the current plan first, with the columns

        - ``scenario``; ``spend`` (total); ``spend_<channel>`` for every channel;
        - ``outcome``, ``outcome_lower``, ``outcome_upper``: mean and interval of the outcome;
        - ``difference``, ``difference_lower``, ``difference_upper``: the outcome minus the
          current plan's, computed per draw (paired), then summarised;
        - ``probability_better``: share of draws in which the scenario's outcome is above the
          current plan's (NaN on the current row, which is not compared with itself);
        - ``roi``, ``roi_lower``, ``roi_upper``: extra outcome per extra spend,
          ``difference / (spend - current spend)`` per draw (NaN where the total spend does
          not change).

        ``attrs`` holds ``outcome_name`` and ``ci_level``.

    Examples
    --------
    >>> from engine.budget import Curves
    >>> model = Curves(["search", "display"], beta=[[100.0, 50.0], [200.0, 100.0]],
    ...                scale=[1000.0, 1000.0], current=[1000.0, 1000.0])
    >>> table = scenarios(model, {"more search": "search=+20%"})
    >>> table[["scenario", "spend", "spend_search", "difference"]].round(2)
          scenario   spend  spend_search  difference
    0      current  2000.0        1000.0         0.0
    1  more search  2200.0        1200.0        14.3
    """
    channels, current = check_model(model)
    ci_level = check_ci_level(ci_level)
    if isinstance(scenarios, str) or not isinstance(scenarios, Mapping):
        specs = [scenarios] if isinstance(scenarios, str) else list(scenarios)
        if not all(isinstance(s, str) for s in specs):
            raise EngineError("scenarios must be a mapping of name to allocation or a list of "
                              "spec strings")
        scenarios = dict(zip(specs, specs))
    if CURRENT in scenarios:
        raise EngineError(f"the scenario name {CURRENT!r} is reserved for the current plan")
    names = [CURRENT, *(str(name) for name in scenarios)]
    spend = np.vstack([current] + [as_allocation(value, current, channels, str(name))
                                   for name, value in scenarios.items()])
    draws = predict_draws(model, spend)
    difference = draws - draws[:, :1]
    extra = spend.sum(axis=1) - current.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        roi = np.where(extra != 0, difference / np.where(extra != 0, extra, 1.0), np.nan)
    better = (difference > 0).mean(axis=0)
    better[0] = np.nan

    table = pd.DataFrame({"scenario": names, "spend": spend.sum(axis=1)})
    for i, channel in enumerate(channels):
        table[f"spend_{channel}"] = spend[:, i]
    for key, values in (("outcome", draws), ("difference", difference), ("roi", roi)):
        table[key] = values.mean(axis=0)
        table[f"{key}_lower"], table[f"{key}_upper"] = interval(values, ci_level)
        if key == "difference":
            table["probability_better"] = better
    table.attrs.update(outcome_name=getattr(model, "outcome_name", "outcome"),
                       ci_level=ci_level)
    return table
