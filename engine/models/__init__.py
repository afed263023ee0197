"""Attribution models. Every model has the same face: ``Model(**params).fit(journeys).attribute()``."""

from engine.models._base import REGISTRY, AttributionModel, available_models, get_model
from engine.models.fractribution import Fractribution
from engine.models.incremental import Incremental
from engine.models.markov import Markov
from engine.models.shapley import Shapley
from engine.models.rules import (CustomPosition, FirstTouch, FullPath, LastNonDirect, LastTouch,
                                 Linear, PositionBased, TimeDecay, WShaped)

__all__ = ["AttributionModel", "REGISTRY", "available_models", "get_model", "FirstTouch",
           "LastTouch", "LastNonDirect", "Linear", "TimeDecay", "PositionBased", "CustomPosition",
           "WShaped", "FullPath", "Markov", "Shapley", "Fractribution", "Incremental"]
