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

from hems.model import Capability


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


async def run_devices(events: int = 10, poll_s: float = 0.05) -> dict:
    """The whole path in the dev-mode gateway at real time: a SIMPLE level-2 event queued at the VTN -> the VEN
    polls it -> DR lifecycle -> controller (poked at once) -> EV paused over OCPP (profile accepted), water heater
    off over Zigbee (relay confirmed), battery discharging: the time until the last of the three is commanded."""
    from hems.config import parse_config
    from hems.dr import DRState
    from hems.model import Setting
    from hems.runtime import Runtime

    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config(
            {
                "gateway": {"data_dir": tmp, "log_level": "warning"},
                "web": {"port": 0},
                "sim": {"start": "2026-07-07T23:00"},
                "controller": {"interval_s": 5},
                "integrations": {"sim": {}, "openadr": {"poll_interval_s": poll_s}},
            }
        )
        rt = Runtime.for_dev(cfg)
        await rt.start(serve_web=False)
        try:
            vtn = next(peer.vtn for peer in rt.dev_peers if hasattr(peer, "vtn"))
            deadline = time.monotonic() + 20
            while not (
                rt.bus.first(Capability.EV_CHARGER)
                and any(d.info.extra.get("load") == "water_heater" for d in rt.bus.devices(Capability.SWITCH))
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the simulated devices did not come up")
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            times = []
            for i in range(events):
                event_id = f"bench-dev-{i}"
                t0 = time.perf_counter()
                vtn.add_event(start_ts=rt.clock.now() - 1, duration_s=3600, level=2, event_id=event_id)
                t_event = rt.clock.now() - 1e-3
                ev_id = rt.bus.first(Capability.EV_CHARGER).info.device_id
                heater_id = next(
                    d.info.device_id
                    for d in rt.bus.devices(Capability.SWITCH)
                    if d.info.extra.get("load") == "water_heater"
                )
                battery_id = rt.bus.first(Capability.BATTERY).info.device_id

                def in_dr_state(
                    ev_id=ev_id, heater_id=heater_id, battery_id=battery_id, t_event=t_event
                ) -> bool:
                    ev = rt.bus.asked(ev_id, Setting.EV_POWER_LIMIT_W)
                    wh = rt.bus.asked(heater_id, Setting.SWITCH_ON)
                    bat = rt.bus.asked(battery_id, Setting.BATTERY_CHARGE_POWER_W)
                    return (
                        ev is not None
                        and ev.value == 0.0
                        and ev.ts >= t_event
                        and wh is not None
                        and wh.value is False
                        and bat is not None
                        and isinstance(bat.value, float)
                        and bat.value < 0
                        and bat.ts >= t_event
                    )

                deadline = time.monotonic() + 20
                while not in_dr_state():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"event {event_id}: the devices did not reach the DR state")
                    await asyncio.sleep(0.002)
                seen = {"all": time.perf_counter()}
                times.append((max(seen.values()) - t0) * 1000)
                vtn.cancel_event(event_id)
                deadline = time.monotonic() + 10
                while rt.dr.get(f"openadr:{event_id}").state is not DRState.CANCELLED:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"event {event_id} was not cancelled")
                    await asyncio.sleep(0.01)
                del vtn.events[event_id]
                await asyncio.sleep(6.0)  # a controller cycle back to the plan: the next event commands anew
        finally:
            await rt.stop()
    return {
        "benchmark": "dr-devices",
        "path": "VTN queues a level-2 event -> VEN poll -> DR lifecycle -> controller -> EV (OCPP), water heater "
        "(Zigbee) and battery commanded",
        "events": events,
        "poll_interval_s": poll_s,
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(_pct(times, 0.99), 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hems bench dr", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--events", type=int, default=30)
    p.add_argument("--poll-s", type=float, default=0.05, help="VEN poll interval (default 0.05 s)")
    p.add_argument(
        "--devices",
        action="store_true",
        help="the whole path in the dev-mode gateway: event -> every device commanded (slower: ~8 s per event)",
    )
    args = p.parse_args(argv)
    if args.events < 1 or args.poll_s <= 0:
        p.error("--events must be >= 1 and --poll-s > 0")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("hems.dr").setLevel(logging.WARNING)
    if args.devices:
        result = asyncio.run(run_devices(args.events, args.poll_s))
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"VTN -> every device commanded over {result['events']} events: p50 {result['p50_ms']} ms, "
                f"p99 {result['p99_ms']} ms"
            )
        return 0
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
