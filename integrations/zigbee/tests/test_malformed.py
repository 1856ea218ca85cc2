"""Garbage into the radio: logged, dropped, the sender marked faulty until it recovers, the rest keeps going."""

from __future__ import annotations

import logging
import random

import zigpy.types as t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.smartenergy import Metering

from hems.model import Command, DeviceStatus, Quantity, Setting
from integrations.zigbee import smartenergy as se
from integrations.zigbee.simradio import AIR_MAGIC, AirFrame, encode_air

from .conftest import METER_ID, THERMOSTAT_ID, WATER_HEATER_ID, wait_for

Q = Quantity


def zcl_frame(src: int, cluster: int, zcl: bytes, *, profile: int = 0x0104, src_ep: int = 1) -> bytes:
    frame = AirFrame(
        magic=AIR_MAGIC,
        src=src,
        dst_mode=t.AddrMode.NWK,
        dst=0x0000,
        src_ep=src_ep,
        dst_ep=1,
        profile=profile,
        cluster=cluster,
        lqi=180,
        payload=t.LongOctetString(zcl),
    )
    return encode_air(frame)


def header(command_id: int, *, cluster_command: bool, tsn: int = 0x77) -> bytes:
    return foundation.ZCLHeader(
        frame_control=foundation.FrameControl(
            frame_type=foundation.FrameType.CLUSTER_COMMAND
            if cluster_command
            else foundation.FrameType.GLOBAL_COMMAND,
            is_manufacturer_specific=False,
            direction=foundation.Direction.Server_to_Client,
            disable_default_response=True,
            reserved=0,
        ),
        manufacturer=None,
        tsn=tsn,
        command_id=command_id,
    ).serialize()


async def test_garbage_is_logged_and_dropped_and_the_network_keeps_running(env, caplog):
    zigbee = await env.start()
    drlc: list = []
    zigbee.on_drlc_event = drlc.append
    caplog.set_level(logging.WARNING)
    meter_nwk = env.home.meter.node.nwk

    # 1. Noise on the air: not even a frame
    rng = random.Random(7)
    for size in (0, 1, 5, 40):
        env.network.inject(bytes(rng.randrange(256) for _ in range(size)))
    env.network.inject(zcl_frame(meter_nwk, Metering.cluster_id, b"\x18\x01\x0a")[:-1] + b"\x00")  # bad FCS
    await wait_for(lambda: zigbee.app.garbage_frames == 5, what="five garbage frames")
    assert "dropped a malformed frame from the air" in caplog.text
    assert caplog.text.count("dropped a malformed frame") == 1  # logged once, counted after that

    # 2. A well-formed frame from the meter carrying a truncated Load Control Event (2 of its 23 bytes)
    env.network.inject(
        zcl_frame(
            meter_nwk,
            se.Drlc.cluster_id,
            header(0x00, cluster_command=True) + b"\x01\x02",
            profile=se.PROFILE_ID,
        )
    )
    await wait_for(lambda: env.bus.status(METER_ID)[0] is DeviceStatus.FAULTY, what="the meter faulty")
    assert "malformed Drlc command 0x00" in env.bus.status(METER_ID)[1]
    assert drlc == []

    # It recovers with its next good frame ...
    env.sim.step(grid_power_w=3210.0)
    await wait_for(lambda: env.value(METER_ID, Q.GRID_POWER_W) == 3210.0, what="a good report")
    assert env.bus.status(METER_ID)[0] is DeviceStatus.OK

    # 3. ... and is faulty again for a report whose value is not of the attribute's type
    report = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Report_Attributes].schema(
        attribute_reports=[
            foundation.Attribute(
                attrid=0x0400,
                value=foundation.TypeValue(
                    type=foundation.DataTypeId.string, value=t.CharacterString("lots")
                ),
            )
        ]
    )
    env.network.inject(
        zcl_frame(
            meter_nwk,
            Metering.cluster_id,
            header(0x0A, cluster_command=False) + report.serialize(),
            profile=se.PROFILE_ID,
        )
    )
    await wait_for(lambda: env.bus.status(METER_ID)[0] is DeviceStatus.FAULTY, what="the meter faulty again")
    assert "instantaneous_demand reported as 'lots'" in env.bus.status(METER_ID)[1]
    assert env.value(METER_ID, Q.GRID_POWER_W) == 3210.0  # the garbage value never reached the bus
    assert caplog.text.count(f"device {METER_ID} is faulty") == 2  # once per time it turned faulty

    # 4. A frame from an address nobody has: zigpy asks the network who it is; nothing breaks
    env.network.inject(zcl_frame(0x7777, 0x0006, b"\xff\xff"))
    await wait_for(lambda: "Unknown device" in caplog.text, what="zigpy's notice")

    # The other devices still work, through the same radio
    await env.bus.send(Command(WATER_HEATER_ID, Setting.SWITCH_ON, False))
    assert env.sim.controls.water_heater_enabled is False
    await env.bus.send(Command(THERMOSTAT_ID, Setting.HEAT_SETPOINT_C, 19.0))
    assert env.sim.controls.heat_setpoint_c == 19.0

    # The meter recovers with its next good frame, and so do its DRLC events
    env.sim.step(grid_power_w=2100.0)
    await wait_for(lambda: env.value(METER_ID, Q.GRID_POWER_W) == 2100.0, what="a good report")
    assert env.bus.status(METER_ID)[0] is DeviceStatus.OK
    env.home.meter.issue_load_control_event(issuer_event_id=5)
    await wait_for(lambda: drlc, what="a good event")
    assert drlc[0].issuer_event_id == 5
