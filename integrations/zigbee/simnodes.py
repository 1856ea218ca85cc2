"""The reference home's Zigbee devices, simulated: the utility meter (ESI), the thermostat and two load relays.

Each is a ``SimNode`` whose attributes follow the simulated home (a ``hems.livesim.LiveSimHome`` or anything
with its ``last``, ``controls``, ``set_controls``, ``on_step`` and ``params``): the meter reports the home's
net power and its summation registers, the thermostat drives the simulated HVAC, the water heater relay
switches the simulated water heater. The meter is also the utility's end of the Smart Energy clusters: it can
be told to issue a load control event, publish a price or display a message, and it keeps what the gateway
answers (``drlc.reports``, ``price.acks``, ``messaging.confirmations``), decoded from the frames.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import zigpy.profiles.zha as zha
import zigpy.types as t
from zigpy.ota.image import parse_ota_image
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Basic, OnOff, Ota
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.hvac import Fan, Thermostat
from zigpy.zcl.clusters.measurement import TemperatureMeasurement
from zigpy.zcl.clusters.smartenergy import Metering

from . import smartenergy as se
from .simradio import SimCluster, SimEndpoint, SimNetwork, SimNode

log = logging.getLogger(__name__)

METER_IEEE = "00:0d:6f:00:0a:90:00:01"
THERMOSTAT_IEEE = "00:0d:6f:00:0a:90:00:02"
WATER_HEATER_IEEE = "00:0d:6f:00:0a:90:00:03"
POOL_PUMP_IEEE = "00:0d:6f:00:0a:90:00:04"
SPARE_PLUG_IEEE = "00:0d:6f:00:0a:90:00:05"

MANUFACTURER_CODE = 0x1234  # the simulated devices' maker (SimNode's default)
THERMOSTAT_IMAGE_TYPE = 0x0201
RELAY_IMAGE_TYPE = 0x0006
FIRST_FILE_VERSION = 0x01000000

Status = foundation.Status
SystemMode = Thermostat.SystemMode
MODE_TO_ZCL = {
    "off": SystemMode.Off,
    "auto": SystemMode.Auto,
    "cool": SystemMode.Cool,
    "heat": SystemMode.Heat,
}
ZCL_TO_MODE = {
    SystemMode.Off: "off",
    SystemMode.Auto: "auto",
    SystemMode.Cool: "cool",
    SystemMode.Heat: "heat",
    SystemMode.Emergency_Heating: "heat",
}


def _basic(manufacturer: str, model: str) -> SimCluster:
    return SimCluster(
        {
            "zcl_version": 8,
            "manufacturer": manufacturer,
            "model": model,
            "power_source": Basic.PowerSource.Mains_single_phase,
        },
        cluster=Basic,
    )


# -- clusters with behaviour -----------------------------------------------------------------------------------


class OnOffServer(SimCluster):
    cluster = OnOff

    def __init__(self, on: bool, on_change=None) -> None:
        super().__init__({"on_off": on})
        self.on_change = on_change

    def _switch(self, on: bool) -> None:
        self.set("on_off", on)
        if self.on_change is not None:
            self.on_change(on)

    def handle_on(self, args, hdr) -> None:
        self._switch(True)

    def handle_off(self, args, hdr) -> None:
        self._switch(False)

    def handle_toggle(self, args, hdr) -> None:
        self._switch(not self.get("on_off"))

    def written(self, changes: dict[str, Any]) -> None:
        if "on_off" in changes and self.on_change is not None:
            self.on_change(bool(changes["on_off"]))


class ThermostatServer(SimCluster):
    """Heating/cooling thermostat; set points in 0.01 °C, limits 5-35 °C, 1 °C dead band."""

    cluster = Thermostat

    def __init__(self, on_write=None) -> None:
        super().__init__(
            {
                "local_temperature": 2100,
                "outdoor_temperature": 1500,
                "abs_min_heat_setpoint_limit": 500,
                "abs_max_heat_setpoint_limit": 3500,
                "abs_min_cool_setpoint_limit": 500,
                "abs_max_cool_setpoint_limit": 3500,
                "occupied_cooling_setpoint": 2400,
                "occupied_heating_setpoint": 2000,
                "min_setpoint_dead_band": 10,  # 0.1 °C
                "ctrl_sequence_of_oper": Thermostat.ControlSequenceOfOperation.Cooling_and_Heating,
                "system_mode": SystemMode.Auto,
                "running_state": Thermostat.RunningState.Idle,
            }
        )
        self.on_write = on_write

    def check_write(self, name: str, value: Any, pending: dict[int, Any]) -> Status:
        def current(attr: str) -> int:
            attrid = self.attr(attr).id
            return int(pending.get(attrid, self.values[attrid]))

        if name == "system_mode":
            return Status.SUCCESS if value in ZCL_TO_MODE else Status.INVALID_VALUE
        if name in ("occupied_heating_setpoint", "occupied_cooling_setpoint"):
            kind = "heat" if name == "occupied_heating_setpoint" else "cool"
            low, high = current(f"abs_min_{kind}_setpoint_limit"), current(f"abs_max_{kind}_setpoint_limit")
            if not low <= value <= high:
                return Status.INVALID_VALUE
            band = current("min_setpoint_dead_band") * 10
            heat = value if kind == "heat" else current("occupied_heating_setpoint")
            cool = value if kind == "cool" else current("occupied_cooling_setpoint")
            if heat > cool - band:
                return Status.INVALID_VALUE
        return Status.SUCCESS

    def written(self, changes: dict[str, Any]) -> None:
        if self.on_write is not None:
            self.on_write(changes)


class DrlcServer(SimCluster):
    """The utility's end of DRLC: issues events and keeps the Report Event Status commands it receives."""

    cluster = se.Drlc

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[int, dict[str, Any]] = {}
        self.reports: list[Any] = []  # decoded report_event_status commands, in arrival order

    def issue(self, **fields: Any) -> int:
        self.events[int(fields["issuer_event_id"])] = fields
        return self.send("load_control_event", **fields)

    def cancel(self, issuer_event_id: int, *, graceful: bool = False, effective_time: int = 0) -> int:
        event = self.events.get(issuer_event_id, {})
        return self.send(
            "cancel_load_control_event",
            issuer_event_id=issuer_event_id,
            device_class=event.get("device_class", 0xFFFF),
            utility_enrollment_group=event.get("utility_enrollment_group", 0),
            cancel_control=se.CancelControl.Graceful if graceful else 0,
            effective_time=effective_time,
        )

    def cancel_all(self, *, graceful: bool = False) -> int:
        return self.send("cancel_all_load_control_events", cancel_control=int(graceful))

    def handle_report_event_status(self, args, hdr) -> None:
        self.reports.append(args)

    def handle_get_scheduled_events(self, args, hdr) -> Status:
        events = list(self.events.values())
        if args.number_of_events:
            events = events[: args.number_of_events]
        for event in events:
            self.send("load_control_event", **event)
        return Status.SUCCESS if events else Status.NOT_FOUND


class PriceServer(SimCluster):
    cluster = se.Price

    def __init__(self) -> None:
        super().__init__({"commodity_type": se.CommodityType.Electric_Metering})
        self.current: dict[str, Any] | None = None
        self.acks: list[Any] = []

    def publish(self, **fields: Any) -> int:
        self.current = fields
        return self.send("publish_price", **fields)

    def handle_get_current_price(self, args, hdr):
        if self.current is None:
            return Status.NOT_FOUND
        return ("publish_price", self.current)

    def handle_get_scheduled_prices(self, args, hdr) -> Status:
        return Status.NOT_FOUND

    def handle_price_acknowledgement(self, args, hdr) -> None:
        self.acks.append(args)


class MessagingServer(SimCluster):
    cluster = se.Messaging

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, Any] | None = None
        self.confirmations: list[Any] = []

    def display(self, **fields: Any) -> int:
        self.last = fields
        return self.send("display_message", **fields)

    def cancel(self, message_id: int) -> int:
        control = self.last["message_control"] if self.last else se.MessageControl(0)
        return self.send("cancel_message", message_id=message_id, message_control=control)

    def handle_get_last_message(self, args, hdr):
        return Status.NOT_FOUND if self.last is None else ("display_message", self.last)

    def handle_message_confirmation(self, args, hdr) -> None:
        self.confirmations.append(args)


class OtaClient(SimCluster):
    """A device's OTA Upgrade client (0x0019): what real firmware does, on zigpy's encoding.

    Told by Image Notify, it sends Query Next Image (its manufacturer code, image type, file version and
    hardware version); offered an image, it fetches it with Image Block requests of ``max_data_size`` bytes,
    checks the whole file (an OTA header for this device, the advertised size, the sub-elements) and ends with
    Upgrade End (SUCCESS or INVALID_IMAGE). When the server answers Upgrade End, it "restarts" into the image
    after ``restart_s``: ``current_file_version`` becomes the new version and it announces itself again.
    """

    cluster = Ota

    def __init__(
        self,
        *,
        image_type: int,
        file_version: int = FIRST_FILE_VERSION,
        manufacturer_code: int = MANUFACTURER_CODE,
        hardware_version: int = 1,
        max_data_size: int = 48,
        restart_s: float = 0.05,
    ) -> None:
        super().__init__(
            {
                "upgrade_server_id": t.EUI64.convert("ff:ff:ff:ff:ff:ff:ff:ff"),
                "file_offset": 0xFFFFFFFF,
                "current_file_version": file_version,
                "downloaded_file_version": 0xFFFFFFFF,
                "image_upgrade_status": Ota.ImageUpgradeStatus.Normal,
                "manufacturer_id": manufacturer_code,
                "image_type_id": image_type,
                "minimum_block_req_delay": 0,
            }
        )
        self.manufacturer_code = manufacturer_code
        self.image_type = image_type
        self.hardware_version = hardware_version
        self.max_data_size = max_data_size
        self.restart_s = restart_s
        self.offer: Any = None  # the Query Next Image Response being downloaded
        self.data = bytearray()
        self.block_requests = 0
        self.queries: list[Any] = []  # Query Next Image Responses received (status, version)
        self.upgrade_ends: list[tuple[Status, int]] = []  # what this client said at the end of a download
        self.installed: list[int] = []  # versions it restarted into
        self.on_installed = None  # callback(version) after a restart into a new image
        self.accept = None  # tests: callback(image bytes) -> bool, the bootloader's own check (a signature)

    @property
    def version(self) -> int:
        return int(self.get("current_file_version"))

    def query(self) -> None:
        self.send(
            "query_next_image",
            field_control=Ota.QueryNextImageCommand.FieldControl.HardwareVersion,
            manufacturer_code=self.manufacturer_code,
            image_type=self.image_type,
            current_file_version=self.version,
            hardware_version=self.hardware_version,
        )

    def handle_image_notify(self, args, hdr) -> None:
        if self.offer is None:  # a device busy downloading ignores notifications
            self.query()

    def handle_query_next_image_response(self, args, hdr) -> None:
        self.queries.append((args.status, getattr(args, "file_version", None)))
        if args.status != Status.SUCCESS or self.offer is not None:
            return
        self.offer = args
        self.data = bytearray()
        self.set("image_upgrade_status", Ota.ImageUpgradeStatus.Download_in_progress)
        self._request_block()

    def _request_block(self) -> None:
        self.block_requests += 1
        self.set("file_offset", len(self.data))
        self.send(
            "image_block",
            field_control=Ota.ImageBlockCommand.FieldControl(0),
            manufacturer_code=self.offer.manufacturer_code,
            image_type=self.offer.image_type,
            file_version=self.offer.file_version,
            file_offset=len(self.data),
            maximum_data_size=self.max_data_size,
        )

    def handle_image_block_response(self, args, hdr) -> None:
        offer = self.offer
        if offer is None:
            return
        if args.status == Status.WAIT_FOR_DATA:
            asyncio.get_running_loop().call_later(0.1, self._request_block)
            return
        if args.status != Status.SUCCESS:  # ABORT or anything else: give up, back to normal
            self._reset()
            return
        if args.file_version != offer.file_version or args.file_offset != len(self.data):
            self._request_block()  # not the block asked for: ask again
            return
        self.data.extend(args.image_data)
        if len(self.data) < offer.image_size:
            self._request_block()
            return
        status = self._verify(bytes(self.data[: offer.image_size]))
        self.upgrade_ends.append((status, int(offer.file_version)))
        self.send(
            "upgrade_end",
            status=status,
            manufacturer_code=offer.manufacturer_code,
            image_type=offer.image_type,
            file_version=offer.file_version,
        )
        if status == Status.SUCCESS:
            self.set("image_upgrade_status", Ota.ImageUpgradeStatus.Download_complete)
            self.set("downloaded_file_version", offer.file_version)
        else:
            self._reset()

    def _verify(self, data: bytes) -> Status:
        """What a bootloader checks before it takes an image."""
        offer = self.offer
        try:
            image, rest = parse_ota_image(data)
        except Exception:
            return Status.INVALID_IMAGE
        hdr = image.header
        if (
            rest
            or hdr.manufacturer_id != self.manufacturer_code
            or hdr.image_type != self.image_type
            or hdr.file_version != offer.file_version
            or hdr.image_size != len(data)
        ):
            return Status.INVALID_IMAGE
        if self.accept is not None and not self.accept(data):
            return Status.INVALID_IMAGE
        return Status.SUCCESS

    def handle_upgrade_end_response(self, args, hdr) -> None:
        offer = self.offer
        if offer is None or args.file_version != offer.file_version:
            return
        delay = self.restart_s
        if args.upgrade_time and args.current_time and args.upgrade_time > args.current_time:
            delay += int(args.upgrade_time - args.current_time)
        asyncio.get_running_loop().call_later(delay, self._restart, int(offer.file_version))

    def _restart(self, version: int) -> None:
        self.set("current_file_version", version)
        self.installed.append(version)
        self._reset()
        if self.on_installed is not None:
            self.on_installed(version)
        node = self.endpoint.node if self.endpoint is not None else None
        if node is not None and node.joined and node.online:
            node.announce()  # a restarted device tells the network it is back

    def _reset(self) -> None:
        self.offer = None
        self.data = bytearray()
        self.set("file_offset", 0xFFFFFFFF)
        self.set("image_upgrade_status", Ota.ImageUpgradeStatus.Normal)


# -- devices -------------------------------------------------------------------------------------------------


class SimMeter:
    """The utility meter, which is also the Energy Service Interface (Smart Energy profile)."""

    def __init__(
        self,
        *,
        ieee: str = METER_IEEE,
        nwk: int = 0x3A01,
        multiplier: int = 1,
        divisor: int = 1000,
        voltage_v: float = 240.0,
        import_wh: float = 0.0,
        export_wh: float = 0.0,
    ) -> None:
        self.multiplier, self.divisor = multiplier, divisor
        self.import_wh, self.export_wh = import_wh, export_wh
        self.metering = SimCluster(
            {
                "current_summ_delivered": 0,
                "current_summ_received": 0,
                "instantaneous_demand": 0,
                "status": 0,
                "unit_of_measure": Metering.MeteringUnitofMeasure.Kwh_and_Kwh_binary,
                "multiplier": multiplier,
                "divisor": divisor,
                "summation_formatting": 0b0_0110_011,
                "demand_formatting": 0b0_0110_011,
                "metering_device_type": Metering.MeteringDeviceType.Electric_Metering,
            },
            cluster=Metering,
        )
        self.electrical = SimCluster(
            {"rms_voltage": round(voltage_v * 10), "ac_voltage_multiplier": 1, "ac_voltage_divisor": 10},
            cluster=ElectricalMeasurement,
        )
        self.price = PriceServer()
        self.drlc = DrlcServer()
        self.messaging = MessagingServer()
        self.node = SimNode(
            ieee,
            nwk,
            [
                SimEndpoint(
                    1,
                    profile=se.PROFILE_ID,
                    device_type=se.DeviceType.Energy_Service_Interface,
                    servers=[
                        _basic("HEMS Sim Utility", "SE-ESI-1"),
                        self.metering,
                        self.price,
                        self.drlc,
                        self.messaging,
                        self.electrical,
                    ],
                )
            ],
        )
        self._event_ids = 1000

    def _raw(self, kw_or_kwh: float) -> int:
        return round(kw_or_kwh * self.divisor / self.multiplier)

    def update(self, grid_power_w: float, dt_s: float) -> None:
        """The meter's registers after ``dt_s`` seconds at ``grid_power_w`` (+ import, - export)."""
        if grid_power_w >= 0:
            self.import_wh += grid_power_w * dt_s / 3600.0
        else:
            self.export_wh += -grid_power_w * dt_s / 3600.0
        self.metering.set("instantaneous_demand", self._raw(grid_power_w / 1000.0))
        self.metering.set("current_summ_delivered", self._raw(self.import_wh / 1000.0))
        self.metering.set("current_summ_received", self._raw(self.export_wh / 1000.0))

    def issue_load_control_event(
        self,
        *,
        issuer_event_id: int | None = None,
        device_class: int = 0x0FFF,
        utility_enrollment_group: int = 0,
        start_ts: float = 0.0,
        duration_min: int = 60,
        criticality: int = se.CriticalityLevel.Level_1,
        cooling_offset_c: float | None = None,
        heating_offset_c: float | None = None,
        cooling_setpoint_c: float | None = None,
        heating_setpoint_c: float | None = None,
        avg_load_adjustment_pct: int | None = None,
        duty_cycle_pct: int | None = None,
        event_control: int = 0,
    ) -> int:
        """Send a Load Control Event to the gateway; returns its issuer event id."""
        if issuer_event_id is None:
            self._event_ids += 1
            issuer_event_id = self._event_ids
        self.drlc.issue(
            issuer_event_id=issuer_event_id,
            device_class=device_class,
            utility_enrollment_group=utility_enrollment_group,
            start_time=se.posix_to_utc(start_ts),
            duration_in_minutes=duration_min,
            criticality_level=criticality,
            cooling_temperature_offset=se.TEMPERATURE_OFFSET_UNUSED
            if cooling_offset_c is None
            else round(cooling_offset_c * 10),
            heating_temperature_offset=se.TEMPERATURE_OFFSET_UNUSED
            if heating_offset_c is None
            else round(heating_offset_c * 10),
            cooling_temperature_set_point=(
                se.TEMPERATURE_SET_POINT_UNUSED
                if cooling_setpoint_c is None
                else round(cooling_setpoint_c * 100)
            ),
            heating_temperature_set_point=(
                se.TEMPERATURE_SET_POINT_UNUSED
                if heating_setpoint_c is None
                else round(heating_setpoint_c * 100)
            ),
            average_load_adjustment_percentage=(
                se.AVERAGE_LOAD_ADJUSTMENT_UNUSED
                if avg_load_adjustment_pct is None
                else avg_load_adjustment_pct
            ),
            duty_cycle=se.DUTY_CYCLE_UNUSED if duty_cycle_pct is None else duty_cycle_pct,
            event_control=event_control,
        )
        return issuer_event_id

    def publish_price(
        self,
        price: float,
        *,
        now: float,
        issuer_event_id: int = 1,
        tier: int = 1,
        tiers: int = 3,
        label: str = "TOU",
        currency: int = 840,
        trailing_digits: int = 5,
        start_ts: float = 0.0,
        duration_min: int | None = None,
        generation_price: float | None = None,
        ack_required: bool = False,
    ) -> int:
        """Publish a price in currency units per kWh (``trailing_digits`` decimals on the wire)."""
        scale = 10**trailing_digits
        return self.price.publish(
            provider_id=0x00C0FFEE,
            rate_label=label.encode(),
            issuer_event_id=issuer_event_id,
            current_time=se.posix_to_utc(now),
            unit_of_measure=Metering.MeteringUnitofMeasure.Kwh_and_Kwh_binary,
            currency=currency,
            price_trailing_digit_and_price_tier=se.PriceTrailingDigitAndTier(
                price_tier=tier, trailing_digit=trailing_digits
            ),
            number_of_price_tiers_and_register_tier=se.NumberOfTiersAndRegisterTier(
                number_of_price_tiers=tiers, register_tier=tier
            ),
            start_time=se.posix_to_utc(start_ts),
            duration_in_minutes=se.DURATION_UNTIL_CHANGED if duration_min is None else duration_min,
            price=round(price * scale),
            price_ratio=se.PRICE_RATIO_UNUSED,
            generation_price=se.GENERATION_PRICE_UNUSED
            if generation_price is None
            else round(generation_price * scale),
            generation_price_ratio=se.PRICE_RATIO_UNUSED,
            alternate_cost_delivered=0xFFFFFFFF,
            alternate_cost_unit=0x01,
            alternate_cost_trailing_digit=0,
            number_of_block_thresholds=0,
            price_control=se.PriceControl.Price_Acknowledgement_Required if ack_required else 0,
        )

    def display_message(
        self,
        text: str,
        *,
        message_id: int = 1,
        importance: se.MessageImportance = se.MessageImportance.Medium,
        confirm: bool = False,
        duration_min: int | None = None,
    ) -> int:
        control = se.MessageControl(
            transmission=se.MessageTransmission.Normal,
            importance=importance,
            reserved_4=0,
            enhanced_confirmation_required=0,
            reserved_6=0,
            confirmation_required=int(confirm),
        )
        return self.messaging.display(
            message_id=message_id,
            message_control=control,
            start_time=0,
            duration_in_minutes=se.DURATION_UNTIL_CHANGED if duration_min is None else duration_min,
            message=t.CharacterString(text),
        )


class SimThermostat:
    """A heating/cooling thermostat with a fan and a metered HVAC supply."""

    def __init__(self, *, ieee: str = THERMOSTAT_IEEE, nwk: int = 0x3A02, on_write=None) -> None:
        self.thermostat = ThermostatServer(on_write=on_write)
        self.ota = OtaClient(image_type=THERMOSTAT_IMAGE_TYPE)
        self.fan = SimCluster({"fan_mode": Fan.FanMode.Auto, "fan_mode_sequence": 2}, cluster=Fan)
        self.electrical = SimCluster(
            {"active_power": 0, "ac_power_multiplier": 1, "ac_power_divisor": 1, "rms_voltage": 240},
            cluster=ElectricalMeasurement,
        )
        self.node = SimNode(
            ieee,
            nwk,
            [
                SimEndpoint(
                    1,
                    profile=zha.PROFILE_ID,
                    device_type=zha.DeviceType.THERMOSTAT,
                    servers=[
                        _basic("HEMS Sim Controls", "TSTAT-1"),
                        self.thermostat,
                        self.fan,
                        self.electrical,
                    ],
                    clients=[self.ota],
                )
            ],
        )


class SimRelay:
    """A 40 A load control relay with power and energy metering, declaring the load it switches (DRLC client
    Device Class Value) and, for a water heater, measuring the tank temperature."""

    def __init__(
        self,
        *,
        ieee: str,
        nwk: int,
        model: str,
        device_class: se.DeviceClass,
        on: bool = True,
        on_change=None,
        tank_probe: bool = False,
        joins_from_permit: int = 1,
    ) -> None:
        self.on_off = OnOffServer(on, on_change)
        self.ota = OtaClient(image_type=RELAY_IMAGE_TYPE)
        self.electrical = SimCluster(
            {"active_power": 0, "ac_power_multiplier": 1, "ac_power_divisor": 1, "rms_voltage": 240},
            cluster=ElectricalMeasurement,
        )
        self.metering = SimCluster(
            {
                "current_summ_delivered": 0,
                "instantaneous_demand": 0,
                "unit_of_measure": Metering.MeteringUnitofMeasure.Kwh_and_Kwh_binary,
                "multiplier": 1,
                "divisor": 1000,
                "status": 0,
            },
            cluster=Metering,
        )
        self.drlc_client = SimCluster(
            {
                "utility_enrollment_group": 0,
                "start_randomization_minutes": 30,
                "duration_randomization_minutes": 0,
                "device_class_value": device_class,
            },
            cluster=se.Drlc,
        )
        servers = [_basic("HEMS Sim Controls", model), self.on_off, self.electrical, self.metering]
        self.tank = None
        if tank_probe:
            self.tank = SimCluster(
                {"measured_value": 5500, "min_measured_value": 0, "max_measured_value": 10000},
                cluster=TemperatureMeasurement,
            )
            servers.append(self.tank)
        self.node = SimNode(
            ieee,
            nwk,
            [
                SimEndpoint(
                    1,
                    profile=zha.PROFILE_ID,
                    device_type=zha.DeviceType.SMART_PLUG,
                    servers=servers,
                    clients=[self.drlc_client, self.ota],
                )
            ],
            joins_from_permit=joins_from_permit,
        )
        self.energy_wh = 0.0

    @property
    def on(self) -> bool:
        return bool(self.on_off.get("on_off"))

    def update(self, power_w: float, dt_s: float, tank_temp_c: float | None = None) -> None:
        self.energy_wh += power_w * dt_s / 3600.0
        self.electrical.set("active_power", round(power_w))
        self.metering.set("instantaneous_demand", round(power_w))  # W at divisor 1000 (kW x 1000)
        self.metering.set("current_summ_delivered", round(self.energy_wh))
        if self.tank is not None and tank_temp_c is not None:
            self.tank.set("measured_value", round(tank_temp_c * 100))


class SimHomeZigbee:
    """The four devices on one network, following the simulated home."""

    def __init__(
        self,
        network: SimNetwork,
        sim: Any,
        *,
        pool_pump_w: float = 1100.0,
        meter: SimMeter | None = None,
        spare_plug_w: float | None = None,
    ) -> None:
        self.network = network
        self.sim = sim
        self.pool_pump_w = pool_pump_w
        self.meter = meter or SimMeter()
        self.thermostat = SimThermostat(on_write=self._thermostat_written)
        self.water_heater = SimRelay(
            ieee=WATER_HEATER_IEEE,
            nwk=0x3A03,
            model="LC-40A-WH",
            device_class=se.DeviceClass.Water_Heater,
            on=bool(sim.controls.water_heater_enabled),
            on_change=lambda on: sim.set_controls(water_heater_enabled=on),
            tank_probe=True,
        )
        self.pool_pump = SimRelay(
            ieee=POOL_PUMP_IEEE,
            nwk=0x3A04,
            model="LC-40A",
            device_class=se.DeviceClass.Pool_Pump_Spa_Jacuzzi,
            on=False,
        )
        network.add(self.meter.node, self.thermostat.node, self.water_heater.node, self.pool_pump.node)
        # dev mode: a smart plug not paired yet; it joins when the installer opens the network (the second
        # opening: the first, at start, pairs the home's devices)
        self.spare_plug_w = spare_plug_w
        self.spare_plug: SimRelay | None = None
        if spare_plug_w is not None:
            self.spare_plug = SimRelay(
                ieee=SPARE_PLUG_IEEE,
                nwk=0x3A05,
                model="PLUG-16A",
                device_class=se.DeviceClass.Smart_Appliances,
                on=True,
                joins_from_permit=2,
            )
            network.add(self.spare_plug.node)
        self._stopped = False
        self.update(sim.last, 0.0)
        sim.on_step(self._on_step)

    def stop(self) -> None:
        self._stopped = True

    def _on_step(self, result: Any) -> None:
        if not self._stopped:
            self.update(result, float(result.dt_s))

    def update(self, r: Any, dt_s: float) -> None:
        pump_w = self.pool_pump_w if self.pool_pump.on else 0.0
        plug_w = 0.0
        if self.spare_plug is not None and self.spare_plug.node.joined and self.spare_plug.on:
            plug_w = float(self.spare_plug_w or 0.0)
        if self.spare_plug is not None:
            self.spare_plug.update(plug_w, dt_s)
        self.meter.update(float(r.grid_power_w) + pump_w + plug_w, dt_s)
        self.water_heater.update(float(r.water_heater_power_w), dt_s, float(r.tank_temp_c))
        self.pool_pump.update(pump_w, dt_s)
        c = self.sim.controls
        hvac = self.sim.params.hvac
        heat = c.heat_setpoint_c if c.heat_setpoint_c is not None else hvac.heat_setpoint_c
        cool = c.cool_setpoint_c if c.cool_setpoint_c is not None else hvac.cool_setpoint_c
        ts = self.thermostat.thermostat
        ts.set("local_temperature", round(float(r.indoor_temp_c) * 100))
        ts.set("outdoor_temperature", round(float(r.outdoor_temp_c) * 100))
        ts.set("occupied_heating_setpoint", round(heat * 100))
        ts.set("occupied_cooling_setpoint", round(cool * 100))
        ts.set("system_mode", MODE_TO_ZCL[c.hvac_mode])
        state = Thermostat.RunningState.Idle
        if r.hvac_power_w > 0:
            heating = c.hvac_mode == "heat" or (c.hvac_mode == "auto" and r.indoor_temp_c < (heat + cool) / 2)
            state = (
                Thermostat.RunningState.Heat_State_On if heating else Thermostat.RunningState.Cool_State_On
            )
            state |= Thermostat.RunningState.Fan_State_On
        ts.set("running_state", state)
        self.thermostat.electrical.set("active_power", round(float(r.hvac_power_w)))

    def _thermostat_written(self, changes: dict[str, Any]) -> None:
        controls: dict[str, Any] = {}
        if "system_mode" in changes:
            controls["hvac_mode"] = ZCL_TO_MODE[changes["system_mode"]]
        if "occupied_heating_setpoint" in changes:
            controls["heat_setpoint_c"] = changes["occupied_heating_setpoint"] / 100.0
        if "occupied_cooling_setpoint" in changes:
            controls["cool_setpoint_c"] = changes["occupied_cooling_setpoint"] / 100.0
        if controls:
            log.info("simulated thermostat: %s", ", ".join(f"{k}={v}" for k, v in controls.items()))
            self.sim.set_controls(**controls)
