"""The integration against the simulated inverter over real Modbus TCP on loopback: discovery, decoding, the
mapping onto capabilities, controls that act on the physics and read back, and revert timers."""

from __future__ import annotations

import logging

import pytest

from hems.model import Capability, Command, CommandError, DeviceStatus, Setting
from integrations.sunspec.client import DeviceRefused, SunSpecClient, plan_reads
from integrations.sunspec.device import DeviceConfig, SunSpecInverter
from integrations.sunspec.models import SUNS_MARKER, encode_model, model_def
from integrations.sunspec.sim import MODEL_IDS, RegisterServer, SunSpecSimInverter

from .conftest import PARAMS, advance, readings


async def test_discovery_decodes_every_model_with_numbers(inverter, home):
    client = SunSpecClient("127.0.0.1", inverter.port, timeout_s=1.0)
    await client.connect()
    try:
        dmap = await client.discover()
    finally:
        client.close()
    assert dmap.base == 40000
    assert dmap.ids == list(MODEL_IDS)
    assert dmap.problems == []
    # the marker, 125-register chunks, and at the end of the map a refused read-ahead and two exact reads
    assert client.requests <= 1 + -(-len(inverter.image) // 125) + 3
    for m in dmap.models:
        assert m.values and m.problems == [], m.id
        assert m.addr == inverter.addr[m.id] and m.length == len(m.regs) - 2
    last = home.last
    common, m701, m160 = dmap.find(1), dmap.find(701), dmap.find(160)
    assert (common.values["Mn"], common.values["SN"], common.values["Vr"]) == (
        "HEMS Simulator",
        "SIM-0001",
        "1.0.0",
    )
    assert dmap.find(120).values["WRtg"] == 10000.0 and dmap.find(120).values["DERTyp"] == 82
    assert dmap.find(121).values["WMax"] == 10000.0 and dmap.find(121).values["VRef"] == 240.0
    assert dmap.find(702).values["WMaxRtg"] == 10000.0 and dmap.find(702).values["WChaRteMaxRtg"] == 11500.0
    assert dmap.find(123).values["WMaxLimPct"] == 100.0 and dmap.find(123).values["Conn"] == 1
    assert dmap.find(124).values["WChaMax"] == 11500.0 and dmap.find(124).values["StorCtl_Mod"] == 0
    assert dmap.find(704).values["WMaxLimPctEna"] == 0 and dmap.find(704).values["PFWInj"]["PF"] == 1.0
    assert dmap.find(713).values["WHRtg"] == 13500.0
    assert dmap.find(713).values["SoC"] == pytest.approx(last.battery_soc_pct, abs=0.05)
    assert dmap.find(802).values["SoC"] == pytest.approx(last.battery_soc_pct, abs=0.05)
    assert dmap.find(802).values["W"] == pytest.approx(-last.battery_power_w, abs=0.5)
    assert len(m160.values["module"]) == 2 == m160.values["N"]
    assert sum(m["DCW"] for m in m160.values["module"]) == pytest.approx(last.pv_power_w, abs=1.0)
    assert m701.values["W"] == pytest.approx(last.pv_power_w - last.battery_power_w, abs=1.0)
    assert dmap.find(103).values["W"] == pytest.approx(m701.values["W"], abs=0.5)
    assert m701.values["Hz"] == 60.0 and m701.values["LLV"] == 240.0
    # not implemented stays None, never 0
    assert dmap.find(103).values["TmpSnk"] is None
    assert dmap.find(802).values["ReqW"] is None
    assert m701.values["WL3"] is None and m701.values["TotVarhInj"] is None


@pytest.mark.parametrize("base", [0, 50000])
async def test_discovery_at_the_other_base_addresses(home, clock, base):
    inv = SunSpecSimInverter(home, clock=clock, base=base)
    await inv.start()
    client = SunSpecClient("127.0.0.1", inv.port, timeout_s=1.0)
    try:
        await client.connect()
        dmap = await client.discover()
    finally:
        client.close()
        await inv.stop()
    assert dmap.base == base and dmap.ids == list(MODEL_IDS)
    assert dmap.find(1).addr == base + 2


async def test_poll_maps_onto_capabilities(device, inverter, home, clock, bus):
    advance(clock, home, 60)
    r0 = device.client.requests
    got = readings(await device.poll_once())
    assert device.client.requests - r0 == len(plan_reads(sorted(device._poll_set, key=lambda m: m.addr))) == 5
    last = home.last
    assert last.pv_power_w > 5000  # a sunny noon
    assert got["pv_power_w"] == pytest.approx(last.pv_power_w, abs=1.0)
    assert got["battery_power_w"] == pytest.approx(last.battery_power_w, abs=1.0)
    assert got["soc_pct"] == pytest.approx(last.battery_soc_pct, abs=0.05)
    assert got["ac_power_w"] == pytest.approx(last.pv_power_w - last.battery_power_w, abs=1.0)
    assert got["battery_capacity_wh"] == 13500.0
    assert got["voltage_v"] == 240.0  # 701 LLV: the split-phase service voltage
    assert got["energy_wh"] > 18_000_000
    assert got["pv_limit_w"] == "none" and got["battery_setpoint_w"] == "auto"
    assert got["connected"] is True and got["command_status"] == "ok"
    assert got["inverter_state"] == "running" and got["battery_state"] == "charging"
    info = device.info
    assert info.manufacturer == "HEMS Simulator" and info.model == "SunSpec Hybrid 10k"
    assert info.capabilities == frozenset({Capability.PV_INVERTER, Capability.BATTERY})
    assert info.extra["serial"] == "SIM-0001" and info.extra["models"] == list(MODEL_IDS)
    assert bus.status("inverter")[0] is DeviceStatus.OK


async def test_pv_limit_acts_on_the_physics_and_reads_back(device, inverter, home, clock, bus):
    await bus.send(Command("inverter", Setting.PV_LIMIT_W, 5000.0))  # 50 % of WMax through model 704
    m704 = inverter.model(704).values
    assert (m704["WMaxLimPctEna"], m704["WMaxLimPct"]) == (1, 50.0)
    assert (
        m704["WMaxLimPctRvrtTms"] == 60 and m704["WMaxLimPctEnaRvrt"] == 0 and m704["WMaxLimPctRvrt"] == 100.0
    )
    assert home.controls.pv_limit_w == 5000.0
    advance(clock, home, 30)
    assert home.last.pv_available_w > 5000.0
    assert home.last.pv_power_w == pytest.approx(5000.0)
    got = readings(await device.poll_once())
    assert got["pv_limit_w"] == 5000.0 and got["pv_power_w"] == pytest.approx(5000.0, abs=1.0)
    assert got["inverter_state"] == "throttled"
    assert device.latest[704].values["WMaxLimPctRvrtRem"] == 30  # as read, before the poll refreshed it
    assert inverter.model(704).values["WMaxLimPctRvrtRem"] == 60
    await device.set_pv_limit_w(2800.0)
    advance(clock, home, 10)
    assert home.last.pv_power_w == pytest.approx(2800.0)
    await device.set_pv_limit_w(None)
    assert home.controls.pv_limit_w is None
    advance(clock, home, 10)
    assert home.last.pv_power_w == pytest.approx(home.last.pv_available_w)
    assert readings(await device.poll_once())["pv_limit_w"] == "none"


async def test_pv_limit_through_model_123_when_there_is_no_704(home, clock, bus):
    inv = SunSpecSimInverter(home, clock=clock, model_ids=tuple(i for i in MODEL_IDS if i != 704))
    await inv.start()
    dev = SunSpecInverter(DeviceConfig("127.0.0.1", inv.port, revert_timeout_s=45, timeout_s=1.0), bus, clock)
    try:
        await dev.connect()
        await dev.set_pv_limit_w(5000.0)
        m123 = inv.model(123).values
        assert (m123["WMaxLim_Ena"], m123["WMaxLimPct"], m123["WMaxLimPct_RvrtTms"]) == (1, 50.0, 45)
        advance(clock, home, 20)
        assert home.last.pv_power_w == pytest.approx(5000.0)
        assert readings(await dev.poll_once())["pv_limit_w"] == 5000.0
    finally:
        await dev.stop()
        await inv.stop()


async def test_battery_setpoint_discharges_the_simulated_battery(device, inverter, home, clock, bus):
    soc0 = home.last.battery_soc_pct
    await bus.send(Command("inverter", Setting.BATTERY_CHARGE_POWER_W, -3000.0))
    m124 = inverter.model(124).values
    assert m124["StorCtl_Mod"] == 3 and m124["InOutWRte_RvrtTms"] == 60
    assert m124["InWRte"] == pytest.approx(-26.09) and m124["OutWRte"] == pytest.approx(26.09)
    assert home.controls.battery_charge_power_w == pytest.approx(-3000.0, abs=1.5)
    for _ in range(20):  # 10 minutes, polled every 30 s (which refreshes the 60 s revert timer)
        advance(clock, home, 30)
        assert home.last.battery_power_w == pytest.approx(-3000.0, abs=1.5)
        got = readings(await device.poll_once())
    expected_drop = (
        3000.0 * 600 / 3600 / PARAMS.battery.discharge_efficiency / PARAMS.battery.capacity_wh * 100
    )
    assert soc0 - home.last.battery_soc_pct == pytest.approx(expected_drop, abs=0.05)
    assert got["soc_pct"] == pytest.approx(home.last.battery_soc_pct, abs=0.05)
    assert got["battery_power_w"] == pytest.approx(-3000.0, abs=1.5)
    assert got["battery_setpoint_w"] == pytest.approx(-3000.0, abs=1.5)
    assert got["battery_state"] == "discharging" and inverter.model(124).values["ChaSt"] == 3
    await device.set_battery_charge_power_w(4000.0)
    advance(clock, home, 60)
    assert home.last.battery_power_w == pytest.approx(4000.0, abs=1.5)
    await device.set_battery_charge_power_w(None)
    assert inverter.model(124).values["StorCtl_Mod"] == 0 and home.controls.battery_charge_power_w is None
    assert readings(await device.poll_once())["battery_setpoint_w"] == "auto"


async def test_disconnect_stops_pv_and_battery_and_reverts(device, inverter, home, clock):
    await device.set_connected(False)
    assert inverter.model(123).values["Conn"] == 0 and inverter.model(123).values["Conn_RvrtTms"] == 60
    advance(clock, home, 10)
    assert home.last.pv_power_w == 0.0 and home.last.battery_power_w == 0.0
    got = readings(await device.poll_once())
    assert got["connected"] is False and got["inverter_state"] == "standby"
    await device.set_connected(True)
    advance(clock, home, 10)
    assert home.last.pv_power_w > 5000.0


async def test_revert_timers_expire_back_to_the_default_mode(home, clock, bus, inverter, caplog):
    dev = SunSpecInverter(
        DeviceConfig("127.0.0.1", inverter.port, revert_timeout_s=20, timeout_s=1.0), bus, clock
    )
    try:
        await dev.connect()
        await dev.set_pv_limit_w(3000.0)
        await dev.set_battery_charge_power_w(-2000.0)
        await dev.set_connected(False)
        assert inverter.model(704).values["WMaxLimPctRvrtTms"] == 20
        assert inverter.model(124).values["InOutWRte_RvrtTms"] == 20
        assert inverter.model(123).values["Conn_RvrtTms"] == 20
        # the gateway dies: nothing refreshes the settings
        advance(clock, home, 19)
        inverter._tick()
        assert home.controls.pv_limit_w == 0.0 and inverter.reverts == 0
        advance(clock, home, 2)
        inverter._tick()
        assert inverter.reverts == 3
        assert home.controls.pv_limit_w is None and home.controls.battery_charge_power_w is None
        assert (
            inverter.model(704).values["WMaxLimPctEna"] == 0
            and inverter.model(124).values["StorCtl_Mod"] == 0
        )
        assert inverter.model(123).values["Conn"] == 1
        advance(clock, home, 10)
        assert home.last.pv_power_w == pytest.approx(home.last.pv_available_w)
        # the gateway sees that the device went back to its defaults, shows it once and does not fight it
        with caplog.at_level(logging.WARNING, logger="integrations.sunspec"):
            got = readings(await dev.poll_once())
            await dev.poll_once()
        assert (
            got["pv_limit_w"] == "none" and got["battery_setpoint_w"] == "auto" and got["connected"] is True
        )
        assert got["command_status"].startswith("mismatch: ") and "reverted" in got["command_status"]
        assert len([r for r in caplog.records if "did not take" in r.getMessage()]) == 3
    finally:
        await dev.stop()


async def test_refreshing_keeps_settings_alive_past_the_revert_time(device, inverter, home, clock):
    await device.set_battery_charge_power_w(-2000.0)
    await device.set_pv_limit_w(4000.0)
    writes0 = device.client.requests
    for _ in range(9):  # 9 x 10 s = 90 s > the 60 s revert timeout
        advance(clock, home, 10)
        got = readings(await device.poll_once())
    assert inverter.reverts == 0
    assert home.controls.battery_charge_power_w == pytest.approx(-2000.0, abs=1.5)
    assert home.controls.pv_limit_w == 4000.0
    assert got["command_status"] == "ok" and got["pv_limit_w"] == 4000.0
    refreshes = device.client.requests - writes0 - 9 * 5
    assert refreshes == 4 * 3  # at 20, 40, 60 and 80 s: two writes for 124, one for 704


async def test_a_change_at_the_device_is_shown_not_fought(device, inverter, home, clock):
    await device.set_pv_limit_w(4000.0)
    inverter.values[704]["WMaxLimPct"] = 80.0  # the installer's app sets 80 %
    inverter._encode(704)
    got = readings(await device.poll_once())
    assert got["pv_limit_w"] == 8000.0
    assert "WMaxLimPct asked 40, device reports 80" in got["command_status"]
    r0 = device.client.requests
    for _ in range(3):
        advance(clock, home, 15)
        await device.poll_once()
    assert device.client.requests - r0 == 3 * 5  # reads only: no refresh writes over the device's choice
    assert inverter.model(704).values["WMaxLimPct"] == 80.0


class ClampingInverter(SunSpecSimInverter):
    """A device that accepts a PV limit write but never limits below 30 %."""

    def _on_write(self, address, values):
        refused = super()._on_write(address, values)
        v = self.values[704]
        if v["WMaxLimPct"] < 30.0:
            v["WMaxLimPct"] = 30.0
            self._encode(704)
        return refused


async def test_a_write_read_back_differently_is_reported_once(home, clock, bus, caplog):
    inv = ClampingInverter(home, clock=clock)
    await inv.start()
    dev = SunSpecInverter(DeviceConfig("127.0.0.1", inv.port, timeout_s=1.0), bus, clock)
    bus.add_device(dev)
    try:
        await dev.connect()
        with caplog.at_level(logging.WARNING, logger="integrations.sunspec"):
            for _ in range(2):
                with pytest.raises(CommandError, match=r"704.WMaxLimPct asked 20, device reports 30"):
                    await bus.send(Command("inverter", Setting.PV_LIMIT_W, 2000.0))
        assert len([r for r in caplog.records if "did not take" in r.getMessage()]) == 1
        assert bus.value("inverter", "command_status").startswith("mismatch: pv_limit_w = 2000")
        assert bus.value("inverter", "pv_limit_w") == 3000.0  # what the device does, beside what was asked
        await dev.set_pv_limit_w(5000.0)
        assert bus.value("inverter", "command_status") == "ok"
    finally:
        await dev.stop()
        await inv.stop()


async def test_the_simulator_refuses_bad_writes(inverter):
    client = SunSpecClient("127.0.0.1", inverter.port, timeout_s=1.0)
    await client.connect()
    try:
        off, _ = model_def(704).point("WMaxLimPct")
        with pytest.raises(DeviceRefused) as exc:
            await client.write(inverter.addr[704] + off, [1500])  # 150 %
        assert exc.value.code == 3
        with pytest.raises(DeviceRefused) as exc:
            await client.write(inverter.addr[713] + 4, [500])  # SoC is read-only
        assert exc.value.code == 2
        with pytest.raises(DeviceRefused):
            await client.read(39990, 2)
    finally:
        client.close()
    assert inverter.model(704).values["WMaxLimPct"] == 100.0


async def test_commands_refused_while_not_connected(bus, clock):
    dev = SunSpecInverter(DeviceConfig("127.0.0.1", 9), bus, clock)
    with pytest.raises(CommandError, match="not connected"):
        await dev.set_pv_limit_w(1000.0)
    with pytest.raises(CommandError, match=">= 0"):
        await dev.set_pv_limit_w(-5.0)


async def test_battery_through_704_wset_when_there_is_no_124(home, clock, bus):
    inv = SunSpecSimInverter(home, clock=clock, model_ids=tuple(i for i in MODEL_IDS if i != 124))
    await inv.start()
    dev = SunSpecInverter(DeviceConfig("127.0.0.1", inv.port, timeout_s=1.0), bus, clock)
    try:
        await dev.connect()
        await dev.poll_once()
        await dev.set_battery_charge_power_w(-2000.0)
        m704 = inv.model(704).values
        assert (m704["WSetEna"], m704["WSetMod"], m704["WSetRvrtTms"]) == (1, 1, 60)
        assert m704["WSet"] == pytest.approx(
            home.last.pv_power_w + 2000.0, abs=1.0
        )  # AC out = PV + discharge
        assert home.controls.battery_charge_power_w == pytest.approx(-2000.0, abs=1.5)
        for _ in range(6):  # PV moves; the setpoint follows it at every poll
            advance(clock, home, 20)
            assert home.last.battery_power_w == pytest.approx(-2000.0, abs=25.0)
            got = readings(await dev.poll_once())
        assert got["battery_setpoint_w"] == pytest.approx(-2000.0, abs=25.0)
        assert got["command_status"] == "ok" and inv.reverts == 0
        await dev.set_battery_charge_power_w(None)
        assert inv.model(704).values["WSetEna"] == 0 and home.controls.battery_charge_power_w is None
        assert readings(await dev.poll_once())["battery_setpoint_w"] == "auto"
    finally:
        await dev.stop()
        await inv.stop()


async def test_a_7xx_only_device_maps_714_ports(bus, clock):
    """PV and battery power from the DC ports of model 714 (+ injection), AC from 701, SOC from 713."""
    ports = [
        {"PrtTyp": 0, "ID": 1, "IDStr": "PV", "DCW": 3000.0, "DCV": 400.0},
        {"PrtTyp": 0, "ID": 2, "IDStr": "PV", "DCW": 1200.0, "DCV": 400.0},
        {"PrtTyp": 1, "ID": 3, "IDStr": "ESS", "DCW": -1500.0, "DCV": 380.0},  # absorbing: charging
    ]
    image = [
        *SUNS_MARKER,
        *encode_model(model_def(1), {"Mn": "Seven", "Md": "7xx", "SN": "7"}),
        *encode_model(model_def(701), {"ACType": 0, "W": 2650.0, "W_SF": 0, "LNV": 230.0, "V_SF": -1}),
        *encode_model(model_def(714), {"NPrt": 3, "DCW_SF": 0, "DCV_SF": -1, "Prt": ports}),
        *encode_model(model_def(713), {"WHRtg": 10000.0, "WH_SF": 0, "SoC": 42.0, "Pct_SF": 0}),
        0xFFFF,
        0,
    ]
    server = RegisterServer(image)
    await server.start()
    dev = SunSpecInverter(DeviceConfig("127.0.0.1", server.port, timeout_s=1.0), bus, clock)
    try:
        await dev.connect()
        got = readings(await dev.poll_once())
        assert got["pv_power_w"] == 4200.0 and got["battery_power_w"] == 1500.0
        assert got["ac_power_w"] == 2650.0 and got["voltage_v"] == 230.0 and got["soc_pct"] == 42.0
        assert "pv_limit_w" not in got and "battery_setpoint_w" not in got  # no control models
        with pytest.raises(CommandError, match="no power limit control"):
            await dev.set_pv_limit_w(1000.0)
        with pytest.raises(CommandError, match="no storage control"):
            await dev.set_battery_charge_power_w(1000.0)
    finally:
        await dev.stop()
        await server.stop()
