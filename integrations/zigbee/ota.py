"""Zigbee device firmware: OTA images served from a local folder through zigpy's OTA support.

The installer (or a gateway update) drops Zigbee OTA files (the ZCL 11.4 format: an OTA header and its
sub-elements, ``*.ota``/``*.zigbee``, any name) into ``[integrations.zigbee] ota_dir``. ``FolderOtaProvider``
is a zigpy OTA provider over that folder: zigpy asks it for an index whenever a device sends Query Next Image,
and it re-reads the folder only when a file was added, removed or changed. A file that is not an OTA image is
logged once, with why, and ignored.

The exchange is zigpy's own (``zigpy.ota``): a device's OTA client (cluster 0x0019) sends Query Next Image,
zigpy looks for a newer compatible image (manufacturer code, image type, hardware version, file version) and
reports ``OtaImageAvailableEvent`` on the cluster; ``ZigbeeOta`` then runs zigpy's ``OTAManager``
(Image Notify → Query Next Image → Image Block ... → Upgrade End) and follows the device through its restart
until it reports the new ``current_file_version``. Progress goes to the bus as the device's
``FirmwareStatus`` (downloading with percent, installing, installed or failed with the reason).

With ``ota_auto_update = true`` (the default) a newer image in the folder is installed as soon as the device
asks; otherwise the installer starts it with the ``update_firmware`` commissioning action. An image that
failed on a device is not retried automatically until the folder changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zigpy.ota.manager
from zigpy.device import ZigbeeDevice
from zigpy.ota import OtaImageWithMetadata
from zigpy.ota.image import (
    ElementTagId,
    FieldControl,
    HeaderString,
    OTAImage,
    OTAImageHeader,
    SubElement,
    parse_ota_image,
)
from zigpy.ota.providers import BaseOtaProvider, LocalOtaImageMetadata
from zigpy.zcl import Cluster, OtaImageAvailableEvent, foundation
from zigpy.zcl.clusters.general import Ota, QueryNextImageCommand

from hems.model import FirmwareStatus

if TYPE_CHECKING:
    from .client import ZigbeeIntegration, _Adapter

log = logging.getLogger(__name__)

OTA_MAGIC = 0x0BEEF11E
QUERY_WAIT_S = 5.0  # how long an installer's update waits for the device to say what it runs
REBOOT_TIMEOUT_S = 120.0  # after Upgrade End: how long the device may take to come back with the new version
REBOOT_POLL_S = 0.5


def version_text(file_version: int | None) -> str:
    """Zigbee file versions are 32-bit numbers whose meaning is the maker's: shown in hex, as zigpy does."""
    return "" if file_version is None else f"0x{int(file_version):08X}"


def make_ota_image(
    *,
    manufacturer_id: int,
    image_type: int,
    file_version: int,
    payload: bytes,
    header_string: str = "HEMS OTA image",
    stack_version: int = 2,
    min_hw: int | None = None,
    max_hw: int | None = None,
) -> bytes:
    """A Zigbee OTA file (ZCL 11.4): an OTA header and one Upgrade Image sub-element holding ``payload``."""
    field_control = FieldControl(0)
    if min_hw is not None or max_hw is not None:
        field_control |= FieldControl.HARDWARE_VERSIONS_PRESENT
    header = OTAImageHeader(
        upgrade_file_id=OTA_MAGIC,
        header_version=0x0100,
        header_length=0,
        field_control=field_control,
        manufacturer_id=manufacturer_id,
        image_type=image_type,
        file_version=file_version,
        stack_version=stack_version,
        header_string=HeaderString(header_string),
        image_size=0,
    )
    if min_hw is not None or max_hw is not None:
        header.minimum_hardware_version = 0 if min_hw is None else min_hw
        header.maximum_hardware_version = 0xFFFF if max_hw is None else max_hw
    element = SubElement(tag_id=ElementTagId.UPGRADE_IMAGE, data=payload)
    header.header_length = len(header.serialize())
    header.image_size = header.header_length + len(element.serialize())
    return OTAImage(header=header, subelements=[element]).serialize()


# -- the folder ----------------------------------------------------------------------------------------------


class FolderOtaProvider(BaseOtaProvider):
    """zigpy OTA provider over one local folder, read again only when its files change."""

    NAME = "hems-folder"
    TRUSTED = False  # images are read and checked (size, sha256) before they are offered

    def __init__(self, path: Path) -> None:
        super().__init__(url=None)
        self.path = Path(path)
        self.index: list[LocalOtaImageMetadata] = []
        self.problems: dict[str, str] = {}  # file -> why it is not used
        self.generation = 0  # counts the changes seen in the folder
        self._served_generation = 0  # the generation zigpy's image cache holds
        self._signature: tuple | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FolderOtaProvider) and other.path == self.path

    def __hash__(self) -> int:
        return hash((type(self), self.path))

    def __repr__(self) -> str:
        return f"FolderOtaProvider(path={str(self.path)!r})"

    def signature(self) -> tuple:
        """Names, sizes and modification times of the folder's files (blocking: call in an executor)."""
        if not self.path.is_dir():
            return ()
        out = []
        for p in sorted(self.path.rglob("*")):
            if p.name.startswith(".") or not p.is_file():
                continue
            st = p.stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
        return tuple(out)

    def _scan(self) -> tuple[list[LocalOtaImageMetadata], dict[str, str]]:
        metas: list[LocalOtaImageMetadata] = []
        problems: dict[str, str] = {}
        for name, _size, _mtime in self.signature():
            path = Path(name)
            try:
                data = path.read_bytes()
                image, rest = parse_ota_image(data)
            except Exception as exc:
                problems[name] = f"not a Zigbee OTA image ({type(exc).__name__}: {exc})"
                continue
            if rest:
                problems[name] = (
                    f"{len(rest)} bytes after the OTA image; the file is damaged or not an OTA file"
                )
                continue
            hdr = image.header
            metas.append(
                LocalOtaImageMetadata(
                    path=path,
                    file_version=int(hdr.file_version),
                    manufacturer_id=int(hdr.manufacturer_id),
                    image_type=int(hdr.image_type),
                    checksum="sha256:" + hashlib.sha256(data).hexdigest(),
                    file_size=len(data),
                    min_hardware_version=hdr.minimum_hardware_version,
                    max_hardware_version=hdr.maximum_hardware_version,
                    source=f"HEMS OTA folder ({self.path})",
                )
            )
        return metas, problems

    async def refresh(self) -> bool:
        """Read the folder again if it changed; True when it did."""
        loop = asyncio.get_running_loop()
        signature = await loop.run_in_executor(None, self.signature)
        if signature == self._signature:
            return False
        metas, problems = await loop.run_in_executor(None, self._scan)
        self._signature = signature
        self.generation += 1
        for name, why in sorted(problems.items()):
            if self.problems.get(name) != why:
                log.warning("zigbee OTA: %s is ignored: %s", name, why)
        self.problems = problems
        self.index = metas
        log.info("zigbee OTA: %d image(s) in %s", len(metas), self.path)
        return True

    async def load_index(self) -> list[LocalOtaImageMetadata] | None:  # zigpy's hook: None = unchanged
        await self.refresh()
        if self.generation == self._served_generation:
            return None
        self._served_generation = self.generation
        return list(self.index)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "file": m.path.name,
                "manufacturer_id": f"0x{m.manufacturer_id:04X}",
                "image_type": f"0x{m.image_type:04X}",
                "version": version_text(m.file_version),
                "size_bytes": m.file_size,
            }
            for m in sorted(self.index, key=lambda m: (m.manufacturer_id, m.image_type, m.file_version))
        ]


# -- updating devices ------------------------------------------------------------------------------------------


class ZigbeeOta:
    """Follows the firmware of the integration's devices and runs their updates."""

    def __init__(
        self, zigbee: ZigbeeIntegration, folder: Path, *, auto_update: bool, check_interval_s: float
    ) -> None:
        self.zigbee = zigbee
        self.provider = FolderOtaProvider(folder)
        self.auto_update = auto_update
        self.check_interval_s = check_interval_s
        self.updates: dict[str, asyncio.Task] = {}  # by IEEE: updates running
        self.available: dict[str, OtaImageWithMetadata] = {}  # by IEEE: the best newer image
        self._failed: set[tuple[str, int]] = set()  # (IEEE, version) that failed since the folder changed
        self._watch: asyncio.Task | None = None
        self._notified_generation = 0

    # -- lifecycle ----------------------------------------------------------------------------------------
    def attach(self, app: Any) -> None:
        """A new zigpy application (at start and after a radio reconnect): serve the folder through it."""
        self.provider._served_generation = -1  # a new zigpy application starts with an empty image cache
        app.ota.register_provider(self.provider)

    def start(self) -> None:
        with contextlib.suppress(OSError):
            self.provider.path.mkdir(parents=True, exist_ok=True)
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_folder(), name="zigbee-ota")

    async def stop(self) -> None:
        tasks = [t for t in [self._watch, *self.updates.values()] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._watch = None
        self.updates.clear()

    async def _watch_folder(self) -> None:
        """A new file in the folder: ask every device that has an OTA client to check for it."""
        while True:
            try:
                await self.provider.refresh()  # zigpy may have read the change first: compare generations
                if self.provider.generation != self._notified_generation:
                    self._notified_generation = self.provider.generation
                    self._failed.clear()
                    await self.notify_all()
            except Exception:
                log.exception("zigbee OTA: checking %s failed", self.provider.path)
            await asyncio.sleep(self.check_interval_s)

    async def notify_all(self) -> int:
        """Image Notify to every device with an OTA client; returns how many were asked."""
        asked = 0
        for adapter in list(self.zigbee.adapters.values()):
            if await self.notify(adapter):
                asked += 1
        return asked

    async def notify(self, adapter: _Adapter) -> bool:
        cluster = ota_cluster(adapter.device)
        if cluster is None or self.zigbee.app is None:
            return False
        try:
            await cluster.image_notify(
                payload_type=Ota.ImageNotifyCommand.PayloadType.QueryJitter,
                query_jitter=100,
                timeout=self.zigbee.settings.request_timeout_s,
            )
        except Exception as exc:  # the device may be asleep or away: it asks again on its own schedule
            log.info("zigbee OTA: %s did not take the image notify: %s", adapter.device_id, exc)
            return False
        return True

    async def device_adopted(self, adapter: _Adapter) -> None:
        """A device set up on the bus: show its firmware and look for an image (its interview's query
        reached zigpy before the device was on the bus)."""
        cluster = ota_cluster(adapter.device)
        if cluster is None:
            return
        version = cluster.get("current_file_version")
        if version is not None:
            self.version_reported(adapter, int(version))
        app = self.zigbee.app
        if app is None:
            return
        if cluster.last_query_cmd is not None:
            await app.ota.check_cluster_for_ota(cluster)
        else:
            await self.notify(adapter)

    # -- what the device says ---------------------------------------------------------------------------
    def version_reported(self, adapter: _Adapter, file_version: int | None) -> None:
        if file_version is None:
            return
        current = self.status(adapter)
        if current.version == version_text(file_version):
            return
        self.set_status(adapter, version=version_text(file_version))

    def image_available(self, adapter: _Adapter, event: OtaImageAvailableEvent) -> None:
        ieee = adapter.ieee
        upgrades = event.images_result.upgrades
        current = int(event.query_cmd.current_file_version)
        self.version_reported(adapter, current)
        if ieee in self.updates:
            return
        if not upgrades:
            self.available.pop(ieee, None)
            status = self.status(adapter)
            if status.update_state == "idle" and status.target_version:
                self.set_status(adapter, target_version="", message="")
            return
        best = upgrades[0]
        self.available[ieee] = best
        key = (ieee, best.version)
        if self.auto_update and key not in self._failed:
            self.begin(adapter, best)
        elif self.status(adapter).update_state != "failed":
            self.set_status(
                adapter,
                update_state="idle",
                target_version=version_text(best.version),
                progress_pct=None,
                message=f"update to {version_text(best.version)} available",
            )

    # -- running an update ----------------------------------------------------------------------------------
    async def request_update(self, adapter: _Adapter) -> dict[str, Any]:
        """The installer's update: find the newest image for the device now, start it, say what it does."""
        cluster = ota_cluster(adapter.device)
        if cluster is None:
            raise ValueError(f"{adapter.device_id} has no OTA client cluster (0x0019): it cannot be updated")
        if adapter.ieee in self.updates:
            raise ValueError(f"{adapter.device_id} is already being updated")
        app = self.zigbee.app
        if app is None:
            raise ValueError("the Zigbee radio is not connected")
        await self.provider.refresh()
        query = cluster.last_query_cmd
        if query is None:  # the device has not said what it runs yet: ask it to
            await self.notify(adapter)
            for _ in range(int(QUERY_WAIT_S / 0.05)):  # its query arrives through zigpy's OTA cluster
                if cluster.last_query_cmd is not None:
                    break
                await asyncio.sleep(0.05)
            query = cluster.last_query_cmd
        if query is None:
            query = self._query_from_cache(adapter, cluster)
        if query is None:
            raise ValueError(
                f"{adapter.device_id} did not say which firmware it runs (no Query Next Image within "
                f"{QUERY_WAIT_S:g} s); wake it up or try again"
            )
        result = await app.ota.get_ota_images(adapter.device, query)
        if not result.upgrades:
            raise ValueError(
                f"no newer image for {adapter.device_id} in {self.provider.path}: it runs "
                f"{version_text(query.current_file_version)} (manufacturer 0x{int(query.manufacturer_code):04X}, "
                f"image type 0x{int(query.image_type):04X}); images there: "
                f"{', '.join(d['file'] + ' ' + d['version'] for d in self.provider.describe()) or 'none'}"
            )
        best = result.upgrades[0]
        self._failed.discard((adapter.ieee, best.version))
        self.begin(adapter, best)
        return {
            "device_id": adapter.device_id,
            "from_version": version_text(query.current_file_version),
            "target_version": version_text(best.version),
            "image_size_bytes": best.metadata.file_size,
            "state": "downloading",
        }

    def _query_from_cache(self, adapter: _Adapter, cluster: Cluster) -> QueryNextImageCommand | None:
        version = cluster.get("current_file_version")
        manufacturer = cluster.get("manufacturer_id")
        image_type = cluster.get("image_type_id")
        if None in (version, manufacturer, image_type):
            return None
        return QueryNextImageCommand(
            field_control=QueryNextImageCommand.FieldControl(0),
            manufacturer_code=int(manufacturer),
            image_type=int(image_type),
            current_file_version=int(version),
        )

    def begin(self, adapter: _Adapter, image: OtaImageWithMetadata) -> None:
        ieee = adapter.ieee
        if ieee in self.updates:
            return
        task = asyncio.get_running_loop().create_task(self._update(adapter, image), name=f"zigbee-ota-{ieee}")
        self.updates[ieee] = task
        task.add_done_callback(lambda _t, ieee=ieee: self.updates.pop(ieee, None))

    async def _update(self, adapter: _Adapter, image: OtaImageWithMetadata) -> None:
        device: ZigbeeDevice = adapter.device
        target = version_text(image.version)
        started = time.monotonic()
        log.info("zigbee OTA: updating %s to %s", adapter.device_id, target)
        self.set_status(
            adapter, update_state="downloading", progress_pct=0.0, target_version=target, message="starting"
        )
        last_pct = -1

        def progress(current: int, total: int, pct: float) -> None:
            nonlocal last_pct
            if int(pct) != last_pct:
                last_pct = int(pct)
                self.set_status(
                    adapter,
                    update_state="downloading",
                    progress_pct=round(pct, 1),
                    message=f"{current} of {total} bytes sent",
                )

        device.ota_in_progress = True  # zigpy's OTA cluster leaves the exchange to the manager meanwhile
        try:
            status = await zigpy.ota.manager.update_firmware(device, image, progress)
        except Exception as exc:
            self._fail(adapter, image, f"the transfer stopped: {type(exc).__name__}: {exc}")
            return
        finally:
            device.ota_in_progress = False
        if status != foundation.Status.SUCCESS:
            name = (
                foundation.Status(status).name if status in foundation.Status.__members__.values() else status
            )
            self._fail(adapter, image, f"the device ended the update with {name}")
            return
        self.set_status(
            adapter,
            update_state="installing",
            progress_pct=100.0,
            message="image accepted; waiting for the device to restart with it",
        )
        cluster = ota_cluster(adapter.device)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REBOOT_TIMEOUT_S
        reported: int | None = None
        while loop.time() < deadline:
            await asyncio.sleep(REBOOT_POLL_S)
            cluster = ota_cluster(adapter.device) or cluster
            with contextlib.suppress(Exception):
                values, _ = await cluster.read_attributes(
                    ["current_file_version"],
                    allow_cache=False,
                    timeout=self.zigbee.settings.request_timeout_s,
                )
                reported = values.get("current_file_version", reported)
            if reported is not None and int(reported) == image.version:
                break
        if reported is None or int(reported) != image.version:
            self._fail(
                adapter,
                image,
                f"the device still reports {version_text(reported) or 'no version'} "
                f"{REBOOT_TIMEOUT_S:g} s after the update",
            )
            return
        self.available.pop(adapter.ieee, None)
        self.set_status(
            adapter,
            version=target,
            update_state="installed",
            progress_pct=100.0,
            message=f"installed in {time.monotonic() - started:.1f} s",
        )
        log.info("zigbee OTA: %s now runs %s", adapter.device_id, target)

    def _fail(self, adapter: _Adapter, image: OtaImageWithMetadata, why: str) -> None:
        self._failed.add((adapter.ieee, image.version))
        log.warning(
            "zigbee OTA: updating %s to %s failed: %s", adapter.device_id, version_text(image.version), why
        )
        self.set_status(adapter, update_state="failed", message=why)

    # -- status on the bus ---------------------------------------------------------------------------------
    def status(self, adapter: _Adapter) -> FirmwareStatus:
        return self.zigbee.ctx.bus.firmware(adapter.device_id) or FirmwareStatus()

    def set_status(self, adapter: _Adapter, **changes: Any) -> None:
        current = self.status(adapter)
        values = {
            "version": current.version,
            "update_state": current.update_state,
            "progress_pct": current.progress_pct,
            "target_version": current.target_version,
            "message": current.message,
        }
        values.update(changes)
        self.zigbee.ctx.bus.set_firmware(
            adapter.device_id, FirmwareStatus(**values, ts=self.zigbee.ctx.clock.now())
        )

    def describe(self) -> dict[str, Any]:
        return {
            "ota_dir": str(self.provider.path),
            "auto_update": self.auto_update,
            "images": self.provider.describe(),
            "ignored_files": dict(self.provider.problems),
        }


def ota_cluster(device: ZigbeeDevice) -> Cluster | None:
    """The device's OTA client cluster (0x0019), if it has one."""
    for ep in device.non_zdo_endpoints:
        cluster = ep.out_clusters.get(Ota.cluster_id)
        if cluster is not None:
            return cluster
    return None


def handles(cluster: Cluster) -> bool:
    return cluster.cluster_id == Ota.cluster_id


__all__ = [
    "FolderOtaProvider",
    "ZigbeeOta",
    "handles",
    "make_ota_image",
    "ota_cluster",
    "version_text",
]
