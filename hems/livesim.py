"""The simulated home running live against a clock (dev mode).

One ``LiveSimHome`` owns the physics (``hems.sim``) and the controls that the simulated devices set. The
simulated devices (the built-in ``sim`` integration now; each protocol's simulated peer later) read
``last`` and change ``controls``; the physics steps by the clock time elapsed since the previous step.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from .clock import Clock
from .home import HomeParams
from .sim.environment import Environment
from .sim.home import Controls, SimHome, StepResult
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

MAX_STEP_S = 300.0  # physics sub-step; a long stall is caught up in pieces this long


class LiveSimHome:
    def __init__(self, params: HomeParams, clock: Clock, *, seed: int = 1, tick_s: float = 1.0) -> None:
        self.params = params
        self.clock = clock
        self.tick_s = tick_s
        self.env = Environment(params, seed=seed)
        self.home = SimHome(params, self.env, clock.now())
        self.controls = Controls()
        self.last: StepResult = self.home.step(1.0, self.controls)  # a first state to publish
        self._listeners: list = []
        self._task: asyncio.Task | None = None

    def set_controls(self, **changes) -> None:
        self.controls = replace(self.controls, **changes)

    def on_step(self, callback) -> None:
        """Call ``callback(result)`` after every physics step (simulated devices publish from it)."""
        self._listeners.append(callback)

    def step_to(self, ts: float) -> StepResult:
        while self.home.now < ts - 1e-6:
            dt = min(MAX_STEP_S, ts - self.home.now)
            self.last = self.home.step(dt, self.controls)
        for callback in self._listeners:
            try:
                callback(self.last)
            except Exception:  # a broken simulated device must not stop the physics
                log.exception("simulated device listener failed")
        return self.last

    async def run(self) -> None:
        while True:
            self.step_to(self.clock.now())
            await asyncio.sleep(self.tick_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="sim-physics")

    async def stop(self) -> None:
        await cancel_and_wait(self._task, what="simulated physics")
        self._task = None


def parse_sim_start(text: str, timezone: str) -> float | None:
    """A local ISO date/time in the site's zone to POSIX seconds; '' = None (start now)."""
    if not text:
        return None
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(timezone))
    return dt.timestamp()
