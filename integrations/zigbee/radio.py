"""Which zigpy radio library drives the coordinator, and what the gateway adds to every one of them.

The radio libraries are imported only when chosen, so that a gateway with one kind of stick does not need
the others installed. Whatever the radio, the controller class gets ``SmartEnergyMixin``:

- frames on the Smart Energy profile (0x0109) are handed to zigpy as Home Automation frames, which zigpy
  parses (it drops other profiles); frames the gateway sends keep the endpoint's own profile;
- every incoming ZCL frame from a known device is checked with zigpy's own decoder first: a malformed one
  is logged, dropped and reported to listeners as ``frame_dropped(device, packet, reason)`` instead of
  disappearing in zigpy's debug log; an exception while zigpy handles a frame never reaches the radio loop;
- every frame zigpy took from a known device is reported as ``frame_received(device, packet)``, which tells
  the gateway the device is alive (zigpy itself says nothing when a known device announces itself again).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import zigpy.application
import zigpy.config as zconf
import zigpy.profiles.zha
import zigpy.profiles.zll
import zigpy.types as t
import zigpy.zdo
from zigpy.device import ZigbeeDevice
from zigpy.zcl import foundation

from hems.config import ConfigError

from . import smartenergy as se

log = logging.getLogger(__name__)

# radio name -> (module with ControllerApplication, pip package, what hardware it drives)
RADIOS: dict[str, tuple[str, str, str]] = {
    "znp": ("zigpy_znp.zigbee.application", "zigpy-znp", "Texas Instruments CC2652/CC1352 with Z-Stack"),
    "ezsp": ("bellows.zigbee.application", "bellows", "Silicon Labs EFR32 with EmberZNet (EZSP)"),
    "deconz": ("zigpy_deconz.zigbee.application", "zigpy-deconz", "dresden elektronik ConBee/RaspBee"),
}
RADIO_NAMES = ("simulated", *RADIOS)

# The gateway's Smart Energy endpoint: a client of the meter's Price, DRLC, Metering and Messaging.
SE_ENDPOINT_ID = 10
SE_ENDPOINT = {
    "endpoint": SE_ENDPOINT_ID,
    "profile": se.PROFILE_ID,
    "device_type": se.DeviceType.In_Premise_Display,
    "device_version": 0,
    "input_clusters": [],
    "output_clusters": [0x0700, 0x0701, 0x0702, 0x0703],
}


class SmartEnergyMixin:
    """Mixed into the radio's ControllerApplication (it must come first in the bases)."""

    def packet_received(self, packet: t.ZigbeePacket) -> None:
        app: zigpy.application.ControllerApplication = self  # type: ignore[assignment]
        is_zdo = zigpy.zdo.ZDO_ENDPOINT in (packet.src_ep, packet.dst_ep)
        if not is_zdo and packet.profile_id == se.PROFILE_ID:
            packet = packet.replace(profile_id=zigpy.profiles.zha.PROFILE_ID)
        device = _known_device(app, packet)
        if not is_zdo and device is not None:
            reason = _check_zcl(device, packet)
            if reason:
                self._drop(device, packet, reason)
                return
        try:
            super().packet_received(packet)  # type: ignore[misc]
        except Exception as exc:  # a frame zigpy could not handle must not stop the radio
            self._drop(device, packet, f"{type(exc).__name__}: {exc}")
            return
        if device is None:  # it may have just announced itself
            device = _known_device(app, packet)
        if device is not None:
            self.listener_event("frame_received", device, packet)  # type: ignore[attr-defined]

    def _drop(self, device: ZigbeeDevice | None, packet: t.ZigbeePacket | None, reason: str) -> None:
        """Tell listeners (``frame_dropped(device, packet, reason)``); they decide how loudly to log it."""
        if packet is not None:
            log.debug(
                "dropped frame from %s ep %s cluster 0x%04X: %s (%s)",
                device.ieee if device is not None else getattr(packet.src, "address", None),
                packet.src_ep,
                packet.cluster_id,
                reason,
                packet.data.serialize().hex(" "),
            )
        self.listener_event("frame_dropped", device, packet, reason)  # type: ignore[attr-defined]


def _known_device(
    app: zigpy.application.ControllerApplication, packet: t.ZigbeePacket
) -> ZigbeeDevice | None:
    try:
        device = app.get_device_with_address(packet.src)
    except (KeyError, ValueError):
        return None
    return device if isinstance(device, ZigbeeDevice) else None


def _check_zcl(device: ZigbeeDevice, packet: t.ZigbeePacket) -> str:
    """'' if the frame decodes with zigpy's own parser, else why not."""
    data = packet.data.serialize()
    try:
        hdr, _ = foundation.ZCLHeader.deserialize(data)
    except Exception as exc:
        return f"no valid ZCL header: {exc}"
    if packet.profile_id not in (zigpy.profiles.zha.PROFILE_ID, zigpy.profiles.zll.PROFILE_ID):
        return ""  # a profile zigpy ignores anyway
    endpoint = device.endpoints.get(packet.src_ep)
    if endpoint is None or packet.src_ep == zigpy.zdo.ZDO_ENDPOINT:
        return ""  # zigpy ignores it (device still being interviewed, or an unknown endpoint)
    # As zigpy routes it: commands to a server come from the device's client cluster and the other way round
    to_server = hdr.direction == foundation.Direction.Client_to_Server
    cluster = (endpoint.out_clusters if to_server else endpoint.in_clusters).get(packet.cluster_id)
    if cluster is None:
        cluster = (endpoint.in_clusters if to_server else endpoint.out_clusters).get(packet.cluster_id)
    if cluster is None:
        return ""
    try:
        _, command = cluster.deserialize(data)
    except Exception as exc:
        return f"malformed {cluster.name} command 0x{hdr.command_id:02X}: {exc}"
    if (
        not hdr.frame_control.is_cluster
        and hdr.command_id == foundation.GeneralCommand.Report_Attributes
        and not isinstance(command, bytes)
    ):
        for report in command.attribute_reports:
            try:
                attr_def = cluster.find_attribute(report.attrid, manufacturer_code=hdr.manufacturer)
            except KeyError:
                continue
            try:
                attr_def.type(report.value.value)
            except Exception as exc:
                return f"attribute {attr_def.name} reported as {report.value.value!r}: {exc}"
    return ""


def controller_class(radio: str) -> type[zigpy.application.ControllerApplication]:
    """The zigpy ControllerApplication for a radio name, with the gateway's mixin."""
    if radio == "simulated":
        from .simradio import SimulatedControllerApplication

        return SimulatedControllerApplication
    if radio not in RADIOS:
        raise ConfigError([f"integrations.zigbee.radio = {radio!r}: must be one of {', '.join(RADIO_NAMES)}"])
    module_name, package, hardware = RADIOS[radio]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            [
                f"integrations.zigbee.radio = {radio!r} ({hardware}) needs the Python package {package}, "
                f"which is not installed: `pip install {package}` ({exc})"
            ]
        ) from exc
    base = module.ControllerApplication
    return type(f"SmartEnergy{base.__name__}", (SmartEnergyMixin, base), {"__module__": __name__})


def zigpy_config(
    *,
    device_path: str,
    baudrate: int,
    flow_control: str | None,
    database: str,
    channel: int | None,
    pan_id: int | None,
) -> dict[str, Any]:
    """zigpy's configuration dict for the gateway's settings."""
    network: dict[str, Any] = {}
    if channel is not None:
        network[zconf.CONF_NWK_CHANNEL] = channel
        network[zconf.CONF_NWK_CHANNELS] = [channel]
    if pan_id is not None:
        network[zconf.CONF_NWK_PAN_ID] = t.PanId(pan_id)
    return {
        zconf.CONF_DEVICE: {
            zconf.CONF_DEVICE_PATH: device_path,
            zconf.CONF_DEVICE_BAUDRATE: baudrate,
            zconf.CONF_DEVICE_FLOW_CONTROL: flow_control,
        },
        zconf.CONF_DATABASE: database,
        zconf.CONF_NWK: network,
        # No internet OTA indexes (the gateway may be offline): ota.py registers the local folder's provider
        zconf.CONF_OTA: {zconf.CONF_OTA_ENABLED: False},
        zconf.CONF_TOPO_SCAN_ENABLED: False,
        zconf.CONF_ADDITIONAL_ENDPOINTS: [dict(SE_ENDPOINT)],
    }
