"""Commissioning from the installer's page: permit join through zigpy, with a countdown and who joined."""

from __future__ import annotations

import asyncio
import time

import pytest

from hems.model import Capability, Quantity
from integrations.zigbee import smartenergy as se
from integrations.zigbee.client import default_device_id
from integrations.zigbee.simnodes import SPARE_PLUG_IEEE, SimRelay

from .conftest import METER_ID, POOL_PUMP_ID, THERMOSTAT_ID, WATER_HEATER_ID, wait_for

PLUG_ID = default_device_id(SPARE_PLUG_IEEE)
HOME_IDS = {METER_ID, THERMOSTAT_ID, WATER_HEATER_ID, POOL_PUMP_ID}


def spare_plug(env) -> SimRelay:
    """A plug that is put in pairing mode only after the network's first opening."""
    plug = SimRelay(
        ieee=SPARE_PLUG_IEEE,
        nwk=0x3A05,
        model="PLUG-16A",
        device_class=se.DeviceClass.Smart_Appliances,
        joins_from_permit=2,
    )
    env.network.add(plug.node)
    return plug


async def test_actions_describe_themselves(env):
    zigbee = await env.start(pair=False)
    actions = {a["action"]: a for a in zigbee.commission_actions()}
    assert set(actions) == {"permit_join", "update_firmware", "check_firmware"}
    permit = actions["permit_join"]
    assert permit["integration"] == "zigbee" and permit["title"] == "Pair Zigbee devices"
    assert permit["params"]["duration_s"] == {
        "type": "integer",
        "label": "Keep the network open for (seconds)",
        "default": 60,
        "min": 1,
        "max": 254,
    }
    assert permit["state"] == {
        "permit_join_open": False,
        "permit_join_remaining_s": 0.0,
        "permit_join_until_ts": None,
        "joined_device_ids": [],
    }
    assert actions["update_firmware"]["params"]["device_id"]["type"] == "string"


async def test_permit_join_opens_the_network_and_reports_who_joined(env):
    zigbee = await env.start(pair=False)
    plug = spare_plug(env)
    before = time.time()
    result = await zigbee.commission("permit_join", {"duration_s": 30})
    assert result["duration_s"] == 30 and result["permit_join_open"] is True
    assert before + 30 <= result["permit_join_until_ts"] <= time.time() + 30
    assert 29.0 < result["permit_join_remaining_s"] <= 30.0
    # zigpy's permit() reached the simulated radio: the network is open for 30 s
    assert env.network.permits == 1
    assert 29.0 < env.network.permit_until - asyncio.get_running_loop().time() <= 30.0

    await wait_for(
        lambda: {d.info.device_id for d in env.bus.devices()} == HOME_IDS, what="the home's devices"
    )
    await wait_for(
        lambda: set(zigbee.permit_join_state()["joined_device_ids"]) == HOME_IDS, what="who joined"
    )
    assert not plug.node.joined  # not in pairing mode yet

    # The installer puts the plug in pairing mode and opens the network again (default 60 s)
    result = await zigbee.commission("permit_join", {})
    assert result["duration_s"] == 60 and result["joined_device_ids"] == []
    await wait_for(lambda: len(env.bus.devices()) == 5, what="the plug to join")
    assert zigbee.permit_join_state()["joined_device_ids"] == [PLUG_ID]
    device = env.bus.device(PLUG_ID)
    assert Capability.SWITCH in device.info.capabilities and device.info.name == "Load relay"
    assert env.value(PLUG_ID, Quantity.SWITCH_ON) is True

    # Closing: 0 is not an action parameter (the network closes by itself), the radio's permit(0) is
    await zigbee.permit_join(0)
    assert zigbee.permit_join_state()["permit_join_open"] is False


@pytest.mark.parametrize(
    ("action", "params", "message"),
    [
        ("permit_join", {"duration_s": 0}, "duration_s = 0: must be whole seconds 1-254"),
        ("permit_join", {"duration_s": 255}, "duration_s = 255: must be whole seconds 1-254"),
        ("permit_join", {"duration_s": "60"}, "duration_s = '60': must be whole seconds 1-254"),
        ("permit_join", {"duration_s": True}, "duration_s = True: must be whole seconds 1-254"),
        ("permit_join", {"duration_s": 10, "when": "now"}, "unknown parameter(s) when"),
        ("update_firmware", {}, "device_id is required"),
        ("update_firmware", {"device_id": "nope"}, "no Zigbee device 'nope'; paired: "),
        (
            "dance",
            {},
            "unknown zigbee action 'dance'; available: permit_join, update_firmware, check_firmware",
        ),
    ],
)
async def test_bad_requests_get_a_clear_error_and_change_nothing(env, action, params, message):
    zigbee = await env.start(pair=False)
    with pytest.raises(ValueError) as caught:
        await zigbee.commission(action, params)
    assert message in str(caught.value)
    assert env.network.permits == 0 and zigbee.permit_join_remaining_s == 0.0


async def test_permit_join_without_a_radio_says_so(env, monkeypatch):
    monkeypatch.setattr("integrations.zigbee.client.RECONNECT_S", 3600.0)
    zigbee = env.integration(sim_network="no-such-network")
    await zigbee.start()  # the radio does not start; the integration keeps trying in the background
    with pytest.raises(ValueError, match="the Zigbee radio is not connected"):
        await zigbee.commission("permit_join", {"duration_s": 10})
