"""The 'roas' and 'budget' commands: fit the Bayesian ROAS model, save it, plan budgets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from engine.cli import cli

EXAMPLE = Path(__file__).parent / "data" / "pymc_marketing_mmm" / "mmm_example.csv"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roas")
    result = invoke("-q", "roas", EXAMPLE, "--date", "date_week", "--target", "y", "--channels",
                    "x1,x2", "--controls", "event_1,event_2", "--draws", "150", "--tune", "150",
                    "--chains", "2", "--seed", "1", "--media-share", "0.3:0.15", "--out",
                    folder / "roas.csv", "--save", folder / "model.nc")
    assert result.exit_code == 0, result.stderr
    return folder


@pytest.mark.bayes
def test_roas_writes_the_table_and_the_model(saved):
    table = pd.read_csv(saved / "roas.csv")
    assert table.columns.tolist()[:9] == ["channel", "spend", "value", "value_lower",
                                          "value_upper", "roas", "roas_lower", "roas_upper",
                                          "mroas"]
    assert table["channel"].tolist() == ["x1", "x2"]
    assert (saved / "model.nc").stat().st_size > 0
    from engine.models.bayes import BayesianROAS

    assert list(BayesianROAS.load(saved / "model.nc").media_share_prior) == [0.3, 0.15]


@pytest.mark.bayes
def test_budget_scenario_plan_and_target(saved):
    out = saved / "plan.csv"
    result = invoke("-q", "budget", saved / "model.nc", "--total", "90", "--bounds", "x1=0.5:2",
                    "--scenario", "x1=+20%,x2=-10%", "--target", "960000", "--probability",
                    "0.8", "--resamples", "3", "--out", out)
    assert result.exit_code == 0, result.stderr
    written = pd.read_csv(out)
    assert set(written["table"]) == {"scenarios", "plan", "cheapest"}
    plan = written[written["table"] == "plan"]
    assert plan["optimal"].sum() == pytest.approx(90)
    x1 = plan.set_index("channel").loc["x1"]
    assert x1["bound_lower"] - 1e-9 <= x1["optimal"] <= x1["bound_upper"] + 1e-9


def test_roas_and_budget_input_errors(tmp_path):
    result = invoke("roas", EXAMPLE, "--date", "date_week", "--target", "y", "--channels",
                    "x1,nope")
    assert result.exit_code == 2 and "nope" in result.stderr
    result = invoke("roas", EXAMPLE, "--date", "date_week", "--target", "y", "--channels", "x1",
                    "--roas-prior", "x1=two")
    assert result.exit_code == 2 and "CHANNEL=MEDIAN:SIGMA" in result.stderr
    result = invoke("roas", EXAMPLE, "--date", "date_week", "--target", "y", "--channels", "x1",
                    "--media-share", "0.4")
    assert result.exit_code == 2 and "MEAN:SD" in result.stderr
    result = invoke("-q", "roas", EXAMPLE, "--date", "date_week", "--target", "y", "--channels",
                    "x1", "--media-share", "1.5:0.2")
    assert result.exit_code == 2 and "media_share_prior needs a mean between 0 and 1" in \
        result.stderr and "\n" not in result.stderr.strip()
    broken = tmp_path / "broken.nc"
    broken.write_text("not a model")
    result = invoke("budget", broken, "--total", "10")
    assert result.exit_code == 2 and "not a saved bayes_roas model" in result.stderr
    result = invoke("budget", broken)
    assert result.exit_code == 2 and "--total, --target or --scenario" in result.stderr
