"""Output files written whole or not at all: to a temporary file beside them, then renamed."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from engine.errors import EngineError


@contextlib.contextmanager
def atomic_path(out) -> Iterator[Path]:
    """A temporary path in ``out``'s folder to write to, renamed onto ``out`` when the block ends.

    If the block raises, the temporary file is removed and an existing ``out`` is left as it
    was: a failed write never leaves a partial file. The temporary name ends with ``out``'s
    name, so a writer that picks the format by extension (pandas, matplotlib) picks the same.

    Parameters
    ----------
    out : str or pathlib.Path
        The file to write.

    Yields
    ------
    pathlib.Path
        Where to write.

    Raises
    ------
    EngineError
        The file system refused (no space, no permission...): one line naming ``out``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     out = pathlib.Path(folder) / "table.csv"
    ...     with atomic_path(out) as partial:
    ...         _ = partial.write_text("channel,credit\\n")
    ...     [p.name for p in out.parent.iterdir()], out.read_text()
    (['table.csv'], 'channel,credit\\n')
    """
    out = Path(out)
    partial = out.with_name(f".partial-{uuid.uuid4().hex[:12]}-{out.name}")
    try:
        yield partial
        os.replace(partial, out)
    except OSError as exc:
        raise EngineError(f"{out}: cannot write ({exc.strerror or exc})") from exc
    finally:
        partial.unlink(missing_ok=True)
