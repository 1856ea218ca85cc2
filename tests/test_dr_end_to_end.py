"""Demand response end to end in dev mode: an OpenADR event from the (simulated) utility VTN over real HTTP
becomes a core DR event, the planner re-plans, the simulated home's import drops in the window, and the
homeowner's opt-out travels back to the VTN."""

from __future__ import annotations

import asyncio

import pytest

from hems.config import parse_config
from hems.dr import DRState
from hems.runtime import Runtime
from tests.conftest import OWNER_PASSWORD, login


async def wait(predicate, timeout_s: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


async def test_openadr_event_caps_import_and_opt_out_reaches_the_vtn(tmp_path):
    # Tuesday 7 July 2026, 23:00 local: off-peak, the EV is home and the plan charges it at full power
    cfg = parse_config(
        {
            "gateway": {"data_dir": str(tmp_path)},
            "web": {"port": 0},
            "sim": {"speed": 120, "tick_s": 0.05, "start": "2026-07-07T23:00"},
            "controller": {"interval_s": 5},
        }
    )
    rt = Runtime.for_dev(cfg)
    rt.owner_password = OWNER_PASSWORD
    await rt.start()
    try:
        vtn = next(p.vtn for p in rt.dev_peers if hasattr(p, "vtn"))
        meter = "grid-meter"
        await wait(
            lambda: (rt.bus.value(meter, "grid_power_w") or 0) > 5000, 20, "off-peak EV charging import"
        )
        cap_w = 2000.0
        start = rt.clock.now() + 10 * 60
        vtn.add_event(start_ts=start, duration_s=3600, import_cap_w=cap_w, event_id="e2e-1")
        ev = await wait(lambda: rt.dr.get("openadr:e2e-1"), 20, "the event at the VEN")
        assert ev.import_cap_w == cap_w and ev.state is DRState.PENDING
        # the planner re-planned for it (on the change, not at its next 15-min cycle)
        await wait(
            lambda: rt.latest_plan and rt.latest_plan["forecast"]["dr_windows"], 10, "a plan with the event"
        )
        assert rt.latest_plan["reason"].startswith("DR ")
        await wait(lambda: rt.dr.get("openadr:e2e-1").state is DRState.ACTIVE, 30, "the event to start")
        await wait(lambda: rt.clock.now() > start + 120, 10, "two minutes into the event")
        # the utility verifies on interval averages: every 5 minutes within the cap (a thermostat switching
        # on may show for a physics tick before the controller answers it)
        samples: list[tuple[float, float]] = []
        while rt.clock.now() < start + 22 * 60:
            samples.append((rt.clock.now(), float(rt.bus.value(meter, "grid_power_w"))))
            await asyncio.sleep(0.05)
        t0 = samples[0][0]
        buckets: dict[int, list[float]] = {}
        for t, w in samples:
            buckets.setdefault(int((t - t0) // 300), []).append(w)
        averages = [sum(v) / len(v) for v in buckets.values() if len(v) >= 5]
        assert len(averages) >= 3
        assert max(averages) <= cap_w * 1.02, averages
        # the homeowner opts out from the dashboard API; the VTN hears of it
        async with await login(rt.url) as s:
            async with s.post(rt.url + "/api/dr/openadr:e2e-1/opt-out", json={"reason": "guests"}) as resp:
                assert resp.status == 200
                assert (await resp.json())["state"] == "opted_out"
            async with s.get(rt.url + "/api/dr") as resp:
                assert [e["state"] for e in (await resp.json())["events"]] == ["opted_out"]
            async with s.post(rt.url + "/api/dr/openadr:nope/opt-out") as resp:
                assert resp.status == 404
        await wait(
            lambda: (
                any(o.opt_type == "optOut" for o in vtn.opts)
                or any(getattr(o, "event_id", "") == "e2e-1" for o in vtn.opts)
            ),
            20,
            "the opt-out at the VTN",
        )
    finally:
        await rt.stop()
