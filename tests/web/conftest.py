"""A real gateway for the dashboard tests: the simulated home at 600x on a SimClock, the web server on a free
loopback port, the owner already made. ``gateway`` runs the home in-process (a reading every 30 simulated
seconds: dense history); ``zigbee_gateway`` serves the meter, thermostat and relays over the simulated Zigbee
radio, for commissioning."""

from __future__ import annotations

import asyncio
import time

import pytest_asyncio

from hems.clock import SimClock
from hems.config import parse_config
from hems.livesim import parse_sim_start
from hems.runtime import Runtime
from tests.conftest import OWNER_PASSWORD, login

START = "2026-07-07T09:00"  # a Tuesday: shoulder price until 16:00, then peak
SPEED = 600.0


def make_runtime(
    tmp_path, *, owner: bool = True, peers=frozenset({"zigbee"}), speed: float = SPEED
) -> Runtime:
    cfg = parse_config(
        {
            "gateway": {"data_dir": str(tmp_path)},
            "web": {"port": 0},
            "sim": {"speed": speed, "tick_s": 0.05, "start": START},
            "controller": {"interval_s": 60},
        }
    )
    clock = SimClock(start=parse_sim_start(START, cfg.home.site.timezone), speed=speed)
    return Runtime(
        config=cfg,
        dev=True,
        clock=clock,
        use_dev_peers=peers,
        owner_password=OWNER_PASSWORD if owner else None,
    )


async def wait_until(predicate, timeout_s: float = 30.0, what: str = "condition"):
    """Poll an async or plain predicate until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gateway(tmp_path_factory):
    rt = make_runtime(tmp_path_factory.mktemp("gw"))
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def zigbee_gateway(tmp_path_factory):
    rt = make_runtime(tmp_path_factory.mktemp("zgw"), peers=frozenset({"zigbee"}))
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def owner(gateway):
    session = await login(gateway.url)
    try:
        yield session
    finally:
        await session.close()
