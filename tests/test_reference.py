"""Our rule models against ChannelAttribution's heuristic models on its own example data."""

from __future__ import annotations

import pandas as pd
import pytest

from engine.models import get_model
from tests.reference.channelattribution_heuristics import HEURISTICS

RTOL = 1e-6


@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_matches_channelattribution_heuristics(name, example_journeys):
    reference = pd.DataFrame(HEURISTICS[name]).T.sort_index()
    params = {"per": "touch"} if name == "linear" else {}
    table = get_model(name, **params).fit(example_journeys).attribute().table
    ours = table.set_index("channel")[["conversions", "value"]].sort_index()
    assert ours.index.tolist() == reference.index.tolist()
    pd.testing.assert_frame_equal(ours, reference[["conversions", "value"]], check_exact=False,
                                  rtol=RTOL, atol=0, check_names=False)
