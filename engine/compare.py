"""Run several models on the same journeys and stack their results into one long table."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from engine.errors import EngineError, MissingDataError
from engine.journeys import Journeys
from engine.models._base import REGISTRY, AttributionModel, get_model
from engine.results import Attribution


def resolve_models(models) -> list[AttributionModel]:
    """Model instances from instances, registered names, or ``"all"``."""
    if isinstance(models, (str, AttributionModel)):
        models = [models]
    resolved = []
    for model in models:
        if isinstance(model, AttributionModel):
            resolved.append(model)
        elif str(model).strip().lower() == "all":
            resolved.extend(REGISTRY[name]() for name in sorted(REGISTRY))
        else:
            resolved.append(get_model(model))
    return resolved


def compare(models, journeys: Journeys, *, skip_unsupported: bool = False,
            on_model: Callable[[AttributionModel], None] | None = None) -> pd.DataFrame:
    """Fit every model on ``journeys`` and return their tables stacked (one long table).

    Parameters
    ----------
    models : iterable of AttributionModel or str, or "all"
        Models (instances or registered names). ``"all"`` means every registered model with
        default parameters.
    journeys : Journeys
    skip_unsupported : bool
        Skip models that need data the journeys lack (e.g. ``time_decay`` on a path table)
        instead of raising :class:`engine.MissingDataError`. The skipped models are listed in
        ``table.attrs["skipped"]`` with the reason.
    on_model : callable, optional
        Called with each model before it is fitted (progress reporting).

    Returns
    -------
    pandas.DataFrame
        The :class:`engine.Attribution` table columns, one block of rows per model.

    Examples
    --------
    >>> import engine
    >>> j = engine.Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 1])
    >>> table = engine.compare(["first_touch", "last_touch"], j)
    >>> table.pivot(index="channel", columns="model", values="conversions").to_dict()
    {'first_touch': {'a': 1.0, 'b': 1.0}, 'last_touch': {'a': 0.0, 'b': 2.0}}
    """
    tables, skipped = [], {}
    resolved = resolve_models(models)
    names = [model.name for model in resolved]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise EngineError(f"model {repeated[0]!r} appears twice; its rows could not be told "
                          "apart in one table: compare the variants in separate calls")
    for model in resolved:
        if on_model is not None:
            on_model(model)
        try:
            result: Attribution = model.fit(journeys).attribute()
        except MissingDataError as exc:
            if not skip_unsupported:
                raise
            skipped[model.name] = str(exc)
            continue
        tables.append(result.table)
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=list(Attribution.from_credit("", [], [], []).table.columns))
    table.attrs["skipped"] = skipped
    return table
