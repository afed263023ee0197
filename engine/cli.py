"""The ``attribution`` command line: run models side by side, list them, top paths and KPIs.

Errors a user can cause (a missing file, a bad row, an unknown model, a model the data cannot
support, a bad option) print one line ``attribution: error: <message>`` on stderr and exit with
status 2; any other failure prints one line and exits with status 1. ``--debug`` adds the
traceback. Output files are written to a temporary file in the same folder and renamed into
place, so a failed run never leaves a partial file.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import numbers
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import click
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.progress import TimeElapsedColumn
from rich.table import Table

import engine
from engine import kpi
from engine._atomic import atomic_path
from engine.compare import compare
from engine.datasets import example_path
from engine.errors import EngineError, MissingDataError
from engine.ingest.sources import column_names
from engine.journeys import Journeys
from engine.models.markov import select_order
from engine.models import REGISTRY, AttributionModel, available_models, get_model

PROG = "attribution"
EXIT_INPUT = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

# What each journey attribute a model may require means to someone holding a data file.
_NEEDS = {"ages": "touch times (an event log with timestamps)",
          "milestones": "lead- and opportunity-creation touches (a B2B event log)"}
# CLI option -> read_paths / read_events keyword.
_PATH_OPTIONS = {"sep": "sep", "path_column": "path", "conversions_column": "conversions",
                 "value_column": "value", "nulls_column": "nulls"}
# "--lookback-days none": distinct from not giving the option (which keeps the default).
_NO_LOOKBACK = object()
# "--order auto": chosen once the data is read.
_AUTO = "auto"
_EVENT_OPTIONS = {"person": "person", "timestamp": "timestamp", "channel": "channel",
                  "event_type": "event_type", "conversion": "conversion", "revenue": "revenue",
                  "account": "account", "lookback_days": "lookback_days"}


@dataclass
class Settings:
    """The global options, shared by every command through ``ctx.obj``."""

    quiet: bool = False
    debug: bool = False


class _Failed(Exception):
    """A command's exception, carrying whether ``--debug`` was in force when it was raised."""

    def __init__(self, error: BaseException, debug: bool):
        super().__init__(str(error))
        self.error = error
        self.debug = debug


class _Cli(click.Group):
    """A click group that turns every failure into one line on stderr and an exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort,
                BrokenPipeError, KeyboardInterrupt):
            raise
        except Exception as exc:
            settings = ctx.find_object(Settings)
            raise _Failed(exc, debug=bool(settings and settings.debug)) from exc

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        """Run the command line; exit (or, with ``standalone_mode=False``, return) its status."""
        code = self._run(args, prog_name or PROG, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args, prog_name, complete_var, **extra) -> int:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _error(exc.format_message() + hint)
            return EXIT_INPUT
        except click.ClickException as exc:
            _error(exc.format_message())
            return exc.exit_code
        except click.exceptions.Abort:
            click.echo(f"{PROG}: interrupted", err=True)
            return EXIT_INTERRUPTED
        except _Failed as failed:
            error = failed.error
            if failed.debug:
                traceback.print_exception(error)
            if isinstance(error, EngineError):
                _error(str(error))
                return EXIT_INPUT
            hint = "" if failed.debug else "; run with --debug for the traceback"
            _error(f"unexpected {type(error).__name__}: {error}{hint}")
            return EXIT_FAILURE
        return result if isinstance(result, int) else 0


def _error(message: str) -> None:
    click.echo(f"{PROG}: error: {' '.join(str(message).split())}", err=True)


def _set_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        setattr(ctx.find_object(Settings), param.name, True)


def _global_options(command):
    """Accept ``--quiet``/``--debug`` after the command name too (``attribution run -q ...``)."""
    command = click.option("--debug", is_flag=True, expose_value=False, callback=_set_flag,
                           help="Show the traceback of errors.")(command)
    return click.option("--quiet", "-q", is_flag=True, expose_value=False, callback=_set_flag,
                        help="No progress, no tables: only errors.")(command)


def _input_options(command):
    """INPUT and the options that say how to read it (shared by run, paths and kpi)."""
    options = [
        click.argument("input", metavar="INPUT"),
        click.option("--format", "data_format", type=click.Choice(["paths", "events"]),
                     help="How to read INPUT. Default: 'paths' if its header has the path "
                          "column, else 'events'."),
        click.option("--sep", help="[paths] Separator between channels. Default: '>'."),
        click.option("--path-column", help="[paths] Column with the paths. Default: path."),
        click.option("--conversions-column",
                     help="[paths] Column with the conversions. Default: total_conversions."),
        click.option("--value-column",
                     help="[paths] Column with the conversion value. Default: "
                          "total_conversion_value (0 when absent)."),
        click.option("--nulls-column",
                     help="[paths] Column with the non-converting journeys. Default: "
                          "total_null (0 when absent)."),
        click.option("--person", help="[events] Person id column. Default: person_id."),
        click.option("--timestamp", help="[events] Timestamp column. Default: timestamp."),
        click.option("--channel", help="[events] Channel column. Default: channel, else "
                                       "channels from the utm_source/medium/campaign columns."),
        click.option("--event-type", help="[events] Event type column. Default: event_type."),
        click.option("--conversion",
                     help="[events] Column with the number of conversions on each row."),
        click.option("--revenue", help="[events] Revenue column. Default: revenue."),
        click.option("--account", help="[events] Account id column (B2B journeys per account)."),
        click.option("--lookback-days", callback=_parse_lookback, metavar="DAYS|none",
                     help="[events] Touches more than this many days before the journey's end "
                          "are not used; 'none' keeps them all. Default: 30."),
        click.option("--engine", "engine_name", type=click.Choice(["duckdb", "spark"]),
                     help="Where the relational work runs: embedded DuckDB (default) or Apache "
                          "Spark (the active session, else ATTRIBUTION_SPARK_MASTER, default "
                          "local[*]; needs pyspark and Java 17)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _order(value: str, params: dict):
    """``--order``: an integer, or ``"auto"`` (resolved once the data is read)."""
    if "order" in params.get("markov", {}):
        raise EngineError("give the markov order once: --order or --param markov.order")
    if value.strip().lower() == "auto":
        return _AUTO
    try:
        return int(value)
    except ValueError:
        raise EngineError(f"--order {value!r}: give an integer or 'auto'") from None


def _choose_order(models, journeys: Journeys, seed: int, settings: Settings) -> None:
    """Replace an ``auto`` Markov order by the best one on these journeys."""
    for model in models:
        if model.name == "markov" and model.order == _AUTO:
            paths = journeys if isinstance(journeys, Journeys) else journeys.unique()
            table, best = select_order(paths, max_order=4, rng=seed)
            model.set_params(order=best)
            if not settings.quiet:
                scores = ", ".join(f"{row.order}: log-loss {row.log_loss:.4f}, AUC {row.auc:.3f}"
                                   for row in table.itertuples())
                click.echo(f"{PROG}: markov order {best} chosen ({scores})", err=True)


def _parse_lookback(ctx, param, value):
    """``--lookback-days``: a number of days, or ``none`` for no window (not given: the default)."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return _NO_LOOKBACK
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number of days nor 'none'") from None


def _parse_param(ctx, param, values) -> dict[str, dict]:
    """``MODEL.NAME=VALUE`` strings to ``{model: {name: value}}``; values parsed as JSON if they
    can be (``3``, ``0.5``, ``true``, ``[0.5, 0.1]``), else kept as text."""
    params: dict[str, dict] = {}
    for text in values:
        key, equals, raw = text.partition("=")
        model, dot, name = key.strip().partition(".")
        if not (equals and dot and model and name.strip()):
            raise click.BadParameter(f"{text!r} is not MODEL.PARAM=VALUE "
                                     "(e.g. time_decay.half_life=3)", ctx=ctx, param=param)
        model = model.lower().replace("-", "_")
        if model not in REGISTRY:
            raise click.BadParameter(f"unknown model {model!r} in {text!r}; see "
                                     f"'{PROG} models'", ctx=ctx, param=param)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        params.setdefault(model, {})[name.strip()] = value
    return params


@click.group(cls=_Cli, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--quiet", "-q", is_flag=True, help="No progress, no tables: only errors.")
@click.option("--debug", is_flag=True, help="Show the traceback of errors.")
@click.version_option(engine.__version__, "--version", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, quiet: bool, debug: bool) -> None:
    """Marketing attribution: credit per channel from customer journeys, many models side by
    side.

    INPUT is a path table (CSV or Parquet in ChannelAttribution's layout), an event log, or the
    word 'example' for the shipped example path table.
    """
    ctx.obj = Settings(quiet=quiet, debug=debug)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command("run")
@_input_options
@click.option("--model", "-m", "model_names", multiple=True, metavar="NAME",
              help="Model to run (repeatable); 'all' runs every model the data supports. "
                   "Default: all. See 'attribution models'.")
@click.option("--param", "-p", "params", multiple=True, metavar="MODEL.PARAM=VALUE",
              callback=_parse_param,
              help="Model hyper-parameter (repeatable), e.g. linear.per=channel or "
                   "time_decay.half_life=3.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the comparison table here: .csv, .csv.gz or .parquet.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed of the models that draw (intervals), so runs repeat exactly.")
@click.option("--order", "markov_order", metavar="N|auto",
              help="Order of the markov model; 'auto' picks it by out-of-sample prediction of "
                   "conversion (orders 1 to 4).")
@_global_options
@click.pass_obj
def run_command(settings: Settings, input, data_format, model_names, params, out, seed,
                markov_order, **options):
    """Fit models on INPUT and compare their credit per channel.

    The table written to --out has one row per model and channel with the columns model,
    channel, conversions, conversions_lower, conversions_upper, value, value_lower, value_upper,
    share. Unless --quiet, a table of attributed conversions (one column per model) is printed.
    """
    _check_output(out)
    if markov_order is not None:
        params = {**params, "markov": {**params.get("markov", {}),
                                       "order": _order(markov_order, params)}}
        model_names = model_names or ("all",)
    models, explicit = _select(model_names or ("all",), params, seed)
    # On Spark an event log's journeys stay on the cluster; models read aggregates from them.
    keep = options.get("engine_name") == "spark"
    with _progress(settings) as progress:
        journeys = _read(input, data_format, options, settings, progress, keep=keep)
        # A JourneyTable drops its tables on the engine when done.
        with contextlib.nullcontext() if isinstance(journeys, Journeys) else journeys:
            models = _supported(models, explicit, journeys, settings)
            _choose_order(models, journeys, seed, settings)
            table = _fit(models, journeys, progress)
    if out is not None:
        _write(table, out)
    if not settings.quiet:
        _stdout().print(_comparison(table, input))


@cli.command("models")
@_global_options
@click.pass_obj
def models_command(settings: Settings) -> None:
    """List the registered models, what each does and the data it needs."""
    if settings.quiet:
        return
    table = Table("model", "description", "needs", title="Attribution models")
    for row in available_models().itertuples():
        table.add_row(row.name, row.description, _needs(REGISTRY[row.name].requires))
    _stdout().print(table)


@cli.command("paths")
@_input_options
@click.option("--top", "n", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many paths.")
@click.option("--by", type=click.Choice(["conversions", "journeys", "value"]),
              default="conversions", show_default=True, help="Rank paths by this.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the table here: .csv, .csv.gz or .parquet.")
@_global_options
@click.pass_obj
def paths_command(settings: Settings, input, data_format, n, by, out, **options):
    """Top paths of INPUT with journeys, conversions, conversion rate and value."""
    _check_output(out)
    with _progress(settings) as progress:
        journeys = _read(input, data_format, options, settings, progress)
    table = kpi.top_paths(journeys, n=n, by=by)
    if out is not None:
        _write(table, out)
    if not settings.quiet:
        _stdout().print(_frame(table, f"Top {n} paths by {by}"))


@cli.command("kpi")
@_input_options
@click.option("--spend", type=click.Path(dir_okay=False, path_type=Path),
              help="Spend per channel (CSV or Parquet), for cost per order and ROAS.")
@click.option("--model", "-m", "model_names", multiple=True, metavar="NAME",
              help="Model whose credit the channel KPIs use (repeatable); 'all' = every "
                   "model the data supports. Default: last_touch.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write one CSV per table (<name>.csv); created if needed.")
@_global_options
@click.pass_obj
def kpi_command(settings: Settings, input, data_format, spend, model_names, out, **options):
    """Summary KPI tables of INPUT (with cost per order and ROAS given --spend).

    Prints each table of engine.kpi.summary; with --out DIR writes DIR/<table>.csv.
    """
    models, explicit = _select(model_names, {}, 0)
    spent = kpi.read_spend(spend) if spend else None
    with _progress(settings) as progress:
        journeys = _read(input, data_format, options, settings, progress)
    extra = {"models": _supported(models, explicit, journeys, settings)} if models else {}
    tables = kpi.summary(journeys, spend=spent, n_paths=10, **extra)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineError(f"{out}: cannot create the folder ({exc.strerror or exc})") from None
        for name, frame in tables.items():
            _write(frame, out / f"{name}.csv")
    if not settings.quiet:
        console = _stdout()
        for name, frame in tables.items():
            console.print(_frame(frame, name))


# -- reading --------------------------------------------------------------------------------

def _read(source: str, data_format: str | None, options: dict, settings: Settings,
          progress, keep: bool = False):
    """Journeys from INPUT with the options the user gave (the readers' defaults otherwise);
    with ``keep``, an event log's journeys stay on the engine (a ``JourneyTable``)."""
    path = example_path() if source == "example" else Path(source)
    given = {k: v for k, v in options.items() if v is not None}
    backend = {"engine": given.pop("engine_name")} if "engine_name" in given else {}
    path_kwargs = {_PATH_OPTIONS[k]: v for k, v in given.items() if k in _PATH_OPTIONS}
    event_kwargs = {_EVENT_OPTIONS[k]: None if v is _NO_LOOKBACK else v
                    for k, v in given.items() if k in _EVENT_OPTIONS}
    data_format = data_format or _guess_format(path, path_kwargs)
    other = "events" if data_format == "paths" else "paths"
    wrong = [k for k in given if k in (_EVENT_OPTIONS if other == "events" else _PATH_OPTIONS)]
    if wrong:
        raise EngineError(f"--{wrong[0].replace('_', '-')} applies to --format {other}, but "
                          f"{source} is read as {data_format}")
    task = None if progress is None else progress.add_task(f"reading {source}", total=None)
    if data_format == "paths":
        journeys = engine.read_paths(path, **path_kwargs, **backend)
    else:
        def step(message: str) -> None:
            if task is not None:
                progress.update(task, description=f"reading {source}: {message}")

        journeys = engine.read_events(path, **event_kwargs, **backend, progress=step,
                                      collect=not keep)
    if task is not None:
        progress.update(task, total=1, completed=1)
    report = journeys.report
    if report is not None and report.n_rejected and not settings.quiet:
        click.echo(str(report), err=True)
    return journeys


def _guess_format(path: Path, path_kwargs: dict) -> str:
    """``"paths"`` when the header has the path table's path and conversions columns, else
    ``"events"`` (an event log may well have a page ``path`` column).

    A file that cannot be read is guessed ``"paths"``: reading it then reports the problem with
    the file's name.
    """
    try:
        columns = set(column_names(path))
    except EngineError:
        return "paths"
    wanted = {path_kwargs.get("path", "path"),
              path_kwargs.get("conversions", "total_conversions")}
    return "paths" if wanted <= columns else "events"


# -- models ---------------------------------------------------------------------------------

def _select(names, params: dict, seed: int) -> tuple[list[AttributionModel], set[str]]:
    """Models for ``--model`` names with their ``--param`` values (``rng`` defaults to
    ``seed``), and the names given explicitly (``all`` stands for every registered model).
    Checked before any data is read."""
    explicit, wanted = set(), []
    for name in names:
        key = str(name).strip().lower().replace("-", "_")
        if key == "all":
            wanted.extend(sorted(REGISTRY))
        else:
            key = get_model(key).name
            explicit.add(key)
            wanted.append(key)
    wanted = list(dict.fromkeys(wanted))
    for model in params:
        if model not in wanted:
            raise EngineError(f"--param {model}.{next(iter(params[model]))} is given but model "
                              f"{model} is not run; add --model {model}")
    models = []
    for name in wanted:
        kwargs = dict(params.get(name, {}))
        if "rng" in REGISTRY[name]._param_names():
            kwargs.setdefault("rng", seed)
        models.append(get_model(name, **kwargs))
    return models, explicit


def _supported(models: list[AttributionModel], explicit: set[str], journeys: Journeys,
               settings: Settings) -> list[AttributionModel]:
    """The models the journeys can support. The others are skipped with a note on stderr, or
    are an error if named explicitly."""
    kept = []
    for model in models:
        try:
            journeys.require(*model.requires, model=model.name)
        except MissingDataError as exc:
            if model.name in explicit:
                raise
            if not settings.quiet:
                click.echo(f"{PROG}: skipping {model.name}: {exc}", err=True)
            continue
        kept.append(model)
    if not kept:
        raise EngineError("none of the models can run on this input; see 'attribution models'")
    return kept


def _needs(requires) -> str:
    if not requires:
        return "a path table or an event log"
    return " and ".join(_NEEDS[r] for r in requires)


def _fit(models: list[AttributionModel], journeys: Journeys, progress) -> pd.DataFrame:
    if progress is None:
        return compare(models, journeys)
    task = progress.add_task("fitting", total=len(models))
    done = itertools.count()

    def on_model(model: AttributionModel) -> None:
        progress.update(task, description=f"fitting {model.name}", completed=next(done))

    table = compare(models, journeys, on_model=on_model)
    progress.update(task, description="fitted", completed=len(models))
    return table


# -- output ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _progress(settings: Settings):
    """A rich progress display on stderr, or ``None`` when quiet or stderr is not a terminal."""
    if settings.quiet or not sys.stderr.isatty():
        yield None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield progress


def _output_kind(out: Path) -> str:
    name = out.name.lower()
    for suffix, kind in ((".csv", "csv"), (".csv.gz", "csv.gz"), (".parquet", "parquet"),
                         (".pq", "parquet")):
        if name.endswith(suffix):
            return kind
    raise EngineError(f"{out}: unknown output format; name it .csv, .csv.gz or .parquet")


def _check_output(out: Path | None) -> None:
    """Fail before any work if the output file cannot be written where asked."""
    if out is None:
        return
    _output_kind(out)
    folder = out.parent
    if not folder.is_dir():
        raise EngineError(f"{out}: the folder {str(folder)!r} does not exist")
    if out.is_dir():
        raise EngineError(f"{out}: is a folder, not a file")


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if option == "--channels" and not names:
        raise EngineError("--channels: name at least one spend column, e.g. --channels a,b")
    return names


def _roas_priors(specs) -> dict | None:
    """``CHANNEL=MEDIAN:SIGMA`` options as ``{channel: (median, sigma)}``."""
    priors = {}
    for spec in specs:
        channel, _, value = spec.partition("=")
        median, _, sigma = value.partition(":")
        try:
            priors[channel.strip()] = (float(median), float(sigma))
        except ValueError:
            raise EngineError(f"--roas-prior {spec!r}: expected CHANNEL=MEDIAN:SIGMA, e.g. "
                              "search=2:0.5") from None
    return priors or None


def _media_share(spec: str) -> tuple[float, float]:
    """``MEAN:SD`` as ``(mean, sd)``."""
    mean, _, sd = spec.partition(":")
    try:
        return float(mean), float(sd)
    except ValueError:
        raise EngineError(f"--media-share {spec!r}: expected MEAN:SD, e.g. 0.4:0.2") from None


@cli.command("report")
@_input_options
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the HTML report here (.html).")
@click.option("--model", "-m", "model_names", multiple=True, metavar="NAME",
              help="Model to compare (repeatable); 'all' = every model the data supports. "
                   "Default: all. See 'attribution models'.")
@click.option("--spend", type=click.Path(dir_okay=False, path_type=Path),
              help="Spend per channel and date (CSV or Parquet: date, channel, spend), for cost "
                   "per order, cost per lead and ROAS per channel.")
@click.option("--roas-model", type=click.Path(dir_okay=False, path_type=Path),
              help="A model saved by 'attribution roas --save': adds its ROAS table, fit and "
                   "response curves.")
@click.option("--title", help="Title of the report. Default: 'Attribution report'.")
@_global_options
@click.pass_obj
def report_command(settings: Settings, input, data_format, out, model_names, spend, roas_model,
                   title, **options):
    """Write a self-contained HTML report of INPUT for people who do not run Python.

    One file that opens offline in any browser: data summary, every model's credit side by
    side and how much they agree, the Markov chain and Shapley values, cost and return per
    channel (with --spend) and the Bayesian ROAS model (with --roas-model), with a plain
    explanation of each. Prints the path written.
    """
    from engine.report import write_report

    if out.suffix.lower() not in (".html", ".htm"):
        raise EngineError(f"{out}: the report is HTML; name it .html")
    if not out.parent.is_dir():
        raise EngineError(f"{out}: the folder {str(out.parent)!r} does not exist")
    if out.is_dir():
        raise EngineError(f"{out}: is a folder, not a file")
    models, explicit = _select(model_names or ("all",), {}, 0)
    spent = kpi.read_spend(spend) if spend else None
    fitted = None
    if roas_model is not None:
        from engine.models.bayes import BayesianROAS

        fitted = BayesianROAS.load(roas_model)
    with _progress(settings) as progress:
        journeys = _read(input, data_format, options, settings, progress)
        for model in models:
            if model.name in explicit:
                journeys.require(*model.requires, model=model.name)
        task = None if progress is None else progress.add_task("report", total=None)

        def step(description: str) -> None:
            if task is not None:
                progress.update(task, description=f"report: {description}")

        write_report(out, journeys, models=models, spend=spent, roas_model=fitted, title=title,
                     source=input, on_step=step)
    if not settings.quiet:
        click.echo(str(out))


@cli.command("roas")
@click.argument("data", metavar="DATA")
@click.option("--date", required=True, help="Column of the period start dates.")
@click.option("--target", required=True, help="Column of the outcome (revenue or conversions).")
@click.option("--channels", required=True, help="Spend columns, comma-separated.")
@click.option("--controls", default="", help="Control columns (events, price...), comma-separated.")
@click.option("--outcome", type=click.Choice(["revenue", "conversions"]), default="revenue",
              show_default=True, help="What the target counts.")
@click.option("--adstock", type=click.Choice(["geometric", "delayed"]), default="geometric",
              show_default=True)
@click.option("--saturation", type=click.Choice(["logistic", "hill"]), default="logistic",
              show_default=True)
@click.option("--max-lag", type=click.IntRange(min=1), default=8, show_default=True,
              help="Periods of carryover.")
@click.option("--roas-prior", multiple=True, metavar="CHANNEL=MEDIAN:SIGMA",
              help="Log-normal prior on a channel's ROAS (repeatable), e.g. search=2:0.5.")
@click.option("--media-share", default="0.4:0.2", show_default=True, metavar="MEAN:SD",
              help="Default ROAS prior: prior mean and sd of the share of the outcome earned by "
                   "all channels together.")
@click.option("--draws", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Posterior draws per chain.")
@click.option("--tune", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--chains", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--sampler", type=click.Choice(["auto", "nutpie", "pymc"]), default="auto",
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the ROAS table here: .csv, .csv.gz or .parquet.")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the fitted model (netCDF) for 'attribution budget'.")
@_global_options
@click.pass_obj
def roas_command(settings: Settings, data, date, target, channels, controls, outcome, adstock,
                 saturation, max_lag, roas_prior, media_share, draws, tune, chains, sampler, seed,
                 out, save):
    """Fit the Bayesian ROAS model (PyMC) to DATA: one row per period with spend per channel.

    Prints and writes one row per channel: channel, spend, value (contribution), value_lower,
    value_upper, roas, roas_lower, roas_upper, mroas (and its interval); warns when the sampler
    did not converge.
    """
    from engine.ingest.sources import ROW, load_table
    from engine.models.bayes import BayesianROAS, ConvergenceWarning

    _check_output(out)
    frame = load_table(data).drop_columns([ROW]).to_pandas()
    model = BayesianROAS(adstock=adstock, saturation=saturation, max_lag=max_lag,
                         roas_prior=_roas_priors(roas_prior),
                         media_share_prior=_media_share(media_share), draws=draws, tune=tune,
                         chains=chains, sampler=sampler, rng=seed,
                         progress=not settings.quiet)
    if not settings.quiet:
        click.echo(f"sampling {chains} chains x {draws} draws (+{tune} tuning)...", err=True)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(frame, date=date, target=target, channels=_names(channels, "--channels"),
                  controls=_names(controls, "--controls"), outcome=outcome)
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            click.echo(f"{PROG}: warning: {warning.message}", err=True)
    table = model.roas_
    if out is not None:
        _write(table, out)
    if save is not None:
        model.save(save)
    if not settings.quiet:
        _stdout().print(_frame(table, f"ROAS ({data}, {outcome})"))


@cli.command("budget")
@click.argument("model_path", metavar="MODEL.nc")
@click.option("--total", type=float, help="Budget to allocate over the fitted window.")
@click.option("--bounds", multiple=True, metavar="CHANNEL=LOW:HIGH",
              help="Per-channel bounds as multipliers of current spend (repeatable), e.g. "
                   "search=0.5:2; amounts with an 'abs' suffix, e.g. tv=0:1e5abs.")
@click.option("--scenario", "scenario_specs", multiple=True, metavar="SPEC",
              help="A plan to evaluate (repeatable), e.g. \"search=+20%,display=-10%\".")
@click.option("--target", "target_value", type=float,
              help="Find the cheapest plan reaching this outcome...")
@click.option("--probability", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.8, show_default=True, help="...with this probability.")
@click.option("--objective", type=click.Choice(["mean", "mean_sd", "cvar"]), default="mean",
              show_default=True, help="What --total maximises.")
@click.option("--risk", type=float, help="mean_sd: lambda; cvar: tail fraction.")
@click.option("--resamples", type=click.IntRange(min=0), default=20, show_default=True,
              help="Bootstrap resamples of the draws for the stability of the plan (0: none).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the plan (or scenarios) table here.")
@_global_options
@click.pass_obj
def budget_command(settings: Settings, model_path, total, bounds, scenario_specs, target_value,
                   probability, objective, risk, resamples, seed, out):
    """Scenarios and budget optimisation on a model saved by 'attribution roas --save'.

    With --scenario: the outcome of each plan against the current one. With --total: the
    allocation that maximises the objective within --bounds. With --target: the cheapest plan
    reaching the target with --probability.
    """
    from engine import budget
    from engine.models.bayes import BayesianROAS

    if total is None and target_value is None and not scenario_specs:
        raise EngineError("budget: give --total, --target or --scenario")
    _check_output(out)
    model = BayesianROAS.load(model_path)
    tables = []
    if scenario_specs:
        table = budget.scenarios(model, list(scenario_specs), ci_level=model.ci_level)
        tables.append(("scenarios", table))
    if total is not None:
        plan = budget.optimise(model, total, bounds=list(bounds) or None, objective=objective,
                               risk=risk, n_resamples=resamples, rng=seed)
        tables.append((f"plan for a total of {total:,.0f} ({objective}); expected "
                       f"{plan.outcome:,.0f} [{plan.outcome_lower:,.0f}, "
                       f"{plan.outcome_upper:,.0f}]", plan.table))
    if target_value is not None:
        found = budget.target(model, target_value, probability, bounds=list(bounds) or None,
                              rng=seed)
        tables.append((f"cheapest plan reaching {target_value:,.0f} with probability "
                       f"{probability:.0%}: total {found.total:,.0f} (achieved "
                       f"{found.achieved_probability:.1%})", found.table))
    if out is not None:
        _write(pd.concat([t.assign(table=name.split(" ")[0]) for name, t in tables],
                         ignore_index=True), out)
    if not settings.quiet:
        console = _stdout()
        for name, table in tables:
            console.print(_frame(table, name))


@cli.command("simulate")
@click.option("--scenario", "scenario_name", default=None, metavar="NAME",
              help="A named world (see below); or give --world.")
@click.option("--world", "world_path", type=click.Path(exists=True, path_type=Path),
              help="A world.json (or the folder holding it) written by an earlier run.")
@click.option("--persons", type=click.IntRange(min=1), default=None,
              help="People (contacts in b2b) [default: 20000, or the world's].")
@click.option("--weeks", type=click.IntRange(min=2), default=None,
              help="Length of the period [default: 52, or the world's].")
@click.option("--seed", type=int, default=None, help="[default: 0, or the world's]")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for events.parquet, weekly.csv, truth.csv and world.json.")
@_global_options
@click.pass_obj
def simulate_command(settings: Settings, scenario_name, world_path, persons, weeks, seed, out):
    """Simulate a marketing world with known causal effects.

    Writes the touchpoint log (events.parquet, for 'attribution run --format events'), weekly
    spend and outcomes (weekly.csv, for 'attribution roas'), the true credit per channel
    (truth.csv: incremental and Shapley conversions and revenue, true ROAS) and every parameter
    (world.json). Scenarios: null_channel, upper_funnel, harvest, collinear, b2b, markov_world,
    selection.
    """
    from engine.simulate import load_world, scenario, simulate

    if (scenario_name is None) == (world_path is None):
        raise EngineError("simulate: give one of --scenario NAME or --world world.json")
    if world_path is not None:
        world = load_world(world_path)
        if weeks is not None:
            world = world.replace(weeks=weeks)
    else:
        world = scenario(scenario_name, persons=persons or 20_000, seed=seed or 0,
                         weeks=weeks or 52)
    if not settings.quiet:
        click.echo(f"simulating {world.name}: {persons or world.persons:,} persons, "
                   f"{world.weeks} weeks...", err=True)
    sim = simulate(world, persons=persons, seed=seed)
    sim.save(out)
    if not settings.quiet:
        summary = sim.summary
        console = _stdout()
        console.print(f"{summary['touches']:,} touches, {summary['conversions']:,} conversions "
                      f"({summary['expected_conversions']:,.0f} expected, "
                      f"{summary['baseline_conversions']:,.0f} without any channel); "
                      f"written to {out}/")
        console.print(_frame(sim.truth, f"truth ({world.name}, seed {sim.world.seed})"))


@cli.command("bench")
@click.option("--scenario", "scenario_names", multiple=True, default=("all",),
              show_default=True, metavar="NAME",
              help="Scenario to score on (repeatable), or 'all'.")
@click.option("--model", "-m", "model_names", multiple=True, default=("all",),
              show_default=True, metavar="NAME",
              help="Model to score (repeatable), or 'all' registered journey models.")
@click.option("--replicates", "-r", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--persons", type=click.IntRange(min=100), default=20_000, show_default=True)
@click.option("--weeks", type=click.IntRange(min=2), default=52, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--roas/--no-roas", default=False, show_default=True,
              help="Also score the Bayesian ROAS model on the weekly aggregates (slow).")
@click.option("--roas-draws", type=click.IntRange(min=10), default=500, show_default=True)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the tidy table (one row per scenario, model, replicate).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Save a chart of each model's error per scenario (.png, .svg, .pdf).")
@_global_options
@click.pass_obj
def bench_command(settings: Settings, scenario_names, model_names, replicates, persons, weeks,
                  seed, roas, roas_draws, out, plot):
    """Score attribution models against simulated ground truth.

    For each scenario and replicate: simulate a world, read its events, fit every model and
    compare its credit shares with the true incremental (Shapley) credit: nmae (lower is
    better), rank correlation, interval coverage, seconds. Prints the mean per scenario and
    model, best first.
    """
    from engine.bench import plot_bench, run_bench, summarise

    _check_output(out)
    if plot is not None and plot.suffix.lower() not in {".png", ".svg", ".pdf"}:
        raise EngineError(f"{plot}: the plot must be .png, .svg or .pdf")
    names = [] if (not model_names or list(model_names) == ["none"]) else list(model_names)
    with _progress(settings) as progress:
        task = None if progress is None else progress.add_task("benchmark", total=None)

        def step(message: str) -> None:
            if progress is not None:
                progress.update(task, description=message)

        table = run_bench(list(scenario_names), models=names, replicates=replicates,
                          persons=persons, weeks=weeks, seed=seed, roas=roas,
                          roas_options={"draws": roas_draws, "tune": roas_draws},
                          on_step=step)
    if out is not None:
        _write(table, out)
    if plot is not None:
        import matplotlib.pyplot as plt

        figure = plot_bench(table, plot)
        plt.close(figure)
    if not settings.quiet:
        console = _stdout()
        console.print(_frame(summarise(table), f"benchmark ({replicates} replicate(s), "
                                               f"{persons:,} persons)"))
        skipped = table.loc[table["status"] != "ok", ["model", "status"]].drop_duplicates()
        for model, status in skipped.itertuples(index=False):
            console.print(f"{model}: {status}")


@cli.command("serve")
@click.argument("model_path", metavar="MODEL.nc")
@click.option("--port", type=click.IntRange(0, 65535), default=8050, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--verbose", is_flag=True, help="Log every request on stderr.")
@_global_options
@click.pass_obj
def serve_command(settings: Settings, model_path, port, verbose):
    """Open the scenario planner of a model saved by 'attribution roas --save'.

    A local page (on 127.0.0.1 only) where per-channel spend moves with sliders and the
    predicted outcome and its interval follow, and the optimiser splits a total budget. Serves
    until Ctrl-C.
    """
    from engine.models.bayes import BayesianROAS
    from engine.serve import serve

    model = BayesianROAS.load(model_path)
    with serve(model, port=port, verbose=verbose) as server:
        click.echo(f"planner on {server.url} (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            server.wait()


def _write(frame: pd.DataFrame, out: Path) -> None:
    """Write ``frame`` as CSV or Parquet (by extension) via a temporary file renamed into place."""
    kind = _output_kind(out)
    with atomic_path(out) as partial:
        if kind == "parquet":
            frame.to_parquet(partial, index=False)
        else:
            frame.to_csv(partial, index=False, compression="gzip" if kind == "csv.gz" else None)


def _stdout() -> Console:
    # Piped output keeps whole rows: rich would otherwise fold wide tables to 80 columns.
    return Console(width=None if sys.stdout.isatty() else 400, highlight=False)


def _number(x) -> str:
    if pd.isna(x):
        return "–"
    x = float(x)
    if x.is_integer() or abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.4f}"


def _comparison(table: pd.DataFrame, source: str) -> Table:
    """Attributed conversions: one row per channel, one column per model, a total row."""
    models = list(dict.fromkeys(table["model"]))
    wide = table.pivot(index="channel", columns="model", values="conversions")[models]
    wide = wide.loc[wide.mean(axis=1).sort_values(ascending=False, kind="stable").index]
    out = Table("channel", *models, title=f"Attributed conversions ({source})", show_footer=True)
    for column, total in zip(out.columns, ["total", *wide.sum().tolist()]):
        column.footer = total if isinstance(total, str) else f"{total:,.2f}"
    for column in out.columns[1:]:
        column.justify = "right"
    for channel, row in wide.iterrows():
        out.add_row(str(channel), *("–" if pd.isna(x) else f"{x:,.2f}" for x in row))
    return out


def _frame(frame: pd.DataFrame, title: str) -> Table:
    out = Table(*map(str, frame.columns), title=title)
    for column, dtype in zip(out.columns, frame.dtypes):
        if pd.api.types.is_numeric_dtype(dtype):
            column.justify = "right"
    for row in frame.itertuples(index=False):
        out.add_row(*(_number(x) if isinstance(x, numbers.Real) else str(x) for x in row))
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``attribution`` console script; returns the exit status."""
    return cli.main(args=argv, prog_name=PROG, standalone_mode=False)


if __name__ == "__main__":
    sys.exit(main())
