"""Small example data shipped with the package, with their source and licence notes.

``channelattribution_paths.csv`` is ChannelAttribution's example path table ``Data``
(10,000 rows holding 5,408 distinct paths over 12 anonymised channels; 88,387 journeys, 19,785
conversions), in the MIT-licensed copy that the ``mta`` package ships. See
``channelattribution_paths.SOURCE.md`` in this folder for its origin, licence and statistics.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from engine.ingest import read_paths
from engine.journeys import Journeys

_EXAMPLE = "channelattribution_paths.csv"


def example_path() -> Path:
    """Path of the shipped example path table (CSV in ChannelAttribution's layout).

    The table has the columns ``path`` (channels joined by ``" > "``), ``total_conversions``,
    ``total_conversion_value`` and ``total_null``. Source and licence (MIT, from the ``mta``
    package): ``channelattribution_paths.SOURCE.md`` next to it.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> from engine.datasets import example_path
    >>> example_path().name
    'channelattribution_paths.csv'
    """
    return Path(str(resources.files(__name__) / _EXAMPLE))


def load_example() -> Journeys:
    """The shipped example path table read with :func:`engine.read_paths`.

    ChannelAttribution's example data ``Data`` (copy from the MIT-licensed ``mta`` package; see
    ``channelattribution_paths.SOURCE.md``): 10,000 rows that repeat some paths, read into 5,408
    unique paths over 12 channels. It has no touch times, so models that need touch ages or B2B
    milestones cannot run on it.

    Returns
    -------
    Journeys

    Examples
    --------
    >>> import engine
    >>> journeys = engine.load_example()
    >>> journeys.n_journeys, journeys.n_channels, journeys.total_conversions
    (5408, 12, 19785.0)
    """
    with resources.as_file(resources.files(__name__) / _EXAMPLE) as path:
        return read_paths(path)
