"""Known response curves: a simple concrete :class:`~engine.budget.ResponseModel`.

``outcome = baseline + sum_c beta_c * f_c(x_c)`` per posterior draw, where ``x_c`` is the spend
on channel ``c`` over the horizon and ``f_c`` a saturation curve with scale ``K_c``:

- ``"log1p"``: ``f(x) = log(1 + x / K)`` (never saturates; diminishing returns);
- ``"hill"``: ``f(x) = x^s / (x^s + K^s)`` (``K`` is the half-saturation spend, ``s`` the slope);
- ``"exponential"``: ``f(x) = 1 - exp(-x / K)``.

Every parameter may vary by draw, so the model has posterior-like draws; the optima of the mean
outcome are then known in closed form (equal marginal return ``E[beta_c f_c'(x_c)]`` across the
channels off their bounds), which is how the tests check the optimiser.
"""

from __future__ import annotations

import numpy as np

from engine.errors import EngineError

SATURATIONS = ("log1p", "hill", "exponential")


def log1p_saturation(x, scale):
    """``log(1 + x / scale)``.

    Examples
    --------
    >>> float(log1p_saturation(3.0, 1.0)) == float(np.log(4.0))
    True
    """
    return np.log1p(np.asarray(x, dtype=float) / scale)


def hill(x, scale, slope=1.0):
    """Hill saturation ``x^s / (x^s + K^s)`` with half-saturation ``K = scale`` and ``s = slope``.

    Examples
    --------
    >>> hill(np.array([0.0, 2.0, 6.0]), 2.0).tolist()
    [0.0, 0.5, 0.75]
    """
    power = np.asarray(x, dtype=float) ** slope
    return power / (power + np.asarray(scale, dtype=float) ** slope)


def exponential_saturation(x, scale):
    """``1 - exp(-x / scale)``.

    Examples
    --------
    >>> exponential_saturation(np.array([0.0, np.log(2.0)]), 1.0).tolist()
    [0.0, 0.5]
    """
    return -np.expm1(-np.asarray(x, dtype=float) / scale)


def _derivative(kind: str, x, scale, slope):
    """``f'(x)`` of a saturation curve (``x`` broadcast against the parameters)."""
    if kind == "log1p":
        return 1.0 / (scale + x)
    if kind == "exponential":
        return np.exp(-x / scale) / scale
    power, k_power = x ** slope, scale ** slope
    with np.errstate(divide="ignore", invalid="ignore"):
        return slope * k_power * x ** (slope - 1.0) / (power + k_power) ** 2


class Curves:
    """Response model made of known saturation curves, with per-draw parameters.

    Parameters
    ----------
    channels : sequence of str
    beta : array, shape (n_channels,) or (n_draws, n_channels)
        Outcome at full effect of each channel (the multiplier of the curve), per draw.
    scale : array, shape (n_channels,) or (n_draws, n_channels)
        ``K`` of each curve, per draw (positive).
    current : array, shape (n_channels,)
        The current plan: spend per channel over the horizon.
    saturation : str or sequence of str, default ``"log1p"``
        One of ``"log1p"``, ``"hill"``, ``"exponential"``, for all channels or one per channel.
    slope : float or array, default 1.0
        Hill slope ``s``, per channel and draw (ignored by the other curves; positive).
    baseline : float or array of shape (n_draws,), default 0.0
        Outcome without any spend, per draw.
    outcome_name : str, default ``"outcome"``

    Attributes
    ----------
    channels : tuple of str
    n_draws : int
    beta, scale, slope : ndarray, shape (n_draws, n_channels)
    baseline : ndarray, shape (n_draws,)

    Examples
    --------
    Two log curves, two draws (the second doubles every effect):

    >>> model = Curves(["search", "display"], beta=[[100.0, 50.0], [200.0, 100.0]],
    ...                scale=[1000.0, 1000.0], current=[1000.0, 0.0], baseline=10.0)
    >>> model.n_draws
    2
    >>> model.predict(np.array([[1000.0, 0.0], [0.0, 0.0]])).round(3).tolist()
    [[79.315, 10.0], [148.629, 10.0]]
    >>> model.marginal_return(np.array([1000.0, 0.0])).tolist()
    [[0.05, 0.05], [0.1, 0.1]]
    """

    def __init__(self, channels, beta, scale, current, saturation="log1p", slope=1.0,
                 baseline=0.0, outcome_name: str = "outcome"):
        self.channels = tuple(channels)
        n = len(self.channels)
        if n == 0 or not all(isinstance(c, str) and c for c in self.channels) \
                or len(set(self.channels)) != n:
            raise EngineError(f"Curves: channels must be distinct non-empty strings, not "
                              f"{self.channels!r}")
        beta, scale, slope = (self._per_draw(name, value, n) for name, value in
                              (("beta", beta), ("scale", scale), ("slope", slope)))
        baseline = np.asarray(baseline, dtype=float)
        if baseline.ndim > 1:
            raise EngineError(f"Curves: baseline must be a number or one per draw, not shape "
                              f"{baseline.shape}")
        draws = {len(a) for a in (beta, scale, slope) if len(a) > 1} | (
            {baseline.size} if baseline.ndim == 1 and baseline.size > 1 else set())
        if len(draws) > 1:
            raise EngineError(f"Curves: parameters disagree on the number of draws: "
                              f"{sorted(draws)}")
        self.n_draws = draws.pop() if draws else 1
        self.beta, self.scale, self.slope = (np.broadcast_to(a, (self.n_draws, n)).copy()
                                             for a in (beta, scale, slope))
        self.baseline = np.broadcast_to(baseline, (self.n_draws,)).copy()
        if np.any(self.scale <= 0) or np.any(self.slope <= 0):
            raise EngineError("Curves: scale and slope must be positive")
        if not all(np.all(np.isfinite(a)) for a in (self.beta, self.baseline)):
            raise EngineError("Curves: beta and baseline must be finite")
        kinds = (saturation,) * n if isinstance(saturation, str) else tuple(saturation)
        bad = [k for k in kinds if k not in SATURATIONS]
        if len(kinds) != n or bad:
            raise EngineError(f"Curves: saturation must be one of {', '.join(SATURATIONS)} "
                              f"(one for all channels or one per channel), not {saturation!r}")
        self.saturation = kinds
        self._current = np.asarray(current, dtype=float)
        if self._current.shape != (n,) or not np.all(np.isfinite(self._current)) \
                or np.any(self._current < 0):
            raise EngineError(f"Curves: current must be {n} finite non-negative amounts, not "
                              f"{np.asarray(current).tolist()}")
        self.outcome_name = outcome_name

    @staticmethod
    def _per_draw(name: str, value, n: int) -> np.ndarray:
        array = np.asarray(value, dtype=float)
        if array.ndim == 0:
            array = np.full(n, float(array))
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != n:
            raise EngineError(f"Curves: {name} must have shape (n_channels,) or (n_draws, "
                              f"n_channels) with n_channels={n}, not {np.shape(value)}")
        return array

    def current_allocation(self) -> np.ndarray:
        """The current plan, shape ``(n_channels,)``."""
        return self._current.copy()

    def _allocations(self, allocations) -> np.ndarray:
        x = np.asarray(allocations, dtype=float)
        if x.ndim != 2 or x.shape[1] != len(self.channels):
            raise EngineError(f"Curves: allocations must have shape (k, {len(self.channels)}), "
                              f"not {x.shape}")
        if not np.all(np.isfinite(x)) or np.any(x < 0):
            raise EngineError("Curves: allocations must be finite and non-negative")
        return x

    def _groups(self):
        """Channel masks of each saturation kind in use (a handful of groups at most)."""
        kinds = np.array(self.saturation)
        return [(kind, kinds == kind) for kind in SATURATIONS if np.any(kinds == kind)]

    def response(self, allocations) -> np.ndarray:
        """Per-channel contributions ``beta_c f_c(x_c)``, shape ``(n_draws, k, n_channels)``.

        Examples
        --------
        >>> model = Curves(["a", "b"], beta=[2.0, 3.0], scale=[1.0, 1.0], current=[0.0, 0.0],
        ...                saturation=["hill", "exponential"])
        >>> model.response(np.array([[1.0, 0.0]])).tolist()
        [[[1.0, 0.0]]]
        """
        x = self._allocations(allocations)[None, :, :]
        out = np.empty((self.n_draws, len(x[0]), len(self.channels)))
        for kind, mask in self._groups():
            scale, xs = self.scale[:, None, mask], x[..., mask]
            if kind == "log1p":
                curve = log1p_saturation(xs, scale)
            elif kind == "hill":
                curve = hill(xs, scale, self.slope[:, None, mask])
            else:
                curve = exponential_saturation(xs, scale)
            out[..., mask] = self.beta[:, None, mask] * curve
        return out

    def predict(self, allocations) -> np.ndarray:
        """Outcome draws ``baseline + sum_c beta_c f_c(x_c)``, shape ``(n_draws, k)``."""
        return self.baseline[:, None] + self.response(allocations).sum(axis=2)

    def marginal_return(self, allocation) -> np.ndarray:
        """Exact marginal outcome per unit of spend, ``beta_c f_c'(x_c)``, per draw.

        Parameters
        ----------
        allocation : array, shape (n_channels,)

        Returns
        -------
        ndarray, shape (n_draws, n_channels)
        """
        x = self._allocations(np.asarray(allocation, dtype=float)[None, :])[0]
        out = np.empty((self.n_draws, len(self.channels)))
        for kind, mask in self._groups():
            out[:, mask] = self.beta[:, mask] * _derivative(kind, x[mask], self.scale[:, mask],
                                                            self.slope[:, mask])
        return out

    def __repr__(self) -> str:
        return (f"Curves(channels={self.channels!r}, saturation={self.saturation!r}, "
                f"n_draws={self.n_draws})")
