"""Writes the bus's readings to the store in batches, rolls them up and prunes old raw data."""

from __future__ import annotations

import asyncio
import logging

from .bus import Bus
from .store import Store
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        bus: Bus,
        store: Store,
        *,
        flush_s: float = 1.0,
        rollup_every_s: float = 60.0,
        prune_every_s: float = 3600.0,
    ) -> None:
        self.bus = bus
        self.store = store
        self.flush_s = flush_s
        self.rollup_every_s = rollup_every_s
        self.prune_every_s = prune_every_s
        self.written = 0
        self._sub = bus.subscribe(maxsize=100_000)
        self._task: asyncio.Task | None = None
        # the store remembers its own roll-up watermark; this only paces the calls
        self._last_rollup = bus.clock.now() - rollup_every_s
        self._last_prune = bus.clock.now()

    PRUNE_CHUNK_ROWS = 5000  # a bounded delete per pass keeps the event loop responsive on a Pi
    ROLLUP_CHUNK_S = 3600.0  # a catch-up after an outage is rolled up an hour at a time

    def flush(self) -> int:
        """Write what the bus published since the last flush (synchronous, a few ms per 500 readings)."""
        batch = self._sub.drain()
        if batch:
            self.store.add_readings(batch)
            self.written += len(batch)
        return len(batch)

    async def maintain(self) -> None:
        """Roll up and prune in small pieces, yielding to the loop between them."""
        now = self.bus.clock.now()
        if now - self._last_rollup >= self.rollup_every_s:
            t = self.store.kv_get("rollup.1m.watermark", None) or self._last_rollup
            while t + self.ROLLUP_CHUNK_S < now:
                t += self.ROLLUP_CHUNK_S
                self.store.rollup(t)
                await asyncio.sleep(0)
            self.store.rollup(now)
            self._last_rollup = now
        if now - self._last_prune >= self.prune_every_s:
            for _ in range(10_000):  # bounded: a chunk at a time, yielding to the loop between chunks
                if sum(self.store.prune(now, limit=self.PRUNE_CHUNK_ROWS).values()) < self.PRUNE_CHUNK_ROWS:
                    break
                await asyncio.sleep(0)
            self._last_prune = now

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                self.flush()
                await self.maintain()
            except Exception:  # a full disk or locked DB must not stop the home; retried next flush
                log.exception("writing readings to the store failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="recorder")

    async def stop(self) -> None:
        await cancel_and_wait(self._task, what="recorder")
        self._task = None
        self.flush()
        self._sub.close()
