"""Shapley-value attribution: cooperative credit over channel coalitions, value function named.

"Shapley attribution" means different things in different tools; here the *value function* is a
named, documented choice. For a game ``v`` over the set ``N`` of channels, channel ``j`` gets

    phi_j = sum over S not holding j of |S|! (n - |S| - 1)! / n! * (v(S + j) - v(S)),

the only split that is efficient (``sum phi = v(N) - v({})``), symmetric, additive and gives a
null player nothing.

Value functions (``Shapley(value=...)``)
    ``"simplified"`` (Zhao, Mahboobi & Bagheri 2018)
        ``v(S) = sum over T subset of S of R(T)``, with ``R(T)`` the conversions (value) of the
        journeys whose channel *set* is exactly ``T``. Its Shapley value has the closed form
        ``phi_j = sum over T holding j of R(T) / |T|``: every conversion is split equally over
        the distinct channels of its journey. Credit sums to the totals by efficiency.
    ``"ordered"`` (same paper)
        The simplified value per touch position: the share ``R(T) / |T|`` of a channel is booked
        at the rank of the channel's first touch among the distinct channels of the journey
        (``position_credit_``). Summed over positions it equals ``"simplified"``.
    ``"conversion_rate"`` (Shao & Li 2011; Dalessandro et al. 2012)
        ``v(S) = P(conversion | channel set S)``, estimated by the conversion rate of the journeys
        whose channel set is exactly ``S`` (value: value per journey). Coalitions never observed
        get ``unobserved="zero"`` (then the Shapley value is a sum over the observed coalitions
        only, exact for any number of channels) or ``unobserved="model"`` (the rate predicted by
        ``classifier``, see ``"model"``). Beware: with many channels most channel sets hold a
        handful of journeys, their rates are noise, and zero for the sets never seen makes
        every large coalition look worthless; channels then often get negative Shapley values
        (no credit). ``unobserved="model"`` or ``"simplified"`` are steadier there.
    ``"model"``
        ``v(S)`` is the conversion probability a scikit-learn classifier of conversion on channel
        indicators (default: logistic regression) predicts for the indicator vector of ``S``,
        evaluated on every coalition; value: that probability times the value per conversion of
        the journeys with set ``S`` (the overall mean where none converted).
    ``"casv"`` (after Singal, Besbes, Desir, Goyal & Iyengar 2022, counterfactual adjusted
    Shapley)
        ``v(S)`` is the conversion probability (expected value) of the fitted Markov chain
        (:class:`engine.models.Markov`, ``markov_order``) in the counterfactual where the
        channels outside ``S`` are removed (their states send walks to ``(null)``), so
        ``v(N)`` is the chain's conversion probability and ``v({}) = 0``: the Markov
        counterfactual game the paper builds its attribution on, solved as a plain Shapley
        value over channels. The paper's own estimator, which adjusts the value state by state
        along the chain, is not reproduced here; where they differ, this one is the Shapley value
        of the chain-level counterfactual game.

    Where a game's Shapley values do not sum to the totals (every game but the simplified one),
    credit is each channel's share of the positive Shapley values times the total conversions
    (value); the Shapley values themselves are on ``shapley_values_``.

Computation
    Coalitions are bit masks (62 channels per 64-bit word). The channel set of every journey is a
    relational query (a ``bit_or`` aggregate over touches, on DuckDB through Ibis); coalitions
    are then counted with ``bincount``. Games that live on the observed coalitions only
    (``simplified``, ``ordered``, ``conversion_rate`` with zero fill) are solved exactly in
    ``O(coalitions x channels)`` for any number of channels: the Shapley value is linear in
    ``v``, and a coalition ``S`` adds ``w(|S| - 1) v(S)`` to its members and subtracts
    ``w(|S|) v(S)`` from the others. Other games are solved exactly over all ``2^n`` coalitions
    while ``n <= max_exact_channels`` (default 20): a Möbius transform gives the Harsanyi
    dividends ``m(T)`` and ``phi_j = sum over T holding j of m(T) / |T|``, both ``O(n 2^n)``
    butterflies vectorised with numpy. Beyond, permutations are sampled (antithetic pairs: each
    permutation and its reverse) and the Monte-Carlo standard error is reported
    (``standard_error_``).

Intervals
    A Bayesian bootstrap over journeys (Rubin 1981): each journey gets an ``Exp(1)`` weight (a
    path-table row of ``c`` identical journeys the sum of ``c`` of them, ``Gamma(c)``,
    separately for its converting and non-converting journeys), the weights are scaled to the
    number of journeys, and the game is rebuilt and solved per draw. ``"casv"`` draws the Markov
    chain's Dirichlet posterior instead (as :class:`engine.models.Markov` does). Draws are kept
    on the result.

References
----------
Zhao, K., Mahboobi, S. H. and Bagheri, S. R. (2018). Shapley value methods for attribution
modeling in online advertising. arXiv:1804.05327.
Shao, X. and Li, L. (2011). Data-driven multi-touch attribution models. KDD '11, 258-264.
Dalessandro, B., Perlich, C., Stitelman, O. and Provost, F. (2012). Causally motivated
attribution for online advertising. ADKDD '12.
Singal, R., Besbes, O., Desir, A., Goyal, V. and Iyengar, G. (2022). Shapley meets uniform: an
axiomatic framework for attribution in online advertising. Management Science 68(10).
Rubin, D. B. (1981). The Bayesian bootstrap. The Annals of Statistics 9(1), 130-134.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from math import comb
from numbers import Integral

import numpy as np
import pandas as pd

from engine.errors import EngineError, MissingDataError
from engine.journeys import Journeys
from engine.models._base import AttributionModel
from engine.results import Attribution

VALUE_FUNCTIONS = ("simplified", "ordered", "conversion_rate", "model", "casv")
UNOBSERVED = ("zero", "model")
BITS = 62  # channels per mask word: bit 63 stays clear, so words are non-negative int64
_HASH = np.uint64(0x9E3779B97F4A7C15)
_CASV_BATCH = 512  # coalitions whose Markov counterfactuals are solved together


# -- coalitions ----------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Coalitions:
    """The distinct channel sets of the journeys and what their journeys did.

    Attributes
    ----------
    channels : tuple of str
    masks : ndarray of int64, shape (n_coalitions, n_words)
        Bit ``c % 62`` of word ``c // 62`` is set when channel ``c`` is in the set; rows sorted.
    conversions, nulls, value : ndarray, shape (n_coalitions,)
    index : ndarray of int64, shape (n_journeys,)
        Row of each journey's coalition.
    """

    channels: tuple
    masks: np.ndarray
    conversions: np.ndarray
    nulls: np.ndarray
    value: np.ndarray
    index: np.ndarray

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @cached_property
    def members(self) -> np.ndarray:
        """Boolean ``(n_coalitions, n_channels)``: the channels of each coalition."""
        return _members(self.masks, self.n_channels)

    @cached_property
    def size(self) -> np.ndarray:
        """Number of channels in each coalition."""
        return np.bitwise_count(self.masks).sum(axis=1).astype(np.int64)

    def lookup(self, masks: np.ndarray) -> np.ndarray:
        """Row of each mask among the coalitions, ``-1`` where it was never observed."""
        return _lookup(self.masks, masks)


def _members(masks: np.ndarray, n_channels: int) -> np.ndarray:
    channel = np.arange(n_channels)
    words = masks[:, channel // BITS]
    return ((words >> (channel % BITS)) & 1).astype(bool)


def _from_members(members: np.ndarray) -> np.ndarray:
    """Masks ``(m, n_words)`` from a boolean membership matrix ``(m, n_channels)``."""
    n_channels = members.shape[1]
    n_words = max(1, -(-n_channels // BITS))
    masks = np.zeros((len(members), n_words), dtype=np.int64)
    for word in range(n_words):
        block = members[:, word * BITS:(word + 1) * BITS].astype(np.int64)
        masks[:, word] = block @ (np.int64(1) << np.arange(block.shape[1], dtype=np.int64))
    return masks


def _hash(masks: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        out = np.zeros(len(masks), dtype=np.uint64)
        for word in masks.T:
            out = out * _HASH + word.astype(np.uint64)
    return out


def _lookup(known: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Rows of ``wanted`` masks in ``known`` (hash, sort, search; equality then confirmed)."""
    keys = _hash(known)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    probe = _hash(wanted)
    at = np.clip(np.searchsorted(sorted_keys, probe), 0, max(len(keys) - 1, 0))
    if not len(keys):
        return np.full(len(wanted), -1, dtype=np.int64)
    row = order[at]
    found = (sorted_keys[at] == probe) & np.all(known[row] == wanted, axis=1)
    return np.where(found, row, -1)


def coalition_counts(journeys: Journeys, engine: str | None = None) -> Coalitions:
    """The channel set of every journey (a relational ``bit_or`` over touches) and, per
    distinct set, the journeys' conversions, non-conversions and value.

    Examples
    --------
    >>> from engine import Journeys
    >>> j = Journeys.from_lists([["a", "b", "a"], ["b", "a"], ["b"]], conversions=[1, 2, 0],
    ...                         value=[5, 6, 0], nulls=[1, 0, 3])
    >>> c = coalition_counts(j)
    >>> c.members.tolist(), c.conversions.tolist(), c.nulls.tolist(), c.index.tolist()
    ([[False, True], [True, True]], [0.0, 3.0], [3.0, 1.0], [1, 1, 0])
    """
    import pyarrow as pa

    from engine.ingest import backend

    con = backend.connect(engine)
    touches = backend.table(pa.table({"j": journeys.journey_index,
                                      "c": journeys.codes.astype(np.int64)}), con)
    per_journey = coalition_query(touches, ["j"], journeys.n_channels, code="c").order_by("j")
    fetched = backend.fetch(per_journey, con)
    words = [c for c in fetched.column_names if c.startswith("w")]
    masks = np.column_stack([fetched[w].to_numpy() for w in words]).astype(np.int64)
    distinct, index = _distinct_rows(masks)
    m = len(distinct)
    return Coalitions(
        channels=journeys.channels, masks=distinct,
        conversions=np.bincount(index, journeys.conversions, minlength=m),
        nulls=np.bincount(index, journeys.nulls, minlength=m),
        value=np.bincount(index, journeys.value, minlength=m), index=index)


def coalition_query(touches, journey: list[str], n_channels: int, code: str = "code"):
    """One row per journey of ``touches`` (grouped by the ``journey`` columns): its channel set as
    int64 words ``w0, w1, ...`` (bit ``c % 62`` of word ``c // 62``). A relational query run by
    any engine: the sum of ``1 << bit`` over the journey's distinct channels (Spark has no
    ``bit_or`` in Ibis)."""
    import ibis

    n_words = max(1, -(-n_channels // BITS))
    distinct = touches.select(*journey, _c=touches[code].cast("int64")).distinct()
    one = ibis.literal(1, type="int64")
    words = {f"w{w}": ibis.ifelse(distinct._c // BITS == w, one << (distinct._c % BITS),
                                  0).sum() for w in range(n_words)}
    return distinct.group_by(journey).aggregate(**words)


def coalitions_from(grouped, words: list[str], channels: tuple) -> Coalitions:
    """:class:`Coalitions` from a relational aggregate per channel set (columns ``words``,
    ``conversions``, ``nulls``, ``value``), rows sorted as :func:`coalition_counts` sorts them;
    ``index`` is empty (the journeys stayed on the engine)."""
    masks = np.column_stack([grouped[w].to_numpy() for w in words]).astype(np.int64)
    order = np.lexsort(masks.T[::-1])
    return Coalitions(channels=tuple(channels), masks=masks[order],
                      conversions=grouped["conversions"].to_numpy()[order].astype(float),
                      nulls=grouped["nulls"].to_numpy()[order].astype(float),
                      value=grouped["value"].to_numpy()[order].astype(float),
                      index=np.zeros(0, dtype=np.int64))


def _distinct_rows(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows in lexicographic order of the words and each row's index among them (a
    lexsort: ``np.unique(axis=0)`` is several times slower on wide masks)."""
    order = np.lexsort(masks.T[::-1])
    ordered = masks[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    index = np.empty(len(masks), dtype=np.int64)
    index[order] = np.cumsum(first) - 1
    return ordered[first], index


# -- Shapley solvers -----------------------------------------------------------------------------

def shapley_weights(n: int) -> np.ndarray:
    """``w(s) = s! (n - s - 1)! / n! = 1 / (n C(n - 1, s))`` for ``s = 0 .. n`` (``w(n) = 0``),
    from exact integer binomials (correctly rounded for any ``n``)."""
    return np.array([1.0 / (n * comb(n - 1, s)) if s < n else 0.0 for s in range(n + 1)])


def shapley_from_observed(members: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exact Shapley values of a game that is 0 on every coalition not listed.

    ``phi_j = sum over S holding j of w(|S| - 1) v(S) - sum over S without j of w(|S|) v(S)``.

    Parameters
    ----------
    members : bool array, shape (m, n)
        The listed coalitions (distinct, the empty one may be among them).
    values : array, shape (m, k)
        ``v`` on them (``k`` games at once).

    Returns
    -------
    ndarray, shape (n, k)

    Examples
    --------
    Two players, ``v({a}) = 1``, ``v({a, b}) = 3``: ``a`` gets ``(1 + 2) / 2 + 1 / 2 = 2``.

    >>> shapley_from_observed(np.array([[True, False], [True, True]]),
    ...                       np.array([[1.0], [3.0]])).ravel().tolist()
    [2.0, 1.0]
    """
    members = np.asarray(members, dtype=bool)
    values = np.asarray(values, dtype=float).reshape(len(members), -1)
    n = members.shape[1]
    w = shapley_weights(n)
    size = members.sum(axis=1)
    inside = w[np.maximum(size - 1, 0)][:, None] * values * (size > 0)[:, None]
    outside = w[size][:, None] * values
    return members.T.astype(float) @ (inside + outside) - outside.sum(axis=0)


def mobius(values: np.ndarray) -> np.ndarray:
    """Harsanyi dividends ``m(T) = sum over S subset of T of (-1)^|T - S| v(S)``, for values
    on all ``2^n`` coalitions (row = bit mask), by ``n`` in-place butterflies."""
    out = np.array(values, dtype=float, copy=True)
    n = int(len(out)).bit_length() - 1
    k = out.shape[1] if out.ndim > 1 else 1
    for bit in range(n):
        view = out.reshape(-1, 2, 1 << bit, k)
        view[:, 1] -= view[:, 0]
    return out


def shapley_exact(values: np.ndarray) -> np.ndarray:
    """Exact Shapley values from ``v`` on all ``2^n`` coalitions (row ``mask``), ``O(n 2^n)``.

    Parameters
    ----------
    values : array, shape (2^n,) or (2^n, k)

    Returns
    -------
    ndarray, shape (n, k)

    Examples
    --------
    >>> v = np.array([0.0, 1.0, 0.0, 3.0])  # v({}), v({a}), v({b}), v({a, b})
    >>> shapley_exact(v).ravel().tolist()
    [2.0, 1.0]
    """
    values = np.asarray(values, dtype=float)
    size = len(values)
    n = int(size).bit_length() - 1
    if size != 1 << n:
        raise EngineError("shapley_exact: values must cover all 2^n coalitions")
    k = values.shape[1] if values.ndim > 1 else 1
    dividends = mobius(values.reshape(size, k))
    popcount = np.bitwise_count(np.arange(size, dtype=np.int64))
    dividends[1:] /= popcount[1:, None]
    phi = np.empty((n, k))
    for bit in range(n):
        phi[bit] = dividends.reshape(-1, 2, 1 << bit, k)[:, 1].sum(axis=(0, 1))
    return phi


def all_coalitions(n: int) -> np.ndarray:
    """Boolean ``(2^n, n)`` membership of every coalition, row = bit mask."""
    masks = np.arange(1 << n, dtype=np.int64)
    return ((masks[:, None] >> np.arange(n)) & 1).astype(bool)


def shapley_sampled(evaluate, n: int, n_permutations: int, rng=None,
                    batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values by sampling permutations, with their Monte-Carlo standard errors.

    Permutations come in antithetic pairs (a random order and its reverse: a channel early in
    one is late in the other, which cancels much of the variance of position). A channel's
    marginal contribution in a permutation is ``v(prefix + j) - v(prefix)``; the pair mean is
    one sample, and the standard error is the samples' standard deviation over the square root
    of their number.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(members)`` for a boolean ``(m, n)`` membership matrix returns ``(m, k)``.
    n : int
        Number of players.
    n_permutations : int
        Permutations to draw (rounded up to an even number).
    rng : int or numpy.random.Generator, optional

    Returns
    -------
    phi, standard_error : ndarray, shape (n, k)

    Examples
    --------
    An additive game: every permutation gives the exact answer.

    >>> weights = np.array([1.0, 2.0, 3.0])
    >>> phi, se = shapley_sampled(lambda m: (m @ weights)[:, None], 3, 10, rng=0)
    >>> phi.ravel().tolist(), float(se.max())
    ([1.0, 2.0, 3.0], 0.0)
    """
    rng = np.random.default_rng(rng)
    pairs = max(1, -(-int(n_permutations) // 2))
    total = None
    squares = None
    done = 0
    while done < pairs:
        m = min(batch, pairs - done)
        order = rng.permuted(np.tile(np.arange(n), (m, 1)), axis=1)
        both = np.concatenate([order, order[:, ::-1]])
        rank = np.empty_like(both)
        np.put_along_axis(rank, both, np.arange(n)[None, :], axis=1)
        # Prefix i holds the players of rank < i (i = 0 .. n).
        prefixes = rank[:, None, :] < np.arange(n + 1)[None, :, None]
        values = np.asarray(evaluate(prefixes.reshape(-1, n)), dtype=float)
        values = values.reshape(2 * m, n + 1, -1)
        marginal = np.diff(values, axis=1)  # (2m, n ranks, k)
        by_player = np.take_along_axis(marginal, rank[:, :, None], axis=1)
        sample = 0.5 * (by_player[:m] + by_player[m:])
        total = sample.sum(axis=0) if total is None else total + sample.sum(axis=0)
        squares = (sample ** 2).sum(axis=0) if squares is None else squares + (
            sample ** 2).sum(axis=0)
        done += m
    mean = total / pairs
    if pairs > 1:
        variance = np.maximum(squares / pairs - mean ** 2, 0.0) * pairs / (pairs - 1)
        error = np.sqrt(variance / pairs)
    else:
        error = np.full_like(mean, np.nan)
    return mean, error


# -- games -----------------------------------------------------------------------------------

def _bootstrap(journeys: Journeys, coalitions: Coalitions, n_draws: int, rng,
               chunk: int = 64):
    """Bayesian-bootstrap coalition measures: (conversions, nulls, value), each
    ``(n_coalitions, n_draws)``.

    Every journey weighs ``Exp(1)``; weights are then scaled to sum to the number of journeys.
    A sum of ``c`` independent ``Exp(1)`` weights is ``Gamma(c)``, so the non-converting
    journeys of a coalition are drawn as one ``Gamma(nulls)`` (exact in distribution, and cheap:
    most rows of a path table do not convert). Converting rows are drawn row by row, because
    their value per conversion differs.
    """
    rng = np.random.default_rng(rng)
    total = float((journeys.conversions + journeys.nulls).sum())
    m = len(coalitions.masks)
    rows = np.flatnonzero(journeys.conversions > 0)
    rows = rows[np.argsort(coalitions.index[rows], kind="stable")]
    owner = coalitions.index[rows]
    starts = np.flatnonzero(np.r_[True, np.diff(owner) != 0]) if len(rows) else rows
    present = owner[starts]
    shape = journeys.conversions[rows]
    per_conversion = journeys.value[rows] / shape
    out = [np.zeros((m, n_draws)) for _ in range(3)]
    for lo in range(0, n_draws, chunk):
        k = min(chunk, n_draws - lo)
        conv = rng.standard_gamma(np.repeat(shape[:, None], k, axis=1))
        null = rng.standard_gamma(np.repeat(coalitions.nulls[:, None], k, axis=1))
        scale = total / (conv.sum(axis=0) + null.sum(axis=0))
        out[1][:, lo:lo + k] = null * scale
        if len(rows):
            conv *= scale
            out[0][present, lo:lo + k] = np.add.reduceat(conv, starts, axis=0)
            out[2][present, lo:lo + k] = np.add.reduceat(conv * per_conversion[:, None], starts,
                                                         axis=0)
    return tuple(out)


class Shapley(AttributionModel):
    """Shapley-value attribution with a named value function (see :mod:`engine.models.shapley`).

    Parameters
    ----------
    value : {"simplified", "ordered", "conversion_rate", "model", "casv"}
        The coalition value function (documented in the module).
    unobserved : {"zero", "model"}
        ``"conversion_rate"`` only: value of coalitions no journey had.
    classifier : scikit-learn classifier, optional
        ``"model"`` (and ``unobserved="model"``): estimator with ``fit(X, y, sample_weight)``
        and ``predict_proba``; default ``LogisticRegression(C=1.0, max_iter=1000)``.
    markov_order : int
        ``"casv"`` only: order of the Markov chain.
    max_exact_channels : int
        Games defined on all coalitions are solved exactly up to this many channels, sampled
        beyond (games on the observed coalitions are always exact).
    n_permutations : int
        Permutations sampled when sampling.
    ci_level : float
    n_draws : int
        Bayesian-bootstrap (casv: posterior) draws for the intervals; 0 for none.
    rng : int or numpy.random.Generator, optional

    Attributes
    ----------
    shapley_values_ : pandas.DataFrame
        ``channel, shapley_conversions, shapley_value`` (the game's own Shapley values) and,
        when sampled, ``standard_error_conversions, standard_error_value``.
    exact_ : bool
        Whether the values are exact (else sampled).
    coalitions_ : Coalitions
    position_credit_ : pandas.DataFrame
        ``"ordered"`` only: ``channel, position, conversions, value`` (position 1 = first).

    Examples
    --------
    Journeys ``{a, b}`` (2 conversions) and ``{a}`` (1): ``a`` gets ``1 + 1``, ``b`` gets 1.

    >>> from engine import Journeys
    >>> j = Journeys.from_lists([["a", "b"], ["a"], ["b"]], conversions=[2, 1, 0],
    ...                         nulls=[1, 1, 3])
    >>> Shapley(n_draws=0).fit(j).attribute().table["conversions"].tolist()
    [2.0, 1.0]
    """

    name = "shapley"
    description = "Shapley values of a named coalition game (simplified, ordered, conversion " \
                  "rate, classifier, Markov counterfactual)"

    def __init__(self, *, value="simplified", unobserved="zero", classifier=None, markov_order=1,
                 max_exact_channels=20, n_permutations=2000, ci_level=0.9, n_draws=200,
                 rng=None):
        self.value = value
        self.unobserved = unobserved
        self.classifier = classifier
        self.markov_order = markov_order
        self.max_exact_channels = max_exact_channels
        self.n_permutations = n_permutations
        self.ci_level = ci_level
        self.n_draws = n_draws
        self.rng = rng

    def _validate_params(self):
        if self.value not in VALUE_FUNCTIONS:
            raise EngineError(f"shapley: value must be one of {', '.join(VALUE_FUNCTIONS)}, not "
                              f"{self.value!r}")
        if self.unobserved not in UNOBSERVED:
            raise EngineError(f"shapley: unobserved must be 'zero' or 'model', not "
                              f"{self.unobserved!r}")
        for name, low in (("max_exact_channels", 1), ("n_permutations", 2), ("markov_order", 1)):
            number = getattr(self, name)
            if not isinstance(number, Integral) or isinstance(number, bool) or number < low:
                raise EngineError(f"shapley: {name} must be an integer >= {low}, not {number!r}")
        if self.max_exact_channels > 26:
            raise EngineError("shapley: max_exact_channels above 26 needs more than 2^26 "
                              "coalitions in memory; sample beyond (that is what it is for)")
        if self.classifier is not None and not (hasattr(self.classifier, "fit")
                                                and hasattr(self.classifier, "predict_proba")):
            raise EngineError("shapley: classifier must be a scikit-learn classifier with fit "
                              "and predict_proba")
        self._check_sampling()

    # -- fitting --------------------------------------------------------------------------------
    def _fit(self, journeys: Journeys) -> None:
        if journeys.total_conversions <= 0:
            raise MissingDataError("shapley: the journeys have no conversions to attribute")
        needs_nulls = self.value in ("conversion_rate", "model", "casv")
        if needs_nulls and not (journeys.nulls > 0).any():
            raise MissingDataError(
                f"shapley: value={self.value!r} compares converting with non-converting "
                "journeys, and all nulls are 0; read a path table with a nulls column or an "
                "event log, or use value='simplified'")
        rng = np.random.default_rng(self.rng)
        coalitions = coalition_counts(journeys)
        self.coalitions_ = coalitions
        self.channels_ = journeys.channels
        totals = np.array([journeys.total_conversions, journeys.total_value])
        n = journeys.n_channels
        self.exact_ = True
        error = None

        if self.value == "casv":
            from engine.models.markov import transition_counts

            self.chain_ = transition_counts(journeys, int(self.markov_order))
        if self.value in ("simplified", "ordered"):
            phi = self._simplified(coalitions.members, coalitions.conversions[:, None],
                                   coalitions.value[:, None])[:, :, 0]
        elif self.value == "conversion_rate" and self.unobserved == "zero":
            phi = self._rate_observed(coalitions, coalitions.conversions[:, None],
                                      coalitions.nulls[:, None],
                                      coalitions.value[:, None])[:, :, 0]
        else:
            game = self._game(journeys, coalitions, coalitions.conversions, coalitions.nulls,
                              coalitions.value)
            phi, error = self._solve(game, n, rng)
        self.phi_ = phi
        self.conversions_, self.value_ = (_credit(phi[:, 0], totals[0]),
                                          _credit(phi[:, 1], totals[1]))
        table = {"channel": list(journeys.channels), "shapley_conversions": phi[:, 0],
                 "shapley_value": phi[:, 1]}
        if error is not None:
            table.update(standard_error_conversions=error[:, 0], standard_error_value=error[:, 1])
        self.shapley_values_ = pd.DataFrame(table)
        if self.value == "ordered":
            self.position_credit_ = _position_credit(journeys)

        self.draws_ = None
        self._bounds = {}
        if self.n_draws:
            conv, value = self._draws(journeys, coalitions, totals, rng)
            self.draws_ = {"conversions": conv, "value": value}
            self._bounds = self._intervals(self.draws_)

    @staticmethod
    def _simplified(members, conversions, value) -> np.ndarray:
        """Closed form ``phi_j = sum over T holding j of R(T) / |T|``; measures ``(m, k)`` (k
        draws), result ``(n, 2, k)`` (conversions, value)."""
        size = members.sum(axis=1, keepdims=True).astype(float)
        share = np.hstack([conversions, value]) / np.maximum(size, 1.0)
        phi = members.T.astype(float) @ share
        return np.stack(np.split(phi, 2, axis=1), axis=1)

    @staticmethod
    def _rate_observed(coalitions, conversions, nulls, value) -> np.ndarray:
        """Conversion-rate game with zero fill, exact over the observed coalitions; measures
        ``(m, k)``, result ``(n, 2, k)``."""
        journeys = conversions + nulls
        rate = np.divide(conversions, journeys, out=np.zeros_like(journeys), where=journeys > 0)
        per_journey = np.divide(value, journeys, out=np.zeros_like(journeys), where=journeys > 0)
        phi = shapley_from_observed(coalitions.members, np.hstack([rate, per_journey]))
        return np.stack(np.split(phi, 2, axis=1), axis=1)

    def _game(self, journeys, coalitions, conversions, nulls, value, probability=None):
        """``evaluate(members) -> (m, 2)`` for the dense value functions."""
        if self.value == "casv":
            return self._casv_game(journeys, probability)
        classifier = self._fit_classifier(coalitions.members, conversions, nulls)
        overall = value.sum() / conversions.sum() if conversions.sum() > 0 else 0.0
        observed_rate = None
        if self.value == "conversion_rate":
            total = conversions + nulls
            observed_rate = np.divide(conversions, total, out=np.zeros(len(total)),
                                      where=total > 0)
            observed_value = np.divide(value, total, out=np.zeros(len(total)), where=total > 0)
        per_conversion = np.divide(value, conversions, out=np.full(len(value), overall),
                                   where=conversions > 0)

        def evaluate(members, masks=None):
            members = np.asarray(members, dtype=bool)
            rate = _predict(classifier, members)
            row = _lookup(coalitions.masks, _from_members(members) if masks is None else masks)
            found = row >= 0
            worth = rate * np.where(found, per_conversion[np.maximum(row, 0)], overall)
            if observed_rate is not None:
                rate = np.where(found, observed_rate[np.maximum(row, 0)], rate)
                worth = np.where(found, observed_value[np.maximum(row, 0)], worth)
            return np.column_stack([rate, worth])

        return evaluate

    def _fit_classifier(self, members, conversions, nulls):
        from sklearn.base import clone
        from sklearn.linear_model import LogisticRegression

        classifier = clone(self.classifier) if self.classifier is not None else \
            LogisticRegression(C=1.0, max_iter=1000)
        keep = (conversions + nulls) > 0
        x = members[keep].astype(float)
        features = np.vstack([x, x])
        labels = np.concatenate([np.ones(len(x)), np.zeros(len(x))])
        weights = np.concatenate([conversions[keep], nulls[keep]])
        positive = weights > 0
        try:
            classifier.fit(features[positive], labels[positive], sample_weight=weights[positive])
        except (ValueError, TypeError) as exc:
            raise EngineError(f"shapley: the classifier could not be fitted: {exc}") from None
        return classifier

    def _casv_game(self, journeys, probability=None):
        from engine.models.markov import absorption

        chain = self.chain_
        contains = chain.contains  # (n_transient, n_channels); (start) holds none

        def evaluate(members, masks=None):
            # A coalition keeps the states all of whose channels are in it; coalitions are
            # solved in batches, each batch's removals as the columns of one iteration.
            outside = ~np.asarray(members, dtype=bool)
            held = contains.astype(np.uint8)

            def solve(lo):
                part = outside[lo:lo + _CASV_BATCH]
                removed = (held @ part.T.astype(np.uint8)).T > 0
                return absorption(chain, probability, removed)[0, 1:, :]

            starts = range(0, len(outside), _CASV_BATCH)
            workers = min(len(starts), os.cpu_count() or 1)
            if workers < 2:
                return np.concatenate([solve(lo) for lo in starts])
            with ThreadPoolExecutor(workers) as pool:  # numpy releases the GIL in the solves
                return np.concatenate(list(pool.map(solve, starts)))

        return evaluate

    def _solve(self, evaluate, n, rng):
        if n <= self.max_exact_channels:
            masks = np.arange(1 << n, dtype=np.int64)[:, None]  # row = mask, one word
            return shapley_exact(evaluate(all_coalitions(n), masks)), None
        self.exact_ = False
        return shapley_sampled(evaluate, n, int(self.n_permutations), rng)

    def _draws(self, journeys, coalitions, totals, rng):
        n_draws = int(self.n_draws)
        if self.value == "casv":
            from engine.models.markov import dirichlet_draws

            probabilities = dirichlet_draws(self.chain_, n_draws, rng)
            phi = np.stack([self._solve(self._casv_game(journeys, probability),
                                        journeys.n_channels, rng)[0]
                            for probability in probabilities])  # (draws, n, 2)
        else:
            conv, nulls, value = _bootstrap(journeys, coalitions, n_draws, rng)
            if self.value in ("simplified", "ordered"):
                phi = np.moveaxis(self._simplified(coalitions.members, conv, value), -1, 0)
            elif self.value == "conversion_rate" and self.unobserved == "zero":
                phi = np.moveaxis(self._rate_observed(coalitions, conv, nulls, value), -1, 0)
            else:
                phi = np.stack([self._solve(self._game(journeys, coalitions, conv[:, d],
                                                       nulls[:, d], value[:, d]),
                                            journeys.n_channels, rng)[0]
                                for d in range(n_draws)])
        return _credit(phi[:, :, 0], totals[0]), _credit(phi[:, :, 1], totals[1])

    def _attribute(self) -> Attribution:
        bounds = {}
        for key in ("conversions", "value"):
            if key in self._bounds:
                bounds[f"{key}_lower"], bounds[f"{key}_upper"] = self._bounds[key]
        return Attribution.from_credit(self.name, self.channels_, self.conversions_, self.value_,
                                       ci_level=float(self.ci_level), draws=self.draws_,
                                       params=self.get_params(), **bounds)


def _predict(classifier, members: np.ndarray) -> np.ndarray:
    """Predicted conversion probability of indicator rows; logistic regression in closed form
    (no feature matrix copies), others through ``predict_proba`` in chunks."""
    from sklearn.linear_model import LogisticRegression

    if isinstance(classifier, LogisticRegression) and len(classifier.classes_) == 2:
        logit = members @ classifier.coef_[0] + classifier.intercept_[0]
        return 1.0 / (1.0 + np.exp(-logit))
    if len(classifier.classes_) < 2:
        return np.full(len(members), float(classifier.classes_[0]))
    positive = list(classifier.classes_).index(1.0)
    out = np.empty(len(members))
    for lo in range(0, len(members), 1 << 16):
        out[lo:lo + (1 << 16)] = classifier.predict_proba(
            members[lo:lo + (1 << 16)].astype(float))[:, positive]
    return out


def _credit(phi: np.ndarray, total: float) -> np.ndarray:
    """Each channel's share of the positive Shapley values (last axis), times ``total``."""
    positive = np.clip(np.nan_to_num(phi), 0.0, None)
    sums = positive.sum(axis=-1, keepdims=True)
    return np.divide(positive * total, sums, out=np.zeros_like(positive), where=sums > 0)


def _position_credit(journeys: Journeys) -> pd.DataFrame:
    """Ordered Shapley: each converting journey's conversions (value) split equally over its
    distinct channels, booked at the rank of each channel's first touch."""
    converting = journeys.converting
    row = converting.journey_index
    codes = converting.codes.astype(np.int64)
    key = row * converting.n_channels + codes
    _, first = np.unique(key, return_index=True)  # first touch of each (journey, channel)
    first = np.sort(first)
    rows, channel = row[first], codes[first]
    distinct = np.bincount(rows, minlength=converting.n_journeys)
    start = np.concatenate([[0], np.cumsum(distinct)[:-1]])
    rank = np.arange(len(first)) - start[rows] + 1
    share = 1.0 / distinct[rows]
    frame = pd.DataFrame({"channel": np.array(converting.channels, dtype=object)[channel],
                          "position": rank,
                          "conversions": share * converting.conversions[rows],
                          "value": share * converting.value[rows]})
    return (frame.groupby(["channel", "position"], as_index=False)[["conversions", "value"]]
            .sum().sort_values(["channel", "position"], ignore_index=True))


__all__ = ["Shapley", "Coalitions", "coalition_counts", "shapley_exact", "shapley_sampled",
           "shapley_from_observed", "shapley_weights", "mobius", "all_coalitions",
           "VALUE_FUNCTIONS"]
