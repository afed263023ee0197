"""Data-driven incrementality on journeys: a Bayesian conversion model and counterfactual credit.

The probability that a journey converts is modelled from its touches, with a baseline and
per-channel effects:

* ``link="cloglog"``, the independent-exposure model: every touch has its own chance to cause
  the conversion, so ``P = 1 - (1 - p0) prod_c (1 - q_c)^x_c``, i.e. a hazard
  ``-log(1 - P) = h0 + sum_c e_c x_c`` with ``e_c = -log(1 - q_c) >= 0``;
* ``link="logit"``: ``logit P = a + sum_c b_c x_c``.

``x_c`` is the channel's touch count through a diminishing-returns transform (``log2(1 + n)``
by default), optionally each touch weighted by ``2^(-age / half_life)`` (recency; needs touch
ages), plus, with ``position=True``, whether the channel opened and whether it closed the
journey. Effects are non-negative by default: ``e = max(0, r)`` with ``r ~ Normal(0, tau)``,
a prior with half its mass exactly at zero, so a channel that does nothing can get exactly
zero credit in most draws; ``signed=True`` allows harm. ``tau`` shrinks all channels together
(hierarchical); ``groups`` (campaigns within channels) shrinks each group's members towards the
group's own effect. Journey-level controls (``fit(journeys, controls=...)``) move the baseline
and take no credit. Identical journeys collapse into one row with counts, and the binomial
likelihood runs over these rows: millions of journeys cost what their distinct feature rows
cost. NUTS (nutpie when installed) by default; ``method="laplace"`` is the fast approximation
for very large inputs: the log-likelihood replaced by its second-order expansion at the
posterior mode (the priors kept exact), so sampling no longer touches the rows.

Both start from that mode (L-BFGS-B on the rows) and sample in coordinates the mode's curvature
has whitened: at a million journeys the effects are known to a thousandth of their prior scale
and strongly correlated with the baseline, and NUTS in the raw coordinates spends its whole
tree depth on that.

**Credit.** For each row and posterior draw, the fitted conversion probability with only a set
``S`` of the journey's channels switched on (the others' touches removed) is a cooperative game;
its exact Shapley values over the channels present split the journey's incremental probability
``P(all) - P(none)``. Each observed conversion (and its revenue) is split in proportion: a share
``P(none) / P(all)`` to the ``(baseline)`` row, ``phi_c / P(all)`` to channel ``c``; so channel
credit estimates the incremental conversions and channel plus baseline credit sums to the
total. Removal effects (switch a channel off in every journey) come as extra columns. Intervals
are quantiles over posterior draws. With a spend table, ``roas`` gives incremental revenue per
unit of spend with its interval.

References
----------
Shao, X. and Li, L. (2011). Data-driven multi-touch attribution models. KDD.
Dalessandro, B. et al. (2012). Causally motivated attribution for online advertising. ADKDD.
Lundberg, S. and Lee, S.-I. (2017). A unified approach to interpreting model predictions
(Shapley values of a model's counterfactual game). NeurIPS.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd

from engine.errors import EngineError, InputError, MissingDataError
from engine.journeys import BASELINE, Journeys
from engine.models._base import AttributionModel
from engine.results import Attribution

LINKS = ("cloglog", "logit")
TRANSFORMS = ("log", "linear", "binary")
METHODS = ("nuts", "laplace")
_BASELINE_SD = {"cloglog": 1.5, "logit": 2.0}
#: Journeys touching more distinct channels than this are refused (exact Shapley is 2^k).
MAX_CHANNELS_PER_JOURNEY = 16
_CELLS = 1 << 22  # float64 cells per block of the Shapley evaluation (32 MiB)


def channel_features(journeys: Journeys, *, transform: str = "log",
                     half_life: float | None = None, position: bool = False):
    """Per-journey feature matrix ``(n_journeys, n_channels * (1 + 2 * position))``.

    Columns: the transformed (optionally recency-weighted) touch count of each channel, then
    with ``position`` a first-touch and a last-touch indicator per channel.

    Examples
    --------
    >>> j = Journeys.from_lists([["a", "b", "a"], ["b"]], conversions=[1, 0], nulls=[0, 1])
    >>> channel_features(j, transform="linear").tolist()
    [[2.0, 1.0], [0.0, 1.0]]
    >>> channel_features(j, transform="log", position=True)[0].tolist()
    [1.584962500721156, 1.0, 1.0, 0.0, 1.0, 0.0]
    """
    n, c = journeys.n_journeys, journeys.n_channels
    journey = journeys.journey_index
    weight = np.ones(journeys.n_touches)
    if half_life is not None:
        journeys.require("ages", model="incremental (half_life)")
        weight = np.exp2(-journeys.ages / half_life)
    counts = np.bincount(journey.astype(np.int64) * c + journeys.codes, weights=weight,
                         minlength=n * c).reshape(n, c)
    if transform == "log":
        counts = np.log2(1.0 + counts)
    elif transform == "binary":
        counts = (counts > 0).astype(float)
    if not position:
        return counts
    first = np.zeros((n, c))
    last = np.zeros((n, c))
    lengths = np.diff(journeys.offsets)
    has = lengths > 0
    rows = np.flatnonzero(has)
    first[rows, journeys.codes[journeys.offsets[:-1][has]]] = 1.0
    last[rows, journeys.codes[journeys.offsets[1:][has] - 1]] = 1.0
    return np.hstack([counts, first, last])


def _canonical_order(journeys: Journeys, features: np.ndarray, n_channels: int) -> np.ndarray:
    """Channels ordered by what the data says about them (not by their names or codes), so that
    relabelling or recoding channels fits exactly the same model."""
    outcome = journeys.conversions
    trials = journeys.conversions + journeys.nulls
    base = features[:, :n_channels]
    keys = [(-float(trials @ base[:, k]), -float(outcome @ base[:, k]),
             -float(trials @ (base[:, k] > 0)), -float(outcome @ (base[:, k] > 0)))
            for k in range(n_channels)]
    names = journeys.channels
    return np.array(sorted(range(n_channels), key=lambda k: (keys[k], names[k])))


def _collapse(features: np.ndarray, successes: np.ndarray, trials: np.ndarray,
              value: np.ndarray):
    """Identical feature rows merged: ``rows, successes, trials, value, inverse``."""
    rows, inverse = np.unique(features, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    m = len(rows)
    return (rows, np.bincount(inverse, successes, m), np.bincount(inverse, trials, m),
            np.bincount(inverse, value, m), inverse)


def _plain(value):
    """A numpy scalar as the Python value (so messages show ``'p1'``, not ``np.str_('p1')``)."""
    return value.item() if isinstance(value, np.generic) else value


def _control_matrix(journeys: Journeys, controls) -> tuple[np.ndarray, list]:
    """Standardised control columns ``(n_journeys, k)`` and their names (see
    :meth:`Incremental.fit`); one-line errors naming the column and row of a bad value."""
    n = journeys.n_journeys
    if controls is None:
        return np.zeros((n, 0)), []
    if not isinstance(controls, pd.DataFrame):
        raise EngineError("incremental: controls must be a pandas DataFrame")
    keyed = journeys.person is not None and not isinstance(controls.index, pd.RangeIndex)
    if keyed:
        if controls.index.has_duplicates:
            twice = controls.index[controls.index.duplicated()][0]
            raise InputError(f"incremental: controls name person {_plain(twice)!r} twice")
        missing = ~pd.Index(journeys.person).isin(controls.index)
        if missing.any():
            first = _plain(journeys.person[np.flatnonzero(missing)[0]])
            raise InputError(f"incremental: controls have no row for person {first!r} (index "
                             "them by the journeys' person keys, or give one row per journey "
                             "in their order with a plain index)")
        controls = controls.loc[journeys.person].reset_index(drop=True)
    elif len(controls) != n:
        raise InputError(f"incremental: controls have {len(controls)} rows for {n} journeys; "
                         "give one row per journey, in their order"
                         + ("" if journeys.person is None else ", or index them by person"))
    columns, names = [], []
    for name in controls.columns:
        column = controls[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            values = column.to_numpy(dtype=float, na_value=np.nan)
            bad = ~np.isfinite(values)
            if bad.any():
                raise InputError(f"incremental: control is missing or not finite "
                                 f"({column.iloc[np.flatnonzero(bad)[0]]!r})", column=str(name),
                                 row=int(np.flatnonzero(bad)[0]) + 1)
            parts, labels = [values], [str(name)]
        else:
            if column.isna().any():
                raise InputError("incremental: control is missing", column=str(name),
                                 row=int(np.flatnonzero(column.isna().to_numpy())[0]) + 1)
            levels = sorted(column.astype(str).unique())
            text = column.astype(str).to_numpy()
            parts = [(text == level).astype(float) for level in levels[1:]]
            labels = [f"{name}={level}" for level in levels[1:]]
        for values, label in zip(parts, labels):
            sd = values.std()
            if not sd > 0:
                raise InputError("incremental: control is the same for every journey (the "
                                 "baseline already is that)", column=label)
            columns.append((values - values.mean()) / sd)
            names.append(label)
    return (np.column_stack(columns) if columns else np.zeros((n, 0))), names


class Incremental(AttributionModel):
    """Bayesian conversion model on journeys; credit for the conversions a channel causes.

    Parameters
    ----------
    link : {"cloglog", "logit"}
        ``cloglog``: the independent-exposure model (additive hazard); ``logit``: logistic.
    transform : {"log", "linear", "binary"}
        Touch counts through ``log2(1 + n)`` (diminishing returns), as they are, or present.
    half_life : float, optional
        Weight touches by ``2^(-age / half_life)`` (days before the journey's end; needs ages).
    position : bool
        Add first-touch and last-touch effects per channel.
    signed : bool
        Allow negative channel effects (default: non-negative, with mass at zero).
    prior_scale : float
        Scale of the shrinkage prior on effects: ``tau ~ HalfNormal(prior_scale)``, effects in
        units of the average conversion hazard (cloglog) or log-odds (logit).
    groups : mapping, optional
        ``{channel: group}``, e.g. campaigns within their channel: the raw effects of a group's
        members shrink towards the group's own effect (``Normal(group, tau_within)``, the
        group's effect ``Normal(0, tau)``, ``tau_within ~ Gamma(2, 2 / prior_scale)``), so a
        campaign with few journeys borrows from its siblings. Channels not named keep
        ``Normal(0, tau)``.
    method : {"nuts", "laplace"}
        NUTS on the collapsed rows (nutpie when installed, else PyMC's), or NUTS on the
        likelihood's Gaussian approximation at its mode (fast; for very large inputs, where
        that approximation is accurate).
    draws, tune, chains : int
        NUTS settings (per chain).
    target_accept : float
    n_draws : int
        Posterior draws used for the credit and its intervals (a thinned subset).
    ci_level : float
    rng : int or numpy.random.Generator, optional
    progress : bool

    Examples
    --------
    >>> import numpy as np, engine
    >>> paths = [["a", "b"], ["b"], ["a"], ["c"], ["b", "c"]]
    >>> j = engine.Journeys.from_lists(paths, conversions=[40, 20, 30, 5, 25],
    ...                                nulls=[160, 380, 170, 195, 275])
    >>> model = Incremental(method="laplace", draws=200, n_draws=100, rng=1).fit(j)
    >>> table = model.attribute().table
    >>> table["channel"].tolist()
    ['a', 'b', 'c', '(baseline)']
    >>> bool(np.isclose(table["conversions"].sum(), 120))
    True
    """

    name = "incremental"
    description = ("Bayesian conversion model on journeys: credit for the conversions each "
                   "channel causes (Shapley split of the modelled incremental probability)")
    paths_only = False  # with half_life it weighs touches by their ages

    def __init__(self, *, link="cloglog", transform="log", half_life=None, position=False,
                 signed=False, prior_scale=1.0, groups=None, method="nuts", draws=1000,
                 tune=1000, chains=2, target_accept=0.9, n_draws=200, ci_level=0.9, rng=None,
                 progress=False):
        self.link = link
        self.transform = transform
        self.half_life = half_life
        self.position = position
        self.signed = signed
        self.prior_scale = prior_scale
        self.groups = groups
        self.method = method
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.target_accept = target_accept
        self.n_draws = n_draws
        self.ci_level = ci_level
        self.rng = rng
        self.progress = progress

    # -- checks ----------------------------------------------------------------------------------
    def _validate_params(self) -> None:
        self._check_sampling()
        for key, allowed in (("link", LINKS), ("transform", TRANSFORMS), ("method", METHODS)):
            if getattr(self, key) not in allowed:
                raise EngineError(f"incremental: {key} must be one of {', '.join(allowed)}, "
                                  f"not {getattr(self, key)!r}")
        if self.half_life is not None and not (isinstance(self.half_life, Real)
                                               and self.half_life > 0):
            raise EngineError(f"incremental: half_life must be a positive number of days or "
                              f"None, not {self.half_life!r}")
        if not (isinstance(self.prior_scale, Real) and self.prior_scale > 0):
            raise EngineError("incremental: prior_scale must be a positive number")
        for key in ("draws", "chains"):
            value = getattr(self, key)
            if not (isinstance(value, Integral) and value >= 1):
                raise EngineError(f"incremental: {key} must be a positive integer")
        if not (isinstance(self.tune, Integral) and self.tune >= 0):
            raise EngineError("incremental: tune must be a non-negative integer")
        if not (isinstance(self.target_accept, Real) and 0 < self.target_accept < 1):
            raise EngineError("incremental: target_accept must be between 0 and 1")
        if self.n_draws < 1:
            raise EngineError("incremental: n_draws must be at least 1 (credit comes from draws)")

    def _check_data(self, journeys: Journeys, features: np.ndarray) -> None:
        trials = journeys.conversions + journeys.nulls
        if journeys.total_conversions <= 0:
            raise InputError("incremental: the journeys have no conversion: nothing to explain")
        if journeys.nulls.sum() <= 0:
            raise MissingDataError("incremental: every journey converts (no non-converting "
                                   "journeys): without a contrast the model cannot tell what a "
                                   "channel adds; read non-converting journeys too (a path "
                                   "table's null column, or an event log's touches without "
                                   "conversion)")
        if (journeys.conversions > trials + 1e-9).any():
            raise InputError("incremental: a journey row has more conversions than journeys "
                             "(conversions + nulls); one conversion per converting journey")
        present = np.bincount(journeys.codes, minlength=journeys.n_channels) > 0
        if present.sum() < 1:
            raise InputError("incremental: the journeys have no touch")
        distinct = features[:, :journeys.n_channels] > 0
        too_many = distinct.sum(axis=1).max(initial=0)
        if too_many > MAX_CHANNELS_PER_JOURNEY:
            raise InputError(f"incremental: a journey touches {too_many} distinct channels; "
                             f"exact credit handles at most {MAX_CHANNELS_PER_JOURNEY} "
                             "(group channels first)")
        self._warn_collinear(journeys, features, trials)

    @staticmethod
    def _warn_collinear(journeys: Journeys, features: np.ndarray, trials: np.ndarray) -> None:
        """Warn about channels whose features are (nearly) perfectly correlated: the data
        cannot tell their effects apart, so their credit rests on the prior."""
        n = journeys.n_channels
        x = features[:, :n]
        used = trials > 0
        if used.sum() < 3 or n < 2:
            return
        weights = trials[used] / trials[used].sum()
        x = x[used]
        centred = x - weights @ x
        cov = (centred * weights[:, None]).T @ centred
        sd = np.sqrt(np.clip(np.diag(cov), 0, None))
        pairs = []
        for i in range(n):
            for k in range(i + 1, n):
                if sd[i] > 0 and sd[k] > 0 and abs(cov[i, k] / (sd[i] * sd[k])) > 0.999:
                    pairs.append(f"{journeys.channels[i]} and {journeys.channels[k]}")
        if pairs:
            warnings.warn(f"incremental: perfectly collinear channels ({'; '.join(pairs)}): "
                          "the journeys cannot separate their effects, their split follows "
                          "the prior", stacklevel=4)

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, journeys, controls=None) -> Incremental:
        """Fit to ``journeys`` (see :meth:`AttributionModel.fit`), optionally with controls.

        Parameters
        ----------
        journeys : engine.Journeys or engine.ingest.table.JourneyTable
        controls : pandas.DataFrame, optional
            Journey-level covariates (device, region, prior purchases, ...), either one row per
            journey in the journeys' order, or indexed by the journeys' person keys (event
            logs). Numeric columns are standardised; text and categorical columns become
            indicators (the first level is the reference). They move the baseline
            (cloglog: multiply the whole hazard, as in a proportional-hazards model; logit: add
            to the log-odds) with ``Normal(0, 1)`` priors per standard deviation, and take no
            credit: a channel's credit is what it adds for journeys like these.
            ``control_effects_`` holds their posterior means. Continuous controls make every
            journey a row of its own (no collapse): bin them for millions of journeys.
        """
        self._controls = controls
        try:
            return super().fit(journeys)
        finally:
            del self._controls

    def _fit(self, journeys: Journeys) -> None:
        n_ch = journeys.n_channels
        features = channel_features(journeys, transform=self.transform,
                                    half_life=self.half_life, position=bool(self.position))
        self._check_data(journeys, features)
        blocks = features.shape[1] // n_ch
        order = _canonical_order(journeys, features, n_ch)
        columns = np.concatenate([order + b * n_ch for b in range(blocks)])
        controls, self.control_names_ = _control_matrix(journeys, self._controls)
        trials = journeys.conversions + journeys.nulls
        rows, successes, row_trials, _, inverse = _collapse(
            np.hstack([features[:, columns], controls]), journeys.conversions, trials,
            journeys.value)
        self.rows_ = rows
        self.row_successes_ = successes
        self.row_trials_ = row_trials
        self.row_conversions_ = np.bincount(inverse, journeys.conversions, len(rows))
        self.row_value_ = np.bincount(inverse, journeys.value, len(rows))
        self.order_ = order
        self.n_rows_ = len(rows)
        self._group_index = self._group_layout(journeys.channels, order)
        posterior, self.diagnostics_, self.divergences_ = self._sample(rows, successes,
                                                                       row_trials)
        self.posterior_ = posterior
        self._credit(journeys)

    def _group_layout(self, channels, order):
        """Group number of each channel in canonical order (-1: no group), or None."""
        if self.groups is None:
            return None
        if not hasattr(self.groups, "items"):
            raise EngineError("incremental: groups must be a mapping {channel: group}")
        unknown = sorted(set(self.groups) - set(channels))
        if unknown:
            raise EngineError(f"incremental: groups names unknown channel {unknown[0]!r} "
                              f"(channels: {', '.join(channels)})")
        names = sorted({str(g) for g in self.groups.values()})
        index = np.array([names.index(str(self.groups[channels[c]])) if channels[c] in
                          self.groups else -1 for c in order])
        self.group_names_ = names
        return index

    def _rate(self, successes: np.ndarray, trials: np.ndarray) -> float:
        rate = float(np.clip(successes.sum() / trials.sum(), 1e-6, 1 - 1e-6))
        return -np.log1p(-rate) if self.link == "cloglog" else float(np.log(rate / (1 - rate)))

    def _pilot(self, rows, successes, trials, n_controls: int = 0) -> _Pilot:
        """The posterior mode under Gaussian priors (L-BFGS-B on the collapsed rows), the
        log-likelihood's gradient and curvature there: what the sampler's coordinates are
        scaled by, and the whole likelihood of ``method="laplace"``."""
        from scipy.optimize import minimize

        k = rows.shape[1] - n_controls
        scale = self._rate(successes, trials)
        failures = trials - successes
        precision = np.r_[1.0 / _BASELINE_SD[self.link] ** 2,
                          np.full(k, 1.0 / float(self.prior_scale) ** 2), np.ones(n_controls)]

        def objective(theta):
            value, grad = _loglik(theta, rows, successes, failures, self.link, scale,
                                  n_controls, hessian=False)
            return -value + 0.5 * precision @ theta ** 2, -grad + precision * theta

        bounds = ([(None, None)] + [(None if self.signed else 0.0, None)] * k
                  + [(None, None)] * n_controls)
        with np.errstate(all="ignore"):
            found = minimize(objective, np.zeros(len(precision)), jac=True, method="L-BFGS-B",
                             bounds=bounds, options={"maxiter": 1000, "ftol": 1e-13,
                                                     "gtol": 1e-9})
        theta = found.x
        _, grad, hessian = _loglik(theta, rows, successes, failures, self.link, scale,
                                   n_controls)
        information = -hessian
        posterior = information + np.diag(precision)
        # The sampler's coordinates: theta = mode + sd * w, w about standard normal where the
        # data decide. (Whitening the correlations too, with the covariance's Cholesky
        # factor, shears the flat region of an effect at zero and mixes worse; nutpie's
        # low-rank mass matrix learns the correlations instead.)
        sd = np.sqrt(np.clip(np.diag(np.linalg.pinv(posterior, hermitian=True)), 1e-300, None))
        return _Pilot(theta=theta, grad=grad, information=information, sd=sd)

    def _build(self, rows, successes, trials, pilot: _Pilot, n_controls: int = 0):
        import pymc as pm
        import pytensor.tensor as pt

        k = rows.shape[1] - n_controls
        x, z = rows[:, :k], rows[:, k:]
        scale = self._rate(successes, trials)
        base_name = "log_baseline" if self.link == "cloglog" else "intercept"
        with pm.Model() as model:
            tau = pm.HalfNormal("tau", float(self.prior_scale))
            w = pm.Flat("w", shape=len(pilot.theta))
            theta = pilot.theta + pilot.sd * w
            base = pm.Deterministic(base_name, theta[0])
            spread, effect_logp = self._effect_prior(pm, pt, tau, k)
            if self.signed:
                raw = pm.Deterministic("raw_effect", theta[1:k + 1])
                effect = raw
            else:
                # raw ~ Normal(centre, spread), effect = max(raw, 0): a spike and slab, an
                # effect exactly zero with prior probability 1/2 (with groups, as likely as
                # the group's effect makes it). Many journeys pin a positive raw effect to a
                # small fraction of tau, while a negative one spreads over tau: one step size
                # cannot serve both. So raw = g(v) (see _stretch): the identity for v >= 0,
                # smoothly stretched by sqrt(spread / sd) below zero, so the negative side's
                # scale in v is the geometric mean of the two. Stretching all the way (by
                # spread / sd) would leave a dip in v's density just below zero that a channel
                # with mass on both sides cannot cross. Same posterior, only the coordinates
                # change (the Jacobian is added).
                stretched, log_jacobian = _stretch(theta[1:k + 1], pilot.sd[1:k + 1], spread,
                                                   pt)
                raw = pm.Deterministic("raw_effect", stretched)
                pm.Potential("stretch_jacobian", log_jacobian.sum())
                effect = pt.maximum(raw, 0.0)
            pm.Potential("baseline_prior",
                         pm.logp(pm.Normal.dist(0.0, _BASELINE_SD[self.link]), base))
            pm.Potential("effect_prior", effect_logp(raw))
            pm.Deterministic("effect", effect)
            gamma = None
            if n_controls:
                gamma = pm.Deterministic("control_effect", theta[k + 1:])
                pm.Potential("control_prior", pm.logp(pm.Normal.dist(0.0, 1.0), gamma).sum())
            if self.method == "laplace":
                # The log-likelihood's second-order expansion at the pilot's mode (the priors
                # stay exact): the Bernstein-von Mises approximation, exact in the limit of
                # many journeys, and free of the rows.
                step = pt.concatenate([base[None], effect]
                                      + ([gamma] if n_controls else [])) - pilot.theta
                loglik = (pt.dot(pilot.grad, step)
                          - 0.5 * pt.dot(step, pt.dot(pilot.information, step)))
            elif self.link == "cloglog":
                failures = trials - successes
                won = successes > 0
                if n_controls:
                    hazard = scale * pt.exp(pt.dot(z, gamma)) * (pt.exp(base) + pt.dot(x, effect))
                    log_p = pt.log(-pt.expm1(-pt.maximum(hazard[won], 1e-12)))
                    loglik = pt.dot(successes[won], log_p) - pt.dot(failures, hazard)
                else:
                    # log(1 - P) = -hazard is linear in the parameters, so the failures' part
                    # of the likelihood is two precomputed sums; only rows with a conversion
                    # need the per-row log(1 - exp(-hazard)).
                    hazard = scale * (pt.exp(base) + pt.dot(x[won], effect))
                    log_p = pt.log(-pt.expm1(-pt.maximum(hazard, 1e-12)))
                    loglik = (pt.dot(successes[won], log_p)
                              - scale * (failures.sum() * pt.exp(base)
                                         + pt.dot(failures @ x, effect)))
            else:
                failures = trials - successes
                eta = scale + base + pt.dot(x, effect)
                if n_controls:
                    eta = eta + pt.dot(z, gamma)
                loglik = (pt.dot(successes, -pt.softplus(-eta))
                          + pt.dot(failures, -pt.softplus(eta)))
            pm.Potential("likelihood", loglik)
        return model

    def _effect_prior(self, pm, pt, tau, k: int):
        """Spread of each raw effect (``tau``, or for a group's member its prior sd given the
        group's other members; it scales the stretch below zero) and a function of the raw
        effects that records ``group_effect`` and returns their log prior density.

        Ungrouped effects are ``Normal(0, tau)``. A group's members are ``Normal(group,
        tau_within)`` with the group's effect ``Normal(0, tau)`` (per feature block); the group
        effect is integrated out, so its members are jointly normal with covariance
        ``tau_within^2 I + tau^2 J`` (``J`` all ones; determinant and inverse by
        Sherman-Morrison). Sampled as a latent variable instead, a group effect whose members
        the data pin down is pinned by them when ``tau_within`` is small and free when it is
        large: a funnel (divergences, and R-hat up to 1.09 with three campaigns in a group).
        ``group_effect`` reports the group effect's mean given its members,
        ``tau^2 sum(raw) / (tau_within^2 + n tau^2)``, per draw. ``tau_within ~ Gamma(2, 2 /
        prior_scale)``: zero density at zero, so the members' spread cannot collapse into the
        neck that remains (with ``HalfNormal``, 26-58 divergences in 2,000 draws on the test's
        campaigns; 2-23 with it).
        """
        index = getattr(self, "_group_index", None)
        if index is None or (index < 0).all():
            return tau, lambda raw: pm.logp(pm.Normal.dist(0.0, tau), raw).sum()
        n_ch = len(index)
        blocks = k // n_ch
        n_groups = int(index.max()) + 1
        group = np.tile(index, blocks)
        block = np.repeat(np.arange(blocks), n_ch)
        grouped = np.flatnonzero(group >= 0)
        free = np.flatnonzero(group < 0)
        member = np.zeros((blocks * n_groups, k))  # (block, group) by raw effect
        member[block[grouped] * n_groups + group[grouped], grouped] = 1.0
        size = member.sum(axis=1)
        within = pm.Gamma("tau_within", alpha=2.0, beta=2.0 / float(self.prior_scale))
        # A member's prior sd given its group's other members (it scales the stretch below
        # zero): tau_within in a large group, sqrt(tau_within^2 + tau^2) alone in one.
        a, b = within ** 2, tau ** 2
        n = np.maximum(member.T @ size, 1)  # the size of each raw effect's group
        conditional = pt.sqrt(a * (a + n * b) / (a + (n - 1) * b))
        spread = pt.switch(group >= 0, conditional, tau)

        def logp(raw):
            sums = pt.dot(member, raw)
            pm.Deterministic("group_effect",
                             (b * sums / (a + size * b)).reshape((blocks, n_groups)))
            joint = _group_logp(sums, pt.dot(member, raw ** 2), size, a, b, pt)
            return joint + pm.logp(pm.Normal.dist(0.0, tau), raw[free]).sum()

        return spread, logp

    def _sample(self, rows, successes, trials):
        n_controls = len(self.control_names_)
        pilot = self._pilot(rows, successes, trials, n_controls)
        self.pilot_ = pilot
        groups = getattr(self, "_group_index", None)
        key = _fingerprint(self.link, self.method, bool(self.signed), float(self.prior_scale),
                           rows, successes, trials, pilot.theta, pilot.sd, pilot.grad,
                           pilot.information, n_controls,
                           np.zeros(0) if groups is None else groups)
        model = self._build(rows, successes, trials, pilot, n_controls)
        seed = int(np.random.default_rng(self.rng).integers(2**31))
        idata = _nuts(model, key, draws=int(self.draws), tune=int(self.tune),
                      chains=int(self.chains), seed=seed, target_accept=float(self.target_accept),
                      progress=bool(self.progress))
        return _stack(idata.posterior), *_diagnostics(idata)

    # -- credit ----------------------------------------------------------------------------------
    def _predictor(self, draws: dict) -> tuple[np.ndarray, np.ndarray]:
        """``base (D, 1)`` (``(D, rows)`` with controls) and per-channel additive contributions
        ``(D, rows, n_channels)`` of the linear predictor (hazard or log-odds) for every row,
        in canonical channel order."""
        n_controls = len(self.control_names_)
        rows = self.rows_[:, :self.rows_.shape[1] - n_controls]
        controls = self.rows_[:, rows.shape[1]:]
        n_ch = len(self.order_)
        blocks = rows.shape[1] // n_ch
        effect = draws["effect"]  # (D, K)
        scale = self._rate(self.row_successes_, self.row_trials_)
        parts = 0.0
        for b in range(blocks):
            cols = slice(b * n_ch, (b + 1) * n_ch)
            parts = parts + rows[None, :, cols] * effect[:, None, cols]
        shift = (draws["control_effect"] @ controls.T if n_controls
                 else np.zeros((len(effect), 1)))  # (D, rows) or (D, 1)
        if self.link == "cloglog":
            factor = scale * np.exp(shift)
            return factor * np.exp(draws["log_baseline"])[:, None], factor[..., None] * parts
        return scale + draws["intercept"][:, None] + shift, parts

    def _probability(self, linear: np.ndarray) -> np.ndarray:
        if self.link == "cloglog":
            return -np.expm1(-np.maximum(linear, 0.0))
        return 1.0 / (1.0 + np.exp(-linear))

    def _credit(self, journeys: Journeys) -> None:
        draws = _thin(self.posterior_, int(self.n_draws), self.rng)
        base, parts = self._predictor(draws)  # (D, 1 or R), (D, R, C)
        n_draws, n_rows, n_ch = parts.shape
        present = self.rows_[:, :n_ch] > 0
        conv, value, trials = self.row_conversions_, self.row_value_, self.row_trials_
        credit_conv = np.zeros((n_draws, n_ch))
        credit_value = np.zeros((n_draws, n_ch))
        removal = np.zeros((n_draws, n_ch))
        p_all = self._probability(base + parts.sum(axis=2))  # (D, R)
        p_none = np.broadcast_to(self._probability(base), p_all.shape)
        p_all_safe = np.maximum(p_all, 1e-300)
        from engine.models.shapley import all_coalitions, shapley_weights

        size = present.sum(axis=1)
        for k in np.unique(size):
            if k == 0:
                continue
            members = np.flatnonzero(size == k)
            masks = all_coalitions(int(k))
            # Shapley values are linear in the game: phi = v @ weights, one matrix product.
            w = shapley_weights(int(k))
            count = masks.sum(axis=1)
            weights = np.where(masks, w[np.maximum(count - 1, 0)][:, None],
                               -w[count][:, None])  # (2^k, k)
            # The removal effect: v(all) - v(all without c).
            drop = np.zeros((1 << k, k))
            drop[-1] = 1.0
            drop[(1 << k) - 1 - (1 << np.arange(k)), np.arange(k)] = -1.0
            block = max(1, _CELLS // (n_draws * (1 << k)))
            for lo in range(0, len(members), block):
                chunk = members[lo:lo + block]
                which = np.nonzero(present[chunk])[1].reshape(len(chunk), k)  # channel ids
                a = np.take_along_axis(parts[:, chunk, :], which[None], axis=2)  # (D, m, k)
                level = base if base.shape[1] == 1 else base[:, chunk]
                game = self._probability(level[..., None] + a @ masks.T.astype(float))
                game -= game[..., :1]  # (D, m, 2^k)
                phi = game @ weights  # (D, m, k)
                without = game @ drop
                # Add each (draw, row, slot) to its channel: a product with the one-hot map
                # of slots to channels (np.add.at is far slower).
                onehot = np.zeros((len(chunk) * k, n_ch))
                onehot[np.arange(len(chunk) * k), which.ravel()] = 1.0
                share = phi / p_all_safe[:, chunk][..., None]  # the part each channel caused
                credit_conv += (share * conv[chunk][None, :, None]).reshape(n_draws, -1) @ onehot
                credit_value += (share * value[chunk][None, :, None]).reshape(n_draws, -1) \
                    @ onehot
                removal += (without * trials[chunk][None, :, None]).reshape(n_draws, -1) @ onehot
        baseline_share = np.where(p_all > 0, p_none / p_all_safe, 1.0)
        base_conv = baseline_share @ conv
        base_value = baseline_share @ value
        inverse = np.argsort(self.order_)  # back from canonical to the journeys' channel order
        self.draws_ = {
            "conversions": np.column_stack([credit_conv[:, inverse], base_conv]),
            "value": np.column_stack([credit_value[:, inverse], base_value]),
            "removal_conversions": removal[:, inverse],
            "expected_conversions": p_all @ trials,
            "baseline_conversions": p_none @ trials,
        }
        blocks = draws["effect"].shape[1] // n_ch
        self.effects_ = pd.DataFrame(
            draws["effect"][:, np.argsort(np.concatenate(
                [self.order_ + b * n_ch for b in range(blocks)]))].mean(0)
            .reshape(-1, n_ch), index=self._feature_names(), columns=journeys.channels)
        self.control_effects_ = pd.Series(
            self.posterior_["control_effect"].mean(axis=0) if self.control_names_
            else np.zeros(0), index=pd.Index(self.control_names_, dtype=object),
            name="effect per standard deviation", dtype=float)

    def _feature_names(self) -> list[str]:
        names = [{"log": "log2(1 + touches)", "linear": "touches",
                  "binary": "touched"}[self.transform]]
        if self.half_life is not None:
            names[0] += f", half-life {self.half_life:g} d"
        if self.position:
            names += ["first touch", "last touch"]
        return names

    def _attribute(self) -> Attribution:
        draws = self.draws_
        channels = [*self.journeys_.channels, BASELINE]
        bounds = self._intervals({k: draws[k] for k in ("conversions", "value",
                                                         "removal_conversions")})
        removal = draws["removal_conversions"].mean(axis=0)
        extra = {"removal_conversions": np.append(removal, np.nan),
                 "removal_conversions_lower": np.append(bounds["removal_conversions"][0], np.nan),
                 "removal_conversions_upper": np.append(bounds["removal_conversions"][1],
                                                        np.nan)}
        return Attribution.from_credit(
            self.name, channels, conversions=draws["conversions"].mean(axis=0),
            value=draws["value"].mean(axis=0),
            conversions_lower=bounds["conversions"][0], conversions_upper=bounds["conversions"][1],
            value_lower=bounds["value"][0], value_upper=bounds["value"][1],
            ci_level=self.ci_level, draws={"conversions": draws["conversions"],
                                           "value": draws["value"]},
            params=self.get_params(), extra=extra)

    def roas(self, spend, outcome: str = "revenue") -> pd.DataFrame:
        """Incremental revenue (or conversions) per unit of spend, per channel, with its
        interval.

        Parameters
        ----------
        spend : mapping or pandas.Series or DataFrame
            Spend per channel over the journeys' period (``{channel: amount}``, a Series
            indexed by channel, or a table with ``channel`` and ``spend`` columns).
        outcome : {"revenue", "conversions"}
            What ``value`` counts: incremental revenue (ROAS) or incremental conversions
            (conversions per unit of spend), as in the aggregate ROAS model.

        Returns
        -------
        pandas.DataFrame
            ``channel, spend, value, value_lower, value_upper, roas, roas_lower, roas_upper``
            (the columns of the aggregate ROAS model's table that journeys can give).
        """
        self._require_fitted()
        if outcome not in ("revenue", "conversions"):
            raise EngineError(f"incremental.roas: outcome must be 'revenue' or 'conversions', "
                              f"not {outcome!r}")
        if isinstance(spend, pd.DataFrame):
            if not {"channel", "spend"} <= set(spend.columns):
                raise EngineError("incremental.roas: a spend table needs channel and spend "
                                  "columns")
            spend = spend.groupby("channel")["spend"].sum()
        spend = pd.Series(spend, dtype=float)
        channels = list(self.journeys_.channels)
        unknown = sorted(set(spend.index) - set(channels))
        if unknown:
            raise EngineError(f"incremental.roas: spend for unknown channel {unknown[0]!r}")
        if (spend < 0).any() or not np.isfinite(spend).all():
            raise EngineError("incremental.roas: spend must be finite and non-negative")
        spend = spend.reindex(channels)
        value = self.draws_["value" if outcome == "revenue" else "conversions"][:, :-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            roas = value / spend.to_numpy()[None, :]
        low, high = self._intervals({"value": value, "roas": roas}).values()
        table = pd.DataFrame({"channel": channels, "spend": spend.to_numpy(),
                              "value": value.mean(axis=0), "value_lower": low[0],
                              "value_upper": low[1], "roas": roas.mean(axis=0),
                              "roas_lower": high[0], "roas_upper": high[1]})
        return table[table["spend"].notna()].reset_index(drop=True)

    def _require_fitted(self) -> None:
        from engine.errors import NotFittedError

        if not hasattr(self, "draws_"):
            raise NotFittedError("incremental is not fitted yet; call fit(journeys) first")


def _stretch(v, sd, tau, xp=np):
    """``raw = g(v)`` and ``log g'(v)``: the identity for ``v >= 0``; below zero ``g' = 1 +
    (sqrt(tau / sd) - 1) (1 - e^(v / sd))^2``, which is continuous with its derivative and
    tends to ``sqrt(tau / sd)`` (``xp``: numpy or pytensor.tensor)."""
    stretch = xp.sqrt(tau / sd) - 1.0
    below = xp.minimum(v, 0.0)
    bend = -xp.expm1(below / sd)  # 0 at and above zero, -> 1 far below
    # g(v) = v + stretch * integral from 0 to v of (1 - e^(t / sd))^2 dt
    area = below - 2.0 * sd * xp.expm1(below / sd) + 0.5 * sd * xp.expm1(2.0 * below / sd)
    return v + stretch * area, xp.log1p(stretch * bend ** 2)


@dataclass(frozen=True)
class _Pilot:
    """Mode ``theta`` (baseline, effects) under Gaussian priors; the log-likelihood's gradient
    ``grad`` and information (minus its Hessian) there; the marginal standard deviations of
    the Gaussian posterior approximation (the sampler's scales)."""

    theta: np.ndarray
    grad: np.ndarray
    information: np.ndarray
    sd: np.ndarray


def _loglik(theta, rows, successes, failures, link: str, scale: float, n_controls: int = 0,
            hessian: bool = True):
    """Binomial log-likelihood of the collapsed rows at ``theta = (baseline, effects...,
    control effects...)`` (signed effects), its gradient and, with ``hessian``, its Hessian.
    The last ``n_controls`` columns of ``rows`` are the controls."""
    k = rows.shape[1] - n_controls
    x, z = rows[:, :k], rows[:, k:]
    base, effect, gamma = theta[0], theta[1:k + 1], theta[k + 1:]
    trials = successes + failures
    if link == "logit":
        eta = scale + base + x @ effect + z @ gamma
        value = -(successes @ np.logaddexp(0.0, -eta) + failures @ np.logaddexp(0.0, eta))
        p = 0.5 * (1.0 + np.tanh(0.5 * eta))
        jac = np.column_stack([np.ones(len(rows)), x, z])
        grad = jac.T @ (successes - trials * p)
        if not hessian:
            return value, grad
        return value, grad, -(jac * (trials * p * (1 - p))[:, None]).T @ jac
    # hazard = scale * exp(z . gamma) * (exp(base) + x . effect)
    level = np.exp(base)
    factor = np.exp(z @ gamma)
    hazard = scale * factor * (level + x @ effect)
    if (hazard[trials > 0] <= 0).any():
        return (-np.inf, np.zeros_like(theta), None)[:3 if hessian else 2]
    won = successes > 0
    h = hazard[won]
    value = successes[won] @ np.log(-np.expm1(-h)) - failures @ hazard
    d1 = -failures.astype(float)  # d loglik / d hazard, per row
    d1[won] += successes[won] / np.expm1(h)
    dbase = scale * factor * level
    jac = np.column_stack([dbase, scale * factor[:, None] * x, hazard[:, None] * z])
    grad = jac.T @ d1
    if not hessian:
        return value, grad
    d2 = np.zeros(len(rows))
    d2[won] = -successes[won] * np.exp(-h) / np.expm1(-h) ** 2
    out = (jac * d2[:, None]).T @ jac
    # The hazard's own second derivatives, weighted by d1.
    out[0, 0] += d1 @ dbase
    if n_controls:
        cross_base = (d1 * dbase) @ z  # d2 h / d base d gamma
        cross_x = (jac[:, 1:k + 1] * d1[:, None]).T @ z  # d2 h / d effect d gamma
        out[0, k + 1:] += cross_base
        out[k + 1:, 0] += cross_base
        out[1:k + 1, k + 1:] += cross_x
        out[k + 1:, 1:k + 1] += cross_x.T
        out[k + 1:, k + 1:] += (z * (d1 * hazard)[:, None]).T @ z
    return value, grad, out


def _group_logp(sums, squares, size, a, b, xp=np):
    """Log density of groups of normal effects with a normal group effect integrated out.

    Each group's ``n`` members are ``Normal(g, sqrt(a))`` given ``g ~ Normal(0, sqrt(b))``,
    hence jointly ``Normal(0, a I + b J)`` (``J`` all ones), computed from each group's sum
    and sum of squares (Sherman-Morrison: ``(a I + b J)^-1 = (I - b J / (a + n b)) / a``,
    determinant ``a^(n - 1) (a + n b)``).

    Examples
    --------
    >>> from scipy.stats import multivariate_normal
    >>> r = np.array([0.3, -0.2, 0.5])
    >>> exact = multivariate_normal(np.zeros(3), 0.4 * np.eye(3) + 0.9).logpdf(r)
    >>> bool(np.isclose(_group_logp(r.sum(), (r ** 2).sum(), 3, 0.4, 0.9), exact))
    True
    """
    total = a + size * b
    quadratic = (squares - b * sums ** 2 / total) / a
    log_det = (size - 1) * xp.log(a) + xp.log(total)
    return -0.5 * xp.sum(quadratic + log_det + size * np.log(2 * np.pi))


def _stack(posterior) -> dict:
    out = {}
    for name in posterior.data_vars:
        values = np.asarray(posterior[name])
        out[name] = values.reshape((-1,) + values.shape[2:])
    return out


def _thin(draws: dict, n: int, rng) -> dict:
    total = len(next(iter(draws.values())))
    if n >= total:
        return draws
    pick = np.sort(np.random.default_rng(rng).choice(total, n, replace=False))
    return {k: v[pick] for k, v in draws.items()}


def _fingerprint(*parts) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray)
                      else repr(part).encode())
    return digest.hexdigest()


#: Compiled models of the last few fits, by model and data: refitting the same data (another
#: seed, more draws, relabelled channels, which the canonical order maps to the same rows)
#: skips the compilation, which dominates small fits.
_COMPILED: OrderedDict = OrderedDict()
_COMPILED_KEEP = 4


def _nuts(model, key: str, *, draws: int, tune: int, chains: int, seed: int,
          target_accept: float, progress: bool):
    """NUTS with nutpie when installed, PyMC's otherwise."""
    try:
        import nutpie
    except ImportError:
        nutpie = None
    if nutpie is not None:
        compiled = _COMPILED.pop(key, None) or nutpie.compile_pymc_model(model)
        _COMPILED[key] = compiled
        while len(_COMPILED) > _COMPILED_KEEP:
            _COMPILED.popitem(last=False)
        # The low-rank mass matrix learns the baseline's correlation with the effects.
        return nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed,
                             target_accept=target_accept, progress_bar=progress,
                             low_rank_modified_mass_matrix=True)
    import pymc as pm

    with model:
        return pm.sample(draws=draws, tune=tune, chains=chains, cores=1, random_seed=seed,
                         target_accept=target_accept, progressbar=progress,
                         compute_convergence_checks=False)


def _diagnostics(idata) -> tuple[pd.DataFrame, int]:
    import arviz as az

    names = [n for n in ("tau", "tau_within", "group_effect", "raw_effect", "control_effect",
                         "log_baseline", "intercept")
             if n in idata.posterior]
    summary = az.summary(idata, var_names=names, kind="diagnostics", round_to="none")
    divergences = int(np.asarray(idata.sample_stats["diverging"]).sum())
    return summary, divergences
