"""Zigbee (zigpy): the Smart Energy meter, the thermostat and load relays on the home's Zigbee network.

Entry points: ``create`` (hems.integrations), ``dev_peer`` (hems.dev_peers) and ``sim.main`` (hems.simulators).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hems.integration import DevPeerContext, IntegrationContext

    from .client import ZigbeeIntegration


def create(ctx: IntegrationContext) -> ZigbeeIntegration:
    from .client import ZigbeeIntegration

    return ZigbeeIntegration(ctx)


async def dev_peer(ctx: DevPeerContext) -> Any:
    from .sim import dev_peer as start_peer

    return await start_peer(ctx)


__all__ = ["create", "dev_peer"]
