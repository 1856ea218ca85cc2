"""Fixtures: a simulated Zigbee network with the home's four devices, a stand-in home, and the integration."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from hems.bus import Bus
from hems.clock import ManualClock
from hems.config import Config, GatewayConfig
from hems.home import HomeParams
from hems.integration import IntegrationContext
from integrations.zigbee.client import ZigbeeIntegration, default_device_id
from integrations.zigbee.simnodes import (
    METER_IEEE,
    POOL_PUMP_IEEE,
    THERMOSTAT_IEEE,
    WATER_HEATER_IEEE,
    SimHomeZigbee,
    SimMeter,
)
from integrations.zigbee.simradio import AirFrame, SimNetwork

START_TS = 1_782_900_000.0  # 2026-07-01, a Wednesday
_names = itertools.count(1)

METER_ID = default_device_id(METER_IEEE)
THERMOSTAT_ID = default_device_id(THERMOSTAT_IEEE)
WATER_HEATER_ID = default_device_id(WATER_HEATER_IEEE)
POOL_PUMP_ID = default_device_id(POOL_PUMP_IEEE)


@dataclass(frozen=True)
class FakeControls:
    hvac_mode: str = "auto"
    heat_setpoint_c: float | None = None
    cool_setpoint_c: float | None = None
    water_heater_enabled: bool = True


@dataclass(frozen=True)
class FakeStep:
    ts: float = START_TS
    dt_s: float = 0.0
    grid_power_w: float = 800.0
    import_w: float = 800.0
    export_w: float = 0.0
    hvac_power_w: float = 0.0
    indoor_temp_c: float = 21.0
    outdoor_temp_c: float = 15.0
    water_heater_power_w: float = 0.0
    tank_temp_c: float = 55.0


class FakeSim:
    """What the simulated devices use of ``hems.livesim.LiveSimHome``, stepped by hand with exact values."""

    def __init__(self) -> None:
        self.params = HomeParams()
        self.controls = FakeControls()
        self.last = FakeStep()
        self._listeners: list[Callable[[Any], None]] = []

    def set_controls(self, **changes: Any) -> None:
        self.controls = replace(self.controls, **changes)

    def on_step(self, callback: Callable[[Any], None]) -> None:
        self._listeners.append(callback)

    def step(self, dt_s: float = 1.0, **values: Any) -> None:
        self.last = replace(self.last, ts=self.last.ts + dt_s, dt_s=dt_s, **values)
        for callback in self._listeners:
            callback(self.last)


@dataclass
class Env:
    tmp_path: Path
    network: SimNetwork
    sim: FakeSim
    home: SimHomeZigbee
    bus: Bus
    clock: ManualClock
    section: dict[str, Any]
    devices: list[dict[str, Any]] = field(default_factory=list)
    integrations: list[ZigbeeIntegration] = field(default_factory=list)
    frames: list[tuple[str, AirFrame]] = field(default_factory=list)
    dr: Any = None  # a hems.dr.DRManager when a test wires the DR lifecycle

    def integration(self, **section: Any) -> ZigbeeIntegration:
        config = Config(gateway=GatewayConfig(data_dir=str(self.tmp_path)))
        ctx = IntegrationContext(
            name="zigbee",
            bus=self.bus,
            clock=self.clock,
            config=config,
            section={**self.section, **section},
            devices=self.devices,
            dr=self.dr,
        )
        zigbee = ZigbeeIntegration(ctx)
        self.integrations.append(zigbee)
        return zigbee

    async def start(self, *, pair: bool = True, **section: Any) -> ZigbeeIntegration:
        """Start an integration; with ``pair``, open the network and wait until the four devices are set up."""
        zigbee = self.integration(**section)
        await zigbee.start()
        if pair:
            await zigbee.permit_join(60)
            await wait_for(lambda: len(self.bus.devices()) == 4, what="the four devices to be paired")
        return zigbee

    def value(self, device_id: str, quantity: str) -> Any:
        return self.bus.value(device_id, quantity)

    def sent(self, cluster: int | None = None, way: str = "down") -> list[AirFrame]:
        return [f for w, f in self.frames if w == way and (cluster is None or f.cluster == cluster)]


async def wait_for(
    predicate: Callable[[], Any], *, within_s: float = 10.0, what: str = "the condition"
) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        result = predicate()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.01)


def make_env(tmp_path: Path, meter: SimMeter | None = None) -> Env:
    network = SimNetwork(f"test-{next(_names)}", tick_s=0.02, no_ack_delay_s=0.01)
    sim = FakeSim()
    home = SimHomeZigbee(network, sim, meter=meter)
    clock = ManualClock(START_TS)
    env = Env(
        tmp_path=tmp_path,
        network=network,
        sim=sim,
        home=home,
        bus=Bus(clock),
        clock=clock,
        section={
            "radio": "simulated",
            "sim_network": network.name,
            "report_min_s": 0,
            "report_max_s": 3600,
            "poll_interval_s": 600.0,
            "request_timeout_s": 2.0,  # generous: a loaded test machine must not look like a silent device
        },
    )
    network.taps.append(lambda way, frame: env.frames.append((way, frame)))
    return env


async def close_env(env: Env) -> None:
    for zigbee in reversed(env.integrations):
        await zigbee.stop()
    env.home.stop()
    env.network.close()


@pytest.fixture
async def env(tmp_path):
    env = make_env(tmp_path)
    try:
        yield env
    finally:
        await close_env(env)
