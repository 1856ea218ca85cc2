"""Faults over real Modbus TCP: a device that goes away and comes back, and devices that answer garbage.
None of them may crash the service; garbage is logged once, with what was wrong, and dropped."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from hems.bus import Bus
from hems.clock import RealClock
from hems.model import Command, CommandError, DeviceStatus, Setting
from integrations.sunspec.client import Garbage, SunSpecClient
from integrations.sunspec.device import DeviceConfig, SunSpecInverter
from integrations.sunspec.models import SUNS_MARKER, encode_model, model_def
from integrations.sunspec.sim import RegisterServer, SunSpecSimInverter

from .conftest import readings


async def _poll(dev: SunSpecInverter) -> dict:
    """One poll, published as the run loop does."""
    got = await dev.poll_once()
    dev.bus.publish_many(got)
    return readings(got)


async def _until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def _image(*models: list[int], end: bool = True) -> list[int]:
    image = list(SUNS_MARKER)
    for regs in models:
        image.extend(regs)
    if end:
        image.extend([0xFFFF, 0])
    return image


def _common() -> list[int]:
    return encode_model(model_def(1), {"Mn": "Garbage Inc", "Md": "G1", "SN": "0001"})


def _storage(soc: float = 55.5) -> list[int]:
    return encode_model(model_def(713), {"WHRtg": 10000, "WH_SF": 0, "SoC": soc, "Pct_SF": -1})


async def _served(image: list[int]) -> RegisterServer:
    server = RegisterServer(image)
    await server.start()
    return server


def _fast(port: int, **kw) -> DeviceConfig:
    return DeviceConfig("127.0.0.1", port, poll_interval_s=0.2, timeout_s=0.5, max_backoff_s=0.4, **kw)


async def test_offline_is_marked_retried_and_recovers(home, clock):
    inv = SunSpecSimInverter(home, clock=clock)
    port = await inv.start()
    real = RealClock()
    bus = Bus(real)
    dev = SunSpecInverter(_fast(port, revert_timeout_s=20), bus, real)
    bus.add_device(dev)
    ticks = 0

    async def rest_of_gateway():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.02)

    other = asyncio.create_task(rest_of_gateway())
    dev.start()
    try:
        await _until(lambda: dev.polls >= 2)
        assert bus.status("inverter")[0] is DeviceStatus.OK
        await bus.send(Command("inverter", Setting.PV_LIMIT_W, 3000.0))
        assert home.controls.pv_limit_w == 3000.0

        await inv.stop()
        await _until(lambda: bus.status("inverter")[0] is DeviceStatus.OFFLINE)
        assert "retrying" in bus.status("inverter")[1]
        with pytest.raises(CommandError, match="offline"):
            await bus.send(Command("inverter", Setting.PV_LIMIT_W, 1000.0))
        before = ticks
        await asyncio.sleep(0.3)
        assert ticks > before  # the rest of the gateway keeps running

        # the gateway is cut off longer than the revert time: the inverter goes back to its defaults ...
        clock.advance(21)
        inv._tick()
        assert home.controls.pv_limit_w is None
        polls = dev.polls
        restarted = time.time()
        assert await inv.start() == port
        await _until(lambda: bus.status("inverter")[0] is DeviceStatus.OK and dev.polls > polls)
        assert bus.latest("inverter", "soc_pct").ts >= restarted
        # ... and once reconnected the gateway asks again for what it still wants
        assert home.controls.pv_limit_w == 3000.0
        assert bus.value("inverter", "pv_limit_w") == 3000.0
    finally:
        other.cancel()
        await dev.stop()
        await inv.stop()


async def test_unreachable_from_the_start(bus, clock):
    server = RegisterServer([0])
    port = await server.start()
    await server.stop()  # nothing listens there now
    real = RealClock()
    dev = SunSpecInverter(_fast(port), Bus(real), real)
    dev.bus.add_device(dev)
    dev.start()
    try:
        await _until(lambda: dev.bus.status("inverter")[0] is DeviceStatus.OFFLINE)
        assert "cannot connect" in dev.bus.status("inverter")[1]
    finally:
        await dev.stop()


@pytest.mark.parametrize(
    ("image", "why"),
    [
        (_image(_common(), *([[64500, 0]] * 70), end=False), "did not end after 64 models"),
        (_image(_common(), _storage(), end=False), "breaks off at 40079 after models \\[1, 713\\]"),
        (_image(_common(), [64500, 30000], end=False), "past the end of the address space"),
        ([0] * 10, "no SunSpec 'SunS' marker"),
    ],
    ids=["never-ends", "breaks-off", "past-address-space", "no-marker"],
)
async def test_broken_model_chains_are_reported(image, why):
    server = await _served(image)
    client = SunSpecClient("127.0.0.1", server.port, timeout_s=0.5)
    try:
        await client.connect()
        with pytest.raises(Garbage, match=why):
            await client.discover()
    finally:
        client.close()
        await server.stop()


async def test_a_chain_that_never_ends_is_logged_once_and_the_service_runs_on(caplog):
    discoveries = 0

    def count_marker_reads(address: int, count: int) -> None:
        nonlocal discoveries
        discoveries += address == 40000

    server = RegisterServer(_image(_common(), *([[64500, 0]] * 70), end=False), on_read=count_marker_reads)
    await server.start()
    real = RealClock()
    bus = Bus(real)
    dev = SunSpecInverter(_fast(server.port), bus, real)
    bus.add_device(dev)
    with caplog.at_level(logging.WARNING):
        dev.start()
        try:
            await _until(lambda: discoveries >= 3)  # rediscovered with backoff, logged once
            assert dev._task is not None and not dev._task.done()
            status, reason = bus.status("inverter")
            assert status is DeviceStatus.FAULTY and "did not end after 64 models" in reason
        finally:
            await dev.stop()
            await server.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "did not end" in m]) == 1  # by the bus, with the status change
    assert bus.latest("inverter", "soc_pct") is None


async def test_a_model_of_the_wrong_length_is_dropped_and_the_rest_is_used(bus, clock, caplog):
    bad103 = [103, 40, *([0] * 40)]  # model 103 is 50 registers long
    server = await _served(_image(_common(), bad103, _storage(61.2)))
    dev = SunSpecInverter(DeviceConfig("127.0.0.1", server.port, timeout_s=0.5), bus, clock)
    bus.add_device(dev)
    try:
        with caplog.at_level(logging.WARNING):
            dmap = await dev.connect()
            assert [m.id for m in dmap.models] == [1, 103, 713]
            assert dmap.find(103).values == {} and "L=40" in dmap.problems[0]
            for _ in range(3):
                got = await _poll(dev)
        assert got["soc_pct"] == 61.2 and got["battery_capacity_wh"] == 10000.0
        assert "ac_power_w" not in got and "pv_power_w" not in got
        status, reason = bus.status("inverter")
        assert status is DeviceStatus.FAULTY and "model 103 at 40070: wrong length" in reason
        logged = [r.getMessage() for r in caplog.records if "wrong length" in r.getMessage()]
        assert len(logged) == 1
    finally:
        await dev.stop()
        await server.stop()


async def test_out_of_range_values_are_dropped_logged_once_and_recover(bus, clock, caplog):
    image = _image(_common(), _storage(55.5))
    server = await _served(image)
    soc_at = 2 + 68 + 4  # SunS, model 1, then 713's SoC at offset 4
    dev = SunSpecInverter(DeviceConfig("127.0.0.1", server.port, timeout_s=0.5), bus, clock)
    bus.add_device(dev)
    try:
        await dev.connect()
        assert (await _poll(dev))["soc_pct"] == 55.5
        image[soc_at] = 2500  # 250.0 %
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                got = await _poll(dev)
        assert "soc_pct" not in got
        assert bus.value("inverter", "soc_pct") == 55.5  # the last good value stays, the garbage never lands
        assert bus.status("inverter") == (
            DeviceStatus.FAULTY,
            "soc_pct = 250 is outside 0..100: reading dropped",
        )
        assert len([r for r in caplog.records if "soc_pct = 250" in r.getMessage()]) == 1
        image[soc_at] = 0xFFFF  # not implemented: no reading, and not a fault
        got = await _poll(dev)
        assert "soc_pct" not in got and bus.status("inverter")[0] is DeviceStatus.OK
        image[soc_at] = 600
        assert (await _poll(dev))["soc_pct"] == 60.0
        image[soc_at + 4] = 0x7FFF  # Pct_SF = 32767
        got = await _poll(dev)
        assert "soc_pct" not in got
        assert "Pct_SF = 32767 is outside -10..10" in bus.status("inverter")[1]
    finally:
        await dev.stop()
        await server.stop()


async def test_a_changed_model_map_is_rediscovered(bus, clock):
    image = _image(_common(), _storage(40.0)) + [0] * 20  # room for the new map
    server = await _served(image)
    real = RealClock()
    dev = SunSpecInverter(_fast(server.port), Bus(real), real)
    dev.bus.add_device(dev)
    dev.start()
    try:
        await _until(lambda: dev.bus.value("inverter", "soc_pct") == 40.0)
        new = _image(_common(), [64500, 2, 0, 0], _storage(70.0))
        image[: len(new)] = new  # a firmware update moved the storage model
        await _until(lambda: dev.bus.value("inverter", "soc_pct") == 70.0)
        assert dev.map is not None and [m.id for m in dev.map.models] == [1, 64500, 713]
    finally:
        await dev.stop()
        await server.stop()
