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

An installer can also add an inverter while the gateway runs: the ``add_inverter`` commissioning action
(``host``, ``port`` 502, ``unit_id`` 1, optional ``name``) connects, walks the SunSpec model chain and, only if
the device answers with a SunSpec map that has an inverter or storage model, starts polling it and keeps it in
the store (``sunspec.inverters``) so that it comes back after a restart. ``remove_inverter`` forgets one added
that way (inverters in the config file stay).

Entry points: ``create`` (hems.integrations), ``dev_peer`` (hems.dev_peers), ``sim:main`` (hems.simulators),
``bench:main`` (hems.benchmarks).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import asdict
from typing import Any

from hems.config import ConfigError
from hems.integration import DevPeerContext, IntegrationContext

from .client import DeviceRefused, Garbage, Unreachable
from .device import AC_MODELS, STORAGE_MODELS, DeviceConfig, SunSpecInverter

KV_ADDED = "sunspec.inverters"  # inverters added by the installer at run time, as [[devices]]-like entries
DISCOVERY_TIMEOUT_S = 3.0

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
        self.added: dict[str, dict[str, Any]] = {}  # device id -> entry, the installer's (persisted)
        self._added_in_memory: list[dict[str, Any]] = []  # without a store (tests, standalone tools)
        self._commissioning = (
            asyncio.Lock()
        )  # one add/remove at a time: two adds of one host must not both pass

    async def start(self) -> None:
        for entry in self._load_added():
            try:
                (cfg,) = parse_devices([entry])
            except ConfigError as exc:
                self.ctx.log.error("sunspec: ignoring a stored inverter: %s", "; ".join(exc.problems))
                continue
            clash = self._clash(cfg)
            if clash:
                self.ctx.log.warning("sunspec: stored inverter %s not started: %s", cfg.id, clash)
                continue
            self.devices.append(SunSpecInverter(cfg, self.ctx.bus, self.ctx.clock, self.ctx.log))
            self.added[cfg.id] = entry
        for device in self.devices:
            self.ctx.bus.add_device(device)
            device.start()

    async def stop(self) -> None:
        for device in self.devices:
            await device.stop()
            self.ctx.bus.remove_device(device.info.device_id)

    # -- commissioning (the installer's page) ----------------------------------------------------------
    def commission_actions(self) -> list[dict[str, Any]]:
        return [
            {
                "integration": self.name,
                "action": "add_inverter",
                "title": "Add a SunSpec inverter",
                "description": "Find a SunSpec Modbus TCP inverter on the network and start using it.",
                "params": {
                    "host": {"type": "string", "label": "IP address or host name"},
                    "port": {
                        "type": "integer",
                        "label": "Modbus TCP port",
                        "default": 502,
                        "min": 1,
                        "max": 65535,
                    },
                    "unit_id": {
                        "type": "integer",
                        "label": "Modbus unit id",
                        "default": 1,
                        "min": 0,
                        "max": 255,
                    },
                    "name": {"type": "string", "label": "Name", "default": "Hybrid inverter"},
                },
                "state": {
                    "inverters": [
                        {
                            "device_id": d.cfg.id,
                            "host": d.cfg.host,
                            "port": d.cfg.port,
                            "unit_id": d.cfg.unit_id,
                            "added_by": "installer" if d.cfg.id in self.added else "config",
                        }
                        for d in self.devices
                    ]
                },
            },
            {
                "integration": self.name,
                "action": "remove_inverter",
                "title": "Remove a SunSpec inverter",
                "description": "Stop using an inverter that was added here (those in the config file stay).",
                "params": {
                    "device_id": {"type": "string", "label": "Inverter", "choices": sorted(self.added)}
                },
            },
        ]

    async def commission(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one commissioning action; ValueError says what is wrong (and nothing is changed)."""
        params = dict(params or {})
        if action == "add_inverter":
            async with self._commissioning:
                return await self._add(params)
        if action == "remove_inverter":
            async with self._commissioning:
                return await self._remove(params)
        raise ValueError(f"unknown sunspec action {action!r}; available: add_inverter, remove_inverter")

    async def _add(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - {"host", "port", "unit_id", "name", "id"})
        if unknown:
            raise ValueError(f"sunspec add_inverter: unknown parameter(s) {', '.join(unknown)}")
        host = params.get("host")
        if isinstance(host, str):
            host = host.strip()
        entry: dict[str, Any] = {
            "type": self.name,
            "host": host,
            "port": params.get("port", 502),
            "unit_id": params.get("unit_id", 1),
            "name": params.get("name") or "Hybrid inverter",
            "id": params.get("id") or self._free_id(),
        }
        try:
            (cfg,) = parse_devices([entry])
        except ConfigError as exc:
            raise ValueError("; ".join(p.replace("devices[0].", "") for p in exc.problems)) from None
        clash = self._clash(cfg)
        if clash:
            raise ValueError(clash)
        cfg = DeviceConfig(**{**asdict(cfg), "timeout_s": min(cfg.timeout_s, DISCOVERY_TIMEOUT_S)})
        device = SunSpecInverter(cfg, self.ctx.bus, self.ctx.clock, self.ctx.log)
        where = f"{cfg.host}:{cfg.port} (unit {cfg.unit_id})"
        try:
            dmap = await device.connect()
        except Unreachable as exc:
            device.client.close()
            raise ValueError(
                f"{where} does not answer Modbus TCP: {exc}; check the address and port"
            ) from None
        except (Garbage, DeviceRefused) as exc:
            device.client.close()
            raise ValueError(f"{where} is not a SunSpec device: {exc}") from None
        usable = [m for m in dmap.ids if m in AC_MODELS or m in STORAGE_MODELS]
        if not usable:
            device.client.close()
            raise ValueError(
                f"{where} is a SunSpec device without an inverter or storage model (models {dmap.ids}); "
                "nothing to control"
            )
        self.added[cfg.id] = entry
        self._save_added()
        self.devices.append(device)
        self.ctx.bus.add_device(device)
        device.start()
        info = device.info
        self.ctx.log.info(
            "sunspec: inverter %s added at %s (%s %s)", cfg.id, where, info.manufacturer, info.model
        )
        return {
            "device_id": cfg.id,
            "host": cfg.host,
            "port": cfg.port,
            "unit_id": cfg.unit_id,
            "manufacturer": info.manufacturer,
            "model": info.model,
            "serial": info.extra.get("serial", ""),
            "sunspec_base": dmap.base,
            "models": dmap.ids,
        }

    async def _remove(self, params: dict[str, Any]) -> dict[str, Any]:
        device_id = params.pop("device_id", None)
        if params:
            raise ValueError(f"sunspec remove_inverter: unknown parameter(s) {', '.join(sorted(params))}")
        if device_id not in self.added:
            if any(d.cfg.id == device_id for d in self.devices):
                raise ValueError(f"{device_id!r} is in the config file; remove it there")
            raise ValueError(
                f"no inverter {device_id!r} was added here; added: {', '.join(self.added) or 'none'}"
            )
        device = next(d for d in self.devices if d.cfg.id == device_id)
        await device.stop()
        self.devices.remove(device)
        self.ctx.bus.remove_device(device_id)
        del self.added[device_id]
        self._save_added()
        return {"device_id": device_id, "removed": True}

    def _clash(self, cfg: DeviceConfig) -> str:
        for d in self.devices:
            if (d.cfg.host, d.cfg.port, d.cfg.unit_id) == (cfg.host, cfg.port, cfg.unit_id):
                return f"{cfg.host}:{cfg.port} unit {cfg.unit_id} is already in use as {d.cfg.id!r}"
        if cfg.id in {d.info.device_id for d in self.ctx.bus.devices()}:
            return f"device id {cfg.id!r} is already taken; give the inverter another id"
        return ""

    def _free_id(self) -> str:
        taken = {d.info.device_id for d in self.ctx.bus.devices()} | {d.cfg.id for d in self.devices}
        n = 1
        while (candidate := "inverter" if n == 1 else f"inverter-{n}") in taken:
            n += 1
        return candidate

    def _load_added(self) -> list[dict[str, Any]]:
        if self.ctx.store is None:
            return list(self._added_in_memory)
        entries = self.ctx.store.kv_get(KV_ADDED, [])
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def _save_added(self) -> None:
        entries = list(self.added.values())
        if self.ctx.store is None:
            logging.getLogger("integrations.sunspec").warning(
                "sunspec: no store; the added inverter is forgotten at restart"
            )
            self._added_in_memory = entries
            return
        self.ctx.store.kv_set(KV_ADDED, entries)


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
