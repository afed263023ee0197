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
(hierarchical). Identical journeys collapse into one row with counts, and the binomial
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
                 signed=False, prior_scale=1.0, method="nuts", draws=1000, tune=1000, chains=2,
                 target_accept=0.9, n_draws=200, ci_level=0.9, rng=None, progress=False):
        self.link = link
        self.transform = transform
        self.half_life = half_life
        self.position = position
        self.signed = signed
        self.prior_scale = prior_scale
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
            raise MissingDataError("incremental: every journey converts (no non-converting journeys): "
                             "without a contrast the model cannot tell what a channel adds; "
                             "read non-converting journeys too (a path table's null column, or "
                             "an event log's touches without conversion)")
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
    def _fit(self, journeys: Journeys) -> None:
        n_ch = journeys.n_channels
        features = channel_features(journeys, transform=self.transform,
                                    half_life=self.half_life, position=bool(self.position))
        self._check_data(journeys, features)
        blocks = features.shape[1] // n_ch
        order = _canonical_order(journeys, features, n_ch)
        columns = np.concatenate([order + b * n_ch for b in range(blocks)])
        trials = journeys.conversions + journeys.nulls
        rows, successes, row_trials, _, inverse = _collapse(
            features[:, columns], journeys.conversions, trials, journeys.value)
        self.rows_ = rows
        self.row_successes_ = successes
        self.row_trials_ = row_trials
        self.row_conversions_ = np.bincount(inverse, journeys.conversions, len(rows))
        self.row_value_ = np.bincount(inverse, journeys.value, len(rows))
        self.order_ = order
        self.n_rows_ = len(rows)
        posterior, self.diagnostics_, self.divergences_ = self._sample(rows, successes,
                                                                       row_trials, n_ch, blocks)
        self.posterior_ = posterior
        self._credit(journeys)

    def _rate(self, successes: np.ndarray, trials: np.ndarray) -> float:
        rate = float(np.clip(successes.sum() / trials.sum(), 1e-6, 1 - 1e-6))
        return -np.log1p(-rate) if self.link == "cloglog" else float(np.log(rate / (1 - rate)))

    def _pilot(self, rows, successes, trials) -> "_Pilot":
        """The posterior mode under Gaussian priors (L-BFGS-B on the collapsed rows), the
        log-likelihood's gradient and curvature there: what the sampler's coordinates are
        scaled by, and the whole likelihood of ``method="laplace"``."""
        from scipy.optimize import minimize

        k = rows.shape[1]
        scale = self._rate(successes, trials)
        failures = trials - successes
        precision = np.r_[1.0 / _BASELINE_SD[self.link] ** 2,
                          np.full(k, 1.0 / float(self.prior_scale) ** 2)]

        def objective(theta):
            value, grad = _loglik(theta, rows, successes, failures, self.link, scale, hessian=False)
            return -value + 0.5 * precision @ theta ** 2, -grad + precision * theta

        bounds = [(None, None)] + [(None if self.signed else 0.0, None)] * k
        with np.errstate(all="ignore"):
            found = minimize(objective, np.zeros(k + 1), jac=True, method="L-BFGS-B",
                             bounds=bounds, options={"maxiter": 500, "ftol": 1e-13,
                                                     "gtol": 1e-9})
        theta = found.x
        _, grad, hessian = _loglik(theta, rows, successes, failures, self.link, scale)
        information = -hessian
        posterior = information + np.diag(precision)
        # The sampler's coordinates: theta = mode + sd * w, w about standard normal where the
        # data decide. (Whitening the correlations too, with the covariance's Cholesky
        # factor, shears the flat region of an effect at zero and mixes worse; nutpie's
        # low-rank mass matrix learns the correlations instead.)
        sd = np.sqrt(np.clip(np.diag(np.linalg.pinv(posterior, hermitian=True)), 1e-300, None))
        return _Pilot(theta=theta, grad=grad, information=information, sd=sd)

    def _build(self, rows, successes, trials, pilot: "_Pilot"):
        import pymc as pm
        import pytensor.tensor as pt

        k = rows.shape[1]
        scale = self._rate(successes, trials)
        base_name = "log_baseline" if self.link == "cloglog" else "intercept"
        with pm.Model() as model:
            tau = pm.HalfNormal("tau", float(self.prior_scale))
            w = pm.Flat("w", shape=k + 1)
            theta = pilot.theta + pilot.sd * w
            base = pm.Deterministic(base_name, theta[0])
            if self.signed:
                raw = pm.Deterministic("raw_effect", theta[1:])
                effect = raw
            else:
                # raw ~ Normal(0, tau), effect = max(raw, 0): a spike and slab, each channel's
                # effect exactly zero with prior probability 1/2. Many journeys pin a positive
                # raw effect to a small fraction of tau, while a negative one spreads over tau:
                # one step size cannot serve both. So raw = g(v) (see _stretch), g the
                # identity for v >= 0 and smoothly stretched by sqrt(tau / sd) below zero: the
                # negative side's scale in v shrinks to the geometric mean of the two. Stretching all
                # the way (by tau / sd) would leave a dip in v's density just below zero that
                # a channel with mass on both sides cannot cross. Same posterior, only the
                # coordinates change (the Jacobian is added).
                stretched, log_jacobian = _stretch(theta[1:], pilot.sd[1:], tau, pt)
                raw = pm.Deterministic("raw_effect", stretched)
                pm.Potential("stretch_jacobian", log_jacobian.sum())
                effect = pt.maximum(raw, 0.0)
            pm.Potential("baseline_prior",
                         pm.logp(pm.Normal.dist(0.0, _BASELINE_SD[self.link]), base))
            pm.Potential("effect_prior", pm.logp(pm.Normal.dist(0.0, tau), raw).sum())
            pm.Deterministic("effect", effect)
            if self.method == "laplace":
                # The log-likelihood's second-order expansion at the pilot's mode (the priors
                # stay exact): the Bernstein-von Mises approximation, exact in the limit of
                # many journeys, and free of the rows.
                step = pt.concatenate([base[None], effect]) - pilot.theta
                loglik = (pt.dot(pilot.grad, step)
                          - 0.5 * pt.dot(step, pt.dot(pilot.information, step)))
            elif self.link == "cloglog":
                failures = trials - successes
                # log(1 - P) = -hazard is linear in the parameters, so the failures' part of
                # the likelihood is two precomputed sums; only rows with a conversion need the
                # per-row log(1 - exp(-hazard)).
                won = successes > 0
                hazard = scale * (pt.exp(base) + pt.dot(rows[won], effect))
                log_p = pt.log(-pt.expm1(-pt.maximum(hazard, 1e-12)))
                loglik = (pt.dot(successes[won], log_p)
                          - scale * (failures.sum() * pt.exp(base)
                                     + pt.dot(failures @ rows, effect)))
            else:
                failures = trials - successes
                eta = scale + base + pt.dot(rows, effect)
                loglik = (pt.dot(successes, -pt.softplus(-eta))
                          + pt.dot(failures, -pt.softplus(eta)))
            pm.Potential("likelihood", loglik)
        return model

    def _sample(self, rows, successes, trials, n_ch: int, blocks: int):
        pilot = self._pilot(rows, successes, trials)
        self.pilot_ = pilot
        key = _fingerprint(self.link, self.method, bool(self.signed), float(self.prior_scale),
                           rows, successes, trials, pilot.theta, pilot.sd, pilot.grad,
                           pilot.information)
        model = self._build(rows, successes, trials, pilot)
        seed = int(np.random.default_rng(self.rng).integers(2**31))
        idata = _nuts(model, key, draws=int(self.draws), tune=int(self.tune),
                      chains=int(self.chains), seed=seed, target_accept=float(self.target_accept),
                      progress=bool(self.progress))
        return _stack(idata.posterior), *_diagnostics(idata)

    # -- credit ----------------------------------------------------------------------------------
    def _predictor(self, draws: dict) -> tuple[np.ndarray, np.ndarray]:
        """``base (D,)`` and per-channel additive contributions ``(D, rows, n_channels)`` of the
        linear predictor (hazard or log-odds) for every row, in canonical channel order."""
        rows = self.rows_
        n_ch = len(self.order_)
        blocks = rows.shape[1] // n_ch
        effect = draws["effect"]  # (D, K)
        scale = self._rate(self.row_successes_, self.row_trials_)
        parts = 0.0
        for b in range(blocks):
            cols = slice(b * n_ch, (b + 1) * n_ch)
            parts = parts + rows[None, :, cols] * effect[:, None, cols]
        if self.link == "cloglog":
            return scale * np.exp(draws["log_baseline"]), scale * parts
        return scale + draws["intercept"], parts

    def _probability(self, linear: np.ndarray) -> np.ndarray:
        if self.link == "cloglog":
            return -np.expm1(-np.maximum(linear, 0.0))
        return 1.0 / (1.0 + np.exp(-linear))

    def _credit(self, journeys: Journeys) -> None:
        draws = _thin(self.posterior_, int(self.n_draws), self.rng)
        base, parts = self._predictor(draws)  # (D,), (D, R, C)
        n_draws, n_rows, n_ch = parts.shape
        present = self.rows_[:, :n_ch] > 0
        conv, value, trials = self.row_conversions_, self.row_value_, self.row_trials_
        credit_conv = np.zeros((n_draws, n_ch))
        credit_value = np.zeros((n_draws, n_ch))
        removal = np.zeros((n_draws, n_ch))
        p_all = self._probability(base[:, None] + parts.sum(axis=2))  # (D, R)
        p_none = self._probability(base)[:, None]
        p_all_safe = np.maximum(p_all, 1e-300)
        from engine.models.shapley import shapley_weights

        size = present.sum(axis=1)
        for k in np.unique(size):
            if k == 0:
                continue
            members = np.flatnonzero(size == k)
            masks = ((np.arange(1 << k)[:, None] >> np.arange(k)) & 1).astype(bool)
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
                game = self._probability(base[:, None, None] + a @ masks.T.astype(float))
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
            "baseline_conversions": p_none[:, 0] * trials.sum(),
        }
        self.effects_ = pd.DataFrame(
            draws["effect"][:, np.argsort(np.concatenate(
                [self.order_ + b * n_ch for b in range(self.rows_.shape[1] // n_ch)]))].mean(0)
            .reshape(-1, n_ch), index=self._feature_names(), columns=journeys.channels)

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

    def roas(self, spend) -> pd.DataFrame:
        """Incremental revenue per unit of spend, per channel, with its interval.

        Parameters
        ----------
        spend : mapping or pandas.Series or DataFrame
            Spend per channel over the journeys' period (``{channel: amount}``, a Series
            indexed by channel, or a table with ``channel`` and ``spend`` columns).

        Returns
        -------
        pandas.DataFrame
            ``channel, spend, value, value_lower, value_upper, roas, roas_lower, roas_upper``
            (the columns of the aggregate ROAS model's table that journeys can give).
        """
        self._require_fitted()
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
        value = self.draws_["value"][:, :-1]
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


def _loglik(theta, rows, successes, failures, link: str, scale: float, hessian: bool = True):
    """Binomial log-likelihood of the collapsed rows at ``theta = (baseline, effects...)``
    (signed effects), its gradient and, with ``hessian``, its Hessian."""
    base, effect = theta[0], theta[1:]
    trials = successes + failures
    if link == "cloglog":
        level = np.exp(base)
        hazard = scale * (level + rows @ effect)
        if (hazard[trials > 0] <= 0).any():
            return (-np.inf, np.zeros_like(theta), None)[:3 if hessian else 2]
        won = successes > 0
        h = hazard[won]
        value = successes[won] @ np.log(-np.expm1(-h)) - failures @ hazard
        d1 = -failures.astype(float)
        d1[won] += successes[won] / np.expm1(h)
        jac = np.column_stack([np.full(len(rows), scale * level), scale * rows])
        grad = jac.T @ d1
        if not hessian:
            return value, grad
        d2 = np.zeros(len(rows))
        d2[won] = -successes[won] * np.exp(-h) / np.expm1(-h) ** 2
        out = (jac * d2[:, None]).T @ jac
        out[0, 0] += grad[0]
        return value, grad, out
    eta = scale + base + rows @ effect
    value = -(successes @ np.logaddexp(0.0, -eta) + failures @ np.logaddexp(0.0, eta))
    p = 0.5 * (1.0 + np.tanh(0.5 * eta))
    jac = np.column_stack([np.ones(len(rows)), rows])
    grad = jac.T @ (successes - trials * p)
    if not hessian:
        return value, grad
    return value, grad, -(jac * (trials * p * (1 - p))[:, None]).T @ jac


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

    names = [n for n in ("tau", "raw_effect", "log_baseline", "intercept")
             if n in idata.posterior]
    summary = az.summary(idata, var_names=names, kind="diagnostics", round_to="none")
    divergences = int(np.asarray(idata.sample_stats["diverging"]).sum())
    return summary, divergences
