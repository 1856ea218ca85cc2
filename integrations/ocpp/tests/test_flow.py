"""End to end over real websockets on loopback: the CSMS, the simulated charge point and an EV, per version."""

from __future__ import annotations

import pytest

from hems.bus import Bus
from hems.model import Command, CommandError, DeviceStatus, Quantity, Setting
from integrations.ocpp import profiles as pf
from integrations.ocpp.csms import OcppIntegration

from .conftest import CP_ID, PASSWORD, make_context, wait_for

Q = Quantity
VERSIONS = ["1.6", "2.0.1", "2.1"]


def power_readings(bus: Bus):
    return bus.subscribe(device_id=CP_ID, quantity=str(Q.POWER_W))


@pytest.mark.parametrize("version", VERSIONS)
async def test_boot_plug_authorize_charge_limit_stop(rig, version):
    r = await rig(version)
    await r.ready()
    dev, cp = r.dev, r.cp
    assert r.bus.status(CP_ID)[0] is DeviceStatus.OK
    assert dev.version == version and dev.vendor == "HEMS" and dev.model == "SimCharger"
    # the safe default: TxDefaultProfile on connector/EVSE 0, stack level 0, no end, 3680 W
    safe = next(p for p in cp.profiles if p.id == pf.SAFE_PROFILE_ID)
    assert (safe.purpose, safe.connector, safe.stack_level, safe.valid_to) == (pf.TX_DEFAULT, 0, 0, None)
    assert safe.unit == "W" and safe.periods[0][1] == 3680.0  # the charger offers W: the CSMS uses it
    assert r.value(Q.EV_POWER_LIMIT_W) == 3680.0
    assert cp.meter_interval_s == 1.0  # configured at boot

    # plug-in -> authorize -> transaction, charging at the safe default until the planner speaks
    await r.charging()
    session = dev.active_session
    assert session.id_tag == "SIMTAG01" and session.connector == 1
    assert str(cp.tx.id) == session.tx_id
    assert cp.limit_w == 3680.0
    await wait_for(lambda: r.value(Q.POWER_W) == 3680.0, "a meter value at 3680 W")
    assert r.value(Q.EV_PLUGGED) is True
    assert r.value(Q.CURRENT_A) == pytest.approx(3680.0 / 240.0, abs=0.01)
    assert r.value(Q.EV_SOC_PCT) == pytest.approx(r.ev.last.ev_soc_pct, abs=0.2)

    # the planner raises the limit: a TxProfile for this transaction, checked with GetCompositeSchedule
    await dev.set_ev_power_limit_w(7200.0)
    tx_profile = next(p for p in cp.profiles if p.id == pf.TX_PROFILE_ID)
    assert tx_profile.purpose == pf.TX and tx_profile.transaction_id == session.tx_id
    assert tx_profile.valid_to == pytest.approx(r.clock.now() + 900.0, abs=5.0)
    assert cp.limit_w == 7200.0 and r.value(Q.EV_POWER_LIMIT_W) == 7200.0
    await wait_for(lambda: r.value(Q.POWER_W) == 7200.0, "a meter value at 7200 W")

    # lowering it is honoured: every meter value after the change is at or below the new limit
    await dev.set_ev_power_limit_w(5000.0)
    sub = power_readings(r.bus)
    seen: list[float] = []
    try:
        await wait_for(
            lambda: seen.extend(x.value for x in sub.drain()) or len(seen) >= 4, "more meter values"
        )
    finally:
        sub.close()
    assert seen[1:] and all(p <= 5000.0 for p in seen[1:]), seen
    assert seen[-1] == 5000.0

    # 0 pauses, None is the charger's maximum
    await dev.set_ev_power_limit_w(0.0)
    await wait_for(lambda: r.value(Q.POWER_W) == 0.0, "charging paused")
    assert cp.status() == "SuspendedEVSE"
    await dev.set_ev_power_limit_w(None)
    assert cp.limit_w == 11520.0 and r.value(Q.EV_POWER_LIMIT_W) == "none"
    await wait_for(lambda: r.value(Q.POWER_W) == 11520.0, "full power")

    # the EV leaves: the transaction stops, the numbers agree on both sides
    r.ev.unplug()
    await wait_for(lambda: dev.active_session is None and cp.tx is None, "the transaction to stop")
    done = dev.finished[-1]
    charger_tx = cp.finished[-1]
    assert done.tx_id == str(charger_tx.id) and done.reason in ("EVDisconnected",)
    charged_wh = cp.energy_wh - charger_tx.meter_start_wh
    assert charged_wh > 5.0
    assert done.energy_wh == pytest.approx(charged_wh, abs=1.0)  # 1.6 meter values are whole Wh
    assert r.value(Q.SESSION_ENERGY_WH) == pytest.approx(done.energy_wh, abs=0.1)
    soc_gain_wh = (r.ev.last.ev_soc_pct - 40.0) / 100.0 * r.ev.params.ev.capacity_wh
    assert soc_gain_wh == pytest.approx(charged_wh * r.ev.params.ev.charge_efficiency, rel=0.02, abs=0.5)
    assert r.value("session_duration_s") == pytest.approx(done.stop_ts - done.start_ts, abs=0.5)
    assert r.value("session_id_tag") == "SIMTAG01"
    await wait_for(lambda: r.value(Q.EV_PLUGGED) is False, "ev_plugged false")
    assert r.value(Q.POWER_W) == 0.0
    await wait_for(lambda: r.value("connector_status") == "Available", "connector Available")
    assert dev.bad_frames == 0


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_limit_in_amps_never_exceeds_the_watts_asked(rig, version):
    r = await rig(version, cp_kwargs={"rate_units": ("A",)}, device={"voltage_v": 240})
    await r.ready()
    assert r.dev.rate_unit == "A"
    safe = next(p for p in r.cp.profiles if p.id == pf.SAFE_PROFILE_ID)
    assert safe.unit == "A" and safe.periods[0][1] == 15.3  # 3680 W / 240 V rounded down
    await r.charging()
    await r.dev.set_ev_power_limit_w(5000.0)  # 20.83 A -> 20.8 A = 4992 W
    assert r.cp.limit_w == pytest.approx(4992.0)
    assert r.value(Q.EV_POWER_LIMIT_W) == pytest.approx(4992.0)
    await wait_for(lambda: r.value(Q.POWER_W) == pytest.approx(4992.0), "4992 W")


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_reconnect_mid_transaction_keeps_the_session(rig, version):
    r = await rig(version)
    await r.ready()
    await r.charging()
    await r.dev.set_ev_power_limit_w(6000.0)
    await wait_for(lambda: r.value(Q.POWER_W) == 6000.0, "6000 W")
    session = r.dev.active_session
    tx_id, energy_before = session.tx_id, session.energy_wh

    await r.cp.drop_connection()
    await wait_for(lambda: r.bus.status(CP_ID)[0] is DeviceStatus.OFFLINE, "offline")
    assert r.dev.active_session is session  # kept while the charger is away
    with pytest.raises(CommandError, match=r"not connected|offline"):
        await r.bus.send(Command(CP_ID, Setting.EV_POWER_LIMIT_W, 4000.0))
    assert r.cp.tx is not None and r.cp.limit_w == 6000.0  # the charger goes on with its profile

    await wait_for(lambda: r.bus.status(CP_ID)[0] is DeviceStatus.OK, "back online")
    await r.ready()
    await wait_for(lambda: session.energy_wh > energy_before + 1.0, "meter values into the same session")
    assert r.dev.active_session is session and list(r.dev.sessions) == [tx_id]
    assert r.cp.boots == 1 and r.cp.connects == 2  # reconnected, not rebooted

    sent = await r.bus.send(Command(CP_ID, Setting.EV_POWER_LIMIT_W, 4000.0))
    assert r.bus.asked(CP_ID, Setting.EV_POWER_LIMIT_W) == sent
    await wait_for(lambda: r.value(Q.POWER_W) == 4000.0, "4000 W after the reconnect")
    r.ev.unplug()
    await wait_for(lambda: r.dev.active_session is None and r.cp.tx is None, "stop")
    assert [s.tx_id for s in r.dev.finished] == [tx_id]
    assert r.dev.finished[-1].energy_wh == pytest.approx(
        r.cp.energy_wh - r.cp.finished[-1].meter_start_wh, abs=1.0
    )


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_rejected_profile_is_a_clear_command_error(rig, version, caplog):
    r = await rig(version)
    await r.ready()
    await r.charging()
    r.cp.reject_profiles = True
    with pytest.raises(
        CommandError, match=r"charger 'garage' rejected the charging profile \(TxProfile, 5000 W\)"
    ):
        await r.bus.send(Command(CP_ID, Setting.EV_POWER_LIMIT_W, 5000.0))
    assert r.bus.asked(CP_ID, Setting.EV_POWER_LIMIT_W) is None  # not recorded as applied
    assert "rejected the TxProfile limit of 5000 W" in caplog.text
    assert r.cp.limit_w == 3680.0 and r.value(Q.EV_POWER_LIMIT_W) == 3680.0
    r.cp.reject_profiles = False
    await r.dev.set_ev_power_limit_w(5000.0)
    assert r.cp.limit_w == 5000.0


async def test_a_silent_gateway_leaves_the_charger_at_the_safe_default(rig):
    """The planner's profile expires when nobody refreshes it; a restarted gateway adopts the running session."""
    r = await rig("2.0.1", section={"profile_validity_s": 6})
    await r.ready()
    await r.charging()
    await r.dev.set_ev_power_limit_w(9000.0)
    await wait_for(lambda: r.value(Q.POWER_W) == 9000.0, "9000 W")
    await r.clock.sleep(8.0)  # longer than the validity: the gateway's refresh keeps the limit alive
    assert r.cp.limit_w == 9000.0
    port = r.integ.port
    await r.integ.stop()  # the gateway goes silent
    await wait_for(
        lambda: r.cp.limit_w == 3680.0, "the safe default after the profile expired", timeout_s=3.0
    )
    await wait_for(lambda: r.ev.last.ev_power_w == 3680.0, "the EV at the safe default")
    assert r.cp.tx is not None  # still charging, just slower

    bus = Bus(r.clock)  # the gateway comes back on the same port, knowing nothing
    dev_cfg = {"type": "ocpp", "id": CP_ID, "password": PASSWORD, "authorized_id_tags": ["SIMTAG01"]}
    integ = OcppIntegration(make_context(bus, {"port": port, "meter_interval_s": 1}, [dev_cfg]))
    await integ.start()
    r.extra.append(integ)
    dev = integ.devices[CP_ID]
    await wait_for(lambda: dev.ready.is_set(), "the reconnect setup", timeout_s=8.0)
    await wait_for(lambda: dev.active_session is not None, "the running session adopted")
    assert dev.active_session.tx_id == str(r.cp.tx.id)
    await dev.set_ev_power_limit_w(6000.0)
    await wait_for(lambda: bus.value(CP_ID, Q.POWER_W) == 6000.0, "6000 W from the new gateway")


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_remote_start_and_stop(rig, version):
    r = await rig(version, cp_kwargs={"id_tag": "STRANGER"})
    await r.ready()
    r.ev.plug()
    await wait_for(lambda: r.value(Q.EV_PLUGGED) is True, "plugged")
    await r.clock.sleep(2.0)
    assert r.cp.limit_w == 0.0 and r.ev.last.ev_power_w == 0.0  # unknown tag: no charging
    await r.dev.remote_start("HEMS")
    await wait_for(lambda: r.cp.tx is not None and r.cp.tx.authorized, "remote start")
    await wait_for(
        lambda: r.dev.active_session is not None and r.dev.active_session.id_tag == "HEMS", "session"
    )
    await wait_for(lambda: r.value(Q.POWER_W) == 3680.0, "charging")
    await r.dev.remote_stop()
    await wait_for(lambda: r.dev.active_session is None and r.cp.tx is None, "remote stop")
    assert r.dev.finished[-1].reason == "Remote"
    assert r.value(Q.POWER_W) == 0.0 and r.cp.limit_w == 0.0
    with pytest.raises(CommandError, match="no session to stop"):
        await r.dev.remote_stop()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_availability_reset_and_clearing_the_limit(rig, version):
    r = await rig(version)
    await r.ready()
    assert await r.dev.change_availability(False, 1) == "Accepted"
    await wait_for(lambda: r.value("connector_status") == "Unavailable", "Unavailable")
    assert await r.dev.change_availability(True, 1) == "Accepted"
    await wait_for(lambda: r.value("connector_status") == "Available", "Available")

    await r.dev.set_ev_power_limit_w(8000.0)
    assert any(p.id == pf.PLAN_PROFILE_ID for p in r.cp.profiles)
    await r.dev.clear_limit()
    assert {p.id for p in r.cp.profiles} == {pf.SAFE_PROFILE_ID}
    assert r.value(Q.EV_POWER_LIMIT_W) == 3680.0

    await r.dev.set_ev_power_limit_w(7000.0)
    assert await r.dev.reset() == "Accepted"
    await wait_for(lambda: r.cp.boots == 2 and r.dev.boots == 2, "the charger to reboot")
    await r.ready()
    # after the reboot the gateway installs the safe default again and re-applies the planner's limit
    await wait_for(lambda: r.value(Q.EV_POWER_LIMIT_W) == 7000.0, "the limit re-applied")
    assert {p.id for p in r.cp.profiles} == {pf.SAFE_PROFILE_ID, pf.PLAN_PROFILE_ID}
    await r.charging()
    await wait_for(lambda: r.value(Q.POWER_W) == 7000.0, "the next session at the planner's limit")


async def test_a_composite_schedule_above_the_limit_fails_the_command(rig):
    r = await rig("2.0.1")
    await r.ready()
    await r.dev.set_ev_power_limit_w(9000.0)
    r.cp.accept_profile = lambda profile: "Accepted"  # a charger that says yes and keeps the old profile
    with pytest.raises(
        CommandError, match="accepted a 5000 W limit but its composite schedule allows 9000 W"
    ):
        await r.dev.set_ev_power_limit_w(5000.0)
    assert r.value(Q.EV_POWER_LIMIT_W) == 9000.0
