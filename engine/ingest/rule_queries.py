"""Rule-based attribution as relational queries: the rules of :mod:`engine.models.rules`, written
once as Ibis expressions over a table of touches, so that they run where the touches are (DuckDB,
Spark) and only the credit per channel comes back.

The touches table has one row per touch: ``key`` and ``seq`` (together they name the journey),
``position`` (0-based) and ``length`` of the journey, channel ``code`` (int32, an index into the
channel vocabulary), ``age`` (float64 days before the journey's end, NULL when unknown),
``milestone`` (int32 bit flags: 1 = lead-creation, 2 = opportunity-creation touch), and the
journey's ``conversions``, ``value`` and ``nulls`` repeated on each of its touches.

Each rule is the numpy rule of the same name, step for step: per-journey sums, minima and maxima
are window functions partitioned by ``key, seq`` (none is ordered), and every rule keeps the
numpy version's edge cases (see :mod:`engine.models.rules`). Floating-point constants enter the
queries as ``CAST('<repr>' AS DOUBLE)``: Spark SQL types a bare ``0.4`` as DECIMAL, and Ibis writes
float64 literals bare, even when asked for float64; decimal arithmetic would then round the
weights.
"""

from __future__ import annotations

import math

import ibis
import numpy as np
import pyarrow as pa

from engine.errors import EngineError, MissingDataError
from engine.ingest import backend
from engine.journeys import LEAD, OPPORTUNITY

#: Names of the helper columns the queries add (and drop again); touches tables must not use them.
_RAW, _TOTAL, _AUX, _KEY = "_rule_raw", "_rule_total", "_rule_aux", "_rule_key"


def _float(x: float) -> ibis.Value:
    """A float64 constant that both engines type as DOUBLE (the text parses back to ``x``)."""
    return ibis.literal(repr(float(x))).cast("float64")


def _share(numerator: float, denominator: ibis.Value) -> ibis.Value:
    """``numerator / denominator`` in float64, as numpy divides a float by an integer array."""
    return _float(numerator) / denominator.cast("float64")


def _journey(t: ibis.Table):
    return ibis.window(group_by=[t.key, t.seq])


def _normalised(t: ibis.Table) -> ibis.Table:
    """``_RAW`` scaled to sum to 1 in every journey; journeys whose touches all weigh 0 split
    equally (:func:`engine.models.rules._normalise`)."""
    t = t.mutate(**{_TOTAL: t[_RAW].sum().over(_journey(t))})
    return t.mutate(weight=ibis.cases((t[_TOTAL] > 0, t[_RAW] / t[_TOTAL]),
                                      else_=_share(1.0, t.length)))


def _first_touch(model, t, channels):
    return t.mutate(weight=(t.position == 0).cast("float64"))


def _last_touch(model, t, channels):
    return t.mutate(weight=(t.position == t.length - 1).cast("float64"))


def _last_non_direct(model, t, channels):
    direct = {str(d).casefold() for d in model.direct}
    codes = [i for i, c in enumerate(channels) if str(c).casefold() in direct]
    is_direct = t.code.isin(codes) if codes else ibis.literal(False)
    candidate = ibis.cases((is_direct, ibis.literal(-1, type="int64")), else_=t.position)
    t = t.mutate(**{_AUX: candidate.max().over(_journey(t))})
    # A journey of direct touches only has no candidate (-1): its last touch takes the credit.
    chosen = ibis.cases((t[_AUX] < 0, t.length - 1), else_=t[_AUX])
    return t.mutate(weight=(t.position == chosen).cast("float64"))


def _linear(model, t, channels):
    if model.per == "touch":
        return t.mutate(weight=_share(1.0, t.length))
    channel = ibis.window(group_by=[t.key, t.seq, t.code])
    # A channel's first touch in the journey counts it once among the journey's distinct
    # channels (Spark has no COUNT(DISTINCT) over a window).
    t = t.mutate(**{_AUX: t.code.count().over(channel),
                    _KEY: (t.position == t.position.min().over(channel)).cast("int64")})
    t = t.mutate(**{_TOTAL: t[_KEY].sum().over(_journey(t))})
    return t.mutate(weight=_share(1.0, t[_TOTAL] * t[_AUX]))


def _time_decay(model, t, channels):
    # 2 ** (-(age - youngest) / half_life) as exp(): the engines name and type powers differently.
    t = t.mutate(**{_AUX: t.age.min().over(_journey(t))})
    rate = _float(math.log(2.0) / float(model.half_life))
    return _normalised(t.mutate(**{_RAW: ((t[_AUX] - t.age) * rate).exp()}))


def _position(t, head, tail, middle):
    """:func:`engine.models.rules.position_weights` over the touches table."""
    head, tail = [float(h) for h in np.ravel(head)], [float(s) for s in np.ravel(tail)]
    reverse = t.length - 1 - t.position

    def share(shares, index):
        if not shares:
            return _float(0.0)
        return ibis.cases(*[(index == i, _float(s)) for i, s in enumerate(shares)],
                          else_=_float(0.0))

    rest = (t.position >= len(head)) & (reverse >= len(tail))
    n_rest = ibis.greatest(t.length - len(head) - len(tail), 1)
    raw = ibis.cases((rest, _share(middle, n_rest)),
                     else_=share(head, t.position) + share(tail, reverse))
    return _normalised(t.mutate(**{_RAW: raw}))


def _position_based(model, t, channels):
    return _position(t, (model.first,), (model.last,), 1.0 - model.first - model.last)


def _custom_position(model, t, channels):
    return _position(t, model.head, model.tail, float(model.middle))


def _milestone(model, t, channels):
    """:func:`engine.models.rules.milestone_weights` with the model's ``shares``."""
    shares = model.shares
    is_first = t.position == 0
    is_last = t.position == t.length - 1
    is_lead = (t.milestone & int(LEAD)) > 0
    is_opportunity = (t.milestone & int(OPPORTUNITY)) > 0
    roles = [(shares["first"], is_first), (shares["lead"], is_lead),
             (shares["opportunity"], is_opportunity), (shares["last"], is_last)]
    raw = _float(roles[0][0]) * roles[0][1].cast("float64")
    for share, role in roles[1:]:
        raw = raw + _float(share) * role.cast("float64")
    key = is_first | is_lead | is_opportunity
    if shares["last"] > 0:
        key = key | is_last
    t = t.mutate(**{_RAW: raw, _KEY: key})
    t = t.mutate(**{_AUX: (~t[_KEY]).cast("int64").sum().over(_journey(t))})
    rest = _share(shares["rest"], ibis.greatest(t[_AUX], 1))
    return _normalised(t.mutate(**{_RAW: ibis.cases((t[_KEY], t[_RAW]), else_=rest)}))


_RULES = {
    "first_touch": _first_touch,
    "last_touch": _last_touch,
    "last_non_direct": _last_non_direct,
    "linear": _linear,
    "time_decay": _time_decay,
    "position_based": _position_based,
    "custom_position": _custom_position,
    "w_shaped": _milestone,
    "full_path": _milestone,
}

#: The touch column each rule reads that may be NULL (unknown), by the model's ``requires``.
_REQUIRED_COLUMN = {"ages": "age", "milestones": "milestone"}


def touch_weights(model, touches: ibis.Table, channels) -> ibis.Table:
    """Each touch's share of its journey's credit under a rule-based model, as a query.

    Parameters
    ----------
    model : engine.models.RuleModel
        Any rule-based model (``first_touch``, ``last_touch``, ``last_non_direct``, ``linear``,
        ``time_decay``, ``position_based``, ``custom_position``, ``w_shaped``, ``full_path``);
        its hyper-parameters are validated as :meth:`fit` does.
    touches : ibis.Table
        One row per touch, with the columns described in :mod:`engine.ingest.rule_queries`.
    channels : sequence of str
        The channel vocabulary the ``code`` column indexes (``last_non_direct`` matches its
        ``direct`` channels in it, case-insensitively).

    Returns
    -------
    ibis.Table
        ``touches`` with a float64 column ``weight``; the weights of every journey sum to 1.
        The weight is NULL where an input the model needs is NULL (``age`` for ``time_decay``,
        ``milestone`` for ``w_shaped`` and ``full_path``).

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.ingest import backend
    >>> from engine.models import PositionBased
    >>> j = Journeys.from_lists([["a", "b", "c", "d"]], conversions=[1])
    >>> con = backend.connect("duckdb")
    >>> touches = backend.table(touches_from_journeys(j), con)
    >>> weighted = touch_weights(PositionBased(), touches, j.channels).order_by("position")
    >>> [round(w, 3) for w in backend.fetch(weighted, con)["weight"].to_pylist()]
    [0.4, 0.1, 0.1, 0.4]
    """
    rule = _RULES.get(getattr(model, "name", None))
    if rule is None:
        raise EngineError(f"no relational rule for model {getattr(model, 'name', model)!r}; "
                          f"rule-based models: {', '.join(sorted(_RULES))}")
    model._validate_params()
    weighted = rule(model, touches, tuple(channels))
    for need in model.requires:
        column = weighted[_REQUIRED_COLUMN[need]]
        weighted = weighted.mutate(weight=ibis.cases((column.isnull(), ibis.null("float64")),
                                                     else_=weighted.weight))
    return weighted.select(*touches.columns, "weight")


def credit_query(model, touches: ibis.Table, channels) -> ibis.Table:
    """The credit per channel of a rule-based model, as a query over ``touches``.

    Only converting journeys (conversions or value above 0, as :attr:`engine.Journeys.converting`)
    are read.

    Returns
    -------
    ibis.Table
        One row per channel code that converting journeys touch: ``code``, ``conversions`` and
        ``value`` credited to it, and ``n_missing``, the touches whose weight could not be
        computed (see :func:`touch_weights`).
    """
    active = touches.filter((touches.conversions > 0) | (touches.value > 0))
    t = touch_weights(model, active, channels)
    return t.group_by("code").aggregate(
        conversions=(t.weight * t.conversions).sum(), value=(t.weight * t.value).sum(),
        n_missing=t.weight.isnull().cast("int64").sum())


def rule_credit(model, touches, channels, con) -> tuple[np.ndarray, np.ndarray]:
    """Conversions and value credited to each channel by a rule-based model, computed on ``con``.

    Equal to ``model.fit(journeys).attribute()``'s ``conversions`` and ``value`` for the same
    journeys; one aggregate (a row per channel) comes back.

    Parameters
    ----------
    model : engine.models.RuleModel
        See :func:`touch_weights`.
    touches : ibis.Table or pyarrow.Table
        The touches (see :mod:`engine.ingest.rule_queries`); an Arrow table is registered on
        ``con``.
    channels : sequence of str
        The channel vocabulary; the arrays returned have one entry per channel.
    con
        An Ibis connection from :func:`engine.ingest.backend.connect`.

    Returns
    -------
    conversions, value : numpy.ndarray of float64, shape (len(channels),)

    Raises
    ------
    MissingDataError
        The model needs touch ages or milestones and some converting touch lacks them.

    Examples
    --------
    >>> from engine import Journeys
    >>> from engine.ingest import backend
    >>> from engine.models import LastNonDirect
    >>> j = Journeys.from_lists([["seo", "email", "Direct"], ["Direct"]], conversions=[1, 1],
    ...                         value=[10.0, 5.0])
    >>> conversions, value = rule_credit(LastNonDirect(), touches_from_journeys(j), j.channels,
    ...                                  backend.connect("duckdb"))
    >>> j.channels, conversions.tolist(), value.tolist()
    (('Direct', 'email', 'seo'), [1.0, 1.0, 0.0], [5.0, 10.0, 0.0])
    """
    if isinstance(touches, pa.Table):
        touches = backend.table(touches, con)
    out = backend.fetch(credit_query(model, touches, channels), con)
    if out.num_rows and sum(n or 0 for n in out["n_missing"].to_pylist()) > 0:
        need = " and ".join(model.requires)
        raise MissingDataError(f"{model.name} needs touch {need}, which some converting "
                               f"touches lack (NULL {need})")
    n = len(channels)
    codes = out["code"].to_numpy(zero_copy_only=False).astype(np.int64)

    def per_channel(column: str) -> np.ndarray:
        credit = out[column].to_numpy(zero_copy_only=False).astype(np.float64)
        return np.bincount(codes, credit, minlength=n)

    return per_channel("conversions"), per_channel("value")


def touches_from_journeys(journeys) -> pa.Table:
    """The touches table (see :mod:`engine.ingest.rule_queries`) of in-memory journeys.

    Each journey is its own key (its row number as text) with ``seq`` 0; missing ages are NULL
    and missing milestones 0.

    Examples
    --------
    >>> from engine import Journeys
    >>> j = Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 0], nulls=[0, 2])
    >>> t = touches_from_journeys(j)
    >>> t.column_names[:7]
    ['key', 'seq', 'position', 'length', 'code', 'age', 'milestone']
    >>> t["key"].to_pylist(), t["length"].to_pylist(), t["nulls"].to_pylist()
    (['0', '0', '1'], [2, 2, 1], [0.0, 0.0, 2.0])
    """
    row = journeys.journey_index
    n = journeys.n_touches
    ages = (pa.nulls(n, pa.float64()) if journeys.ages is None
            else pa.array(journeys.ages, pa.float64()))
    milestones = (np.zeros(n, dtype=np.int32) if journeys.milestones is None
                  else journeys.milestones.astype(np.int32))
    return pa.table({
        "key": pa.array(np.arange(journeys.n_journeys).astype(str)[row], pa.string()),
        "seq": pa.array(np.zeros(n, dtype=np.int64)),
        "position": pa.array(journeys.position, pa.int64()),
        "length": pa.array(journeys.lengths[row], pa.int64()),
        "code": pa.array(journeys.codes, pa.int32()),
        "age": ages,
        "milestone": pa.array(milestones, pa.int32()),
        "conversions": pa.array(journeys.conversions[row], pa.float64()),
        "value": pa.array(journeys.value[row], pa.float64()),
        "nulls": pa.array(journeys.nulls[row], pa.float64()),
    })
