"""The face every attribution model shares, and the registry of models by name."""

from __future__ import annotations

import inspect
from numbers import Integral, Real
from typing import ClassVar

import numpy as np

import pandas as pd

from engine.errors import EngineError, NotFittedError
from engine.journeys import Journeys
from engine.results import Attribution

REGISTRY: dict[str, type["AttributionModel"]] = {}


class AttributionModel:
    """Base class: keyword hyper-parameters, ``fit(journeys) -> self``, ``attribute()``.

    Subclasses set ``name`` (snake_case, unique: it registers the model), ``description`` (one
    line), ``requires`` (journey data the model needs: ``"ages"``, ``"milestones"``),
    ``paths_only`` (False when the result depends on more than paths and counts), store their
    ``__init__`` keywords unchanged, and implement ``_fit(journeys)`` and ``_attribute()``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    #: Whether the model's result depends only on the paths and their counts (so identical
    #: journeys may be merged first); models reading persons or timestamps set it False.
    paths_only: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
                raise TypeError(f"model name {cls.name!r} is registered twice")
            REGISTRY[cls.name] = cls

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values()
                if p.name != "self" and p.kind == p.KEYWORD_ONLY]

    def get_params(self) -> dict:
        """The hyper-parameters, exactly as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "AttributionModel":
        """Change hyper-parameters; what was fitted is forgotten (fit again)."""
        unknown = set(params) - set(self._param_names())
        if unknown:
            raise EngineError(f"{type(self).__name__} has no parameter {sorted(unknown)[0]!r}")
        for key, value in params.items():
            setattr(self, key, value)
        self._forget()
        return self

    def _forget(self) -> None:
        for attribute in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attribute)

    def fit(self, journeys: Journeys) -> "AttributionModel":
        """Learn from ``journeys``; returns ``self``. Anything learned before is forgotten.

        ``journeys`` may also be a :class:`engine.ingest.table.JourneyTable` (journeys kept on
        DuckDB or Spark): a model with ``_fit_table`` reads the aggregates it needs from the
        engine; one that needs only paths fits on the distinct paths
        (:meth:`~engine.ingest.table.JourneyTable.unique`); any other model collects the
        journeys.
        """
        from engine.ingest.table import JourneyTable

        if not isinstance(journeys, (Journeys, JourneyTable)):
            raise EngineError(f"{self.name}.fit expects engine.Journeys, got "
                              f"{type(journeys).__name__}; use engine.read_paths/read_events")
        self._forget()
        self._validate_params()
        journeys.require(*self.requires, model=self.name)
        if isinstance(journeys, Journeys):
            self._fit(journeys)
        elif hasattr(self, "_fit_table"):
            self._fit_table(journeys)
        else:
            self._fit(journeys.collect() if self.requires or not self.paths_only
                      else journeys.unique())
        self.journeys_ = journeys
        return self

    def attribute(self) -> Attribution:
        """The credit per channel as an :class:`engine.Attribution`."""
        if not hasattr(self, "journeys_"):
            raise NotFittedError(f"{self.name} is not fitted yet; call fit(journeys) first")
        return self._attribute()

    def fit_attribute(self, journeys: Journeys) -> Attribution:
        """``fit(journeys).attribute()``."""
        return self.fit(journeys).attribute()

    def _validate_params(self) -> None:
        """Check hyper-parameters at fit time (``__init__`` does no work)."""

    def _check_sampling(self) -> None:
        """Checks shared by models that draw: ``ci_level``, ``n_draws`` and ``rng``."""
        level, draws, rng = self.ci_level, self.n_draws, self.rng
        if not isinstance(level, Real) or isinstance(level, bool) or not 0 < level < 1:
            raise EngineError(f"{self.name}: ci_level must be a number between 0 and 1, not "
                              f"{level!r}")
        if not isinstance(draws, Integral) or isinstance(draws, bool) or draws < 0:
            raise EngineError(f"{self.name}: n_draws must be a non-negative integer, not "
                              f"{draws!r}")
        if not (rng is None or isinstance(rng, (Integral, np.random.Generator))) \
                or isinstance(rng, bool):
            raise EngineError(f"{self.name}: rng must be None, an integer seed or a "
                              f"numpy.random.Generator, not {rng!r}")

    def _intervals(self, draws: dict) -> dict:
        """Equal-tailed ``ci_level`` bounds ``(lower, upper)`` of every array of draws."""
        tail = (1.0 - self.ci_level) / 2.0
        return {key: tuple(np.quantile(values, [tail, 1.0 - tail], axis=0))
                for key, values in draws.items()}

    def _fit(self, journeys: Journeys) -> None:
        raise NotImplementedError

    def _attribute(self) -> Attribution:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def get_model(name: str, **params) -> AttributionModel:
    """A new model by its registered name.

    Names are matched case-insensitively, ``-`` as ``_``.

    Raises
    ------
    EngineError
        Unknown name (the message lists the registered ones) or unknown parameter.

    Examples
    --------
    >>> get_model("linear", per="channel")
    Linear(per='channel')
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in REGISTRY:
        raise EngineError(f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}")
    unknown = set(params) - set(REGISTRY[key]._param_names())
    if unknown:
        raise EngineError(f"model {key!r} has no parameter {sorted(unknown)[0]!r}")
    return REGISTRY[key](**params)


def available_models() -> pd.DataFrame:
    """The registered models: ``name, description, requires``, sorted by name.

    Examples
    --------
    >>> available_models().set_index("name").loc["time_decay", "requires"]
    'ages'
    """
    rows = [{"name": n, "description": c.description, "requires": ", ".join(c.requires)}
            for n, c in sorted(REGISTRY.items())]
    return pd.DataFrame(rows, columns=["name", "description", "requires"])
