"""The scenario planner: ``engine.serve`` and ``attribution serve``.

The API's input checks run against known response curves (no fit); one tiny Bayesian ROAS model,
fitted once for the module and read back from its netCDF file as the command line does, serves
the predictions, the optimiser, the page in Chromium and the command.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

import engine
from engine.budget import Curves, scenarios
from engine.cli import cli
from engine.models.bayes import BayesianROAS
from engine.serve import MAX_BODY, PlannerServer, serve
from tests.browser import chromium_page

ARTIFACTS = Path(__file__).parent / "artifacts"
JSON = {"Content-Type": "application/json"}


def request(server, method: str, path: str, body=None, *, raw: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict | str]:
    """Status and decoded answer (JSON, or text for the page) of one request to ``server``;
    a body goes as JSON unless ``headers`` say otherwise."""
    host, port = server.server_address
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        payload = raw if raw is not None else None if body is None else json.dumps(body)
        if headers is None:
            headers = JSON if payload is not None else {}
        connection.request(method, path, payload, headers)
        response = connection.getresponse()
        text = response.read().decode()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(text) if kind == "application/json" else text
    finally:
        connection.close()


@pytest.fixture(scope="module")
def curves_server():
    """A planner over known log curves: answers without any fit."""
    model = Curves(["search", "display"], beta=[300.0, 100.0], scale=[1500.0, 500.0],
                   current=[1000.0, 1000.0], outcome_name="orders")
    with serve(model, port=0) as server:
        yield server


@pytest.fixture(scope="module")
def model_file(tiny_roas_model_file) -> Path:
    return tiny_roas_model_file


@pytest.fixture(scope="module")
def model(model_file) -> BayesianROAS:
    return BayesianROAS.load(model_file)


@pytest.fixture(scope="module")
def model_server(model):
    with serve(model, port=0) as server:
        yield server


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than 127.x, or None."""
    candidates = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            # A UDP "connect" only picks the outgoing interface; nothing is sent.
            probe.connect(("192.0.2.1", 9))
            candidates.append(probe.getsockname()[0])
        except OSError:
            pass
    try:
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    return next((a for a in candidates if not a.startswith("127.") and a != "0.0.0.0"), None)


# -- the server itself ---------------------------------------------------------------------------

def test_server_binds_to_loopback_only(curves_server):
    assert curves_server.server_address[0] == "127.0.0.1"
    assert curves_server.url == f"http://127.0.0.1:{curves_server.server_address[1]}/"


def test_server_is_not_reachable_on_the_machines_network_address(curves_server):
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with pytest.raises(OSError):
        socket.create_connection((address, curves_server.server_address[1]), timeout=2).close()


def test_shutdown_stops_serving_and_frees_the_port():
    model = Curves(["a"], beta=[1.0], scale=[1.0], current=[1.0])
    server = serve(model, port=0)
    port = server.server_address[1]
    assert request(server, "GET", "/api/model")[0] == 200
    server.shutdown()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    server.shutdown()  # a second call is harmless


def test_serve_rejects_a_taken_port_a_bad_port_and_a_model_without_the_protocol(curves_server):
    model = Curves(["a"], beta=[1.0], scale=[1.0], current=[1.0])
    with pytest.raises(engine.EngineError, match="cannot listen on 127.0.0.1:.*in use"):
        serve(model, port=curves_server.server_address[1])
    with pytest.raises(engine.EngineError, match="port must be an integer from 0 to 65535"):
        serve(model, port=70000)
    with pytest.raises(engine.EngineError, match="response-model protocol"):
        serve(object(), port=0)


def test_page_is_self_contained_html(curves_server):
    status, page = request(curves_server, "GET", "/")
    assert status == 200
    assert page.startswith("<!doctype html>") and "Predicted orders" in page
    # Inline CSS and JS only: nothing is fetched from anywhere but this server.
    assert "http://" not in page and "https://" not in page and " src=" not in page


def test_model_answer_lists_channels_and_current_plan(curves_server):
    status, answer = request(curves_server, "GET", "/api/model")
    assert status == 200
    assert answer == {"channels": ["search", "display"],
                      "current": {"search": 1000.0, "display": 1000.0}, "current_total": 2000.0,
                      "outcome_name": "orders", "ci_level": 0.9}


def test_requests_are_not_logged_unless_verbose(curves_server, capfd):
    request(curves_server, "GET", "/api/model")
    request(curves_server, "POST", "/api/predict", {"allocation": {"search": -1}})
    request(curves_server, "GET", "/nope")
    assert capfd.readouterr().err == ""


# -- input checks: 400 with one line, and the server goes on ------------------------------------

VALID = {"search": 1500.0, "display": 500.0}
BAD = {
    "unknown channel": ("/api/predict", {"allocation": {**VALID, "tv": 10}},
                        "unknown channel 'tv'; the channels are search, display"),
    "missing channel": ("/api/predict", {"allocation": {"search": 10}},
                        "missing channel 'display'"),
    "negative amount": ("/api/predict", {"allocation": {**VALID, "search": -5}},
                        "the amount for 'search' must be a finite number >= 0, not -5"),
    "NaN amount": ("/api/predict", b'{"allocation": {"search": NaN, "display": 1}}',
                   "'search' must be a finite number >= 0, not nan"),
    "infinite amount": ("/api/predict", b'{"allocation": {"search": 1, "display": Infinity}}',
                        "'display' must be a finite number >= 0, not inf"),
    "huge integer": ("/api/predict", b'{"allocation": {"search": 1, "display": 1' + b"0" * 400
                     + b"}}", "'display' must be a finite number >= 0, not 1000"),
    "text amount": ("/api/predict", {"allocation": {**VALID, "search": "100"}},
                    "'search' must be a finite number >= 0, not \"100\""),
    "null amount": ("/api/predict", {"allocation": {**VALID, "search": None}},
                    "not null"),
    "boolean amount": ("/api/predict", {"allocation": {**VALID, "search": True}},
                       "not true"),
    "allocation not an object": ("/api/predict", {"allocation": [1, 2]},
                                 "'allocation' must be an object of channel to amount"),
    "no allocation": ("/api/predict", {}, "missing field 'allocation'"),
    "unknown field": ("/api/predict", {"allocation": VALID, "extra": 1},
                      "unknown field 'extra'"),
    "body not JSON": ("/api/predict", b"{allocation: 1", "the body is not valid JSON"),
    "body not UTF-8": ("/api/predict", b'{"allocation": "\xff"}', "the body is not valid JSON"),
    "body a list": ("/api/predict", b"[1, 2]", "the body must be a JSON object"),
    "empty body": ("/api/predict", b"", "the body is not valid JSON"),
    "body too large": ("/api/predict", b" " * (MAX_BODY + 1), "larger than 64 KiB"),
    "deeply nested": ("/api/predict", b"[" * 30_000 + b"]" * 30_000,
                      "the body is not valid JSON"),
    "total zero": ("/api/optimise", {"total": 0}, "the total budget must be a finite number > 0"),
    "total negative": ("/api/optimise", {"total": -100}, "> 0, not -100"),
    "total text": ("/api/optimise", {"total": "2000"}, "> 0, not \"2000\""),
    "total NaN": ("/api/optimise", b'{"total": NaN}', "> 0, not nan"),
    "no total": ("/api/optimise", {}, "missing field 'total'"),
    "bound of unknown channel": ("/api/optimise", {"total": 10, "bounds": {"tv": [0, 1]}},
                                 "unknown channel 'tv' in the bounds"),
    "bound upside down": ("/api/optimise", {"total": 10, "bounds": {"search": [5, 1]}},
                          "upper 1 below lower 5"),
    "bounds too tight": ("/api/optimise", {"total": 10, "bounds": {"search": [0, 1],
                                                                   "display": [0, 1]}},
                         "the bounds cannot hold a total of 10"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_gets_400_with_one_line_and_the_server_keeps_answering(curves_server, case):
    path, body, message = BAD[case]
    raw = body if isinstance(body, bytes) else None
    status, answer = request(curves_server, "POST", path, None if raw is not None else body,
                             raw=raw)
    assert status == 400
    assert list(answer) == ["error"]
    assert message in answer["error"]
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]
    assert len(answer["error"]) < 200
    status, answer = request(curves_server, "POST", "/api/predict", {"allocation": VALID})
    assert status == 200 and answer["difference"] == pytest.approx(14.15, abs=0.01)


def test_body_must_be_sent_as_json(curves_server):
    status, answer = request(curves_server, "POST", "/api/predict", {"allocation": VALID},
                             headers={"Content-Type": "text/plain"})
    assert (status, answer) == (400, {"error": "the body must be application/json, not "
                                               "text/plain"})


def test_unknown_path_is_404_wrong_method_405_unknown_method_501(curves_server):
    assert request(curves_server, "GET", "/nope") == (404, {"error": "no such page: /nope"})
    assert request(curves_server, "POST", "/api/nope", {"total": 1})[0] == 404
    assert request(curves_server, "GET", "/api/predict") == (
        405, {"error": "/api/predict takes POST"})
    assert request(curves_server, "POST", "/api/model", {})[0] == 405
    assert request(curves_server, "PUT", "/api/predict", {}) == (
        501, {"error": "Unsupported method ('PUT')"})
    assert request(curves_server, "GET", "/api/model")[0] == 200


def test_malformed_http_gets_a_json_error_too(curves_server):
    with socket.create_connection(curves_server.server_address, timeout=10) as connection:
        connection.sendall(b"BREW / HTTP/1.1\r\n\r\n")
        answer = b"".join(iter(lambda: connection.recv(4096), b""))
    assert answer.startswith(b"HTTP/1.0 501")
    assert answer.endswith(b'\r\n\r\n{"error": "Unsupported method (\'BREW\')"}')
    assert request(curves_server, "GET", "/api/model")[0] == 200


def test_other_host_names_are_refused(curves_server):
    # A page elsewhere that rebinds its own name to 127.0.0.1 still sends its own Host header.
    status, answer = request(curves_server, "GET", "/api/model",
                             headers={"Host": "attacker.example"})
    assert status == 400 and "unexpected Host header" in answer["error"]


def test_optimise_on_known_curves_finds_the_closed_form_optimum(curves_server):
    status, answer = request(curves_server, "POST", "/api/optimise", {"total": 2000})
    assert status == 200
    assert answer["allocation"] == pytest.approx(VALID, rel=1e-4)
    assert answer["total"] == pytest.approx(2000)
    assert answer["difference"] == pytest.approx(14.15, abs=0.01)
    status, bounded = request(curves_server, "POST", "/api/optimise",
                              {"total": 2000, "bounds": {"display": [0, 250]}})
    assert status == 200 and bounded["allocation"]["display"] == pytest.approx(250)


# -- a fitted Bayesian ROAS model ----------------------------------------------------------------

@pytest.mark.bayes
def test_model_answer_of_the_fitted_model(model_server, model):
    status, answer = request(model_server, "GET", "/api/model")
    assert status == 200
    assert answer["channels"] == ["x1", "x2"]
    assert list(answer["current"].values()) == pytest.approx(model.current_allocation())
    assert answer["outcome_name"] == "revenue" and answer["ci_level"] == 0.9


@pytest.mark.bayes
def test_prediction_matches_the_budget_scenarios_and_doubling_spend_raises_the_mean(
        model_server, model):
    current = dict(zip(model.channels, model.current_allocation().tolist()))
    status, same = request(model_server, "POST", "/api/predict", {"allocation": current})
    assert status == 200
    assert set(same) >= {"mean", "lower", "upper", "current_mean", "difference",
                         "difference_lower", "difference_upper", "ci_level"}
    assert same["lower"] < same["mean"] < same["upper"]
    assert same["mean"] == pytest.approx(same["current_mean"])
    assert same["difference"] == pytest.approx(0, abs=1e-6)

    doubled = {**current, "x1": 2 * current["x1"]}
    status, more = request(model_server, "POST", "/api/predict", {"allocation": doubled})
    assert status == 200
    expected = scenarios(model, {"doubled": doubled}, ci_level=0.9).iloc[1]
    assert more["mean"] == pytest.approx(expected["outcome"])
    assert more["lower"] == pytest.approx(expected["outcome_lower"])
    assert more["difference_upper"] == pytest.approx(expected["difference_upper"])
    # Saturating response curves rise with spend in every posterior draw.
    assert more["mean"] > same["mean"] and more["difference_lower"] > 0
    assert request(model_server, "POST", "/api/predict",
                   {"allocation": {**current, "x1": -1}})[0] == 400
    assert request(model_server, "POST", "/api/predict", {"allocation": current})[1] == same


@pytest.mark.bayes
def test_optimise_spends_the_total_and_does_no_worse_than_the_current_plan(model_server, model):
    total = float(model.current_allocation().sum())
    status, plan = request(model_server, "POST", "/api/optimise", {"total": total})
    assert status == 200
    assert list(plan["allocation"]) == ["x1", "x2"]
    assert sum(plan["allocation"].values()) == pytest.approx(total)
    assert all(x >= 0 for x in plan["allocation"].values())
    assert plan["mean"] >= plan["current_mean"] - 1e-6 * abs(plan["current_mean"])
    check = request(model_server, "POST", "/api/predict", {"allocation": plan["allocation"]})[1]
    assert check["mean"] == pytest.approx(plan["mean"])


@pytest.mark.bayes
def test_planner_page_in_chromium(model_server, model):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        page.goto(model_server.url)
        mean = page.locator("#mean")
        # The page's CSP forbids eval, so waits go through Playwright's expect, not
        # wait_for_function.
        expect(mean).not_to_have_text("\u2013")
        before = mean.text_content()
        expect(page.locator("#interval")).to_contain_text("90% interval")

        slider = page.locator('input[type=range][data-channel="x1"]')
        x1 = float(model.current_allocation()[0])
        slider.evaluate("(el, value) => { el.value = String(value);"
                        " el.dispatchEvent(new Event('input', {bubbles: true}));"
                        " el.dispatchEvent(new Event('change', {bubbles: true})); }", 2 * x1)
        expect(mean).not_to_have_text(before)
        assert float(page.input_value('input[type=number][data-channel="x1"]')) == \
            pytest.approx(2 * x1, rel=1e-5)
        expect(page.locator("#difference")).to_contain_text("+")

        amount = page.locator('input[type=number][data-channel="x2"]')
        amount.fill("-5")
        error = page.locator("#error")
        expect(error).to_be_visible()
        expect(error).to_have_text("the amount for 'x2' must be a finite number >= 0, not -5")
        amount.fill("20")
        expect(error).to_be_hidden()

        shown = [page.input_value(f'input[type=number][data-channel="{c}"]')
                 for c in model.channels]
        total = float(model.current_allocation().sum())
        page.fill("#total", f"{total:.2f}")
        page.click("#optimise")
        expect(page.locator("#optimise-note")).to_contain_text("optimiser's plan for a total")
        optimised = [page.input_value(f'input[type=number][data-channel="{c}"]')
                     for c in model.channels]
        assert optimised != shown
        assert sum(map(float, optimised)) == pytest.approx(total, rel=1e-4)
        page.screenshot(path=str(ARTIFACTS / "planner.png"), full_page=True)
        # Chromium reports every HTTP error answer on the console; the -5 above earns one.
        unexpected = [e for e in page.errors
                      if "the server responded with a status of 400" not in e]
        assert unexpected == []


# -- the command ---------------------------------------------------------------------------------

def test_serve_command_with_a_bad_model_file_exits_2(tmp_path):
    broken = tmp_path / "broken.nc"
    broken.write_text("not a model")
    result = CliRunner().invoke(cli, ["serve", str(broken), "--port", "0"])
    assert result.exit_code == 2
    assert result.stderr.startswith("attribution: error: ")
    assert "not a saved bayes_roas model" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.bayes
def test_serve_command_prints_the_url_serves_and_stops_on_ctrl_c(model_file, monkeypatch):
    answers = []

    def interrupted_wait(server):
        answers.append(request(server, "GET", "/api/model"))
        raise KeyboardInterrupt

    monkeypatch.setattr(PlannerServer, "wait", interrupted_wait)
    result = CliRunner().invoke(cli, ["serve", str(model_file), "--port", "0"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("planner on http://127.0.0.1:")
    assert result.stdout.rstrip().endswith("/ (Ctrl-C to stop)")
    status, described = answers[0]
    assert status == 200 and described["channels"] == ["x1", "x2"]
    port = int(result.stdout.split(":")[2].split("/")[0])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
