"""Benchmark for hems.store (not collected by pytest). Run: ``python tests/bench_store.py [--hours 24]``.

Inserts a day of readings (20 quantities at 1 s = 1.728 M readings) in batches of 500, as the recorder does,
then times a catch-up rollup over the whole day, a steady-state rollup of one new minute, a few queries and a
prune of the day's raw data.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hems.model import Reading
from hems.store import Store

T0 = 1_700_000_100.0  # aligned to 15 min


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quantities", type=int, default=20)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--dir", help="where to put the database (default: a temporary directory)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "bench.db"
        store = Store(path, raw_retention_days=0.5)
        series = [(f"dev{k // 5}", f"q{k % 5}_w") for k in range(args.quantities)]
        seconds = int(args.hours * 3600)
        total = seconds * len(series)
        print(
            f"sqlite file: {path}; {len(series)} quantities at 1 s for {args.hours:g} h = {total:,} readings"
        )

        def readings(first_second: int, n_seconds: int):
            for s in range(first_second, first_second + n_seconds):
                for k, (dev, q) in enumerate(series):
                    yield Reading(dev, q, float((s * 7 + k * 13) % 5000) - 1000.0, T0 + s)

        stream = readings(0, seconds)
        times = []
        t_all = time.perf_counter()
        while True:
            batch = [r for _, r in zip(range(args.batch), stream, strict=False)]
            if not batch:
                break
            t = time.perf_counter()
            store.add_readings(batch)
            times.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - t_all
        ms = sorted(x * 1000 for x in times)
        print(
            f"insert: {len(times):,} batches of {args.batch}: {total / sum(times):,.0f} readings/s "
            f"(store time only; {total / elapsed:,.0f}/s incl. building Readings); per batch ms: "
            f"mean {statistics.fmean(ms):.2f}, p50 {ms[len(ms) // 2]:.2f}, "
            f"p99 {ms[int(len(ms) * 0.99)]:.2f}, max {ms[-1]:.2f}"
        )

        end = T0 + seconds
        t = time.perf_counter()
        counts = store.rollup(end)
        took = time.perf_counter() - t
        print(
            f"rollup (catch-up over {args.hours:g} h, {total:,} raw readings): {took:.2f} s "
            f"-> {counts['buckets_1m']:,} 1-min and {counts['buckets_15m']:,} 15-min buckets"
        )

        store.add_readings(readings(seconds, 60))
        t = time.perf_counter()
        counts = store.rollup(end + 60)
        print(
            f"rollup (steady state, one new minute): {(time.perf_counter() - t) * 1000:.2f} ms "
            f"-> {counts['buckets_1m']} 1-min buckets"
        )
        t = time.perf_counter()
        counts = store.rollup(end + 60)
        print(f"rollup (nothing new): {(time.perf_counter() - t) * 1000:.2f} ms")

        late = [Reading(dev, q, 1.0, T0 + 3600 + i) for i, (dev, q) in enumerate(series)]
        store.add_readings(late)
        t = time.perf_counter()
        counts = store.rollup(end + 60)
        print(
            f"rollup ({counts['late_readings']} late readings): {(time.perf_counter() - t) * 1000:.2f} ms "
            f"-> {counts['buckets_1m']} 1-min, {counts['buckets_15m']} 15-min buckets re-rolled"
        )

        dev, q = series[0]
        for label, fn in (
            ("series 1m over the day", lambda: store.series(dev, q, T0, end, "1m")),
            ("series 15m over the day", lambda: store.series(dev, q, T0, end, "15m")),
            (
                "readings of one series, last hour",
                lambda: store.readings(device_id=dev, quantity=q, start=end - 3600),
            ),
            ("latest()", store.latest),
        ):
            t = time.perf_counter()
            n = len(fn())
            print(f"{label}: {n:,} rows in {(time.perf_counter() - t) * 1000:.2f} ms")

        t = time.perf_counter()
        pruned = store.prune(end + 0.5 * 86400, limit=10_000)
        print(f"prune (limit 10,000 rows): {pruned} in {(time.perf_counter() - t) * 1000:.1f} ms")
        t = time.perf_counter()
        pruned = store.prune(end + 0.5 * 86400)
        print(f"prune (the rest of the day's raw): {pruned} in {time.perf_counter() - t:.2f} s")

        t = time.perf_counter()
        store.close()
        size = path.stat().st_size / 1e6
        took = (time.perf_counter() - t) * 1000
        print(f"close (WAL checkpoint): {took:.0f} ms; file size after prune {size:.0f} MB")


if __name__ == "__main__":
    main()
