"""The scenario planner: a local web page over a fitted response model (``attribution serve``).

A budget planner moves per-channel spend and sees the predicted outcome and its interval move
with it, or sets a total and asks the optimiser for its allocation. Everything runs on this
machine: a standard-library :class:`~http.server.ThreadingHTTPServer` bound to ``127.0.0.1``
only (there is no host option, so the page is never reachable from the network), one page of
HTML with inline CSS and JavaScript (no CDN, no framework) and a small JSON API:

``GET /``
    The planner page.
``GET /api/model``
    ``channels``, ``current`` (spend per channel), ``current_total``, ``outcome_name``,
    ``ci_level``.
``POST /api/predict``
    ``{"allocation": {channel: amount, ...}}``, every channel once, amounts in total spend over
    the model's planning horizon (the fitted window for the Bayesian ROAS model, as in
    ``attribution budget``) -> ``mean``, ``lower``, ``upper`` of the outcome,
    ``current_mean``, ``current_lower``, ``current_upper``, ``difference``,
    ``difference_lower``, ``difference_upper`` (paired by posterior draw), ``ci_level``.
``POST /api/optimise``
    ``{"total": X}`` and optionally ``"bounds": {channel: [lower, upper or null], ...}`` in
    amounts -> ``allocation`` (channel to amount), ``total``, ``converged`` and the same
    outcome fields as a prediction.

Input is checked on the server: a body that is not a JSON object, larger than
:data:`MAX_BODY` bytes or with unknown fields, an unknown or missing channel, an amount that is
negative, NaN, infinite or not a number, a total that is not positive: HTTP 400 with
``{"error": "<one line>"}``. Unknown paths get 404, a known path with the wrong method 405. A
request never sees a traceback, and the server keeps serving after bad input.

The server reads only the :class:`~engine.budget.ResponseModel` protocol, through
:func:`engine.budget.scenarios` and :func:`engine.budget.optimise`; any model that follows it
can be served, the Bayesian ROAS model being the one the command line loads.
"""

from __future__ import annotations

import errno
import json
import math
import socketserver
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from numbers import Real

from engine.errors import EngineError

__all__ = ["DEFAULT_PORT", "HOST", "MAX_BODY", "Planner", "PlannerServer", "serve"]

HOST = "127.0.0.1"
DEFAULT_PORT = 8050
MAX_BODY = 64 * 1024
# An oversized body is still read (and dropped) up to this size before the answer: closing a
# socket with unread input resets it, and the client would lose the error message.
_MAX_DRAIN = 1024 * 1024
# Seconds a connection may stay silent: a client that stops half-way frees its thread.
_TIMEOUT = 10.0
# The optimiser's starts are seeded, so the same total always gets the same suggestion.
_OPTIMISER_SEED = 0
_OPTIMISER_STARTS = 5


def _shown(value) -> str:
    """A parsed JSON value as the client wrote it, cut short for a one-line message."""
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) \
        else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value, what: str, *, positive: bool = False) -> float:
    """A finite number ``>= 0`` (``> 0`` when ``positive``) from parsed JSON, or a 400."""
    wanted = "a finite number > 0" if positive else "a finite number >= 0"
    if not isinstance(value, Real) or isinstance(value, bool):
        raise EngineError(f"{what} must be {wanted}, not {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise EngineError(f"{what} must be {wanted}, not {_shown(value)}")
    return number


def _fields(body, required: tuple, optional: tuple = ()) -> dict:
    if not isinstance(body, dict):
        raise EngineError(f"the body must be a JSON object with {', '.join(required)}")
    unknown = [key for key in body if key not in required + optional]
    if unknown:
        raise EngineError(f"unknown field {unknown[0]!r}; expected "
                          f"{', '.join(required + optional)}")
    missing = [key for key in required if key not in body]
    if missing:
        raise EngineError(f"missing field {missing[0]!r}")
    return body


class Planner:
    """The planner's answers, independent of HTTP: each method takes parsed JSON and returns a
    JSON-ready dict, raising :class:`~engine.EngineError` on input the API must reject.

    Parameters
    ----------
    model : ResponseModel
        A fitted model (``channels``, ``current_allocation()``, ``predict()``); ``outcome_name``
        and ``ci_level`` are read when present (defaults ``"outcome"`` and 0.9).

    Examples
    --------
    >>> from engine.budget import Curves
    >>> planner = Planner(Curves(["search", "display"], beta=[300.0, 100.0],
    ...                          scale=[1500.0, 500.0], current=[1000.0, 1000.0]))
    >>> planner.describe()["current"]
    {'search': 1000.0, 'display': 1000.0}
    >>> round(planner.predict({"allocation": {"search": 1500, "display": 500}})["difference"], 2)
    14.15
    >>> planner.predict({"allocation": {"search": -5, "display": 500}})
    Traceback (most recent call last):
    ...
    engine.errors.EngineError: the amount for 'search' must be a finite number >= 0, not -5
    """

    def __init__(self, model):
        from engine.budget import check_model
        from engine.budget._common import check_ci_level

        self.model = model
        self.channels, self.current = check_model(model)
        self.ci_level = check_ci_level(getattr(model, "ci_level", 0.9))
        self.outcome_name = str(getattr(model, "outcome_name", "outcome"))
        # Models may cache on first use (the ROAS model's baseline) and the optimiser is
        # CPU-bound anyway: one computation at a time.
        self._lock = threading.Lock()

    def describe(self) -> dict:
        """The channels, the current plan, the outcome's name and the interval level."""
        return {"channels": list(self.channels),
                "current": dict(zip(self.channels, self.current.tolist())),
                "current_total": float(self.current.sum()),
                "outcome_name": self.outcome_name, "ci_level": self.ci_level}

    def _allocation(self, allocation) -> dict:
        if not isinstance(allocation, dict):
            raise EngineError("'allocation' must be an object of channel to amount")
        unknown = [c for c in allocation if c not in self.channels]
        if unknown:
            raise EngineError(f"unknown channel {unknown[0]!r}; the channels are "
                              f"{', '.join(self.channels)}")
        missing = [c for c in self.channels if c not in allocation]
        if missing:
            raise EngineError(f"missing channel {missing[0]!r}: give an amount for every channel "
                              f"({', '.join(self.channels)})")
        return {c: _number(allocation[c], f"the amount for {c!r}") for c in self.channels}

    def predict(self, body) -> dict:
        """Outcome of ``body["allocation"]`` and its difference to the current plan."""
        allocation = self._allocation(_fields(body, ("allocation",))["allocation"])
        with self._lock:
            return self._outcome(allocation)

    def _outcome(self, allocation: dict) -> dict:
        from engine.budget import scenarios

        table = scenarios(self.model, {"plan": allocation}, ci_level=self.ci_level)
        current, plan = table.iloc[0], table.iloc[1]
        return {"mean": float(plan["outcome"]), "lower": float(plan["outcome_lower"]),
                "upper": float(plan["outcome_upper"]),
                "current_mean": float(current["outcome"]),
                "current_lower": float(current["outcome_lower"]),
                "current_upper": float(current["outcome_upper"]),
                "difference": float(plan["difference"]),
                "difference_lower": float(plan["difference_lower"]),
                "difference_upper": float(plan["difference_upper"]),
                "ci_level": self.ci_level}

    def _bounds(self, bounds) -> dict:
        if not isinstance(bounds, dict):
            raise EngineError("'bounds' must be an object of channel to [lower, upper]")
        out = {}
        for channel, bound in bounds.items():
            if channel not in self.channels:
                raise EngineError(f"unknown channel {channel!r} in the bounds; the channels are "
                                  f"{', '.join(self.channels)}")
            if not isinstance(bound, list) or len(bound) != 2:
                raise EngineError(f"the bound of {channel!r} must be [lower, upper] (upper may "
                                  "be null)")
            lower = _number(bound[0], f"the lower bound of {channel!r}")
            upper = math.inf if bound[1] is None else \
                _number(bound[1], f"the upper bound of {channel!r}")
            if upper < lower:
                raise EngineError(f"the bound of {channel!r} has upper {upper:g} below lower "
                                  f"{lower:g}")
            out[channel] = (lower, upper)
        return out

    def optimise(self, body) -> dict:
        """The optimiser's allocation of ``body["total"]`` (within ``body["bounds"]``)."""
        from engine.budget import optimise

        body = _fields(body, ("total",), ("bounds",))
        total = _number(body["total"], "the total budget", positive=True)
        bounds = self._bounds(body["bounds"]) if body.get("bounds") is not None else None
        with self._lock:
            plan = optimise(self.model, total, bounds=bounds, n_starts=_OPTIMISER_STARTS,
                            n_resamples=0, ci_level=self.ci_level, rng=_OPTIMISER_SEED)
            allocation = dict(zip(self.channels, plan.allocation.tolist()))
            return {"allocation": allocation, "total": float(plan.total),
                    "converged": bool(plan.converged), **self._outcome(allocation)}


# Path -> what answers it, per method.
_GET = {"/": "page", "/api/model": "model"}
_POST = {"/api/predict": "predict", "/api/optimise": "optimise"}


class _Handler(BaseHTTPRequestHandler):
    server: PlannerServer
    timeout = _TIMEOUT
    server_version = "attribution-planner"

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, headers=()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict, headers=()) -> None:
        body = json.dumps(payload, allow_nan=False).encode()
        self._send(status, body, "application/json", headers)

    def _error(self, status: int, message: str, headers=()) -> None:
        self._json(status, {"error": " ".join(str(message).split())}, headers)

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a bad request line, an unsupported method) as JSON."""
        self.close_connection = True
        self._error(code, message or HTTPStatus(code).phrase)

    def _route(self, table: dict) -> str | None:
        """The handler name for this path and method, or None once an error was sent."""
        path = self.path.split("?", 1)[0]
        host = self.headers.get("Host")
        # A browser sends the name it resolved: refusing other names stops DNS rebinding.
        if host is not None and host not in self.server.hosts:
            self._error(HTTPStatus.BAD_REQUEST, f"unexpected Host header {host!r}")
            return None
        if path in table:
            return table[path]
        other = _POST if table is _GET else _GET
        if path in other:
            allowed = "POST" if table is _GET else "GET"
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes {allowed}",
                        [("Allow", allowed)])
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        return None

    def do_GET(self):
        name = self._route(_GET)
        if name == "page":
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8",
                       [("Content-Security-Policy", _CSP)])
        elif name == "model":
            self._json(HTTPStatus.OK, self.server.planner.describe())

    def do_POST(self):
        try:
            # Read first: an answer sent over unread input may be lost to a connection reset.
            raw = self._body()
            name = self._route(_POST)
            if name is None:
                return
            self._json(HTTPStatus.OK, getattr(self.server.planner, name)(_parse(raw)))
        except EngineError as error:
            self._error(HTTPStatus.BAD_REQUEST, str(error))
        except (TimeoutError, ConnectionError):  # the client stalled or hung up
            self.close_connection = True
        except Exception:  # a bug, not bad input: the client gets one line, stderr the rest
            traceback.print_exc(file=sys.stderr)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR,
                        "internal error; the server's terminal has the details")

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length", "0").strip()
        if not length.isdigit():
            self.close_connection = True
            raise EngineError(f"bad Content-Length header {length[:20]!r}")
        length = int(length)
        if length > MAX_BODY:
            self.close_connection = True
            if length <= _MAX_DRAIN:
                self.rfile.read(length)
            raise EngineError(f"the body is larger than {MAX_BODY // 1024} KiB")
        raw = self.rfile.read(length)
        kind = self.headers.get_content_type()
        if kind != "application/json":
            raise EngineError(f"the body must be application/json, not {kind}")
        return raw


def _parse(raw: bytes):
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise EngineError("the body is not valid JSON") from None


class PlannerServer(ThreadingHTTPServer):
    """The planner's HTTP server on ``127.0.0.1``; see :func:`serve`.

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:PORT/``, with the port actually bound.
    planner : Planner
    verbose : bool
        Log every request on stderr.
    """

    daemon_threads = True

    def __init__(self, planner: Planner, port: int = DEFAULT_PORT, verbose: bool = False):
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise EngineError(f"serve: port must be an integer from 0 to 65535, not {port!r}")
        self.planner, self.verbose = planner, verbose
        self.page = _page(planner.outcome_name)
        self._thread: threading.Thread | None = None
        try:
            super().__init__((HOST, port), _Handler)
        except OSError as exc:
            hint = "; pick another with --port (0: any free port)" \
                if exc.errno == errno.EADDRINUSE else ""
            raise EngineError(f"serve: cannot listen on {HOST}:{port}: "
                              f"{exc.strerror or exc}{hint}") from None
        bound = self.server_address[1]
        self.hosts = {f"{HOST}:{bound}", f"localhost:{bound}"}
        self.url = f"http://{HOST}:{bound}/"

    def server_bind(self):
        # HTTPServer.server_bind would look the host name up (DNS); the name is known.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = HOST, self.server_address[1]

    def handle_error(self, request, client_address):
        # A client that hangs up mid-answer is not news; everything else is caught per request.
        if self.verbose:
            super().handle_error(request, client_address)

    def start(self) -> PlannerServer:
        """Serve in a background (daemon) thread; returns the server."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, name="planner",
                                            daemon=True)
            self._thread.start()
        return self

    def wait(self) -> None:
        """Block until :meth:`shutdown` (from another thread); Ctrl-C interrupts it."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def shutdown(self) -> None:
        """Stop serving and release the port (safe to call more than once)."""
        if self._thread is not None:
            super().shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def __exit__(self, *exc_info):
        self.shutdown()


def serve(model, port: int = DEFAULT_PORT, *, verbose: bool = False) -> PlannerServer:
    """Serve the scenario planner of ``model`` on ``http://127.0.0.1:PORT/``.

    Parameters
    ----------
    model : ResponseModel
        A fitted response model, such as ``BayesianROAS.load("model.nc")``.
    port : int, default 8050
        0 picks any free port (read the real one from ``server.url``).
    verbose : bool, default False
        Log every request on stderr.

    Returns
    -------
    PlannerServer
        Already serving in a background thread; stop it with ``server.shutdown()``, or use it
        as a context manager.

    Raises
    ------
    EngineError
        When the model does not follow the response-model protocol or the port is taken.

    Examples
    --------
    >>> import http.client, json
    >>> from engine.budget import Curves
    >>> model = Curves(["search", "display"], beta=[300.0, 100.0], scale=[1500.0, 500.0],
    ...                current=[1000.0, 1000.0], outcome_name="orders")
    >>> with serve(model, port=0) as server:
    ...     connection = http.client.HTTPConnection(*server.server_address)
    ...     connection.request("POST", "/api/optimise", json.dumps({"total": 2000}),
    ...                        {"Content-Type": "application/json"})
    ...     answer = json.load(connection.getresponse())
    >>> {c: round(x, 3) for c, x in answer["allocation"].items()}
    {'search': 1500.0, 'display': 500.0}
    >>> server.url.startswith("http://127.0.0.1:")
    True
    """
    return PlannerServer(Planner(model), port, verbose).start()


# The page loads nothing from elsewhere and may talk only to this server.
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'")


def _page(outcome_name: str) -> bytes:
    from html import escape

    return _PAGE.replace("{{outcome}}", escape(outcome_name)).encode()


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Scenario planner: {{outcome}}</title>
<style>
  :root { --ink: #1d2330; --muted: #667085; --line: #e4e7ec; --bg: #f5f6f8; --card: #fff;
          --accent: #3b5bdb; --good: #1a7f37; --bad: #c0392b; --band: #c5d0fa; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--ink);
         font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  header { padding: 18px 28px 10px; }
  h1 { margin: 0; font-size: 22px; font-weight: 650; }
  .sub { color: var(--muted); margin-top: 2px; }
  main { display: grid; grid-template-columns: minmax(0, 1fr) 340px; gap: 20px;
         padding: 10px 28px 28px; align-items: start; }
  @media (max-width: 860px) { main { grid-template-columns: 1fr; } }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
          padding: 16px 18px; box-shadow: 0 1px 2px rgba(16, 24, 40, .05); }
  .card + .card { margin-top: 20px; }
  h2 { margin: 0 0 10px; font-size: 14px; text-transform: uppercase; letter-spacing: .05em;
       color: var(--muted); font-weight: 600; }
  table { width: 100%; border-collapse: collapse; }
  th { text-align: left; font-weight: 500; color: var(--muted); font-size: 13px;
       padding: 4px 8px 8px; border-bottom: 1px solid var(--line); }
  td { padding: 10px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; }
  tr:last-child td { border-bottom: 0; }
  td.name { font-weight: 600; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  td.slider { width: 42%; }
  input[type=range] { width: 100%; accent-color: var(--accent); }
  input[type=number] { width: 8.5em; padding: 5px 7px; border: 1px solid #cfd4dc;
                       border-radius: 6px; font: inherit; text-align: right; }
  input[type=number]:focus { outline: 2px solid var(--band); border-color: var(--accent); }
  input.invalid { border-color: var(--bad); background: #fdf1f0; }
  .change { font-size: 13px; }
  .up { color: var(--good); } .down { color: var(--bad); } .same { color: var(--muted); }
  tfoot td { font-weight: 600; border-top: 1px solid var(--line); border-bottom: 0; }
  .row { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
  button { font: inherit; font-weight: 600; color: #fff; background: var(--accent);
           border: 0; border-radius: 6px; padding: 6px 16px; cursor: pointer; }
  button.plain { background: transparent; color: var(--accent); border: 1px solid #cfd4dc; }
  button:disabled { opacity: .6; cursor: progress; }
  .note { color: var(--muted); font-size: 13px; margin-top: 8px; min-height: 1.3em; }
  .big { font-size: 34px; font-weight: 700; font-variant-numeric: tabular-nums;
         letter-spacing: -.01em; }
  .interval { color: var(--muted); font-variant-numeric: tabular-nums; }
  .diff { margin-top: 14px; font-size: 18px; font-weight: 650;
          font-variant-numeric: tabular-nums; }
  .stale { opacity: .45; transition: opacity .15s; }
  .bars { margin-top: 16px; }
  .bar-label { font-size: 12px; color: var(--muted); display: flex;
               justify-content: space-between; }
  .track { position: relative; height: 12px; background: #eef0f4; border-radius: 6px;
           margin: 3px 0 10px; }
  .band { position: absolute; top: 0; bottom: 0; border-radius: 6px; background: var(--band); }
  .band.current { background: #d5d9e0; }
  .tick { position: absolute; top: -3px; bottom: -3px; width: 3px; margin-left: -1px;
          border-radius: 2px; background: var(--accent); }
  .tick.current { background: #7a8394; }
  #error { display: none; margin: 0 28px; padding: 10px 14px; border-radius: 8px;
           background: #fdf1f0; border: 1px solid #f3c3bd; color: var(--bad); }
  #error.shown { display: block; }
</style>
</head>
<body>
<header>
  <h1>Scenario planner</h1>
  <div class="sub" id="subtitle">Predicted {{outcome}} over the fitted window</div>
</header>
<div id="error" role="alert" aria-live="assertive"></div>
<main>
  <section>
    <div class="card">
      <h2>Spend per channel</h2>
      <table>
        <thead><tr><th>Channel</th><th class="num">Current</th><th>Plan</th>
          <th class="num">Amount</th><th class="num">Change</th></tr></thead>
        <tbody id="channels"></tbody>
        <tfoot><tr><td>Total</td><td class="num" id="current-total">&ndash;</td><td></td>
          <td class="num" id="plan-total">&ndash;</td><td class="num change" id="total-change">
          </td></tr></tfoot>
      </table>
      <div class="row" style="margin-top: 12px">
        <button class="plain" id="reset" type="button">Reset to current plan</button>
      </div>
    </div>
    <div class="card">
      <h2>Optimise a total budget</h2>
      <div class="row">
        <label for="total">Total budget</label>
        <input type="number" id="total" min="0" step="any">
        <button id="optimise" type="button">Optimise</button>
      </div>
      <div class="note" id="optimise-note">The optimiser spreads the total to maximise the
        expected outcome.</div>
    </div>
  </section>
  <aside class="card" id="outcome">
    <h2>Predicted {{outcome}}</h2>
    <div class="big" id="mean">&ndash;</div>
    <div class="interval" id="interval">&nbsp;</div>
    <div class="diff" id="difference">&nbsp;</div>
    <div class="interval" id="difference-interval">&nbsp;</div>
    <div class="bars">
      <div class="bar-label"><span>This plan</span><span id="plan-range"></span></div>
      <div class="track"><div class="band" id="plan-band"></div>
        <div class="tick" id="plan-tick"></div></div>
      <div class="bar-label"><span>Current plan</span><span id="current-range"></span></div>
      <div class="track"><div class="band current" id="current-band"></div>
        <div class="tick current" id="current-tick"></div></div>
    </div>
  </aside>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const state = {model: null, rows: {}, sequence: 0, timer: null, level: "90%"};

function format(x) {
  const size = Math.abs(x);
  const digits = size >= 1000 ? 0 : size >= 1 ? 2 : 4;
  return x.toLocaleString("en-US", {maximumFractionDigits: digits});
}
function signed(x) { return (x > 0 ? "+" : x < 0 ? "\\u2212" : "") + format(Math.abs(x)); }
function tidy(x) { return Number(x.toPrecision(6)); }

async function call(path, body) {
  const options = body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json"}};
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (error) { data = null; }
  if (!response.ok) {
    throw new Error((data && data.error) || `the server answered ${response.status}`);
  }
  return data;
}

function showError(message) {
  $("error").textContent = message;
  $("error").classList.add("shown");
  $("outcome").classList.add("stale");
}
function clearError() {
  $("error").textContent = "";
  $("error").classList.remove("shown");
  $("outcome").classList.remove("stale");
}

function amount(input) { return input.value.trim() === "" ? null : Number(input.value); }

function allocation() {
  const plan = {};
  for (const [channel, row] of Object.entries(state.rows)) plan[channel] = amount(row.number);
  return plan;
}

function updateChanges() {
  let total = 0, valid = true;
  for (const [channel, row] of Object.entries(state.rows)) {
    const value = amount(row.number), now = state.model.current[channel];
    const ok = value !== null && Number.isFinite(value) && value >= 0;
    row.number.classList.toggle("invalid", !ok);
    valid = valid && ok;
    if (ok) total += value;
    setChange(row.change, ok ? value : NaN, now);
  }
  $("plan-total").textContent = valid ? format(total) : "\\u2013";
  setChange($("total-change"), valid ? total : NaN, state.model.current_total);
}

function setChange(cell, value, now) {
  if (!Number.isFinite(value)) { cell.textContent = ""; return; }
  const change = now > 0 ? (value - now) / now * 100 : (value > 0 ? Infinity : 0);
  const shown = Number.isFinite(change) ? `${change > 0 ? "+" : ""}${change.toFixed(0)}%`
    : "new";
  cell.textContent = Math.abs(change) < 0.5 ? "0%" : shown;
  cell.className = cell.className.replace(/\\b(up|down|same)\\b/g, "").trim() +
    (Math.abs(change) < 0.5 ? " same" : change > 0 ? " up" : " down");
}

function place(band, tick, lower, upper, mean, low, high) {
  const at = (x) => `${((x - low) / (high - low) * 100).toFixed(2)}%`;
  band.style.left = at(lower);
  band.style.width = `calc(${at(upper)} - ${at(lower)})`;
  tick.style.left = at(mean);
}

function show(result) {
  const level = state.level;
  $("mean").textContent = format(result.mean);
  $("interval").textContent =
    `${level} interval ${format(result.lower)} to ${format(result.upper)}`;
  const diff = $("difference");
  diff.textContent = `${signed(result.difference)} vs the current plan`;
  diff.className = "diff " + (result.difference_lower > 0 ? "up"
    : result.difference_upper < 0 ? "down" : "same");
  $("difference-interval").textContent =
    `${level} interval ${signed(result.difference_lower)} to ${signed(result.difference_upper)}`;
  const currentLower = result.current_lower ?? result.current_mean;
  const currentUpper = result.current_upper ?? result.current_mean;
  let low = Math.min(result.lower, currentLower), high = Math.max(result.upper, currentUpper);
  const pad = (high - low) * 0.08 || Math.abs(high) * 0.01 || 1;
  low -= pad; high += pad;
  place($("plan-band"), $("plan-tick"), result.lower, result.upper, result.mean, low, high);
  place($("current-band"), $("current-tick"), currentLower, currentUpper, result.current_mean,
        low, high);
  $("plan-range").textContent = format(result.mean);
  $("current-range").textContent = format(result.current_mean);
}

async function predict() {
  const sequence = ++state.sequence;
  try {
    const result = await call("/api/predict", {allocation: allocation()});
    if (sequence !== state.sequence) return;
    clearError();
    show(result);
  } catch (error) {
    if (sequence === state.sequence) showError(error.message);
  }
}

function schedule() {
  updateChanges();
  clearTimeout(state.timer);
  state.timer = setTimeout(predict, 150);
}

function setAmount(channel, value) {
  const row = state.rows[channel];
  row.number.value = String(tidy(value));
  if (value > Number(row.range.max)) row.range.max = String(value);
  row.range.value = String(value);
}

async function optimise() {
  const button = $("optimise");
  const text = $("total").value.trim();
  const total = text === "" ? null : Number(text);
  button.disabled = true;
  $("optimise-note").textContent = "Optimising\\u2026";
  const sequence = ++state.sequence;
  clearTimeout(state.timer);
  try {
    const result = await call("/api/optimise", {total: total});
    if (sequence !== state.sequence) return;
    for (const [channel, value] of Object.entries(result.allocation)) setAmount(channel, value);
    updateChanges();
    clearError();
    show(result);
    $("optimise-note").textContent = `The optimiser's plan for a total of ${format(result.total)}` +
      (result.converged ? "." : " (the optimiser did not fully converge).");
  } catch (error) {
    $("optimise-note").textContent = "";
    if (sequence === state.sequence) showError(error.message);
  } finally {
    button.disabled = false;
  }
}

function build(model) {
  state.model = model;
  state.level = `${Math.round(model.ci_level * 100)}%`;
  $("subtitle").textContent = `Predicted ${model.outcome_name} over the fitted window, ` +
    `with ${state.level} intervals. Amounts are total spend over the window.`;
  const body = $("channels");
  const largest = Math.max(...Object.values(model.current), 0);
  for (const channel of model.channels) {
    const now = model.current[channel];
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.className = "name";
    name.textContent = channel;
    const current = document.createElement("td");
    current.className = "num";
    current.textContent = format(now);
    const slider = document.createElement("td");
    slider.className = "slider";
    const range = document.createElement("input");
    range.type = "range";
    range.min = "0";
    range.max = String(3 * (now > 0 ? now : largest || 1));
    range.step = "any";
    range.value = String(now);
    range.dataset.channel = channel;
    range.setAttribute("aria-label", `${channel} spend`);
    slider.append(range);
    const cell = document.createElement("td");
    cell.className = "num";
    const number = document.createElement("input");
    number.type = "number";
    number.min = "0";
    number.step = "any";
    number.value = String(tidy(now));
    number.dataset.channel = channel;
    number.setAttribute("aria-label", `${channel} amount`);
    cell.append(number);
    const change = document.createElement("td");
    change.className = "num change";
    tr.append(name, current, slider, cell, change);
    body.append(tr);
    range.addEventListener("input", () => { number.value = String(tidy(Number(range.value)));
                                            schedule(); });
    number.addEventListener("input", () => {
      const value = amount(number);
      if (value !== null && Number.isFinite(value) && value >= 0) {
        if (value > Number(range.max)) range.max = String(value);
        range.value = String(value);
      }
      schedule();
    });
    state.rows[channel] = {range, number, change};
  }
  $("current-total").textContent = format(model.current_total);
  $("total").value = String(tidy(model.current_total));
  $("optimise").addEventListener("click", optimise);
  $("total").addEventListener("keydown", (event) => { if (event.key === "Enter") optimise(); });
  $("reset").addEventListener("click", () => {
    for (const channel of model.channels) setAmount(channel, model.current[channel]);
    $("optimise-note").textContent = "";
    schedule();
  });
  updateChanges();
}

call("/api/model").then((model) => { build(model); return predict(); })
  .catch((error) => showError(`cannot load the model: ${error.message}`));
</script>
</body>
</html>
"""
