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
from hems.integration import DRLink, IntegrationContext

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
        self._dr_link = DRLink(ctx)
        dr = self.dr = self._dr_link.dr
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
        self._dr_link.start()
        await self.client.start()

    async def stop(self) -> None:
        await self.client.stop()
        await self._dr_link.stop()

    def status(self) -> dict:
        return self.client.status()

    def der_limits(self, now: float) -> dict:
        """For the gateway's controller (see ``Sep2Client.der_limits``); once consulted, the client stops
        writing setpoints itself."""
        self.client.controlled_by_gateway = True
        return self.client.der_limits(now)


def create(ctx: IntegrationContext) -> Sep2Integration:
    return Sep2Integration(ctx)
