"""Out of core: a 100M-touch Parquet log to journeys, Markov and last touch, under 8 GiB.

One run happens in a fresh child process with DuckDB's memory capped (``ATTRIBUTION_MEMORY_LIMIT``,
``--memory-limit``, default 4GB; beyond it DuckDB spills to ``<tempdir>/attribution-engine-<pid>``).
The child times ``engine.read_events(parquet, person=..., timestamp=..., channel=...,
event_type=..., revenue=...)``, ``journeys.unique()``, ``Markov(order=1).fit(unique).attribute()``
and ``LastTouch().fit(journeys).attribute()``, and prints each step as it starts and ends with the
elapsed time and its resident memory, so a long run shows its progress. ``read_events`` gets a
``progress`` callback when its signature has one.

The parent samples the resident memory of the child and its descendants every 0.5 s with psutil,
and the disk use of the spill folder; it reads the child's peak RSS from the kernel
(``os.wait4``) when the child ends. The target (issue 8) is a peak under 8 GiB.

Usage::

    .venv/bin/python benchmarks/bench_scale.py --touches 20000000     # makes the data if missing
    .venv/bin/python benchmarks/bench_scale.py --touches 100000000 --memory-limit 4GB

Results go to ``benchmarks/results/scale_<touches>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import psutil
import pyarrow
from bench_events import RESULTS

TARGET_GIB = 8.0
SAMPLE_S = 0.5
HEARTBEAT_S = 30.0
CHUNK = 5_000_000
GIB = 2**30
# Where engine.ingest.backend points DuckDB's temp_directory (the child's pid fills the gap).
SPILL_NAME = "attribution-engine-{pid}"
STEPS = ("import engine", "engine.read_events", "journeys.unique()",
         "Markov(order=1) fit + attribute", "LastTouch fit + attribute")


def child(data: Path) -> None:
    """Run the steps once, reporting each on stderr, and print their figures as one JSON line."""
    me = psutil.Process()
    began = time.perf_counter()
    steps = []

    def say(message: str) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"[{time.perf_counter() - began:7.1f} s | RSS {me.memory_info().rss / GIB:5.2f} GiB, "
              f"peak {peak:5.2f} GiB] {message}", file=sys.stderr, flush=True)

    def step(name, work):
        say(f"{name} ...")
        start, clock = time.time(), time.perf_counter()
        result = work()
        seconds = time.perf_counter() - clock
        steps.append({"step": name, "start": start, "end": time.time(), "seconds": seconds,
                      "rss_end_gib": me.memory_info().rss / GIB,
                      "peak_so_far_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                      / 2**20})
        say(f"{name} done in {seconds:.1f} s")
        return result

    def load():
        import engine
        from engine import models

        # engine.read_events loads Ibis and DuckDB on first access: count that as the import.
        return engine.read_events, models

    read_events, models = step(STEPS[0], load)
    options = {}
    progress = "progress" in inspect.signature(read_events).parameters
    if progress:
        options["progress"] = lambda *what: say("  read_events: " + " ".join(map(str, what)))
    journeys = step(STEPS[1], lambda: read_events(
        data, person="person_id", timestamp="timestamp", channel="channel",
        event_type="event_type", revenue="revenue", **options))
    unique = step(STEPS[2], journeys.unique)
    markov = step(STEPS[3], lambda: models.Markov(order=1).fit(unique).attribute())
    last = step(STEPS[4], lambda: models.LastTouch().fit(journeys).attribute())
    print(json.dumps({
        "steps": steps, "progress_callback": progress,
        "n_rows": journeys.report.n_rows, "n_used": journeys.report.n_used,
        "rejected": journeys.report.rejected, "n_journeys": journeys.n_journeys,
        "n_touches": journeys.n_touches, "n_unique": unique.n_journeys,
        "conversions": journeys.total_conversions,
        "credit": {"markov": float(markov.table["conversions"].sum()),
                   "last_touch": float(last.table["conversions"].sum())}}))


def _tree_rss(process: psutil.Process) -> int:
    """Resident bytes of ``process`` and its descendants (0 for any that just ended)."""
    total = 0
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in family:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def _disk_use(folder: Path) -> int:
    """Bytes allocated on disk under ``folder`` (0 when it does not exist, yet or any more)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:  # DuckDB removes spill files while we look
                pass
    return total


def run_child(data: Path, memory_limit: str) -> dict:
    """One child run: its JSON plus the sampled RSS and spill trace and its kernel peak RSS.

    The child is reaped with ``os.wait4`` only (polled with WNOHANG between samples), since
    ``Popen.poll`` would reap it first and lose its resource usage. Its stdout goes to a file,
    not a pipe, so nothing it prints can block it while the parent is sampling.
    """
    env = dict(os.environ, ATTRIBUTION_MEMORY_LIMIT=memory_limit)
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen([sys.executable, __file__, "--child", str(data)],
                                   stdout=out, env=env, text=True)
        watched = psutil.Process(process.pid)
        spill = Path(tempfile.gettempdir()) / SPILL_NAME.format(pid=process.pid)
        began = last_beat = time.time()
        samples = []
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            now = time.time()
            samples.append((now, _tree_rss(watched), _disk_use(spill)))
            if now - last_beat >= HEARTBEAT_S:
                last_beat = now
                print(f"  ... {now - began:.0f} s: RSS {samples[-1][1] / GIB:.2f} GiB, "
                      f"spill {samples[-1][2] / GIB:.2f} GiB", file=sys.stderr, flush=True)
            time.sleep(SAMPLE_S)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"child run failed with exit status {process.returncode}")
        out.seek(0)
        result = json.loads(out.read().strip().splitlines()[-1])
    result["wall_s"] = time.time() - began
    result["peak_rss_gib"] = usage.ru_maxrss / 2**20
    result["sampled_peak_gib"] = max((rss for _, rss, _ in samples), default=0) / GIB
    result["spill_peak_gib"] = max((disk for _, _, disk in samples), default=0) / GIB
    result["spill_left_gib"] = _disk_use(spill) / GIB if spill.exists() else None
    for step in result["steps"]:
        # Steps shorter than the sampling interval may hold no sample: None, not a zero.
        during = [(rss, disk) for t, rss, disk in samples if step["start"] <= t <= step["end"]]
        step["sampled_peak_gib"] = max(rss for rss, _ in during) / GIB if during else None
        step["spill_peak_gib"] = max(disk for _, disk in during) / GIB if during else None
    return result


def _worst(values):
    """The largest of the figures that exist (None when no run has one)."""
    present = [value for value in values if value is not None]
    return max(present) if present else None


def _figure(value, empty: str = "") -> str:
    return empty if value is None else f"{value:.2f}"


def machine_line(memory_limit: str) -> str:
    """Cores, CPU model, memory and versions: what the figures depend on."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                  .splitlines() if line.startswith("model name")), platform.processor())
    return (f"Machine: {os.cpu_count()} CPU cores ({model}), "
            f"{psutil.virtual_memory().total / GIB:.0f} GiB memory, "
            f"{psutil.swap_memory().total / GIB:.0f} GiB swap; Python {platform.python_version()}, "
            f"DuckDB {duckdb.__version__}, pyarrow {pyarrow.__version__}. DuckDB memory limit "
            f"{memory_limit}, spilling under {tempfile.gettempdir()}.")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--touches", type=int, default=100_000_000,
                        help="size of the event log to use or make (default 100,000,000)")
    parser.add_argument("--data", type=Path, help="event log (default: data/events_<touches>"
                        f".parquet, made {CHUNK:,} touches at a time if missing)")
    parser.add_argument("--memory-limit", default="4GB",
                        help="DuckDB's memory limit, ATTRIBUTION_MEMORY_LIMIT (default 4GB)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    from make_data import event_log_file

    data = event_log_file(args.touches, args.data, chunk=CHUNK)

    load_before = os.getloadavg()[0]
    runs = []
    for i in range(args.repeats):
        print(f"run {i + 1} of {args.repeats} on {data.name}, DuckDB memory limit "
              f"{args.memory_limit}:", flush=True)
        runs.append(run_child(data, args.memory_limit))
        run = runs[-1]
        print(f"run {i + 1}: {run['wall_s']:.1f} s, peak RSS {run['peak_rss_gib']:.2f} GiB "
              f"(sampled {run['sampled_peak_gib']:.2f} GiB), spill peak "
              f"{run['spill_peak_gib']:.2f} GiB", flush=True)
    load_after = os.getloadavg()[0]
    last = runs[-1]
    if not last["progress_callback"]:
        print("engine.read_events has no progress keyword: only the steps are reported")
    print(f"\n{data.name}: {last['n_rows']:,} rows -> {last['n_journeys']:,} journeys "
          f"({last['n_unique']:,} unique paths), {last['n_touches']:,} touches kept, "
          f"{last['conversions']:,.0f} conversions; rows not used: {last['rejected'] or 'none'}")
    print("credit sums to the conversions: " + ", ".join(
        f"{name} {total:,.1f}" for name, total in last["credit"].items()))
    leftover = [r["spill_left_gib"] for r in runs if r["spill_left_gib"] is not None]
    if leftover:
        print(f"the spill folder outlived the child ({max(leftover):.2f} GiB left)")

    rows = []
    for index, name in enumerate(STEPS):
        seconds = [r["steps"][index]["seconds"] for r in runs]
        rows.append((name, min(seconds), statistics.median(seconds),
                     _worst(r["steps"][index]["sampled_peak_gib"] for r in runs),
                     max(r["steps"][index]["peak_so_far_gib"] for r in runs),
                     _worst(r["steps"][index]["spill_peak_gib"] for r in runs)))
    work = [sum(s["seconds"] for s in r["steps"][1:]) for r in runs]
    rows.append(("total (without the import)", min(work), statistics.median(work),
                 max(r["sampled_peak_gib"] for r in runs), max(r["peak_rss_gib"] for r in runs),
                 max(r["spill_peak_gib"] for r in runs)))
    peak = max(max(r["peak_rss_gib"], r["sampled_peak_gib"]) for r in runs)
    verdict = (f"target (< {TARGET_GIB:.0f} GiB peak): "
               + ("met" if peak < TARGET_GIB else "NOT met") + f" ({peak:.2f} GiB)")
    machine = machine_line(args.memory_limit)
    load = f"Load average (1 min) {load_before:.1f} before, {load_after:.1f} after."

    header = ("step", "best (s)", "median (s)", "peak RSS sampled (GiB)",
              "peak RSS so far (GiB)", "spill peak (GiB)")
    print(f"\nBest and median of {args.repeats} run(s), seconds; memory and spill in GiB, worst "
          "run (sampled: during the step; so far: the child's peak when it ended; -: no sample)")
    print(f"  {'step':<34}" + "".join(f"{h:>10}" for h in ("best", "median", "sampled",
                                                            "so far", "spill")))
    for name, *figures in rows:
        print(f"  {name:<34}" + "".join(f"{_figure(f, '-'):>10}" for f in figures))
    print(f"  whole-run wall time, parent's view: {max(r['wall_s'] for r in runs):.1f} s (worst)")
    print(machine)
    print(load)
    print(verdict)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / ("scale_" + data.stem.removeprefix("events_"))
    lines = ["step,best_s,median_s,peak_rss_sampled_gib,peak_rss_so_far_gib,spill_peak_gib",
             *[",".join([name, *(("" if f is None else f"{f:.3f}") for f in figures)])
               for name, *figures in rows],
             f"peak_rss_wait4_gib,{max(r['peak_rss_gib'] for r in runs):.3f},,,,",
             f"memory_limit,{args.memory_limit},,,,"]
    stem.with_suffix(".csv").write_text("\n".join(lines) + "\n")
    markdown = [
        "# Out of core: event log to journeys, Markov and last touch\n",
        (f"Data: `{data.name}`: {last['n_rows']:,} rows -> {last['n_journeys']:,} journeys "
         f"({last['n_unique']:,} unique paths, {last['n_touches']:,} touches in the 30-day "
         f"lookback, {last['conversions']:,.0f} conversions).  "),
        f"{machine}  ",
        (f"{load} Best and median of {args.repeats} run(s), each in a fresh process. Peak RSS "
         f"sampled: the child and its descendants every {SAMPLE_S} s (psutil); so far: the "
         "child's own peak when the step ended (`ru_maxrss`); the total row's is the kernel's "
         "peak for the whole child (`os.wait4`). Spill: disk use of DuckDB's temporary folder. "
         "An empty cell: the step was shorter than the sampling interval.\n"),
        "| " + " | ".join(header) + " |", "|---|---:|---:|---:|---:|---:|",
        *["| " + " | ".join([name, *map(_figure, figures)]) + " |" for name, *figures in rows],
        f"\n{verdict}",
    ]
    stem.with_suffix(".md").write_text("\n".join(markdown) + "\n")
    print(f"saved {stem.with_suffix('.csv')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
