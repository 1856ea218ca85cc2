"""The zigbee integration: a zigpy coordinator whose devices become the gateway's meter, thermostat and switches.

Configuration (``[integrations.zigbee]``)::

    radio = "znp"                 # simulated | znp (TI Z-Stack) | ezsp (Silicon Labs) | deconz (ConBee/RaspBee)
    device = "/dev/ttyUSB0"       # serial port of the coordinator stick, or socket://host:port
    baudrate = 115200
    flow_control = ""             # "", "hardware" or "software"
    channel = 15                  # 11-26; left out = zigpy picks a quiet one when it forms the network
    pan_id = 0x1A62               # left out = random when the network is formed
    database = "var/zigbee.db"    # zigpy's device database (paired devices survive restarts)
    permit_join_s = 0             # open the network for joining this long at start
    poll_interval_s = 60          # a device not heard from this long is read; no answer = offline
    request_timeout_s = 5
    report_min_s = 5              # attribute reporting asked from devices: at most this often ...
    report_max_s = 300            # ... and at least this often
    ota_dir = "var/zigbee-ota"    # Zigbee OTA files offered to the devices (default <data_dir>/zigbee-ota)
    ota_auto_update = true        # install a newer image as soon as the device asks; false = installer starts it
    ota_check_interval_s = 60     # how often the folder is looked at for new files
    sim_network = "dev-1"         # radio = "simulated" only: the in-process network (dev mode sets it)

and, optionally, one ``[[devices]]`` entry per paired device to name it::

    [[devices]]
    type = "zigbee"
    ieee = "00:0d:6f:00:0a:90:00:03"
    id = "water-heater"           # default zigbee-<ieee>
    name = "Water heater"
    role = "water_heater"         # grid_meter | thermostat | water_heater | pool_pump | load

A device's kind comes from its clusters: Thermostat (0x0201) makes a thermostat, On/Off (0x0006) a switch
(metered through Electrical Measurement 0x0B04 or Metering 0x0702), Metering alone the grid meter. What a relay
switches comes from ``role`` or else from the Device Class Value it declares as a DRLC client.

The meter's Smart Energy commands are decoded into ``events.DRLCEvent``/``DRLCCancel``, ``PriceEvent`` and
``UtilityMessage`` and handed to ``on_drlc_event``, ``on_price`` and ``on_message`` (plain or async callables
the gateway's DR lifecycle and tariff will set; by default they log and publish a reading). The integration
acknowledges a Load Control Event with "received" and rejects a cancel of an unknown event itself, as the
Smart Energy standard asks; every later status (started, completed, opted out, cancelled, ...) is sent by
``report_event_status``.

Commissioning (``commission_actions()`` / ``commission(action, params)``, for the installer's page):
``permit_join`` (``duration_s`` 1-254) opens the network through zigpy's ``permit()``; devices that join are
interviewed and appear on the bus; ``permit_join_state()`` gives the countdown. ``update_firmware``
(``device_id``) and ``check_firmware`` drive the OTA updates of ``ota.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import zigpy.exceptions
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.device import ZigbeeDevice
from zigpy.zcl import (
    AttributeReadEvent,
    AttributeReportedEvent,
    AttributeUpdatedEvent,
    Cluster,
    OtaImageAvailableEvent,
    foundation,
)
from zigpy.zcl.clusters.general import OnOff, Ota
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.hvac import Fan, Thermostat
from zigpy.zcl.clusters.measurement import TemperatureMeasurement
from zigpy.zcl.clusters.smartenergy import Metering
from zigpy.zcl.helpers import ReportingConfig

from hems.config import ConfigError
from hems.integration import IntegrationContext
from hems.model import HVAC_MODES, Capability, CommandError, DeviceInfo, DeviceStatus, Quantity, Reading

from . import events as ev
from . import radio as radio_mod
from . import smartenergy as se
from .ota import ZigbeeOta

Q = Quantity
log = logging.getLogger(__name__)

SECTION_KEYS = {
    "radio",
    "device",
    "baudrate",
    "flow_control",
    "channel",
    "pan_id",
    "database",
    "permit_join_s",
    "poll_interval_s",
    "request_timeout_s",
    "report_min_s",
    "report_max_s",
    "ota_dir",
    "ota_auto_update",
    "ota_check_interval_s",
    "sim_network",
}
DEVICE_KEYS = {"type", "ieee", "id", "name", "role"}
ROLES = ("grid_meter", "thermostat", "water_heater", "pool_pump", "load")
RECONNECT_S = 30.0

# What a failed exchange with a device raises
DEVICE_ERRORS = (TimeoutError, zigpy.exceptions.ZigbeeException)

SYSTEM_MODE_NAMES = {
    Thermostat.SystemMode.Off: "off",
    Thermostat.SystemMode.Auto: "auto",
    Thermostat.SystemMode.Cool: "cool",
    Thermostat.SystemMode.Heat: "heat",
    Thermostat.SystemMode.Emergency_Heating: "heat",
    Thermostat.SystemMode.Pre_cooling: "cool",
    Thermostat.SystemMode.Fan_only: "off",
}
SYSTEM_MODES = {
    "off": Thermostat.SystemMode.Off,
    "auto": Thermostat.SystemMode.Auto,
    "cool": Thermostat.SystemMode.Cool,
    "heat": Thermostat.SystemMode.Heat,
}
KWH_UNITS = (
    Metering.MeteringUnitofMeasure.Kwh_and_Kwh_binary,
    Metering.MeteringUnitofMeasure.Kwh_and_Kwh_bcd,
)
INVALID_TEMPERATURE = -0x8000


@dataclass(frozen=True, slots=True)
class DeviceNaming:
    """What a ``[[devices]]`` entry says about one paired device."""

    ieee: str
    device_id: str = ""
    name: str = ""
    role: str = ""


@dataclass(frozen=True, slots=True)
class ZigbeeSettings:
    radio: str = "simulated"
    device: str = ""
    baudrate: int = 115200
    flow_control: str | None = None
    channel: int | None = None
    pan_id: int | None = None
    database: str = ""
    permit_join_s: int = 0
    poll_interval_s: float = 60.0
    request_timeout_s: float = 5.0
    report_min_s: int = 5
    report_max_s: int = 300
    ota_dir: str = ""
    ota_auto_update: bool = True
    ota_check_interval_s: float = 60.0
    naming: dict[str, DeviceNaming] = field(default_factory=dict)


def parse_settings(ctx: IntegrationContext) -> ZigbeeSettings:
    """Validate ``[integrations.zigbee]`` and the zigbee ``[[devices]]``; ConfigError lists every problem."""
    problems: list[str] = []
    unknown = sorted(set(ctx.section) - SECTION_KEYS)
    for key in unknown:
        problems.append(
            f"unknown key 'integrations.zigbee.{key}'; allowed: {', '.join(sorted(SECTION_KEYS))}"
        )

    def opt(key: str, default: Any, kind: type | tuple[type, ...], allowed: str, check=None) -> Any:
        try:
            value = ctx.option(key, default, kind, allowed)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return default
        if check is not None and value is not None and not check(value):
            problems.append(f"integrations.zigbee.{key} = {ctx.section.get(key)!r}: must be {allowed}")
            return default
        return value

    radio = opt(
        "radio",
        "simulated",
        str,
        f"one of {', '.join(radio_mod.RADIO_NAMES)}",
        lambda v: v in radio_mod.RADIO_NAMES,
    )
    sim_network = opt("sim_network", "", str, "the name of a simulated network")
    device = opt("device", "", str, 'a serial port such as "/dev/ttyUSB0" or "socket://host:port"')
    if radio == "simulated":
        device = device or "sim://" + (sim_network or "default")
    elif not device:
        problems.append(
            f'integrations.zigbee.device is missing: radio = "{radio}" needs the coordinator\'s serial port, '
            'e.g. device = "/dev/ttyUSB0" (or "/dev/serial/by-id/...", "socket://host:port")'
        )
    baudrate = opt(
        "baudrate", 115200, int, "a serial speed between 9600 and 1000000", lambda v: 9600 <= v <= 1_000_000
    )
    flow = opt(
        "flow_control", "", str, '"", "hardware" or "software"', lambda v: v in ("", "hardware", "software")
    )
    channel = opt(
        "channel",
        15 if radio == "simulated" else None,
        (int, type(None)),
        "a channel 11-26",
        lambda v: 11 <= v <= 26,
    )
    pan_id = opt("pan_id", None, (int, type(None)), "a PAN id 0x0001-0xFFFE", lambda v: 0x0001 <= v <= 0xFFFE)
    default_db = str(Path(ctx.config.gateway.data_dir) / "zigbee.db")
    database = opt("database", default_db, str, "a file path", lambda v: bool(v.strip()))
    permit = opt("permit_join_s", 0, int, "seconds 0-254", lambda v: 0 <= v <= 254)
    poll = opt("poll_interval_s", 60.0, float, "seconds between 0.05 and 3600", lambda v: 0.05 <= v <= 3600)
    timeout = opt("request_timeout_s", 5.0, float, "seconds between 0.05 and 60", lambda v: 0.05 <= v <= 60)
    rmin = opt("report_min_s", 5, int, "seconds 0-3600", lambda v: 0 <= v <= 3600)
    rmax = opt("report_max_s", 300, int, "seconds 1-65534", lambda v: 1 <= v <= 65534)
    if rmin > rmax:
        problems.append(f"integrations.zigbee.report_min_s = {rmin} must not exceed report_max_s = {rmax}")
    default_ota = str(Path(ctx.config.gateway.data_dir) / "zigbee-ota")
    ota_dir = opt("ota_dir", default_ota, str, "a folder path", lambda v: bool(v.strip()))
    ota_auto = opt("ota_auto_update", True, bool, "true or false")
    ota_check = opt(
        "ota_check_interval_s", 60.0, float, "seconds between 0.05 and 86400", lambda v: 0.05 <= v <= 86400
    )

    naming: dict[str, DeviceNaming] = {}
    ids: set[str] = set()
    for entry in ctx.devices:
        ieee_text = entry.get("ieee")
        where = f'[[devices]] type = "zigbee" ieee = {ieee_text!r}'
        for key in sorted(set(entry) - DEVICE_KEYS):
            problems.append(f"{where}: unknown key '{key}'; allowed: {', '.join(sorted(DEVICE_KEYS))}")
        try:
            ieee = str(t.EUI64.convert(ieee_text))
        except Exception:
            problems.append(
                f'{where}: ieee must be the device\'s IEEE address like "00:0d:6f:00:0a:90:00:03"'
            )
            continue
        if ieee in naming:
            problems.append(f"{where}: this device is listed twice")
            continue
        values = {}
        for key in ("id", "name", "role"):
            value = entry.get(key, "")
            if not isinstance(value, str):
                problems.append(f"{where}: {key} = {value!r} must be a string")
                value = ""
            values[key] = value
        if values["role"] and values["role"] not in ROLES:
            problems.append(f"{where}: role = {values['role']!r} must be one of {', '.join(ROLES)}")
            values["role"] = ""
        if values["id"]:
            if values["id"] in ids:
                problems.append(f"{where}: id = {values['id']!r} is used by another zigbee device")
            ids.add(values["id"])
        naming[ieee] = DeviceNaming(ieee, values["id"], values["name"], values["role"])
    if problems:
        raise ConfigError(problems)
    return ZigbeeSettings(
        radio=radio,
        device=device,
        baudrate=baudrate,
        flow_control=flow or None,
        channel=channel,
        pan_id=pan_id,
        database=str(Path(database).expanduser()),
        permit_join_s=permit,
        poll_interval_s=poll,
        request_timeout_s=timeout,
        report_min_s=rmin,
        report_max_s=rmax,
        ota_dir=str(Path(ota_dir).expanduser()),
        ota_auto_update=ota_auto,
        ota_check_interval_s=ota_check,
        naming=naming,
    )


def default_device_id(ieee: t.EUI64 | str) -> str:
    return "zigbee-" + str(ieee).replace(":", "")


def scaled(raw: Any, multiplier: Any, divisor: Any) -> float | None:
    """``raw * multiplier / divisor``, or None while the multiplier or divisor is unknown or invalid."""
    if raw is None or multiplier is None or divisor is None or int(divisor) == 0:
        return None
    return float(raw) * int(multiplier) / int(divisor)


def find_cluster(device: ZigbeeDevice, cluster_id: int, *, server: bool = True) -> Cluster | None:
    for ep in device.non_zdo_endpoints:
        clusters = ep.in_clusters if server else ep.out_clusters
        if cluster_id in clusters:
            return clusters[cluster_id]
    return None


def classify(device: ZigbeeDevice, role: str = "") -> str | None:
    """'thermostat', 'relay', 'meter' or None (nothing the gateway uses)."""
    has = {cid for ep in device.non_zdo_endpoints for cid in ep.in_clusters}
    if role == "grid_meter" and Metering.cluster_id in has:
        return "meter"
    if Thermostat.cluster_id in has:
        return "thermostat"
    if OnOff.cluster_id in has:
        return "relay"
    if Metering.cluster_id in has:
        return "meter"
    return None


# -- devices on the bus ------------------------------------------------------------------------------------


class _Adapter:
    """One paired Zigbee device as a gateway device; subclasses map its clusters."""

    kind = ""
    capabilities: frozenset[Capability] = frozenset()
    default_name = "Zigbee device"
    # (cluster id, attribute, is analog, reportable change) reported by the device
    reporting: tuple[tuple[int, str, Any], ...] = ()
    # (cluster id, attributes) read once when the device is set up (scales, units, what it is)
    setup_reads: tuple[tuple[int, tuple[str, ...]], ...] = ()
    # (cluster id, attributes) read when the device has not been heard from for a while
    poll_reads: tuple[tuple[int, tuple[str, ...]], ...] = ()

    def __init__(self, zigbee: ZigbeeIntegration, device: ZigbeeDevice, naming: DeviceNaming) -> None:
        self.zigbee = zigbee
        self.device = device
        self.naming = naming
        self.device_id = naming.device_id or default_device_id(device.ieee)
        self._info: DeviceInfo | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self.last_heard = -math.inf

    @property
    def info(self) -> DeviceInfo:
        if self._info is None:
            self._info = self.make_info()
        return self._info

    @property
    def ieee(self) -> str:
        return str(self.device.ieee)

    def extra(self) -> dict:
        return {"ieee": self.ieee}

    def make_info(self) -> DeviceInfo:
        return DeviceInfo(
            self.device_id,
            self.naming.name or self.default_name,
            self.capabilities,
            "zigbee",
            self.device.manufacturer or "",
            self.device.model or "",
            self.extra(),
        )

    def cluster(self, cluster_id: int, *, server: bool = True) -> Cluster | None:
        return find_cluster(self.device, cluster_id, server=server)

    # -- events from zigpy -----------------------------------------------------------------------------
    def attach(self, device: ZigbeeDevice) -> None:
        self.detach()
        self.device = device
        for ep in device.non_zdo_endpoints:
            for cluster in [*ep.in_clusters.values(), *ep.out_clusters.values()]:
                self._unsubscribe.append(cluster.on_all_events(self._event_handler(cluster)))

    def detach(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    def _event_handler(self, cluster: Cluster) -> Callable[[Any], None]:
        def handle(data: Any) -> None:
            if isinstance(data, OtaImageAvailableEvent):  # zigpy checked the OTA folder for this device
                self.zigbee.ota.image_available(self, data)
                return
            if not isinstance(data, AttributeReportedEvent | AttributeReadEvent | AttributeUpdatedEvent):
                return
            if data.attribute_name is None:
                return
            self.zigbee._heard(self)
            if cluster.cluster_id == Ota.cluster_id:
                if data.attribute_name == "current_file_version" and data.value is not None:
                    self.zigbee.ota.version_reported(self, int(data.value))
                return
            try:
                self.on_attribute(cluster, data.attribute_name, data.value)
            except Exception:
                log.exception(
                    "zigbee %s: cannot map %s.%s = %r",
                    self.device_id,
                    cluster.name,
                    data.attribute_name,
                    data.value,
                )

        return handle

    def on_attribute(self, cluster: Cluster, name: str, value: Any) -> None:
        """Publish what an attribute value means; subclasses map their clusters."""

    def publish_cached(self) -> None:
        """Publish every value already in zigpy's attribute cache (restored from its database)."""
        for ep in self.device.non_zdo_endpoints:
            for cluster in [*ep.in_clusters.values(), *ep.out_clusters.values()]:
                for attr in cluster.AttributeDefs:
                    value = cluster.get(attr.name)
                    if value is not None:
                        self.on_attribute(cluster, attr.name, value)

    def publish(self, quantity: str, value: float | bool | str) -> None:
        self.zigbee.ctx.bus.publish(Reading(self.device_id, quantity, value, self.zigbee.ctx.clock.now()))

    # -- talking to the device -------------------------------------------------------------------------
    def _kwargs(self) -> dict[str, Any]:
        return {"timeout": self.zigbee.settings.request_timeout_s, "retries": 1}

    async def configure(self) -> None:
        """Bind the reported clusters to the coordinator, ask for reports, and read the set-up attributes."""
        s = self.zigbee.settings
        wanted: dict[int, dict[foundation.ZCLAttributeDef, ReportingConfig]] = {}
        for cluster_id, attribute, change in self.reporting:
            cluster = self.cluster(cluster_id)
            if cluster is None or attribute not in cluster.attributes_by_name:
                continue
            wanted.setdefault(cluster_id, {})[cluster.find_attribute(attribute)] = ReportingConfig(
                min_interval=s.report_min_s, max_interval=s.report_max_s, reportable_change=change
            )
        for cluster_id, config in wanted.items():
            cluster = self.cluster(cluster_id)
            assert cluster is not None
            # The bind goes first and fails fast (request_timeout_s) when the device does not answer
            (status, *_) = await cluster.bind(**self._kwargs())
            if status != zdo_t.Status.SUCCESS:
                log.warning("zigbee %s: binding %s was refused (%s)", self.device_id, cluster.name, status)
                continue
            await cluster.configure_reporting_multiple(config)
        for cluster_id, names in self.setup_reads:
            await self.read(cluster_id, names)

    async def read(self, cluster_id: int, names: tuple[str, ...], *, server: bool = True) -> dict[str, Any]:
        cluster = self.cluster(cluster_id, server=server)
        if cluster is None:
            return {}
        known = [
            n for n in names if n in cluster.attributes_by_name and not cluster.is_attribute_unsupported(n)
        ]
        if not known:
            return {}
        success, _failure = await cluster.read_attributes(known, **self._kwargs())
        return success

    async def poll(self) -> None:
        for cluster_id, names in self.poll_reads:
            await self.read(cluster_id, names)


class ZigbeeMeter(_Adapter):
    """A Smart Energy meter (ESI): grid_power_w (+ import), energy_import_wh, energy_export_wh, voltage_v."""

    kind = "meter"
    capabilities = frozenset({Capability.GRID_METER})
    default_name = "Smart meter"
    reporting = (
        (Metering.cluster_id, "instantaneous_demand", 1),
        (Metering.cluster_id, "current_summ_delivered", 1),
        (Metering.cluster_id, "current_summ_received", 1),
        (ElectricalMeasurement.cluster_id, "rms_voltage", 5),
    )
    setup_reads = (
        (Metering.cluster_id, ("unit_of_measure", "multiplier", "divisor", "metering_device_type")),
        (ElectricalMeasurement.cluster_id, ("ac_voltage_multiplier", "ac_voltage_divisor")),
        (Metering.cluster_id, ("instantaneous_demand", "current_summ_delivered", "current_summ_received")),
        (ElectricalMeasurement.cluster_id, ("rms_voltage",)),
    )
    poll_reads = (
        (Metering.cluster_id, ("instantaneous_demand", "current_summ_delivered", "current_summ_received")),
    )

    def _metering(self, cluster: Cluster, name: str) -> float | None:
        unit = cluster.get("unit_of_measure")
        if unit is not None and unit not in KWH_UNITS:
            self.zigbee._warn_once(
                f"unit:{self.ieee}", "zigbee %s meters in %s, not kWh: not mapped", self.device_id, unit
            )
            return None
        value = scaled(cluster.get(name), cluster.get("multiplier"), cluster.get("divisor"))
        return None if value is None else value * 1000.0  # kW -> W, kWh -> Wh

    def on_attribute(self, cluster: Cluster, name: str, value: Any) -> None:
        if cluster.cluster_id == Metering.cluster_id:
            targets = {
                "instantaneous_demand": (Q.GRID_POWER_W, 1),
                "current_summ_delivered": (Q.ENERGY_IMPORT_WH, 2),
                "current_summ_received": (Q.ENERGY_EXPORT_WH, 2),
            }
            names = (
                targets if name in ("multiplier", "divisor", "unit_of_measure") else {name: targets.get(name)}
            )
            for attr, target in names.items():
                if target is None:
                    continue
                w = self._metering(cluster, attr)
                if w is not None:
                    self.publish(target[0], round(w, target[1]))
        elif cluster.cluster_id == ElectricalMeasurement.cluster_id and name in (
            "rms_voltage",
            "ac_voltage_multiplier",
            "ac_voltage_divisor",
        ):
            volts = scaled(
                cluster.get("rms_voltage"),
                cluster.get("ac_voltage_multiplier", 1),
                cluster.get("ac_voltage_divisor", 1),
            )
            if volts is not None:
                self.publish(Q.VOLTAGE_V, round(volts, 1))


class ZigbeeThermostat(_Adapter):
    """Thermostat 0x0201 (+ Fan 0x0202, + Electrical Measurement when metered)."""

    kind = "thermostat"
    default_name = "Thermostat"
    reporting = (
        (Thermostat.cluster_id, "local_temperature", 10),
        (Thermostat.cluster_id, "outdoor_temperature", 10),
        (Thermostat.cluster_id, "occupied_heating_setpoint", 1),
        (Thermostat.cluster_id, "occupied_cooling_setpoint", 1),
        (Thermostat.cluster_id, "system_mode", 1),
        (Thermostat.cluster_id, "running_state", 1),
        (Fan.cluster_id, "fan_mode", 1),
        (ElectricalMeasurement.cluster_id, "active_power", 10),
    )
    setup_reads = (
        (
            Thermostat.cluster_id,
            (
                "abs_min_heat_setpoint_limit",
                "abs_max_heat_setpoint_limit",
                "abs_min_cool_setpoint_limit",
                "abs_max_cool_setpoint_limit",
            ),
        ),
        (Thermostat.cluster_id, ("min_setpoint_dead_band", "ctrl_sequence_of_oper")),
        (ElectricalMeasurement.cluster_id, ("ac_power_multiplier", "ac_power_divisor")),
        (
            Thermostat.cluster_id,
            ("local_temperature", "occupied_heating_setpoint", "occupied_cooling_setpoint", "system_mode"),
        ),
        (Thermostat.cluster_id, ("outdoor_temperature",)),
        (Fan.cluster_id, ("fan_mode",)),
        (ElectricalMeasurement.cluster_id, ("active_power",)),
    )
    poll_reads = ((Thermostat.cluster_id, ("local_temperature", "system_mode")),)

    @property
    def capabilities(self) -> frozenset[Capability]:  # type: ignore[override]
        caps = {Capability.THERMOSTAT}
        if self.cluster(ElectricalMeasurement.cluster_id) is not None:
            caps.add(Capability.METER)
        return frozenset(caps)

    def on_attribute(self, cluster: Cluster, name: str, value: Any) -> None:
        cid = cluster.cluster_id
        if cid == Thermostat.cluster_id:
            temps = {
                "local_temperature": Q.INDOOR_TEMP_C,
                "outdoor_temperature": Q.OUTDOOR_TEMP_C,  # optional attribute: many thermostats have a sensor
                "occupied_heating_setpoint": Q.HEAT_SETPOINT_C,
                "occupied_cooling_setpoint": Q.COOL_SETPOINT_C,
            }
            if name in temps and int(value) != INVALID_TEMPERATURE:
                self.publish(temps[name], round(int(value) / 100.0, 2))
            elif name == "system_mode":
                mode = SYSTEM_MODE_NAMES.get(Thermostat.SystemMode(value))
                if mode is not None:
                    self.publish(Q.HVAC_MODE, mode)
            elif name == "running_state":
                state = Thermostat.RunningState(value)
                running = (
                    "heat"
                    if state
                    & (Thermostat.RunningState.Heat_State_On | Thermostat.RunningState.Heat_2nd_Stage_On)
                    else "cool"
                    if state
                    & (Thermostat.RunningState.Cool_State_On | Thermostat.RunningState.Cool_2nd_Stage_On)
                    else "idle"
                )
                self.publish("hvac_running", running)
        elif cid == Fan.cluster_id and name == "fan_mode":
            self.publish("fan_mode", Fan.FanMode(value).name.lower())
        elif cid == ElectricalMeasurement.cluster_id and name in (
            "active_power",
            "ac_power_multiplier",
            "ac_power_divisor",
        ):
            watts = scaled(
                cluster.get("active_power"),
                cluster.get("ac_power_multiplier", 1),
                cluster.get("ac_power_divisor", 1),
            )
            if watts is not None:
                self.publish(Q.POWER_W, round(watts, 1))

    def _limit(self, name: str, default: float) -> float:
        cluster = self.cluster(Thermostat.cluster_id)
        value = cluster.get(name) if cluster is not None else None
        return default if value is None or int(value) == INVALID_TEMPERATURE else int(value) / 100.0

    async def set_hvac(
        self,
        *,
        mode: str | None = None,
        heat_setpoint_c: float | None = None,
        cool_setpoint_c: float | None = None,
    ) -> None:
        cluster = self.cluster(Thermostat.cluster_id)
        if cluster is None:
            raise CommandError(f"{self.device_id} has no thermostat cluster")
        writes: dict[str, Any] = {}
        if mode is not None:
            if mode not in HVAC_MODES:
                raise CommandError(f"hvac_mode must be one of {', '.join(HVAC_MODES)}, got {mode!r}")
            writes["system_mode"] = SYSTEM_MODES[mode]
        for key, attr, kind, value in (
            ("heat_setpoint_c", "occupied_heating_setpoint", "heat", heat_setpoint_c),
            ("cool_setpoint_c", "occupied_cooling_setpoint", "cool", cool_setpoint_c),
        ):
            if value is None:
                continue
            low = self._limit(f"abs_min_{kind}_setpoint_limit", 7.0 if kind == "heat" else 16.0)
            high = self._limit(f"abs_max_{kind}_setpoint_limit", 30.0 if kind == "heat" else 32.0)
            if not low <= value <= high:
                raise CommandError(
                    f"{key} must be between {low:g} and {high:g} °C for {self.device_id}, got {value}"
                )
            writes[attr] = round(value * 100)
        if not writes:
            return
        try:
            result = await cluster.write_attributes(writes, **self._kwargs())
        except DEVICE_ERRORS as exc:
            self.zigbee._unreachable(self, exc)
            raise CommandError(
                f"{self.device_id} did not answer the write of {', '.join(writes)}: {exc}"
            ) from exc
        refused = [
            f"{cluster.find_attribute(r.attrid).name} ({foundation.Status(r.status).name})"
            for r in result[0]
            if r.status != foundation.Status.SUCCESS
        ]
        # Read back what the device now has, whatever it accepted
        with contextlib.suppress(*DEVICE_ERRORS):
            await self.read(Thermostat.cluster_id, tuple(writes))
        if refused:
            raise CommandError(f"{self.device_id} refused {', '.join(refused)}")

    async def set_fan_mode(self, fan_mode: str) -> None:
        cluster = self.cluster(Fan.cluster_id)
        if cluster is None:
            raise CommandError(f"{self.device_id} has no fan control")
        try:
            value = Fan.FanMode[fan_mode.capitalize()]
        except KeyError:
            raise CommandError(
                f"fan_mode must be one of {', '.join(m.lower() for m in Fan.FanMode.__members__)}, got {fan_mode!r}"
            ) from None
        try:
            result = await cluster.write_attributes({"fan_mode": value}, **self._kwargs())
        except DEVICE_ERRORS as exc:
            raise CommandError(f"{self.device_id} did not answer: {exc}") from exc
        if any(r.status != foundation.Status.SUCCESS for r in result[0]):
            raise CommandError(f"{self.device_id} refused fan_mode {fan_mode}")
        with contextlib.suppress(*DEVICE_ERRORS):
            await self.read(Fan.cluster_id, ("fan_mode",))


class ZigbeeRelay(_Adapter):
    """On/Off relay: switch_on, and power_w/energy_wh when metered; tank_temp_c from a water heater probe."""

    kind = "relay"
    reporting = (
        (OnOff.cluster_id, "on_off", 1),
        (ElectricalMeasurement.cluster_id, "active_power", 10),
        (Metering.cluster_id, "current_summ_delivered", 1),
        (TemperatureMeasurement.cluster_id, "measured_value", 10),
    )
    setup_reads = (
        (ElectricalMeasurement.cluster_id, ("ac_power_multiplier", "ac_power_divisor")),
        (Metering.cluster_id, ("unit_of_measure", "multiplier", "divisor")),
        (OnOff.cluster_id, ("on_off",)),
        (ElectricalMeasurement.cluster_id, ("active_power",)),
        (Metering.cluster_id, ("current_summ_delivered",)),
        (TemperatureMeasurement.cluster_id, ("measured_value",)),
    )
    poll_reads = ((OnOff.cluster_id, ("on_off",)),)

    @property
    def load(self) -> str:
        if self.naming.role in ("water_heater", "pool_pump", "load"):
            return self.naming.role
        drlc = self.cluster(se.Drlc.cluster_id, server=False)
        device_class = drlc.get("device_class_value") if drlc is not None else None
        if device_class:
            names = ev.device_class_names(int(device_class))
            if names:
                return names[0]
        return "load"

    @property
    def default_name(self) -> str:  # type: ignore[override]
        return {"water_heater": "Water heater", "pool_pump": "Pool pump"}.get(self.load, "Load relay")

    @property
    def capabilities(self) -> frozenset[Capability]:  # type: ignore[override]
        caps = {Capability.SWITCH}
        if (
            self.cluster(ElectricalMeasurement.cluster_id) is not None
            or self.cluster(Metering.cluster_id) is not None
        ):
            caps.add(Capability.METER)
        return frozenset(caps)

    def extra(self) -> dict:
        return {"ieee": self.ieee, "load": self.load}

    async def configure(self) -> None:
        # What the relay switches decides what its readings mean (a water heater's probe is its tank)
        with contextlib.suppress(*DEVICE_ERRORS):
            await self.read(se.Drlc.cluster_id, ("device_class_value",), server=False)
        await super().configure()

    def on_attribute(self, cluster: Cluster, name: str, value: Any) -> None:
        cid = cluster.cluster_id
        if cid == OnOff.cluster_id and name == "on_off":
            self.publish(Q.SWITCH_ON, bool(value))
        elif cid == ElectricalMeasurement.cluster_id and name in (
            "active_power",
            "ac_power_multiplier",
            "ac_power_divisor",
        ):
            watts = scaled(
                cluster.get("active_power"),
                cluster.get("ac_power_multiplier", 1),
                cluster.get("ac_power_divisor", 1),
            )
            if watts is not None:
                self.publish(Q.POWER_W, round(watts, 1))
        elif cid == Metering.cluster_id and name in ("current_summ_delivered", "multiplier", "divisor"):
            if cluster.get("unit_of_measure") not in (None, *KWH_UNITS):
                return
            kwh = scaled(
                cluster.get("current_summ_delivered"), cluster.get("multiplier"), cluster.get("divisor")
            )
            if kwh is not None:
                self.publish(Q.ENERGY_WH, round(kwh * 1000.0, 1))
            if self.cluster(ElectricalMeasurement.cluster_id) is None:
                kw = scaled(
                    cluster.get("instantaneous_demand"), cluster.get("multiplier"), cluster.get("divisor")
                )
                if kw is not None:
                    self.publish(Q.POWER_W, round(kw * 1000.0, 1))
        elif cid == se.Drlc.cluster_id and name == "device_class_value":
            probe = self.cluster(TemperatureMeasurement.cluster_id)
            if probe is not None and probe.get("measured_value") is not None:
                self.on_attribute(probe, "measured_value", probe.get("measured_value"))
        elif cid == TemperatureMeasurement.cluster_id and name == "measured_value":
            if int(value) != INVALID_TEMPERATURE:
                self.publish(
                    Q.TANK_TEMP_C if self.load == "water_heater" else "temperature_c",
                    round(int(value) / 100.0, 2),
                )

    async def set_switch(self, on: bool) -> None:
        cluster = self.cluster(OnOff.cluster_id)
        if cluster is None:
            raise CommandError(f"{self.device_id} has no On/Off cluster")
        try:
            rsp = await (cluster.on(**self._kwargs()) if on else cluster.off(**self._kwargs()))
        except DEVICE_ERRORS as exc:
            self.zigbee._unreachable(self, exc)
            raise CommandError(f"{self.device_id} did not answer {'on' if on else 'off'}: {exc}") from exc
        status = getattr(rsp, "status", foundation.Status.SUCCESS)
        if status != foundation.Status.SUCCESS:
            raise CommandError(
                f"{self.device_id} refused {'on' if on else 'off'}: {foundation.Status(status).name}"
            )
        with contextlib.suppress(*DEVICE_ERRORS):
            await self.read(OnOff.cluster_id, ("on_off",))


ADAPTERS: dict[str, type[_Adapter]] = {
    "meter": ZigbeeMeter,
    "thermostat": ZigbeeThermostat,
    "relay": ZigbeeRelay,
}


@dataclass(frozen=True, slots=True)
class _DrlcRecord:
    event: ev.DRLCEvent
    ieee: t.EUI64
    endpoint_id: int


_SE_COMMANDS = {
    se.Drlc.ClientCommandDefs.load_control_event.schema: "load_control_event",
    se.Drlc.ClientCommandDefs.cancel_load_control_event.schema: "cancel_load_control_event",
    se.Drlc.ClientCommandDefs.cancel_all_load_control_events.schema: "cancel_all_load_control_events",
    se.Price.ClientCommandDefs.publish_price.schema: "publish_price",
    se.Messaging.ClientCommandDefs.display_message.schema: "display_message",
    se.Messaging.ClientCommandDefs.cancel_message.schema: "cancel_message",
}


# -- the integration -----------------------------------------------------------------------------------------


class ZigbeeIntegration:
    name = "zigbee"

    def __init__(self, ctx: IntegrationContext) -> None:
        self.ctx = ctx
        self.settings = parse_settings(ctx)
        self.app_class = radio_mod.controller_class(
            self.settings.radio
        )  # ConfigError if the library is missing
        self.app: Any = None
        self.adapters: dict[str, _Adapter] = {}  # by IEEE text
        self.on_drlc_event: Callable[[ev.DRLCEvent | ev.DRLCCancel], Any] = self._default_drlc_handler
        self.on_price: Callable[[ev.PriceEvent], Any] = self._default_price_handler
        self.on_message: Callable[[ev.UtilityMessage], Any] = self._default_message_handler
        self.drlc_events: dict[int, _DrlcRecord] = {}
        self.dr_bridge = None
        if ctx.dr is not None:  # the meter's load-control events join the gateway's one DR lifecycle
            from .drbridge import ZigbeeDRBridge

            self.dr_bridge = ZigbeeDRBridge(self, ctx.dr)
        self.price: ev.PriceEvent | None = None
        self.messages: dict[int, ev.UtilityMessage] = {}
        self._se_listeners: dict[str, tuple[ZigbeeDevice, Callable[[], None]]] = {}
        self._ignored: set[str] = set()
        self._warned: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._poll_task: asyncio.Task | None = None
        self._connect_task: asyncio.Task | None = None
        self._permit_until = 0.0
        self._permit_until_ts = 0.0  # the same, in POSIX time (the radio counts real seconds)
        self._permit_joined: list[str] = []  # device ids that joined during the current opening
        self.ota = ZigbeeOta(
            self,
            Path(self.settings.ota_dir),
            auto_update=self.settings.ota_auto_update,
            check_interval_s=self.settings.ota_check_interval_s,
        )
        self._stopping = False
        self._garbage_logged_at = -math.inf
        self._garbage_count = 0

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._make_database_dir()
        self.ota.start()
        if not await self._connect():
            self._connect_task = asyncio.get_running_loop().create_task(
                self._reconnect_forever(), name="zigbee-connect"
            )

    def _make_database_dir(self) -> None:
        Path(self.settings.database).parent.mkdir(parents=True, exist_ok=True)

    async def _connect(self) -> bool:
        s = self.settings
        config = radio_mod.zigpy_config(
            device_path=s.device,
            baudrate=s.baudrate,
            flow_control=s.flow_control,
            database=s.database,
            channel=s.channel,
            pan_id=s.pan_id,
        )
        app = None
        try:
            # Open zigpy's database first, so that it is closed again when the radio does not start
            app = await self.app_class.new(config, auto_form=True, start_radio=False)
            await app.startup(auto_form=True)
        except Exception as exc:
            if app is not None:
                with contextlib.suppress(Exception):
                    await app.shutdown()
            log.error(
                "zigbee: the %s radio at %s did not start: %s: %s; retrying every %.0f s",
                s.radio,
                s.device,
                type(exc).__name__,
                exc,
                RECONNECT_S,
            )
            return False
        self.app = app
        app.add_listener(self)
        self.ota.attach(app)
        info = app.state.network_info
        log.info(
            "zigbee: %s radio up on channel %s, PAN 0x%04X, %d paired device(s)",
            s.radio,
            info.channel,
            info.pan_id,
            len(app.devices) - 1,
        )
        for device in list(app.devices.values()):
            if (
                isinstance(device, ZigbeeDevice)
                and device.ieee != app.state.node_info.ieee
                and device.is_initialized
            ):
                await self._adopt(device, fresh=False)
        if s.permit_join_s:
            await self.permit_join(s.permit_join_s)
        self._poll_task = asyncio.get_running_loop().create_task(self._poll_forever(), name="zigbee-poll")
        return True

    async def _reconnect_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(RECONNECT_S)
            if await self._connect():
                return

    async def stop(self) -> None:
        self._stopping = True
        await self.ota.stop()
        for task in [self._connect_task, self._poll_task, *self._tasks]:
            if task is not None:
                task.cancel()
        for task in [self._connect_task, self._poll_task, *self._tasks]:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tasks.clear()
        for _, cancel in self._se_listeners.values():
            cancel()
        self._se_listeners.clear()
        for adapter in self.adapters.values():
            adapter.detach()
            if adapter.device_id in {d.info.device_id for d in self.ctx.bus.devices()}:
                self.ctx.bus.remove_device(adapter.device_id)
        if self.app is not None:
            self.app.remove_listener(self)
            await self.app.shutdown()
            self.app = None

    # -- pairing --------------------------------------------------------------------------------------------
    async def permit_join(self, seconds: int = 60) -> None:
        """Let new devices join (through any router) for ``seconds`` (0 closes the network)."""
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 <= seconds <= 254:
            raise ValueError(f"permit_join takes whole seconds 0-254, got {seconds!r}")
        if self.app is None:
            raise CommandError("the Zigbee radio is not connected")
        await self.app.permit(time_s=seconds)
        self._permit_until = asyncio.get_running_loop().time() + seconds
        self._permit_until_ts = time.time() + seconds if seconds else 0.0
        self._permit_joined = []
        log.info("zigbee: %s", f"joining permitted for {seconds} s" if seconds else "joining closed")

    @property
    def permit_join_remaining_s(self) -> float:
        return max(0.0, self._permit_until - asyncio.get_running_loop().time())

    def permit_join_state(self) -> dict[str, Any]:
        """For the installer's countdown: open or not, until when (POSIX time, real seconds), who joined."""
        remaining = self.permit_join_remaining_s
        return {
            "permit_join_open": remaining > 0,
            "permit_join_remaining_s": round(remaining, 1),
            "permit_join_until_ts": self._permit_until_ts if remaining > 0 else None,
            "joined_device_ids": list(self._permit_joined),
        }

    # -- commissioning (the installer's page) ------------------------------------------------------------
    def commission_actions(self) -> list[dict[str, Any]]:
        devices = sorted(a.device_id for a in self.adapters.values() if ota_capable(a))
        return [
            {
                "integration": self.name,
                "action": "permit_join",
                "title": "Pair Zigbee devices",
                "description": "Open the Zigbee network so that a device in pairing mode can join.",
                "params": {
                    "duration_s": {
                        "type": "integer",
                        "label": "Keep the network open for (seconds)",
                        "default": 60,
                        "min": 1,
                        "max": 254,
                    }
                },
                "state": self.permit_join_state(),
            },
            {
                "integration": self.name,
                "action": "update_firmware",
                "title": "Update a Zigbee device's firmware",
                "description": f"Install the newest image for the device from {self.settings.ota_dir}.",
                "params": {"device_id": {"type": "string", "label": "Device", "choices": devices}},
            },
            {
                "integration": self.name,
                "action": "check_firmware",
                "title": "Look for Zigbee firmware",
                "description": "Read the OTA folder again and ask every device to check for a newer image.",
                "params": {},
                "state": self.ota.describe(),
            },
        ]

    async def commission(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one commissioning action; ValueError says what is wrong with the request."""
        params = dict(params or {})
        if action == "permit_join":
            seconds = params.pop("duration_s", 60)
            _no_more(action, params)
            if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= 254:
                raise ValueError(f"duration_s = {seconds!r}: must be whole seconds 1-254")
            if self.app is None:
                raise ValueError("the Zigbee radio is not connected; check the coordinator stick")
            await self.permit_join(seconds)
            return {"duration_s": seconds, **self.permit_join_state()}
        if action == "update_firmware":
            device_id = params.pop("device_id", None)
            _no_more(action, params)
            if not isinstance(device_id, str) or not device_id:
                raise ValueError("device_id is required: the Zigbee device to update")
            try:
                adapter = self.device(device_id)
            except KeyError:
                known = ", ".join(sorted(a.device_id for a in self.adapters.values())) or "none"
                raise ValueError(f"no Zigbee device {device_id!r}; paired: {known}") from None
            return await self.ota.request_update(adapter)
        if action == "check_firmware":
            _no_more(action, params)
            await self.ota.provider.refresh()
            asked = await self.ota.notify_all()
            return {**self.ota.describe(), "devices_asked": asked, "devices": self._firmware_list()}
        raise ValueError(
            f"unknown zigbee action {action!r}; available: permit_join, update_firmware, check_firmware"
        )

    def _firmware_list(self) -> list[dict[str, Any]]:
        out = []
        for adapter in sorted(self.adapters.values(), key=lambda a: a.device_id):
            status = self.ctx.bus.firmware(adapter.device_id)
            if status is not None:
                out.append({"device_id": adapter.device_id, **status.to_json()})
        return out

    # zigpy application listener (called synchronously by zigpy)
    def device_joined(self, device: ZigbeeDevice) -> None:
        log.info("zigbee: device %s joined (0x%04X); interviewing it", device.ieee, device.nwk)

    def device_initialized(self, device: ZigbeeDevice) -> None:
        if self.app is None or device.ieee == self.app.state.node_info.ieee:
            return
        if self.permit_join_remaining_s > 0:
            log.info("zigbee: %s joined while the network was open for pairing", device.ieee)
        self._spawn(self._adopt(device, fresh=True), f"zigbee-adopt-{device.ieee}")

    def device_init_failure(self, device: ZigbeeDevice) -> None:
        log.warning(
            "zigbee: the interview of %s failed; it is retried when the device announces itself again "
            "(power-cycle it, or pair it again)",
            device.ieee,
        )

    def device_left(self, device: ZigbeeDevice) -> None:
        adapter = self.adapters.get(str(device.ieee))
        if adapter is not None:
            self.ctx.bus.set_status(adapter.device_id, DeviceStatus.OFFLINE, "left the Zigbee network")
        else:
            log.info("zigbee: device %s left the network", device.ieee)

    def device_removed(self, device: ZigbeeDevice) -> None:
        adapter = self.adapters.pop(str(device.ieee), None)
        if adapter is not None:
            adapter.detach()
            self.ctx.bus.remove_device(adapter.device_id)
        entry = self._se_listeners.pop(str(device.ieee), None)
        if entry is not None:
            entry[1]()

    def connection_lost(self, exc: Exception) -> None:
        if self._stopping:
            return
        log.error("zigbee: lost the connection to the radio: %s; reconnecting", exc)
        for adapter in self.adapters.values():
            self.ctx.bus.set_status(adapter.device_id, DeviceStatus.OFFLINE, "Zigbee radio disconnected")
        self._spawn(self._restart_radio(), "zigbee-restart")

    async def _restart_radio(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
        app, self.app = self.app, None
        if app is not None:
            app.remove_listener(self)
            with contextlib.suppress(Exception):
                await app.shutdown()
        if not await self._connect():
            await self._reconnect_forever()

    def frame_received(self, device: ZigbeeDevice, packet: t.ZigbeePacket) -> None:
        adapter = self.adapters.get(str(device.ieee))
        if adapter is None:
            return
        if packet.dst_ep == 0 and packet.cluster_id == zdo_t.ZDOCmd.Device_annce and adapter.device is device:
            # Back after a power cut or a rejoin: zigpy does not interview it again, so check its set-up here
            log.info("zigbee: %s announced itself; setting its reporting up again", adapter.device_id)
            self._spawn(self._refresh(adapter), f"zigbee-refresh-{device.ieee}")
        self._heard(adapter)

    def frame_dropped(self, device: ZigbeeDevice | None, packet: t.ZigbeePacket | None, reason: str) -> None:
        adapter = self.adapters.get(str(device.ieee)) if device is not None else None
        if adapter is not None:
            # Logged by the bus once, when the status changes; a valid frame makes it ok again
            self.ctx.bus.set_status(
                adapter.device_id, DeviceStatus.FAULTY, f"sent a malformed frame: {reason}"
            )
            return
        self._garbage_count += 1
        now = asyncio.get_running_loop().time()
        source = f"device {device.ieee}" if device is not None else "the air"
        if now - self._garbage_logged_at >= 60.0:
            log.warning(
                "zigbee: dropped a malformed frame from %s: %s (%d dropped so far)",
                source,
                reason,
                self._garbage_count,
            )
            self._garbage_logged_at = now
        else:
            log.debug("zigbee: dropped a malformed frame from %s: %s", source, reason)

    # -- devices ---------------------------------------------------------------------------------------------
    def _naming(self, ieee: t.EUI64) -> DeviceNaming:
        return self.settings.naming.get(str(ieee), DeviceNaming(str(ieee)))

    async def _adopt(self, device: ZigbeeDevice, *, fresh: bool) -> None:
        ieee = str(device.ieee)
        naming = self._naming(device.ieee)
        self._watch_smart_energy(device)
        kind = classify(device, naming.role)
        if kind is None:
            if ieee not in self._ignored:
                self._ignored.add(ieee)
                log.info(
                    "zigbee: %s (%s %s) has no cluster the gateway uses; ignored",
                    ieee,
                    device.manufacturer,
                    device.model,
                )
            return
        if (
            naming.role
            and naming.role != "grid_meter"
            and {"thermostat": "thermostat"}.get(naming.role, "relay") != kind
        ):
            self._warn_once(
                f"role:{ieee}",
                "zigbee %s: role %r does not fit a %s; its clusters decide",
                ieee,
                naming.role,
                kind,
            )
        adapter = self.adapters.get(ieee)
        if adapter is None or adapter.kind != kind:
            if adapter is not None:
                adapter.detach()
            adapter = ADAPTERS[kind](self, device, naming)
            self.adapters[ieee] = adapter
        adapter.attach(device)
        adapter.publish_cached()
        if fresh:
            try:
                await adapter.configure()
            except DEVICE_ERRORS as exc:
                log.warning("zigbee: could not set up reporting on %s: %s", adapter.device_id, exc)
        adapter._info = adapter.make_info()
        bus = self.ctx.bus
        if adapter.device_id not in {d.info.device_id for d in bus.devices()}:
            try:
                bus.add_device(adapter)
            except ValueError as exc:
                log.error("zigbee: %s: %s; give it another id in a [[devices]] entry", ieee, exc)
                self.adapters.pop(ieee, None)
                adapter.detach()
                return
            log.info("zigbee: %s is %s (%s)", ieee, adapter.device_id, adapter.info.name)
            if fresh and self.permit_join_remaining_s > 0 and adapter.device_id not in self._permit_joined:
                self._permit_joined.append(adapter.device_id)
        if fresh:
            adapter.last_heard = asyncio.get_running_loop().time()
            bus.set_status(adapter.device_id, DeviceStatus.OK)
        else:
            self._spawn(self._refresh(adapter), f"zigbee-refresh-{ieee}")
        if ota_capable(adapter):
            self._spawn(self.ota.device_adopted(adapter), f"zigbee-ota-check-{ieee}")

    async def _refresh(self, adapter: _Adapter) -> None:
        """A device restored from the database: set its reporting up again and check it answers."""
        try:
            await adapter.configure()
        except DEVICE_ERRORS as exc:
            self._unreachable(adapter, exc)

    def _heard(self, adapter: _Adapter) -> None:
        adapter.last_heard = asyncio.get_running_loop().time()
        status, _ = self.ctx.bus.status(adapter.device_id)
        if status is not DeviceStatus.OK and adapter.device_id in {
            d.info.device_id for d in self.ctx.bus.devices()
        }:
            self.ctx.bus.set_status(adapter.device_id, DeviceStatus.OK)

    def _unreachable(self, adapter: _Adapter, exc: BaseException) -> None:
        reason = f"not answering ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
        self.ctx.bus.set_status(adapter.device_id, DeviceStatus.OFFLINE, reason)

    async def _poll_forever(self) -> None:
        interval = self.settings.poll_interval_s
        while True:
            await asyncio.sleep(interval)
            await self.poll_once(only_quiet=True)

    async def poll_once(self, *, only_quiet: bool = False) -> None:
        """Read every device (or only those not heard from for a poll interval); no answer = offline."""
        now = asyncio.get_running_loop().time()
        adapters = [
            a
            for a in self.adapters.values()
            if not only_quiet or now - a.last_heard >= self.settings.poll_interval_s
        ]

        async def poll(adapter: _Adapter) -> None:
            try:
                await adapter.poll()
            except DEVICE_ERRORS as exc:
                self._unreachable(adapter, exc)

        await asyncio.gather(*(poll(a) for a in adapters))

    def device(self, device_id: str) -> _Adapter:
        for adapter in self.adapters.values():
            if adapter.device_id == device_id:
                return adapter
        raise KeyError(f"no zigbee device {device_id!r}")

    # -- Smart Energy ----------------------------------------------------------------------------------------
    def _watch_smart_energy(self, device: ZigbeeDevice) -> None:
        if not any(
            find_cluster(device, c)
            for c in (se.Drlc.cluster_id, se.Price.cluster_id, se.Messaging.cluster_id)
        ):
            return
        ieee = str(device.ieee)
        old = self._se_listeners.get(ieee)
        if old is not None:
            if old[0] is device:
                return
            old[1]()
        cancel = self.app.register_callback_listener(
            src=device,
            filters=[lambda hdr, cmd: type(cmd) in _SE_COMMANDS],
            callback=lambda hdr, cmd, device=device: self._on_se_command(device, cmd),
        )
        self._se_listeners[ieee] = (device, cancel)

    def _source(self, device: ZigbeeDevice) -> str:
        adapter = self.adapters.get(str(device.ieee))
        return adapter.device_id if adapter is not None else default_device_id(device.ieee)

    def _on_se_command(self, device: ZigbeeDevice, cmd: Any) -> None:
        kind = _SE_COMMANDS.get(type(cmd))
        source, now = self._source(device), self.ctx.clock.now()
        adapter = self.adapters.get(str(device.ieee))
        if adapter is not None:
            self._heard(adapter)
        try:
            if kind == "load_control_event":
                event = ev.decode_load_control_event(cmd, source=source, received_ts=now)
                cluster = find_cluster(device, se.Drlc.cluster_id)
                previous = self.drlc_events.get(event.issuer_event_id)
                if previous is not None and _same_event(previous.event, event):
                    return  # a repeat (e.g. after Get Scheduled Events): already acknowledged and handed on
                self.drlc_events[event.issuer_event_id] = _DrlcRecord(
                    event, device.ieee, cluster.endpoint.endpoint_id
                )
                log.info(
                    "zigbee: DRLC event %d from %s: %s, %d min from %s, loads %s",
                    event.issuer_event_id,
                    source,
                    event.criticality_name,
                    event.duration_min,
                    "now" if not event.start_ts else event.start_ts,
                    ", ".join(event.loads) or "none",
                )
                self._spawn(self._ack_event(event.issuer_event_id), "zigbee-drlc-ack")
                self._call(self.on_drlc_event, event)
            elif kind in ("cancel_load_control_event", "cancel_all_load_control_events"):
                decode = ev.decode_cancel if kind == "cancel_load_control_event" else ev.decode_cancel_all
                cancel = decode(cmd, source=source, received_ts=now)
                if cancel.issuer_event_id is not None and cancel.issuer_event_id not in self.drlc_events:
                    log.warning(
                        "zigbee: %s cancelled DRLC event %d, which it never sent",
                        source,
                        cancel.issuer_event_id,
                    )
                    cluster = find_cluster(device, se.Drlc.cluster_id)
                    fields = ev.report_event_status_fields(
                        None, cancel.issuer_event_id, "rejected_undefined_event", ts=now
                    )
                    self._spawn(
                        self._send_status(device.ieee, cluster.endpoint.endpoint_id, fields),
                        "zigbee-drlc-reject",
                    )
                    return
                self._call(self.on_drlc_event, cancel)
            elif kind == "publish_price":
                self._price_received(device, ev.decode_publish_price(cmd, source=source, received_ts=now))
            elif kind in ("display_message", "cancel_message"):
                decode = ev.decode_display_message if kind == "display_message" else ev.decode_cancel_message
                message = decode(cmd, source=source, received_ts=now)
                if message.cancelled:
                    self.messages.pop(message.message_id, None)
                else:
                    self.messages[message.message_id] = message
                self._call(self.on_message, message)
        except Exception as exc:
            log.warning("zigbee: cannot use %s from %s: %s", kind, source, exc)
            if adapter is not None:
                self.ctx.bus.set_status(
                    adapter.device_id, DeviceStatus.FAULTY, f"sent an invalid {kind}: {exc}"
                )

    def _price_received(self, device: ZigbeeDevice, price: ev.PriceEvent) -> None:
        self.price = price
        if price.acknowledgement_required:
            self._spawn(self._ack_price(device, price), "zigbee-price-ack")
        self._call(self.on_price, price)

    def _call(self, callback: Callable[[Any], Any], value: Any) -> None:
        try:
            result = callback(value)
        except Exception:
            log.exception("zigbee: %s handler failed", type(value).__name__)
            return
        if inspect.isawaitable(result):
            self._spawn(result, f"zigbee-{type(value).__name__}")

    async def _ack_event(self, issuer_event_id: int) -> None:
        try:
            await self.report_event_status(issuer_event_id, "received")
        except CommandError as exc:
            log.warning("zigbee: could not acknowledge DRLC event %d: %s", issuer_event_id, exc)

    async def report_event_status(
        self,
        issuer_event_id: int,
        status: str | int | se.EventStatus,
        *,
        ts: float | None = None,
        criticality_applied: int | None = None,
        cooling_setpoint_applied_c: float | None = None,
        heating_setpoint_applied_c: float | None = None,
        avg_load_adjustment_applied_pct: int | None = None,
        duty_cycle_applied_pct: int | None = None,
    ) -> None:
        """Send Report Event Status for a DRLC event to the meter that sent it.

        ``status`` is a lifecycle word (received, started, completed, opted_out, opted_in, cancelled,
        superseded, partially_completed_opted_out, ...; see ``events.STATUS_BY_NAME``) or an ``EventStatus``.
        What was applied defaults to "not used" (criticality: the event's). Raises LookupError for an unknown
        event, ValueError for a bad status and CommandError when the meter does not confirm it.
        """
        record = self.drlc_events.get(issuer_event_id)
        if record is None:
            raise LookupError(
                f"no Zigbee DRLC event {issuer_event_id}; known: {sorted(self.drlc_events) or 'none'}"
            )
        fields = ev.report_event_status_fields(
            record.event,
            issuer_event_id,
            status,
            ts=self.ctx.clock.now() if ts is None else ts,
            criticality_applied=criticality_applied,
            cooling_setpoint_applied_c=cooling_setpoint_applied_c,
            heating_setpoint_applied_c=heating_setpoint_applied_c,
            avg_load_adjustment_applied_pct=avg_load_adjustment_applied_pct,
            duty_cycle_applied_pct=duty_cycle_applied_pct,
        )
        await self._send_status(record.ieee, record.endpoint_id, fields)

    async def _send_status(self, ieee: t.EUI64, endpoint_id: int, fields: dict[str, Any]) -> None:
        cluster = self._meter_cluster(ieee, endpoint_id, se.Drlc.cluster_id)
        try:
            rsp = await cluster.report_event_status(
                timeout=self.settings.request_timeout_s, retries=1, **fields
            )
        except DEVICE_ERRORS as exc:
            raise CommandError(f"the meter {ieee} did not confirm the DRLC event status: {exc}") from exc
        status = getattr(rsp, "status", foundation.Status.SUCCESS)
        if status != foundation.Status.SUCCESS:
            raise CommandError(
                f"the meter {ieee} refused the DRLC event status: {foundation.Status(status).name}"
            )
        log.info("zigbee: DRLC event %d reported %s", fields["issuer_event_id"], fields["event_status"].name)

    def _meter_cluster(self, ieee: t.EUI64, endpoint_id: int | None, cluster_id: int) -> Cluster:
        if self.app is None:
            raise CommandError("the Zigbee radio is not connected")
        try:
            device = self.app.get_device(ieee=ieee)
            if endpoint_id is None:
                cluster = find_cluster(device, cluster_id)
                if cluster is None:
                    raise KeyError(cluster_id)
                return cluster
            return device.endpoints[endpoint_id].in_clusters[cluster_id]
        except KeyError:
            raise CommandError(
                f"the meter {ieee} is no longer paired or has no cluster 0x{cluster_id:04X}"
            ) from None

    def _esi(self) -> ZigbeeDevice:
        if self.app is None:
            raise CommandError("the Zigbee radio is not connected")
        for device in self.app.devices.values():
            if isinstance(device, ZigbeeDevice) and find_cluster(device, se.Drlc.cluster_id) is not None:
                return device
        raise CommandError("no paired Zigbee meter offers demand response (DRLC server)")

    async def get_scheduled_events(self, *, start_ts: float = 0.0, count: int = 0) -> None:
        """Ask the meter to send its scheduled DRLC events again (they arrive through ``on_drlc_event``)."""
        device = self._esi()
        cluster = self._meter_cluster(device.ieee, None, se.Drlc.cluster_id)
        try:
            await cluster.get_scheduled_events(
                start_time=se.posix_to_utc(start_ts),
                number_of_events=count,
                timeout=self.settings.request_timeout_s,
            )
        except DEVICE_ERRORS as exc:
            raise CommandError(f"the meter did not answer Get Scheduled Events: {exc}") from exc

    async def request_current_price(self) -> ev.PriceEvent | None:
        """Ask the meter for the current price (Get Current Price); also handed to ``on_price``."""
        if self.app is None:
            raise CommandError("the Zigbee radio is not connected")
        for device in self.app.devices.values():
            cluster = find_cluster(device, se.Price.cluster_id) if isinstance(device, ZigbeeDevice) else None
            if cluster is None:
                continue
            try:
                rsp = await cluster.get_current_price(
                    command_options=se.GetCurrentPriceOptions.Requestor_Rx_On_When_Idle,
                    timeout=self.settings.request_timeout_s,
                )
            except DEVICE_ERRORS as exc:
                raise CommandError(f"the meter did not answer Get Current Price: {exc}") from exc
            if type(rsp) is se.Price.ClientCommandDefs.publish_price.schema:
                price = ev.decode_publish_price(
                    rsp, source=self._source(device), received_ts=self.ctx.clock.now()
                )
                self._price_received(device, price)
                return price
            return None
        raise CommandError("no paired Zigbee meter publishes prices (Price server)")

    async def _ack_price(self, device: ZigbeeDevice, price: ev.PriceEvent) -> None:
        cluster = find_cluster(device, se.Price.cluster_id)
        if cluster is None:
            return
        try:
            await cluster.price_acknowledgement(
                provider_id=price.provider_id,
                issuer_event_id=price.issuer_event_id,
                price_ack_time=se.posix_to_utc(self.ctx.clock.now()),
                control=price.price_control,
                timeout=self.settings.request_timeout_s,
            )
        except DEVICE_ERRORS as exc:
            log.warning("zigbee: could not acknowledge price %d: %s", price.issuer_event_id, exc)

    async def confirm_message(self, message_id: int) -> None:
        """Tell the meter the occupant has read (confirmed) a message."""
        message = self.messages.get(message_id)
        if self.app is None:
            raise CommandError("the Zigbee radio is not connected")
        devices = [d for d in self.app.devices.values() if isinstance(d, ZigbeeDevice)]
        if message is not None:
            devices = [d for d in devices if self._source(d) == message.source] or devices
        for device in devices:
            cluster = find_cluster(device, se.Messaging.cluster_id)
            if cluster is None:
                continue
            try:
                await cluster.message_confirmation(
                    message_id=message_id,
                    confirmation_time=se.posix_to_utc(self.ctx.clock.now()),
                    timeout=self.settings.request_timeout_s,
                )
            except DEVICE_ERRORS as exc:
                raise CommandError(f"the meter did not take the message confirmation: {exc}") from exc
            return
        raise CommandError("no paired Zigbee meter sends messages (Messaging server)")

    # -- default handlers (until the DR lifecycle and the tariff take these over) ------------------------
    def _default_drlc_handler(self, item: ev.DRLCEvent | ev.DRLCCancel) -> None:
        now = self.ctx.clock.now()
        if isinstance(item, ev.DRLCEvent):
            text = (
                f"event {item.issuer_event_id}: {item.criticality_name}, {item.duration_min} min, "
                f"loads {', '.join(item.loads) or 'none'}"
            )
        else:
            what = "all events" if item.cancel_all else f"event {item.issuer_event_id}"
            text = f"cancel {what}{' (graceful)' if item.graceful else ''}"
        log.info("zigbee: DRLC %s (no DR lifecycle attached)", text)
        self.ctx.bus.publish(Reading(item.source, "drlc_event", text, now))

    def _default_price_handler(self, price: ev.PriceEvent) -> None:
        now = self.ctx.clock.now()
        log.info(
            "zigbee: price %s: %.5f per %s, tier %d of %d",
            price.rate_label,
            price.price,
            "kWh" if price.per_kwh else f"unit {price.unit_of_measure}",
            price.price_tier,
            price.number_of_price_tiers,
        )
        if price.per_kwh:
            self.ctx.bus.publish(Reading(price.source, "price_per_kwh", price.price, now))
        self.ctx.bus.publish(Reading(price.source, "price_tier", price.price_tier, now))

    def _default_message_handler(self, message: ev.UtilityMessage) -> None:
        now = self.ctx.clock.now()
        if message.cancelled:
            log.info("zigbee: utility message %d withdrawn", message.message_id)
            self.ctx.bus.publish(Reading(message.source, "utility_message", "", now))
        else:
            log.info(
                "zigbee: utility message %d (%s): %s", message.message_id, message.importance, message.text
            )
            self.ctx.bus.publish(Reading(message.source, "utility_message", message.text, now))

    # -- helpers ----------------------------------------------------------------------------------------------
    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("zigbee: %s failed", task.get_name(), exc_info=task.exception())

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)


def ota_capable(adapter: _Adapter) -> bool:
    return find_cluster(adapter.device, Ota.cluster_id, server=False) is not None


def _no_more(action: str, params: dict[str, Any]) -> None:
    if params:
        raise ValueError(f"zigbee {action}: unknown parameter(s) {', '.join(sorted(params))}")


def _same_event(a: ev.DRLCEvent, b: ev.DRLCEvent) -> bool:
    return replace(a, received_ts=0.0) == replace(b, received_ts=0.0)


def create(ctx: IntegrationContext) -> ZigbeeIntegration:
    return ZigbeeIntegration(ctx)
