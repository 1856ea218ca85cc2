"""IEEE 2030.5 (SEP 2.0) client on aiohttp: a utility's 2030.5 server sends DER controls and EndDeviceControls,
the gateway applies them and answers.

Controls become ``hems.dr.DREvent``s (``source = "sep2"``) in the gateway's ``DRManager`` (``ctx.dr``, else a
private one on ``ctx.store``); export and generation limits are also applied directly to the PV inverter. See
``client`` for the protocol flow, ``events`` for the event rules, ``resources`` for the parsed resources and the
hostile-XML guard, ``identity`` for LFDI/SFDI, ``config`` for the ``[integrations.sep2]`` keys, and ``server``
for the simulated utility server (dev mode, tests, ``hems sim sep2-server``).
"""

from __future__ import annotations

from hems.config import ConfigError
from hems.dr import DRManager
from hems.integration import IntegrationContext
from hems.store import Store

from .client import Sep2Client
from .config import Sep2Config, parse

__all__ = ["Sep2Client", "Sep2Config", "Sep2Integration", "create"]


class Sep2Integration:
    name = "sep2"

    def __init__(self, ctx: IntegrationContext, **client_options) -> None:
        self.ctx = ctx
        self.name = ctx.name or "sep2"
        self.cfg = parse(ctx.section, name=self.name)
        if ctx.devices:
            raise ConfigError([f"[[devices]] of type {self.name!r}: the 2030.5 client has no devices"])
        dr = getattr(ctx, "dr", None)
        self._own_dr = dr is None
        self._own_store = None
        if dr is None:
            store = ctx.store
            if store is None:
                ctx.log.warning("sep2: no store; DR events will not survive a restart")
                store = self._own_store = Store(":memory:")
            dr = DRManager(store, clock=ctx.clock, timezone=ctx.config.home.site.timezone)
        self.dr: DRManager = dr
        home = ctx.config.home
        try:
            self.client = Sep2Client(
                self.cfg,
                dr=dr,
                bus=ctx.bus,
                clock=ctx.clock,
                store=ctx.store,
                name=self.name,
                rated_pv_w=float(home.pv.inverter_ac_w),
                rated_battery_w=float(home.battery.max_discharge_w),
                **client_options,
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                [
                    f"integrations.{self.name}.cert_file = {self.cfg.cert_file!r}: not a readable certificate ({exc})"
                ]
            ) from None

    async def start(self) -> None:
        if self._own_dr:
            self.dr.start()
        await self.client.start()

    async def stop(self) -> None:
        await self.client.stop()
        if self._own_dr:
            await self.dr.stop()
        if self._own_store is not None:
            self._own_store.close()

    def status(self) -> dict:
        return self.client.status()

    def der_limits(self, now: float) -> dict:
        """For the gateway's controller (see ``Sep2Client.der_limits``); once consulted, the client stops
        writing setpoints itself."""
        self.client.controlled_by_gateway = True
        return self.client.der_limits(now)


def create(ctx: IntegrationContext) -> Sep2Integration:
    return Sep2Integration(ctx)
