"""Journeys: the validated, immutable, columnar journeys every model reads.

A journey is an ordered list of touchpoints (channel codes) that ended in ``conversions``
conversions worth ``value``, or in none. Rows may stand for many identical journeys (a path
table): ``conversions`` and ``nulls`` then count the converting and non-converting journeys with
that path, as in ChannelAttribution's layout.

Touches are stored CSR-style: the touches of journey ``j`` are ``codes[offsets[j]:offsets[j+1]]``,
indices into ``channels``. Optional per-touch arrays (``ages`` in days before the journey's end,
``milestones`` flags) and per-journey arrays (``person``, ``start``, ``end``) are present when the
source carried them (event logs), absent for path tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InputError, MissingDataError

RESERVED_CHANNELS = ("(start)", "(conversion)", "(null)", "(baseline)")
#: The row of an attribution table holding the conversions no channel caused.
BASELINE = "(baseline)"
LEAD = np.uint8(1)
OPPORTUNITY = np.uint8(2)
MILESTONES = {"lead": LEAD, "opportunity": OPPORTUNITY}


def _frozen(array, dtype) -> np.ndarray:
    """A read-only array of ``dtype``: ``array`` itself when it is already one (nothing can write
    to it through this reference: read-only numpy arrays, Arrow buffers), else a copy."""
    if (isinstance(array, np.ndarray) and not array.flags.writeable
            and array.dtype == np.dtype(dtype)):
        return array
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class Journeys:
    """Validated, immutable, columnar journeys.

    Parameters
    ----------
    channels : sequence of str
        Channel vocabulary; ``codes`` index into it.
    offsets : array of int, shape (n_journeys + 1,)
        CSR offsets: journey ``j`` has touches ``offsets[j]:offsets[j + 1]``.
    codes : array of int, shape (n_touches,)
        Channel code of every touch, in journey order.
    conversions, value, nulls : arrays of float, shape (n_journeys,)
        Conversions, conversion value, and non-converting journeys each row stands for.
    ages : array of float, shape (n_touches,), optional
        Days from each touch to the end of its journey (the conversion, or the last touch).
    milestones : array of uint8, shape (n_touches,), optional
        Bit flags: 1 = the touch that created the lead, 2 = the one that created the opportunity.
    person : array, shape (n_journeys,), optional
        Person (or account) each journey belongs to.
    start, end : arrays of datetime64, shape (n_journeys,), optional
        Time of the first touch and of the journey's end (conversion, or last touch).
    report : IngestReport, optional
        How the input rows were used or rejected.

    Examples
    --------
    >>> from engine import Journeys
    >>> j = Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 0], value=[10.0, 0], nulls=[2, 5])
    >>> j.n_journeys, j.n_touches, j.channels
    (2, 3, ('a', 'b'))
    >>> j.paths().tolist()
    ['a > b', 'b']
    """

    channels: tuple
    offsets: np.ndarray
    codes: np.ndarray
    conversions: np.ndarray
    value: np.ndarray
    nulls: np.ndarray
    ages: np.ndarray | None = None
    milestones: np.ndarray | None = None
    person: np.ndarray | None = None
    start: np.ndarray | None = None
    end: np.ndarray | None = None
    report: object = field(default=None, repr=False)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "channels", tuple(str(c) for c in self.channels))
        for name in ("offsets", "codes"):
            values = np.asarray(getattr(self, name))
            if values.size and not np.issubdtype(values.dtype, np.integer):
                raise InputError(f"Journeys.{name} must be integers, not {values.dtype}")
        set_(self, "offsets", _frozen(self.offsets, np.int64))
        set_(self, "codes", _frozen(self.codes, np.int32))
        n = len(self.offsets) - 1
        for name in ("conversions", "value", "nulls"):
            set_(self, name, _frozen(getattr(self, name), np.float64))
            if getattr(self, name).shape != (n,):
                raise InputError(f"Journeys.{name} has {len(getattr(self, name))} entries; "
                                 f"expected {n}, one per journey")
        if self.ages is not None:
            set_(self, "ages", _frozen(self.ages, np.float64))
        if self.milestones is not None:
            flags = np.asarray(self.milestones)
            if flags.size and (not np.issubdtype(flags.dtype, np.integer) or flags.min() < 0
                               or flags.max() > 255):
                raise InputError("Journeys.milestones holds flags 1 (lead) and 2 (opportunity) "
                                 "only")
            set_(self, "milestones", _frozen(flags, np.uint8))
        if self.person is not None:
            set_(self, "person", _frozen(self.person, np.asarray(self.person).dtype))
        for name in ("start", "end"):
            if getattr(self, name) is not None:
                set_(self, name, _frozen(getattr(self, name), "datetime64[us]"))
        self._validate()

    def _validate(self):
        n, offsets, codes = self.n_journeys, self.offsets, self.codes
        if n < 0 or offsets[0] != 0 or offsets[-1] != len(codes) or np.any(np.diff(offsets) < 0):
            raise InputError("Journeys.offsets must start at 0, never decrease and end at "
                             "the number of touches")
        empty = np.flatnonzero(np.diff(offsets) == 0)
        if len(empty):
            raise InputError(f"journey {int(empty[0])} has no touches; every journey needs one")
        if len(set(self.channels)) != len(self.channels):
            raise InputError("Journeys.channels has duplicate names")
        reserved = set(self.channels) & set(RESERVED_CHANNELS)
        if reserved:
            raise InputError(f"channel name {sorted(reserved)[0]!r} is reserved for Markov "
                             "states; rename the channel")
        if len(codes) and (codes.min() < 0 or codes.max() >= len(self.channels)):
            raise InputError("Journeys.codes must index into Journeys.channels")
        for name in ("conversions", "nulls", "value"):
            array = getattr(self, name)
            bad = ~np.isfinite(array) | (array < 0)
            if bad.any():
                raise InputError(f"Journeys.{name}[{int(np.flatnonzero(bad)[0])}] is "
                                 f"{float(array[bad][0])!r}; must be finite and non-negative")
        for name in ("ages", "milestones"):
            array = getattr(self, name)
            if array is not None and array.shape != codes.shape:
                raise InputError(f"Journeys.{name} must have one entry per touch")
        if self.milestones is not None and np.any(self.milestones > (LEAD | OPPORTUNITY)):
            raise InputError("Journeys.milestones holds flags 1 (lead) and 2 (opportunity) only")
        if self.ages is not None and (np.any(~np.isfinite(self.ages)) or np.any(self.ages < 0)):
            raise InputError("Journeys.ages must be finite and non-negative")
        for name in ("person", "start", "end"):
            array = getattr(self, name)
            if array is not None and array.shape != (n,):
                raise InputError(f"Journeys.{name} must have one entry per journey")

    def __reduce__(self):
        # Rebuild through __init__ so an unpickled copy is validated and read-only again.
        return (type(self), tuple(getattr(self, f.name) for f in fields(self)))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_lists(cls, paths, *, conversions, value=None, nulls=None, **extra) -> "Journeys":
        """Build journeys from Python lists of channel names (small data, tests, examples).

        Parameters
        ----------
        paths : sequence of sequences of str
            The channels of each journey, in order.
        conversions, value, nulls : sequences of float
            Per journey; ``value`` and ``nulls`` default to 0.
        **extra
            Optional arrays (``ages``, ``milestones``, ``person``, ``start``, ``end``).

        Examples
        --------
        >>> j = Journeys.from_lists([["b", "a"], ["a"]], conversions=[1, 0], nulls=[0, 3])
        >>> j.channels, j.codes.tolist(), j.offsets.tolist()
        (('a', 'b'), [1, 0, 0], [0, 2, 3])
        """
        paths = [list(map(str, p)) for p in paths]
        channels = sorted({c for p in paths for c in p})
        index = {c: i for i, c in enumerate(channels)}
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in paths])])
        codes = np.array([index[c] for p in paths for c in p], dtype=np.int32)
        n = len(paths)
        return cls(channels=channels, offsets=offsets, codes=codes,
                   conversions=np.asarray(conversions, dtype=float),
                   value=np.zeros(n) if value is None else np.asarray(value, dtype=float),
                   nulls=np.zeros(n) if nulls is None else np.asarray(nulls, dtype=float), **extra)

    # -- shape --------------------------------------------------------------------------------
    @property
    def n_journeys(self) -> int:
        """Number of rows (unique paths for a path table, journeys for an event log)."""
        return len(self.offsets) - 1

    @property
    def n_touches(self) -> int:
        """Number of touches of all rows together."""
        return len(self.codes)

    @property
    def n_channels(self) -> int:
        """Size of the channel vocabulary."""
        return len(self.channels)

    @cached_property
    def lengths(self) -> np.ndarray:
        """Number of touches of each journey."""
        return np.diff(self.offsets)

    @cached_property
    def journey_index(self) -> np.ndarray:
        """For every touch, the row of the journey it belongs to."""
        return np.repeat(np.arange(self.n_journeys, dtype=np.int64), self.lengths)

    @cached_property
    def position(self) -> np.ndarray:
        """For every touch, its 0-based position in its journey."""
        return np.arange(self.n_touches, dtype=np.int64) - self.offsets[:-1][self.journey_index]

    @cached_property
    def converting(self) -> "Journeys":
        """The rows with conversions or value: all that models splitting credit need to read.

        Computed once per Journeys (often a small part of the touches).

        Examples
        --------
        >>> j = Journeys.from_lists([["a"], ["b", "c"]], conversions=[0, 2], nulls=[5, 1])
        >>> j.converting.paths().tolist()
        ['b > c']
        """
        rows = np.flatnonzero((self.conversions > 0) | (self.value > 0))
        return self if len(rows) == self.n_journeys else self.take(rows)

    @property
    def total_conversions(self) -> float:
        """Conversions of all rows together."""
        return float(self.conversions.sum())

    @property
    def total_value(self) -> float:
        """Conversion value of all rows together."""
        return float(self.value.sum())

    def require(self, *what: str, model: str = "this model") -> None:
        """Raise :class:`MissingDataError` unless the journeys carry ``ages``/``milestones``."""
        for name in what:
            if getattr(self, name) is None:
                hint = {"ages": "touch timestamps", "milestones": "lead/opportunity events"}[name]
                raise MissingDataError(
                    f"{model} needs touch {name}, which these journeys lack; read an event log "
                    f"with {hint} (engine.read_events) instead of a path table")

    # -- views --------------------------------------------------------------------------------
    def path_lists(self) -> pa.ListArray:
        """The journeys as an Arrow list array of channel names.

        Examples
        --------
        >>> Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 0]).path_lists().to_pylist()
        [['a', 'b'], ['b']]
        """
        names = pa.array(self.channels, pa.string()).take(pa.array(self.codes))
        return pa.ListArray.from_arrays(pa.array(self.offsets), names)

    def paths(self, sep: str = " > ") -> np.ndarray:
        """Each journey as one string, channels joined by ``sep``.

        Examples
        --------
        >>> Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 0]).paths("|").tolist()
        ['a|b', 'b']
        """
        return np.asarray(pc.binary_join(self.path_lists(), sep).to_numpy(zero_copy_only=False),
                          dtype=object)

    def to_frame(self, sep: str = " > ") -> pd.DataFrame:
        """The journeys in ChannelAttribution's layout (one row per journey row), which
        :func:`engine.read_paths` reads back.

        Examples
        --------
        >>> j = Journeys.from_lists([["a", "b"]], conversions=[2], value=[9.5], nulls=[1])
        >>> j.to_frame().to_dict("records")
        [{'path': 'a > b', 'total_conversions': 2.0, 'total_conversion_value': 9.5, 'total_null': 1.0}]
        """
        return pd.DataFrame({"path": self.paths(sep), "total_conversions": self.conversions,
                             "total_conversion_value": self.value, "total_null": self.nulls})

    def take(self, rows) -> "Journeys":
        """The journeys at ``rows`` (integer indices), in that order; per-touch and per-journey
        arrays follow.

        Examples
        --------
        >>> j = Journeys.from_lists([["a"], ["b", "c"]], conversions=[1, 0])
        >>> j.take([1, 0]).paths().tolist()
        ['b > c', 'a']
        """
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        touch = (np.repeat(self.offsets[:-1][rows] - offsets[:-1], lengths)
                 + np.arange(offsets[-1], dtype=np.int64))

        def pick(array, index):
            return None if array is None else array[index]

        return replace(self, offsets=offsets, codes=self.codes[touch],
                       conversions=self.conversions[rows], value=self.value[rows],
                       nulls=self.nulls[rows], ages=pick(self.ages, touch),
                       milestones=pick(self.milestones, touch), person=pick(self.person, rows),
                       start=pick(self.start, rows), end=pick(self.end, rows), report=None)

    def rename_channels(self, mapping: dict) -> "Journeys":
        """The same journeys with channels renamed (names not in ``mapping`` kept).

        Examples
        --------
        >>> j = Journeys.from_lists([["a", "b"]], conversions=[1])
        >>> j.rename_channels({"a": "Email"}).paths().tolist()
        ['Email > b']
        """
        return replace(self, channels=tuple(mapping.get(c, c) for c in self.channels))

    def unique(self, engine: str | None = None) -> "Journeys":
        """Identical paths merged into one row, summing conversions, value and nulls.

        Per-touch ages and milestones and per-journey persons and times do not survive the merge.
        The merge is a relational query (see :mod:`engine.ingest.queries`); merged rows keep the
        order of their first appearance.

        Examples
        --------
        >>> j = Journeys.from_lists([["a", "b"], ["b"], ["a", "b"]], conversions=[1, 0, 1],
        ...                         nulls=[0, 2, 3])
        >>> u = j.unique()
        >>> u.paths().tolist(), u.conversions.tolist(), u.nulls.tolist()
        (['a > b', 'b'], [2.0, 0.0], [3.0, 2.0])
        """
        from engine.ingest.queries import unique_paths

        return unique_paths(self, engine=engine)

    def __repr__(self) -> str:
        extra = [name for name in ("ages", "milestones", "person") if getattr(self, name) is not None]
        return (f"Journeys(n_journeys={self.n_journeys}, n_touches={self.n_touches}, "
                f"n_channels={self.n_channels}, conversions={self.total_conversions:g}, "
                f"value={self.total_value:g}" + (f", with={extra}" if extra else "") + ")")
