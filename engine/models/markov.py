"""Markov-chain attribution: removal effects of an absorbing chain fitted to the journeys.

The journeys are read as walks through an absorbing Markov chain (Anderl et al. 2016): every
journey starts in ``(start)``, moves through one state per touch and ends in ``(conversion)`` or
``(null)``. A channel's *removal effect* is the share of conversions lost when the chain can no
longer pass through it, and credit is proportional to it. Everything is computed exactly (no
random walks); a random-walk simulator is kept as an independent check.

States and counts (:func:`transition_counts`)
    At order ``k`` the state after a touch is the tuple of the last ``k`` channels of the journey
    up to and including that touch; the first ``k - 1`` touches of a journey have shorter states
    (the usual convention: journey ``a > b > c`` at order 2 is ``(start) -> a -> a > b -> b > c
    -> (conversion)``). A journey row weighs ``conversions + nulls`` journeys: each of its
    transitions counts that many times, the last state moves to ``(conversion)`` ``conversions``
    times and to ``(null)`` ``nulls`` times. With ``collapse_repeats`` consecutive touches of the
    same channel are merged first (``a > a > b`` is ``a > b``). Transition probabilities are the
    counts divided by the counts leaving the same state.

Removal effects (:func:`removal_effects`)
    ``P`` is the probability of absorption in ``(conversion)`` from ``(start)``; removing channel
    ``c`` sends every transition into a state that contains ``c`` to ``(null)``, giving
    ``P_c``, and ``RE_c = 1 - P_c / P``. Removing only the states whose *last* channel is ``c``
    gives the same ``P_c`` (a state that holds ``c`` earlier is entered only through one that
    ends in ``c``); ``removal="state"`` of :class:`Markov` therefore removes each state on its own
    instead (see there). ``RE_c`` equals the probability that a converting walk visits ``c``,
    which the simulator checks.

Value (revenue) removal effects
    Each transition into ``(conversion)`` earns the mean value per conversion of the journeys
    that made it (``value / conversions`` summed over those journeys, per source state). ``V`` is
    the expected value earned from ``(start)``, ``V_c`` the same with ``c`` removed, and
    ``RE_c^value = 1 - V_c / V``. Value on journey rows without conversions earns nothing (it has
    no conversion to ride on); credit is scaled to the total value all the same.

Solving
    The absorption values solve ``(I - Q) x = b`` over the transient states. The chain's ``I - Q``
    fills in badly under LU (on a 1,000,000-journey path table: 1,111 states at order 3 give an
    LU with 0.25 million nonzeros, 11,037 states at order 4 one with 20 million that takes 18 s
    to factorise, and one factorisation is needed per channel and per posterior draw), so the
    systems are solved by the fixed-point iteration ``x <- b + Q x`` with self-transitions
    divided out, which converges geometrically for an absorbing chain. One sparse product per
    iteration advances every system at once: removals (and the conversion and value right-hand
    sides) are columns masked at the removed states, posterior draws are blocks of a
    block-diagonal ``Q``. Every few iterations an Aitken extrapolation jumps to the limit of the
    geometric tail (the error shrinks by a near-constant ratio), and the jump is accepted only
    when its residual proves it close: with ``T`` the expected number of steps to absorption
    (solved alongside), ``|x - guess| <= max|residual| * T``. The point solution is certified to
    ``1e-15`` of the conversion probability (exact to rounding; the tests check ``1e-12``
    against dense solves), posterior draws to ``1e-6``, far below their spread. On a
    1,000,000-journey table the extrapolation needs about 16 products where plain iteration
    needs 65.

The counts are computed in numpy over the CSR touch arrays of :class:`engine.Journeys`: k-gram
state ids, a dense lookup (or a hash factorisation) for the distinct states, and ``bincount``
over encoded transitions; no Python loop over journeys or touches. They move to the relational
layer when journeys outgrow one machine (the Spark backend).

References
----------
Anderl, E., Becker, I., von Wangenheim, F. and Schumann, J. H. (2016). Mapping the customer
journey: Lessons learned from graph-based online attribution modeling. *International Journal
of Research in Marketing* 33(3), 457-474.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property
from numbers import Integral

import numpy as np
import pandas as pd

from engine.errors import EngineError, InputError, MissingDataError, NotFittedError
from engine.journeys import RESERVED_CHANNELS, Journeys
from engine.models._base import AttributionModel
from engine.results import Attribution

START, CONVERSION, NULL = RESERVED_CHANNELS[:3]
MAX_ORDER = 6
REMOVALS = ("channel", "state")
DIRICHLET_PRIOR = 1.0
_TOLERANCE = 1e-15
_MAX_ITERATIONS = 100_000
# The convergence check costs about one iteration; every few iterations is often enough.
_CHECK_EVERY = 4
# Posterior draws vary by far more than this, so solving them more exactly buys nothing.
_DRAW_TOLERANCE = 1e-6
_EPS = np.finfo(float).eps
# Entries of the dense blocks (iterate, right-hand side, mask) one solve holds at a time.
_BLOCK_ENTRIES = 1 << 20
# Point fits of chains with at most this many transient states use dense matrices.
_DENSE_STATES = 128
# Largest id space grouped with a dense lookup table instead of a sort.
_DENSE_KEYS = 1 << 24


@dataclass(frozen=True, eq=False)
class MarkovChain:
    """Observed transitions of the absorbing chain fitted to journeys.

    States are numbered ``0`` = ``(start)``, ``1 .. n_transient - 1`` = the channel states (rows
    of ``grams``), ``n_transient`` = ``(conversion)``, ``n_transient + 1`` = ``(null)``.

    Attributes
    ----------
    channels : tuple of str
        Channel vocabulary (``grams`` index into it).
    order : int
        Order of the chain.
    grams : ndarray of int, shape (n_transient - 1, order)
        Channels of each channel state in journey order, ``-1`` before a journey's first touch
        (states of the first ``order - 1`` touches are shorter).
    source, target : ndarray of int, shape (n_edges,)
        Observed transitions, sorted by source then target.
    count : ndarray of float, shape (n_edges,)
        Journeys that made each transition (all positive).
    value : ndarray of float, shape (n_edges,)
        Conversion value carried by transitions into ``(conversion)``, 0 elsewhere.
    """

    channels: tuple
    order: int
    grams: np.ndarray
    source: np.ndarray
    target: np.ndarray
    count: np.ndarray
    value: np.ndarray

    @property
    def n_transient(self) -> int:
        """Number of transient states, ``(start)`` included."""
        return len(self.grams) + 1

    @property
    def conversion(self) -> int:
        """Index of ``(conversion)``."""
        return self.n_transient

    @property
    def null(self) -> int:
        """Index of ``(null)``."""
        return self.n_transient + 1

    @cached_property
    def states(self) -> tuple:
        """Names of all states: ``(start)``, channels joined by ``" > "``, ``(conversion)``,
        ``(null)``."""
        names = np.array(self.channels + ("",), dtype=object)[self.grams]
        joined = [" > ".join(n for n in row if n) for row in names]
        return (START, *joined, CONVERSION, NULL)

    @cached_property
    def out_count(self) -> np.ndarray:
        """Journeys leaving each transient state."""
        return np.bincount(self.source, self.count, minlength=self.n_transient)

    def probability(self) -> np.ndarray:
        """Maximum-likelihood transition probabilities: counts over counts leaving the source."""
        return self.count / self.out_count[self.source]

    @cached_property
    def reward(self) -> np.ndarray:
        """Mean value per conversion of each transition into ``(conversion)``, 0 elsewhere."""
        return np.where(self.target == self.conversion, self.value / self.count, 0.0)

    @cached_property
    def contains(self) -> np.ndarray:
        """Boolean ``(n_transient, n_channels)``: which channels each state holds."""
        held = np.zeros((self.n_transient, len(self.channels) + 1), dtype=bool)
        rows = np.repeat(np.arange(1, self.n_transient), self.order)
        held[rows, self.grams.ravel()] = True
        return held[:, :-1]

    @cached_property
    def last_channel(self) -> np.ndarray:
        """Channel of the touch that enters each state (``-1`` for ``(start)``)."""
        return np.concatenate([[-1], self.grams[:, -1]]).astype(np.int64)


def _id_type(size: int) -> type:
    """The narrowest of int32 and int64 that holds ids below ``size``."""
    return np.int32 if size < 2 ** 31 else np.int64


def _group(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``keys`` (all in ``[0, size)``) and the index of each key among them.

    A dense lookup table when the id space is small, else a hash factorisation (pandas) of the
    keys followed by a sort of the distinct ones only.
    """
    if size <= max(_DENSE_KEYS, 2 * len(keys)):
        seen = np.zeros(size, dtype=bool)
        seen[keys] = True
        distinct = np.flatnonzero(seen)
        rank = np.cumsum(seen, dtype=_id_type(len(distinct) + 2))
        rank -= 1
        return distinct, rank[keys]
    labels, distinct = pd.factorize(keys, sort=False)
    ranks = np.argsort(distinct)
    position = np.empty(len(ranks), dtype=_id_type(len(distinct) + 2))
    position[ranks] = np.arange(len(ranks))
    return distinct[ranks], position[labels]


def transition_counts(journeys: Journeys, order: int = 1,
                      collapse_repeats: bool = False) -> MarkovChain:
    """Transition counts of the order-``order`` absorbing chain of ``journeys``.

    Vectorised over the CSR touch arrays: each touch is encoded as the integer id of its k-gram
    state, distinct states are found with a dense lookup (or a hash factorisation when the id
    space is large), and transitions are summed with ``bincount`` over ``source * n + target``.
    Journey rows weighing nothing (no conversions, no nulls) are left out.

    Parameters
    ----------
    journeys : Journeys
    order : int
        Number of past channels a state remembers (1 to 6).
    collapse_repeats : bool
        Merge consecutive touches of the same channel before counting.

    Returns
    -------
    MarkovChain

    Raises
    ------
    EngineError
        The order is out of range, or too large for the number of channels (the state ids
        would overflow 64-bit integers), or no journey row weighs anything.

    Examples
    --------
    >>> from engine import Journeys
    >>> j = Journeys.from_lists([["a", "a", "b"]], conversions=[1], nulls=[2])
    >>> chain = transition_counts(j, order=2)
    >>> chain.states
    ('(start)', 'a', 'a > a', 'a > b', '(conversion)', '(null)')
    >>> chain.source.tolist(), chain.target.tolist(), chain.count.tolist()
    ([0, 1, 2, 3, 3], [1, 2, 3, 4, 5], [3.0, 3.0, 3.0, 1.0, 2.0])
    """
    order = check_order(order, journeys.n_channels)
    base = journeys.n_channels + 1
    conversions, nulls, value = journeys.conversions, journeys.nulls, journeys.value
    weight = conversions + nulls
    lengths, codes = journeys.lengths, journeys.codes
    weighted = weight > 0
    if not weighted.all():
        if not weighted.any():
            raise EngineError("markov: no journey has conversions or nulls to count")
        codes = codes[np.repeat(weighted, lengths)]
        lengths, weight = lengths[weighted], weight[weighted]
        conversions, nulls, value = conversions[weighted], nulls[weighted], value[weighted]
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    if collapse_repeats:
        keep = np.empty(len(codes), dtype=bool)
        keep[0] = True
        np.not_equal(codes[1:], codes[:-1], out=keep[1:])
        keep[starts] = True
        codes = codes[keep]
        lengths = np.add.reduceat(keep, starts, dtype=np.int64)
        del keep
        np.cumsum(lengths[:-1], out=starts[1:])
    n = len(codes)

    # Little-endian digits in base n_channels + 1: digit i is the channel i touches back, plus
    # one; 0 marks "before the journey started", so shorter states get distinct ids.
    gram = codes.astype(_id_type(base ** order))
    gram += 1
    for back in range(1, order):
        digit = np.zeros(n, dtype=gram.dtype)
        digit[back:] = codes[:-back]
        digit[back:] += 1
        for before in range(back):  # the first `back` touches of a journey look back past it
            digit[starts[lengths > before] + before] = 0
        digit *= base ** back
        gram += digit
        del digit
    distinct, state = _group(gram, base ** order)
    del gram
    state += 1
    distinct = distinct.astype(np.int64)
    grams = ((distinct[:, None] // base ** np.arange(order)[::-1]) % base - 1).astype(np.int64)
    n_transient = len(distinct) + 1

    # Transitions between transient states: key source * n_transient + target, one per touch.
    key = np.empty(n, dtype=_id_type(n_transient * n_transient))
    key[1:] = state[:-1]
    key[starts] = 0
    key *= n_transient
    key += state
    pairs = n_transient * n_transient
    if pairs <= max(_DENSE_KEYS, 2 * n):  # few possible pairs: count them all directly
        inner_count = np.bincount(key, np.repeat(weight, lengths), minlength=pairs)
        inner = np.flatnonzero(inner_count)
        inner_count = inner_count[inner]
    else:
        inner, at = _group(key, pairs)
        inner_count = np.bincount(at, np.repeat(weight, lengths), minlength=len(inner))
        del at
    del key
    ends = state[starts + lengths - 1]
    del state
    converting = conversions > 0
    end_conversions = np.bincount(ends, conversions, minlength=n_transient)
    end_nulls = np.bincount(ends, nulls, minlength=n_transient)
    end_value = np.bincount(ends, np.where(converting, value, 0.0), minlength=n_transient)

    inner = inner.astype(np.int64)
    return _chain(journeys.channels, order, grams, inner // n_transient, inner % n_transient,
                  inner_count, end_conversions, end_nulls, end_value)


def check_order(order, n_channels: int) -> int:
    """``order`` as an int, or an :class:`EngineError` when it is out of range or its state
    ids would overflow 64-bit integers with ``n_channels`` channels."""
    if not isinstance(order, Integral) or isinstance(order, bool) or not 1 <= order <= MAX_ORDER:
        raise EngineError(f"markov: order must be an integer from 1 to {MAX_ORDER}, not {order!r}")
    order = int(order)
    if (n_channels + 1) ** order >= 2 ** 62:
        raise EngineError(f"markov: order {order} with {n_channels} channels has too "
                          "many possible states; lower the order")
    return order


def _chain(channels, order, grams, inner_source, inner_target, inner_count, end_conversions,
           end_nulls, end_value) -> MarkovChain:
    """The chain from its transitions between transient states and the conversions, nulls and
    value of the journeys ending in each transient state (arrays over all of them)."""
    n_transient = len(grams) + 1
    into_conversion = np.flatnonzero(end_conversions > 0)
    into_null = np.flatnonzero(end_nulls > 0)
    source = np.concatenate([inner_source, into_conversion, into_null])
    target = np.concatenate([inner_target, np.full(len(into_conversion), n_transient),
                             np.full(len(into_null), n_transient + 1)])
    count = np.concatenate([inner_count, end_conversions[into_conversion],
                            end_nulls[into_null]])
    carried = np.concatenate([np.zeros(len(inner_source)), end_value[into_conversion],
                              np.zeros(len(into_null))])
    ordered = np.argsort(source * (n_transient + 2) + target, kind="stable")
    return MarkovChain(channels=channels, order=order, grams=grams,
                       source=source[ordered], target=target[ordered], count=count[ordered],
                       value=carried[ordered])


def chain_from_counts(channels: tuple, order: int, previous: np.ndarray, gram: np.ndarray,
                      count: np.ndarray, end_gram: np.ndarray, end_conversions: np.ndarray,
                      end_nulls: np.ndarray, end_value: np.ndarray) -> MarkovChain:
    """The chain from relational aggregates over touches (see
    :meth:`engine.ingest.table.JourneyTable.transitions`): journeys moving from state id
    ``previous`` (0 = ``(start)``) to ``gram``, and the conversions, nulls and value of the
    journeys ending in ``end_gram``. State ids are the little-endian k-gram digits of
    :func:`transition_counts`, so the result equals it on the same journeys.
    """
    base = len(channels) + 1
    distinct = np.unique(np.asarray(gram, dtype=np.int64))
    n_transient = len(distinct) + 1
    number = np.searchsorted(distinct, np.asarray(gram, dtype=np.int64)) + 1
    previous = np.asarray(previous, dtype=np.int64)
    before = np.where(previous == 0, 0, np.searchsorted(distinct, previous) + 1)
    grams = ((distinct[:, None] // base ** np.arange(order)[::-1]) % base - 1).astype(np.int64)
    ends = np.searchsorted(distinct, np.asarray(end_gram, dtype=np.int64)) + 1
    totals = [np.bincount(ends, np.asarray(v, dtype=float), minlength=n_transient)
              for v in (end_conversions, end_nulls, end_value)]
    keep = np.asarray(count, dtype=float) > 0
    return _chain(tuple(channels), order, grams, before[keep], number[keep],
                  np.asarray(count, dtype=float)[keep], *totals)


def dirichlet_draws(chain: MarkovChain, n_draws: int, rng=None,
                    prior: float = DIRICHLET_PRIOR) -> np.ndarray:
    """Posterior draws of the transition probabilities, one Dirichlet per state's row.

    Each state's outgoing probabilities get a Dirichlet posterior with parameters ``count +
    prior / d`` over the ``d`` transitions observed from it (a Perks prior: one pseudo-journey per
    state, spread evenly). Transitions never observed keep probability 0: most are impossible by
    construction (``(start) -> (conversion)``, k-grams that do not overlap).

    Returns
    -------
    ndarray, shape (n_draws, n_edges)
        Each draw's probabilities sum to 1 over every state's outgoing transitions.

    Examples
    --------
    >>> from engine import Journeys
    >>> chain = transition_counts(Journeys.from_lists([["a"], ["b"]], conversions=[3, 1],
    ...                                               nulls=[1, 2]))
    >>> draws = dirichlet_draws(chain, 4, rng=0)
    >>> draws.shape, bool(np.allclose(np.add.reduceat(draws, [0, 2, 4], axis=1), 1))
    ((4, 6), True)
    """
    return _dirichlet(chain, np.random.default_rng(rng).spawn(n_draws), prior)


def _dirichlet(chain: MarkovChain, generators, prior: float) -> np.ndarray:
    """One posterior draw per generator (each draw its own stream: draws do not depend on how
    they are batched)."""
    degree = np.bincount(chain.source, minlength=chain.n_transient)
    alpha = chain.count + prior / degree[chain.source]
    gamma = np.empty((len(generators), len(alpha)))
    for row, generator in zip(gamma, generators):
        generator.standard_gamma(alpha, out=row)
    starts = np.concatenate([[0], np.cumsum(degree)[:-1]])
    totals = np.add.reduceat(gamma, starts, axis=1)
    gamma /= np.repeat(totals, degree, axis=1)
    return gamma


def posterior_absorption(chain: MarkovChain, n_draws: int, rng=None, removals=None, *,
                         prior: float = DIRICHLET_PRIOR,
                         tolerance: float = _DRAW_TOLERANCE) -> np.ndarray:
    """:func:`absorption` for ``n_draws`` Dirichlet posterior draws of the transitions.

    The same numbers as ``absorption(chain, dirichlet_draws(chain, n_draws, rng, prior),
    removals)``, but each block of draws is sampled where it is solved, on a few threads, so
    all draws are never held at once.

    Examples
    --------
    >>> from engine import Journeys
    >>> chain = transition_counts(Journeys.from_lists([["a", "b"], ["b"]], conversions=[3, 1],
    ...                                               nulls=[2, 4]))
    >>> together = absorption(chain, dirichlet_draws(chain, 5, rng=1), chain.contains.T,
    ...                       tolerance=1e-6)
    >>> bool(np.array_equal(posterior_absorption(chain, 5, 1, chain.contains.T), together))
    True
    """
    generators = np.random.default_rng(rng).spawn(n_draws)
    keep, chunk = _systems(chain, removals)
    return _solve(chain, [lambda lo=lo: _dirichlet(chain, generators[lo:lo + chunk], prior)
                          for lo in range(0, n_draws, chunk)], keep, tolerance)


def absorption(chain: MarkovChain, probability=None, removals=None, *,
               tolerance: float = _TOLERANCE) -> np.ndarray:
    """Probability of conversion and expected value from ``(start)``, for every draw and removal.

    Parameters
    ----------
    chain : MarkovChain
    probability : array, shape (n_edges,) or (n_draws, n_edges), optional
        Transition probabilities (default: the maximum-likelihood ones).
    removals : bool array, shape (n_removals, n_transient), optional
        States each removal sends to ``(null)`` (``(start)`` must stay).
    tolerance : float
        Guaranteed bound on the error, relative to the intact chain's conversion probability
        (expected value) in the same draw.

    Returns
    -------
    ndarray, shape (n_draws, 1 + n_removals, 2)
        ``[:, 0]`` for the intact chain, ``[:, 1 + r]`` with removal ``r``; ``[..., 0]`` the
        conversion probability, ``[..., 1]`` the expected value.

    Notes
    -----
    Solves ``(I - Q) x = b`` by iterating ``x <- b + Q x`` from ``x = b``, with the
    self-transition probability ``q_ss`` divided out of each row (``Q_st / (1 - q_ss)``,
    ``b_s / (1 - q_ss)``: the same ``x``, and loops on one state cost no iterations). ``Q`` and
    ``b`` are nonnegative, so the iterates increase to ``x`` and the error after an update
    ``delta >= 0`` is ``(I - Q)^-1 delta <= max(delta) * T``, where ``T = (I - Q)^-1 1`` is the
    expected number of steps to absorption; a removal only shortens walks, so the intact chain's
    ``T`` bounds every removal. Every ``_CHECK_EVERY`` iterations, an Aitken extrapolation of
    each column (ratio of the last two updates) gives a guess; its residual ``r`` bounds its
    error by ``max|r| * T`` (see :func:`_certified`), and iteration stops when that is below
    ``tolerance`` times the intact value (or the residual is down to rounding).

    Every column (removal, and conversion or value) is masked to 0 at the states its removal
    sends to ``(null)``; one sparse product per iteration advances them all. Draws are blocks of
    a block-diagonal ``Q``, solved in chunks that bound memory.

    Examples
    --------
    >>> from engine import Journeys
    >>> chain = transition_counts(Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 1],
    ...                                               value=[10, 30], nulls=[1, 1]))
    >>> absorption(chain, removals=chain.contains.T).round(6).tolist()
    [[[0.5, 10.0], [0.25, 5.0], [0.0, 0.0]]]
    """
    if probability is None:
        probability = chain.probability()
    probability = np.atleast_2d(np.asarray(probability, dtype=float))
    keep, chunk = _systems(chain, removals)
    return _solve(chain, [lambda lo=lo: probability[lo:lo + chunk]
                          for lo in range(0, len(probability), chunk)], keep, tolerance)


def _systems(chain: MarkovChain, removals) -> tuple[np.ndarray, int]:
    """The states each system keeps (intact chain first), and how many draws to solve at once."""
    n = chain.n_transient
    keep = np.ones((1, n), dtype=bool)
    if removals is not None:
        removals = np.asarray(removals, dtype=bool).reshape(-1, n)
        if removals[:, 0].any():
            raise EngineError("absorption: (start) cannot be removed")
        keep = np.vstack([keep, ~removals])
    per_draw = 4 * n * (2 * len(keep) + 1) + 3 * len(chain.source)
    return keep, max(1, _BLOCK_ENTRIES // per_draw)


def _solve(chain: MarkovChain, blocks, keep: np.ndarray, tolerance: float) -> np.ndarray:
    """Solve every block of draws (``blocks``: callables returning probabilities), on a few
    threads: blocks are independent, and sampling and sparse products release the GIL."""
    def run(block):
        return _absorb(chain, block(), keep, tolerance)

    workers = min(len(blocks), os.cpu_count() or 1)
    if workers < 2:
        return np.concatenate([run(block) for block in blocks])
    with ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(run, blocks)))


def _absorb(chain: MarkovChain, probability: np.ndarray, keep: np.ndarray,
            tolerance: float) -> np.ndarray:
    n_draws = len(probability)
    n = chain.n_transient
    source, target = chain.source, chain.target
    inner = target < n
    loop = inner & (source == target)
    step = inner & ~loop
    into = target == chain.conversion
    leave = np.ones((n_draws, n))
    leave[:, source[loop]] -= probability[:, loop]

    weights = probability[:, step] / leave[:, source[step]]
    if n * n <= 4 * len(weights[0]) or (n_draws == 1 and n <= _DENSE_STATES):
        # Small or dense chains: one dense matrix per draw. A small point fit then needs no
        # scipy.sparse (whose import costs as much as the fit); draws, which cost more per
        # product, use the sparse one unless the dense one is hardly bigger.
        dense = np.zeros((n_draws, n, n))
        dense[:, source[step], target[step]] = weights

        def product(x):
            return np.matmul(dense, x.reshape(n_draws, n, -1)).reshape(n_draws * n, -1)
    else:
        import scipy.sparse as sp

        # Block-diagonal CSR straight from the edge arrays (sorted by source, so in order).
        n_step = int(step.sum())
        per_row = np.bincount(source[step], minlength=n)
        row_start = np.concatenate([[0], np.cumsum(per_row)[:-1]])
        block = np.arange(n_draws, dtype=np.int64)[:, None]
        indptr = np.append((row_start[None, :] + n_step * block).ravel(), n_draws * n_step)
        indices = (target[step][None, :] + n * block).ravel()
        product = sp.csr_matrix((weights.ravel(), indices, indptr),
                                shape=(n_draws * n, n_draws * n)).__matmul__

    # Columns: (conversion, value) for the intact chain and each removal, then T.
    rate = np.zeros((n_draws, n, 3))
    exit_rate = probability[:, into] / leave[:, source[into]]
    rate[:, source[into], 0] = exit_rate
    rate[:, source[into], 1] = exit_rate * chain.reward[into]
    rate[:, :, 2] = 1.0 / leave
    rate = rate.reshape(n_draws * n, 3)
    n_solved = 2 * len(keep)
    mask = np.hstack([np.repeat(keep.T, 2, axis=1), np.ones((n, 1), dtype=bool)])
    mask = np.tile(mask.astype(float), (n_draws, 1))
    b = np.hstack([np.tile(rate[:, :2], (1, len(keep))), rate[:, 2:]]) * mask

    def step(x):
        out = product(x)
        out += b
        out *= mask
        return out

    x, delta = b, None
    for iteration in range(1, _MAX_ITERATIONS + 1):
        updated = step(x)
        previous, delta = delta, updated - x
        x = updated
        if previous is None or iteration % _CHECK_EVERY:
            continue
        # Aitken: the error shrinks by a near-constant ratio per step; jump to the limit.
        now = np.sqrt(np.einsum("dnc,dnc->dc", *[delta.reshape(n_draws, n, -1)] * 2))
        before = np.sqrt(np.einsum("dnc,dnc->dc", *[previous.reshape(n_draws, n, -1)] * 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where((before > 0) & (now < before), now / before, 0.0)
        ratio = np.minimum(ratio, 0.999)
        guess = (delta.reshape(n_draws, n, -1) * (ratio / (1.0 - ratio))[:, None, :])
        guess += x.reshape(n_draws, n, -1)
        guess = guess.reshape(n_draws * n, -1)
        if _certified(step(guess) - guess, guess, n_draws, n, n_solved, tolerance):
            x = guess
            break
    else:
        raise EngineError(f"markov: the absorption probabilities did not converge in "
                          f"{_MAX_ITERATIONS} iterations (a loop the journeys hardly leave?)")
    return x[::n, :n_solved].reshape(n_draws, len(keep), 2)


def _certified(residual: np.ndarray, guess: np.ndarray, n_draws: int, n: int, n_solved: int,
               tolerance: float) -> bool:
    """Whether ``guess`` is within ``tolerance`` of the solution, from its residual.

    For ``(I - Q) x = b`` with ``Q >= 0`` absorbing, ``|x - guess| <= (I - Q)^-1 |residual|
    <= max|residual| * T`` with ``T = (I - Q)^-1 1`` the expected number of steps (its right-hand
    side is ``1 / (1 - q_ss) >= 1``); masking (removals) only lowers ``(I - Q)^-1``. ``T`` is the
    last column: with ``e = max|residual_T| < 1``, ``T <= guess_T / (1 - e)``. A residual down to
    a few units in the last place is rounding: the guess is then exact to rounding.
    """
    residual = np.abs(residual).reshape(n_draws, n, -1).max(axis=1)
    guess = guess.reshape(n_draws, n, -1)
    spread = residual[:, -1]
    if np.any(spread >= 0.5):
        return False
    t_bound = guess[:, :, -1].max(axis=1) / (1.0 - spread)
    error = residual[:, :n_solved] * t_bound[:, None]
    intact = np.tile(guess[:, 0, :2], n_solved // 2)
    rounding = residual[:, :n_solved] <= 8 * _EPS * np.abs(guess[:, :, :n_solved]).max(axis=1)
    return bool(np.all((error <= tolerance * intact) | rounding))


def removal_effects(chain: MarkovChain, probability=None, removals=None, *,
                    tolerance: float = _TOLERANCE) -> np.ndarray:
    """Removal effects ``1 - P_r / P`` for conversions and value.

    Parameters
    ----------
    chain : MarkovChain
    probability : array, shape (n_edges,) or (n_draws, n_edges), optional
        Transition probabilities (default: the maximum-likelihood ones).
    removals : bool array, shape (n_removals, n_transient), optional
        States each removal sends to ``(null)``; default: one removal per channel, of every state
        that contains it (``chain.contains.T``).
    tolerance : float
        Error bound of the absorption values (see :func:`absorption`).

    Returns
    -------
    ndarray, shape (n_draws, n_removals, 2)
        ``[..., 0]`` for conversions, ``[..., 1]`` for value (NaN where the chain earns no
        value). Rounding below 0 is clipped to 0.

    Notes
    -----
    With ``P`` the absorption probability in ``(conversion)`` from ``(start)`` and ``P_r`` the
    same after sending every transition into the removed states to ``(null)`` (Anderl et al.
    2016), ``RE_r = 1 - P_r / P``; the value version uses expected value instead.

    Examples
    --------
    Journeys ``a > b`` (1 conversion, 1 null) and ``b`` (1 conversion, 1 null): ``P = 1/2``;
    without ``a`` only ``b`` converts, ``P_a = 1/4``; without ``b`` nothing does.

    >>> from engine import Journeys
    >>> chain = transition_counts(Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 1],
    ...                                               nulls=[1, 1]))
    >>> removal_effects(chain)[0, :, 0].tolist()
    [0.5, 1.0]
    """
    if removals is None:
        removals = chain.contains.T
    return _effects(absorption(chain, probability, removals, tolerance=tolerance))


def _effects(solved: np.ndarray) -> np.ndarray:
    """Removal effects from :func:`absorption`'s output (intact chain first)."""
    intact, removed = solved[:, :1], solved[:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        effects = np.where(intact > 0, 1.0 - removed / intact, np.nan)
    return np.clip(effects, 0.0, None)


@dataclass(frozen=True)
class Walks:
    """Random walks through a chain (see :func:`simulate_walks`).

    Attributes
    ----------
    converted : ndarray of bool, shape (n_walks,)
    value : ndarray of float, shape (n_walks,)
        Value earned (the reward of the transition into ``(conversion)``; 0 if not converted).
    visited : ndarray of bool, shape (n_walks, n_channels)
        Whether the walk entered a state holding each channel.
    """

    converted: np.ndarray
    value: np.ndarray
    visited: np.ndarray


def simulate_walks(chain: MarkovChain, n_walks: int, rng=None, *, probability=None,
                   removed=None, max_steps: int = 100_000) -> Walks:
    """Monte-Carlo random walks from ``(start)`` until absorption: an independent check of the
    exact computations (never used to fit).

    Walks advance together, one step per loop iteration; a step draws each walk's next
    transition by inverting the cumulative probabilities of its state's row.

    Parameters
    ----------
    chain : MarkovChain
    n_walks : int
    rng : int or numpy.random.Generator, optional
    probability : array, shape (n_edges,), optional
        Transition probabilities (default: the maximum-likelihood ones).
    removed : bool array, shape (n_transient,), optional
        States whose entry sends the walk to ``(null)``.
    max_steps : int
        Steps after which walks still going raise an error.

    Returns
    -------
    Walks

    Examples
    --------
    >>> from engine import Journeys
    >>> chain = transition_counts(Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 1],
    ...                                               nulls=[1, 1]))
    >>> walks = simulate_walks(chain, 20_000, rng=1)
    >>> round(float(walks.converted.mean()), 2)
    0.5
    >>> round(float(walks.visited[walks.converted, 0].mean()), 1)  # removal effect of a
    0.5
    """
    rng = np.random.default_rng(rng)
    n = chain.n_transient
    probability = chain.probability() if probability is None else np.asarray(probability, float)
    stops = np.zeros(n + 2, dtype=bool)
    stops[n:] = True
    if removed is not None:
        stops[:n] = np.asarray(removed, dtype=bool)
    degree = np.bincount(chain.source, minlength=n)
    last_edge = np.cumsum(degree) - 1
    cumulative = np.cumsum(probability)
    before = cumulative[last_edge] - np.add.reduceat(probability, last_edge - degree + 1)
    row_total = cumulative[last_edge] - before
    contains = np.vstack([chain.contains, np.zeros((2, len(chain.channels)), dtype=bool)])

    converted = np.zeros(n_walks, dtype=bool)
    value = np.zeros(n_walks)
    visited = np.zeros((n_walks, len(chain.channels)), dtype=bool)
    walk = np.arange(n_walks)
    state = np.zeros(n_walks, dtype=np.int64)
    for _ in range(max_steps):
        if not len(walk):
            break
        point = before[state] + rng.random(len(walk)) * row_total[state]
        edge = np.minimum(np.searchsorted(cumulative, point, side="right"), last_edge[state])
        state = chain.target[edge]
        visited[walk] |= contains[state]
        won = state == chain.conversion
        converted[walk[won]] = True
        value[walk[won]] = chain.reward[edge[won]]
        going = ~stops[state]
        walk, state = walk[going], state[going]
    else:
        raise EngineError(f"simulate_walks: {len(walk)} walks still going after {max_steps} steps")
    return Walks(converted=converted, value=value, visited=visited)


def _credit(scores: np.ndarray, total: float) -> np.ndarray:
    """Credit proportional to ``scores`` (last axis: channels) summing to ``total``."""
    scores = np.nan_to_num(scores)
    sums = scores.sum(axis=-1, keepdims=True)
    return np.divide(scores * total, sums, out=np.zeros_like(scores), where=sums > 0)


def _draw_tolerance(conversions: float, nulls: float) -> float:
    """How exactly to solve posterior draws: 1 % of the posterior's relative standard deviation
    of the conversion probability, ``sqrt((1 - p) / (n p))`` over ``n`` journeys converting at
    rate ``p`` (between ``1e-9`` and ``1e-4``). The numerical error then
    stays far below the spread the intervals describe, and below the Monte-Carlo error of their
    quantiles, while large tables (with narrow posteriors) are solved more exactly."""
    n = conversions + nulls
    p = conversions / n
    spread = np.sqrt((1.0 - p) / (n * p)) if 0 < p < 1 else 0.0
    return float(np.clip(0.01 * spread, 1e-9, 1e-4))


class Markov(AttributionModel):
    """Markov-chain attribution: credit by removal effect (Anderl et al. 2016), exact.

    Fits an absorbing order-``order`` Markov chain to the journeys (states ``(start)``, channel
    k-grams, ``(conversion)``, ``(null)``), computes each channel's removal effect for
    conversions and for value by sparse linear algebra, and splits the total conversions (value)
    in proportion to them. Non-converting journeys (``nulls``) are required. See
    :mod:`engine.models.markov` for the exact definitions of states, counts, removal effects and
    value.

    Parameters
    ----------
    order : int
        Number of past channels a state remembers, 1 to 6. The first ``order - 1`` touches of a
        journey have shorter states.
    collapse_repeats : bool
        Merge consecutive touches of the same channel first (ChannelAttribution does so). At
        order 1 this changes nothing: it only removes self-loops, which do not change where a
        walk is absorbed.
    removal : {"channel", "state"}
        ``"channel"``: channel ``c``'s removal effect is ``1 - P_c / P`` with every state holding
        ``c`` removed. ``"state"``: every state (channel sequence) is removed on its own, and a
        channel scores the sum of the removal effects of the states it enters (whose last
        channel it is); the per-state effects are in ``state_removal_effects_``. Identical at
        order 1. ``"state"`` solves one system per state: for orders above 2 it is slow with
        intervals.
    ci_level : float
        Probability mass of the intervals (default 0.9).
    n_draws : int
        Posterior draws for the intervals (0: no intervals, NaN bounds).
    rng : int or numpy.random.Generator, optional
        Seed of the posterior draws.

    Attributes
    ----------
    chain_ : MarkovChain
        The fitted transitions.
    channels_ : tuple of str
    conversion_probability_ : float
        Probability that a walk from ``(start)`` converts (total conversions over journeys).
    removal_effects_ : pandas.DataFrame
        ``channel, removal_effect_conversions, removal_effect_value`` and their ``_lower`` and
        ``_upper`` bounds.
    state_removal_effects_ : pandas.DataFrame
        With ``removal="state"`` only: ``state, channel, removal_effect_conversions,
        removal_effect_value`` per channel state.
    conversions_, value_ : ndarray
        Credit per channel.
    draws_ : dict or None
        ``{"conversions", "value", "removal_effect_conversions", "removal_effect_value"}``, each
        ``(n_draws, n_channels)``.

    Notes
    -----
    Intervals come from a posterior over transitions: every state's outgoing probabilities get a
    Dirichlet posterior from its counts plus a Perks prior (one pseudo-journey per state spread
    over the transitions observed from it; see :func:`dirichlet_draws`). This is the model's own
    likelihood (transitions are multinomial given the state), it keeps the structural zeros of
    the chain, and it needs no refit per draw, so all draws are solved together. The value per
    conversion of each transition into ``(conversion)`` is held at its observed mean. Credit in
    each draw sums to the observed totals. Each draw is solved to 1 % of the posterior spread of
    the conversion probability (see :func:`_draw_tolerance`), advanced with the other draws in
    one block-diagonal iteration, on a few threads: on a table of 1,000,000 journeys (10
    channels, 2 cores), 200 draws add about 0.02 s at order 1, 0.1 s at order 2 and 0.4 s at
    order 3 (1,111 states) to a point fit of 0.05-0.1 s.

    Examples
    --------
    Hand-checkable: ``P = 5/8``; removal effects ``a 1/2, b 4/5, c 7/15`` (sum ``53/30``), so
    ``a`` gets ``15/53`` of the 5 conversions.

    >>> from engine import Journeys
    >>> from engine.models import Markov
    >>> j = Journeys.from_lists([["a", "b"], ["a", "c"], ["b"], ["c", "b"]],
    ...                         conversions=[1, 1, 2, 1], value=[10, 20, 30, 5], nulls=[1, 1, 0, 1])
    >>> model = Markov(n_draws=0).fit(j)
    >>> model.removal_effects_[["channel", "removal_effect_conversions"]].round(4).values.tolist()
    [['a', 0.5], ['b', 0.8], ['c', 0.4667]]
    >>> model.attribute().table["conversions"].round(4).tolist()
    [1.4151, 2.2642, 1.3208]
    """

    name = "markov"
    description = "removal effects of an order-k Markov chain over the journeys (exact)"

    def __init__(self, *, order=1, collapse_repeats=False, removal="channel", ci_level=0.9,
                 n_draws=200, rng=None):
        self.order = order
        self.collapse_repeats = collapse_repeats
        self.removal = removal
        self.ci_level = ci_level
        self.n_draws = n_draws
        self.rng = rng

    def _validate_params(self):
        if (not isinstance(self.order, Integral) or isinstance(self.order, bool)
                or not 1 <= self.order <= MAX_ORDER):
            raise EngineError(f"markov: order must be an integer from 1 to {MAX_ORDER}, "
                              f"not {self.order!r}")
        if not isinstance(self.collapse_repeats, (bool, np.bool_)):
            raise EngineError(f"markov: collapse_repeats must be True or False, not "
                              f"{self.collapse_repeats!r}")
        if self.removal not in REMOVALS:
            raise EngineError(f"markov: removal must be 'channel' or 'state', not "
                              f"{self.removal!r}")
        self._check_sampling()

    @staticmethod
    def _check(conversions: float, nulls: float, channels_touched: int) -> None:
        if conversions <= 0:
            raise MissingDataError("markov: the journeys have no conversions; removal effects "
                                   "need converting journeys")
        if nulls <= 0:
            raise MissingDataError(
                "markov: the journeys have no non-converting journeys (all nulls are 0); "
                "without them every path converts and removal effects are meaningless; read "
                "a path table with a nulls column (total_null) or an event log")
        if channels_touched < 2:
            raise InputError("markov: the journeys touch fewer than two channels; there is "
                             "nothing to attribute between")

    def _removals(self, chain: MarkovChain) -> np.ndarray:
        if self.removal == "channel":
            return chain.contains.T
        return np.eye(chain.n_transient, dtype=bool)[1:]

    def _channel_scores(self, chain: MarkovChain, effects: np.ndarray) -> np.ndarray:
        """Per-channel scores ``(n_draws, n_channels, 2)`` from per-removal effects."""
        if self.removal == "channel":
            return effects
        owner = np.zeros((chain.n_transient - 1, len(chain.channels)))
        owner[np.arange(chain.n_transient - 1), chain.last_channel[1:]] = 1.0
        return np.einsum("drm,rc->dcm", np.nan_to_num(effects), owner)

    @classmethod
    def _check_journeys(cls, journeys: Journeys) -> None:
        weighted = np.repeat(journeys.conversions + journeys.nulls > 0, journeys.lengths)
        touched = np.bincount(journeys.codes, weighted, minlength=journeys.n_channels)
        cls._check(journeys.total_conversions, float(journeys.nulls.sum()),
                   np.count_nonzero(touched))

    def _fit(self, journeys: Journeys) -> None:
        self._check_journeys(journeys)
        chain = transition_counts(journeys, self.order, bool(self.collapse_repeats))
        self._fit_chain(chain, journeys.total_conversions, journeys.total_value,
                        _draw_tolerance(journeys.total_conversions, float(journeys.nulls.sum())))

    def _fit_table(self, table) -> None:
        """Fit from a :class:`engine.ingest.table.JourneyTable`: the transition counts come
        from the engine, nothing per journey comes back."""
        self._check(table.total_conversions, table.total_nulls, table.channels_touched)
        chain = table.transitions(self.order, bool(self.collapse_repeats))
        self._fit_chain(chain, table.total_conversions, table.total_value,
                        _draw_tolerance(table.total_conversions, table.total_nulls))

    def _fit_chain(self, chain: MarkovChain, total_conversions: float, total_value: float,
                   tolerance: float) -> None:
        removals = self._removals(chain)
        solved = absorption(chain, removals=removals)
        point = _effects(solved)
        scores = self._channel_scores(chain, point)[0]
        totals = np.array([total_conversions, total_value])
        self.chain_ = chain
        self.channels_ = chain.channels
        self.conversion_probability_ = float(solved[0, 0, 0])
        self.conversions_ = _credit(scores[:, 0], totals[0])
        self.value_ = _credit(scores[:, 1], totals[1])

        bounds = {}
        self.draws_ = None
        if self.n_draws:
            drawn = self._channel_scores(chain, _effects(posterior_absorption(
                chain, int(self.n_draws), self.rng, removals, tolerance=tolerance)))
            self.draws_ = {
                "conversions": _credit(drawn[..., 0], totals[0]),
                "value": _credit(drawn[..., 1], totals[1]),
                "removal_effect_conversions": drawn[..., 0],
                "removal_effect_value": drawn[..., 1]}
            bounds = self._intervals(self.draws_)
        nan = np.full(len(chain.channels), np.nan)
        table = {"channel": list(chain.channels)}
        for key, column in (("removal_effect_conversions", scores[:, 0]),
                            ("removal_effect_value", scores[:, 1])):
            lower, upper = bounds.get(key, (nan, nan))
            table.update({key: column, f"{key}_lower": lower, f"{key}_upper": upper})
        self.removal_effects_ = pd.DataFrame(table)
        self._bounds = bounds
        if self.removal == "state":
            self.state_removal_effects_ = pd.DataFrame({
                "state": list(chain.states[1:chain.n_transient]),
                "channel": [chain.channels[c] for c in chain.last_channel[1:]],
                "removal_effect_conversions": point[0, :, 0],
                "removal_effect_value": point[0, :, 1]})

    def _attribute(self) -> Attribution:
        bounds = {}
        for key in ("conversions", "value"):
            if key in self._bounds:
                bounds[f"{key}_lower"], bounds[f"{key}_upper"] = self._bounds[key]
        draws = None if self.draws_ is None else {k: self.draws_[k] for k in ("conversions",
                                                                              "value")}
        return Attribution.from_credit(self.name, self.channels_, self.conversions_, self.value_,
                                       ci_level=float(self.ci_level), draws=draws,
                                       params=self.get_params(), **bounds)

    # -- inspection ---------------------------------------------------------------------------
    def _fitted_chain(self) -> MarkovChain:
        if not hasattr(self, "chain_"):
            raise NotFittedError(f"{self.name} is not fitted yet; call fit(journeys) first")
        return self.chain_

    def transition_table(self) -> pd.DataFrame:
        """The fitted transitions: ``from_state, to_state, count, probability``.

        Examples
        --------
        >>> from engine import Journeys
        >>> from engine.models import Markov
        >>> j = Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 1], nulls=[1, 1])
        >>> Markov(n_draws=0).fit(j).transition_table()
          from_state      to_state  count  probability
        0    (start)             a    2.0          0.5
        1    (start)             b    2.0          0.5
        2          a             b    2.0          1.0
        3          b  (conversion)    2.0          0.5
        4          b        (null)    2.0          0.5
        """
        chain = self._fitted_chain()
        names = np.array(chain.states, dtype=object)
        return pd.DataFrame({"from_state": names[chain.source], "to_state": names[chain.target],
                             "count": chain.count, "probability": chain.probability()})

    def to_networkx(self):
        """The fitted chain as a ``networkx.DiGraph``.

        Nodes are state names with a ``kind`` attribute (``start``, ``channel``, ``conversion``,
        ``null``); edges carry ``probability`` and ``count``.

        Examples
        --------
        >>> from engine import Journeys
        >>> from engine.models import Markov
        >>> j = Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 1], nulls=[1, 1])
        >>> graph = Markov(n_draws=0).fit(j).to_networkx()
        >>> graph.number_of_nodes(), round(graph.edges["a", "b"]["probability"], 3)
        (5, 1.0)
        """
        import networkx as nx

        chain = self._fitted_chain()
        graph = nx.DiGraph()
        kinds = ["start"] + ["channel"] * (chain.n_transient - 1) + ["conversion", "null"]
        graph.add_nodes_from((name, {"kind": kind}) for name, kind in zip(chain.states, kinds))
        states = chain.states
        graph.add_edges_from(
            (states[s], states[t], {"probability": float(p), "count": float(c)})
            for s, t, p, c in zip(chain.source, chain.target, chain.probability(), chain.count))
        return graph

    def write_graphml(self, path) -> None:
        """Write :meth:`to_networkx` to a GraphML file at ``path``."""
        import networkx as nx

        nx.write_graphml(self.to_networkx(), path)

    def plot_graph(self, ax=None, min_probability: float = 0.0):
        """Draw the fitted chain, edge widths proportional to transition probability.

        ``(start)`` is on the left, ``(conversion)`` and ``(null)`` on the right; between them
        the states of the first ``order - 1`` touches stand in columns by length, and the states
        of full length (the only ones that pass between each other) on a circle.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        min_probability : float
            Leave out edges with a smaller probability.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt
        import networkx as nx

        chain = self._fitted_chain()
        graph = self.to_networkx()
        graph.remove_edges_from([(s, t) for s, t, p in graph.edges(data="probability")
                                 if p < min_probability])
        order = chain.order
        length = (chain.grams >= 0).sum(axis=1)
        position = {START: (0.0, 0.0), CONVERSION: (order + 2.0, 0.6), NULL: (order + 2.0, -0.6)}
        for column in range(1, order + 1):
            members = [chain.states[i + 1] for i in np.flatnonzero(length == column)]
            if column < order:
                heights = np.linspace(1, -1, len(members)) if len(members) > 1 else [0.0]
                position.update({m: (float(column), float(h)) for m, h in zip(members, heights)})
            else:
                angle = np.linspace(0, 2 * np.pi, len(members), endpoint=False) + np.pi / 2
                position.update({m: (order + 0.5 + 0.7 * np.cos(a), 1.0 * np.sin(a))
                                 for m, a in zip(members, angle)})
        if ax is None:
            _, ax = plt.subplots(figsize=(4 + 2.5 * order, 6))
        widths = [0.5 + 6 * p for _, _, p in graph.edges(data="probability")]
        # Many states share the circle: shrink nodes and labels so that they stay apart.
        crowding = min(1.0, 20.0 / graph.number_of_nodes())
        node_size = 900 * crowding
        nx.draw_networkx_nodes(graph, position, ax=ax, node_color="#DDE6F2", node_size=node_size)
        nx.draw_networkx_labels(graph, position, ax=ax, font_size=max(4.0, 8 * crowding))
        nx.draw_networkx_edges(graph, position, ax=ax, width=widths, edge_color="#4C72B0",
                               alpha=0.6, arrows=True, connectionstyle="arc3,rad=0.08",
                               node_size=node_size)
        ax.set_title(f"markov (order {order}): transition probabilities")
        ax.set_axis_off()
        return ax


def _end_grams(journeys: Journeys, channels: tuple, order: int,
               collapse_repeats: bool) -> np.ndarray:
    """State id (as in :func:`transition_counts`, over the vocabulary ``channels``) of each
    journey's last touch; -1 where it involves a channel outside ``channels``."""
    position = {name: i for i, name in enumerate(channels)}
    translate = np.array([position.get(name, -1) for name in journeys.channels], dtype=np.int64)
    codes, row = translate[journeys.codes], journeys.journey_index
    if collapse_repeats:
        keep = np.ones(len(codes), dtype=bool)
        keep[1:] = (codes[1:] != codes[:-1]) | (row[1:] != row[:-1])
        codes, row = codes[keep], row[keep]
    lengths = np.bincount(row, minlength=journeys.n_journeys)
    last = np.cumsum(lengths) - 1
    base = len(channels) + 1
    ids = np.zeros(journeys.n_journeys, dtype=np.int64)
    unknown = np.zeros(journeys.n_journeys, dtype=bool)
    for back in range(order):
        present = lengths > back
        code = codes[last[present] - back]
        unknown[present] |= code < 0
        ids[present] += (code + 1) * base ** back
    return np.where(unknown, -1, ids)


def _state_ids(chain: MarkovChain) -> np.ndarray:
    base = len(chain.channels) + 1
    digits = chain.grams[:, ::-1] + 1
    return (digits * base ** np.arange(chain.order)).sum(axis=1)


def conversion_probability(chain: MarkovChain, journeys: Journeys,
                           collapse_repeats: bool = False) -> np.ndarray:
    """Probability that each journey converts, given that it ended where it did.

    The chain's chance of absorbing in ``(conversion)`` rather than ``(null)`` from the state of
    the journey's last touch: ``p(s -> conversion) / (p(s -> conversion) + p(s -> null))``. A
    state the chain never saw ending a journey gets the chain's overall conversion rate.

    Examples
    --------
    >>> from engine import Journeys
    >>> train = Journeys.from_lists([["a"], ["b"]], conversions=[3, 1], nulls=[1, 3])
    >>> chain = transition_counts(train)
    >>> conversion_probability(chain, Journeys.from_lists([["b", "a"], ["b"]],
    ...                                                   conversions=[0, 0])).tolist()
    [0.75, 0.25]
    """
    into_conversion = chain.target == chain.conversion
    into_null = chain.target == chain.null
    size = chain.n_transient
    converted = np.bincount(chain.source[into_conversion], chain.count[into_conversion],
                            minlength=size)
    ended = converted + np.bincount(chain.source[into_null], chain.count[into_null],
                                    minlength=size)
    overall = converted.sum() / ended.sum()
    rate = np.divide(converted, ended, out=np.full(size, overall), where=ended > 0)
    known = _state_ids(chain)
    order = np.argsort(known)
    wanted = _end_grams(journeys, chain.channels, chain.order, collapse_repeats)
    at = np.clip(np.searchsorted(known[order], wanted), 0, len(known) - 1)
    found = known[order][at] == wanted
    state = np.where(found, order[at] + 1, 0)
    return np.where(found, rate[state], overall)


def _split(journeys: Journeys, test_size: float, rng) -> tuple[Journeys, Journeys]:
    """Train and test journeys: by person when journeys carry persons (all of a person's
    journeys on one side), else by thinning each row's integer counts binomially."""
    if journeys.person is not None:
        persons, index = np.unique(journeys.person, return_inverse=True)
        test = rng.random(len(persons)) < test_size
        rows = test[index]
        return journeys.take(np.flatnonzero(~rows)), journeys.take(np.flatnonzero(rows))
    counts = np.column_stack([journeys.conversions, journeys.nulls])
    if not np.allclose(counts, np.round(counts)):
        raise EngineError("select_order: a path table with fractional counts cannot be split "
                          "into journeys; pass journeys with persons")
    test = rng.binomial(np.round(counts).astype(np.int64), test_size).astype(float)
    value_test = np.divide(journeys.value * test[:, 0], journeys.conversions,
                           out=np.zeros(journeys.n_journeys), where=journeys.conversions > 0)
    train = replace(journeys, conversions=counts[:, 0] - test[:, 0],
                    nulls=counts[:, 1] - test[:, 1],
                    value=np.maximum(journeys.value - value_test, 0.0), report=None)
    tested = replace(journeys, conversions=test[:, 0], nulls=test[:, 1], value=value_test,
                     report=None)
    return train, tested


def select_order(journeys: Journeys, max_order: int = 4, *, collapse_repeats: bool = False,
                 test_size: float = 0.3, rng=0) -> tuple[pd.DataFrame, int]:
    """Choose the Markov order by out-of-sample prediction of conversion.

    Journeys are split into train and test (by person when they carry persons, else by
    binomially thinning each path's journey counts, so both sides see the same paths). Chains of
    order 1 to ``max_order`` are fitted on train and score each test journey with
    :func:`conversion_probability`; the scores are ranked with ROC AUC and calibrated with
    log-loss (scikit-learn, weighted by the journeys each row stands for).

    Returns
    -------
    table : pandas.DataFrame
        ``order, n_states, auc, log_loss`` per order.
    best : int
        The order with the lowest log-loss (a proper scoring rule; ties to the lower order).

    Examples
    --------
    >>> import engine
    >>> table, best = select_order(engine.load_example(), max_order=2)
    >>> table.columns.tolist(), best in (1, 2)
    (['order', 'n_states', 'auc', 'log_loss'], True)
    """
    from sklearn.metrics import log_loss, roc_auc_score

    if not isinstance(max_order, Integral) or not 1 <= max_order <= MAX_ORDER:
        raise EngineError(f"select_order: max_order must be an integer from 1 to {MAX_ORDER}, "
                          f"not {max_order!r}")
    if not 0 < test_size < 1:
        raise EngineError(f"select_order: test_size must be between 0 and 1, not {test_size!r}")
    Markov._check_journeys(journeys)
    train, test = _split(journeys, test_size, np.random.default_rng(rng))
    if test.total_conversions == 0 or test.nulls.sum() == 0 or train.total_conversions == 0:
        raise EngineError("select_order: too few journeys to hold out converting and "
                          "non-converting ones; lower test_size or pass more data")
    labels = np.concatenate([np.ones(test.n_journeys), np.zeros(test.n_journeys)])
    weights = np.concatenate([test.conversions, test.nulls])
    rows = []
    for order in range(1, int(max_order) + 1):
        chain = transition_counts(train, order, collapse_repeats)
        score = conversion_probability(chain, test, collapse_repeats)
        score = np.clip(np.concatenate([score, score]), 1e-12, 1 - 1e-12)
        rows.append({"order": order, "n_states": chain.n_transient + 1,
                     "auc": roc_auc_score(labels, score, sample_weight=weights),
                     "log_loss": log_loss(labels, score, sample_weight=weights)})
    table = pd.DataFrame(rows)
    return table, int(table.loc[table["log_loss"].idxmin(), "order"])
