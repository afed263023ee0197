"""Ground-truth worlds: simulated data with known answers, for tests, benchmarks and research.

* :func:`simulate` draws journeys (an event log) and weekly aggregates from one causal
  :class:`World`, with the counterfactual truth per channel; :func:`scenario` builds the named
  worlds (:data:`SCENARIOS`).
* :func:`media_series` draws a spend time series with a known media response (for the
  Bayesian ROAS model's recovery tests).
"""

from engine.simulate.media import media_series
from engine.simulate.scenarios import SCENARIOS, scenario
from engine.simulate.world import Channel, Markov, Simulation, World, load_world, simulate

__all__ = ["media_series", "simulate", "scenario", "SCENARIOS", "World", "Channel", "Markov",
           "Simulation", "load_world"]
