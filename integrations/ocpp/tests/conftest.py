"""A CSMS on a free loopback port, a simulated charge point and a small EV, wired together; cleaned up after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from hems.bus import Bus
from hems.clock import SimClock
from hems.config import Config
from hems.integration import IntegrationContext
from integrations.ocpp.csms import ChargerDevice, OcppIntegration
from integrations.ocpp.sim import SimChargePoint, ToyEV

PASSWORD = "correct-horse-battery"  # 21 characters: OCPP basic auth wants 16-40
CP_ID = "garage"
SPEED = 20.0  # simulated seconds per wall second: meter values every 1 s of sim time arrive every 50 ms


async def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


def make_context(bus: Bus, section: dict, devices: list[dict]) -> IntegrationContext:
    return IntegrationContext("ocpp", bus, bus.clock, Config(), section, devices)


@dataclass
class Rig:
    integ: OcppIntegration
    bus: Bus
    clock: SimClock
    ev: ToyEV
    cp: SimChargePoint | None
    extra: list = field(default_factory=list)

    @property
    def dev(self) -> ChargerDevice:
        return self.integ.devices[CP_ID]

    def value(self, quantity: str, default=None):
        return self.bus.value(CP_ID, quantity, default)

    async def ready(self) -> None:
        await wait_for(lambda: self.dev.ready.is_set(), "the charger's boot setup")

    async def charging(self) -> None:
        """Plug the EV in and wait until its transaction is authorized on both sides."""
        self.ev.plug()
        await wait_for(
            lambda: (
                self.dev.active_session is not None
                and self.dev.active_session.id_tag is not None
                and self.cp.tx is not None
                and self.cp.tx.authorized
            ),
            "an authorized transaction",
        )


@pytest.fixture
async def rig():
    made: list[Rig] = []

    async def make(
        version: str = "2.0.1",
        *,
        section: dict | None = None,
        device: dict | None = None,
        soc_pct: float = 40.0,
        cp_kwargs: dict | None = None,
        start_cp: bool = True,
    ) -> Rig:
        clock = SimClock(speed=SPEED)
        bus = Bus(clock)
        sec = {"port": 0, "meter_interval_s": 1, "heartbeat_interval_s": 30, **(section or {})}
        dev = {
            "type": "ocpp",
            "id": CP_ID,
            "password": PASSWORD,
            "authorized_id_tags": ["SIMTAG01"],
            **(device or {}),
        }
        integ = OcppIntegration(make_context(bus, sec, [dev]))
        await integ.start()
        ev = ToyEV(clock, soc_pct=soc_pct, tick_s=0.02)
        ev.start()
        cp = None
        r = Rig(integ, bus, clock, ev, None)
        made.append(r)
        if start_cp:
            cp = SimChargePoint(
                f"{integ.url}/{CP_ID}", version, ev=ev, clock=clock, password=PASSWORD, **(cp_kwargs or {})
            )
            r.cp = cp
            await cp.start()
        return r

    yield make
    for r in reversed(made):
        for thing in r.extra:
            await thing.stop()
        if r.cp is not None:
            await r.cp.stop()
        await r.ev.stop()
        await r.integ.stop()
