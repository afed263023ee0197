"""Rule-based attribution: fixed rules that split each conversion over the touches of its journey.

Each rule is a pure function returning one weight per touch; the weights of every journey sum
to 1, so credit (``weight x conversions`` and ``weight x value`` summed by channel) adds up to
the journeys' totals. All rules are vectorised over the CSR touch arrays of
:class:`engine.Journeys`: no Python loop runs over journeys or touches.

Edge cases shared by every rule: a journey with one touch gives it all the credit; non-converting
journeys contribute nothing (their conversions and value are 0).
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Real

import numpy as np

from engine.errors import EngineError
from engine.journeys import LEAD, OPPORTUNITY, Journeys
from engine.models._base import AttributionModel
from engine.results import Attribution

DEFAULT_DIRECT = ("direct", "(direct)", "direct traffic", "(none)")


def _normalise(weights: np.ndarray, journeys: Journeys) -> np.ndarray:
    """Weights scaled to sum to 1 in every journey; a journey whose touches all weigh 0 is split
    equally, so that its conversions are not lost."""
    totals = np.bincount(journeys.journey_index, weights, minlength=journeys.n_journeys)
    totals = totals[journeys.journey_index]
    equal = 1.0 / journeys.lengths[journeys.journey_index]
    return np.divide(weights, totals, out=equal, where=totals > 0)


def first_touch_weights(journeys: Journeys) -> np.ndarray:
    """All credit to the first touch of each journey."""
    return (journeys.position == 0).astype(float)


def last_touch_weights(journeys: Journeys) -> np.ndarray:
    """All credit to the last touch of each journey."""
    return (journeys.position == journeys.lengths[journeys.journey_index] - 1).astype(float)


def last_non_direct_weights(journeys: Journeys, direct_codes) -> np.ndarray:
    """All credit to the last touch whose channel is not in ``direct_codes``.

    A journey made only of direct touches gives its credit to its last touch (the conversion
    was direct), as Google Analytics' last non-direct click does.
    """
    direct = np.isin(journeys.codes, np.asarray(direct_codes, dtype=journeys.codes.dtype))
    candidate = np.where(direct, -1, journeys.position)
    chosen = np.maximum.reduceat(candidate, journeys.offsets[:-1])
    chosen = np.where(chosen < 0, journeys.lengths - 1, chosen)
    return (journeys.position == chosen[journeys.journey_index]).astype(float)


def linear_weights(journeys: Journeys, per: str = "touch") -> np.ndarray:
    """Equal credit to every touch (``per="touch"``), or to every distinct channel of the journey
    (``per="channel"``: a channel touched three times gets the same share as one touched once,
    split equally over its touches)."""
    if per == "touch":
        return 1.0 / journeys.lengths[journeys.journey_index]
    n_channels = journeys.n_channels
    keys = journeys.journey_index * n_channels + journeys.codes
    if journeys.n_journeys * n_channels <= 4 * journeys.n_touches:
        # A dense (journey, channel) count table is a few times faster than sorting the keys
        # and small enough while there are no more cells than a few per touch.
        counts = np.bincount(keys, minlength=journeys.n_journeys * n_channels)
        repeats = counts[keys]
        distinct = np.count_nonzero(counts.reshape(journeys.n_journeys, n_channels), axis=1)
    else:
        unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        repeats = counts[inverse]
        distinct = np.bincount(unique // n_channels, minlength=journeys.n_journeys)
    return 1.0 / (distinct[journeys.journey_index] * repeats)


def time_decay_weights(journeys: Journeys, half_life: float = 7.0) -> np.ndarray:
    """Weights halving every ``half_life`` days of age before the journey's end.

    Notes
    -----
    ``w_t = 2 ** (-(age_t - min_age) / half_life)`` normalised within the journey. Subtracting
    the journey's youngest age changes nothing after normalising but avoids underflow on old
    touches. Touches of the same age share equally.
    """
    ages = journeys.ages
    youngest = np.minimum.reduceat(ages, journeys.offsets[:-1])
    return _normalise(np.exp2(-(ages - youngest[journeys.journey_index]) / half_life), journeys)


def position_weights(journeys: Journeys, head=(0.4,), tail=(0.4,), middle=0.2) -> np.ndarray:
    """Credit by position: ``head[i]`` to the i-th touch, ``tail[i]`` to the i-th touch from the
    end, ``middle`` split equally over the touches in neither.

    A touch in both ranges (short journeys) gets both weights; shares of ranges a journey is too
    short to fill are dropped and the journey's weights renormalised (split equally if nothing is
    left, e.g. ``head=tail=(0,)`` on a two-touch journey). With the defaults (the
    U-shaped rule): 1 touch -> 100 %, 2 -> 50/50, 3 -> 40/20/40, 4 -> 40/10/10/40.
    """
    # A trailing 0 share lets positions beyond the head (tail) look up their share without
    # boolean masks, which cost a pass each over all touches.
    head = np.append(np.asarray(head, dtype=float), 0.0)
    tail = np.append(np.asarray(tail, dtype=float), 0.0)
    n_head, n_tail = len(head) - 1, len(tail) - 1
    position = journeys.position
    reverse = journeys.lengths[journeys.journey_index] - 1 - position
    weights = head[np.minimum(position, n_head)] + tail[np.minimum(reverse, n_tail)]
    rest = (position >= n_head) & (reverse >= n_tail)
    n_rest = np.maximum(journeys.lengths - n_head - n_tail, 1)
    weights = np.where(rest, (middle / n_rest)[journeys.journey_index], weights)
    return _normalise(weights, journeys)


def milestone_weights(journeys: Journeys, first: float, lead: float, opportunity: float,
                      last: float, rest: float) -> np.ndarray:
    """Credit to the first touch, the lead-creation touch, the opportunity-creation touch and the
    closing (last) touch, ``rest`` split equally over the other touches.

    A touch holding several roles gets each role's share (first touch that also created the
    lead: ``first + lead``). Roles a journey lacks (it never became an opportunity) and a
    ``rest`` share with no other touch to take it are dropped, and the journey's weights are
    renormalised.
    """
    flags = journeys.milestones
    position = journeys.position
    is_first = position == 0
    is_last = position == journeys.lengths[journeys.journey_index] - 1
    is_lead = (flags & LEAD) > 0
    is_opportunity = (flags & OPPORTUNITY) > 0
    weights = first * is_first + lead * is_lead + opportunity * is_opportunity + last * is_last
    key = is_first | is_lead | is_opportunity | (is_last if last > 0 else False)
    n_rest = np.bincount(journeys.journey_index[~key], minlength=journeys.n_journeys)
    weights = np.where(key, weights, rest / np.maximum(n_rest[journeys.journey_index], 1))
    return _normalise(weights, journeys)


class RuleModel(AttributionModel):
    """A rule-based model: credit from per-touch weights (see :func:`_touch_weights`)."""

    def _touch_weights(self, journeys: Journeys) -> np.ndarray:
        raise NotImplementedError

    def _fit(self, journeys: Journeys) -> None:
        # Journeys without conversions or value give no credit: skip their touches.
        active = journeys.converting
        weights = self._touch_weights(active)
        row = active.journey_index
        n = journeys.n_channels
        self.channels_ = journeys.channels
        self.conversions_ = np.bincount(active.codes, weights * active.conversions[row],
                                        minlength=n)
        self.value_ = np.bincount(active.codes, weights * active.value[row], minlength=n)

    def _fit_table(self, table) -> None:
        """Fit from a :class:`engine.ingest.table.JourneyTable`: the same weights as one
        relational query on the engine (:mod:`engine.ingest.rule_queries`); only the credit per
        channel comes back."""
        from engine.ingest.rule_queries import rule_credit

        self.channels_ = table.channels
        self.conversions_, self.value_ = rule_credit(self, table.touches, table.channels,
                                                     table.con)

    @property
    def touch_weights_(self) -> np.ndarray:
        """Each touch's share of its journey's credit, for every touch of the fitted journeys
        (for a :class:`~engine.ingest.table.JourneyTable`, see
        :func:`engine.ingest.rule_queries.touch_weights`)."""
        if not isinstance(self.journeys_, Journeys):
            raise EngineError(f"{self.name}: the journeys stayed on the engine; get the weights "
                              "with engine.ingest.rule_queries.touch_weights")
        return self._touch_weights(self.journeys_)

    def _attribute(self) -> Attribution:
        return Attribution.from_credit(self.name, self.channels_, self.conversions_, self.value_,
                                       params=self.get_params())


class FirstTouch(RuleModel):
    """First touch: each conversion to the first touch of its journey.

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.models import FirstTouch
    >>> j = Journeys.from_lists([["a", "b", "c"]], conversions=[1], value=[10.0])
    >>> FirstTouch().fit(j).attribute().table["conversions"].tolist()
    [1.0, 0.0, 0.0]
    """

    name = "first_touch"
    description = "all credit to the first touch of the journey"

    def __init__(self):
        pass

    def _touch_weights(self, journeys):
        return first_touch_weights(journeys)


class LastTouch(RuleModel):
    """Last touch: each conversion to the last touch before it.

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.models import LastTouch
    >>> j = Journeys.from_lists([["a", "b", "c"]], conversions=[1], value=[10.0])
    >>> LastTouch().fit(j).attribute().table["value"].tolist()
    [0.0, 0.0, 10.0]
    """

    name = "last_touch"
    description = "all credit to the last touch before the conversion"

    def __init__(self):
        pass

    def _touch_weights(self, journeys):
        return last_touch_weights(journeys)


class LastNonDirect(RuleModel):
    """Last non-direct touch: each conversion to the last touch not from a direct channel.

    Parameters
    ----------
    direct : sequence of str
        Channels that count as direct, matched case-insensitively. Journeys made only of direct
        touches credit their last touch.

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.models import LastNonDirect
    >>> j = Journeys.from_lists([["seo", "email", "Direct"], ["Direct"]], conversions=[1, 1])
    >>> LastNonDirect().fit(j).attribute().table[["channel", "conversions"]].values.tolist()
    [['Direct', 1.0], ['email', 1.0], ['seo', 0.0]]
    """

    name = "last_non_direct"
    description = "all credit to the last touch that is not direct (direct-only: last touch)"

    def __init__(self, *, direct=DEFAULT_DIRECT):
        self.direct = direct

    def _validate_params(self):
        if isinstance(self.direct, str) or not isinstance(self.direct, Iterable):
            raise EngineError("last_non_direct: direct must be a list of channel names, "
                              f"not {self.direct!r}")

    def _touch_weights(self, journeys):
        direct = {str(d).casefold() for d in self.direct}
        codes = [i for i, c in enumerate(journeys.channels) if c.casefold() in direct]
        return last_non_direct_weights(journeys, codes)


class Linear(RuleModel):
    """Linear: each conversion split equally.

    Parameters
    ----------
    per : {"touch", "channel"}
        ``"touch"`` (ChannelAttribution's ``linear_touch``): every touch gets ``1/n``.
        ``"channel"``: every distinct channel of the journey gets an equal share.

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.models import Linear
    >>> j = Journeys.from_lists([["a", "a", "b"]], conversions=[1])
    >>> Linear().fit(j).attribute().table["conversions"].round(3).tolist()
    [0.667, 0.333]
    >>> Linear(per="channel").fit(j).attribute().table["conversions"].tolist()
    [0.5, 0.5]
    """

    name = "linear"
    description = "equal credit to every touch (or every distinct channel) of the journey"

    def __init__(self, *, per="touch"):
        self.per = per

    def _validate_params(self):
        if self.per not in ("touch", "channel"):
            raise EngineError(f"linear: per must be 'touch' or 'channel', not {self.per!r}")

    def _touch_weights(self, journeys):
        return linear_weights(journeys, self.per)


class TimeDecay(RuleModel):
    """Time decay: a touch's weight halves for every ``half_life`` days before the conversion.

    Needs touch ages (journeys from :func:`engine.read_events`). Touches at the same age get equal
    weight; a journey's youngest touch has the largest weight.

    Parameters
    ----------
    half_life : float
        Days after which a touch's weight halves (default 7).

    Examples
    --------
    >>> import numpy as np
    >>> from engine import Journeys
    >>> from engine.models import TimeDecay
    >>> j = Journeys.from_lists([["a", "b"]], conversions=[1], ages=np.array([7.0, 0.0]))
    >>> TimeDecay(half_life=7).fit(j).attribute().table["conversions"].round(4).tolist()
    [0.3333, 0.6667]
    """

    name = "time_decay"
    description = "weights halve every half_life days before the conversion"
    requires = ("ages",)

    def __init__(self, *, half_life=7.0):
        self.half_life = half_life

    def _validate_params(self):
        if not (isinstance(self.half_life, Real) and np.isfinite(self.half_life)
                and self.half_life > 0):
            raise EngineError(f"time_decay: half_life must be a positive number of days, "
                              f"not {self.half_life!r}")

    def _touch_weights(self, journeys):
        return time_decay_weights(journeys, float(self.half_life))


def _check_weights(model: str, **weights) -> None:
    try:
        flat = {k: np.asarray(v, dtype=float) for k, v in weights.items()}
    except (TypeError, ValueError):
        raise EngineError(f"{model}: weights must be numbers, got {weights!r}") from None
    for key, value in flat.items():
        if np.any(~np.isfinite(value)) or np.any(value < 0):
            raise EngineError(f"{model}: {key} weights must be finite and non-negative")
    total = sum(float(v.sum()) for v in flat.values())
    if abs(total - 1.0) > 1e-9:
        raise EngineError(f"{model}: weights must sum to 1, they sum to {total:g}")


class PositionBased(RuleModel):
    """Position-based (U-shaped): ``first`` to the first touch, ``last`` to the last, the rest
    split equally over the middle touches.

    One touch gets 100 %, two touches 50/50 (each end's share in proportion: ``first/(first+last)``
    and ``last/(first+last)``).

    Parameters
    ----------
    first, last : float
        Shares of the first and last touch (default 0.4 each); the middle gets ``1 - first -
        last``.

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.models import PositionBased
    >>> j = Journeys.from_lists([["a", "b", "c", "d"]], conversions=[1])
    >>> PositionBased().fit(j).attribute().table["conversions"].round(3).tolist()
    [0.4, 0.1, 0.1, 0.4]
    """

    name = "position_based"
    description = "U-shaped: 40% first, 40% last, 20% shared by the touches between"

    def __init__(self, *, first=0.4, last=0.4):
        self.first = first
        self.last = last

    def _validate_params(self):
        if not (isinstance(self.first, Real) and isinstance(self.last, Real)):
            raise EngineError(f"{self.name}: first and last must be numbers, not "
                              f"{self.first!r} and {self.last!r}")
        middle = 1.0 - float(self.first) - float(self.last)
        _check_weights(self.name, first=self.first, last=self.last, middle=max(middle, 0.0))

    def _touch_weights(self, journeys):
        return position_weights(journeys, (self.first,), (self.last,),
                                1.0 - self.first - self.last)


class CustomPosition(RuleModel):
    """Custom position weights: ``head[i]`` to the i-th touch from the start, ``tail[i]`` to the
    i-th from the end, ``middle`` split equally over the touches in neither.

    Weights must sum to 1. Journeys too short to fill every position keep the shares of the
    positions they have, renormalised (see :func:`position_weights`).

    Parameters
    ----------
    head, tail : sequence of float
        Shares of the first ``len(head)`` and last ``len(tail)`` touches.
    middle : float
        Share of all other touches together.

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.models import CustomPosition
    >>> j = Journeys.from_lists([["a", "b", "c", "d", "e"]], conversions=[1])
    >>> m = CustomPosition(head=(0.5, 0.2), tail=(0.2,), middle=0.1)
    >>> m.fit(j).attribute().table["conversions"].round(3).tolist()
    [0.5, 0.2, 0.05, 0.05, 0.2]
    """

    name = "custom_position"
    description = "user-given shares for the first and last touches, the rest split equally"

    def __init__(self, *, head=(0.4,), tail=(0.4,), middle=0.2):
        self.head = head
        self.tail = tail
        self.middle = middle

    def _validate_params(self):
        for key in ("head", "tail"):
            if np.ndim(getattr(self, key)) != 1:
                raise EngineError(f"{self.name}: {key} must be a sequence of shares, e.g. "
                                  f"{key}=(0.4,), not {getattr(self, key)!r}")
        _check_weights(self.name, head=self.head, tail=self.tail, middle=self.middle)

    def _touch_weights(self, journeys):
        return position_weights(journeys, self.head, self.tail, float(self.middle))


class WShaped(RuleModel):
    """W-shaped (B2B): 30 % each to the first touch, the lead-creation touch and the
    opportunity-creation touch, 10 % split over the other touches.

    Needs milestone flags (event logs with ``lead``/``opportunity`` events). A journey that never
    reached a milestone loses that share and is renormalised; a touch with several roles gets
    every share it holds (see :func:`milestone_weights`).

    Examples
    --------
    >>> import numpy as np
    >>> from engine import Journeys
    >>> from engine.models import WShaped
    >>> j = Journeys.from_lists([["ad", "web", "mail", "call", "demo"]], conversions=[1],
    ...                         milestones=np.array([0, 1, 0, 2, 0], dtype=np.uint8))
    >>> WShaped().fit(j).attribute().table.set_index("channel")["conversions"].round(3).to_dict()
    {'ad': 0.3, 'call': 0.3, 'demo': 0.05, 'mail': 0.05, 'web': 0.3}
    """

    name = "w_shaped"
    description = "B2B: 30% each to first, lead-creation and opportunity-creation touch, 10% rest"
    requires = ("milestones",)
    shares = {"first": 0.3, "lead": 0.3, "opportunity": 0.3, "last": 0.0, "rest": 0.1}

    def __init__(self):
        pass

    def _touch_weights(self, journeys):
        return milestone_weights(journeys, **self.shares)


class FullPath(WShaped):
    """Full-path (B2B): 22.5 % each to the first, lead-creation, opportunity-creation and closing
    (last) touches, 10 % split over the others.

    Same milestone rules as :class:`WShaped`.

    Examples
    --------
    >>> import numpy as np
    >>> from engine import Journeys
    >>> from engine.models import FullPath
    >>> j = Journeys.from_lists([["ad", "web", "mail", "call", "demo"]], conversions=[1],
    ...                         milestones=np.array([0, 1, 0, 2, 0], dtype=np.uint8))
    >>> FullPath().fit(j).attribute().table.set_index("channel")["conversions"].round(3).to_dict()
    {'ad': 0.225, 'call': 0.225, 'demo': 0.225, 'mail': 0.1, 'web': 0.225}
    """

    name = "full_path"
    description = "B2B: 22.5% each to first, lead, opportunity and closing touch, 10% rest"
    shares = {"first": 0.225, "lead": 0.225, "opportunity": 0.225, "last": 0.225, "rest": 0.1}
