"""``hems bench sunspec [--json] [--polls N]``: what one full poll of the simulated inverter costs.

Starts the simulated SunSpec hybrid inverter on a free loopback port, connects the real integration's device
to it, and times discovery, N full polls (refresh, batched reads, decoding, mapping to readings) and one
control command with its read-back. Prints requests and milliseconds (median and p95 over the polls).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from datetime import datetime
from zoneinfo import ZoneInfo


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


async def run(polls: int = 50, seed: int = 1) -> dict:
    from hems.bus import Bus
    from hems.clock import ManualClock
    from hems.home import HomeParams
    from hems.livesim import LiveSimHome

    from .client import plan_reads
    from .device import DeviceConfig, SunSpecInverter
    from .sim import SunSpecSimInverter

    params = HomeParams()
    start = datetime(2024, 6, 21, 12, 0, tzinfo=ZoneInfo(params.site.timezone)).timestamp()
    clock = ManualClock(start)
    home = LiveSimHome(params, clock, seed=seed)
    inverter = SunSpecSimInverter(home, clock=clock)
    port = await inverter.start()
    device = SunSpecInverter(DeviceConfig("127.0.0.1", port, poll_interval_s=2.0), Bus(clock), clock)
    try:
        t = time.perf_counter()
        dmap = await device.connect()
        discovery_ms = (time.perf_counter() - t) * 1000
        discovery_requests = device.client.requests
        times, requests = [], []
        for _ in range(polls):
            clock.advance(2.0)
            home.step_to(clock.now())
            r0 = device.client.requests
            t = time.perf_counter()
            await device.poll_once()
            times.append((time.perf_counter() - t) * 1000)
            requests.append(device.client.requests - r0)
        r0 = device.client.requests
        t = time.perf_counter()
        await device.set_pv_limit_w(5000.0)
        command_ms = (time.perf_counter() - t) * 1000
        command_requests = device.client.requests - r0
        plan = plan_reads(sorted(device._poll_set, key=lambda m: m.addr))
    finally:
        await device.stop()
        await inverter.stop()
    return {
        "benchmark": "sunspec",
        "models": dmap.ids,
        "discovery": {"requests": discovery_requests, "ms": round(discovery_ms, 2)},
        "poll": {
            "polls": polls,
            "models": sorted(m.id for m in device._poll_set),
            "requests": int(statistics.median(requests)),
            "registers": sum(count for _, count in plan),
            "ms_median": round(statistics.median(times), 3),
            "ms_p95": round(_p95(times), 3),
        },
        "command": {
            "what": "set_pv_limit_w with read-back",
            "requests": command_requests,
            "ms": round(command_ms, 2),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hems bench sunspec", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--polls", type=int, default=50, help="number of full polls timed (default 50)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.polls < 1:
        ap.error("--polls must be >= 1")
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    result = asyncio.run(run(args.polls, args.seed))
    if args.json:
        print(json.dumps(result))
    else:
        d, p, c = result["discovery"], result["poll"], result["command"]
        print(f"SunSpec simulated inverter, models {result['models']}")
        print(f"discovery: {d['requests']} requests, {d['ms']:.1f} ms")
        print(
            f"full poll of models {p['models']}: {p['requests']:g} requests ({p['registers']} registers), "
            f"median {p['ms_median']:.2f} ms, p95 {p['ms_p95']:.2f} ms over {p['polls']} polls"
        )
        print(f"{c['what']}: {c['requests']} requests, {c['ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
