"""cancel_and_wait: how every background loop of the gateway is stopped."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hems.tasks import cancel_and_wait


async def test_cancels_every_task_and_skips_none():
    ended: list[str] = []

    async def loop(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append(name)

    tasks = [asyncio.create_task(loop(n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks[0], None, tasks[1])
    assert sorted(ended) == ["a", "b"]
    assert all(t.cancelled() for t in tasks)


async def test_a_task_failing_while_stopping_is_logged_and_the_rest_still_stop(caplog):
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("flush failed") from None

    async def quiet() -> None:
        await asyncio.sleep(3600)

    bad, good = asyncio.create_task(fails_on_cancel()), asyncio.create_task(quiet())
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="hems.tasks"):
        await cancel_and_wait(bad, good, what="recorder")
    assert good.cancelled()
    assert [r.getMessage() for r in caplog.records] == ["recorder failed while stopping"]
    assert "flush failed" in caplog.text


async def test_the_callers_own_cancellation_is_passed_on():
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()  # takes its time to clean up
            raise

    inner = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait(inner))
    await asyncio.sleep(0.01)
    stopper.cancel()  # whoever called stop() is itself cancelled
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert stopper.cancelled()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await inner
