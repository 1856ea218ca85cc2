"""Dev mode: the simulated home's EV charger behind a real OCPP 2.0.1 websocket on loopback.

The simulated charge point takes over the built-in ``ev-charger`` device: same id, now served by the CSMS with
security profile 1 (a fresh password per run). It connects once the CSMS is up (retrying with backoff).
"""

from __future__ import annotations

import secrets
import socket
from typing import Any

from hems.integration import DevPeerContext

from .sim import SimChargePoint

DEV_CHARGER_ID = "ev-charger"
DEV_VERSION = "2.0.1"
DEV_ID_TAG = "SIMTAG01"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class OcppDevPeer:
    replaces: set[str]
    section: dict[str, Any]
    devices: list[dict[str, Any]]

    def __init__(self, ctx: DevPeerContext, port: int, password: str, version: str = DEV_VERSION) -> None:
        self.replaces = {DEV_CHARGER_ID}
        self.section = {"host": ctx.host, "port": port, "security_profile": 1}
        self.devices = [
            {
                "type": "ocpp",
                "id": DEV_CHARGER_ID,
                "name": f"EV charger (simulated, OCPP {version})",
                "password": password,
                "authorized_id_tags": [DEV_ID_TAG],
                "max_power_w": ctx.sim.params.ev.charger_max_w,
                "voltage_v": ctx.sim.params.site.voltage_v,
            }
        ]
        self.charge_point = SimChargePoint(
            f"ws://{ctx.host}:{port}/ocpp/{DEV_CHARGER_ID}",
            version,
            ev=ctx.sim,
            clock=ctx.clock,
            password=password,
            id_tag=DEV_ID_TAG,
            voltage_v=ctx.sim.params.site.voltage_v,
        )

    async def stop(self) -> None:
        await self.charge_point.stop()


async def dev_peer(ctx: DevPeerContext) -> OcppDevPeer:
    peer = OcppDevPeer(ctx, free_port(ctx.host), secrets.token_urlsafe(24)[:32])
    await peer.charge_point.start()  # connects when the CSMS is up
    return peer
