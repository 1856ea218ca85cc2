"""TLS with a client certificate (MQTT 3.1.1), the plan and DR topics, and a command refused for an opted-out
DR event."""

from __future__ import annotations

import asyncio
import time

from hems.clock import RealClock
from hems.dr import DREvent, DRManager
from hems.store import Store
from integrations.mqtt.tests.conftest import GW, Listener, home_bus, link_section, make_integration, wait_for

BASE = f"hems/{GW}"


async def test_tls_with_client_certificate_and_mqtt_311(tls_broker, pki, tmp_path):
    bus, _ = home_bus()
    listener = Listener(tls_broker, tls=pki)
    section = link_section(
        tls_broker,
        tls=True,
        protocol="3.1.1",
        ca_file=pki["ca_file"],
        cert_file=pki["client_cert"],
        key_file=pki["client_key"],
    )
    integ = make_integration(bus, Store(tmp_path / "hems.sqlite"), section)
    await integ.start()
    try:
        await wait_for(lambda: integ.links[0].connected, "TLS connection")
        bus.publish(bus.latest("inverter", "soc_pct"))
        got = await wait_for(lambda: listener.json_on(f"{BASE}/inverter/soc_pct"), "soc over TLS")
        assert got[-1]["unit"] == "%" and got[-1]["value"] == 60.0
    finally:
        await integ.stop()
        listener.close()


async def test_tls_without_a_client_certificate_is_refused(tls_broker, pki, tmp_path):
    bus, _ = home_bus()
    section = link_section(tls_broker, tls=True, ca_file=pki["ca_file"])
    integ = make_integration(bus, Store(tmp_path / "hems.sqlite"), section)
    await integ.start()
    try:
        bus.publish(bus.latest("inverter", "soc_pct"))
        await asyncio.sleep(0.5)
        assert not integ.links[0].connected
        assert integ.ctx.store.outbox_stats()["size"] >= 1  # kept for later
    finally:
        await integ.stop()


async def test_plan_dr_topics_and_opted_out_dispatch(broker, tmp_path):
    bus, _ = home_bus()
    store = Store(tmp_path / "hems.sqlite")
    dr = DRManager(store, clock=RealClock())
    listener = Listener(broker)
    integ = make_integration(bus, store, link_section(broker), dr=dr)
    await integ.start()
    try:
        await wait_for(lambda: integ.links[0].connected, "connected")
        store.kv_set(
            "plan.latest",
            {
                "start_ts": 1.0,
                "step_s": 900,
                "status": "optimal",
                "cost": 1.23,
                "grid_w": [1.0] * 96,
                "reasons": [["cheap"]],
            },
        )
        plan = await wait_for(lambda: listener.json_on(f"{BASE}/plan"), "plan summary", 3)
        assert plan[-1]["cost"] == 1.23 and len(plan[-1]["grid_w"]) == 12 and plan[-1]["reasons"] == ["cheap"]
        now = time.time()
        await dr.receive(
            DREvent(source="vtn", event_id="e1", start_ts=now - 10, duration_s=600, import_cap_w=3000.0)
        )
        await dr.opt_out("vtn:e1", "homeowner")
        states = await wait_for(
            lambda: [m for m in listener.json_on(f"{BASE}/dr/vtn:e1") if m["opt"] == "opt_out"], "DR state", 3
        )
        assert states[-1]["event_id"] == "e1"
        listener.publish(f"{BASE}/cmd", {"id": "x1", "type": "load_shed", "value_w": 2000, "duration_s": 60})
        got = await wait_for(
            lambda: [m for m in listener.json_on(f"{BASE}/cmd/response") if m["id"] == "x1"], "answer"
        )
        assert got[0]["status"] == "rejected" and "opted out of DR event 'e1'" in got[0]["reason"]
    finally:
        await integ.stop()
        listener.close()
