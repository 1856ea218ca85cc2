"""Commands through the bus: the thermostat drives the simulated HVAC, the relays switch the loads."""

from __future__ import annotations

import pytest
from zigpy.zcl import foundation
from zigpy.zcl.clusters.hvac import Thermostat

from hems.model import Command, CommandError, Quantity, Setting

from .conftest import POOL_PUMP_ID, THERMOSTAT_ID, WATER_HEATER_ID, wait_for

Q = Quantity


async def test_thermostat_set_points_and_mode_act_on_the_simulated_hvac(env):
    await env.start()
    assert env.value(THERMOSTAT_ID, Q.HEAT_SETPOINT_C) == 20.0  # the home's default, reported by the device

    await env.bus.send(Command(THERMOSTAT_ID, Setting.HEAT_SETPOINT_C, 18.5))
    assert env.sim.controls.heat_setpoint_c == 18.5
    assert env.value(THERMOSTAT_ID, Q.HEAT_SETPOINT_C) == 18.5  # read back from the device
    # The write went over the air as a Write Attributes of occupied_heating_setpoint = 1850 (0.01 °C)
    writes = []
    for frame in env.sent(Thermostat.cluster_id):
        hdr, rest = foundation.ZCLHeader.deserialize(bytes(frame.payload))
        if hdr.command_id == foundation.GeneralCommand.Write_Attributes and not hdr.frame_control.is_cluster:
            args, _ = foundation.GENERAL_COMMANDS[hdr.command_id].schema.deserialize(rest)
            writes += [(a.attrid, a.value.value) for a in args.attributes]
    assert writes == [(0x0012, 1850)]

    await env.bus.send(Command(THERMOSTAT_ID, Setting.HVAC_MODE, "cool"))
    await env.bus.send(Command(THERMOSTAT_ID, Setting.COOL_SETPOINT_C, 26.0))
    assert (env.sim.controls.hvac_mode, env.sim.controls.cool_setpoint_c) == ("cool", 26.0)
    assert env.value(THERMOSTAT_ID, Q.HVAC_MODE) == "cool"
    assert env.value(THERMOSTAT_ID, Q.COOL_SETPOINT_C) == 26.0

    # The home follows: the device reports what the simulated HVAC does
    env.sim.step(indoor_temp_c=25.87, hvac_power_w=1480.0)
    await wait_for(lambda: env.value(THERMOSTAT_ID, Q.INDOOR_TEMP_C) == 25.87, what="the temperature report")
    await wait_for(lambda: env.value(THERMOSTAT_ID, Q.POWER_W) == 1480.0, what="the HVAC power report")
    await wait_for(lambda: env.value(THERMOSTAT_ID, "hvac_running") == "cool", what="the running state")


async def test_the_thermostat_refuses_what_it_cannot_do(env):
    await env.start()
    await env.bus.send(Command(THERMOSTAT_ID, Setting.HEAT_SETPOINT_C, 18.5))
    # 18.9 °C cooling would leave less than the device's 1 °C dead band above 18.5 °C heating
    with pytest.raises(CommandError, match=r"refused occupied_cooling_setpoint \(INVALID_VALUE\)"):
        await env.bus.send(Command(THERMOSTAT_ID, Setting.COOL_SETPOINT_C, 18.9))
    assert env.sim.controls.cool_setpoint_c is None
    assert env.value(THERMOSTAT_ID, Q.COOL_SETPOINT_C) == 24.0
    # Outside the limits the device declared: refused before anything is sent
    with pytest.raises(CommandError, match="between 5 and 35"):
        await env.bus.send(Command(THERMOSTAT_ID, Setting.HEAT_SETPOINT_C, 40.0))


async def test_relay_switches_the_water_heater_and_reports_its_power(env):
    await env.start()
    await env.bus.send(Command(WATER_HEATER_ID, Setting.SWITCH_ON, False))
    assert env.sim.controls.water_heater_enabled is False
    assert env.value(WATER_HEATER_ID, Q.SWITCH_ON) is False

    await env.bus.send(Command(WATER_HEATER_ID, Setting.SWITCH_ON, True))
    assert env.sim.controls.water_heater_enabled is True
    env.sim.step(3600.0, water_heater_power_w=4500.0, tank_temp_c=48.5)
    await wait_for(lambda: env.value(WATER_HEATER_ID, Q.POWER_W) == 4500.0, what="4.5 kW")
    await wait_for(lambda: env.value(WATER_HEATER_ID, Q.ENERGY_WH) == 4500.0, what="4.5 kWh")
    await wait_for(lambda: env.value(WATER_HEATER_ID, Q.TANK_TEMP_C) == 48.5, what="the tank temperature")


async def test_a_relay_switched_at_the_device_is_noticed(env):
    await env.start()
    await env.bus.send(Command(POOL_PUMP_ID, Setting.SWITCH_ON, True))
    assert env.bus.asked(POOL_PUMP_ID, Setting.SWITCH_ON).value is True
    env.home.pool_pump.on_off.handle_off(None, None)  # the button on the relay
    await wait_for(lambda: env.value(POOL_PUMP_ID, Q.SWITCH_ON) is False, what="the report of the button")
    env.sim.step()
    await wait_for(lambda: env.value(POOL_PUMP_ID, Q.POWER_W) == 0.0, what="no power")
