"""Dev mode: the simulated network driven by the real simulated home, and the integration pointed at it."""

from __future__ import annotations

import pytest

from hems.bus import Bus
from hems.clock import ManualClock
from hems.config import Config, GatewayConfig
from hems.integration import DevPeerContext, IntegrationContext
from hems.livesim import LiveSimHome
from hems.model import Capability, Command, Quantity, Setting
from integrations.zigbee import create, dev_peer
from integrations.zigbee.simradio import get_network

from .conftest import START_TS, wait_for

METER_ID, THERMOSTAT_ID, WATER_HEATER_ID = "grid-meter", "thermostat", "water-heater"

Q = Quantity


async def test_dev_peer_serves_the_home_over_zigbee(tmp_path):
    clock = ManualClock(START_TS)
    config = Config(gateway=GatewayConfig(data_dir=str(tmp_path)))
    sim = LiveSimHome(config.home, clock)
    peer = await dev_peer(DevPeerContext(sim=sim, clock=clock))
    assert peer.replaces == {"grid-meter", "thermostat", "water-heater"}
    # the simulated nodes keep the built-in sim's device ids, named through [[devices]] entries
    assert [d["id"] for d in peer.devices] == [
        "grid-meter",
        "thermostat",
        "water-heater",
        "pool-pump",
        "garage-plug",
    ]
    assert peer.section["radio"] == "simulated"
    assert get_network(peer.section["sim_network"]) is peer.network

    bus = Bus(clock)
    zigbee = create(
        IntegrationContext(
            "zigbee", bus, clock, config, {**peer.section, "report_min_s": 0}, devices=peer.devices, sim=sim
        )
    )
    try:
        await zigbee.start()  # opens the network (permit_join_s in the section): the devices join
        await wait_for(lambda: len(bus.devices()) == 4, what="the four simulated devices")
        heaters = [d for d in bus.devices(Capability.SWITCH) if d.info.extra.get("load") == "water_heater"]
        assert [d.info.device_id for d in heaters] == [WATER_HEATER_ID]
        assert bus.first(Capability.GRID_METER).info.device_id == METER_ID

        clock.advance(600.0)
        result = sim.step_to(clock.now())
        await wait_for(
            lambda: bus.value(METER_ID, Q.GRID_POWER_W) == round(result.grid_power_w),
            what="the home's net power",
        )
        await wait_for(
            lambda: bus.value(THERMOSTAT_ID, Q.INDOOR_TEMP_C) == round(result.indoor_temp_c, 2),
            what="indoor temp",
        )
        await wait_for(
            lambda: bus.value(THERMOSTAT_ID, Q.OUTDOOR_TEMP_C) == round(result.outdoor_temp_c, 2),
            what="outdoor temp from the thermostat's outdoor sensor",
        )
        await bus.send(Command(THERMOSTAT_ID, Setting.COOL_SETPOINT_C, 26.0))
        await bus.send(Command(WATER_HEATER_ID, Setting.SWITCH_ON, False))
        assert sim.controls.cool_setpoint_c == 26.0 and sim.controls.water_heater_enabled is False
        clock.advance(600.0)
        sim.step_to(clock.now())
        assert sim.last.water_heater_power_w == 0.0
        await wait_for(lambda: bus.value(WATER_HEATER_ID, Q.POWER_W) == 0.0, what="no water heater power")

        # the garage plug waits in pairing mode: it joins when the installer opens the network again
        assert "garage-plug" not in {d.info.device_id for d in bus.devices()}
        result = await zigbee.commission("permit_join", {"duration_s": 30})
        assert result["permit_join_open"] is True
        await wait_for(lambda: len(bus.devices()) == 5, what="the garage plug to join")
        plug = bus.device("garage-plug")
        assert plug.info.name == "Garage smart plug" and Capability.SWITCH in plug.info.capabilities
        assert zigbee.permit_join_state()["joined_device_ids"] == ["garage-plug"]
        clock.advance(60.0)
        sim.step_to(clock.now())
        await wait_for(lambda: bus.value("garage-plug", Q.POWER_W) == 60.0, what="the plug's 60 W")
    finally:
        await zigbee.stop()
        await peer.stop()
    with pytest.raises(KeyError):
        get_network(peer.section["sim_network"])
