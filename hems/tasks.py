"""Stopping background tasks: one way for every loop the gateway runs (controller, recorder, DR, adapters)."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Task | None, what: str = "task") -> None:
    """Cancel the tasks and wait until each has ended (None entries are skipped).

    A task that ends with an error while stopping is logged, not raised, so the caller's stop goes on with the
    rest. The caller's own cancellation is passed on: only the cancellations asked for here are swallowed."""
    live = [t for t in tasks if t is not None]
    for t in live:
        t.cancel()
    for t in live:
        try:
            await t
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:
            log.exception("%s failed while stopping", what)
