"""The HTML report (``engine.report`` and ``attribution report``): one offline file, every
section where its data allows, rendered by headless Chromium without errors.

The example path table and a simulated event log (with bad rows added) are each built once for
the module; the Bayesian ROAS test fits one tiny model (100 draws of one chain).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import engine
from engine.cli import cli
from engine.models import Incremental
from engine.models.bayes import BayesianROAS
from engine.report import build_report, write_report
from engine.simulate import scenario, simulate
from tests.browser import chromium_page

ARTIFACTS = Path(__file__).parent / "artifacts"
ALWAYS = ("summary", "credit", "agreement", "markov", "shapley", "guide")
EXAMPLE_CHARTS = ("chart-path-length", "chart-credit", "chart-agreement", "chart-markov-graph",
                  "chart-removal-effects", "chart-shapley")
EVENT_CHARTS = EXAMPLE_CHARTS + ("chart-time-to-convert", "chart-kpi-roas")
ROAS_CHARTS = ("chart-roas", "chart-roas-fit", "chart-response-curves")
# The journey models that fit in well under a second on the example (the Bayesian ones, which
# sample with NUTS, would take the tests past a minute); three need event-log data.
FAST_MODELS = ("custom_position", "first_touch", "fractribution", "full_path", "last_non_direct",
               "last_touch", "linear", "markov", "position_based", "shapley", "time_decay",
               "w_shaped")
SPEND = pd.DataFrame({"date": ["2024-07-01", "2024-08-01", "2024-07-01", "2024-07-01",
                               "2024-07-01"],
                      "channel": ["display", "display", "social", "search", "tv"],
                      "spend": [600.0, 400.0, 500.0, 300.0, 50.0]})


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("attribution: error: "), lines[0]
    return lines[0]


def ids(page: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page))


def element(page: str, css_id: str) -> str:
    """The HTML of the element with this id, up to its first closing tag of the same name,
    without the line-break hints of table headers (``last_<wbr>touch``)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{css_id}"', page)
    assert match, f"no element #{css_id}"
    end = page.index(f"</{match.group(1)}>", match.end())
    return page[match.start():end].replace("<wbr>", "")


def assert_offline(page: str) -> None:
    """Nothing on the page is fetched: no web address at all, no src, only in-page links."""
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"\bsrc\s*=", page)
    for target in re.findall(r'\bhref\s*=\s*"([^"]*)"', page):
        assert target.startswith(("#", "data:")), target
    assert "<script" not in page and "@import" not in page and "url(" not in page.replace(
        "url(#", "")


def assert_renders(page, charts) -> None:
    """No console error and every chart's SVG laid out with a size."""
    assert page.errors == []
    for chart in charts:
        svg = page.locator(f"figure.chart#{chart} > svg")
        assert svg.count() == 1, chart
        box = svg.bounding_box()
        assert box is not None and box["width"] > 50 and box["height"] > 50, (chart, box)


@pytest.fixture(scope="module")
def example_report(tmp_path_factory, example_journeys) -> Path:
    folder = tmp_path_factory.mktemp("example_report")
    return write_report(folder / "report.html", example_journeys, models=FAST_MODELS,
                        source="example")


@pytest.fixture(scope="module")
def event_journeys(tmp_path_factory) -> engine.Journeys:
    """A simulated event log as a CSV with three bad rows added, read back."""
    events = simulate(scenario("null_channel", persons=2000, seed=1)).events
    events = events.assign(timestamp=events["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    bad = pd.DataFrame({"person_id": [1, 2, 3],
                        "timestamp": ["not a date", "2024-07-01T10:00:00Z",
                                      "2024-07-02T10:00:00Z"],
                        "channel": ["search", None, "search"],
                        "event_type": ["touch", "touch", "carrier pigeon"],
                        "revenue": [None, None, None]})
    path = tmp_path_factory.mktemp("events") / "events.csv"
    pd.concat([events, bad], ignore_index=True).to_csv(path, index=False)
    return engine.read_events(path)


@pytest.fixture(scope="module")
def event_report(tmp_path_factory, event_journeys) -> Path:
    folder = tmp_path_factory.mktemp("event_report")
    return write_report(folder / "report.html", event_journeys, models=FAST_MODELS,
                        spend=SPEND, title="Simulated world")


def test_example_report_is_one_offline_file_with_every_journey_section(example_report,
                                                                       example_journeys):
    assert [p.name for p in example_report.parent.iterdir()] == ["report.html"]
    page = example_report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert_offline(page)
    found = ids(page)
    assert set(ALWAYS) | set(EXAMPLE_CHARTS) <= found
    # A path table has no touch times, no spend was given, no ROAS model.
    assert not {"chart-time-to-convert", "kpis", "roas"} & found
    for chart in EXAMPLE_CHARTS:
        assert "<svg" in element(page, chart)
    skipped = element(page, "skipped-models")
    for name in ("time_decay", "w_shaped", "full_path"):
        assert f"<code>{name}</code>" in skipped
    credit = element(page, "table-credit")
    total = f"{example_journeys.total_conversions:,.0f}"
    head, foot = credit.split("<tfoot>")
    n_models = len(re.findall(r"<th[ >]", head)) - 1  # one column per model after channel
    assert n_models == 9
    assert foot.count(total) == n_models  # every model splits every conversion
    assert f"attribution-engine {engine.__version__}" in page and " UTC" in page
    assert "example" in page.split('class="colophon"')[1]


def test_event_log_report_shows_rejected_rows_time_to_convert_and_spend(event_report,
                                                                        event_journeys):
    page = event_report.read_text(encoding="utf-8")
    assert_offline(page)
    found = ids(page)
    assert set(ALWAYS) | set(EVENT_CHARTS) | {"kpis", "table-rejected",
                                              "table-time-to-convert"} <= found
    assert "roas" not in found
    report = event_journeys.report
    assert report.n_rejected >= 3
    rejected = element(page, "table-rejected")
    for reason in report.rejected:
        assert reason in rejected
    assert "unparseable timestamp" in rejected and "unknown event type" in rejected
    assert "time_decay" in element(page, "table-credit")  # touch times: time decay runs
    roas = element(page, "table-kpi-roas")
    assert all(channel in roas for channel in ("display", "social", "search", "tv"))
    assert "tv" in element(page, "kpis").split('class="note"')[1]  # spend but no touches
    assert "<title>Simulated world</title>" in page


def test_reports_render_in_chromium_without_errors(example_report, event_report):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        page.set_viewport_size({"width": 1200, "height": 900})
        for path, charts, shot in ((example_report, EXAMPLE_CHARTS, "report.png"),
                                   (event_report, EVENT_CHARTS, "report_events.png")):
            page.goto(path.as_uri())
            assert_renders(page, charts)
            assert page.locator("section.block").count() >= len(ALWAYS)
            page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_same_journeys_give_the_same_page_and_names_are_escaped():
    journeys = engine.Journeys.from_lists(
        [["<b>search</b>", "email"], ["email"], ["display & co", "<b>search</b>"], ["email"]],
        conversions=[2, 1, 0, 1], value=[50.0, 20.0, 0.0, 5.0], nulls=[1, 2, 3, 1])
    pages = [build_report(journeys, models=["first_touch", "markov"]) for _ in range(2)]
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")
    assert stamp.sub("", pages[0]) == stamp.sub("", pages[1])
    assert "<b>" not in pages[0] and "&lt;b&gt;search&lt;/b&gt;" in pages[0]
    assert "display &amp; co" in pages[0]


def test_api_errors_are_one_line_engine_errors(tmp_path):
    journeys = engine.Journeys.from_lists([["a", "b"], ["b"]], conversions=[1, 1], nulls=[1, 1])
    with pytest.raises(engine.EngineError, match="expects engine.Journeys"):
        build_report(pd.DataFrame())
    with pytest.raises(engine.EngineError, match="roas_model is not fitted"):
        build_report(journeys, roas_model=BayesianROAS())
    with pytest.raises(engine.EngineError, match="unknown model 'nope'"):
        build_report(journeys, models=["nope"])
    with pytest.raises(engine.EngineError, match="does not exist"):
        write_report(tmp_path / "missing" / "report.html", journeys)
    bad_spend = pd.DataFrame({"date": ["2024-01-01"], "channel": ["a"], "spend": [-1.0]})
    with pytest.raises(engine.InputError, match="negative"):
        build_report(journeys, spend=bad_spend)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_the_report_and_prints_its_path(tmp_path):
    out = tmp_path / "report.html"
    result = invoke("report", "example", "--out", out, "--model", "last_touch", "-m", "markov",
                    "--title", "Q3 review")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    page = out.read_text(encoding="utf-8")
    assert "<title>Q3 review</title>" in page
    credit = element(page, "table-credit")
    assert "last_touch" in credit and "markov" in credit and "linear" not in credit
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.parametrize("args, message", [
    (["missing.csv"], "missing.csv: file not found"),
    (["example", "--model", "nope"], "unknown model 'nope'"),
    (["example", "--model", "time_decay"], "time_decay needs touch ages"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    out = tmp_path / "report.html"
    result = invoke("report", *args, "--out", out)
    assert result.exit_code == 2
    assert message in error_line(result)
    assert not out.exists()


def test_cli_rejects_an_output_it_cannot_write(tmp_path):
    for out, message in ((tmp_path / "report.csv", "name it .html"),
                         (tmp_path / "nope" / "report.html", "does not exist")):
        result = invoke("report", "example", "--out", out)
        assert result.exit_code == 2
        assert message in error_line(result)
    result = invoke("report", "example")
    assert result.exit_code == 2 and "--out" in error_line(result)


@pytest.fixture(scope="module")
def roas_model_file(tiny_roas_model_file) -> Path:
    return tiny_roas_model_file


@pytest.mark.bayes
def test_cli_report_with_spend_and_a_roas_model(tmp_path, roas_model_file):
    spend = tmp_path / "spend.csv"
    pd.DataFrame({"date": ["2024-01-01"] * 3, "channel": ["alpha", "eta", "iota"],
                  "spend": [5000.0, 2000.0, 1000.0]}).to_csv(spend, index=False)
    out = tmp_path / "report.html"
    result = invoke("-q", "report", "example", "--out", out, "-m", "last_touch", "-m", "linear",
                    "--spend", spend, "--roas-model", roas_model_file)
    assert result.exit_code == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    assert_offline(page)
    assert {"kpis", "roas", "table-roas", "table-kpi-roas", "table-kpi-cost-per-order",
            *ROAS_CHARTS, "chart-kpi-roas"} <= ids(page)
    roas = element(page, "table-roas")
    assert "x1" in roas and "x2" in roas
    # A 100-draw chain does not converge: the report says so instead of hiding it.
    assert "did not converge" in element(page, "roas")
    broken = tmp_path / "broken.nc"
    broken.write_text("not a model")
    result = invoke("report", "example", "--out", tmp_path / "other.html", "--roas-model", broken)
    assert result.exit_code == 2
    assert "not a saved bayes_roas model" in error_line(result)
    with chromium_page() as browser:
        browser.goto(out.as_uri())
        assert_renders(browser, ROAS_CHARTS + ("chart-kpi-roas",))


@pytest.mark.bayes
def test_the_roas_section_sets_journey_roas_beside_the_media_mix(roas_model_file):
    # Journeys over the media-mix model's channels (x1, x2) plus one it does not know.
    rng = np.random.default_rng(2)
    n = 4000
    x1, x2 = rng.random(n) < 0.5, rng.random(n) < 0.4
    converted = rng.random(n) < 0.02 + 0.05 * x1 + 0.01 * x2
    paths = [["x1"] * a + ["x2"] * b or ["email"] for a, b in zip(x1.tolist(), x2.tolist())]
    journeys = engine.Journeys.from_lists(paths, conversions=converted.astype(float),
                                          value=converted * 40.0,
                                          nulls=(~converted).astype(float))
    spend = pd.DataFrame({"date": ["2024-01-01"] * 3, "channel": ["x1", "x2", "tv"],
                          "spend": [3000.0, 2000.0, 500.0]})
    page = build_report(journeys, models=[Incremental(method="laplace", rng=0)], spend=spend,
                        roas_model=BayesianROAS.load(roas_model_file))
    side = element(page, "table-roas-agreement")
    assert "x1" in side and "x2" in side and "email" not in side and "tv" not in side
    assert side.count(">yes<") + side.count(">no<") == 2
