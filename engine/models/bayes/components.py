"""Media transformation components of the Bayesian ROAS model: adstock and saturation.

Each component is a small object holding its hyper-parameters and default priors. The same
formula serves two array libraries: ``apply(x, params, xp=numpy)`` with numpy arrays (posterior
predictions, counterfactuals, hand checks) and with ``pytensor.tensor`` inside the PyMC model, so
the model and every prediction made from its draws cannot disagree.

Shapes: spend ``x`` is ``(..., T, C)`` (periods by channels, optional leading draw axis); every
parameter is ``(..., C)`` and broadcasts against it. ``axis=-1`` takes ``x`` as ``(..., C, T)``
instead (periods last): the PyMC model uses that layout, in which the sums over lags and their
gradients run along contiguous rows of periods. Saturation inputs are spend divided by the
channel's scale (its mean positive spend), so parameters are comparable across channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import EngineError


def _lagged(x, max_lag: int, xp, axis: int = -2):
    """``(L, ...)``: ``x`` shifted along its period ``axis`` by 0 .. L-1 periods, zeros before
    the start."""
    axis = axis % x.ndim
    periods = x.shape[axis] if xp is np else x.type.shape[axis]  # static for pytensor constants
    if periods is None:
        raise EngineError("adstock: the number of periods must be known when building the model")

    def first(n):  # the first n periods of x
        return x[(slice(None),) * axis + (slice(None, n),)]

    out = []
    for lag in range(max_lag):
        if lag == 0:
            out.append(x)
            continue
        if lag >= periods:
            out.append(xp.zeros_like(x))
            continue
        out.append(xp.concatenate([xp.zeros_like(first(lag)), first(periods - lag)],
                                  axis=axis))
    return xp.stack(out, axis=0)


def _convolve(x, weights, max_lag: int, xp, axis: int):
    """``sum_l weights[l] * x[t - l]`` along the period ``axis`` of ``x``: weights ``(L, ..., C)``
    with a period axis added. Spend is data: a numpy array (or a pytensor constant) is lagged
    once in numpy, so the model holds one constant instead of a graph that shifts it."""
    if not isinstance(x, np.ndarray) and isinstance(getattr(x, "data", None), np.ndarray):
        x = x.data  # a pytensor constant
    lagged = _lagged(x, max_lag, np if isinstance(x, np.ndarray) else xp, axis)  # (L, ...)
    return (xp.expand_dims(weights, axis) * lagged).sum(axis=0)


@dataclass(frozen=True)
class GeometricAdstock:
    """Geometric carryover: ``w_l = alpha^l`` for ``l < max_lag`` (normalised to sum to 1 when
    ``normalize``), so ``alpha`` is the share of an effect that carries into the next period.

    Prior: ``alpha ~ Beta(alpha_prior)`` per channel.

    Examples
    --------
    >>> GeometricAdstock(max_lag=3, normalize=False).apply(
    ...     np.array([[1.0], [0.0], [0.0], [2.0]]), {"alpha": np.array([0.5])}).ravel().tolist()
    [1.0, 0.5, 0.25, 2.0]
    """

    max_lag: int = 8
    normalize: bool = True
    alpha_prior: tuple = (1.0, 3.0)

    def __post_init__(self):
        if not isinstance(self.max_lag, int) or self.max_lag < 1:
            raise EngineError(f"adstock: max_lag must be a positive integer, not {self.max_lag!r}")

    parameters = ("alpha",)

    def weights(self, params, xp=np):
        alpha = params["alpha"]
        lags = np.arange(self.max_lag, dtype=float).reshape((-1,) + (1,) * alpha.ndim)
        w = xp.power(xp.expand_dims(alpha, 0), lags)
        if self.normalize:
            w = w / w.sum(axis=0)
        return w

    def apply(self, x, params, xp=np, axis=-2):
        return _convolve(x, self.weights(params, xp), self.max_lag, xp, axis)

    def priors(self, pm, dims: str):
        return {"alpha": pm.Beta("adstock_alpha", *self.alpha_prior, dims=dims)}


@dataclass(frozen=True)
class DelayedAdstock:
    """Delayed carryover (Jin et al. 2017): ``w_l = alpha^((l - theta)^2)``, normalised, so the
    effect peaks ``theta`` periods after the spend.

    Priors: ``alpha ~ Beta(alpha_prior)``, ``theta ~ Uniform(0, max_lag - 1)`` per channel.

    Examples
    --------
    >>> w = DelayedAdstock(max_lag=4).weights({"alpha": np.array([0.5]),
    ...                                        "theta": np.array([1.0])})
    >>> (w.ravel() * 2.75).round(6).tolist()   # 0.5^1, 0.5^0, 0.5^1, 0.5^4 over their sum 2.0625
    [0.666667, 1.333333, 0.666667, 0.083333]
    """

    max_lag: int = 8
    alpha_prior: tuple = (2.0, 2.0)

    def __post_init__(self):
        if not isinstance(self.max_lag, int) or self.max_lag < 2:
            raise EngineError(f"delayed adstock: max_lag must be an integer >= 2, not "
                              f"{self.max_lag!r}")

    parameters = ("alpha", "theta")

    def weights(self, params, xp=np):
        alpha, theta = params["alpha"], params["theta"]
        lags = np.arange(self.max_lag, dtype=float).reshape((-1,) + (1,) * alpha.ndim)
        w = xp.power(xp.expand_dims(alpha, 0), (lags - xp.expand_dims(theta, 0)) ** 2)
        return w / w.sum(axis=0)

    def apply(self, x, params, xp=np, axis=-2):
        return _convolve(x, self.weights(params, xp), self.max_lag, xp, axis)

    def priors(self, pm, dims: str):
        return {"alpha": pm.Beta("adstock_alpha", *self.alpha_prior, dims=dims),
                "theta": pm.Uniform("adstock_theta", 0.0, self.max_lag - 1.0, dims=dims)}


@dataclass(frozen=True)
class HillSaturation:
    """Hill curve ``x^s / (x^s + K^s)`` of scaled spend: ``K`` the half-saturation point (in
    units of the channel's mean positive spend), ``s`` the shape (``s > 1``: S-curve).

    Priors: ``K ~ Gamma(half_prior)``, ``s ~ Gamma(shape_prior)`` per channel.

    Examples
    --------
    >>> HillSaturation().apply(np.array([[1.0], [3.0]]),
    ...                        {"half": np.array([1.0]), "shape": np.array([2.0])}).ravel().tolist()
    [0.5, 0.9]
    """

    half_prior: tuple = (2.0, 2.0)
    shape_prior: tuple = (3.0, 2.0)

    parameters = ("half", "shape")

    def apply(self, x, params, xp=np, axis=-2):
        half = xp.expand_dims(params["half"], axis)
        shape = xp.expand_dims(params["shape"], axis)
        powered = xp.power(xp.maximum(x, 0.0), shape)
        return powered / (powered + xp.power(half, shape))

    def priors(self, pm, dims: str):
        return {"half": pm.Gamma("saturation_half", *self.half_prior, dims=dims),
                "shape": pm.Gamma("saturation_shape", *self.shape_prior, dims=dims)}


@dataclass(frozen=True)
class LogisticSaturation:
    """Logistic curve ``(1 - exp(-lam x)) / (1 + exp(-lam x))`` of scaled spend (0 at 0, 1 in
    the limit; ``lam`` the steepness).

    Prior: ``lam ~ Gamma(lam_prior)`` per channel. The default ``Gamma(3, 2)`` puts the
    half-saturation point ``log(3) / lam`` at 0.82 of the channel's mean positive spend at the
    prior median (90 % prior range 0.35 to 2.7), as Meridian's default Hill prior centres its
    half-saturation at 0.8 of the median spend. ``Gamma(3, 1)`` put it at 0.41: most channels
    assumed saturated on a typical week, which leaves only the weeks without spend to tell a
    channel's effect from the baseline.

    Examples
    --------
    >>> LogisticSaturation().apply(np.array([[0.0], [np.log(3.0)]]),
    ...                            {"lam": np.array([1.0])}).ravel().round(6).tolist()
    [0.0, 0.5]
    """

    lam_prior: tuple = (3.0, 2.0)

    parameters = ("lam",)

    def apply(self, x, params, xp=np, axis=-2):
        decay = xp.exp(-xp.expand_dims(params["lam"], axis) * x)
        return (1.0 - decay) / (1.0 + decay)

    def priors(self, pm, dims: str):
        return {"lam": pm.Gamma("saturation_lam", *self.lam_prior, dims=dims)}


ADSTOCKS = {"geometric": GeometricAdstock, "delayed": DelayedAdstock}
SATURATIONS = {"hill": HillSaturation, "logistic": LogisticSaturation}
