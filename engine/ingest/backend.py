"""Where the relational queries run.

Every query in :mod:`engine.ingest` is written once as an Ibis expression; a backend only turns
tables into expressions and expressions into Arrow. DuckDB (embedded, in-process) is the default.
"""

from __future__ import annotations

import functools

import ibis
import pyarrow as pa

from engine.errors import EngineError

ENGINES = ("duckdb",)


@functools.cache
def _duckdb():
    con = ibis.duckdb.connect()
    con.raw_sql("SET preserve_insertion_order = false")
    return con


def connect(engine: str | None = None):
    """The Ibis backend for ``engine`` (``"duckdb"``, the default)."""
    engine = engine or "duckdb"
    if engine == "duckdb":
        return _duckdb()
    raise EngineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def table(arrow: pa.Table, con) -> ibis.Table:
    """An Ibis table over an in-memory Arrow table, registered on ``con``."""
    return ibis.memtable(arrow)


def fetch(expr: ibis.Expr, con) -> pa.Table:
    """Run ``expr`` on ``con`` and return the result as an Arrow table."""
    return con.to_pyarrow(expr)
