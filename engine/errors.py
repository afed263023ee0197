"""Errors the engine raises on purpose.

Every error a user can cause by their input is an :class:`EngineError`; its message is one line
that names the file, the column or the row and what is wrong, so the CLI can print it as is.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of the errors caused by input or usage, printed on one line by the CLI."""


class InputError(EngineError, ValueError):
    """Unusable input: a missing file or column, a bad value in a named row, an empty table.

    Parameters
    ----------
    message : str
        What is wrong.
    source : str, optional
        The file (or ``"DataFrame"``) the input came from.
    column : str, optional
        The column at fault.
    row : int, optional
        The 1-based data row at fault (the header is not counted).
    """

    def __init__(self, message: str, *, source: str | None = None, column: str | None = None,
                 row: int | None = None):
        self.source = source
        self.column = column
        self.row = row
        where = []
        if source:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(" ".join(f"{prefix}: {message}".split()) if prefix else message)


class MissingDataError(EngineError, ValueError):
    """A model needs information the journeys do not carry (touch ages, B2B milestones)."""


class NotFittedError(EngineError, AttributeError):
    """A model was asked for results before :meth:`fit`."""
