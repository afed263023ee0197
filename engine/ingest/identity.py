"""Identity stitching: several identifiers per person (cookie, login, e-mail...) into one person.

Identifiers are nodes of a graph, two identifiers seen together (on one event row, or as a pair of
the identity map) are linked, and each connected component is one person. The components come
from :func:`scipy.sparse.csgraph.connected_components` on the sparse adjacency matrix rather than
networkx: the maths is the same, but networkx keeps a Python object per identifier, which does
not fit logs with tens of millions of cookies in memory or time.
"""

from __future__ import annotations

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from engine.errors import InputError
from engine.ingest import backend
from engine.ingest.sources import ROW, load_table, source_name

_SEP = "\x1f"


def identity_pairs(t, person: str, identities, con) -> pa.Table:
    """Distinct ``(left, right)`` node pairs linking the person column to each identity column."""
    parts = []
    for column in identities:
        linked = t.filter(t[person].notnull() & t[column].notnull())
        pairs = linked.select(left=node(person, linked[person]),
                              right=node(column, linked[column])).distinct()
        parts.append(backend.fetch(pairs, con))
    return pa.concat_tables(parts) if parts else pa.table({"left": pa.array([], pa.string()),
                                                           "right": pa.array([], pa.string())})


def node(column: str, value):
    """Node name of an identifier: its column and its value (a cookie 'A' is not a login 'A')."""
    return ibis.literal(f"{column}{_SEP}") + (value if value.type().is_string()
                                               else value.cast("string"))


def map_pairs(identity_map, id_columns, notes: list) -> pa.Table:
    """Node pairs from an identity map: a table of exactly two identifier columns."""
    name = source_name(identity_map)
    table = load_table(identity_map)
    columns = [c for c in table.column_names if c != ROW]
    if len(columns) != 2 or not set(columns) & set(id_columns):
        raise InputError(f"an identity map needs exactly two identifier columns, at least one "
                         f"named like an identifier column of the event log "
                         f"({', '.join(id_columns)}); found {', '.join(columns)}", source=name)
    left, right = (table[c].cast(pa.string()) for c in columns)
    usable = pc.and_(pc.is_valid(left), pc.is_valid(right))
    skipped = table.num_rows - pc.sum(usable).as_py()
    if skipped:
        notes.append(f"identity map {name}: {skipped} pairs with a missing identifier link "
                     "nothing and were skipped")
    return pa.table({
        "left": pc.binary_join_element_wise(f"{columns[0]}", left.filter(usable), _SEP),
        "right": pc.binary_join_element_wise(f"{columns[1]}", right.filter(usable), _SEP)})


def stitch(pairs: pa.Table, person: str) -> pa.Table:
    """``(node, person)`` for every linked identifier, ``person`` naming its component.

    A component is named by its smallest value of the ``person`` column; a component without one
    by its smallest other identifier, written ``column:value``.

    Examples
    --------
    >>> import pyarrow as pa
    >>> pairs = pa.table({"left": ["cookie\\x1fa", "cookie\\x1fb"],
    ...                   "right": ["login\\x1fu1", "login\\x1fu1"]})
    >>> sorted(stitch(pairs, "cookie").to_pydict()["person"])
    ['a', 'a', 'a']
    """
    if pairs.num_rows == 0:
        return pa.table({"node": pa.array([], pa.string()), "person": pa.array([], pa.string())})
    both = pa.concat_arrays([pairs["left"].combine_chunks(), pairs["right"].combine_chunks()])
    encoded = pc.dictionary_encode(both)
    nodes = encoded.dictionary
    index = encoded.indices.to_numpy(zero_copy_only=False)
    n_pairs, n_nodes = pairs.num_rows, len(nodes)
    graph = coo_matrix((np.ones(n_pairs), (index[:n_pairs], index[n_pairs:])),
                       shape=(n_nodes, n_nodes))
    _, component = connected_components(graph, directed=False)
    # Labels sort person values ("0...") before other identifiers ("1column:value").
    prefix = f"{person}{_SEP}"
    primary = pc.starts_with(nodes, prefix)
    label = pc.if_else(primary,
                       pc.binary_join_element_wise("0", pc.utf8_slice_codeunits(
                           nodes, len(prefix)), ""),
                       pc.binary_join_element_wise("1", pc.replace_substring(
                           nodes, _SEP, ":"), ""))
    best = pa.table({"component": component, "label": label}).group_by("component").aggregate(
        [("label", "min")])
    order = np.empty(len(best), dtype=np.int64)
    order[best["component"].to_numpy()] = np.arange(len(best))
    names = pc.utf8_slice_codeunits(best["label_min"], 1).take(pa.array(order[component]))
    return pa.table({"node": nodes, "person": names})
