"""``hems bench dr [--json] [--events 30] [--poll-s 0.05]``: how long a DR event takes from the VTN to a limit.

A simulated VTN and the real VEN on loopback (plain HTTP), a DRManager on a SQLite file. For each event: the VTN
queues it; the VEN's next oadrPoll fetches the oadrDistributeEvent; the event is mapped, persisted, started
(its "actuated" marker written) and the controller's import limit is set; the oadrCreatedEvent answer follows.

- ``p50_ms`` / ``p99_ms``: VTN queues the event → the manager has it active and ``controller_limit_w()`` is set
  (includes the wait for the next poll: about half the poll interval on average).
- ``handling_p50_ms`` / ``handling_p99_ms``: the VTN hands out the oadrDistributeEvent → limit set (HTTP answer,
  guard, schema check, parse, mapping, SQLite writes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import tempfile
import time
from pathlib import Path


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def run(events: int = 30, poll_s: float = 0.05) -> dict:
    from hems.bus import Bus
    from hems.clock import RealClock
    from hems.dr import DRManager, DRNotice, DRState
    from hems.store import Store

    from .config import parse
    from .ven import Ven
    from .vtn import SimVTN

    clock = RealClock()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "hems.sqlite")
        vtn = SimVTN(poll_freq_s=1)
        await vtn.start()
        dr = DRManager(store, clock=clock, timezone="America/Los_Angeles")
        cfg = parse(
            {"vtn_url": vtn.url, "ven_name": "bench", "poll_interval_s": poll_s, "report_interval_s": 3600}
        )
        ven = Ven(cfg, dr=dr, bus=Bus(clock), clock=clock, store=store)
        handed_out: dict[str, float] = {}
        started: dict[str, tuple[float, float | None]] = {}
        waiter: asyncio.Event = asyncio.Event()
        original_poll = vtn._on_poll

        async def timed_poll(ven_id: str):
            answer = await original_poll(ven_id)
            if answer is not None and answer[0] == "oadrDistributeEvent":
                t = time.perf_counter()
                for ev in answer[1]["events"]:
                    handed_out.setdefault(ev.event_descriptor.event_id, t)
            return answer

        vtn.server.services["poll_service"].on_poll = timed_poll

        def on_change(ev, notice) -> None:
            if notice is DRNotice.STARTED:
                started[ev.event_id] = (time.perf_counter(), dr.controller_limit_w())
                waiter.set()

        dr.on_change(on_change)
        await ven.start()
        try:
            deadline = time.monotonic() + 10
            while not ven.registered:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the VEN did not register with the simulated VTN: {ven.last_error}")
                await asyncio.sleep(0.01)
            e2e, handling = [], []
            rng = random.Random(1)
            for i in range(events):
                event_id = f"bench-{i}"
                cap = 2000.0 + i
                await asyncio.sleep(rng.uniform(0.0, poll_s))  # not in phase with the VEN's polling
                waiter.clear()
                t0 = time.perf_counter()
                vtn.add_event(start_ts=clock.now() - 1, duration_s=3600, import_cap_w=cap, event_id=event_id)
                while event_id not in started:
                    await asyncio.wait_for(waiter.wait(), timeout=10)
                    waiter.clear()
                t1, limit = started[event_id]
                if limit != cap:
                    raise RuntimeError(f"event {event_id}: controller limit {limit}, expected {cap}")
                e2e.append((t1 - t0) * 1000)
                handling.append((t1 - handed_out[event_id]) * 1000)
                vtn.cancel_event(event_id)  # so the next event's limit is its own
                deadline = time.monotonic() + 10
                while dr.get(f"openadr:{event_id}").state is not DRState.CANCELLED:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"event {event_id} was not cancelled")
                    await asyncio.sleep(0.005)
                del vtn.events[event_id]  # acknowledged: the VTN stops listing it, as real VTNs do
        finally:
            await ven.stop()
            await dr.stop()
            await vtn.stop()
            store.close()
    return {
        "benchmark": "dr",
        "path": "VTN queues event -> oadrPoll -> oadrDistributeEvent -> DRManager active -> controller limit set",
        "events": events,
        "poll_interval_s": poll_s,
        "p50_ms": round(statistics.median(e2e), 2),
        "p99_ms": round(_pct(e2e, 0.99), 2),
        "handling_p50_ms": round(statistics.median(handling), 2),
        "handling_p99_ms": round(_pct(handling, 0.99), 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hems bench dr", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--events", type=int, default=30)
    p.add_argument("--poll-s", type=float, default=0.05, help="VEN poll interval (default 0.05 s)")
    args = p.parse_args(argv)
    if args.events < 1 or args.poll_s <= 0:
        p.error("--events must be >= 1 and --poll-s > 0")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("hems.dr").setLevel(logging.WARNING)
    result = asyncio.run(run(args.events, args.poll_s))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"DR path over {result['events']} events (VEN polls every {result['poll_interval_s']} s):")
        print(f"  VTN queues event -> limit set: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
        print(
            f"  distribute handed out -> limit set: p50 {result['handling_p50_ms']} ms, p99 {result['handling_p99_ms']} ms"
        )
    return 0
