"""Pairing on the simulated radio: join, interview, set-up, restart with zigpy's database, leave and silence."""

from __future__ import annotations

import pytest
import zigpy.zdo.types as zdo_t
from zigpy.zcl.clusters.general import OnOff
from zigpy.zcl.clusters.smartenergy import Metering

from hems.model import Capability, Command, CommandError, DeviceStatus, Quantity, Setting
from integrations.zigbee import smartenergy as se
from integrations.zigbee.simnodes import METER_IEEE, WATER_HEATER_IEEE

from .conftest import METER_ID, POOL_PUMP_ID, THERMOSTAT_ID, WATER_HEATER_ID, wait_for

Q = Quantity


async def test_each_device_type_joins_is_interviewed_and_mapped(env):
    zigbee = await env.start(pair=False)
    assert env.bus.devices() == []
    assert env.network.permit_until == 0.0  # closed until asked

    await zigbee.permit_join(60)
    assert 59.0 < zigbee.permit_join_remaining_s <= 60.0
    await wait_for(lambda: len(env.bus.devices()) == 4, what="four devices")

    infos = {d.info.device_id: d.info for d in env.bus.devices()}
    assert infos[METER_ID].capabilities == {Capability.GRID_METER}
    assert (infos[METER_ID].manufacturer, infos[METER_ID].model) == ("HEMS Sim Utility", "SE-ESI-1")
    assert infos[THERMOSTAT_ID].capabilities == {Capability.THERMOSTAT, Capability.METER}
    assert infos[WATER_HEATER_ID].capabilities == {Capability.SWITCH, Capability.METER}
    # What a relay switches comes from the Device Class Value it declares as a DRLC client
    assert infos[WATER_HEATER_ID].extra == {"ieee": WATER_HEATER_IEEE, "load": "water_heater"}
    assert infos[WATER_HEATER_ID].name == "Water heater"
    assert infos[POOL_PUMP_ID].extra["load"] == "pool_pump"
    assert all(env.bus.status(i)[0] is DeviceStatus.OK for i in infos)

    # The interview went through zigpy's ZDO requests, answered by each node
    asked = {zdo_t.ZDOCmd(f.cluster) for f in env.sent() if f.dst_ep == 0}
    assert {zdo_t.ZDOCmd.Node_Desc_req, zdo_t.ZDOCmd.Active_EP_req, zdo_t.ZDOCmd.Simple_Desc_req} <= asked
    meter = zigbee.app.get_device(ieee=env.home.meter.node.ieee)
    assert meter.endpoints[1].profile_id == se.PROFILE_ID
    assert isinstance(meter.endpoints[1].in_clusters[se.Drlc.cluster_id], se.Drlc)

    # Reporting is bound to the coordinator and configured on the nodes, as the gateway asked
    node = env.home.meter.node
    assert (1, Metering.cluster_id, zigbee.app.state.node_info.ieee, 1) in node.bindings
    demand = node.reporting[(1, Metering.cluster_id, 0x0400)]
    assert (demand.min_s, demand.max_s) == (0, 3600)
    assert (1, OnOff.cluster_id, 0x0000) in env.home.water_heater.node.reporting

    # First readings, from the simulated home
    assert env.value(METER_ID, Q.GRID_POWER_W) == 800.0
    assert env.value(THERMOSTAT_ID, Q.INDOOR_TEMP_C) == 21.0
    assert env.value(WATER_HEATER_ID, Q.SWITCH_ON) is True
    assert env.value(WATER_HEATER_ID, Q.TANK_TEMP_C) == 55.0
    assert env.value(POOL_PUMP_ID, Q.SWITCH_ON) is False


async def test_devices_entries_name_the_paired_devices(env):
    env.devices = [
        {
            "type": "zigbee",
            "ieee": WATER_HEATER_IEEE.upper(),
            "id": "water-heater",
            "name": "Tank",
            "role": "water_heater",
        },
        {"type": "zigbee", "ieee": METER_IEEE, "id": "grid-meter"},
    ]
    await env.start()
    ids = {d.info.device_id for d in env.bus.devices()}
    assert {"water-heater", "grid-meter", THERMOSTAT_ID, POOL_PUMP_ID} == ids
    heater = env.bus.device("water-heater")
    assert heater.info.name == "Tank"
    assert heater.info.extra["load"] == "water_heater"
    assert env.value("grid-meter", Q.GRID_POWER_W) == 800.0


async def test_restart_keeps_the_paired_devices(env):
    first = await env.start()
    db = first.settings.database
    await first.stop()
    assert env.bus.devices() == []
    env.frames.clear()

    # A new ControllerApplication on the same database: no joining, no interview
    second = await env.start(pair=False)
    assert second.settings.database == db
    assert len(env.bus.devices()) == 4
    assert env.network.permit_until == 0.0
    assert not [f for f in env.sent() if f.cluster == zdo_t.ZDOCmd.Node_Desc_req]
    # Readings come again: reporting is set up anew and the values are the home's
    env.sim.step(grid_power_w=-2500.0, indoor_temp_c=23.25)
    await wait_for(lambda: env.value(METER_ID, Q.GRID_POWER_W) == -2500.0, what="the meter's report")
    await wait_for(lambda: env.value(THERMOSTAT_ID, Q.INDOOR_TEMP_C) == 23.25, what="the thermostat's report")
    assert env.bus.status(METER_ID)[0] is DeviceStatus.OK


async def test_a_device_that_leaves_or_goes_silent_is_offline(env):
    zigbee = await env.start()
    pump = env.home.pool_pump.node

    pump.leave()
    await wait_for(
        lambda: env.bus.status(POOL_PUMP_ID)[0] is DeviceStatus.OFFLINE, what="offline after leaving"
    )
    assert env.bus.status(POOL_PUMP_ID)[1] == "left the Zigbee network"

    heater = env.home.water_heater.node
    heater.power_off()
    await zigbee.poll_once()
    status, reason = env.bus.status(WATER_HEATER_ID)
    assert status is DeviceStatus.OFFLINE and reason.startswith("not answering")
    with pytest.raises(CommandError, match="offline"):
        await env.bus.send(Command(WATER_HEATER_ID, Setting.SWITCH_ON, False))
    # The rest of the network keeps working
    env.sim.step(grid_power_w=1234.0)
    await wait_for(lambda: env.value(METER_ID, Q.GRID_POWER_W) == 1234.0, what="the meter's report")

    # Power back: the node announces itself, zigpy sees a rejoin, the gateway sets it up again
    heater.power_on()
    await wait_for(lambda: env.bus.status(WATER_HEATER_ID)[0] is DeviceStatus.OK, what="the heater back")
    await env.bus.send(Command(WATER_HEATER_ID, Setting.SWITCH_ON, False))
    assert env.sim.controls.water_heater_enabled is False


async def test_the_radio_reconnects_after_the_connection_is_lost(env, monkeypatch):
    monkeypatch.setattr("integrations.zigbee.client.RECONNECT_S", 0.05)
    zigbee = await env.start()
    first_app = zigbee.app
    first_app.connection_lost(ConnectionResetError("the stick was unplugged"))
    assert env.bus.status(METER_ID) == (DeviceStatus.OFFLINE, "Zigbee radio disconnected")
    await wait_for(
        lambda: zigbee.app is not None and zigbee.app is not first_app, what="a new radio connection"
    )
    await wait_for(lambda: env.bus.status(METER_ID)[0] is DeviceStatus.OK, what="the meter back")
    env.sim.step(grid_power_w=4321.0)
    await wait_for(lambda: env.value(METER_ID, Q.GRID_POWER_W) == 4321.0, what="reports again")
    await env.bus.send(Command(WATER_HEATER_ID, Setting.SWITCH_ON, False))
    assert env.sim.controls.water_heater_enabled is False
