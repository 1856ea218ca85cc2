"""Against a real Mosquitto: telemetry layout, store-and-forward across a broker outage and a gateway restart,
commands with responses, Home Assistant discovery and controls."""

from __future__ import annotations

import asyncio
import json
import time

from hems.model import Reading, Setting
from hems.store import Store
from integrations.mqtt.tests.conftest import (
    GW,
    Listener,
    free_port,
    home_bus,
    link_section,
    make_integration,
    wait_for,
)

BASE = f"hems/{GW}"


async def test_telemetry_arrives_with_the_documented_layout(broker, tmp_path):
    bus, _ = home_bus()
    listener = Listener(broker)
    integ = make_integration(bus, Store(tmp_path / "hems.sqlite"), link_section(broker))
    await integ.start()
    try:
        await wait_for(lambda: b"online" in listener.on(f"{BASE}/status"), "status online")
        bus.publish(Reading("meter", "grid_power_w", 1234.5, 1000.0))
        bus.publish(Reading("ev", "ev_plugged", True, 1001.0))
        got = await wait_for(lambda: listener.json_on(f"{BASE}/meter/grid_power_w"), "grid power")
        assert got[-1] == {"value": 1234.5, "unit": "W", "ts": 1000.0}
        got = await wait_for(lambda: listener.json_on(f"{BASE}/ev/ev_plugged"), "ev plugged")
        assert got[-1] == {"value": True, "unit": "", "ts": 1001.0}
        await wait_for(lambda: integ.ctx.store.outbox_stats()["size"] == 0, "outbox drained")
    finally:
        await integ.stop()
    await wait_for(lambda: listener.on(f"{BASE}/status")[-1:] == [b"offline"], "status offline")
    listener.close()


async def test_rate_limit_latest_value_wins(broker, tmp_path):
    bus, _ = home_bus()
    listener = Listener(broker)
    integ = make_integration(
        bus, Store(tmp_path / "hems.sqlite"), link_section(broker, telemetry_interval_s=0.5)
    )
    await integ.start()
    try:
        await wait_for(lambda: integ.links[0].connected, "connected")
        for i in range(20):
            bus.publish(Reading("meter", "voltage_v", float(i), 2000.0 + i))
        await asyncio.sleep(0.9)
        values = [m["value"] for m in listener.json_on(f"{BASE}/meter/voltage_v")]
        assert values[0] == 0.0 and values[-1] == 19.0 and len(values) == 2
    finally:
        await integ.stop()
        listener.close()


async def test_broker_outage_every_point_arrives_in_order(broker, tmp_path):
    bus, _ = home_bus()
    listener = Listener(broker)
    store = Store(tmp_path / "hems.sqlite")
    integ = make_integration(bus, store, link_section(broker))
    await integ.start()
    topic = f"{BASE}/meter/grid_power_w"
    try:
        await wait_for(lambda: integ.links[0].connected, "connected")
        seq = 0
        for _ in range(50):
            bus.publish(Reading("meter", "grid_power_w", float(seq), float(seq)))
            seq += 1
            await asyncio.sleep(0.002)
        await wait_for(lambda: len(listener.on(topic)) >= 50, "first 50 points")
        broker.stop()
        await wait_for(lambda: not integ.links[0].connected, "disconnect seen")
        for _ in range(300):  # published during the outage: kept in the outbox
            bus.publish(Reading("meter", "grid_power_w", float(seq), float(seq)))
            seq += 1
            if seq % 50 == 0:
                await asyncio.sleep(0.05)
        assert store.outbox_stats()["size"] >= 300
        await asyncio.sleep(1.0)
        broker.start()
        for _ in range(50):
            bus.publish(Reading("meter", "grid_power_w", float(seq), float(seq)))
            seq += 1
            await asyncio.sleep(0.002)
        await wait_for(lambda: len({m["value"] for m in listener.json_on(topic)}) >= seq, "every point", 15)
        values = [m["value"] for m in listener.json_on(topic)]
        unique = list(dict.fromkeys(values))
        assert unique == [float(i) for i in range(seq)]  # in order, none missing
        assert len(values) - len(unique) <= 100  # at most a window re-sent (QoS 1)
        # after the first occurrence of each value nothing goes backwards beyond one re-sent window
        await wait_for(lambda: store.outbox_stats()["size"] == 0, "outbox drained")
        assert store.outbox_stats()["dropped_total"] == 0
    finally:
        await integ.stop()
        listener.close()


async def test_gateway_restart_with_a_full_outbox_delivers_it(broker, tmp_path):
    bus, _ = home_bus()
    db = tmp_path / "hems.sqlite"
    store = Store(db, outbox_max_rows=100)
    dead = {"links": [{**link_section(broker)["links"][0], "port": free_port()}]}  # nothing listens there
    integ = make_integration(bus, store, dead)
    await integ.start()
    for i in range(130):
        bus.publish(Reading("meter", "grid_power_w", float(i), float(i)))
    await wait_for(lambda: store.outbox_stats()["dropped_total"] == 30, "30 oldest dropped")
    await asyncio.sleep(0.05)
    assert store.outbox_stats()["size"] == 100
    # the dropped count is a reading (at most one a second)
    await wait_for(lambda: bus.value("mqtt", "outbox_dropped") == 30.0, "dropped reading", 3)
    await integ.stop()
    store.close()

    listener = Listener(broker)
    bus2, _ = home_bus()
    store2 = Store(db, outbox_max_rows=100)
    integ2 = make_integration(bus2, store2, link_section(broker))
    await integ2.start()
    topic = f"{BASE}/meter/grid_power_w"
    try:
        await wait_for(lambda: len(listener.on(topic)) >= 100, "the outbox after the restart")
        values = [m["value"] for m in listener.json_on(topic)]
        assert list(dict.fromkeys(values)) == [float(i) for i in range(30, 130)]
        await wait_for(lambda: store2.outbox_stats()["size"] == 0, "outbox empty")
        status = await wait_for(lambda: listener.json_on(f"{BASE}/link/cloud"), "link status")
        assert status[-1]["outbox_dropped_total"] == 30
        dropped = await wait_for(lambda: listener.json_on(f"{BASE}/mqtt/outbox_dropped"), "dropped reading")
        assert dropped[-1]["value"] == 30.0
    finally:
        await integ2.stop()
        listener.close()


async def _command(listener: Listener, payload, cid) -> dict:
    t0 = time.monotonic()
    listener.publish(f"{BASE}/cmd", payload)

    def answer():
        for m in listener.json_on(f"{BASE}/cmd/response"):
            if m.get("id") == cid and m["status"] in ("accepted", "rejected"):
                return m
        return None

    got = await wait_for(answer, f"response to {cid}", 3)
    assert time.monotonic() - t0 < 2.0
    return got


async def test_commands_respond_act_hold_and_reject(broker, tmp_path):
    bus, devs = home_bus(soc_pct=60.0)
    listener = Listener(broker)
    section = link_section(broker, command_token="s3cret")
    integ = make_integration(bus, Store(tmp_path / "hems.sqlite"), section)
    await integ.start()
    try:
        await wait_for(lambda: integ.links[0].connected, "connected")
        await asyncio.sleep(0.1)  # subscription
        cmd = {"id": "c1", "type": "battery_power", "value_w": -4000, "duration_s": 1.5, "token": "s3cret"}
        got = await _command(listener, cmd, "c1")
        assert got["status"] == "accepted", got
        assert ("battery_charge_power_w", -4000.0) in devs["inverter"].calls
        asked = bus.asked("inverter", Setting.BATTERY_CHARGE_POWER_W)
        assert asked.value == -4000.0 and asked.source == "mqtt:cloud"
        override = integ.dispatch.active_override(time.time())
        assert override["battery_charge_power_w"] == -4000.0
        # the fallback re-asserts every second against whatever else commanded the battery
        devs["inverter"].calls.clear()
        await wait_for(lambda: ("battery_charge_power_w", -4000.0) in devs["inverter"].calls, "re-assert", 2)
        done = await wait_for(
            lambda: [
                m
                for m in listener.json_on(f"{BASE}/cmd/response")
                if m["id"] == "c1" and m["status"] == "completed"
            ],
            "completed",
            4,
        )
        assert done and integ.dispatch.active_override(time.time()) is None

        # the same id again (a QoS 1 redelivery): answered again, not executed again
        devs["inverter"].calls.clear()
        listener.publish(f"{BASE}/cmd", cmd)
        await wait_for(
            lambda: (
                len(
                    [
                        m
                        for m in listener.json_on(f"{BASE}/cmd/response")
                        if m["id"] == "c1" and m["status"] == "accepted"
                    ]
                )
                >= 2
            ),
            "repeat",
        )
        assert not devs["inverter"].calls

        # limits: the reserve
        bus.publish(Reading("inverter", "soc_pct", 15.0, time.time()))
        got = await _command(listener, {**cmd, "id": "c2", "duration_s": 60}, "c2")
        assert got["status"] == "rejected" and "reserve" in got["reason"]
        # the service limit
        bus.publish(Reading("meter", "grid_power_w", 45000.0, time.time()))
        got = await _command(listener, {**cmd, "id": "c3", "value_w": 8000, "duration_s": 60}, "c3")
        assert got["status"] == "rejected" and "service limit" in got["reason"]
        # unauthorised and malformed: rejected, the integration keeps running
        got = await _command(listener, {**cmd, "id": "c4", "token": "nope"}, "c4")
        assert got["status"] == "rejected" and "unauthorised" in got["reason"]
        listener.publish(f"{BASE}/cmd", b"\x00garbage{")
        got = await wait_for(
            lambda: [m for m in listener.json_on(f"{BASE}/cmd/response") if m["id"] is None],
            "garbage answered",
        )
        assert got[0]["status"] == "rejected" and "JSON" in got[0]["reason"]
        got = await _command(
            listener, {"id": "c5", "type": "ev_pause", "duration_s": 30, "token": "s3cret"}, "c5"
        )
        assert got["status"] == "accepted"
        assert ("ev_power_limit_w", 0.0) in devs["ev"].calls
        got = await _command(listener, {"id": "c6", "type": "return_to_plan", "token": "s3cret"}, "c6")
        assert got["status"] == "accepted"
        await wait_for(
            lambda: [
                m
                for m in listener.json_on(f"{BASE}/cmd/response")
                if m["id"] == "c5" and m["status"] == "completed"
            ],
            "c5 ended",
        )
        assert integ.dispatch.active_override(time.time()) is None
    finally:
        await integ.stop()
        listener.close()


async def test_home_assistant_discovery_and_controls(broker, tmp_path):
    bus, devs = home_bus()
    listener = Listener(broker, topic="#", client_id="ha")
    section = link_section(broker, home_assistant=True, telemetry=False)
    integ = make_integration(bus, None, section)
    await integ.start()
    try:
        cfg_topic = f"homeassistant/sensor/{GW}/meter_energy_import_wh/config"
        raw = await wait_for(lambda: listener.on(cfg_topic), "energy import discovery")
        cfg = json.loads(raw[-1])
        assert cfg["device_class"] == "energy" and cfg["state_class"] == "total_increasing"
        assert (
            cfg["unit_of_measurement"] in ("Wh", "kWh")
            and cfg["state_topic"] == f"{BASE}/meter/energy_import_wh"
        )
        assert cfg["availability_topic"] == f"{BASE}/status" and cfg["device"]["name"] == "Meter"
        late = Listener(broker, topic=cfg_topic, client_id="ha-late")  # HA restarting: config is retained
        try:
            await wait_for(lambda: late.messages, "retained discovery")
            assert late.messages[0][2] is True
        finally:
            late.close()
        soc = json.loads(
            (
                await wait_for(
                    lambda: listener.on(f"homeassistant/sensor/{GW}/inverter_soc_pct/config"), "soc"
                )
            )[-1]
        )
        assert soc["device_class"] == "battery" and soc["unit_of_measurement"] == "%"
        pv = json.loads(listener.on(f"homeassistant/sensor/{GW}/inverter_pv_power_w/config")[-1])
        assert pv["device_class"] == "power" and pv["unit_of_measurement"] == "W"
        number = json.loads(
            (
                await wait_for(
                    lambda: listener.on(f"homeassistant/number/{GW}/inverter_battery_setpoint/config"),
                    "number",
                )
            )[-1]
        )
        select = json.loads(listener.on(f"homeassistant/select/{GW}/thermostat_hvac_mode_select/config")[-1])
        switch = json.loads(listener.on(f"homeassistant/switch/{GW}/water-heater_relay/config")[-1])

        listener.publish(switch["command_topic"], "OFF")
        await wait_for(lambda: ("switch_on", False) in devs["water-heater"].calls, "relay off")
        assert integ.dispatch.active_override(time.time())["water_heater_enabled"] is False
        listener.publish(select["command_topic"], "heat")
        await wait_for(lambda: ("hvac", "heat") in devs["thermostat"].calls, "hvac heat")
        listener.publish(number["command_topic"], "2500")
        await wait_for(
            lambda: ("battery_charge_power_w", 2500.0) in devs["inverter"].calls, "battery setpoint"
        )
        listener.publish(select["command_topic"], "party")  # refused, nothing sent, still running
        listener.publish(number["command_topic"], "NaN")
        await asyncio.sleep(0.3)
        assert ("hvac", "party") not in devs["thermostat"].calls
        button = json.loads(listener.on(f"homeassistant/button/{GW}/gateway_return_to_plan/config")[-1])
        listener.publish(button["command_topic"], "PRESS")
        await wait_for(lambda: integ.dispatch.active_override(time.time()) is None, "return to plan")
    finally:
        await integ.stop()
        listener.close()
