"""Ingestion: sources to validated journeys, through relational queries (DuckDB by default)."""

from engine.ingest.events import read_events
from engine.ingest.paths import read_paths
from engine.ingest.report import IngestReport

__all__ = ["read_paths", "read_events", "IngestReport"]
