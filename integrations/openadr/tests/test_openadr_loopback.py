"""The VEN against openleadr's VTN (the simulated one) over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from hems.clock import RealClock
from hems.config import ConfigError
from hems.dr import DRManager, DRNotice, DRState, OptState
from hems.store import Store
from integrations.openadr import create
from integrations.openadr.config import parse
from integrations.openadr.ven import KV_REGISTRATION, Ven
from integrations.openadr.vtn import SimVTN

from .conftest import context, meter_bus

FAST = {"poll_interval_s": 0.05, "report_interval_s": 1}


async def until(predicate, timeout_s: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "hems.sqlite")
    yield s
    s.close()


async def start(vtn: SimVTN, store: Store, **section):
    ctx = context({"vtn_url": vtn.url, "ven_name": "home-1", **FAST, **section}, store=store)
    integration = create(ctx)
    await integration.start()
    await until(lambda: integration.ven.registered, what="registration")
    return integration


async def test_register_and_an_event_becomes_an_active_dr_event(vtn, store):
    integration = await start(vtn, store)
    try:
        dr = integration.dr
        ven_id = integration.ven.ven_id
        assert ven_id in vtn.vens and vtn.vens[ven_id].ven_name == "home-1"
        assert store.kv_get(KV_REGISTRATION)["ven_id"] == ven_id
        now = time.time()
        sent = vtn.add_event(start_ts=now - 1, duration_s=7200, level=2, event_id="e-level")
        ev = await until(lambda: dr.get("openadr:e-level"), what="the event")
        assert ev.state is DRState.ACTIVE and ev.level == 2 and ev.opt is OptState.OPT_IN
        assert ev.start_ts == pytest.approx(sent.start_ts, abs=1e-3) and ev.duration_s == 7200
        assert ev.market_context == "http://hems.example/dr-program" and ev.priority == 1
        assert dr.controller_limit_w() == 3000.0  # level 2, no metered history yet: its fallback cap
        opt = await vtn.wait_for(lambda: [o for o in vtn.opts if o.event_id == "e-level"])
        assert opt[0].opt_type == "optIn" and opt[0].via == "oadrCreatedEvent" and opt[0].ven_id == ven_id

        # the other objectives, and a start randomisation window
        vtn.add_event(
            start_ts=now + 3600, duration_s=1800, shed_w=1500.0, event_id="e-shed", randomization_s=600
        )
        vtn.add_event(start_ts=now + 3600, duration_s=1800, import_cap_w=2500.0, event_id="e-cap")
        vtn.add_event(start_ts=now + 3600, duration_s=1800, price_per_kwh=0.85, event_id="e-price")
        await until(
            lambda: all(dr.get(f"openadr:{k}") for k in ("e-shed", "e-cap", "e-price")), what="3 events"
        )
        shed, cap, price = (dr.get(f"openadr:{k}") for k in ("e-shed", "e-cap", "e-price"))
        assert shed.shed_w == 1500.0 and shed.state is DRState.PENDING
        assert shed.randomization_s == 600 and 0 <= shed.offset_s <= 600
        assert cap.import_cap_w == 2500.0 and price.price_per_kwh == 0.85
        assert dr.controller_limit_w(cap.effective_start_ts + 1) == 2500.0
    finally:
        await integration.stop()


async def test_modification_and_cancellation(vtn, store):
    integration = await start(vtn, store)
    notices: list[tuple[str, str, int]] = []
    integration.dr.on_change(lambda ev, n: notices.append((ev.event_id, str(n), ev.modification_number)))
    try:
        dr = integration.dr
        now = time.time()
        vtn.add_event(start_ts=now - 1, duration_s=3600, import_cap_w=3000.0, event_id="e1")
        await until(lambda: dr.get("openadr:e1"))
        vtn.modify_event("e1", import_cap_w=1800.0, duration_s=7200)
        ev = await until(lambda: (e := dr.get("openadr:e1")) and e.modification_number == 1 and e)
        assert ev.import_cap_w == 1800.0 and ev.duration_s == 7200 and ev.state is DRState.ACTIVE
        assert dr.controller_limit_w() == 1800.0
        vtn.cancel_event("e1")
        ev = await until(lambda: (e := dr.get("openadr:e1")) and e.state is DRState.CANCELLED and e)
        assert ev.modification_number == 2 and dr.controller_limit_w() is None
        await dr.drain()
        assert notices == [
            ("e1", "received", 0),
            ("e1", "started", 0),
            ("e1", "modified", 1),
            ("e1", "cancelled", 2),
        ]
        responses = await vtn.wait_for(
            lambda: len([o for o in vtn.opts if o.event_id == "e1"]) >= 3 and vtn.opts
        )
        assert [o.opt_type for o in responses if o.event_id == "e1"][:3] == ["optIn", "optIn", "optIn"]

        # an event the VTN drops from its list is cancelled implicitly
        vtn.add_event(start_ts=now + 600, duration_s=600, level=1, event_id="e2")
        await until(lambda: dr.get("openadr:e2"))
        del vtn.events["e2"]
        vtn._changed_events(None)
        ev = await until(lambda: (e := dr.get("openadr:e2")) and e.state is DRState.CANCELLED and e)
        assert "implicitly cancelled" in ev.reason
    finally:
        await integration.stop()


async def test_opt_out_travels_back_to_the_vtn(vtn, store):
    integration = await start(vtn, store)
    try:
        dr = integration.dr
        vtn.add_event(start_ts=time.time() - 1, duration_s=3600, level=1, event_id="e1")
        await until(lambda: dr.get("openadr:e1"))
        await vtn.wait_for(lambda: vtn.opts)
        await dr.opt_out("openadr:e1", "guests tonight")
        opts = await vtn.wait_for(
            lambda: [o for o in vtn.opts if o.opt_type == "optOut"] if len(vtn.opts) >= 3 else None
        )
        by_via = {o.via: o for o in opts}
        assert by_via["oadrCreatedEvent"].event_id == "e1"
        created_opt = by_via["oadrCreateOpt"]
        assert created_opt.event_id == "e1" and created_opt.modification_number == 0
        assert created_opt.reason == "overrideStatus" and created_opt.ven_id == integration.ven.ven_id
        assert dr.controller_limit_w() is None
        # a modification of the opted-out event is answered optOut
        vtn.modify_event("e1", level=3)
        await until(lambda: dr.get("openadr:e1").modification_number == 1)
        last = await vtn.wait_for(
            lambda: [o for o in vtn.opts if o.via == "oadrCreatedEvent"][-1:] if len(vtn.opts) >= 4 else None
        )
        assert last[0].opt_type == "optOut"
    finally:
        await integration.stop()


async def test_reports_arrive_at_the_vtn(vtn, store):
    clock = RealClock()
    bus = meter_bus(clock, grid_w=1234.5, import_wh=5000.0)
    ctx = context({"vtn_url": vtn.url, "ven_name": "home-1", **FAST}, store=store, bus=bus)
    integration = create(ctx)
    await integration.start()
    try:
        await until(lambda: integration.ven.registered)
        vtn.add_event(start_ts=time.time() - 1, duration_s=3600, import_cap_w=2000.0, event_id="e1")
        await until(lambda: integration.dr.get("openadr:e1"))

        def latest(r_id: str):
            values = [r.value for r in vtn.reports if r.r_id == r_id]
            return values[-1] if values else None

        await vtn.wait_for(
            lambda: latest("import_limit_w") == 2000.0 and latest("dr_state") == 2.0, timeout_s=6
        )
        await vtn.wait_for(
            lambda: latest("grid_power_w") is not None and latest("grid_import_wh") is not None, timeout_s=6
        )
        assert latest("grid_power_w") == 1234.5 and latest("grid_import_wh") == 5000.0
        assert vtn.messages["oadrRegisterReport"] >= 1
        ven_id = integration.ven.ven_id
        assert {r.ven_id for r in vtn.reports} == {ven_id}

        # an event's verification report (what the DRManager hands the responder) goes out per interval
        t0 = 1_782_921_600.0
        report = {
            "intervals": [
                {"ts": t0, "baseline_w": 2100.0, "metered_w": 900.0, "shed_w": 1200.0},
                {"ts": t0 + 900, "baseline_w": 2000.0, "metered_w": 1100.0, "shed_w": 900.0},
            ]
        }
        await integration.ven.send_report(integration.dr.get("openadr:e1"), report)
        sent = await vtn.wait_for(lambda: [(r.r_id, r.ts, r.value) for r in vtn.reports if r.ts < t0 + 1800])
        assert sorted(sent) == sorted(
            [
                ("grid_power_w", t0, 900.0),
                ("dr_baseline_w", t0, 2100.0),
                ("dr_shed_w", t0, 1200.0),
                ("grid_power_w", t0 + 900, 1100.0),
                ("dr_baseline_w", t0 + 900, 2000.0),
                ("dr_shed_w", t0 + 900, 900.0),
            ]
        )
    finally:
        await integration.stop()


async def test_restart_of_the_ven_during_an_active_event_keeps_it(vtn, tmp_path):
    path = tmp_path / "hems.sqlite"
    store = Store(path)
    integration = await start(vtn, store)
    vtn.add_event(start_ts=time.time() - 1, duration_s=3600, level=3, event_id="e1")
    ev = await until(lambda: integration.dr.get("openadr:e1"))
    ven_id = integration.ven.ven_id
    await integration.stop()
    store.close()

    # the gateway restarts: a new store handle, a new DRManager, a new VEN
    store = Store(path)
    try:
        dr = DRManager(store, clock=RealClock(), timezone="America/Los_Angeles")
        notices: list[str] = []
        dr.on_change(lambda e, n: notices.append(str(n)))
        assert dr.get("openadr:e1").state is DRState.ACTIVE
        assert dr.get("openadr:e1").actuated_ts == ev.actuated_ts
        assert dr.controller_limit_w() == 1500.0  # in force before the VTN is even asked
        ctx = context({"vtn_url": vtn.url, "ven_name": "home-1", **FAST}, store=store, dr=dr)
        integration = create(ctx)
        await integration.start()
        dr.start(0.05)
        await until(lambda: integration.ven.registered)
        assert integration.ven.ven_id == ven_id  # presented the venID it had
        polls = integration.ven.polls
        await until(lambda: integration.ven.polls >= polls + 5)
        await dr.drain()
        assert notices == []  # the VTN sent the same event again: nothing new, never started twice
        assert dr.get("openadr:e1").state is DRState.ACTIVE and len(dr.history("openadr:e1")) == 1
        await integration.stop()
        await dr.stop()
    finally:
        store.close()


async def test_vtn_unreachable_retries_with_backoff_and_events_stay_in_force(store):
    port = free_port()
    clock = RealClock()
    dr = DRManager(store, clock=clock, timezone="America/Los_Angeles")
    url = f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b"
    cfg = parse({"vtn_url": url, "ven_name": "home-1", **FAST})
    ven = Ven(
        cfg, dr=dr, bus=meter_bus(clock), clock=clock, store=store, backoff_initial_s=0.05, backoff_max_s=0.2
    )
    await ven.start()
    vtn = None
    try:
        await until(lambda: ven.failures >= 3, what="retries")
        assert not ven.registered and "127.0.0.1" in ven.last_error
        vtn = SimVTN(port=port, poll_freq_s=1)
        await vtn.start()
        await until(lambda: ven.registered and ven.failures == 0, what="registration after the outage")
        vtn.add_event(start_ts=time.time() - 1, duration_s=3600, import_cap_w=2200.0, event_id="e1")
        await until(lambda: dr.get("openadr:e1"))
        # the VTN goes away during the event: the event stays in force, the VEN keeps trying
        await vtn.stop()
        vtn = None
        await until(lambda: ven.failures >= 2, what="failures after the VTN went away")
        assert dr.get("openadr:e1").state is DRState.ACTIVE and dr.controller_limit_w() == 2200.0
        # an opt-out while it is away is delivered when it is back (the new VTN asks the VEN to register again)
        await dr.opt_out("openadr:e1", "away")
        await dr.drain()
        assert "openadr:e1" in ven._pending_opt_outs
        vtn = SimVTN(port=port, poll_freq_s=1)
        await vtn.start()
        opts = await vtn.wait_for(lambda: [o for o in vtn.opts if o.via == "oadrCreateOpt"], timeout_s=8)
        assert opts[0].event_id == "e1" and opts[0].opt_type == "optOut"
        assert ven._pending_opt_outs == {}
    finally:
        await ven.stop()
        await dr.stop()
        if vtn is not None:
            await vtn.stop()


async def test_dr_notices_reach_the_responder_in_order(vtn, store):
    integration = await start(vtn, store)
    seen: list[DRNotice] = []

    class Spy:
        def __init__(self, inner) -> None:
            self.inner = inner

        async def send_status(self, event, status):
            seen.append(status)
            await self.inner.send_status(event, status)

        async def send_report(self, event, report):
            await self.inner.send_report(event, report)

    integration.dr.register_responder("openadr", Spy(integration.ven))
    try:
        vtn.add_event(start_ts=time.time(), duration_s=1.5, level=1, event_id="short")
        await until(
            lambda: (e := integration.dr.get("openadr:short")) and e.state is DRState.COMPLETED, timeout_s=5
        )
        await integration.dr.drain()
        assert seen == [DRNotice.RECEIVED, DRNotice.STARTED, DRNotice.COMPLETED]
    finally:
        await integration.stop()


def test_config_errors_name_the_key(tmp_path):
    def problems(section: dict) -> list[str]:
        with pytest.raises(ConfigError) as info:
            parse(section)
        return info.value.problems

    assert any("vtn_url is required" in p for p in problems({}))
    assert problems({"vtn_url": "ftp://x"}) == [
        "integrations.openadr.vtn_url = 'ftp://x': must be an http:// or https:// URL"
    ]
    assert any("poll_interval_s = 0" in p for p in problems({"vtn_url": "http://v", "poll_interval_s": 0}))
    assert any("vtn_fingerprint" in p for p in problems({"vtn_url": "http://v", "vtn_fingerprint": "nope"}))
    assert any(
        "integrations.openadr.cert = " in p and "no such readable file" in p
        for p in problems({"vtn_url": "https://v", "cert": str(tmp_path / "x.crt")})
    )
    key = tmp_path / "k.pem"
    key.write_text("x")
    assert any("cert is required when" in p for p in problems({"vtn_url": "https://v", "key": str(key)}))
    assert any(
        "unknown key 'integrations.openadr.port'" in p for p in problems({"vtn_url": "http://v", "port": 1})
    )
    assert any("not https://" in p for p in problems({"vtn_url": "http://v", "ca_file": str(key)}))
    cfg = parse({"vtn_url": "https://v/x/", "vtn_fingerprint": "ab:cd:ef:01:23:45:67:89:aa:bb"})
    assert cfg.vtn_url == "https://v/x" and cfg.vtn_fingerprint == "AB:CD:EF:01:23:45:67:89:AA:BB"
    assert cfg.ven_name == "hems-gateway" and cfg.poll_interval_s is None and cfg.report_interval_s == 60.0
