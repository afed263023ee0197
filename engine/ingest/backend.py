"""Where the relational queries run.

Every query in :mod:`engine.ingest` is written once as an Ibis expression; a backend only turns
tables into expressions and expressions into Arrow. DuckDB (embedded, in-process) is the default.
"""

from __future__ import annotations

import functools
import os
import tempfile
import uuid
from pathlib import Path

import ibis
import pyarrow as pa

from engine.errors import EngineError

ENGINES = ("duckdb",)


#: DuckDB's memory budget; beyond it sorts, joins and kept tables spill to a temporary folder.
#: Set ``ATTRIBUTION_MEMORY_LIMIT`` (e.g. ``"8GB"``) to change it.
MEMORY_LIMIT = os.environ.get("ATTRIBUTION_MEMORY_LIMIT", "1GB")


@functools.cache
def _duckdb():
    con = ibis.duckdb.connect()
    con.raw_sql("SET preserve_insertion_order = false")
    con.raw_sql(f"SET memory_limit = '{MEMORY_LIMIT}'")
    spill = Path(tempfile.gettempdir()) / f"attribution-engine-{os.getpid()}"
    con.raw_sql(f"SET temp_directory = '{spill}'")
    # Naive timestamps are read as UTC, whatever the machine's zone.
    con.raw_sql("SET TimeZone = 'UTC'")
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


class Scratch:
    """Intermediate tables materialised on the backend for one job, dropped when it ends.

    Ibis expressions are lazy: a step reused by several later queries would be recomputed by
    each. ``keep`` computes it once into a temporary table.
    """

    def __init__(self, con):
        self.con = con
        self.names: list[str] = []

    def keep(self, expr: ibis.Table) -> ibis.Table:
        name = f"engine_scratch_{uuid.uuid4().hex}"
        kept = self.con.create_table(name, expr, temp=True)
        self.names.append(name)
        return kept

    def drop(self, table: ibis.Table) -> None:
        """Free a kept table early (large intermediates that later steps no longer read)."""
        name = table.get_name().rsplit(".", 1)[-1]
        self.con.raw_sql(f"DROP TABLE IF EXISTS {name}")
        self.names.remove(name)

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, *exc) -> None:
        for name in self.names:
            self.con.raw_sql(f"DROP TABLE IF EXISTS {name}")
        self.names.clear()
