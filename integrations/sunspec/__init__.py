"""SunSpec Modbus TCP integration: hybrid inverters (PV + battery) as ``PVInverter`` and ``Battery`` devices.

Configuration: one ``[[devices]]`` entry per inverter::

    [[devices]]
    type = "sunspec"
    host = "192.0.2.10"      # required
    port = 502               # default 502
    unit_id = 1              # Modbus unit id, default 1
    poll_interval_s = 5      # default 5
    id = "inverter"          # device id on the bus, default "inverter"
    name = "Hybrid inverter"
    revert_timeout_s = 60    # the inverter's own revert timers: a dead gateway leaves it on its defaults
    timeout_s = 3            # Modbus request timeout, default 3

Entry points: ``create`` (hems.integrations), ``dev_peer`` (hems.dev_peers), ``sim:main`` (hems.simulators),
``bench:main`` (hems.benchmarks).
"""

from __future__ import annotations

import math
from typing import Any

from hems.config import ConfigError
from hems.integration import DevPeerContext, IntegrationContext

from .device import DeviceConfig, SunSpecInverter

DEVICE_KEYS = {
    "type",
    "host",
    "port",
    "unit_id",
    "poll_interval_s",
    "id",
    "name",
    "revert_timeout_s",
    "timeout_s",
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def parse_devices(entries: list[dict[str, Any]], indexes: list[int] | None = None) -> list[DeviceConfig]:
    """Validate the ``[[devices]]`` entries of type sunspec; a ConfigError names every bad key."""
    problems: list[str] = []
    out: list[DeviceConfig] = []
    seen: dict[str, str] = {}
    for n, entry in enumerate(entries):
        i = indexes[n] if indexes and n < len(indexes) else n
        where = f"devices[{i}]"
        before = len(problems)
        for key in sorted(set(entry) - DEVICE_KEYS):
            problems.append(f"unknown key '{where}.{key}'; allowed: {', '.join(sorted(DEVICE_KEYS))}")
        host = entry.get("host")
        if not isinstance(host, str) or not host.strip():
            problems.append(f"{where}.host = {host!r}: required, the inverter's IP address or host name")
        port = entry.get("port", 502)
        if not _is_int(port) or not 1 <= port <= 65535:
            problems.append(f"{where}.port = {port!r}: must be an integer 1-65535")
        unit_id = entry.get("unit_id", 1)
        if not _is_int(unit_id) or not 0 <= unit_id <= 255:
            problems.append(f"{where}.unit_id = {unit_id!r}: must be an integer 0-255 (the Modbus unit id)")
        poll = entry.get("poll_interval_s", 5)
        if not _is_number(poll) or not 0.1 <= poll <= 3600:
            problems.append(f"{where}.poll_interval_s = {poll!r}: must be a number of seconds 0.1-3600")
        dev_id = entry.get("id", "inverter")
        if not isinstance(dev_id, str) or not dev_id.strip():
            problems.append(f"{where}.id = {dev_id!r}: must be a non-empty string (the device id)")
        elif dev_id in seen:
            problems.append(f"{where}.id = {dev_id!r}: already used by {seen[dev_id]}")
        else:
            seen[dev_id] = where
        name = entry.get("name", "Hybrid inverter")
        if not isinstance(name, str):
            problems.append(f"{where}.name = {name!r}: must be a string")
        revert = entry.get("revert_timeout_s", 60)
        if not _is_int(revert) or not 1 <= revert <= 65535:
            problems.append(
                f"{where}.revert_timeout_s = {revert!r}: must be an integer 1-65535 (seconds; the inverter's "
                "revert timer registers are 16-bit)"
            )
        elif _is_number(poll) and revert < 2 * poll:
            problems.append(
                f"{where}.revert_timeout_s = {revert!r}: must be at least twice poll_interval_s ({poll:g}), or "
                "the inverter reverts between two refreshes"
            )
        timeout = entry.get("timeout_s", 3)
        if not _is_number(timeout) or not 0.1 <= timeout <= 60:
            problems.append(f"{where}.timeout_s = {timeout!r}: must be a number of seconds 0.1-60")
        if len(problems) == before:
            out.append(
                DeviceConfig(
                    host=host.strip(),
                    port=port,
                    unit_id=unit_id,
                    poll_interval_s=float(poll),
                    id=dev_id,
                    name=name,
                    revert_timeout_s=revert,
                    timeout_s=float(timeout),
                )
            )
    if problems:
        raise ConfigError(problems)
    return out


class SunSpecIntegration:
    name = "sunspec"

    def __init__(self, ctx: IntegrationContext) -> None:
        ctx.reject_unknown(set())
        self.ctx = ctx
        indexes = [
            i for i, d in enumerate(getattr(ctx.config, "devices", ()) or ()) if d.get("type") == ctx.name
        ]
        if len(indexes) != len(ctx.devices):
            indexes = None
        configs = parse_devices(ctx.devices, indexes)
        self.devices = [SunSpecInverter(cfg, ctx.bus, ctx.clock, ctx.log) for cfg in configs]

    async def start(self) -> None:
        for device in self.devices:
            self.ctx.bus.add_device(device)
            device.start()

    async def stop(self) -> None:
        for device in self.devices:
            await device.stop()
            self.ctx.bus.remove_device(device.info.device_id)


def create(ctx: IntegrationContext) -> SunSpecIntegration:
    return SunSpecIntegration(ctx)


class SunSpecDevPeer:
    """Dev mode: the simulated SunSpec inverter on loopback, standing in for the built-in sim inverter."""

    def __init__(self, server, host: str, port: int) -> None:
        self.server = server
        self.replaces = {"inverter"}
        self.section: dict[str, Any] = {}
        self.devices = [
            {
                "type": "sunspec",
                "host": host,
                "port": port,
                "id": "inverter",
                "name": "Hybrid inverter",
                "poll_interval_s": 2,
            }
        ]

    async def stop(self) -> None:
        await self.server.stop()


async def dev_peer(ctx: DevPeerContext) -> SunSpecDevPeer:
    from .sim import SunSpecSimInverter

    server = SunSpecSimInverter(ctx.sim, clock=ctx.clock, host=ctx.host, port=0, logger=ctx.log)
    port = await server.start()
    ctx.log.info("simulated SunSpec inverter listening on %s:%s", ctx.host, port)
    return SunSpecDevPeer(server, ctx.host, port)
