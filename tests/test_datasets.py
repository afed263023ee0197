"""The shipped example data: where it is, its licence note, and what it holds."""

from __future__ import annotations

import numpy as np
import pandas as pd

import engine
from engine.datasets import example_path


def test_example_file_ships_with_its_source_note():
    path = example_path()
    assert path.is_file() and path.name == "channelattribution_paths.csv"
    note = path.with_name("channelattribution_paths.SOURCE.md").read_text()
    assert "MIT" in note and "mta" in note


def test_load_example_reads_the_shipped_file_with_read_paths():
    journeys = engine.load_example()
    direct = engine.read_paths(example_path())
    assert journeys.channels == direct.channels
    np.testing.assert_array_equal(journeys.codes, direct.codes)
    np.testing.assert_array_equal(journeys.conversions, direct.conversions)


def test_example_totals_match_the_raw_file():
    raw = pd.read_csv(example_path())
    journeys = engine.load_example()
    assert journeys.report.n_rows == len(raw) == 10_000
    assert journeys.report.n_rejected == 0
    assert journeys.n_journeys == raw["path"].str.replace(r"\s+", "", regex=True).nunique()
    assert journeys.total_conversions == raw["total_conversions"].sum() == 19_785
    assert journeys.nulls.sum() + journeys.total_conversions == 88_387
    assert np.isclose(journeys.total_value, raw["total_conversion_value"].sum())
    assert sorted(journeys.channels) == ["alpha", "beta", "delta", "epsilon", "eta", "gamma",
                                         "iota", "kappa", "lambda", "mi", "theta", "zeta"]
    assert journeys.ages is None and journeys.milestones is None
