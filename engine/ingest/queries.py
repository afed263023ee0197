"""The relational queries behind ingestion, each written once as an Ibis expression.

Nothing here touches a particular database: a backend (:mod:`engine.ingest.backend`) compiles
the expressions for DuckDB (default) and, later, Spark. Results come back as Arrow and are turned
into numpy arrays only once they are small (aggregates) or columnar (CSR touch arrays).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.ingest.sources import ROW

if TYPE_CHECKING:  # Ibis is imported by the backend, on first use
    import ibis

_WHITESPACE = r"\s+"


def clean_name(value: ibis.Value) -> ibis.Value:
    """Channel name normalisation: trimmed, inner runs of whitespace collapsed to one space."""
    return value.cast("string").re_replace(_WHITESPACE, " ").strip()


def not_finite(value: ibis.Value) -> ibis.Value:
    """True where a float is NaN or infinite (NULL where it is NULL), the same on every engine:
    ``x - x`` is 0 for finite ``x`` and NaN otherwise (Ibis compiles ``isinf`` to something
    PySpark evaluates as false for infinities).
    """
    return (value - value) != 0


def case_variants(names: list[str], weights: list[float]) -> dict[str, str]:
    """Map each spelling of a channel that differs only in case to its most frequent spelling.

    Ties go to the alphabetically first spelling, so the mapping is deterministic. Only names
    that change appear in the result.
    """
    groups: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for name, weight in zip(names, weights):
        groups[name.casefold()].append((-float(weight), name))
    mapping = {}
    for variants in groups.values():
        if len(variants) > 1:
            canonical = min(variants)[1]
            mapping.update({name: canonical for _, name in variants if name != canonical})
    return mapping


def csr(lists: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """CSR offsets (starting at 0) and the flat values of an Arrow list array."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks() if lists.num_chunks else pa.array([], lists.type)
    offsets = lists.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0], pc.list_flatten(lists)


def unique_paths(journeys, engine: str | None = None):
    """Merge identical paths of ``journeys`` (see :meth:`engine.Journeys.unique`)."""
    from engine.ingest import backend
    from engine.journeys import Journeys

    con = backend.connect(engine)
    rows = pa.table({
        ROW: np.arange(journeys.n_journeys, dtype=np.int64),
        "path": pa.ListArray.from_arrays(pa.array(journeys.offsets), pa.array(journeys.codes)),
        "conversions": journeys.conversions, "value": journeys.value, "nulls": journeys.nulls,
    })
    t = backend.table(rows, con)
    merged = (t.group_by("path")
              .aggregate(first=t[ROW].min(), conversions=t.conversions.sum(),
                         value=t.value.sum(), nulls=t.nulls.sum())
              .order_by("first"))
    out = backend.fetch(merged, con)
    offsets, codes = csr(out["path"])
    return Journeys(channels=journeys.channels, offsets=offsets,
                    codes=codes.to_numpy(zero_copy_only=False), conversions=out["conversions"].to_numpy(),
                    value=out["value"].to_numpy(), nulls=out["nulls"].to_numpy(),
                    report=journeys.report)
