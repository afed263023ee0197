"""Fractribution: Google's path-level leave-one-out attribution (the model it calls "shapley").

Google's Fractribution (github.com/google/fractribution, Apache-2.0; ``shapley`` is its default
``attribution_model``, and Snowplow's dbt-snowplow-fractribution reports it as ``shapley``)
splits each conversion over the touches of its path as follows.

Path transforms (:func:`path_tokens`)
    Every journey, converting or not, is first cut to its last ``path_lookback_steps`` touches
    (Google's ``trimLongPath``), optionally loses a channel (``removeIfNotAll``,
    ``removeIfLastAndNotAll``), and is then rewritten by one path transform; Google's example
    ``D A B B C D C C`` becomes

    - ``unique``: unchanged (the identity, despite the name),
    - ``exposure`` (Google's default): repeats in a row collapsed, ``D A B C D C``,
    - ``first``: every channel once, where it first occurs, ``D A B C``,
    - ``frequency``: every channel once, where it first occurs, with its number of touches,
      ``D(2) A(1) B(2) C(3)``; ``D(2)`` and ``D(1)`` are different touches of the same channel.

    Journeys with the same transformed path are pooled: their conversions and non-conversions
    are summed.

Leave-one-out marginals (:func:`leave_one_out_fractions`)
    A transformed path ``P`` converts with probability ``p(P) = conversions / (conversions +
    non-conversions)``; a path never observed has ``p = 0``. The marginal contribution of touch
    ``i`` of a path with more than one touch is ``max(0, p(P) - p(P without touch i))``; a
    one-touch path's touch gets ``p(P)``. The marginals are normalised to sum to 1 within the
    path; when they are all 0 the last touch gets everything. A channel's fraction of the path is
    the sum over its touches.

Credit
    Every path's conversions and value (revenue) are split by its fractions. Google leaves paths
    without conversions unattributed and books their revenue to ``Unmatched_Channel``; here such
    value (a journey row with value but no conversions) follows the same rule as everything else
    (its ``p`` is 0, so its last touch takes it), so that credit always adds up to the totals over
    the journeys' own channels.

The transforms, pooling and leave-one-out are vectorised: transformed paths are viewed as byte
strings of their int32 token codes (zero-copy Arrow binary arrays), pooled with a hash
dictionary encoding, and every leave-one-out path is built with numpy and looked up in that
dictionary by an exact hash join (``pyarrow.compute.index_in``). Building the leave-one-out paths
costs ``L * (L - 1)`` tokens for a converting path of ``L`` touches, as Google's tuple slicing
does; they are built in batches of bounded size.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import EngineError
from engine.journeys import Journeys
from engine.models._base import AttributionModel
from engine.results import Attribution

PATH_TRANSFORMS = ("exposure", "unique", "first", "frequency")
# Leave-one-out tokens built at a time: bounds the memory of long converting paths.
_BATCH_TOKENS = 1 << 21


def _keep(offsets: np.ndarray, codes: np.ndarray, row: np.ndarray, keep: np.ndarray):
    """The CSR arrays of the touches where ``keep`` is true (every row keeps one at least)."""
    lengths = np.bincount(row[keep], minlength=len(offsets) - 1)
    return np.concatenate([[0], np.cumsum(lengths)]), codes[keep]


def path_tokens(journeys: Journeys, path_transform: str = "exposure", *,
                path_lookback_steps: int | None = None, remove_if_not_all: str | None = None,
                remove_if_last_and_not_all: str | None = None):
    """Every journey's transformed path as integer tokens (see the module notes).

    Parameters
    ----------
    journeys : Journeys
    path_transform : {"exposure", "unique", "first", "frequency"}
    path_lookback_steps : int, optional
        Keep the last ``path_lookback_steps`` touches of every journey (first of all steps).
    remove_if_not_all, remove_if_last_and_not_all : str, optional
        A channel (matched case-insensitively) dropped from every journey, or from the end of
        every journey, unless the journey has no other channel; applied in this order after the
        lookback and before ``path_transform``.

    Returns
    -------
    offsets : ndarray of int64, shape (n_journeys + 1,)
        Journey ``j``'s transformed path is ``tokens[offsets[j]:offsets[j + 1]]`` (never empty).
    tokens : ndarray of int32
        Token codes: channel codes, or for ``frequency`` codes of (channel, count) pairs.
    token_channel : ndarray of int64
        The channel code of every token code.
    token_names : list of str
        ``"A"``, or ``"A(2)"`` for ``frequency``.

    Examples
    --------
    >>> from engine import Journeys
    >>> j = Journeys.from_lists([list("DABBCDCC")], conversions=[1])
    >>> for how in ("unique", "exposure", "first", "frequency"):
    ...     offsets, tokens, _, names = path_tokens(j, how)
    ...     print(how, " ".join(names[t] for t in tokens))
    unique D A B B C D C C
    exposure D A B C D C
    first D A B C
    frequency D(2) A(1) B(2) C(3)
    """
    offsets, codes = journeys.offsets, journeys.codes
    row = journeys.journey_index
    if path_lookback_steps is not None:
        keep = journeys.position >= (journeys.lengths - path_lookback_steps)[row]
        offsets, codes = _keep(offsets, codes, row, keep)
        row = row[keep]
    folded = [c.casefold() for c in journeys.channels]
    for channel, tail_only in ((remove_if_not_all, False), (remove_if_last_and_not_all, True)):
        if channel is None:
            continue
        matches = [i for i, name in enumerate(folded) if name == channel.casefold()]
        target = np.isin(codes, np.asarray(matches, dtype=codes.dtype))
        position = np.arange(len(codes)) - offsets[:-1][row]
        # The last touch of another channel; -1 when the journey has nothing else.
        last_other = np.maximum.reduceat(np.where(target, -1, position), offsets[:-1])
        keep = ~target | (last_other[row] < 0)
        if tail_only:
            keep |= position < last_other[row]
        offsets, codes = _keep(offsets, codes, row, keep)
        row = row[keep]

    n_channels = journeys.n_channels
    channels = np.asarray(journeys.channels, dtype=object)
    if path_transform in ("unique", "exposure"):
        if path_transform == "exposure":
            keep = np.ones(len(codes), dtype=bool)
            keep[1:] = (codes[1:] != codes[:-1]) | (row[1:] != row[:-1])
            offsets, codes = _keep(offsets, codes, row, keep)
        return offsets, codes.astype(np.int32), np.arange(n_channels), list(channels)

    key = row * n_channels + codes
    _, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True,
                                          return_counts=True)
    keep = np.zeros(len(codes), dtype=bool)
    keep[first] = True
    offsets, kept = _keep(offsets, codes, row, keep)
    if path_transform == "first":
        return offsets, kept.astype(np.int32), np.arange(n_channels), list(channels)
    # frequency: a token per (channel, number of its touches in the journey).
    counts = counts[inverse[keep]]
    top = int(counts.max()) + 1 if len(counts) else 1
    pairs, tokens = np.unique(kept.astype(np.int64) * top + counts, return_inverse=True)
    token_channel, token_count = np.divmod(pairs, top)
    names = [f"{channels[c]}({n})" for c, n in zip(token_channel, token_count)]
    return offsets, tokens.astype(np.int32), token_channel, names


def _path_keys(offsets: np.ndarray, tokens: np.ndarray) -> pa.LargeBinaryArray:
    """Every path as one byte string, its tokens' int32 bytes: zero-copy, hashable by Arrow."""
    tokens = np.ascontiguousarray(tokens, dtype=np.int32)
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(offsets) - 1,
        [None, pa.py_buffer(np.asarray(offsets, dtype=np.int64) * 4), pa.py_buffer(tokens)])


def _leave_one_out(offsets: np.ndarray, tokens: np.ndarray):
    """Every path with one token left out, path by path and token by token.

    Returns the CSR arrays of the ``sum(L)`` leave-one-out paths of the paths given (``L`` each,
    ``L - 1`` tokens long).
    """
    lengths = np.diff(offsets)
    block = lengths * lengths
    entry_path = np.repeat(np.arange(len(lengths)), block)
    local = np.arange(block.sum()) - np.repeat(np.cumsum(block) - block, block)
    left_out, position = np.divmod(local, lengths[entry_path])
    keep = position != left_out
    out = tokens[(offsets[:-1][entry_path] + position)[keep]]
    out_lengths = np.repeat(lengths - 1, lengths)
    return np.concatenate([[0], np.cumsum(out_lengths)]), out


def leave_one_out_fractions(offsets: np.ndarray, tokens: np.ndarray, conversions: np.ndarray,
                            nulls: np.ndarray, paths: np.ndarray) -> np.ndarray:
    """Fractribution's share of every touch of the ``paths`` (row numbers) of a path table.

    Parameters
    ----------
    offsets, tokens : ndarray
        CSR arrays of distinct transformed paths: path ``k`` is ``tokens[offsets[k]:offsets[k +
        1]]``; all paths differ.
    conversions, nulls : ndarray of float
        Converting and non-converting journeys of every path.
    paths : ndarray of int
        The paths to split (usually those with conversions).

    Returns
    -------
    ndarray of float
        One share per touch of the chosen paths, in order (path ``paths[0]``'s touches first);
        every path's shares sum to 1.

    Notes
    -----
    With ``p(Q) = conversions / (conversions + nulls)`` for an observed path ``Q`` and 0 for any
    other, touch ``i`` of path ``P`` (``L > 1`` touches) has the marginal ``m_i = max(0, p(P) -
    p(P_{-i}))`` and the share ``m_i / sum(m)``, or ``[i == L - 1]`` when ``sum(m) = 0``; a
    one-touch path's touch has share 1.

    Examples
    --------
    Paths ``a > b`` (1 conversion, 1 non-conversion), ``a`` (1, 3) and ``b`` (0, 4): leaving out
    ``a`` gives ``b`` (p 0), leaving out ``b`` gives ``a`` (p 0.25), so ``a > b`` splits
    ``0.5 : 0.25``.

    >>> import numpy as np
    >>> offsets, tokens = np.array([0, 2, 3, 4]), np.array([0, 1, 0, 1])
    >>> conversions, nulls = np.array([1.0, 1.0, 0.0]), np.array([1.0, 3.0, 4.0])
    >>> leave_one_out_fractions(offsets, tokens, conversions, nulls, np.array([0, 1])).round(4)
    array([0.6667, 0.3333, 1.    ])
    """
    total = conversions + nulls
    probability = np.divide(conversions, total, out=np.zeros_like(total), where=total > 0)
    dictionary = _path_keys(offsets, tokens)
    lengths = np.diff(offsets)[paths]
    starts = offsets[:-1][paths]
    touch_path = np.repeat(np.arange(len(paths)), lengths)
    touch = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    own = probability[paths][touch_path]
    # A one-touch path's touch is compared with the empty path, which never converts.
    counterfactual = np.zeros(len(touch))

    several = np.flatnonzero(lengths > 1)
    first_touch = np.cumsum(lengths) - lengths
    cost = np.cumsum(lengths[several] ** 2)
    bounds = np.unique(np.searchsorted(cost, np.arange(0, cost[-1] if len(cost) else 0,
                                                       _BATCH_TOKENS), side="right"))
    for begin, end in zip(bounds, np.append(bounds[1:], len(several))):
        chosen = several[begin:end]
        sub_lengths = lengths[chosen]
        sub_offsets = np.concatenate([[0], np.cumsum(sub_lengths)])
        sub_tokens = tokens[np.repeat(starts[chosen] - sub_offsets[:-1], sub_lengths)
                            + np.arange(sub_offsets[-1])]
        found = pc.index_in(_path_keys(*_leave_one_out(sub_offsets, sub_tokens)),
                            value_set=dictionary)
        index = found.fill_null(-1).to_numpy()
        at = (np.repeat(first_touch[chosen] - sub_offsets[:-1], sub_lengths)
              + np.arange(sub_offsets[-1]))
        counterfactual[at] = np.where(index >= 0, probability[index], 0.0)

    marginal = np.maximum(own - counterfactual, 0.0)
    sums = np.bincount(touch_path, marginal, minlength=len(paths))[touch_path]
    last = touch == lengths[touch_path] - 1
    return np.divide(marginal, sums, out=last.astype(float), where=sums > 0)


class Fractribution(AttributionModel):
    """Google's Fractribution: each converting path split by leave-one-out marginal contributions.

    Google's tool and Snowplow's dbt package call this model "shapley", but it is not the
    Shapley value over channel coalitions. Classic Shapley attribution
    (:class:`engine.models.Shapley`) gives channel ``c`` the weighted average, over all
    coalitions ``S`` of the other channels, of its gain ``v(S + c) - v(S)`` in a coalition value
    (weights ``|S|! (n - |S| - 1)! / n!``): one game over channel *sets* for all journeys, blind
    to touch order and repeats, its values scaled to the totals. Fractribution instead works
    path by path on *ordered* (transformed) paths and evaluates one counterfactual per touch:
    the same path with only that touch left out. Touch ``i`` of path ``P`` has the marginal
    ``max(0, p(P) - p(P without touch i))``, ``p`` being the observed conversion rate of a path
    (0 when the shorter path never occurred); the marginals are normalised within the path (all
    zero: the last touch takes the conversion), a channel sums its touches' shares, and the
    path's conversions and value are split by these fractions. It is thus a leave-one-out
    contribution, the term of the Shapley sum for the single largest coalition (the rest of the
    path), clipped at 0 and normalised, not an average over coalitions; and it depends on the
    order and repeats the path transform keeps.

    Parameters
    ----------
    path_transform : {"exposure", "unique", "first", "frequency"}
        How paths are rewritten before probabilities are pooled (Google's default
        ``"exposure"``): ``"exposure"`` collapses repeats in a row (``a a b a`` -> ``a b a``);
        ``"unique"`` is the identity; ``"first"`` keeps each channel's first touch only
        (``a b a`` -> ``a b``); ``"frequency"`` keeps each channel once, at its first touch, with
        its number of touches (``a b a`` -> ``a(2) b(1)``).
    path_lookback_steps : int, optional
        Keep only the last ``path_lookback_steps`` touches of every journey, before everything
        else (Google's ``path_lookback_steps``/``trimLongPath``); ``None`` keeps all.
    remove_if_not_all : str, optional
        A channel (typically ``"Direct"``) removed from every journey that has another channel
        (Google's ``removeIfNotAll``), after the lookback.
    remove_if_last_and_not_all : str, optional
        A channel removed from the end of every journey that has another channel (Google's
        ``removeIfLastAndNotAll``), after ``remove_if_not_all``.

    Attributes
    ----------
    path_fractions_ : pandas.DataFrame
        One row per transformed path with conversions (or value) and channel of the path:
        ``path`` (channels joined by ``" > "``, ``"a(2)"`` tokens for ``frequency``),
        ``conversions``, ``nulls`` and ``value`` of the path (pooled over its journeys),
        ``channel`` and ``fraction`` (a path's fractions sum to 1; a channel may have 0).

    Notes
    -----
    Google's transforms may be chained in any order; this model applies the lookback, the two
    removals and then ``path_transform``. Value on a path without conversions goes to its last
    touch (Google books it to ``Unmatched_Channel``), so the credit adds up to the journeys'
    totals.

    References
    ----------
    Google, Fractribution: https://github.com/google/fractribution (Apache-2.0),
    ``py/fractribution_model/fractribution.py`` and ``tuple_transforms.py``.

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.models import Fractribution
    >>> j = Journeys.from_lists([["a", "b"], ["a"], ["b"]], conversions=[1, 1, 0],
    ...                         value=[30.0, 10.0, 0.0], nulls=[1, 3, 4])
    >>> model = Fractribution().fit(j)
    >>> model.attribute().table[["channel", "conversions", "value"]].round(3).values.tolist()
    [['a', 1.667, 30.0], ['b', 0.333, 10.0]]
    >>> model.path_fractions_[["path", "channel", "fraction"]].round(3).values.tolist()
    [['a > b', 'a', 0.667], ['a > b', 'b', 0.333], ['a', 'a', 1.0]]
    """

    name = "fractribution"
    description = "Google's Fractribution: path-level leave-one-out marginals (its 'Shapley')"

    def __init__(self, *, path_transform="exposure", path_lookback_steps=None,
                 remove_if_not_all=None, remove_if_last_and_not_all=None):
        self.path_transform = path_transform
        self.path_lookback_steps = path_lookback_steps
        self.remove_if_not_all = remove_if_not_all
        self.remove_if_last_and_not_all = remove_if_last_and_not_all

    def _validate_params(self):
        if not isinstance(self.path_transform, str) or self.path_transform not in PATH_TRANSFORMS:
            raise EngineError(f"fractribution: path_transform must be one of "
                              f"{', '.join(map(repr, PATH_TRANSFORMS))}, not "
                              f"{self.path_transform!r}")
        steps = self.path_lookback_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, Integral)
                                  or steps < 1):
            raise EngineError(f"fractribution: path_lookback_steps must be a positive whole "
                              f"number of touches or None, not {steps!r}")
        for key in ("remove_if_not_all", "remove_if_last_and_not_all"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise EngineError(f"fractribution: {key} must be a channel name or None, not "
                                  f"{getattr(self, key)!r}")

    def _tokens(self, journeys: Journeys):
        steps = self.path_lookback_steps
        return path_tokens(journeys, self.path_transform,
                           path_lookback_steps=None if steps is None else int(steps),
                           remove_if_not_all=self.remove_if_not_all,
                           remove_if_last_and_not_all=self.remove_if_last_and_not_all)

    def transform_paths(self, journeys: Journeys, sep: str = " > ") -> np.ndarray:
        """Every journey's transformed path as a string, as ``path_fractions_`` names it.

        Use it to join journeys (customers, conversions) with the fitted fractions.

        Examples
        --------
        >>> from engine import Journeys
        >>> j = Journeys.from_lists([["a", "b", "a"], ["b", "b"]], conversions=[1, 0])
        >>> Fractribution(path_transform="frequency").transform_paths(j).tolist()
        ['a(2) > b(1)', 'b(2)']
        """
        self._validate_params()
        offsets, tokens, _, names = self._tokens(journeys)
        return _path_strings(offsets, tokens, names, sep)

    def _fit(self, journeys: Journeys) -> None:
        offsets, tokens, token_channel, names = self._tokens(journeys)
        encoded = pc.dictionary_encode(_path_keys(offsets, tokens))
        group = encoded.indices.to_numpy()
        n_paths = len(encoded.dictionary)
        _, path_offsets, path_data = encoded.dictionary.buffers()
        path_offsets = np.frombuffer(path_offsets, dtype=np.int64, count=n_paths + 1) // 4
        pooled_tokens = np.frombuffer(path_data, dtype=np.int32, count=path_offsets[-1])

        def pooled(values):
            return np.bincount(group, values, minlength=n_paths)

        conversions, nulls, value = (pooled(journeys.conversions), pooled(journeys.nulls),
                                     pooled(journeys.value))
        paths = np.flatnonzero((conversions > 0) | (value > 0))
        fractions = leave_one_out_fractions(path_offsets, pooled_tokens, conversions, nulls,
                                            paths)

        lengths = np.diff(path_offsets)[paths]
        touch_path = np.repeat(np.arange(len(paths)), lengths)
        touch = (np.repeat(path_offsets[:-1][paths] - (np.cumsum(lengths) - lengths), lengths)
                 + np.arange(lengths.sum()))
        channel = token_channel[pooled_tokens[touch]]
        n = journeys.n_channels
        # One row per (path, channel), in path order and then the channel's first touch.
        keys, first, inverse = np.unique(touch_path * n + channel, return_index=True,
                                         return_inverse=True)
        fraction = np.bincount(inverse, fractions, minlength=len(keys))
        order = np.argsort(first, kind="stable")
        row_path, row_channel = np.divmod(keys[order], n)
        fraction = fraction[order]
        row_table = paths[row_path]

        self.channels_ = journeys.channels
        self.conversions_ = np.bincount(row_channel, fraction * conversions[row_table],
                                        minlength=n)
        self.value_ = np.bincount(row_channel, fraction * value[row_table], minlength=n)
        strings = _path_strings(path_offsets, pooled_tokens, names, " > ", rows=paths)
        self.path_fractions_ = pd.DataFrame({
            "path": strings[row_path], "conversions": conversions[row_table],
            "nulls": nulls[row_table], "value": value[row_table],
            "channel": np.asarray(journeys.channels, dtype=object)[row_channel],
            "fraction": fraction})

    def _attribute(self) -> Attribution:
        return Attribution.from_credit(self.name, self.channels_, self.conversions_, self.value_,
                                       params=self.get_params())


def _path_strings(offsets, tokens, names, sep, rows=None) -> np.ndarray:
    """The paths (or those at ``rows``) as strings of token names joined by ``sep``."""
    if rows is not None:
        lengths = np.diff(offsets)[rows]
        new = np.concatenate([[0], np.cumsum(lengths)])
        tokens = tokens[np.repeat(offsets[:-1][rows] - new[:-1], lengths) + np.arange(new[-1])]
        offsets = new
    text = pa.array(names, pa.string()).take(pa.array(np.asarray(tokens, dtype=np.int64)))
    lists = pa.LargeListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int64)), text)
    return np.asarray(pc.binary_join(lists, sep).to_numpy(zero_copy_only=False), dtype=object)
