"""Writes the bus's readings to the store in batches, rolls them up and prunes old raw data."""

from __future__ import annotations

import asyncio
import logging

from .bus import Bus
from .store import Store

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, bus: Bus, store: Store, *, flush_s: float = 1.0, rollup_every_s: float = 60.0,
                 prune_every_s: float = 3600.0) -> None:
        self.bus = bus
        self.store = store
        self.flush_s = flush_s
        self.rollup_every_s = rollup_every_s
        self.prune_every_s = prune_every_s
        self.written = 0
        self._sub = bus.subscribe(maxsize=100_000)
        self._task: asyncio.Task | None = None
        self._last_rollup = bus.clock.now()
        self._last_prune = bus.clock.now()

    def flush(self) -> int:
        batch = self._sub.drain()
        if batch:
            self.store.add_readings(batch)
            self.written += len(batch)
        now = self.bus.clock.now()
        if now - self._last_rollup >= self.rollup_every_s:
            self.store.rollup(now)
            self._last_rollup = now
        if now - self._last_prune >= self.prune_every_s:
            self.store.prune(now)
            self._last_prune = now
        return len(batch)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                self.flush()
            except Exception:  # a full disk or locked DB must not stop the home; retried next flush
                log.exception("writing readings to the store failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="recorder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.flush()
        self._sub.close()
