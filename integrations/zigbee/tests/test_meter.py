"""The Smart Energy meter's reports, decoded through zigpy and scaled by its multiplier and divisor."""

from __future__ import annotations

from zigpy.zcl import foundation
from zigpy.zcl.clusters.smartenergy import Metering

from hems.model import Quantity
from integrations.zigbee.client import scaled
from integrations.zigbee.simnodes import SimMeter

from .conftest import METER_ID, close_env, make_env, wait_for

Q = Quantity


def reports(env, cluster_id: int) -> list:
    out = []
    for frame in env.sent(cluster_id, way="up"):
        hdr, rest = foundation.ZCLHeader.deserialize(bytes(frame.payload))
        if not hdr.frame_control.is_cluster and hdr.command_id == foundation.GeneralCommand.Report_Attributes:
            args, _ = foundation.GENERAL_COMMANDS[hdr.command_id].schema.deserialize(rest)
            out.append({r.attrid: r.value.value for r in args.attribute_reports})
    return out


async def test_meter_reports_are_scaled_by_multiplier_and_divisor(tmp_path):
    # 3/2000 kW per count: a raw value is not W, and an error in the scaling shows
    env = make_env(tmp_path, meter=SimMeter(multiplier=3, divisor=2000, voltage_v=239.6))
    try:
        await env.start()
        assert env.value(METER_ID, Q.VOLTAGE_V) == 239.6

        env.sim.step(3600.0, grid_power_w=2345.6)  # import for an hour
        # 2.3456 kW * 2000 / 3 = 1563.7 -> 1564 counts -> 1564 * 3 / 2000 kW = 2346.0 W
        await wait_for(lambda: env.value(METER_ID, Q.GRID_POWER_W) == 2346.0, what="the import report")
        assert env.home.meter.metering.get("instantaneous_demand") == 1564
        await wait_for(lambda: env.value(METER_ID, Q.ENERGY_IMPORT_WH) == 2346.0, what="the import register")

        env.sim.step(3600.0, grid_power_w=-1234.5)  # export for an hour
        # -1.2345 kW -> -823 counts (signed 24-bit) -> -1234.5 W, + = import
        await wait_for(lambda: env.value(METER_ID, Q.GRID_POWER_W) == -1234.5, what="the export report")
        await wait_for(lambda: env.value(METER_ID, Q.ENERGY_EXPORT_WH) == 1234.5, what="the export register")
        assert env.value(METER_ID, Q.ENERGY_IMPORT_WH) == 2346.0  # unchanged while exporting

        # These values came as attribute reports on the air, not as answers to reads
        demand = [r[0x0400] for r in reports(env, Metering.cluster_id) if 0x0400 in r]
        assert demand[-2:] == [1564, -823]
    finally:
        await close_env(env)


async def test_the_pool_pump_load_shows_on_the_meter(env):
    await env.start()
    env.sim.step(grid_power_w=500.0)
    await wait_for(lambda: env.value(METER_ID, Q.GRID_POWER_W) == 500.0, what="500 W")
    env.home.pool_pump.on_off.handle_on(None, None)  # someone switches it on at the relay
    env.sim.step(grid_power_w=500.0)
    await wait_for(lambda: env.value(METER_ID, Q.GRID_POWER_W) == 1600.0, what="500 W + the 1100 W pump")


def test_scaling_is_none_until_the_meter_has_said_how():
    assert scaled(1564, 3, 2000) == 2.346
    assert scaled(1564, None, 2000) is None
    assert scaled(1564, 1, 0) is None  # a divisor of 0 is invalid, not infinite
    assert scaled(None, 1, 1000) is None
