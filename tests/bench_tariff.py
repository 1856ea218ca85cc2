"""Benchmark: ``Tariff.prices()`` for a year at 5-minute steps. Run: ``python tests/bench_tariff.py``.

Not collected by pytest (the file name does not start with ``test_``).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from hems.tariff import PriceSeries, Tariff

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tariff-tou-seasonal.toml"


def bench(label: str, tariff: Tariff, start: float, n: int, step_s: float, repeat: int = 7) -> None:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        tariff.prices(start, n, step_s)
        best = min(best, time.perf_counter() - t0)
    print(f"{label:<42} {n:>7} steps  best of {repeat}: {best * 1000:7.1f} ms")


def main() -> None:
    tz = ZoneInfo("America/Los_Angeles")
    start = datetime(2026, 1, 1, tzinfo=tz).timestamp()
    n = 365 * 24 * 12  # 105,120
    bench("default TOU, 1 year @ 5 min", Tariff.default(), start, n, 300)
    bench("seasonal example, 1 year @ 5 min", Tariff.load(EXAMPLE), start, n, 300)
    dyn = Tariff.default().with_dynamic(PriceSeries.from_steps(start, 3600, [0.2] * (365 * 24)))
    bench("default + hourly dynamic year, 1 year @ 5 min", dyn, start, n, 300)
    tariff = Tariff.default()
    for name, fn in (("at()", tariff.at), ("next_change()", tariff.next_change)):
        t0 = time.perf_counter()
        for k in range(1000):
            fn(start + k * 300.0)
        print(f"{name + ', per call':<42} {(time.perf_counter() - t0) * 1000:>21.3f} us")
    t0 = time.perf_counter()
    Tariff.default()
    print(f"{'Tariff.default() construction':<42} {(time.perf_counter() - t0) * 1000:>21.1f} ms")


if __name__ == "__main__":
    main()
