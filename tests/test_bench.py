"""The benchmark runner: every model scored against the simulator's truth, and its commands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from engine import Attribution
from engine.bench import COLUMNS, nmae, plot_bench, run_bench, score, shares, summarise
from engine.cli import cli
from engine.models import REGISTRY, AttributionModel


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


class CreditsTheRarest(AttributionModel):
    """A deliberately wrong researcher model: all credit to the least frequent channel of each
    journey (no name: it is passed as an instance and never registered)."""

    def __init__(self):
        pass

    def _fit(self, journeys):
        counts = np.bincount(journeys.codes, minlength=journeys.n_channels)
        self.credit_ = np.zeros(journeys.n_channels)
        self.credit_[np.argmin(counts)] = journeys.total_conversions
        self.channels_ = list(journeys.channels)

    def _attribute(self):
        return Attribution.from_credit("credits_the_rarest", self.channels_,
                                       conversions=self.credit_,
                                       value=np.zeros(len(self.channels_)))


def test_nmae_and_shares_by_hand():
    assert shares([1, 3]).tolist() == [0.25, 0.75]
    assert shares([0, 0]).tolist() == [0.0, 0.0]
    assert nmae([1, 3], [3, 1]) == pytest.approx(1.0)  # |0.25-0.75| + |0.75-0.25|
    assert nmae([2, 6], [1, 3]) == 0.0  # scale does not matter, only shares


def test_score_counts_missing_channels_as_zero_and_checks_interval_coverage():
    truth = pd.DataFrame({"channel": ["a", "b", "c"], "shapley_conversions": [6.0, 3.0, 1.0],
                          "incremental_conversions": [6.0, 3.0, 1.0]})
    table = Attribution.from_credit("m", ["a", "b"], conversions=[5.0, 5.0],
                                    value=[0.0, 0.0]).table
    result = score(table, truth)
    assert result["nmae"] == pytest.approx(0.1 + 0.2 + 0.1)
    assert np.isnan(result["coverage"])  # a deterministic model has no intervals
    table = table.assign(conversions_lower=[5.5, 0.5], conversions_upper=[7.0, 1.5])
    # shares of intervals: a [0.55, 0.7] covers 0.6; b [0.05, 0.15] misses 0.3.
    assert score(table, truth)["coverage"] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def small_bench():
    return run_bench(["markov_world", "null_channel"],
                     models=["first_touch", "last_touch", "linear", "markov"], replicates=2,
                     persons=3000, seed=5)


def test_runner_gives_one_row_per_scenario_model_and_replicate(small_bench):
    table = small_bench
    assert table.columns.tolist() == COLUMNS
    assert len(table) == 2 * 4 * 2
    assert (table["status"] == "ok").all()
    assert table["nmae"].between(0, 2).all() and table["seconds"].ge(0).all()
    assert table.groupby(["scenario", "model"]).size().eq(2).all()
    # Intervals only where the model has them.
    assert table.loc[table["model"] == "markov", "coverage"].notna().all()
    assert table.loc[table["model"] != "markov", "coverage"].isna().all()
    # Replicates are different worlds, and the run is reproducible from its seed.
    assert table.groupby("scenario")["seed"].nunique().eq(2).all()
    again = run_bench(["markov_world", "null_channel"],
                      models=["first_touch", "last_touch", "linear", "markov"], replicates=2,
                      persons=3000, seed=5)
    pd.testing.assert_frame_equal(table.drop(columns="seconds"), again.drop(columns="seconds"))


def test_summary_and_plot(small_bench, tmp_path):
    summary = summarise(small_bench)
    assert summary["runs"].eq(2).all()
    best = summary.groupby("scenario")["nmae"].apply(lambda s: s.is_monotonic_increasing)
    assert best.all()
    figure = plot_bench(small_bench, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    assert [ax.get_title() for ax in figure.axes] == ["markov_world", "null_channel"]


def test_right_model_beats_wrong_ones_on_the_markov_world():
    table = run_bench("markov_world", models=["markov", "last_touch", CreditsTheRarest()],
                      replicates=3, persons=20_000, seed=1)
    wide = table.pivot(index="replicate", columns="model", values="nmae_removal")
    # The Markov model estimates exactly the removal effects this world is made of.
    assert (wide["markov"] < 0.05).all(), wide
    assert (wide["markov"] < wide["last_touch"]).all()
    assert (wide["markov"] < wide["credits_the_rarest"]).all()
    shapley_truth = table.pivot(index="replicate", columns="model", values="nmae")
    assert (shapley_truth["markov"] < shapley_truth["credits_the_rarest"]).all()


def test_every_registered_model_is_scored_and_unsupported_ones_are_skipped():
    table = run_bench(["null_channel", "b2b"], models="all", replicates=1, persons=2000)
    assert set(table["model"]) == set(REGISTRY)
    status = table.set_index(["scenario", "model"])["status"]
    assert status[("null_channel", "w_shaped")].startswith("skipped: w_shaped needs touch "
                                                           "milestones")
    assert status[("b2b", "w_shaped")] == "ok" and status[("b2b", "full_path")] == "ok"
    skipped = table[table["status"] != "ok"]
    assert skipped[["nmae", "rank_corr", "seconds"]].isna().all().all()


def test_a_researchers_registered_model_is_scored_the_same_way():
    class EqualSplit(AttributionModel):
        name = "equal_split_test_only"
        description = "every channel of the data gets the same credit"

        def __init__(self):
            pass

        def _fit(self, journeys):
            self.channels_ = list(journeys.channels)
            self.total_ = journeys.total_conversions

        def _attribute(self):
            n = len(self.channels_)
            return Attribution.from_credit(self.name, self.channels_,
                                           conversions=np.full(n, self.total_ / n),
                                           value=np.zeros(n))

    try:
        table = run_bench("upper_funnel", models="all", replicates=1, persons=2000)
        row = table.set_index("model").loc["equal_split_test_only"]
        assert row["status"] == "ok" and 0 < row["nmae"] < 2
    finally:
        REGISTRY.pop("equal_split_test_only", None)


def test_a_failing_model_is_reported_and_the_run_goes_on():
    class Broken(AttributionModel):
        def __init__(self):
            pass

        def _fit(self, journeys):
            raise ValueError("boom")

    table = run_bench("harvest", models=[Broken(), "linear"], replicates=1, persons=1000)
    assert table["status"].tolist() == ["failed: ValueError: boom", "ok"]


def test_bad_arguments():
    from engine import EngineError

    with pytest.raises(EngineError, match="unknown scenario 'nope'"):
        run_bench("nope", models=["linear"])
    with pytest.raises(EngineError, match="replicates"):
        run_bench("harvest", models=["linear"], replicates=0)
    with pytest.raises(EngineError, match="unknown model"):
        run_bench("harvest", models=["not_a_model"])


@pytest.mark.bayes
def test_the_bayesian_roas_model_is_scored_on_the_weekly_aggregates():
    table = run_bench("upper_funnel", models=[], replicates=1, persons=5000, weeks=60,
                      roas=True, roas_options={"draws": 100, "tune": 100, "chains": 1})
    row = table.iloc[0]
    assert row["model"] == "bayes_roas" and row["status"] == "ok", row["status"]
    assert 0 <= row["nmae"] <= 2 and 0 <= row["coverage"] <= 1 and row["seconds"] > 0


def test_cli_simulate_writes_the_world_and_bench_scores_it(tmp_path):
    world = tmp_path / "world"
    result = invoke("simulate", "--scenario", "b2b", "--persons", "1500", "--seed", "3",
                    "--out", world)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in world.iterdir()) == ["events.parquet", "truth.csv",
                                                       "weekly.csv", "world.json"]
    assert "truth (b2b, seed 3)" in result.stdout
    truth = pd.read_csv(world / "truth.csv")
    assert truth.columns.tolist()[:5] == ["channel", "incremental_conversions",
                                          "incremental_value", "shapley_conversions",
                                          "shapley_value"]
    # The world file reproduces the world; the event log runs through 'attribution run'.
    again = tmp_path / "again"
    assert invoke("-q", "simulate", "--world", world / "world.json", "--out",
                  again).exit_code == 0
    assert (again / "events.parquet").read_bytes() == (world / "events.parquet").read_bytes()
    result = invoke("-q", "run", world / "events.parquet", "--format", "events", "--account",
                    "account_id", "--model", "w_shaped", "--out", tmp_path / "credit.csv")
    assert result.exit_code == 0, result.stderr
    assert set(pd.read_csv(tmp_path / "credit.csv")["channel"]) <= set(truth["channel"])

    out, plot = tmp_path / "bench.csv", tmp_path / "bench.png"
    result = invoke("bench", "--scenario", "markov_world", "-m", "markov", "-m", "last_touch",
                    "-r", "2", "--persons", "2000", "--out", out, "--plot", plot)
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(out)
    assert {"scenario", "model", "replicate", "nmae", "rank_corr", "coverage",
            "seconds"} <= set(table.columns)
    assert len(table) == 4 and plot.stat().st_size > 0
    assert "markov_world" in result.stdout


def test_cli_errors_are_one_line(tmp_path):
    result = invoke("simulate", "--scenario", "nope", "--out", tmp_path / "w")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("attribution: error: unknown scenario 'nope'")
    result = invoke("simulate", "--out", tmp_path / "w")
    assert result.exit_code == 2 and "--scenario" in result.stderr
    result = invoke("bench", "--scenario", "harvest", "--plot", tmp_path / "x.txt")
    assert result.exit_code == 2 and "x.txt" in result.stderr
    assert not (tmp_path / "w").exists()
