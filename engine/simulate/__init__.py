"""Ground-truth worlds: simulated data with known answers, for tests, benchmarks and research."""

from engine.simulate.media import media_series

__all__ = ["media_series"]
