"""``hems bench ocpp [--json]``: how long a planner limit change takes to reach the charger, per OCPP version.

For each version a CSMS and a simulated charge point run on loopback with an EV charging; the benchmark then
changes the limit ``--n`` times through the EV charger capability (``set_ev_power_limit_w``) and times it:

- ``p50_ms`` / ``p99_ms``: from the call until it returns, i.e. the charger has accepted the profile and its
  GetCompositeSchedule confirms the new limit (what the planner waits for);
- ``accepted_p50_ms`` / ``accepted_p99_ms``: until the SetChargingProfile answer (Accepted) alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import time

from hems.bus import Bus
from hems.clock import RealClock
from hems.config import Config
from hems.integration import IntegrationContext

from .csms import OcppIntegration
from .sim import SimChargePoint, ToyEV

VERSIONS = ("1.6", "2.0.1", "2.1")
PASSWORD = "bench-password-0123"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def bench_version(version: str, n: int) -> dict:
    clock = RealClock()
    bus = Bus(clock)
    ctx = IntegrationContext(
        "ocpp",
        bus,
        clock,
        Config(),
        {"port": 0, "meter_interval_s": 60},
        [{"type": "ocpp", "id": "bench", "password": PASSWORD, "authorized_id_tags": ["SIMTAG01"]}],
    )
    integ = OcppIntegration(ctx)
    await integ.start()
    ev = ToyEV(clock, soc_pct=20.0, plugged=True, tick_s=0.1)
    ev.start()
    cp = SimChargePoint(f"{integ.url}/bench", version, ev=ev, clock=clock, password=PASSWORD)
    await cp.start()
    dev = integ.devices["bench"]
    try:
        deadline = time.monotonic() + 10.0
        while not (dev.ready.is_set() and dev.active_session and cp.tx and cp.tx.authorized):
            if time.monotonic() > deadline:
                raise RuntimeError(f"OCPP {version}: the simulated charger did not start a session")
            await asyncio.sleep(0.01)
        total, accepted = [], []
        for i in range(n + 10):
            limit = 4000.0 + (i % 14) * 500.0
            t0 = time.perf_counter()
            await dev.set_ev_power_limit_w(limit)
            elapsed = time.perf_counter() - t0
            if cp.limit_w != limit:
                raise RuntimeError(f"OCPP {version}: the charger is at {cp.limit_w} W, not {limit} W")
            if i >= 10:  # warm-up
                total.append(elapsed * 1000.0)
                accepted.append((dev.last_accept_s or 0.0) * 1000.0)
        return {
            "version": version,
            "n": n,
            "p50_ms": round(percentile(total, 0.50), 3),
            "p99_ms": round(percentile(total, 0.99), 3),
            "accepted_p50_ms": round(percentile(accepted, 0.50), 3),
            "accepted_p99_ms": round(percentile(accepted, 0.99), 3),
        }
    finally:
        await cp.stop()
        await ev.stop()
        await integ.stop()


async def run(versions: list[str], n: int) -> list[dict]:
    return [await bench_version(v, n) for v in versions]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hems bench ocpp", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per version")
    p.add_argument("--n", type=int, default=300, help="limit changes per version (default 300)")
    p.add_argument("--version", action="append", choices=VERSIONS, help="only these versions (repeatable)")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("--n must be >= 1")
    logging.basicConfig(level=logging.ERROR)
    results = asyncio.run(run(args.version or list(VERSIONS), args.n))
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{'OCPP':<7}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'accept p50':>12}{'accept p99':>12}")
        for r in results:
            print(
                f"{r['version']:<7}{r['n']:>6}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
                f"{r['accepted_p50_ms']:>12.2f}{r['accepted_p99_ms']:>12.2f}"
            )
    return 0
