"""Event log to journeys to every rule model: wall time and peak memory at 10M touches.

Each run happens in a fresh child process, which times
``engine.read_events(parquet, person=..., timestamp=..., channel=..., event_type=...,
revenue=...)`` and then ``fit(...).attribute()`` of every rule model the journeys support
(time_decay included; w_shaped and full_path when the log has lead/opportunity events), plus
linear per channel. The parent reads the child's peak resident memory from the kernel
(``os.wait4``), so the figure covers the whole child: interpreter, imports, Arrow input, DuckDB
and the journeys.

Usage::

    .venv/bin/python benchmarks/bench_events.py             # makes the data first if missing
    .venv/bin/python benchmarks/bench_events.py --touches 1000000 --repeats 3

Results go to ``benchmarks/results/events_<touches>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGET_SECONDS = 60.0
TARGET_GIB = 4.0


def child(data: Path) -> None:
    """Run the work once and print its timings as one JSON line."""
    began = time.perf_counter()
    import engine
    from engine.models import REGISTRY, Linear
    from engine.models.rules import RuleModel

    imported = time.perf_counter()
    journeys = engine.read_events(data, person="person_id", timestamp="timestamp",
                                  channel="channel", event_type="event_type", revenue="revenue")
    read = time.perf_counter()
    peak_read = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    # Models are made one at a time and only their results kept, as engine.compare does: a
    # fitted rule model holds one weight per touch, which would add up across ten models.
    makers = [cls for cls in REGISTRY.values() if issubclass(cls, RuleModel)
              and all(getattr(journeys, need) is not None for need in cls.requires)]
    makers.append(lambda: Linear(per="channel"))
    credit = {}
    for make in makers:
        result = make().fit(journeys).attribute()
        label = result.model + ("(per=channel)" if result.params.get("per") == "channel" else "")
        credit[label] = float(result.table["conversions"].sum())
    done = time.perf_counter()
    print(json.dumps({
        "import_s": imported - began, "read_events_s": read - imported,
        "models_s": done - read, "work_s": done - imported, "peak_read_gib": peak_read,
        "n_rows": journeys.report.n_rows, "n_used": journeys.report.n_used,
        "n_journeys": journeys.n_journeys, "n_touches": journeys.n_touches,
        "conversions": journeys.total_conversions, "value": journeys.total_value,
        "rejected": journeys.report.rejected, "credit": credit}))


def run_child(data: Path) -> dict:
    """One child run: its JSON plus its peak RSS in GiB (Linux reports ru_maxrss in KiB).

    ``peak_read_gib`` is the child's own peak when read_events returned, so the two figures
    tell whether the peak comes from building the journeys or from the models.
    """
    process = subprocess.Popen([sys.executable, __file__, "--child", str(data)],
                               stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"child run failed with exit status {process.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_gib"] = usage.ru_maxrss / 2**20
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--touches", type=int, default=10_000_000,
                        help="size of the event log to use or make (default 10,000,000)")
    parser.add_argument("--data", type=Path, help="event log (default: data/events_<touches>"
                        ".parquet, made if missing)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    from make_data import event_log_file

    data = event_log_file(args.touches, args.data)

    runs = []
    for i in range(args.repeats):
        runs.append(run_child(data))
        run = runs[-1]
        print(f"run {i + 1}: read_events {run['read_events_s']:.1f} s, rule models "
              f"{run['models_s']:.1f} s, total {run['work_s']:.1f} s, peak RSS "
              f"{run['peak_rss_gib']:.2f} GiB ({run['peak_read_gib']:.2f} GiB by the end of "
              "read_events)", flush=True)
    last = runs[-1]
    print(f"\n{data.name}: {last['n_rows']:,} rows -> {last['n_journeys']:,} journeys, "
          f"{last['n_touches']:,} touches kept, {last['conversions']:,.0f} conversions; "
          f"rows not used: {last['rejected'] or 'none'}")
    print("credit per model sums to the conversions: " + ", ".join(
        f"{name} {total:,.1f}" for name, total in last["credit"].items()))

    steps = {"read_events_s": "engine.read_events", "models_s":
             f"{len(last['credit'])} rule models (fit + attribute)", "work_s": "total",
             "import_s": "import engine (not in total)"}
    rows = [(label, min(r[key] for r in runs), statistics.median(r[key] for r in runs))
            for key, label in steps.items()]
    peak = max(r["peak_rss_gib"] for r in runs)
    peak_read = max(r["peak_read_gib"] for r in runs)
    best_total = min(r["work_s"] for r in runs)
    verdict = (f"target (< {TARGET_SECONDS:.0f} s, < {TARGET_GIB:.0f} GiB): "
               + ("met" if best_total < TARGET_SECONDS and peak < TARGET_GIB else "NOT met"))
    print(f"\nBest and median of {args.repeats} runs, seconds:")
    for label, best, median in rows:
        print(f"  {label:<40} {best:8.2f} {median:8.2f}")
    print(f"  {'peak resident memory (GiB, worst run)':<40} {peak:8.2f}")
    print(f"  {'  of which by the end of read_events':<40} {peak_read:8.2f}")
    print(verdict)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / data.stem
    lines = ["step,best_s,median_s", *[f"{label},{best:.3f},{median:.3f}"
                                      for label, best, median in rows],
             f"peak_rss_gib,{peak:.3f},{statistics.median(r['peak_rss_gib'] for r in runs):.3f}",
             f"peak_rss_after_read_events_gib,{peak_read:.3f},"
             f"{statistics.median(r['peak_read_gib'] for r in runs):.3f}"]
    stem.with_suffix(".csv").write_text("\n".join(lines) + "\n")
    markdown = [
        "# Event log to journeys and all rule models\n",
        f"Data: `{data.name}`: {last['n_rows']:,} rows -> {last['n_journeys']:,} journeys "
        f"({last['n_touches']:,} touches in the 30-day lookback, {last['conversions']:,.0f} "
        f"conversions).  ",
        f"Machine: {os.cpu_count()} CPU cores. Best and median of {args.repeats} runs, each in a "
        "fresh process; peak memory is the child's peak RSS.\n",
        "| step | best (s) | median (s) |", "|---|---:|---:|",
        *[f"| {label} | {best:.2f} | {median:.2f} |" for label, best, median in rows],
        f"| peak resident memory (GiB, worst run) | {peak:.2f} | |",
        f"| peak resident memory by the end of read_events (GiB) | {peak_read:.2f} | |",
        f"\n{verdict}",
    ]
    stem.with_suffix(".md").write_text("\n".join(markdown) + "\n")
    print(f"saved {stem.with_suffix('.csv')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
