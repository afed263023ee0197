"""Bayesian models of aggregate data: channel ROAS from spend time series (PyMC).

PyMC, PyTensor and ArviZ are imported when a model is fitted or loaded, not with the package.
"""

from engine.models.bayes.components import (DelayedAdstock, GeometricAdstock, HillSaturation,
                                            LogisticSaturation)
from engine.models.bayes.mmm import BayesianROAS, ConvergenceWarning

__all__ = ["BayesianROAS", "ConvergenceWarning", "GeometricAdstock", "DelayedAdstock",
           "HillSaturation", "LogisticSaturation"]
