import asyncio
import time

import pytest

from hems.clock import ManualClock, SimClock


def test_sim_clock_runs_faster():
    clock = SimClock(start=1_000_000.0, speed=3600.0)
    t0 = clock.now()
    time.sleep(0.05)
    elapsed = clock.now() - t0
    assert 0.04 * 3600 <= elapsed <= 0.5 * 3600  # loose: the host may be slow, never fast


def test_sim_clock_rejects_bad_speed():
    with pytest.raises(ValueError, match="speed"):
        SimClock(speed=0)


async def test_manual_clock_sleep_wakes_when_advanced():
    clock = ManualClock(0.0)
    woke = []

    async def sleeper():
        await clock.sleep(60)
        woke.append(clock.now())

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    clock.advance(30)
    await asyncio.sleep(0)
    assert not woke
    clock.advance(30)
    await asyncio.wait_for(task, 1)
    assert woke == [60.0]
    with pytest.raises(ValueError):
        clock.advance(-1)
