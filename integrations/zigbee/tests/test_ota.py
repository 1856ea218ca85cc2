"""Zigbee OTA: images from a local folder, served through zigpy's OTA manager to the simulated devices'
OTA clients over the simulated radio, block by block; the device restarts with the new version."""

from __future__ import annotations

import asyncio
import logging
import math
import os

import pytest
from zigpy.ota.image import parse_ota_image
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Ota

from hems.bus import Bus
from hems.model import FirmwareStatus
from integrations.zigbee.ota import make_ota_image, version_text
from integrations.zigbee.simnodes import (
    FIRST_FILE_VERSION,
    MANUFACTURER_CODE,
    RELAY_IMAGE_TYPE,
    THERMOSTAT_IMAGE_TYPE,
)

from .conftest import THERMOSTAT_ID, WATER_HEATER_ID, close_env, make_env, wait_for

NEW_VERSION = FIRST_FILE_VERSION + 0x0100
PAYLOAD = os.urandom(1500)  # the "firmware": what the bootloader would flash


class RecordingBus(Bus):
    """The real bus, keeping every firmware status it is given (to see the progress, not only the end)."""

    def __init__(self, clock) -> None:
        super().__init__(clock)
        self.firmware_log: list[tuple[str, FirmwareStatus]] = []

    def set_firmware(self, device_id: str, status: FirmwareStatus) -> None:
        self.firmware_log.append((device_id, status))
        super().set_firmware(device_id, status)


@pytest.fixture
async def ota_env(tmp_path):
    env = make_env(tmp_path)
    env.bus = RecordingBus(env.clock)
    env.section = {**env.section, "ota_dir": str(tmp_path / "ota"), "ota_check_interval_s": 0.1}
    try:
        yield env
    finally:
        await close_env(env)


def thermostat_image(version: int = NEW_VERSION, payload: bytes = PAYLOAD) -> bytes:
    return make_ota_image(
        manufacturer_id=MANUFACTURER_CODE,
        image_type=THERMOSTAT_IMAGE_TYPE,
        file_version=version,
        payload=payload,
        header_string="TSTAT-1 firmware",
    )


def test_the_ota_file_is_a_zigbee_ota_image_zigpy_parses():
    data = thermostat_image()
    image, rest = parse_ota_image(data)
    assert rest == b""
    hdr = image.header
    assert hdr.upgrade_file_id == 0x0BEEF11E
    assert (hdr.manufacturer_id, hdr.image_type, hdr.file_version) == (0x1234, 0x0201, NEW_VERSION)
    assert hdr.image_size == len(data) == hdr.header_length + 6 + len(PAYLOAD)  # tag (2) + length (4)
    assert image.subelements[0].data == PAYLOAD
    assert image.serialize() == data


async def test_a_new_image_in_the_folder_is_served_block_by_block_and_installed(ota_env):
    env = ota_env
    zigbee = await env.start()
    thermostat = env.home.thermostat.ota
    heater = env.home.water_heater.ota
    # The interview read each device's firmware version from its OTA client
    await wait_for(lambda: env.bus.firmware(THERMOSTAT_ID) is not None, what="the thermostat's firmware")
    assert env.bus.firmware(THERMOSTAT_ID).version == "0x01000000"
    assert env.bus.firmware(WATER_HEATER_ID).version == "0x01000000"
    assert env.bus.firmware(THERMOSTAT_ID).update_state == "idle"

    image = thermostat_image()
    (env.tmp_path / "ota" / "tstat-1-0x01000100.ota").write_bytes(image)
    await wait_for(
        lambda: env.bus.firmware(THERMOSTAT_ID).update_state == "installed",
        within_s=20.0,
        what="the thermostat's update",
    )
    status = env.bus.firmware(THERMOSTAT_ID)
    assert status.version == version_text(NEW_VERSION) == "0x01000100"
    assert status.target_version == "0x01000100" and status.progress_pct == 100.0

    # The device downloaded exactly the file, in blocks of at most 48 bytes (it asked for 48; zigpy caps at 50)
    assert thermostat.installed == [NEW_VERSION]
    assert thermostat.version == NEW_VERSION
    assert thermostat.upgrade_ends == [(foundation.Status.SUCCESS, NEW_VERSION)]
    assert thermostat.block_requests == math.ceil(len(image) / 48)
    up = [f for f in env.sent(Ota.cluster_id, way="up") if f.src == env.home.thermostat.node.nwk]
    down = [f for f in env.sent(Ota.cluster_id) if f.dst == env.home.thermostat.node.nwk]
    block_requests = [f for f in up if _command(f) == Ota.ServerCommandDefs.image_block.id]
    block_responses = [f for f in down if _command(f) == Ota.ClientCommandDefs.image_block_response.id]
    assert len(block_requests) == len(block_responses) == math.ceil(len(image) / 48)
    served = b"".join(_block_data(f) for f in block_responses)
    assert served == image

    # Progress went up in steps through "downloading", then "installing", then "installed"
    log = [s for d, s in env.bus.firmware_log if d == THERMOSTAT_ID]
    states = [s.update_state for s in log]
    assert states.index("downloading") < states.index("installing") < states.index("installed")
    pcts = [s.progress_pct for s in log if s.update_state == "downloading"]
    assert pcts == sorted(pcts) and pcts[0] == 0.0 and len(set(pcts)) >= 10
    assert any(0 < p < 100 for p in pcts)

    # The water heater (another image type) was not offered the thermostat's image
    assert heater.installed == [] and heater.version == FIRST_FILE_VERSION
    assert env.bus.firmware(WATER_HEATER_ID).update_state == "idle"

    # What the installer's page shows
    actions = {a["action"]: a for a in zigbee.commission_actions()}
    state = actions["check_firmware"]["state"]
    assert state["images"] == [
        {
            "file": "tstat-1-0x01000100.ota",
            "manufacturer_id": "0x1234",
            "image_type": "0x0201",
            "version": "0x01000100",
            "size_bytes": len(image),
        }
    ]
    assert state["auto_update"] is True and state["ignored_files"] == {}


async def test_installer_starts_the_update_when_auto_update_is_off(ota_env):
    env = ota_env
    zigbee = await env.start(ota_auto_update=False)
    heater_image = make_ota_image(
        manufacturer_id=MANUFACTURER_CODE,
        image_type=RELAY_IMAGE_TYPE,
        file_version=0x02000000,
        payload=b"x" * 300,
    )
    (env.tmp_path / "ota" / "relay.ota").write_bytes(heater_image)
    result = await zigbee.commission("check_firmware", {})
    assert result["devices_asked"] == 3  # thermostat and both relays have an OTA client; the meter does not
    # The device asked; the gateway only tells what is available
    await wait_for(
        lambda: env.bus.firmware(WATER_HEATER_ID).target_version == "0x02000000", what="the update on offer"
    )
    status = env.bus.firmware(WATER_HEATER_ID)
    assert status.update_state == "idle" and status.message == "update to 0x02000000 available"
    assert env.home.water_heater.ota.installed == []

    result = await zigbee.commission("update_firmware", {"device_id": WATER_HEATER_ID})
    assert result == {
        "device_id": WATER_HEATER_ID,
        "from_version": "0x01000000",
        "target_version": "0x02000000",
        "image_size_bytes": len(heater_image),
        "state": "downloading",
    }
    await wait_for(
        lambda: env.bus.firmware(WATER_HEATER_ID).update_state == "installed",
        within_s=20.0,
        what="the update",
    )
    assert env.home.water_heater.ota.installed == [0x02000000]
    assert env.bus.firmware(WATER_HEATER_ID).version == "0x02000000"

    # Nothing newer for the thermostat: a clear error, nothing started
    with pytest.raises(ValueError, match=r"no newer image for thermostat|no newer image for zigbee-"):
        await zigbee.commission("update_firmware", {"device_id": THERMOSTAT_ID})
    assert env.home.thermostat.ota.block_requests == 0


async def test_an_image_the_device_refuses_fails_once_and_is_not_retried(ota_env):
    env = ota_env
    zigbee = await env.start()
    thermostat = env.home.thermostat.ota
    thermostat.accept = lambda data: False  # its bootloader rejects the image (e.g. a bad signature)
    (env.tmp_path / "ota" / "tstat.ota").write_bytes(thermostat_image())
    await wait_for(
        lambda: env.bus.firmware(THERMOSTAT_ID).update_state == "failed", within_s=20.0, what="the failure"
    )
    status = env.bus.firmware(THERMOSTAT_ID)
    assert status.message == "the device ended the update with INVALID_IMAGE"
    assert status.version == "0x01000000" and thermostat.installed == []
    assert thermostat.upgrade_ends == [(foundation.Status.INVALID_IMAGE, NEW_VERSION)]

    # It asks again (Image Notify): the failed image is not pushed again until the folder changes
    queries = len(thermostat.queries)
    await zigbee.commission("check_firmware", {})
    await wait_for(lambda: len(thermostat.queries) > queries, what="the thermostat's next query")
    await asyncio.sleep(0.3)
    assert len(thermostat.upgrade_ends) == 1 and zigbee.ota.updates == {}
    # The installer may still try it on purpose, and a fixed device takes it
    thermostat.accept = None
    await zigbee.commission("update_firmware", {"device_id": THERMOSTAT_ID})
    await wait_for(
        lambda: env.bus.firmware(THERMOSTAT_ID).update_state == "installed", within_s=20.0, what="the retry"
    )
    assert thermostat.installed == [NEW_VERSION]


async def test_files_that_are_not_ota_images_are_named_and_ignored(ota_env, caplog):
    env = ota_env
    caplog.set_level(logging.WARNING, logger="integrations.zigbee.ota")
    folder = env.tmp_path / "ota"
    folder.mkdir()
    (folder / "notes.txt").write_text("release notes")
    truncated = thermostat_image()[:-10]
    (folder / "cut.ota").write_bytes(truncated)
    zigbee = await env.start()
    await wait_for(lambda: len(zigbee.ota.provider.problems) == 2, what="the folder to be read")
    problems = zigbee.ota.provider.problems
    assert "not a Zigbee OTA image" in problems[str(folder / "notes.txt")]
    assert "not a Zigbee OTA image" in problems[str(folder / "cut.ota")]
    warned = [r.getMessage() for r in caplog.records if "is ignored" in r.getMessage()]
    assert len(warned) == 2 and any("cut.ota" in w for w in warned)
    assert zigbee.ota.provider.index == []
    await zigbee.commission("check_firmware", {})
    await asyncio.sleep(0.2)
    assert env.home.thermostat.ota.block_requests == 0
    assert env.bus.firmware(THERMOSTAT_ID).update_state == "idle"
    # Logged once, not at every look at the folder
    await asyncio.sleep(0.3)
    assert len([r for r in caplog.records if "is ignored" in r.getMessage()]) == 2


async def test_an_image_already_there_is_installed_at_pairing(ota_env):
    env = ota_env
    folder = env.tmp_path / "ota"
    folder.mkdir()
    (folder / "v1.ota").write_bytes(thermostat_image(NEW_VERSION))
    await env.start()  # the thermostat asks during its interview, before it is on the bus
    await wait_for(
        lambda: env.bus.firmware(THERMOSTAT_ID).version == "0x01000100", within_s=20.0, what="the update"
    )
    assert env.home.thermostat.ota.installed == [NEW_VERSION]


async def test_images_read_before_a_radio_reconnect_are_still_served_after_it(ota_env, monkeypatch):
    monkeypatch.setattr("integrations.zigbee.client.RECONNECT_S", 0.05)
    env = ota_env
    zigbee = await env.start(ota_auto_update=False)
    (env.tmp_path / "ota" / "relay.ota").write_bytes(
        make_ota_image(
            manufacturer_id=MANUFACTURER_CODE,
            image_type=RELAY_IMAGE_TYPE,
            file_version=0x02000000,
            payload=b"r" * 200,
        )
    )
    await wait_for(
        lambda: env.bus.firmware(WATER_HEATER_ID).target_version == "0x02000000", what="the update on offer"
    )
    first_app = zigbee.app
    first_app.connection_lost(ConnectionResetError("the stick was unplugged"))
    await wait_for(lambda: zigbee.app is not None and zigbee.app is not first_app, what="the new radio")
    await wait_for(lambda: env.bus.status(WATER_HEATER_ID)[0].value == "ok", what="the water heater back")
    # The folder did not change, but the new zigpy application must still know its images
    await zigbee.commission("update_firmware", {"device_id": WATER_HEATER_ID})
    await wait_for(
        lambda: env.bus.firmware(WATER_HEATER_ID).update_state == "installed",
        within_s=20.0,
        what="the update",
    )
    assert env.home.water_heater.ota.installed == [0x02000000]


def _command(frame) -> int:
    hdr, _ = foundation.ZCLHeader.deserialize(bytes(frame.payload))
    return hdr.command_id


def _block_data(frame) -> bytes:
    _hdr, rest = foundation.ZCLHeader.deserialize(bytes(frame.payload))
    rsp, _ = Ota.ClientCommandDefs.image_block_response.schema.deserialize(rest)
    assert rsp.status == foundation.Status.SUCCESS
    return bytes(rsp.image_data)
