"""Reading allocations and bounds written as text (what the CLI passes through).

Allocation specs (:func:`parse_allocation`), comma-separated ``CHANNEL=VALUE`` items:

- ``tv=50000``, ``tv=50k``, ``tv=1.2M``, ``tv=5e4``: an absolute amount over the horizon
  (suffixes ``k`` = thousand, ``M`` = million, case-insensitive);
- ``search=+20%``, ``display=-10%``: a relative change of the channel's current spend;
- ``search=+5000``, ``display=-2k``: a change by an absolute amount (a sign means a change).

Channels not named keep their current spend. An unsigned percentage (``search=20%``) is an error,
because it reads both as "20 % of today" and as "+20 %".

Bound specs (:func:`parse_bounds`), ``CHANNEL=LOWER:UPPER``:

- ``search=0.5:2``: *multipliers of the channel's current spend* (half to double today's);
- ``tv=0:100000abs`` (or ``tv=0:100kabs``): absolute amounts over the horizon;
- either side may be left empty: ``search=1:`` (at least today's, no upper limit),
  ``tv=:50kabs`` (lower bound 0); ``inf`` is accepted as the upper side.

Multipliers of a channel whose current spend is 0 pin it at 0. Channels without a bound may
take anything from 0 up (the total still caps them). In Python, a bound may also be given as a
:class:`Bound` or as a tuple ``(lower, upper)`` of *absolute* amounts (see
:func:`resolve_bounds`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from engine.errors import EngineError

_SUFFIXES = {"k": 1e3, "m": 1e6}
_ABSOLUTE = "abs"


@dataclass(frozen=True)
class Bound:
    """Lower and upper spend of one channel over the horizon.

    Parameters
    ----------
    lower : float, default 0.0
    upper : float, default inf
    relative : bool, default False
        True: ``lower`` and ``upper`` multiply the channel's current spend; False: amounts.

    Examples
    --------
    >>> Bound(0.5, 2.0, relative=True).resolve(1000.0)
    (500.0, 2000.0)
    >>> Bound(0.0, 1e5).resolve(1000.0)
    (0.0, 100000.0)
    """

    lower: float = 0.0
    upper: float = math.inf
    relative: bool = False

    def __post_init__(self):
        lower, upper = float(self.lower), float(self.upper)
        if not math.isfinite(lower) or math.isnan(upper) or lower < 0 or upper < lower:
            raise EngineError(f"bound {lower:g}:{upper:g} must have 0 <= lower <= upper and a "
                              "finite lower side")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)

    def resolve(self, current: float) -> tuple[float, float]:
        """``(lower, upper)`` in amounts, given the channel's current spend."""
        if not self.relative:
            return self.lower, self.upper
        # inf * 0 would be NaN: an unbounded multiplier of nothing is still unbounded.
        upper = math.inf if math.isinf(self.upper) else self.upper * current
        return self.lower * current, upper


def _amount(text: str, token: str, what: str) -> float:
    """A non-negative finite number with an optional ``k`` / ``M`` suffix."""
    body = text.strip()
    factor = _SUFFIXES.get(body[-1:].lower(), 1.0)
    if factor != 1.0:
        body = body[:-1]
    try:
        value = float(body) * factor
    except ValueError:
        raise EngineError(f"cannot read {token!r}: {text.strip()!r} is not {what}") from None
    if not math.isfinite(value) or value < 0:
        raise EngineError(f"cannot read {token!r}: {text.strip()!r} is not {what}")
    return value


def _items(specs) -> list[str]:
    """Comma-separated items of a spec string or of every string of a sequence."""
    if isinstance(specs, str):
        specs = [specs]
    items = []
    for spec in specs:
        if not isinstance(spec, str):
            raise EngineError(f"a budget spec must be text, not {spec!r}")
        items += [item.strip() for item in spec.split(",") if item.strip()]
    return items


def _split(token: str, channels, form: str) -> tuple[str, str]:
    name, sep, value = token.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise EngineError(f"cannot read {token!r}: expected {form}")
    if channels is not None and name not in channels:
        raise EngineError(f"unknown channel {name!r} in {token!r}; the channels are "
                          f"{', '.join(channels)}")
    return name, value


def parse_allocation(spec: str, current, channels) -> np.ndarray:
    """Read an allocation spec such as ``"search=+20%,display=-10%,tv=50000"``.

    Parameters
    ----------
    spec : str
        Comma-separated ``CHANNEL=VALUE`` items (see the module docstring for the forms).
    current : array, shape (n_channels,)
        The current spend per channel, which changes and unnamed channels start from.
    channels : sequence of str

    Returns
    -------
    ndarray of float, shape (n_channels,)

    Raises
    ------
    EngineError
        On one line, naming the bad item: bad syntax, an unknown or repeated channel, an
        unsigned percentage, or a change that makes spend negative.

    Examples
    --------
    >>> parse_allocation("search=+20%,display=-10%,tv=50k", [100.0, 200.0, 0.0],
    ...                  ["search", "display", "tv"]).tolist()
    [120.0, 180.0, 50000.0]
    >>> parse_allocation("search=+5", [100.0, 200.0], ["search", "display"]).tolist()
    [105.0, 200.0]
    >>> parse_allocation("radio=+5%", [100.0], ["search"])
    Traceback (most recent call last):
    ...
    engine.errors.EngineError: unknown channel 'radio' in 'radio=+5%'; the channels are search
    """
    channels = tuple(channels)
    current = np.asarray(current, dtype=float)
    if current.shape != (len(channels),):
        raise EngineError(f"allocation: current has shape {current.shape}, expected "
                          f"({len(channels)},)")
    items = _items(spec)
    if not items:
        raise EngineError(f"cannot read allocation {spec!r}: it names no channel")
    out = current.copy()
    seen = set()
    form = "CHANNEL=AMOUNT, CHANNEL=+N% or CHANNEL=-N%"
    for token in items:
        name, value = _split(token, channels, form)
        if name in seen:
            raise EngineError(f"channel {name!r} appears twice in allocation {spec!r}")
        seen.add(name)
        i = channels.index(name)
        sign = {"+": 1.0, "-": -1.0}.get(value[0])
        body = value[1:] if sign else value
        if body.endswith("%"):
            if sign is None:
                raise EngineError(f"cannot read {token!r}: write a change as +N% or -N%")
            new = current[i] * (1.0 + sign * _amount(body[:-1], token, "a percentage") / 100.0)
        elif sign is not None:
            new = current[i] + sign * _amount(body, token, "an amount")
        else:
            new = _amount(body, token, "an amount")
        if new < 0:
            raise EngineError(f"{token!r} makes the spend on {name!r} negative ({new:g})")
        out[i] = new
    return out


def parse_bounds(specs, channels=None) -> dict[str, Bound]:
    """Read bound specs such as ``["search=0.5:2", "tv=0:100000abs"]``.

    Parameters
    ----------
    specs : str or iterable of str
        ``CHANNEL=LOWER:UPPER`` items (a string may hold several, comma-separated): multipliers
        of the current spend, or amounts with the ``abs`` suffix (see the module docstring).
    channels : sequence of str, optional
        When given, a bound on another channel is an error.

    Returns
    -------
    dict of str to Bound

    Examples
    --------
    >>> for channel, bound in parse_bounds(["search=0.5:2", "tv=0:100kabs", "email=1:"]).items():
    ...     print(channel, bound)
    search Bound(lower=0.5, upper=2.0, relative=True)
    tv Bound(lower=0.0, upper=100000.0, relative=False)
    email Bound(lower=1.0, upper=inf, relative=True)
    >>> parse_bounds("search=2:1")
    Traceback (most recent call last):
    ...
    engine.errors.EngineError: cannot read 'search=2:1': the lower bound is above the upper bound
    """
    channels = None if channels is None else tuple(channels)
    out = {}
    for token in _items(specs):
        name, value = _split(token, channels, "CHANNEL=LOWER:UPPER (multipliers of the current "
                                              "spend) or CHANNEL=LOWER:UPPERabs (amounts)")
        if name in out:
            raise EngineError(f"channel {name!r} has two bounds ({token!r})")
        relative = not value.lower().endswith(_ABSOLUTE)
        body = value if relative else value[:-len(_ABSOLUTE)]
        low, sep, high = body.partition(":")
        if not sep or ":" in high:
            raise EngineError(f"cannot read {token!r}: expected LOWER:UPPER")
        lower = _amount(low, token, "a bound") if low.strip() else 0.0
        upper = math.inf if high.strip().lower() in ("", "inf") else _amount(high, token,
                                                                              "a bound")
        if lower > upper:
            raise EngineError(f"cannot read {token!r}: the lower bound is above the upper bound")
        out[name] = Bound(lower, upper, relative)
    return out


def resolve_bounds(bounds, current, channels) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper spend per channel, in amounts.

    Parameters
    ----------
    bounds : None, str, iterable of str, or mapping of channel to Bound or (lower, upper)
        Strings are read by :func:`parse_bounds` (multipliers unless ``abs``); a tuple holds
        *amounts*; a :class:`Bound` says which it is. Unnamed channels get ``[0, inf)``.
    current : array, shape (n_channels,)
    channels : sequence of str

    Returns
    -------
    lower, upper : ndarray, shape (n_channels,)

    Examples
    --------
    >>> lower, upper = resolve_bounds({"a": (10, 20), "b": Bound(0.5, 2, relative=True)},
    ...                               [100.0, 100.0, 100.0], ["a", "b", "c"])
    >>> lower.tolist(), upper.tolist()
    ([10.0, 50.0, 0.0], [20.0, 200.0, inf])
    >>> resolve_bounds("c=0:1", [1.0, 2.0, 3.0], ["a", "b", "c"])[1].tolist()
    [inf, inf, 3.0]
    """
    channels = tuple(channels)
    current = np.asarray(current, dtype=float)
    lower, upper = np.zeros(len(channels)), np.full(len(channels), np.inf)
    if bounds is None:
        return lower, upper
    if isinstance(bounds, str) or (isinstance(bounds, Iterable)
                                   and not isinstance(bounds, Mapping)):
        bounds = parse_bounds(bounds, channels)
    if not isinstance(bounds, Mapping):
        raise EngineError(f"bounds must be spec strings or a mapping of channel to bound, not "
                          f"{bounds!r}")
    for name, bound in bounds.items():
        if name not in channels:
            raise EngineError(f"unknown channel {name!r} in the bounds; the channels are "
                              f"{', '.join(channels)}")
        if not isinstance(bound, Bound):
            try:
                low, high = bound
                bound = Bound(low, high)
            except (TypeError, ValueError):
                raise EngineError(f"the bound of {name!r} must be a Bound or (lower, upper), "
                                  f"not {bound!r}") from None
        i = channels.index(name)
        lower[i], upper[i] = bound.resolve(current[i])
    return lower, upper
