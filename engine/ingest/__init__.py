"""Ingestion: sources to validated journeys, through relational queries (DuckDB by default).

``read_events`` (and with it Ibis and DuckDB) is imported on first use, so that reading a path
table, which needs neither unless a cell is bad or paths repeat, starts quickly.
"""

from engine.ingest.paths import read_paths
from engine.ingest.report import IngestReport

__all__ = ["read_paths", "read_events", "IngestReport"]


def __getattr__(name):
    if name == "read_events":
        from engine.ingest.events import read_events

        return read_events
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
