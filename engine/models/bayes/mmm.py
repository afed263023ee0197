"""Bayesian channel ROAS: a media-mix regression on spend time series, fitted with PyMC.

The model (in the style of Jin et al. 2017 and Google's Meridian), on one row per period::

    y_t = intercept + trend * t / T + seasonality_t + controls_t . gamma
          + sum_c beta_c * saturation_c(adstock_c(spend_c / scale_c))_t + noise_t

``y`` is divided by its mean absolute value before fitting; spend by each channel's mean positive
spend (``scale_c``). Adstock and saturation are components (:mod:`engine.models.bayes.components`)
with their own priors.

ROAS-parameterised priors (Meridian; Zhang et al. 2024)
    The prior is stated on each channel's ROAS, ``roas_c = sum_t contribution_c,t / sum_t
    spend_c,t`` (outcome per unit of spend in the fitted window, the carryover after the window
    included: the ROAS reported), ``LogNormal(log(median), sigma)`` per channel, and ``beta_c``
    is derived from it and the media curve. The default is Meridian's prior for an outcome of
    unknown monetary value, the *total paid media contribution prior*: one log-normal ROAS prior
    for every channel, such that the share of the outcome earned by all channels together has
    prior mean ``m`` and standard deviation ``s`` (``media_share_prior=(m, s)``, default
    ``(0.4, 0.2)``). With ``Y = sum(y)`` and ``S_c`` each channel's total spend::

        mean = m * Y / sum_c S_c        sd = s * Y / sqrt(sum_c S_c ** 2)
        sigma = sqrt(log(1 + sd ** 2 / mean ** 2))        median = mean * exp(-sigma ** 2 / 2)

    (with 8 channels of equal spend, ``sigma`` is 1.05 and the median ``0.23 * Y / sum_c S_c``;
    with 2, 0.64 and ``0.33 * Y / sum_c S_c``). Pass ``roas_prior={"search": (2.0, 0.5)}``
    (median, log-sd) to state what you know of a channel.

Calibration (optional likelihood terms, each with its own noise)
    ``lift_tests``: rows ``channel, start, end, lift, lift_se``: a lift test measured ``lift``
    extra outcome (standard error ``lift_se``) over ``[start, end]``; the model's contribution
    of that channel over those periods is observed with that error. ``calibration``: an
    :class:`engine.Attribution` from a journey-level model; each channel's attributed value
    (or conversions, for a conversions outcome) is observed as the log of the channel's total
    contribution with a noise ``tau ~ HalfNormal(calibration_sigma)``, so journey-level credit
    pulls on the estimate without being taken as the truth.

ROAS and marginal ROAS are counterfactual: the outcome with the channel's spend in the window
against the outcome without it, carryover after the window counted (the spend is followed by
``max_lag`` periods of no spend); marginal ROAS adds 1 % to the channel's spend in every period.
The model is additive in channels, so ``roas_c`` is exactly the quantity in the prior.

References
----------
Jin, Y., Wang, Y., Sun, Y., Chan, D. and Koehler, J. (2017). Bayesian methods for media mix
modeling with carryover and shape effects. Google Inc.
Zhang, Y., Wurm, M., Wakim, A., Li, E. and Liu, Y. (2024). Media mix model calibration with
Bayesian priors. Google Inc.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd

from engine._atomic import atomic_path
from engine.errors import EngineError, InputError, NotFittedError
from engine.models.bayes.components import (ADSTOCKS, SATURATIONS, GeometricAdstock,
                                            LogisticSaturation)
from engine.results import Attribution

SAMPLERS = ("auto", "nutpie", "pymc")
OUTCOMES = ("revenue", "conversions")
_YEAR_DAYS = 365.25
_PREDICT_CELLS = 1 << 23  # float64 cells per block of predict's saturation (64 MiB)


class ConvergenceWarning(UserWarning):
    """The sampler did not converge by the stated thresholds (see ``diagnostics_``)."""


@dataclass(frozen=True)
class Series:
    """Validated model inputs: one row per period."""

    dates: np.ndarray      # datetime64[ns], regular
    y: np.ndarray          # (T,)
    spend: np.ndarray      # (T, C)
    controls: np.ndarray   # (T, K)
    channels: tuple
    control_names: tuple
    step_days: float


def _component(value, table, default, kind, max_lag=None):
    if value is None:
        return default
    if isinstance(value, str):
        if value not in table:
            raise EngineError(f"bayes_roas: {kind} must be one of {', '.join(table)} or a "
                              f"component object, not {value!r}")
        cls = table[value]
        return cls(max_lag=max_lag) if max_lag is not None else cls()
    return value


class BayesianROAS:
    """Bayesian media-mix model of spend time series: channel ROAS with credible intervals.

    Parameters
    ----------
    adstock : {"geometric", "delayed"} or component
    saturation : {"logistic", "hill"} or component
    max_lag : int
        Periods of carryover (adstock window).
    roas_prior : tuple or dict, optional
        ``(median, sigma)`` for every channel, or ``{channel: (median, sigma)}``; channels not
        named keep the default prior.
    media_share_prior : tuple
        ``(mean, sd)`` of the prior share of the outcome earned by all channels together, which
        sets the default ROAS prior (see the module notes).
    seasonality : int
        Fourier order of the yearly seasonality (0: none).
    trend : bool
        Linear trend in the baseline.
    lift_tests : pandas.DataFrame, optional
        ``channel, start, end, lift, lift_se`` (dates; outcome units).
    calibration : engine.Attribution, optional
        Journey-level credit to calibrate against (see the module notes).
    calibration_sigma : float
        Scale of the half-normal prior on the calibration noise (log scale).
    draws, tune, chains : int
        Sampler settings (per chain).
    sampler : {"auto", "nutpie", "pymc"}
        ``auto``: nutpie where installed, else PyMC's NUTS.
    target_accept : float
    ci_level : float
    rng : int, optional
        Seed of the sampler.
    progress : bool
        Show the sampler's progress bar.

    Attributes
    ----------
    idata_ : arviz.InferenceData
    roas_ : pandas.DataFrame
        ``channel, spend, value, value_lower, value_upper, roas, roas_lower, roas_upper, mroas,
        mroas_lower, mroas_upper`` (the ROAS table).
    diagnostics_ : pandas.DataFrame
        R-hat, bulk and tail ESS per parameter; ``divergences_`` and ``converged_``.
    """

    name = "bayes_roas"

    def __init__(self, *, adstock="geometric", saturation="logistic", max_lag=8, roas_prior=None,
                 media_share_prior=(0.4, 0.2), seasonality=2, trend=True, lift_tests=None,
                 calibration=None, calibration_sigma=0.5, draws=1000, tune=1000, chains=4,
                 sampler="auto", target_accept=0.9, ci_level=0.9, rng=None, progress=False):
        self.adstock = adstock
        self.saturation = saturation
        self.max_lag = max_lag
        self.roas_prior = roas_prior
        self.media_share_prior = media_share_prior
        self.seasonality = seasonality
        self.trend = trend
        self.lift_tests = lift_tests
        self.calibration = calibration
        self.calibration_sigma = calibration_sigma
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.sampler = sampler
        self.target_accept = target_accept
        self.ci_level = ci_level
        self.rng = rng
        self.progress = progress

    # -- validation ------------------------------------------------------------------------------
    def _validate_params(self):
        for name, low in (("max_lag", 1), ("draws", 10), ("tune", 0), ("chains", 1),
                          ("seasonality", 0)):
            value = getattr(self, name)
            if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
                raise EngineError(f"bayes_roas: {name} must be an integer >= {low}, not "
                                  f"{value!r}")
        if self.sampler not in SAMPLERS:
            raise EngineError(f"bayes_roas: sampler must be one of {', '.join(SAMPLERS)}, not "
                              f"{self.sampler!r}")
        for name in ("ci_level", "target_accept"):
            value = getattr(self, name)
            if not isinstance(value, Real) or isinstance(value, bool) or not 0 < value < 1:
                raise EngineError(f"bayes_roas: {name} must be between 0 and 1, not {value!r}")
        self.adstock_ = _component(self.adstock, ADSTOCKS, GeometricAdstock(self.max_lag),
                                   "adstock", int(self.max_lag))
        self.saturation_ = _component(self.saturation, SATURATIONS, LogisticSaturation(),
                                      "saturation")
        self._media_share()

    @staticmethod
    def prepare(data, *, date: str, target: str, channels, controls=()) -> Series:
        """Validate and order the input table (see :meth:`fit`); one-line errors naming the
        column and row of the first problem."""
        if not isinstance(data, pd.DataFrame):
            raise InputError(f"bayes_roas expects a pandas DataFrame, not {type(data).__name__}")
        channels, controls = list(channels), list(controls)
        if not channels:
            raise InputError("no channels given; name the spend columns")
        for role, names in (("date", [date]), ("target", [target]), ("channel", channels),
                            ("control", controls)):
            for name in names:
                if name not in data.columns:
                    shown = ", ".join(repr(c) for c in list(data.columns)[:20])
                    raise InputError(f"missing {role} column (found: {shown})", column=name)
        if len(set(channels)) != len(channels):
            raise InputError("a channel is named twice")
        dates = pd.to_datetime(data[date], errors="coerce")
        bad = dates.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            raise InputError(f"not a date ({data[date].iloc[row - 1]!r})", column=date, row=row)
        order = np.argsort(dates.to_numpy(), kind="stable")
        table = data.iloc[order].reset_index(drop=True)
        rows = order + 1
        dates = pd.DatetimeIndex(dates.iloc[order])
        if dates.has_duplicates:
            twice = dates[dates.duplicated()][0]
            raise InputError(f"date {twice.date()} appears twice; aggregate to one row per "
                             "period", column=date)
        values = {}
        for role, name in [("target", target)] + [("spend", c) for c in channels] + \
                [("control", c) for c in controls]:
            column = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)
            missing = ~np.isfinite(column)
            if missing.any():
                at = int(np.flatnonzero(missing)[0])
                raise InputError(f"{role} is missing or not a number ({table[name].iloc[at]!r})",
                                 column=name, row=int(rows[at]))
            if role == "spend" and (column < 0).any():
                at = int(np.flatnonzero(column < 0)[0])
                raise InputError(f"negative spend ({column[at]!r})", column=name,
                                 row=int(rows[at]))
            values[name] = column
        if len(dates) < 3:
            raise InputError(f"{len(dates)} periods; a time series model needs many more")
        gaps = np.diff(dates.to_numpy()) / np.timedelta64(1, "D")
        step = float(np.median(gaps))
        irregular = np.flatnonzero(np.abs(gaps - step) > 0.5)
        if len(irregular):
            at = int(irregular[0])
            raise InputError(f"periods are not regular: {dates[at].date()} is followed by "
                             f"{dates[at + 1].date()}, expected every {step:g} days (missing "
                             "periods must be rows with zero spend)", column=date)
        for name in channels:
            if not values[name].any():
                raise InputError(f"channel {name!r} has zero spend in every period; its ROAS "
                                 "cannot be estimated: drop it", column=name)
        return Series(dates=dates.to_numpy(), y=values[target],
                      spend=np.column_stack([values[c] for c in channels]),
                      controls=np.column_stack([values[c] for c in controls]) if controls
                      else np.zeros((len(dates), 0)),
                      channels=tuple(str(c) for c in channels),
                      control_names=tuple(str(c) for c in controls), step_days=step)

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, data, *, date: str, target: str, channels, controls=(),
            outcome: str = "revenue") -> "BayesianROAS":
        """Fit to one row per period: a date, the outcome, spend per channel, controls.

        Parameters
        ----------
        data : pandas.DataFrame
        date, target : str
            Column names.
        channels : sequence of str
            Spend columns (one per channel).
        controls : sequence of str
            Control columns (events, price, ...), standardised inside.
        outcome : {"revenue", "conversions"}
            What ``target`` counts (names the result columns).
        """
        self._validate_params()
        if outcome not in OUTCOMES:
            raise EngineError(f"bayes_roas: outcome must be 'revenue' or 'conversions', not "
                              f"{outcome!r}")
        series = self.prepare(data, date=date, target=target, channels=channels,
                              controls=controls)
        self.outcome_ = outcome
        n_params = (len(series.channels) * (1 + len(self.adstock_.parameters)
                                            + len(self.saturation_.parameters))
                    + 2 + int(bool(self.trend)) + 2 * self.seasonality + series.controls.shape[1])
        if len(series.y) <= n_params:
            raise InputError(f"{len(series.y)} periods for {n_params} parameters; give more "
                             "periods, fewer channels or controls, or less seasonality")
        self._setup(series)
        model = self._build()
        self.idata_ = self._sample(model)
        self._summarise()
        return self

    def _setup(self, series: Series) -> None:
        self.__dict__.pop("_baseline", None)
        self.__dict__.pop("_adstocked", None)
        self.series_ = series
        self.channels = series.channels
        positive = np.where(series.spend > 0, series.spend, np.nan)
        self.spend_scale_ = np.nanmean(positive, axis=0)
        self.y_scale_ = float(np.mean(np.abs(series.y))) or 1.0
        mean, sd = series.controls.mean(axis=0), series.controls.std(axis=0)
        self.control_center_, self.control_scale_ = mean, np.where(sd > 0, sd, 1.0)
        self.roas_median_, self.roas_sigma_ = self._roas_prior(series)

    def _roas_prior(self, series: Series):
        n = len(series.channels)
        median, sigma = np.full(n, np.nan), np.full(n, np.nan)
        prior = self.roas_prior
        if prior is None or (isinstance(prior, dict) and set(prior) != set(series.channels)):
            median[:], sigma[:] = self._media_share_roas(series)
        if prior is None:
            return median, sigma
        if isinstance(prior, dict):
            unknown = set(prior) - set(series.channels)
            if unknown:
                raise EngineError(f"bayes_roas: roas_prior names unknown channel "
                                  f"{sorted(unknown)[0]!r}")
            items = prior.items()
        else:
            items = [(c, prior) for c in series.channels]
        for channel, value in items:
            try:
                m, s = (float(v) for v in value)
            except (TypeError, ValueError):
                raise EngineError(f"bayes_roas: roas_prior for {channel!r} must be (median, "
                                  f"sigma), not {value!r}") from None
            if not (m > 0 and s > 0):
                raise EngineError(f"bayes_roas: roas_prior for {channel!r} needs a positive "
                                  f"median and sigma, not {value!r}")
            i = series.channels.index(channel)
            median[i], sigma[i] = m, s
        return median, sigma

    def _media_share(self) -> tuple[float, float]:
        """``media_share_prior`` checked: ``(mean, sd)``."""
        share = self.media_share_prior
        try:
            mean, sd = (float(v) for v in share)
        except (TypeError, ValueError):
            raise EngineError(f"bayes_roas: media_share_prior must be (mean, sd), not "
                              f"{share!r}") from None
        if not (0 < mean < 1 and sd > 0):
            raise EngineError(f"bayes_roas: media_share_prior needs a mean between 0 and 1 and "
                              f"a positive sd, not {share!r}")
        return mean, sd

    def _media_share_roas(self, series: Series) -> tuple[float, float]:
        """Median and log-sd of the common ROAS prior under which the channels together earn
        a share of the outcome with prior mean and sd ``media_share_prior`` (Meridian's total
        paid media contribution prior)."""
        mean_share, sd_share = self._media_share()
        total = float(series.y.sum())
        if not total > 0:
            raise InputError(f"the outcome sums to {total:g} over the window; the default ROAS "
                             "prior needs a positive total (state roas_prior for every channel)")
        spend = series.spend.sum(axis=0)
        mean = mean_share * total / spend.sum()
        sd = sd_share * total / np.sqrt((spend ** 2).sum())
        sigma = float(np.sqrt(np.log1p((sd / mean) ** 2)))
        return mean * np.exp(-sigma ** 2 / 2), sigma

    def _baseline_features(self, dates: np.ndarray, start: np.datetime64 | None = None,
                           periods: int | None = None):
        """Trend (scaled to the fitted window) and Fourier features for ``dates``."""
        series = self.series_
        start = series.dates[0] if start is None else start
        days = (dates - start) / np.timedelta64(1, "D")
        span = max(float((series.dates[-1] - series.dates[0]) / np.timedelta64(1, "D")), 1.0)
        trend = (days / span)[:, None] if self.trend else np.zeros((len(dates), 0))
        day_of_year = (pd.DatetimeIndex(dates).day_of_year.to_numpy() - 1).astype(float)
        waves = []
        for k in range(1, self.seasonality + 1):
            angle = 2 * np.pi * k * day_of_year / _YEAR_DAYS
            waves += [np.sin(angle), np.cos(angle)]
        season = np.column_stack(waves) if waves else np.zeros((len(dates), 0))
        return trend, season

    def _build(self):
        import pymc as pm
        import pytensor.tensor as pt

        series = self.series_
        trend, season = self._baseline_features(series.dates)
        controls = (series.controls - self.control_center_) / self.control_scale_
        coords = {"channel": list(series.channels), "period": np.arange(len(series.y)),
                  "fourier": [f"f{i}" for i in range(season.shape[1])],
                  "control": list(series.control_names)}
        y = series.y / self.y_scale_
        with pm.Model(coords=coords) as model:
            ad = self.adstock_.priors(pm, "channel")
            sat = self.saturation_.priors(pm, "channel")
            # Channels by periods (C, T), periods last: the lag sums and their gradients run
            # along contiguous rows (a cheaper gradient than with (T, C)).
            # The spend is followed by max_lag periods without spend, so that the ROAS in the
            # prior is the reported one: carryover after the window included.
            spend = np.ascontiguousarray(self._with_tail(series.spend / self.spend_scale_).T)
            full = self.saturation_.apply(self.adstock_.apply(spend, ad, xp=pt, axis=-1), sat,
                                          xp=pt, axis=-1)  # (C, T + max_lag)
            curve = full[:, :len(series.y)]  # (C, T)
            roas = pm.LogNormal("roas", mu=np.log(self.roas_median_), sigma=self.roas_sigma_,
                                dims="channel")
            totals = series.spend.sum(axis=0)
            beta = pm.Deterministic(
                "beta", roas * totals / (self.y_scale_ * (full.sum(axis=1) + 1e-9)),
                dims="channel")
            # Sampled as the level of the fitted mean over the window (the channels' curves and
            # the trend centred), not as the intercept: every curve is positive, so the
            # intercept trades off against all of them, and NUTS follows that ridge. Same
            # model, the weak prior moved from the intercept to the level; on mmm_example the
            # ROAS's bulk ESS per draw tripled.
            level = pm.Normal("level", 0.0, 2.0)
            shift = pt.dot(beta, curve.mean(axis=1))
            slope = pm.Normal("trend", 0.0, 1.0) if trend.shape[1] else None
            if slope is not None:
                shift = shift + slope * trend[:, 0].mean()
            intercept = pm.Deterministic("intercept", level - shift)
            mu = intercept + pt.dot(beta, curve)
            if slope is not None:
                mu = mu + slope * trend[:, 0]
            if season.shape[1]:
                mu = mu + pt.dot(season, pm.Normal("season", 0.0, 0.5, dims="fourier"))
            if controls.shape[1]:
                mu = mu + pt.dot(controls, pm.Normal("gamma", 0.0, 1.0, dims="control"))
            sigma = pm.HalfNormal("sigma", 1.0)
            pm.Normal("y", mu=mu, sigma=sigma, observed=y, dims="period")
            self._calibrate(pm, pt, (curve * beta[:, None]).T)  # media (T, C)
        return model

    def _calibrate(self, pm, pt, media) -> None:
        series = self.series_
        if self.lift_tests is not None:
            tests = self.lift_tests
            need = {"channel", "start", "end", "lift", "lift_se"}
            if not isinstance(tests, pd.DataFrame) or not need <= set(tests.columns):
                raise EngineError("bayes_roas: lift_tests must be a DataFrame with columns "
                                  "channel, start, end, lift, lift_se")
            implied, observed, error = [], [], []
            for row, test in enumerate(tests.itertuples(index=False), start=1):
                if test.channel not in series.channels:
                    raise InputError(f"lift test for unknown channel {test.channel!r}", row=row)
                inside = (series.dates >= np.datetime64(pd.Timestamp(test.start))) & \
                    (series.dates <= np.datetime64(pd.Timestamp(test.end)))
                if not inside.any() or not float(test.lift_se) > 0:
                    raise InputError("lift test window outside the data or lift_se not positive",
                                     row=row)
                c = series.channels.index(test.channel)
                implied.append(media[np.flatnonzero(inside), c].sum() * self.y_scale_)
                observed.append(float(test.lift))
                error.append(float(test.lift_se))
            pm.Normal("lift_tests", mu=pt.stack(implied), sigma=np.array(error),
                      observed=np.array(observed))
        if self.calibration is not None:
            if not isinstance(self.calibration, Attribution):
                raise EngineError("bayes_roas: calibration must be an engine.Attribution")
            table = self.calibration.table.set_index("channel")
            column = "conversions" if self.outcome_ == "conversions" else "value"
            shared = [c for c in series.channels if c in table.index and table.loc[c, column] > 0]
            if not shared:
                raise EngineError("bayes_roas: the calibration attribution credits none of the "
                                  "model's channels")
            index = [series.channels.index(c) for c in shared]
            total = media.sum(axis=0)[index] * self.y_scale_
            tau = pm.HalfNormal("calibration_tau", self.calibration_sigma)
            pm.Normal("calibration", mu=pt.log(total + 1e-12), sigma=tau,
                      observed=np.log(table.loc[shared, column].to_numpy(dtype=float)))

    def _sample(self, model):
        sampler = self.sampler
        if sampler == "auto":
            try:
                import nutpie  # noqa: F401
                sampler = "nutpie"
            except ImportError:
                sampler = "pymc"
        self.sampler_ = sampler
        seed = None if self.rng is None else int(np.random.default_rng(self.rng).integers(2**31))
        if sampler == "nutpie":
            import nutpie

            compiled = nutpie.compile_pymc_model(model)
            return nutpie.sample(compiled, draws=int(self.draws), tune=int(self.tune),
                                 chains=int(self.chains), seed=seed,
                                 target_accept=float(self.target_accept),
                                 progress_bar=bool(self.progress))
        import pymc as pm

        with model:
            return pm.sample(draws=int(self.draws), tune=int(self.tune), chains=int(self.chains),
                             cores=1, random_seed=seed, target_accept=float(self.target_accept),
                             progressbar=bool(self.progress), compute_convergence_checks=False)

    # -- posterior -------------------------------------------------------------------------------
    def _draws(self) -> dict:
        """Posterior arrays with chains and draws stacked: ``(D,)`` or ``(D, dim)``."""
        posterior = self.idata_.posterior
        out = {}
        for name in posterior.data_vars:
            values = np.asarray(posterior[name])
            out[name] = values.reshape((-1,) + values.shape[2:])
        return out

    def _params(self, draws: dict, component) -> dict:
        prefix = "adstock_" if component is self.adstock_ else "saturation_"
        return {p: draws[prefix + p] for p in component.parameters}

    def contributions(self, spend: np.ndarray) -> np.ndarray:
        """Posterior draws of each channel's contribution per period for a spend plan.

        Parameters
        ----------
        spend : array, shape (T, C) or (k, T, C)

        Returns
        -------
        ndarray, shape (D, T, C) or (D, k, T, C), in outcome units.
        """
        self._require_fit()
        draws = self.posterior_
        spend = np.asarray(spend, dtype=float) / self.spend_scale_
        extra = spend.ndim - 2
        ad = {k: v.reshape(v.shape[:1] + (1,) * extra + v.shape[1:])
              for k, v in self._params(draws, self.adstock_).items()}
        sat = {k: v.reshape(v.shape[:1] + (1,) * extra + v.shape[1:])
               for k, v in self._params(draws, self.saturation_).items()}
        curve = self.saturation_.apply(self.adstock_.apply(spend[None], ad), sat)
        beta = draws["beta"].reshape(draws["beta"].shape[:1] + (1,) * (extra + 1) + (-1,))
        return curve * beta * self.y_scale_

    def _with_tail(self, spend: np.ndarray) -> np.ndarray:
        """``spend`` followed by ``max_lag`` periods without spend (carryover counted)."""
        tail = np.zeros(spend.shape[:-2] + (self.adstock_.max_lag, spend.shape[-1]))
        return np.concatenate([spend, tail], axis=-2)

    def _summarise(self, warn: bool = True) -> None:
        import arviz as az

        self.posterior_ = self._draws()
        series = self.series_
        spend = self._with_tail(series.spend)
        contribution = self.contributions(spend).sum(axis=1)  # (D, C)
        totals = series.spend.sum(axis=0)
        roas = contribution / totals
        marginal = self.contributions(self._with_tail(series.spend * 1.01)).sum(axis=1)
        mroas = (marginal - contribution) / (0.01 * totals)
        tail = (1 - self.ci_level) / 2
        lo, hi = tail, 1 - tail
        self.roas_ = pd.DataFrame({
            "channel": list(series.channels), "spend": totals,
            "value": contribution.mean(axis=0),
            "value_lower": np.quantile(contribution, lo, axis=0),
            "value_upper": np.quantile(contribution, hi, axis=0),
            "roas": roas.mean(axis=0), "roas_lower": np.quantile(roas, lo, axis=0),
            "roas_upper": np.quantile(roas, hi, axis=0),
            "mroas": mroas.mean(axis=0), "mroas_lower": np.quantile(mroas, lo, axis=0),
            "mroas_upper": np.quantile(mroas, hi, axis=0)})
        self.contribution_draws_ = contribution
        self.roas_draws_ = roas
        names = [v for v in ("roas", "adstock_alpha", "adstock_theta", "saturation_lam",
                             "saturation_half", "saturation_shape", "level", "intercept", "trend",
                             "sigma") if v in self.idata_.posterior]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Unrounded: a rounded 1.01 would hide whether R-hat is under the 1.01 threshold.
            summary = az.summary(self.idata_, var_names=names, kind="diagnostics",
                                 round_to="none")
        self.diagnostics_ = summary[["r_hat", "ess_bulk", "ess_tail"]].rename_axis(
            "parameter").reset_index()
        stats = getattr(self.idata_, "sample_stats", None)
        self.divergences_ = int(np.asarray(stats["diverging"]).sum()) if stats is not None \
            and "diverging" in stats else 0
        worst_rhat = float(self.diagnostics_["r_hat"].max())
        worst_ess = float(self.diagnostics_["ess_bulk"].min())
        self.converged_ = (worst_rhat < 1.01 and worst_ess >= 400 and self.divergences_ == 0)
        if warn and not self.converged_:
            warnings.warn(f"bayes_roas: not converged (max R-hat {worst_rhat:.3f}, min bulk ESS "
                          f"{worst_ess:.0f}, {self.divergences_} divergences); sample longer "
                          "(draws, tune) or check the priors", ConvergenceWarning, stacklevel=3)

    def _require_fit(self) -> None:
        if not hasattr(self, "idata_"):
            raise NotFittedError("bayes_roas is not fitted yet; call fit(data, ...) first")

    # -- results ---------------------------------------------------------------------------------
    def attribute(self) -> Attribution:
        """The ROAS table as an :class:`engine.Attribution`: contribution per channel as
        ``value`` (and ``conversions`` for a conversions outcome) with intervals, plus
        ``spend, roas, roas_lower, roas_upper, mroas``."""
        self._require_fit()
        table = self.roas_
        value = table["value"].to_numpy()
        conversions = value if self.outcome_ == "conversions" else np.full(len(value), np.nan)
        share = value / value.sum() if value.sum() > 0 else np.full(len(value), np.nan)
        bounds = {"value_lower": table["value_lower"], "value_upper": table["value_upper"]}
        if self.outcome_ == "conversions":
            bounds.update(conversions_lower=table["value_lower"],
                          conversions_upper=table["value_upper"])
        extra = {"share": share}
        extra.update({k: table[k].to_numpy() for k in ("spend", "roas", "roas_lower",
                                                        "roas_upper", "mroas")})
        return Attribution.from_credit(
            self.name, list(table["channel"]), conversions, value, ci_level=float(self.ci_level),
            draws={"value": self.contribution_draws_}, params=self.get_params(), extra=extra,
            **bounds)

    # Hyper-parameters reported by get_params and kept by save (the calibration data are not).
    _PARAMS = ("adstock", "saturation", "max_lag", "roas_prior", "media_share_prior",
               "seasonality", "trend", "calibration_sigma", "draws", "tune", "chains", "sampler",
               "target_accept", "ci_level", "rng")

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self._PARAMS}

    # -- response-model protocol (engine.budget) -------------------------------------------------
    @property
    def outcome_name(self) -> str:
        return self.outcome_

    def current_allocation(self) -> np.ndarray:
        """Spend per channel over the fitted window."""
        self._require_fit()
        return self.series_.spend.sum(axis=0)

    def predict(self, allocations) -> np.ndarray:
        """Posterior draws of the total outcome over the fitted window (carryover after it
        included) for allocations of total spend per channel ``(k, C)``: each channel's spend
        keeps the current pattern over periods, scaled to its new total (spread evenly where
        the channel spent nothing). Returns ``(D, k)``."""
        self._require_fit()
        return self._baseline_total()[:, None] + self.response(allocations).sum(axis=2)

    def response(self, allocations) -> np.ndarray:
        """Posterior draws of each channel's contribution (carryover after the window
        included) for allocations ``(k, C)`` spread as in :meth:`predict`: ``(D, k, C)``.
        ``predict`` is the baseline plus their sum; each channel's part depends on its own
        spend only, which the budget optimiser uses for cheap gradients."""
        self._require_fit()
        allocations = np.atleast_2d(np.asarray(allocations, dtype=float))
        # Adstock is linear, so a plan's adstocked spend is the allocation times the adstocked
        # pattern, computed once per fit; only the saturation runs per allocation.
        stock = self._adstocked_pattern()  # (D, T + max_lag, C)
        draws = self.posterior_
        sat = {k: v[:, None, :] for k, v in self._params(draws, self.saturation_).items()}
        beta = draws["beta"] * self.y_scale_  # (D, C)
        n_draws, periods, n_channels = stock.shape
        parts = np.empty((n_draws, len(allocations), n_channels))
        step = max(1, _PREDICT_CELLS // (n_draws * periods * n_channels))
        for lo in range(0, len(allocations), step):
            part = allocations[lo:lo + step]
            curve = self.saturation_.apply(stock[:, None] * part[None, :, None, :], sat)
            parts[:, lo:lo + step] = curve.sum(axis=2) * beta[:, None, :]
        return parts

    def _adstocked_pattern(self) -> np.ndarray:
        """Each channel's current spend pattern over the window (its column summing to 1;
        even where the channel spent nothing), followed by ``max_lag`` periods without spend,
        scaled and adstocked with every posterior draw: ``(D, T + max_lag, C)``."""
        if not hasattr(self, "_adstocked"):
            series = self.series_
            current = series.spend.sum(axis=0)
            pattern = np.where(current > 0, series.spend / np.where(current > 0, current, 1.0),
                               1.0 / len(series.y))  # (T, C)
            ad = self._params(self.posterior_, self.adstock_)
            self._adstocked = self.adstock_.apply(
                self._with_tail(pattern)[None] / self.spend_scale_, ad)
        return self._adstocked

    def _baseline_total(self) -> np.ndarray:
        """Posterior draws of the baseline summed over the window, in outcome units."""
        if not hasattr(self, "_baseline"):
            series, draws = self.series_, self.posterior_
            trend, season = self._baseline_features(series.dates)
            controls = (series.controls - self.control_center_) / self.control_scale_
            total = draws["intercept"] * len(series.y)
            if trend.shape[1]:
                total = total + draws["trend"] * trend[:, 0].sum()
            if season.shape[1]:
                total = total + draws["season"] @ season.sum(axis=0)
            if controls.shape[1]:
                total = total + draws["gamma"] @ controls.sum(axis=0)
            self._baseline = total * self.y_scale_
        return self._baseline

    def predict_series(self, noise: bool = False, rng=None) -> np.ndarray:
        """Posterior draws of the outcome per period ``(D, T)``: its expectation, or with
        ``noise`` the posterior predictive (the observation noise of each draw added)."""
        self._require_fit()
        series, draws = self.series_, self.posterior_
        trend, season = self._baseline_features(series.dates)
        controls = (series.controls - self.control_center_) / self.control_scale_
        mu = np.repeat(draws["intercept"][:, None], len(series.y), axis=1)
        if trend.shape[1]:
            mu = mu + draws["trend"][:, None] * trend[:, 0]
        if season.shape[1]:
            mu = mu + draws["season"] @ season.T
        if controls.shape[1]:
            mu = mu + draws["gamma"] @ controls.T
        if noise:
            rng = np.random.default_rng(rng)
            mu = mu + draws["sigma"][:, None] * rng.standard_normal(mu.shape)
        return mu * self.y_scale_ + self.contributions(series.spend).sum(axis=2)

    # -- plots -----------------------------------------------------------------------------------
    def plot_fit(self, ax=None):
        """Posterior predictive check: the observed outcome against the posterior predictive
        mean and ``ci_level`` band per period (observation noise included). Returns the
        matplotlib Axes."""
        import matplotlib.pyplot as plt

        series = self.series_
        mu = self.predict_series(noise=True, rng=self.rng)
        tail = (1 - self.ci_level) / 2
        if ax is None:
            _, ax = plt.subplots(figsize=(10, 4))
        ax.fill_between(series.dates, np.quantile(mu, tail, axis=0),
                        np.quantile(mu, 1 - tail, axis=0), color="#4C72B0", alpha=0.3,
                        label=f"{self.ci_level:.0%} interval")
        ax.plot(series.dates, mu.mean(axis=0), color="#4C72B0", label="posterior mean")
        ax.plot(series.dates, series.y, color="black", lw=0.8, label="observed")
        ax.set_title(f"{self.name}: posterior predictive fit to the {self.outcome_}")
        ax.legend(loc="upper left")
        return ax

    def response_curves(self, points: int = 41, up_to: float = 2.0) -> pd.DataFrame:
        """Each channel's total contribution (mean and interval) when its spend over the window
        is scaled from 0 to ``up_to`` times the current plan, the others unchanged:
        ``channel, multiplier, spend, value, value_lower, value_upper``."""
        self._require_fit()
        series = self.series_
        multipliers = np.linspace(0.0, up_to, points)
        tail = (1 - self.ci_level) / 2
        frames = []
        for c, channel in enumerate(series.channels):
            plans = np.repeat(series.spend[None], points, axis=0)
            plans[:, :, c] *= multipliers[:, None]
            value = self.contributions(self._with_tail(plans))[..., c].sum(axis=2)  # (D, k)
            frames.append(pd.DataFrame({
                "channel": channel, "multiplier": multipliers,
                "spend": multipliers * series.spend[:, c].sum(), "value": value.mean(axis=0),
                "value_lower": np.quantile(value, tail, axis=0),
                "value_upper": np.quantile(value, 1 - tail, axis=0)}))
        return pd.concat(frames, ignore_index=True)

    def plot_response_curves(self, ax=None, up_to: float = 2.0):
        """:meth:`response_curves` drawn per channel, the current spend marked."""
        import matplotlib.pyplot as plt

        curves = self.response_curves(up_to=up_to)
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.5))
        for channel, curve in curves.groupby("channel", sort=False):
            line, = ax.plot(curve["spend"], curve["value"], label=channel)
            ax.fill_between(curve["spend"], curve["value_lower"], curve["value_upper"],
                            color=line.get_color(), alpha=0.2)
            now = curve.loc[np.isclose(curve["multiplier"], 1.0)]
            ax.scatter(now["spend"], now["value"], color=line.get_color(), zorder=3)
        ax.set_xlabel("spend over the window")
        ax.set_ylabel(f"contribution to {self.outcome_}")
        ax.set_title(f"{self.name}: response curves (dots: current spend)")
        ax.legend()
        return ax

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fitted model (posterior, data, settings) to a netCDF file (ArviZ).

        The file is written under a temporary name and renamed into place, so a failure never
        leaves a partial file, nor replaces an earlier one.
        """
        import xarray as xr

        self._require_fit()
        series = self.series_
        idata = self.idata_.copy()
        constant = xr.Dataset({
            "dates": ("period", series.dates), "y": ("period", series.y),
            "spend": (("period", "channel"), series.spend),
            "controls": (("period", "control"), series.controls)},
            coords={"channel": list(series.channels), "control": list(series.control_names)})
        if "constant_data" in idata.groups():
            del idata.constant_data
        idata.add_groups({"constant_data": constant})
        settings = {k: v for k, v in self.get_params().items()
                    if k not in ("adstock", "saturation")}
        settings.update(adstock=_describe(self.adstock_), saturation=_describe(self.saturation_),
                        outcome=self.outcome_, step_days=series.step_days)
        idata.posterior.attrs["engine_bayes_roas"] = json.dumps(settings, default=str)
        with atomic_path(path) as partial:
            idata.to_netcdf(str(partial))

    @classmethod
    def load(cls, path) -> "BayesianROAS":
        """A fitted model from :meth:`save` (for prediction, ROAS tables and budgets)."""
        import arviz as az

        try:
            idata = az.from_netcdf(str(path))
            settings = json.loads(idata.posterior.attrs["engine_bayes_roas"])
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"not a saved bayes_roas model: {exc}", source=str(path)) from None
        # A file saved before a hyper-parameter existed gets its default.
        model = cls(**{k: settings[k] for k in cls._PARAMS
                       if k in settings and k not in ("adstock", "saturation")})
        model.adstock_ = _rebuild(settings["adstock"], ADSTOCKS)
        model.saturation_ = _rebuild(settings["saturation"], SATURATIONS)
        model.outcome_ = settings["outcome"]
        data = idata.constant_data
        series = Series(dates=np.asarray(data["dates"]), y=np.asarray(data["y"]),
                        spend=np.asarray(data["spend"]), controls=np.asarray(data["controls"]),
                        channels=tuple(str(c) for c in data["channel"].values),
                        control_names=tuple(str(c) for c in data["control"].values),
                        step_days=float(settings["step_days"]))
        model._setup(series)
        model.idata_ = idata
        model._summarise(warn=False)  # reported when it was fitted; see converged_
        return model


def _describe(component) -> dict:
    kind = {v: k for k, v in {**ADSTOCKS, **SATURATIONS}.items()}.get(type(component))
    if kind is None:
        raise EngineError(f"bayes_roas: cannot save a custom component {component!r}")
    return {"kind": kind, **{k: list(v) if isinstance(v, tuple) else v
                             for k, v in vars(component).items()}}


def _rebuild(description: dict, table: dict):
    fields = dict(description)
    cls = table[fields.pop("kind")]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
