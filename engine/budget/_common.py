"""Checks and small summaries shared by scenarios, the optimiser and target mode."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np

from engine.budget.parse import parse_allocation
from engine.errors import EngineError


def check_ci_level(ci_level) -> float:
    if not isinstance(ci_level, Real) or isinstance(ci_level, bool) or not 0 < ci_level < 1:
        raise EngineError(f"budget: ci_level must be a number between 0 and 1, not {ci_level!r}")
    return float(ci_level)


def check_rng(rng) -> np.random.Generator:
    if not (rng is None or isinstance(rng, (Integral, np.random.Generator))) \
            or isinstance(rng, bool):
        raise EngineError(f"budget: rng must be None, an integer seed or a "
                          f"numpy.random.Generator, not {rng!r}")
    return np.random.default_rng(rng)


def interval(draws: np.ndarray, ci_level: float, axis: int = 0) -> tuple:
    """Equal-tailed ``ci_level`` bounds ``(lower, upper)`` over ``axis``."""
    tail = (1.0 - ci_level) / 2.0
    lower, upper = np.quantile(draws, [tail, 1.0 - tail], axis=axis)
    return lower, upper


def as_allocation(value, current: np.ndarray, channels: tuple, name: str) -> np.ndarray:
    """An allocation from a spec string, a mapping of channel to amount, or an array."""
    if isinstance(value, str):
        return parse_allocation(value, current, channels)
    if isinstance(value, Mapping):
        unknown = [c for c in value if c not in channels]
        if unknown:
            raise EngineError(f"unknown channel {unknown[0]!r} in {name!r}; the channels are "
                              f"{', '.join(channels)}")
        out = current.copy()
        for channel, amount in value.items():
            try:
                out[channels.index(channel)] = float(amount)
            except (TypeError, ValueError):
                raise EngineError(f"{name!r}: the spend on {channel!r} is not a number: "
                                  f"{amount!r}") from None
    else:
        out = np.asarray(value, dtype=float)
        if out.shape != (len(channels),):
            raise EngineError(f"{name!r} has shape {out.shape}, expected ({len(channels)},) "
                              f"for channels {', '.join(channels)}")
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise EngineError(f"{name!r} must spend finite non-negative amounts, not {out.tolist()}")
    return out
