"""attribution-engine: probabilistic, data-driven marketing attribution."""

import warnings as _warnings

# PyTensor (under PyMC) warns on import that it found no BLAS to link; its C code runs without
# one, and the warning says nothing a user of this package can act on.
_warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS",
                         category=UserWarning)

from engine import models
from engine.compare import compare
from engine.datasets import load_example
from engine.errors import EngineError, InputError, MissingDataError, NotFittedError
from engine.ingest import IngestReport, read_paths
from engine.journeys import Journeys
from engine.results import Attribution

__all__ = ["read_paths", "read_events", "Journeys", "Attribution", "compare", "models", "IngestReport",
           "load_example",
           "EngineError", "InputError", "MissingDataError", "NotFittedError"]
__version__ = "0.1.0"


def __getattr__(name):
    # read_events brings in Ibis and DuckDB: load them on first use, not with the package.
    if name == "read_events":
        from engine.ingest.events import read_events

        return read_events
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
