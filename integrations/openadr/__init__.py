"""OpenADR 2.0b VEN (on openleadr): a utility's or aggregator's VTN sends DR events, the gateway answers.

Events become ``hems.dr.DREvent``s in the gateway's ``DRManager`` (``ctx.dr`` when the runtime provides one,
else a private manager on ``ctx.store``), which persists them, turns them into planner windows and controller
limits, and answers back through this VEN (opt-in/opt-out, reports). See ``ven`` for the protocol flow,
``mapping`` for the signals understood, ``config`` for the ``[integrations.openadr]`` keys and ``xmlguard`` for
how hostile XML is refused. ``vtn`` is the simulated VTN for dev mode and tests; ``bench`` times the DR path.
"""

from __future__ import annotations

import logging

from hems.config import ConfigError
from hems.integration import DRLink, IntegrationContext

from .config import VenConfig, parse
from .ven import Ven

# openleadr sets its logger to INFO at import and logs every message it handles; keep it to warnings
logging.getLogger("openleadr").setLevel(logging.WARNING)

__all__ = ["OpenADRIntegration", "VenConfig", "create"]


class OpenADRIntegration:
    name = "openadr"

    def __init__(self, ctx: IntegrationContext) -> None:
        self.ctx = ctx
        self.name = ctx.name or "openadr"
        self.cfg = parse(ctx.section, default_ven_name=ctx.config.gateway.id, name=self.name)
        if ctx.devices:
            raise ConfigError([f"[[devices]] of type {self.name!r}: the OpenADR VEN has no devices"])
        self._dr_link = DRLink(ctx)
        dr = self.dr = self._dr_link.dr
        self.ven = Ven(self.cfg, dr=dr, bus=ctx.bus, clock=ctx.clock, store=ctx.store, name=self.name)

    async def start(self) -> None:
        self._dr_link.start()
        await self.ven.start()

    async def stop(self) -> None:
        await self.ven.stop()
        await self._dr_link.stop()

    def status(self) -> dict:
        return self.ven.status()


def create(ctx: IntegrationContext) -> OpenADRIntegration:
    return OpenADRIntegration(ctx)
