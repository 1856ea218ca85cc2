"""Fixtures for the SunSpec tests: the simulated home at a sunny noon, its simulated inverter on a free
loopback port, and the real integration's device connected to it. Every server is stopped afterwards."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hems.bus import Bus
from hems.clock import ManualClock
from hems.home import HomeParams
from hems.livesim import LiveSimHome
from integrations.sunspec.device import DeviceConfig, SunSpecInverter
from integrations.sunspec.sim import SunSpecSimInverter

PARAMS = HomeParams()
NOON = datetime(2024, 6, 21, 12, 0, tzinfo=ZoneInfo(PARAMS.site.timezone)).timestamp()


def advance(clock: ManualClock, home: LiveSimHome, seconds: float) -> None:
    """Move simulated time on and step the physics to it."""
    clock.advance(seconds)
    home.step_to(clock.now())


def readings(list_) -> dict:
    return {r.quantity: r.value for r in list_}


@pytest.fixture(autouse=True)
def _quiet_pymodbus():
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOON)


@pytest.fixture
def home(clock) -> LiveSimHome:
    return LiveSimHome(PARAMS, clock, seed=1)


@pytest.fixture
async def inverter(home, clock):
    inv = SunSpecSimInverter(home, clock=clock)
    await inv.start()
    try:
        yield inv
    finally:
        await inv.stop()


@pytest.fixture
def bus(clock) -> Bus:
    return Bus(clock)


@pytest.fixture
async def device(inverter, bus, clock):
    dev = SunSpecInverter(
        DeviceConfig("127.0.0.1", inverter.port, revert_timeout_s=60, timeout_s=1.0), bus, clock
    )
    bus.add_device(dev)
    await dev.connect()
    try:
        yield dev
    finally:
        await dev.stop()
