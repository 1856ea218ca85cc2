"""Fixtures: a test PKI (session), a simulated 2030.5 server on a free loopback port, fake PV inverter, battery
and grid meter on a bus, and a fast client (short ticks and backoff) on a private DR manager."""

from __future__ import annotations

import asyncio
import time

import pytest

from hems.bus import Bus
from hems.clock import RealClock
from hems.dr import DRManager
from hems.model import Capability, DeviceInfo, Quantity, Reading
from hems.store import Store
from integrations.sep2.client import Sep2Client
from integrations.sep2.config import parse
from integrations.sep2.server import SimServer, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("sep2-pki"))


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("sep2-pki-other"))


class FakeInverter:
    """A hybrid inverter (PV + battery) that records what it is told."""

    def __init__(self) -> None:
        self._info = DeviceInfo(
            "inverter", "Inverter", frozenset({Capability.PV_INVERTER, Capability.BATTERY}), "test"
        )
        self.pv_limits: list[float | None] = []
        self.battery: list[float | None] = []

    @property
    def info(self) -> DeviceInfo:
        return self._info

    async def set_pv_limit_w(self, limit_w: float | None) -> None:
        self.pv_limits.append(limit_w)

    async def set_battery_charge_power_w(self, charge_power_w: float | None) -> None:
        self.battery.append(charge_power_w)


class FakeMeter:
    def __init__(self) -> None:
        self._info = DeviceInfo("grid-meter", "Grid meter", frozenset({Capability.GRID_METER}), "test")

    @property
    def info(self) -> DeviceInfo:
        return self._info


def home_bus(clock) -> tuple[Bus, FakeInverter]:
    bus = Bus(clock)
    inv = FakeInverter()
    bus.add_device(inv)
    bus.add_device(FakeMeter())
    now = clock.now()
    bus.publish(Reading("grid-meter", Quantity.GRID_POWER_W, -2345.0, now))
    bus.publish(Reading("grid-meter", Quantity.ENERGY_IMPORT_WH, 120000.0, now))
    bus.publish(Reading("grid-meter", Quantity.ENERGY_EXPORT_WH, 45000.0, now))
    bus.publish(Reading("inverter", Quantity.SOC_PCT, 61.5, now))
    return bus, inv


def section(server: SimServer, pki, **extra) -> dict:
    d = {
        "server_url": server.url,
        "cert_file": pki.device_cert,
        "key_file": pki.device_key,
        "ca_file": pki.ca_file,
        "pin": server.pin,
        "poll_default_s": 1.0,
        "post_rate_s": 0.5,
    }
    d.update(extra)
    return d


class Rig:
    def __init__(
        self, server: SimServer, client: Sep2Client, inverter: FakeInverter, dr: DRManager, bus: Bus
    ):
        self.server = server
        self.client = client
        self.inverter = inverter
        self.dr = dr
        self.bus = bus

    async def stop(self) -> None:
        await self.client.stop()
        await self.dr.stop()


async def make_rig(server: SimServer, pki, *, seed: int = 1, **extra) -> Rig:
    clock = RealClock()
    bus, inv = home_bus(clock)
    dr = DRManager(Store(":memory:"), clock=clock, seed=seed)
    dr.start(0.05)
    client = Sep2Client(
        parse(section(server, pki, **extra)),
        dr=dr,
        bus=bus,
        clock=clock,
        tick_s=0.05,
        min_poll_s=0.2,
        backoff_initial_s=0.1,
        backoff_max_s=0.5,
        timeout_s=3.0,
    )
    await client.start()
    return Rig(server, client, inv, dr, bus)


async def until(predicate, timeout: float = 5.0, what: str = "condition"):  # noqa: ASYNC109
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
async def server(pki):
    s = SimServer(pki, port=0, poll_rate_s=1)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def rig(server, pki):
    rg = await make_rig(server, pki)
    yield rg
    await rg.stop()
