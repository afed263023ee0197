"""Shared fixtures and the deterministic hypothesis profile of the test suite."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
from hypothesis import settings

import engine
from engine.journeys import LEAD, OPPORTUNITY

# Derandomised so that a failure seen in CI is the failure seen locally, with the blob to replay it.
settings.register_profile("deterministic", derandomize=True, max_examples=60, deadline=None,
                          print_blob=True)
settings.load_profile("deterministic")

RICH_CHANNELS = ("direct", "display", "email", "search", "social")


@pytest.fixture(scope="session")
def example_journeys() -> engine.Journeys:
    """ChannelAttribution's example path table, as shipped with the package."""
    with resources.as_file(resources.files("engine.datasets")
                           / "channelattribution_paths.csv") as path:
        return engine.read_paths(path)


def _make_rich_journeys(seed: int = 20240611, n_journeys: int = 200,
                       channels=RICH_CHANNELS) -> engine.Journeys:
    """Synthetic journeys carrying everything a model may require: touch ages and milestones.

    Paths have 1 to 8 touches. Ages decrease along the journey (the last touch is the youngest,
    at 0 to 2 days). About 70 % of journeys have one lead-creation touch, and about 60 % of those
    one opportunity-creation touch at or after the lead (possibly the same touch).
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, size=n_journeys)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_touches = int(offsets[-1])
    journey = np.repeat(np.arange(n_journeys), lengths)
    position = np.arange(n_touches) - offsets[:-1][journey]

    codes = rng.integers(0, len(channels), size=n_touches)
    gaps = rng.exponential(5.0, size=n_touches)
    # A touch's age is the sum of the gaps after it in its journey, plus the journey's last gap.
    after = np.cumsum(gaps[::-1])[::-1]
    end = np.concatenate([after[offsets[1:-1]], [0.0]])[journey]
    ages = np.clip(after - end - gaps, 0, None) + rng.uniform(0, 2, size=n_journeys)[journey]

    has_lead = rng.random(n_journeys) < 0.7
    has_opportunity = has_lead & (rng.random(n_journeys) < 0.6)
    lead_at = np.floor(rng.random(n_journeys) * lengths).astype(int)
    opportunity_at = lead_at + np.floor(rng.random(n_journeys) * (lengths - lead_at)).astype(int)
    milestones = np.zeros(n_touches, dtype=np.uint8)
    milestones |= np.where(has_lead[journey] & (position == lead_at[journey]), LEAD, 0
                           ).astype(np.uint8)
    milestones |= np.where(has_opportunity[journey] & (position == opportunity_at[journey]),
                           OPPORTUNITY, 0).astype(np.uint8)

    conversions = rng.poisson(0.8, size=n_journeys).astype(float)
    value = np.round(conversions * rng.gamma(2.0, 40.0, size=n_journeys), 2)
    nulls = rng.poisson(2.0, size=n_journeys).astype(float)
    return engine.Journeys(channels=channels, offsets=offsets, codes=codes,
                           conversions=conversions, value=value, nulls=nulls, ages=ages,
                           milestones=milestones)


@pytest.fixture(scope="session")
def rich_journeys() -> engine.Journeys:
    """~200 synthetic journeys over 5 channels with touch ages and milestones (every model fits)."""
    return _make_rich_journeys()


@pytest.fixture(scope="session")
def make_rich_journeys():
    """The builder behind ``rich_journeys``: ``make_rich_journeys(seed, n_journeys, channels)``."""
    return _make_rich_journeys


@pytest.fixture(scope="session")
def tiny_roas_model_file(tmp_path_factory):
    """A Bayesian ROAS model fitted to mmm_example.csv with 100 draws of one chain (fast, not
    converged: for tests about what is done with a saved model) and saved as netCDF."""
    import warnings
    from pathlib import Path

    import pandas as pd

    from engine.models.bayes import BayesianROAS, ConvergenceWarning

    data = pd.read_csv(Path(__file__).parent / "data" / "pymc_marketing_mmm" / "mmm_example.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BayesianROAS(draws=100, tune=100, chains=1, rng=1).fit(
            data, date="date_week", target="y", channels=["x1", "x2"],
            controls=["event_1", "event_2"])
    path = tmp_path_factory.mktemp("roas") / "model.nc"
    model.save(path)
    return path
