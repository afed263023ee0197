"""Where the relational queries run.

Every query in :mod:`engine.ingest` is written once as an Ibis expression; a backend only turns
tables into expressions and expressions into Arrow. DuckDB (embedded, in-process) is the default;
Apache Spark (``engine="spark"``) runs the same expressions on a cluster, or on a local session
for testing. Only aggregates and the final touch arrays come back to this process.
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

ENGINES = ("duckdb", "spark")


#: DuckDB's memory budget; beyond it sorts, joins and kept tables spill to a temporary folder.
#: Set ``ATTRIBUTION_MEMORY_LIMIT`` (e.g. ``"8GB"``) to change it.
MEMORY_LIMIT = os.environ.get("ATTRIBUTION_MEMORY_LIMIT", "1GB")

#: The Spark master used when no Spark session is active (``ATTRIBUTION_SPARK_MASTER``).
SPARK_MASTER = os.environ.get("ATTRIBUTION_SPARK_MASTER", "local[*]")


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


def spark_session():
    """The active Spark session, or a new local one (``ATTRIBUTION_SPARK_MASTER``).

    Raises
    ------
    EngineError
        pyspark is not installed, or Java cannot start.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError("engine 'spark' needs pyspark: pip install 'attribution-engine[spark]' "
                          "(and Java 17)") from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    try:
        return (SparkSession.builder.master(SPARK_MASTER).appName("attribution-engine")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 2)))
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .getOrCreate())
    except Exception as exc:  # Java missing or failing: py4j raises plain exceptions
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EngineError(f"engine 'spark': cannot start a Spark session ({first[:200]})") \
            from None


def _spark(session=None):
    session = spark_session() if session is None else session
    con = _SPARK_CONNECTIONS.get(id(session))
    if con is None or con._session is not session:
        con = ibis.pyspark.connect(session)
        _SPARK_CONNECTIONS[id(session)] = con
    return con


_SPARK_CONNECTIONS: dict = {}


def connect(engine: str | None = None):
    """The Ibis backend for ``engine``: ``"duckdb"`` (the default) or ``"spark"``."""
    engine = engine or "duckdb"
    if engine == "duckdb":
        return _duckdb()
    if engine == "spark":
        return _spark()
    raise EngineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def name(con) -> str:
    """``"duckdb"`` or ``"spark"``: the engine behind an Ibis connection."""
    return "spark" if con.name == "pyspark" else con.name


def table(arrow: pa.Table, con) -> ibis.Table:
    """An Ibis table over an in-memory Arrow table, registered on ``con``."""
    return ibis.memtable(arrow)


def fetch(expr: ibis.Expr, con) -> pa.Table:
    """Run ``expr`` on ``con`` and return the result as an Arrow table."""
    return con.to_pyarrow(expr)


def batches(expr: ibis.Expr, con, rows: int = 1_000_000):
    """Run ``expr`` on ``con`` and yield the result as Arrow record batches of up to ``rows``
    rows (DuckDB streams them; Spark collects the result first)."""
    if name(con) == "duckdb":  # ibis 12 calls a cursor method DuckDB 2 no longer has
        yield from con.con.sql(con.compile(expr.as_table())).to_arrow_reader(rows)
    else:
        yield from con.to_pyarrow_batches(expr, chunk_size=rows)


class Scratch:
    """Intermediate tables materialised on the backend for one job, dropped when it ends.

    Ibis expressions are lazy: a step reused by several later queries would be recomputed by
    each. ``keep`` computes it once: a temporary table in DuckDB, a cached temporary view in
    Spark.
    """

    def __init__(self, con):
        self.con = con
        self.spark = name(con) == "spark"
        self.names: list[str] = []

    def keep(self, expr: ibis.Table) -> ibis.Table:
        table_name = f"engine_scratch_{uuid.uuid4().hex}"
        if self.spark:
            kept = self.con.create_view(table_name, expr)
            self.con.raw_sql(f"CACHE TABLE {table_name}")
        else:
            kept = self.con.create_table(table_name, expr, temp=True)
        self.names.append(table_name)
        return kept

    def drop(self, table: ibis.Table) -> None:
        """Free a kept table early (large intermediates that later steps no longer read)."""
        table_name = table.get_name().rsplit(".", 1)[-1]
        if self.spark:  # later views are defined over this one: free the data, keep the view
            self.con.raw_sql(f"UNCACHE TABLE IF EXISTS {table_name}")
            return
        self._drop(table_name)
        self.names.remove(table_name)

    def _drop(self, table_name: str) -> None:
        if self.spark:
            self.con.raw_sql(f"UNCACHE TABLE IF EXISTS {table_name}")
            self.con.raw_sql(f"DROP VIEW IF EXISTS {table_name}")
        else:
            self.con.raw_sql(f"DROP TABLE IF EXISTS {table_name}")

    def __enter__(self) -> Scratch:
        return self

    def close(self) -> None:
        """Drop every kept table (latest first: Spark views are defined over earlier ones)."""
        for table_name in reversed(self.names):
            self._drop(table_name)
        self.names.clear()

    def __exit__(self, *exc) -> None:
        self.close()
