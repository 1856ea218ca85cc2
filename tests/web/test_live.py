"""The live WebSocket under a flood of readings: each (device, quantity) at most every LIVE_MIN_INTERVAL_S, with
its latest value, whatever the bus carries."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from hems.model import Reading
from tests.conftest import login
from web.app import LIVE_MIN_INTERVAL_S

from .conftest import make_runtime


@pytest.fixture
async def quiet_gateway(tmp_path):
    """The gateway with its in-process simulated home and no protocol peers (quick to start)."""
    rt = make_runtime(tmp_path, peers=frozenset())
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_a_flood_of_readings_reaches_the_browser_as_its_latest_values(quiet_gateway):
    rt = quiet_gateway
    async with await login(rt.url) as s, s.ws_connect(rt.url + "/api/live") as ws:
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "snapshot"
        flood_s, published = 1.5, 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < flood_s:  # ~2000 readings a second of one quantity
            for _ in range(20):
                rt.bus.publish(Reading("flood-test", "grid_power_w", float(published), rt.clock.now()))
                published += 1
            await asyncio.sleep(0.01)
        last_value = float(published - 1)

        flood: list[dict] = []
        deadline = time.monotonic() + 5
        while not flood or flood[-1]["value"] != last_value:
            assert time.monotonic() < deadline, f"the last value never came: {flood[-3:]}"
            msg = json.loads((await ws.receive(timeout=5)).data)
            assert msg["type"] == "reading"
            if msg["device_id"] == "flood-test":
                flood.append(msg)
        elapsed_s = time.monotonic() - t0

    assert published > 1000
    # a handful of messages, not one per reading: at most one per interval (plus the first and the last)
    assert len(flood) <= elapsed_s / LIVE_MIN_INTERVAL_S + 2, (len(flood), elapsed_s)
    values = [m["value"] for m in flood]
    assert values == sorted(values) and len(set(values)) == len(values)  # newer each time, never repeated
    assert flood[-1] == {
        "type": "reading",
        "device_id": "flood-test",
        "quantity": "grid_power_w",
        "value": last_value,
        "unit": "W",
        "ts": flood[-1]["ts"],
    }
