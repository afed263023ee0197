"""The rules as relational queries (``engine.ingest.rule_queries``) equal the numpy rules
(``engine.models.rules``): credit per channel, on DuckDB for many parameter settings and on Spark
for all models in one query."""

from __future__ import annotations

import ibis
import numpy as np
import pyarrow as pa
import pytest

from engine import Journeys
from engine.errors import EngineError, MissingDataError
from engine.ingest import backend
from engine.ingest.rule_queries import (
    credit_query,
    rule_credit,
    touch_weights,
    touches_from_journeys,
)
from engine.models import (
    REGISTRY,
    CustomPosition,
    FirstTouch,
    FullPath,
    LastNonDirect,
    LastTouch,
    Linear,
    Markov,
    PositionBased,
    TimeDecay,
    WShaped,
)
from engine.models.rules import RuleModel

#: "Direct" (capitalised) and "(none)" are direct by default; "video" is never touched.
CHANNELS = ("(none)", "Direct", "display", "email", "search", "video")
DIRECT_CODES = (0, 1)

MODELS = [
    FirstTouch(), LastTouch(),
    LastNonDirect(), LastNonDirect(direct=("DIRECT",)), LastNonDirect(direct=()),
    LastNonDirect(direct=["email", "direct", "no such channel"]),
    Linear(), Linear(per="channel"),
    TimeDecay(), TimeDecay(half_life=0.5), TimeDecay(half_life=30),
    PositionBased(), PositionBased(first=0.3, last=0.5), PositionBased(first=0.5, last=0.5),
    PositionBased(first=1.0, last=0.0), PositionBased(first=0.0, last=0.0),
    CustomPosition(), CustomPosition(head=(0.5, 0.2), tail=(0.2,), middle=0.1),
    CustomPosition(head=(), tail=(0.3, 0.3, 0.2), middle=0.2),
    CustomPosition(head=(0.0,), tail=(0.0,), middle=1.0),
    CustomPosition(head=(0.25, 0.25, 0.25, 0.25), tail=(), middle=0.0),
    WShaped(), FullPath(),
]
NO_REQUIREMENTS = [m for m in MODELS if not m.requires]


def random_journeys(seed: int, n_journeys: int = 400, extras: bool = True) -> Journeys:
    """Journeys of 1 to 8 touches with repeated channels, some direct only; whole-day ages (ties);
    random milestone flags (none, lead, opportunity, both; several per journey); conversions
    with value, conversions only, value only, and neither."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, size=n_journeys)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_touches = int(offsets[-1])
    journey = np.repeat(np.arange(n_journeys), lengths)
    codes = rng.choice(5, size=n_touches, p=[0.1, 0.25, 0.2, 0.25, 0.2])
    direct_only = rng.random(n_journeys) < 0.15
    codes = np.where(direct_only[journey], rng.choice(DIRECT_CODES, size=n_touches), codes)
    kind = rng.integers(0, 4, size=n_journeys)
    conversions = np.where(kind < 2, rng.integers(1, 4, size=n_journeys) * 0.5, 0.0)
    value = np.where(kind % 2 == 0, np.round(rng.uniform(1, 200, size=n_journeys), 2), 0.0)
    extra = {}
    if extras:
        extra["ages"] = rng.integers(0, 40, size=n_touches).astype(float)
        extra["milestones"] = rng.choice(4, size=n_touches, p=[0.7, 0.12, 0.12, 0.06])
    return Journeys(channels=CHANNELS, offsets=offsets, codes=codes, conversions=conversions,
                    value=value, nulls=rng.integers(0, 5, size=n_journeys).astype(float), **extra)


def edge_journeys() -> Journeys:
    """Hand-made edge cases: single touches, direct-only journeys, ties, a touch with every role,
    journeys with nothing to credit."""
    paths = [["Direct"], ["email", "email"], ["(none)", "Direct", "(none)"],
             ["search", "Direct", "email", "Direct"], ["display", "search"],
             ["email", "email", "email", "search", "email"], ["search"], ["display", "Direct"]]
    ages = [[0], [3, 3], [5, 5, 5], [9, 2, 2, 0], [1, 1], [8, 8, 4, 4, 0], [0], [2, 0]]
    flags = [[3], [0, 0], [1, 0, 2], [0, 0, 3, 0], [2, 1], [1, 1, 0, 2, 0], [0], [0, 0]]
    index = {c: i for i, c in enumerate(CHANNELS)}
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in paths])])
    return Journeys(channels=CHANNELS, offsets=offsets,
                    codes=[index[c] for p in paths for c in p],
                    conversions=[1, 2, 0, 1, 0, 3, 0, 1.5], value=[10, 0, 7, 5, 0, 30, 0, 0],
                    nulls=[0, 1, 0, 0, 4, 0, 2, 0], ages=np.concatenate(ages),
                    milestones=np.concatenate(flags))


def expected(model, journeys: Journeys) -> tuple[np.ndarray, np.ndarray]:
    table = model.fit(journeys).attribute().table.set_index("channel").loc[list(CHANNELS)]
    return table["conversions"].to_numpy(), table["value"].to_numpy()


def assert_same_credit(got, want, model) -> None:
    for name, g, w in zip(("conversions", "value"), got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=0, err_msg=f"{model!r} {name}")


@pytest.fixture(scope="module")
def duckdb():
    return backend.connect("duckdb")


def test_every_rule_model_is_covered():
    rules = {name for name, cls in REGISTRY.items() if issubclass(cls, RuleModel)}
    assert {m.name for m in MODELS} == rules


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_credit_equals_numpy_on_duckdb(model, seed, duckdb):
    journeys = random_journeys(seed)
    got = rule_credit(model, touches_from_journeys(journeys), CHANNELS, duckdb)
    assert_same_credit(got, expected(model, journeys), model)


@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_credit_equals_numpy_on_edge_cases(model, duckdb):
    journeys = edge_journeys()
    got = rule_credit(model, touches_from_journeys(journeys), CHANNELS, duckdb)
    assert_same_credit(got, expected(model, journeys), model)


@pytest.mark.parametrize("model", NO_REQUIREMENTS, ids=repr)
def test_credit_without_ages_or_milestones(model, duckdb):
    journeys = random_journeys(4, extras=False)
    touches = touches_from_journeys(journeys)
    assert touches["age"].null_count == touches.num_rows
    got = rule_credit(model, touches, CHANNELS, duckdb)
    assert_same_credit(got, expected(model, journeys), model)


@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_touch_weights_equal_numpy(model, duckdb):
    """Every touch, converting or not, gets the numpy rule's weight."""
    journeys = random_journeys(5, n_journeys=150)
    touches = backend.table(touches_from_journeys(journeys), duckdb)
    out = backend.fetch(touch_weights(model, touches, CHANNELS), duckdb)
    assert out.column_names == [*touches.columns, "weight"]
    rows = np.asarray(out["key"].to_pylist(), dtype=np.int64)
    at = journeys.offsets[rows] + out["position"].to_numpy()
    got = np.full(journeys.n_touches, np.nan)
    got[at] = out["weight"].to_numpy()
    np.testing.assert_allclose(got, model.fit(journeys).touch_weights_, rtol=1e-12, atol=1e-15)


def test_nothing_to_credit(duckdb):
    journeys = Journeys.from_lists([["a", "b"], ["b"]], conversions=[0, 0], nulls=[3, 1])
    conversions, value = rule_credit(Linear(), touches_from_journeys(journeys),
                                     journeys.channels, duckdb)
    assert conversions.tolist() == [0.0, 0.0] and value.tolist() == [0.0, 0.0]


def test_missing_inputs_raise(duckdb):
    plain = touches_from_journeys(random_journeys(6, n_journeys=20, extras=False))
    with pytest.raises(MissingDataError, match="time_decay needs touch ages"):
        rule_credit(TimeDecay(), plain, CHANNELS, duckdb)
    no_flags = plain.set_column(plain.schema.get_field_index("milestone"), "milestone",
                                pa.nulls(plain.num_rows, pa.int32()))
    with pytest.raises(MissingDataError, match="w_shaped needs touch milestones"):
        rule_credit(WShaped(), no_flags, CHANNELS, duckdb)


def test_bad_models_are_refused(duckdb):
    touches = touches_from_journeys(edge_journeys())
    with pytest.raises(EngineError, match="no relational rule for model 'markov'"):
        rule_credit(Markov(), touches, CHANNELS, duckdb)
    with pytest.raises(EngineError, match="half_life"):
        rule_credit(TimeDecay(half_life=-1), touches, CHANNELS, duckdb)


@pytest.mark.spark
def test_credit_equals_numpy_on_spark():
    """All models (on journeys with and without ages) in one Spark query."""
    pytest.importorskip("pyspark")
    con = backend.connect("spark")
    rich, plain = random_journeys(7, n_journeys=200), random_journeys(8, n_journeys=200,
                                                                       extras=False)
    cases = [(m, rich) for m in MODELS] + [(m, plain) for m in NO_REQUIREMENTS]
    tables = {id(rich): backend.table(touches_from_journeys(rich), con),
              id(plain): backend.table(touches_from_journeys(plain), con)}
    query = ibis.union(*[credit_query(m, tables[id(j)], CHANNELS).mutate(case=ibis.literal(i))
                         for i, (m, j) in enumerate(cases)])
    out = backend.fetch(query, con).to_pandas()
    assert out["n_missing"].sum() == 0
    for i, (model, journeys) in enumerate(cases):
        rows = out[out["case"] == i]
        got = tuple(np.bincount(rows["code"], rows[c], minlength=len(CHANNELS))
                    for c in ("conversions", "value"))
        assert_same_credit(got, expected(model, journeys), model)
