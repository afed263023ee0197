"""The ``attribution`` command line, through click's runner and once as the installed script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import engine
from engine.cli import cli
from engine import kpi
from engine.models import REGISTRY, CustomPosition, Linear, TimeDecay

COLUMNS = ["model", "channel", "conversions", "conversions_lower", "conversions_upper", "value",
           "value_lower", "value_upper", "share"]
NEEDS_EVENTS = sorted(name for name, model in REGISTRY.items() if model.requires)
ANY_DATA = sorted(name for name, model in REGISTRY.items() if not model.requires)

EVENTS = """person_id,timestamp,channel,event_type,revenue
u1,2024-01-01,email,touch,
u1,2024-01-03,search,touch,
u1,2024-01-04,,conversion,80
u2,2024-01-02,display,touch,
u2,2024-01-05,search,touch,
u2,2024-01-06,,conversion,20
u3,2024-01-03,display,touch,
"""


SMALL = """path,total_conversions,total_conversion_value,total_null
search > email > search,2,30.5,1
display,0,0,4
email > display,1,12,0
"""


@pytest.fixture(scope="module")
def example(example_journeys) -> engine.Journeys:
    return example_journeys


@pytest.fixture
def small(tmp_path) -> Path:
    """A three-row path table (cheaper to read than the example)."""
    path = tmp_path / "small.csv"
    path.write_text(SMALL)
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(result) -> str:
    """The one line a failed command prints; fails unless stderr is exactly that line."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("attribution: error: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def same_table(written: pd.DataFrame, expected: pd.DataFrame) -> None:
    # The design's columns first; a model may add its own after them.
    assert list(written.columns[:len(COLUMNS)]) == COLUMNS
    pd.testing.assert_frame_equal(written, expected.reset_index(drop=True), check_dtype=False,
                                  check_exact=False, rtol=1e-12)


def script() -> str:
    """The installed console script, next to this interpreter or on PATH."""
    beside = Path(sys.executable).with_name("attribution")
    found = str(beside) if beside.exists() else shutil.which("attribution")
    if found is None:
        pytest.skip("the attribution console script is not installed (pip install -e .)")
    return found


# -- run ---------------------------------------------------------------------------------------

def test_installed_script_writes_the_design_table(tmp_path, example):
    out = tmp_path / "x.csv"
    done = subprocess.run([script(), "run", "example", "--model", "first_touch", "--model",
                           "last_touch", "--out", str(out)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    same_table(pd.read_csv(out), engine.compare(["first_touch", "last_touch"], example))
    assert "first_touch" in done.stdout and "alpha" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["x.csv"]


def test_all_skips_the_models_a_path_table_cannot_support(tmp_path, example):
    out = tmp_path / "all.csv"
    result = invoke("run", "example", "--model", "all", "--out", out)
    assert result.exit_code == 0, result.stderr
    written = pd.read_csv(out)
    assert sorted(written["model"].unique()) == ANY_DATA
    assert {"time_decay", "w_shaped", "full_path"} <= set(NEEDS_EVENTS)
    for name in NEEDS_EVENTS:
        assert f"skipping {name}:" in result.stderr
    # The CLI seeds models that draw (--seed, default 0).
    models = [engine.models.get_model(n, rng=0) if "rng" in engine.models.REGISTRY[n]()
              .get_params() else n for n in ANY_DATA]
    same_table(written, engine.compare(models, example))


def test_seed_makes_intervals_repeat(tmp_path, example):
    tables = []
    for seed in ("1", "1", "2"):
        out = tmp_path / f"{len(tables)}.csv"
        result = invoke("-q", "run", "example", "-m", "markov", "--seed", seed,
                        "-p", "markov.n_draws=20", "-o", out)
        assert result.exit_code == 0, result.stderr
        tables.append(pd.read_csv(out))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert not tables[0]["conversions_lower"].equals(tables[2]["conversions_lower"])


def test_no_model_means_all(tmp_path, small):
    result = invoke("-q", "run", small, "-o", tmp_path / "x.csv")
    assert result.exit_code == 0
    assert sorted(pd.read_csv(tmp_path / "x.csv")["model"].unique()) == ANY_DATA


def test_a_named_model_the_data_cannot_support_is_an_error(tmp_path, small):
    result = invoke("run", small, "--model", "linear", "--model", "time_decay",
                    "--out", tmp_path / "x.csv")
    assert result.exit_code == 2
    assert "time_decay needs touch ages" in error_line(result)
    assert [p.name for p in tmp_path.iterdir()] == ["small.csv"]


def test_unknown_model_lists_the_available_ones():
    result = invoke("run", "example", "--model", "nope")
    assert result.exit_code == 2
    assert "'nope'" in error_line(result) and "first_touch" in result.stderr


def test_missing_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "nowhere.csv"
    result = invoke("run", missing, "--model", "linear")
    assert result.exit_code == 2
    assert str(missing) in error_line(result)


def test_bad_row_is_named(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,total_conversions,total_null\na > b,1,0\nb,-2,1\n")
    result = invoke("run", bad, "--model", "linear")
    assert result.exit_code == 2
    line = error_line(result)
    assert "bad.csv" in line and "row 2" in line and "total_conversions" in line


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,total_conversions\na > b,-1\n")
    result = invoke("--debug", "run", bad)
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "InputError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("attribution: error: ")


def test_unexpected_failure_exits_1_and_points_to_debug(monkeypatch, small):
    def broken(self, journeys):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(engine.models.FirstTouch, "_fit", broken)
    result = invoke("run", small, "--model", "first_touch")
    assert result.exit_code == 1
    line = error_line(result)
    assert "ZeroDivisionError: boom" in line and "--debug" in line
    result = invoke("run", small, "--model", "first_touch", "--debug")
    assert result.exit_code == 1 and "Traceback" in result.stderr


def test_interrupt_is_one_line_exit_130(monkeypatch, small):
    def interrupted(self, journeys):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.models.FirstTouch, "_fit", interrupted)
    result = invoke("run", small, "--model", "first_touch")
    assert result.exit_code == 130
    assert result.stderr.strip() == "attribution: interrupted"


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_nothing_on_success(tmp_path, small, where):
    args = ["run", small, "--model", "all", "--out", tmp_path / "x.csv"]
    args = ["--quiet", *args] if where == "before" else [*args, "--quiet"]
    result = invoke(*args)
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""
    assert (tmp_path / "x.csv").exists()


def test_quiet_still_prints_errors(small):
    result = invoke("--quiet", "run", small, "--model", "time_decay")
    assert result.exit_code == 2
    error_line(result)


def test_stdout_has_one_row_per_channel_and_a_column_per_model(small):
    result = invoke("run", small, "--model", "last_touch", "--model", "linear")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "channel" in line)
    assert header.index("last_touch") < header.index("linear")
    rows = {cells[0]: cells[1:] for cells in
            ([c.strip() for c in line.split("│")[1:-1]] for line in lines if "│" in line)}
    assert rows == {"search": ["2.00", "1.33"], "email": ["0.00", "1.17"],
                    "display": ["1.00", "0.50"], "total": ["3.00", "3.00"]}


def test_usage_errors_are_one_line_exit_2():
    result = invoke("run", "example", "--bogus")
    assert result.exit_code == 2
    assert "--bogus" in error_line(result)
    result = invoke("run")
    assert result.exit_code == 2
    assert "INPUT" in error_line(result)
    result = invoke("run", "example", "--format", "xml")
    assert result.exit_code == 2
    error_line(result)


def test_version_and_help():
    result = invoke("--version")
    assert result.exit_code == 0 and engine.__version__ in result.stdout
    result = invoke()
    assert result.exit_code == 0
    assert all(command in result.stdout for command in ("run", "models", "paths", "kpi"))


# -- --param -------------------------------------------------------------------------------------

def test_params_are_parsed_as_json_or_kept_as_text(tmp_path, example):
    out = tmp_path / "x.csv"
    result = invoke("run", "example", "-m", "custom_position", "-m", "linear",
                    "--param", "custom_position.head=[0.5, 0.1]",
                    "--param", "custom_position.tail=[0.3]",
                    "--param", "custom_position.middle=0.1",
                    "--param", "linear.per=channel", "--out", out)
    assert result.exit_code == 0, result.stderr
    expected = engine.compare([CustomPosition(head=[0.5, 0.1], tail=[0.3], middle=0.1),
                               Linear(per="channel")], example)
    same_table(pd.read_csv(out), expected)
    assert not expected.equals(engine.compare(["custom_position", "linear"], example))


@pytest.mark.parametrize("param, message", [
    ("linear", "MODEL.PARAM=VALUE"),
    ("linear.per", "MODEL.PARAM=VALUE"),
    ("nope.per=1", "unknown model 'nope'"),
    ("first_touch.x=1", "add --model first_touch"),
    ("linear.x=1", "'x'"),
    ("linear.per=diagonal", "'diagonal'"),
])
def test_bad_params_are_errors(small, param, message):
    result = invoke("run", small, "-m", "linear", "--param", param)
    assert result.exit_code == 2
    assert message in error_line(result)


# -- output --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, read", [("x.parquet", pd.read_parquet), ("x.csv.gz", pd.read_csv)])
def test_other_output_formats(tmp_path, small, name, read):
    result = invoke("-q", "run", small, "-m", "position_based", "-o", tmp_path / name)
    assert result.exit_code == 0, result.stderr
    same_table(read(tmp_path / name), engine.compare(["position_based"], engine.read_paths(small)))


@pytest.mark.parametrize("name, message", [("x.json", "unknown output format"),
                                           ("missing/x.csv", "does not exist")])
def test_unwritable_output_fails_before_any_work(tmp_path, name, message):
    result = invoke("run", "example", "-m", "linear", "-o", tmp_path / name)
    assert result.exit_code == 2
    assert message in error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_leaves_the_old_output_alone(tmp_path):
    out = tmp_path / "x.csv"
    out.write_text("old\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,total_conversions\na > b,x\n")
    result = invoke("run", bad, "-o", out)
    assert result.exit_code == 2
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "x.csv"]


def test_a_write_that_fails_halfway_leaves_no_partial_file(tmp_path, small, monkeypatch):
    def half_then_fail(self, path, **kwargs):
        Path(path).write_text("model,channel\nlinear,al")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    result = invoke("run", small, "-m", "linear", "-o", tmp_path / "x.csv")
    assert result.exit_code == 2
    assert "No space left on device" in error_line(result)
    assert [p.name for p in tmp_path.iterdir()] == ["small.csv"]


# -- input formats -------------------------------------------------------------------------------

def test_parquet_path_table_is_read_with_the_default_columns(tmp_path, example):
    table = tmp_path / "paths.parquet"
    pd.read_csv(engine.datasets.example_path()).to_parquet(table)
    result = invoke("-q", "run", table, "-m", "linear", "-o", tmp_path / "x.csv")
    assert result.exit_code == 0, result.stderr
    same_table(pd.read_csv(tmp_path / "x.csv"), engine.compare(["linear"], example))


def test_path_table_column_options(tmp_path, example):
    renamed = tmp_path / "renamed.csv"
    frame = pd.read_csv(engine.datasets.example_path())
    frame["journey"] = frame.pop("path").str.replace(" > ", " | ")
    frame.rename(columns={"total_conversions": "orders", "total_conversion_value": "revenue",
                          "total_null": "lost"}).to_csv(renamed, index=False)
    result = invoke("-q", "run", renamed, "-m", "first_touch", "--path-column", "journey",
                    "--sep", "|", "--conversions-column", "orders", "--value-column", "revenue",
                    "--nulls-column", "lost", "-o", tmp_path / "x.csv")
    assert result.exit_code == 0, result.stderr
    same_table(pd.read_csv(tmp_path / "x.csv"), engine.compare(["first_touch"], example))


def test_event_log_is_guessed_and_supports_time_decay(tmp_path):
    log = tmp_path / "events.csv"
    log.write_text(EVENTS)
    out = tmp_path / "x.csv"
    result = invoke("run", log, "-m", "time_decay", "-m", "first_touch",
                    "-p", "time_decay.half_life=2", "-o", out)
    assert result.exit_code == 0, result.stderr
    expected = engine.compare([TimeDecay(half_life=2), "first_touch"], engine.read_events(log))
    same_table(pd.read_csv(out), expected)


def test_event_log_with_a_page_path_column_is_still_an_event_log(tmp_path):
    log = tmp_path / "events.csv"
    lines = EVENTS.splitlines()
    log.write_text("\n".join([lines[0] + ",path"] + [line + ",/home" for line in lines[1:]]))
    result = invoke("run", log, "-m", "first_touch", "-o", tmp_path / "x.csv")
    assert result.exit_code == 0, result.stderr


def test_account_log_through_the_cli(tmp_path):
    log = tmp_path / "accounts.csv"
    log.write_text("account_id,timestamp,channel,event_type\nacme,2024-01-01,ads,touch\n"
                   "acme,2024-01-02,,conversion\n")
    out = tmp_path / "x.csv"
    result = invoke("run", log, "--account", "account_id", "-m", "last_touch", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert pd.read_csv(out)["conversions"].tolist() == [1.0]


def test_lookback_none_keeps_every_touch(tmp_path):
    log = tmp_path / "events.csv"
    log.write_text("person_id,timestamp,channel,event_type\nu,2020-01-01,old,touch\n"
                   "u,2024-01-01,new,touch\nu,2024-01-02,,conversion\n")
    for days, paths in (("none", ["old > new"]), ("30", ["new"])):
        out = tmp_path / f"{days}.csv"
        result = invoke("run", log, "-m", "first_touch", "--lookback-days", days, "-o", out)
        assert result.exit_code == 0, result.stderr
        credit = pd.read_csv(out).set_index("channel")["conversions"]
        assert credit[paths[0].split(" > ")[0]] == 1.0
    result = invoke("run", log, "-m", "first_touch", "--lookback-days", "soon")
    assert result.exit_code == 2 and "neither a number of days nor 'none'" in result.stderr


def test_event_column_options_and_lookback(tmp_path):
    log = tmp_path / "events.csv"
    log.write_text(EVENTS.replace("person_id,timestamp,channel", "user,time,source"))
    out = tmp_path / "x.csv"
    result = invoke("-q", "run", log, "--format", "events", "--person", "user", "--timestamp",
                    "time", "--channel", "source", "--lookback-days", "2", "-m", "linear",
                    "-o", out)
    assert result.exit_code == 0, result.stderr
    expected = engine.compare(["linear"], engine.read_events(
        log, person="user", timestamp="time", channel="source", lookback_days=2))
    same_table(pd.read_csv(out), expected)


def test_rejected_rows_are_summarised_on_stderr(tmp_path):
    log = tmp_path / "events.csv"
    log.write_text(EVENTS + "u4,not a time,search,touch,\n")
    result = invoke("run", log, "-m", "linear")
    assert result.exit_code == 0, result.stderr
    assert "1 not used" in result.stderr and "row 8" in result.stderr
    assert invoke("-q", "run", log, "-m", "linear").stderr == ""


def test_options_of_the_other_format_are_errors(tmp_path):
    result = invoke("run", "example", "--person", "user")
    assert result.exit_code == 2
    assert "--person" in error_line(result)
    result = invoke("run", "example", "--format", "events")
    assert result.exit_code == 2
    assert "no channel column" in error_line(result)


# -- models, paths, kpi --------------------------------------------------------------------------

def test_models_lists_every_registered_model():
    result = invoke("models")
    assert result.exit_code == 0
    for name, model in REGISTRY.items():
        assert name in result.stdout
        assert model.description[:20] in result.stdout
    assert "touch times" in result.stdout


def test_paths_command(tmp_path, example):
    out = tmp_path / "top.csv"
    result = invoke("paths", "example", "--top", "3", "--by", "journeys", "--out", out)
    assert result.exit_code == 0, result.stderr
    expected = kpi.top_paths(example, n=3, by="journeys")
    pd.testing.assert_frame_equal(pd.read_csv(out), expected, check_dtype=False)
    assert expected["path"].iat[0] in result.stdout


def test_kpi_command_writes_one_csv_per_table(tmp_path, example):
    folder = tmp_path / "kpi"
    result = invoke("kpi", "example", "--model", "last_touch", "--out", folder)
    assert result.exit_code == 0, result.stderr
    tables = kpi.summary(example, spend=None, models=["last_touch"], n_paths=10)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{k}.csv" for k in tables)
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(pd.read_csv(folder / f"{name}.csv"),
                                      frame.reset_index(drop=True), check_dtype=False)
        assert name in result.stdout


def test_markov_order_option_and_auto(tmp_path, example):
    out = tmp_path / "m.csv"
    result = invoke("run", "example", "-m", "markov", "--order", "2", "-p", "markov.n_draws=0",
                    "-o", out)
    assert result.exit_code == 0, result.stderr
    expected = engine.compare([engine.models.Markov(order=2, n_draws=0)], example)
    same_table(pd.read_csv(out), expected)
    result = invoke("run", "example", "-m", "markov", "--order", "auto", "-p",
                    "markov.n_draws=0", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "markov order 1 chosen" in result.stderr
    result = invoke("run", "example", "-m", "markov", "--order", "two")
    assert result.exit_code == 2 and "integer or 'auto'" in result.stderr


def test_shapley_value_function_as_a_parameter(tmp_path, example):
    out = tmp_path / "s.csv"
    result = invoke("-q", "run", "example", "-m", "shapley", "-p",
                    "shapley.value=conversion_rate", "-p", "shapley.n_draws=20", "-o", out)
    assert result.exit_code == 0, result.stderr
    expected = engine.compare([engine.models.Shapley(value="conversion_rate", n_draws=20,
                                                     rng=0)], example)
    same_table(pd.read_csv(out), expected)
    result = invoke("run", "example", "-m", "shapley", "-p", "shapley.value=banzhaf")
    assert result.exit_code == 2 and "value must be one of" in result.stderr
