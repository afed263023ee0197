"""Synthetic benchmark data: a path table and a touchpoint event log, generated with numpy.

Two outputs, both written under ``--out`` (default ``benchmarks/data/``, git-ignored):

``paths_<journeys>.csv``
    A path table in ChannelAttribution's layout (``path,total_conversions,
    total_conversion_value,total_null``, channels joined by ``" > "``). ``--journeys`` journeys
    (default 1,000,000) with geometric lengths, Zipf-like channel popularity and runs of the same
    channel, collapsing to about 170k unique paths. Whether a journey converts depends on its
    channels (each channel has its own lift), its value on its last channel. With ``--channels``
    other than 10 the file is ``paths_<journeys>_<channels>ch.csv``; beyond the 12 named
    channels, generated ones (``channel_013``, ...) follow, up to 999.

``events_<touches>.parquet``
    A raw event log of ``--touches`` touches (default 10,000,000) plus the conversions they lead
    to: ``person_id`` (string), ``timestamp`` (timestamp[us]), ``channel`` (string),
    ``event_type`` (``"touch"``/``"conversion"``) and ``revenue`` (float on conversions, null on
    touches), spread over about six months and sorted by time as a tracking system would log it.
    Persons have a heavy-tailed number of touches, a favourite channel, and may convert several
    times, so one person yields several journeys. With ``--chunk`` the log is generated and
    written ``--chunk`` touches at a time (each chunk its own persons, sorted by time within the
    chunk only), so memory stays around one chunk whatever ``--touches`` is.

Everything is vectorised over journeys, persons and touches; randomness comes only from
``--seed``.

Usage::

    .venv/bin/python benchmarks/make_data.py                       # both, default sizes
    .venv/bin/python benchmarks/make_data.py --what events --touches 1000000
    .venv/bin/python benchmarks/make_data.py --what events --touches 100000000 --chunk 5000000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parent / "data"

CHANNELS = ("paid_search", "organic_search", "direct", "display", "email", "social",
            "affiliate", "referral", "video", "push", "sms", "podcast")
# Log-odds lift on conversion per touch of each channel (same order as CHANNELS): the ground
# truth differs by channel so the rules disagree with each other and with a data-driven model.
LIFT = np.array([0.35, 0.25, 0.05, -0.05, 0.30, 0.0, 0.20, 0.10, -0.10, 0.15, 0.05, 0.10])
# Daily conversion odds per touch in the event log, by channel.
TOUCH_CONVERSION = np.array([0.045, 0.035, 0.03, 0.008, 0.04, 0.012, 0.03, 0.02, 0.006, 0.02,
                             0.015, 0.01])
SIX_MONTHS_US = np.int64(182 * 86_400 * 1_000_000)
MAX_PATH_CHANNELS = 999
DEFAULT_CHANNELS = 10
START = np.datetime64("2025-01-01T00:00:00", "us")


def _popularity(n_channels: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n_channels + 1) ** exponent
    return weights / weights.sum()


def channel_names(n_channels: int) -> tuple[str, ...]:
    """The 12 named channels, then generated names ``channel_013``, ``channel_014``, ...."""
    extra = tuple(f"channel_{i:03d}" for i in range(len(CHANNELS) + 1, n_channels + 1))
    return CHANNELS[:n_channels] + extra


def channel_lifts(n_channels: int) -> np.ndarray:
    """``LIFT`` for the named channels; beyond them its pattern repeats, shrunk by 0.8 per cycle.

    Deterministic (no draw from the generator), so the first 12 lifts, the random stream and
    therefore every table of up to 12 channels are exactly what they were before channels
    beyond 12 existed.
    """
    index = np.arange(n_channels)
    return LIFT[index % len(LIFT)] * 0.8 ** (index // len(LIFT))


def path_file_name(n_journeys: int, n_channels: int = DEFAULT_CHANNELS) -> str:
    """``paths_<journeys>.csv`` for the default 10 channels, else ``..._<channels>ch.csv``."""
    suffix = "" if n_channels == DEFAULT_CHANNELS else f"_{n_channels}ch"
    return f"paths_{n_journeys}{suffix}.csv"


def _with_runs(fresh: np.ndarray, first: np.ndarray, repeat: float,
               rng: np.random.Generator) -> np.ndarray:
    """Each touch repeats the channel of the touch before it with probability ``repeat``.

    ``first`` marks each sequence's first touch, which never repeats. A run takes the channel of
    the last fresh touch before it (a running maximum of fresh indices), so no loop is needed.
    """
    again = (rng.random(len(fresh)) < repeat) & ~first
    source = np.maximum.accumulate(np.where(again, 0, np.arange(len(fresh))))
    return fresh[source]


def path_table(n_journeys: int = 1_000_000, n_channels: int = 10, *,
               rng: np.random.Generator) -> pd.DataFrame:
    """Journeys aggregated to unique paths, in ChannelAttribution's layout.

    Lengths are geometric (mean 1/0.3 touches), channels Zipf-like (exponent 0.9) with a 30 %
    chance of repeating the previous channel. A journey converts with probability
    ``sigmoid(-3.4 + sum of its touches' channel lifts)``; its value is log-normal with a mean
    that grows with its last channel's lift. Channels beyond the 12 named ones get generated
    names and lifts (:func:`channel_names`, :func:`channel_lifts`).
    """
    if not 2 <= n_channels <= MAX_PATH_CHANNELS:
        raise ValueError(f"n_channels must be between 2 and {MAX_PATH_CHANNELS}")
    lengths = rng.geometric(0.3, n_journeys)
    offsets = np.zeros(n_journeys + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    first = np.zeros(offsets[-1], dtype=bool)
    first[offsets[:-1]] = True
    fresh = rng.choice(n_channels, offsets[-1], p=_popularity(n_channels, 0.9))
    codes = _with_runs(fresh, first, 0.3, rng)
    journey = np.repeat(np.arange(n_journeys), lengths)
    lift = channel_lifts(n_channels)
    logit = -3.4 + np.bincount(journey, lift[codes], minlength=n_journeys)
    converted = rng.random(n_journeys) < 1.0 / (1.0 + np.exp(-logit))
    last = codes[offsets[1:] - 1]
    value = np.where(converted, rng.lognormal(3.8 + 2.0 * lift[last], 0.7), 0.0)

    names = pa.array(channel_names(n_channels)).take(pa.array(codes))
    paths = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), names), " > ")
    unique = pc.dictionary_encode(paths)
    index = unique.indices.to_numpy()
    n_paths = len(unique.dictionary)
    return pd.DataFrame({
        "path": unique.dictionary.to_numpy(zero_copy_only=False),
        "total_conversions": np.bincount(index, converted, minlength=n_paths).astype(np.int64),
        "total_conversion_value": np.round(np.bincount(index, value, minlength=n_paths), 2),
        "total_null": np.bincount(index, ~converted, minlength=n_paths).astype(np.int64),
    })


def event_log(n_touches: int = 10_000_000, n_channels: int = 10, *,
              rng: np.random.Generator, first_person: int = 0, id_width: int = 8) -> pa.Table:
    """A raw touchpoint event log of ``n_touches`` touches plus the conversions they cause.

    Persons have ``1 + Poisson(Gamma(0.8, 8))`` touches (mean about 7, heavy tail), 40 % of them
    on a favourite channel, spaced by exponential gaps (mean 3 days, squeezed into six months for
    the most active). After each touch the person converts with a channel-dependent probability
    (times a per-person propensity), a few minutes to hours later and before their next touch,
    so active persons convert repeatedly. Rows are sorted by timestamp.

    Person ids are ``"u"`` and the person's number, zero-padded to ``id_width`` digits; persons
    are numbered from ``first_person`` on, without gaps, so logs generated one after another
    with the next free number never share a person (:func:`write_event_log`).
    """
    if not 2 <= n_channels <= len(CHANNELS):
        raise ValueError(f"n_channels must be between 2 and {len(CHANNELS)}")
    per_person = 1 + rng.poisson(rng.gamma(0.8, 8.0, int(n_touches / 6.0) + 1000))
    while per_person.sum() < n_touches:
        per_person = np.concatenate([per_person, 1 + rng.poisson(rng.gamma(0.8, 8.0, 1000))])
    ends = np.cumsum(per_person)
    n_persons = int(np.searchsorted(ends, n_touches)) + 1
    per_person = per_person[:n_persons].copy()
    per_person[-1] -= ends[n_persons - 1] - n_touches
    starts = np.zeros(n_persons, dtype=np.int64)
    np.cumsum(per_person[:-1], out=starts[1:])
    person = np.repeat(np.arange(n_persons), per_person)
    first = np.zeros(n_touches, dtype=bool)
    first[starts] = True

    popularity = _popularity(n_channels, 0.9)
    favourite = rng.choice(n_channels, n_persons, p=popularity)
    fresh = np.where(rng.random(n_touches) < 0.4, favourite[person],
                     rng.choice(n_channels, n_touches, p=popularity))
    channel = _with_runs(fresh, first, 0.15, rng)

    day = 86_400 * 1_000_000
    gaps = rng.exponential(3.0 * day, n_touches).astype(np.int64)
    gaps[first] = 0
    elapsed = np.cumsum(gaps)
    elapsed -= elapsed[starts][person]
    span = elapsed[starts + per_person - 1]
    squeeze = np.minimum(1.0, (SIX_MONTHS_US - day) / np.maximum(span, 1))
    elapsed = (elapsed * squeeze[person]).astype(np.int64)
    offset = (rng.random(n_persons) * (SIX_MONTHS_US - span * squeeze)).astype(np.int64)
    touch_time = offset[person] + elapsed

    propensity = rng.gamma(2.0, 0.5, n_persons)
    chance = np.minimum(TOUCH_CONVERSION[:n_channels][channel] * propensity[person], 0.5)
    converts = rng.random(n_touches) < chance
    next_gap = np.empty(n_touches, dtype=np.int64)
    next_gap[:-1] = touch_time[1:] - touch_time[:-1]
    last = np.zeros(n_touches, dtype=bool)
    last[starts + per_person - 1] = True
    next_gap[last] = day
    delay = rng.exponential(2 * 3600 * 1_000_000, n_touches).astype(np.int64)
    delay = np.minimum(delay, next_gap // 2) + 1_000_000
    n_conversions = int(converts.sum())
    revenue = np.round(rng.lognormal(4.0, 0.6, n_conversions)
                       * (1.0 + 2.0 * LIFT[:n_channels][channel[converts]]), 2)

    time_us = np.concatenate([touch_time, touch_time[converts] + delay[converts]])
    order = np.argsort(time_us)
    who = np.concatenate([person, person[converts]])[order]
    what = np.concatenate([channel, channel[converts]])[order]
    kind = np.concatenate([np.zeros(n_touches, np.int8), np.ones(n_conversions, np.int8)])[order]
    money = np.concatenate([np.full(n_touches, np.nan), revenue])[order]

    ids = pc.binary_join_element_wise(
        "u", pc.utf8_lpad(pa.array(np.arange(first_person, first_person + n_persons))
                          .cast(pa.string()), id_width, "0"), "")

    def strings(indices, dictionary):
        return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)),
                                              dictionary).cast(pa.string())

    return pa.table({
        "person_id": strings(who, ids),
        "timestamp": pa.array(START + time_us[order].astype("timedelta64[us]")),
        "channel": strings(what, pa.array(CHANNELS[:n_channels])),
        "event_type": strings(kind, pa.array(["touch", "conversion"])),
        "revenue": pa.array(money, from_pandas=True),
    })


def write_event_log(target: Path, n_touches: int, n_channels: int = 10, *, chunk: int,
                    rng: np.random.Generator, on_chunk=None) -> dict:
    """Write an event log of ``n_touches`` touches to one Parquet file, ``chunk`` touches at a time.

    Each chunk is an :func:`event_log` of its own persons (numbered on from the previous
    chunk's), appended to the file as row groups, so memory stays around one chunk. Rows are
    sorted by time within a chunk, not across the file. Person ids are padded to at least 8
    digits, and to as many as ``n_touches - 1`` has (a person has at least one touch), so
    every id in the file has the same width. ``on_chunk`` is called with the running totals
    after each chunk (progress). Returns the totals: rows, touches, conversions, persons.

    The file is written under a ``.partial`` name and renamed when complete: an interrupted run
    must not leave a valid but short log that a benchmark would take for the full one.
    """
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    id_width = max(8, len(str(n_touches - 1)))
    totals = {"rows": 0, "touches": 0, "conversions": 0, "persons": 0}
    partial = target.with_name(target.name + ".partial")
    writer = None
    try:
        while totals["touches"] < n_touches:
            size = min(chunk, n_touches - totals["touches"])
            table = event_log(size, n_channels, rng=rng, first_person=totals["persons"],
                              id_width=id_width)
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema, compression="zstd")
            writer.write_table(table)
            totals["rows"] += table.num_rows
            totals["touches"] += size
            totals["conversions"] += pc.sum(pc.equal(table["event_type"], "conversion")).as_py()
            totals["persons"] += pc.count_distinct(table["person_id"]).as_py()
            del table
            if on_chunk is not None:
                on_chunk(totals)
        writer.close()
        partial.replace(target)
    except BaseException:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
        raise
    return totals


def event_log_file(touches: int, data: Path | None = None, chunk: int | None = None) -> Path:
    """The benchmarks' event log of ``touches`` touches: ``data`` when given (it must exist),
    else ``DATA/events_<touches>.parquet``, written first (``chunk`` touches at a time) when
    missing."""
    if data is not None:
        if not data.exists():
            raise SystemExit(f"{data} does not exist")
        return data
    path = DATA / f"events_{touches}.parquet"
    if not path.exists():
        main(["--what", "events", "--touches", str(touches), "--out", str(path.parent)]
             + (["--chunk", str(min(chunk, touches))] if chunk else []))
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", choices=("paths", "events", "all"), default="all")
    parser.add_argument("--journeys", type=int, default=1_000_000,
                        help="journeys in the path table (default 1,000,000)")
    parser.add_argument("--touches", type=int, default=10_000_000,
                        help="touch events in the event log (default 10,000,000)")
    parser.add_argument("--channels", type=int, default=DEFAULT_CHANNELS,
                        help=f"channels (2-{MAX_PATH_CHANNELS} in the path table, 2-12 in the "
                        f"event log; default {DEFAULT_CHANNELS})")
    parser.add_argument("--chunk", type=int,
                        help="write the event log this many touches at a time (zstd row groups, "
                        "memory around one chunk; e.g. 5000000 for 100M touches); default: "
                        "generate it in one go")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", type=Path, default=DATA, help=f"output folder (default {DATA})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    if args.what in ("paths", "all"):
        began = time.perf_counter()
        table = path_table(args.journeys, args.channels, rng=rng)
        target = args.out / path_file_name(args.journeys, args.channels)
        table.to_csv(target, index=False)
        print(f"{target}: {args.journeys:,} journeys, {len(table):,} unique paths, "
              f"{table.total_conversions.sum():,} conversions "
              f"({time.perf_counter() - began:.1f} s)")
    if args.what in ("events", "all") and args.chunk:
        began = time.perf_counter()
        target = args.out / f"events_{args.touches}.parquet"

        def report(totals):
            print(f"  {totals['touches']:,} of {args.touches:,} touches written "
                  f"({time.perf_counter() - began:.0f} s)", flush=True)

        totals = write_event_log(target, args.touches, args.channels, chunk=args.chunk, rng=rng,
                                 on_chunk=report)
        print(f"{target}: {totals['rows']:,} rows ({totals['touches']:,} touches, "
              f"{totals['conversions']:,} conversions), {totals['persons']:,} persons, "
              f"{target.stat().st_size / 2**30:.2f} GiB ({time.perf_counter() - began:.1f} s)")
    elif args.what in ("events", "all"):
        began = time.perf_counter()
        table = event_log(args.touches, args.channels, rng=rng)
        target = args.out / f"events_{args.touches}.parquet"
        pq.write_table(table, target)
        conversions = pc.sum(pc.equal(table["event_type"], "conversion")).as_py()
        print(f"{target}: {table.num_rows:,} rows ({args.touches:,} touches, {conversions:,} "
              f"conversions), {pc.count_distinct(table['person_id']).as_py():,} persons "
              f"({time.perf_counter() - began:.1f} s)")


if __name__ == "__main__":
    main()
