"""The in-process bus: devices, the latest value per (device, quantity), reading streams, and commands.

Publishing never blocks and never fails because of a slow subscriber: each subscription has a bounded
queue, and when it is full the oldest reading is dropped and counted (a dashboard that lags sees fresh
data, not a backlog). Commands go the other way: ``send`` routes a ``Command`` to the device's capability
method, and the bus keeps what was asked beside what the device reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Generic, TypeVar

from .capabilities import Device, apply_command, check_device
from .clock import Clock, RealClock
from .model import (
    Capability,
    Command,
    CommandError,
    DeviceStatus,
    FirmwareStatus,
    Quantity,
    Reading,
    Setting,
)

log = logging.getLogger(__name__)


T = TypeVar("T")


class Subscription(Generic[T]):
    """An async iterator over published items; use ``async with`` or call ``close()``."""

    def __init__(self, bus_list: list, accept: Callable[[T], bool], maxsize: int) -> None:
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize=maxsize)
        self._accept = accept
        self._owners = bus_list
        self.dropped = 0
        bus_list.append(self)

    def _offer(self, item: T) -> None:
        if not self._accept(item):
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    async def get(self) -> T:
        return await self._queue.get()

    def get_nowait(self) -> T | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def drain(self) -> list[T]:
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    def close(self) -> None:
        if self in self._owners:
            self._owners.remove(self)

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._queue.get()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Bus:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or RealClock()
        self._devices: dict[str, Device] = {}
        self._status: dict[str, tuple[DeviceStatus, str]] = {}
        self._latest: dict[tuple[str, str], Reading] = {}
        self._reading_subs: list[Subscription[Reading]] = []
        self._command_subs: list[Subscription[Command]] = []
        self._asked: dict[tuple[str, Setting], Command] = {}
        self._firmware: dict[str, FirmwareStatus] = {}

    # -- devices ---------------------------------------------------------------------------------
    def add_device(self, device: Device) -> None:
        check_device(device)
        device_id = device.info.device_id
        if device_id in self._devices and self._devices[device_id] is not device:
            raise ValueError(
                f"device id {device_id!r} is already registered by {self._devices[device_id].info.integration}"
            )
        self._devices[device_id] = device
        self.set_status(device_id, DeviceStatus.OK)

    def remove_device(self, device_id: str) -> None:
        self._devices.pop(device_id, None)
        self.set_status(device_id, DeviceStatus.OFFLINE, "removed")

    def device(self, device_id: str) -> Device:
        try:
            return self._devices[device_id]
        except KeyError:
            raise KeyError(
                f"no device {device_id!r}; known: {', '.join(sorted(self._devices)) or 'none'}"
            ) from None

    def devices(self, capability: Capability | None = None) -> list[Device]:
        return [d for d in self._devices.values() if capability is None or capability in d.info.capabilities]

    def first(self, capability: Capability) -> Device | None:
        found = self.devices(capability)
        return found[0] if found else None

    def set_status(self, device_id: str, status: DeviceStatus, reason: str = "") -> None:
        """Mark a device ok/offline/faulty. A change is logged once and published as a ``status`` reading."""
        previous = self._status.get(device_id)
        if previous is not None and previous[0] == status:
            return
        self._status[device_id] = (status, reason)
        if status is not DeviceStatus.OK:
            log.warning("device %s is %s: %s", device_id, status, reason or "no reason given")
        elif previous is not None:
            log.info("device %s is ok again", device_id)
        self.publish(Reading(device_id, Quantity.STATUS, str(status), self.clock.now()))

    def status(self, device_id: str) -> tuple[DeviceStatus, str]:
        return self._status.get(device_id, (DeviceStatus.OFFLINE, "unknown device"))

    # -- firmware ------------------------------------------------------------------------------------
    def set_firmware(self, device_id: str, status: FirmwareStatus) -> None:
        """What an integration knows of a device's firmware and its update (shown in the device list)."""
        self._firmware[device_id] = status

    def firmware(self, device_id: str) -> FirmwareStatus | None:
        return self._firmware.get(device_id)

    # -- readings --------------------------------------------------------------------------------
    def publish(self, reading: Reading) -> None:
        self._latest[(reading.device_id, reading.quantity)] = reading
        for sub in self._reading_subs:
            sub._offer(reading)

    def publish_many(self, readings: list[Reading]) -> None:
        for reading in readings:
            self.publish(reading)

    def latest(self, device_id: str, quantity: str) -> Reading | None:
        return self._latest.get((device_id, quantity))

    def value(self, device_id: str, quantity: str, default=None):
        reading = self._latest.get((device_id, quantity))
        return default if reading is None else reading.value

    def snapshot(self) -> dict[str, dict[str, Reading]]:
        out: dict[str, dict[str, Reading]] = {}
        for (device_id, quantity), reading in self._latest.items():
            out.setdefault(device_id, {})[quantity] = reading
        return out

    def subscribe(
        self, *, device_id: str | None = None, quantity: str | None = None, maxsize: int = 1000
    ) -> Subscription[Reading]:
        def accept(r: Reading) -> bool:
            return (device_id is None or r.device_id == device_id) and (
                quantity is None or r.quantity == quantity
            )

        return Subscription(self._reading_subs, accept, maxsize)

    # -- commands --------------------------------------------------------------------------------
    async def send(self, command: Command) -> Command:
        """Apply a command to its device. Raises CommandError (device missing, refused, or failed)."""
        if command.ts == 0.0:
            command = replace(command, ts=self.clock.now())
        device = self._devices.get(command.device_id)
        if device is None:
            raise CommandError(f"no device {command.device_id!r}")
        status, _ = self.status(command.device_id)
        if status is DeviceStatus.OFFLINE:
            raise CommandError(f"device {command.device_id!r} is offline")
        try:
            await apply_command(device, command)
        except CommandError:
            raise
        except Exception as exc:  # a device adapter's failure must not reach the caller as anything else
            raise CommandError(
                f"device {command.device_id!r} failed to apply {command.setting}: {exc}"
            ) from exc
        self._asked[(command.device_id, command.setting)] = command
        for sub in self._command_subs:
            sub._offer(command)
        return command

    def asked(self, device_id: str, setting: Setting) -> Command | None:
        """The last command the gateway sent for this setting (to compare with what the device reports)."""
        return self._asked.get((device_id, setting))

    def subscribe_commands(self, maxsize: int = 1000) -> Subscription[Command]:
        return Subscription(self._command_subs, lambda c: True, maxsize)
