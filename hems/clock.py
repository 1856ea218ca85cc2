"""Time for everything that waits or timestamps: real, accelerated, or stepped by hand."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """POSIX seconds (UTC) in the clock's time."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of the clock's time."""
        ...

    @property
    def speed(self) -> float: ...


class RealClock:
    speed = 1.0

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class SimClock:
    """Runs ``speed`` times faster than the wall clock, starting at ``start`` (POSIX seconds)."""

    def __init__(self, start: float | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be > 0, got {speed}")
        self._speed = float(speed)
        self._start = time.time() if start is None else float(start)
        self._wall0 = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        return self._start + (time.monotonic() - self._wall0) * self._speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._speed)


class ManualClock:
    """Advanced explicitly; ``sleep`` returns when another task has advanced past the deadline.

    Used by the in-process simulation and by tests that must not depend on wall time.
    """

    speed = float("inf")

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._changed = asyncio.Event() if _has_loop() else None

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds
        if self._changed is not None:
            self._changed.set()

    def set(self, ts: float) -> None:
        self.advance(ts - self._now)

    async def sleep(self, seconds: float) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        deadline = self._now + max(0.0, seconds)
        while self._now < deadline:
            self._changed.clear()
            await self._changed.wait()


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
