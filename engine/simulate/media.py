"""Spend time series with a known media response: the ground truth for channel ROAS."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.errors import EngineError
from engine.models.bayes.components import GeometricAdstock, LogisticSaturation


def media_series(n_periods: int = 156, channels=("search", "social", "tv"), *, roas=None,
                 alpha=None, lam=None, max_lag: int = 8, baseline: float = 1000.0,
                 noise: float = 0.05, start: str = "2022-01-03", step_days: int = 7,
                 rng=None) -> tuple[pd.DataFrame, dict]:
    """Weekly (or ``step_days``) spend per channel and an outcome whose media part is known.

    The outcome is ``baseline * (1 + 0.2 * trend + 0.1 * yearly season) + sum_c beta_c *
    logistic(geometric_adstock(spend_c / scale_c))`` plus normal noise of sd ``noise *
    baseline``, with ``beta_c`` set so that each channel's ROAS (contribution over the window,
    carryover after it included, per unit of spend: the definition
    :class:`engine.models.bayes.BayesianROAS` estimates) equals ``roas[c]``.

    Parameters
    ----------
    n_periods : int
    channels : sequence of str
    roas : sequence of float, optional
        True ROAS per channel (default 0.5 to 3, spread over the channels).
    alpha, lam : sequence of float, optional
        Geometric adstock retention and logistic steepness per channel.
    rng : int or numpy.random.Generator, optional

    Returns
    -------
    frame : pandas.DataFrame
        ``date, y, <channel spend columns>, event``.
    truth : dict
        ``roas``, ``contribution`` (per channel, carryover included), ``alpha``, ``lam``,
        ``beta`` (per channel arrays in channel order).

    Examples
    --------
    >>> frame, truth = media_series(52, ["a", "b"], roas=[1.0, 2.0], rng=0)
    >>> frame.columns.tolist(), truth["roas"].tolist()
    (['date', 'y', 'a', 'b', 'event'], [1.0, 2.0])
    """
    rng = np.random.default_rng(rng)
    channels = [str(c) for c in channels]
    n = len(channels)
    if n_periods < 8 or n < 1:
        raise EngineError("media_series: need at least 8 periods and one channel")
    roas = np.linspace(0.5, 3.0, n) if roas is None else np.asarray(roas, dtype=float)
    alpha = np.linspace(0.2, 0.6, n) if alpha is None else np.asarray(alpha, dtype=float)
    lam = np.linspace(1.0, 3.0, n) if lam is None else np.asarray(lam, dtype=float)
    t = np.arange(n_periods)
    season = np.sin(2 * np.pi * t * step_days / 365.25)
    level = rng.lognormal(np.log(100.0), 0.5, n)  # channel budgets differ
    spend = level * rng.lognormal(0.0, 0.4, (n_periods, n)) * (1 + 0.3 * season[:, None])
    spend[rng.random((n_periods, n)) < 0.15] = 0.0  # some dark weeks
    scale = np.array([s[s > 0].mean() for s in spend.T])
    adstock = GeometricAdstock(max_lag=max_lag)
    saturation = LogisticSaturation()
    padded = np.vstack([spend, np.zeros((max_lag, n))])
    curve = saturation.apply(adstock.apply(padded / scale, {"alpha": alpha}), {"lam": lam})
    beta = roas * spend.sum(axis=0) / curve.sum(axis=0)
    media = curve * beta
    event = np.zeros(n_periods)
    event[rng.choice(n_periods, size=max(1, n_periods // 52), replace=False)] = 1.0
    y = (baseline * (1 + 0.2 * t / n_periods + 0.1 * season) + 0.3 * baseline * event
         + media[:n_periods].sum(axis=1) + rng.normal(0.0, noise * baseline, n_periods))
    dates = pd.date_range(start, periods=n_periods, freq=f"{step_days}D")
    frame = pd.DataFrame({"date": dates, "y": y, **dict(zip(channels, spend.T)),
                          "event": event})
    truth = {"roas": roas, "contribution": media.sum(axis=0), "alpha": alpha, "lam": lam,
             "beta": beta}
    return frame, truth
