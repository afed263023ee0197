"""The response-model protocol: what budget planning needs from a fitted model.

Budget planning never depends on one concrete model class (PyMC-Marketing's composition, see
``STYLE.md``): scenarios, the optimiser and target mode only call the three members of
:class:`ResponseModel`. The Bayesian MMM implements it with its posterior; :class:`Curves` is a
small concrete model for tests, documentation and examples.

Units
    An *allocation* is the total spend per channel over the model's planning horizon, in the
    order of ``channels``. The model decides the horizon (for the Bayesian MMM it is the fitted
    window) and how a total is spread over the periods of the horizon (in the pattern of the
    current plan). Outcomes are totals over the same horizon, baseline included.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from engine.errors import EngineError


@runtime_checkable
class ResponseModel(Protocol):
    """A fitted model that predicts the outcome of any allocation of spend, as posterior draws.

    Attributes
    ----------
    channels : tuple of str
        The channels spend can go to, in the order of every allocation's columns.
    outcome_name : str, optional
        What the outcome counts (``"revenue"``, ``"orders"``); read with ``getattr`` and a
        default of ``"outcome"``, so a model may leave it out (not part of the runtime check).

    Methods
    -------
    current_allocation()
        The current plan: an array of shape ``(n_channels,)``, spend per channel over the
        planning horizon (non-negative, finite).
    predict(allocations)
        ``allocations`` has shape ``(k, n_channels)``, each row a total spend per channel over
        the horizon. Returns outcome draws of shape ``(n_draws, k)``: posterior draws of the
        total outcome over the horizon, baseline included. Draw ``d`` must be the same posterior
        draw for every row (the planning code compares plans draw by draw) and for every call
        (the optimiser calls ``predict`` many times). A point-estimate model returns one draw.
    response(allocations), optional
        For a model additive in channels: each channel's contribution, shape ``(n_draws, k,
        n_channels)``, where channel ``c``'s part depends on ``allocations[:, c]`` only and
        ``predict`` is a baseline plus their sum. The optimiser then gets the outcome of
        moving one channel at a time from one call for all channels (its gradients cost 4
        allocations instead of ``2 n_channels + 1``). Not part of the runtime check.

    Examples
    --------
    >>> from engine.budget import Curves
    >>> model = Curves(["search"], beta=[[10.0]], scale=[[100.0]], current=[100.0])
    >>> isinstance(model, ResponseModel)
    True
    >>> isinstance(object(), ResponseModel)
    False
    """

    channels: tuple

    def current_allocation(self) -> np.ndarray:
        """Current spend per channel over the planning horizon, shape ``(n_channels,)``."""

    def predict(self, allocations: np.ndarray) -> np.ndarray:
        """Outcome draws of shape ``(n_draws, k)`` for ``allocations`` of shape
        ``(k, n_channels)``."""


def check_model(model) -> tuple[tuple, np.ndarray]:
    """Check that ``model`` follows :class:`ResponseModel`; return its channels and current plan.

    Parameters
    ----------
    model : ResponseModel

    Returns
    -------
    channels : tuple of str
    current : ndarray of float, shape (n_channels,)

    Raises
    ------
    EngineError
        When a member is missing, the channels are not distinct non-empty strings, or the
        current allocation has the wrong shape or a negative or non-finite value.

    Examples
    --------
    >>> from engine.budget import Curves
    >>> check_model(Curves(["a", "b"], beta=[1.0, 2.0], scale=[1.0, 1.0], current=[3.0, 4.0]))
    (('a', 'b'), array([3., 4.]))
    >>> check_model(object())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    engine.errors.EngineError: budget: the model must follow the response-model protocol ...
    """
    if not isinstance(model, ResponseModel):
        raise EngineError("budget: the model must follow the response-model protocol (channels, "
                          f"current_allocation(), predict()); {type(model).__name__} does not")
    channels = tuple(model.channels)
    if not channels or not all(isinstance(c, str) and c for c in channels) \
            or len(set(channels)) != len(channels):
        raise EngineError(f"budget: the model's channels must be distinct non-empty strings, "
                          f"not {channels!r}")
    current = np.asarray(model.current_allocation(), dtype=float)
    if current.shape != (len(channels),):
        raise EngineError(f"budget: current_allocation() has shape {current.shape}, expected "
                          f"({len(channels)},) for channels {', '.join(channels)}")
    if not np.all(np.isfinite(current)) or np.any(current < 0):
        raise EngineError(f"budget: current_allocation() must be finite and non-negative, not "
                          f"{current.tolist()}")
    return channels, current


def response_draws(model, allocations: np.ndarray) -> np.ndarray:
    """``model.response(allocations)`` checked: finite, of shape ``(n_draws, k, n_channels)``.

    Examples
    --------
    >>> from engine.budget import Curves
    >>> model = Curves(["a", "b"], beta=[1.0, 2.0], scale=[1.0, 1.0], current=[1.0, 1.0])
    >>> response_draws(model, np.array([[0.0, np.e - 1]])).tolist()
    [[[0.0, 2.0]]]
    """
    allocations = np.asarray(allocations, dtype=float)
    parts = np.asarray(model.response(allocations), dtype=float)
    if parts.ndim != 3 or parts.shape[1:] != allocations.shape or parts.shape[0] < 1:
        raise EngineError(f"budget: {type(model).__name__}.response returned shape "
                          f"{parts.shape} for allocations of shape {allocations.shape}, "
                          f"expected (n_draws, {allocations.shape[0]}, {allocations.shape[1]})")
    if not np.all(np.isfinite(parts)):
        raise EngineError(f"budget: {type(model).__name__}.response returned non-finite "
                          "contributions")
    return parts


def predict_draws(model, allocations: np.ndarray) -> np.ndarray:
    """``model.predict(allocations)`` checked: finite, of shape ``(n_draws, k)``.

    Parameters
    ----------
    model : ResponseModel
    allocations : array, shape (k, n_channels)

    Returns
    -------
    ndarray of float, shape (n_draws, k)

    Examples
    --------
    >>> from engine.budget import Curves
    >>> model = Curves(["a"], beta=[[1.0], [2.0]], scale=[[1.0], [1.0]], current=[1.0])
    >>> predict_draws(model, np.array([[0.0], [np.e - 1]])).tolist()
    [[0.0, 1.0], [0.0, 2.0]]
    """
    allocations = np.asarray(allocations, dtype=float)
    draws = np.asarray(model.predict(allocations), dtype=float)
    if draws.ndim != 2 or draws.shape[1] != len(allocations) or draws.shape[0] < 1:
        raise EngineError(f"budget: {type(model).__name__}.predict returned shape {draws.shape} "
                          f"for {len(allocations)} allocations, expected (n_draws, "
                          f"{len(allocations)})")
    if not np.all(np.isfinite(draws)):
        raise EngineError(f"budget: {type(model).__name__}.predict returned non-finite outcomes")
    return draws
