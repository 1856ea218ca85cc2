"""Smart Energy commands from the meter as typed values, and the status replies the gateway sends back.

Pure functions between zigpy command objects (already decoded by zigpy from the frame) and frozen
dataclasses with units in their names; no I/O. Times are POSIX seconds; a start time of ``0.0`` means
"now", as on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import smartenergy as se

# Lifecycle words the DR event lifecycle uses, and the Event Status each one is reported as.
STATUS_BY_NAME: dict[str, se.EventStatus] = {
    "received": se.EventStatus.Load_Control_Event_Received,
    "started": se.EventStatus.Event_Started,
    "completed": se.EventStatus.Event_Completed,
    "opted_out": se.EventStatus.User_Opted_Out,
    "opted_in": se.EventStatus.User_Opted_In,
    "cancelled": se.EventStatus.Event_Cancelled,
    "superseded": se.EventStatus.Event_Superseded,
    "partially_completed_opted_out": se.EventStatus.Partially_Completed_With_User_Opt_Out,
    "partially_completed_opted_in": se.EventStatus.Partially_Completed_Due_To_User_Opt_In,
    "completed_no_participation": se.EventStatus.Completed_No_User_Participation_Previous_Opt_Out,
    "rejected": se.EventStatus.Load_Control_Event_Rejected,
    "rejected_expired": se.EventStatus.Rejected_Event_Expired,
    "rejected_undefined_event": se.EventStatus.Rejected_Invalid_Cancel_Undefined_Event,
}

# Load names used in DeviceInfo.extra["load"] for the SE device classes a relay declares.
LOAD_BY_DEVICE_CLASS: dict[se.DeviceClass, str] = {
    se.DeviceClass.HVAC_Compressor_or_Furnace: "hvac",
    se.DeviceClass.Strip_Heaters_Baseboard_Heaters: "heater",
    se.DeviceClass.Water_Heater: "water_heater",
    se.DeviceClass.Pool_Pump_Spa_Jacuzzi: "pool_pump",
    se.DeviceClass.Smart_Appliances: "appliance",
    se.DeviceClass.Irrigation_Pump: "irrigation_pump",
    se.DeviceClass.Managed_Commercial_Industrial_Loads: "managed_load",
    se.DeviceClass.Simple_Misc_Loads: "load",
    se.DeviceClass.Exterior_Lighting: "exterior_lighting",
    se.DeviceClass.Interior_Lighting: "interior_lighting",
    se.DeviceClass.Electric_Vehicle: "ev",
    se.DeviceClass.Generation_Systems: "generation",
}


def status_code(status: str | int | se.EventStatus) -> se.EventStatus:
    """An Event Status from a lifecycle word ("started"), an ``EventStatus`` or its number."""
    if isinstance(status, str):
        try:
            return STATUS_BY_NAME[status]
        except KeyError:
            raise ValueError(
                f"unknown DRLC event status {status!r}; one of {', '.join(STATUS_BY_NAME)}"
            ) from None
    return se.EventStatus(status)


def device_class_names(mask: int) -> tuple[str, ...]:
    return tuple(name for bit, name in LOAD_BY_DEVICE_CLASS.items() if mask & bit)


def _offset_c(raw: int) -> float | None:
    return None if raw == se.TEMPERATURE_OFFSET_UNUSED else raw / 10.0


def _set_point_c(raw: int) -> float | None:
    return None if raw == se.TEMPERATURE_SET_POINT_UNUSED else raw / 100.0


@dataclass(frozen=True, slots=True)
class DRLCEvent:
    """A Load Control Event from the utility's meter (ESI)."""

    issuer_event_id: int
    device_class: int  # bitmask of se.DeviceClass
    utility_enrollment_group: int
    start_ts: float  # POSIX seconds; 0.0 = start now
    duration_min: int
    criticality: (
        int  # se.CriticalityLevel: 1 green ... 6 level 5 voluntary; 7 emergency, 8 outage, 9 disconnect
    )
    cooling_offset_c: float | None
    heating_offset_c: float | None
    cooling_setpoint_c: float | None
    heating_setpoint_c: float | None
    avg_load_adjustment_pct: int | None  # -100 (shed all) .. +100
    duty_cycle_pct: int | None
    event_control: int  # bit 0 randomize start, bit 1 randomize end
    source: str = ""  # device id of the meter that sent it
    received_ts: float = 0.0

    @property
    def loads(self) -> tuple[str, ...]:
        """The device classes as load names ("water_heater", "hvac", ...)."""
        return device_class_names(self.device_class)

    @property
    def criticality_name(self) -> str:
        return se.CriticalityLevel(self.criticality).name

    @property
    def mandatory(self) -> bool:
        """Emergency, planned outage and service disconnect cannot be opted out of."""
        return se.CriticalityLevel.Emergency <= self.criticality <= se.CriticalityLevel.Service_Disconnect

    @property
    def randomize_start(self) -> bool:
        return bool(self.event_control & se.EventControl.Randomize_Start_Time)

    @property
    def randomize_end(self) -> bool:
        return bool(self.event_control & se.EventControl.Randomize_End_Time)

    def start(self, now: float) -> float:
        """The start time, with "now" (0) resolved to the time the event was received or ``now``."""
        if self.start_ts:
            return self.start_ts
        return self.received_ts or now

    def end(self, now: float) -> float:
        return self.start(now) + 60.0 * self.duration_min


@dataclass(frozen=True, slots=True)
class DRLCCancel:
    """Cancel Load Control Event (one event) or Cancel All Load Control Events (``issuer_event_id`` None)."""

    issuer_event_id: int | None
    device_class: int
    utility_enrollment_group: int
    graceful: bool  # end with the event's randomized end time
    effective_ts: float  # POSIX seconds; 0.0 = now
    source: str = ""
    received_ts: float = 0.0

    @property
    def cancel_all(self) -> bool:
        return self.issuer_event_id is None


@dataclass(frozen=True, slots=True)
class PriceEvent:
    """A Publish Price command: the price of one tier for a period."""

    provider_id: int
    rate_label: str
    issuer_event_id: int
    current_ts: float
    unit_of_measure: int  # zigpy MeteringUnitofMeasure; 0 = kWh
    currency: int  # ISO 4217 numeric (840 = USD, 978 = EUR)
    price_tier: int
    number_of_price_tiers: int
    register_tier: int
    start_ts: float  # 0.0 = now
    duration_min: int | None  # None = until changed
    price: float  # currency units (e.g. dollars) per unit of measure
    price_ratio: float | None  # ratio to the normal price
    generation_price: float | None  # price paid for energy exported
    generation_price_ratio: float | None
    price_control: int = 0
    source: str = ""
    received_ts: float = 0.0

    @property
    def per_kwh(self) -> bool:
        return self.unit_of_measure in (0x00, 0x80)

    @property
    def acknowledgement_required(self) -> bool:
        return bool(self.price_control & se.PriceControl.Price_Acknowledgement_Required)


@dataclass(frozen=True, slots=True)
class UtilityMessage:
    """A Display Message (or, with ``cancelled``, Cancel Message) from the meter."""

    message_id: int
    text: str
    start_ts: float  # 0.0 = now
    duration_min: int | None  # None = until changed
    importance: str  # low | medium | high | critical
    confirmation_required: bool
    cancelled: bool = False
    source: str = ""
    received_ts: float = 0.0


# -- decoding: zigpy command -> dataclass ------------------------------------------------------------


def decode_load_control_event(cmd: Any, *, source: str = "", received_ts: float = 0.0) -> DRLCEvent:
    return DRLCEvent(
        issuer_event_id=int(cmd.issuer_event_id),
        device_class=int(cmd.device_class),
        utility_enrollment_group=int(cmd.utility_enrollment_group),
        start_ts=se.utc_to_posix(int(cmd.start_time)),
        duration_min=int(cmd.duration_in_minutes),
        criticality=int(cmd.criticality_level),
        cooling_offset_c=_offset_c(int(cmd.cooling_temperature_offset)),
        heating_offset_c=_offset_c(int(cmd.heating_temperature_offset)),
        cooling_setpoint_c=_set_point_c(int(cmd.cooling_temperature_set_point)),
        heating_setpoint_c=_set_point_c(int(cmd.heating_temperature_set_point)),
        avg_load_adjustment_pct=(
            None
            if cmd.average_load_adjustment_percentage == se.AVERAGE_LOAD_ADJUSTMENT_UNUSED
            else int(cmd.average_load_adjustment_percentage)
        ),
        duty_cycle_pct=None if cmd.duty_cycle == se.DUTY_CYCLE_UNUSED else int(cmd.duty_cycle),
        event_control=int(cmd.event_control),
        source=source,
        received_ts=received_ts,
    )


def decode_cancel(cmd: Any, *, source: str = "", received_ts: float = 0.0) -> DRLCCancel:
    return DRLCCancel(
        issuer_event_id=int(cmd.issuer_event_id),
        device_class=int(cmd.device_class),
        utility_enrollment_group=int(cmd.utility_enrollment_group),
        graceful=bool(cmd.cancel_control & se.CancelControl.Graceful),
        effective_ts=se.utc_to_posix(int(cmd.effective_time)),
        source=source,
        received_ts=received_ts,
    )


def decode_cancel_all(cmd: Any, *, source: str = "", received_ts: float = 0.0) -> DRLCCancel:
    return DRLCCancel(
        issuer_event_id=None,
        device_class=0xFFFF,
        utility_enrollment_group=0,
        graceful=bool(cmd.cancel_control & se.CancelControl.Graceful),
        effective_ts=0.0,
        source=source,
        received_ts=received_ts,
    )


def decode_publish_price(cmd: Any, *, source: str = "", received_ts: float = 0.0) -> PriceEvent:
    digits = int(cmd.price_trailing_digit_and_price_tier.trailing_digit)
    scale = 10.0**-digits
    ratio = int(cmd.price_ratio)
    gen = int(cmd.generation_price)
    gen_ratio = int(cmd.generation_price_ratio)
    tiers = cmd.number_of_price_tiers_and_register_tier
    label = bytes(cmd.rate_label).split(b"\x00")[0].decode("utf-8", errors="replace")
    return PriceEvent(
        provider_id=int(cmd.provider_id),
        rate_label=label,
        issuer_event_id=int(cmd.issuer_event_id),
        current_ts=se.utc_to_posix(int(cmd.current_time)),
        unit_of_measure=int(cmd.unit_of_measure),
        currency=int(cmd.currency),
        price_tier=int(cmd.price_trailing_digit_and_price_tier.price_tier),
        number_of_price_tiers=int(tiers.number_of_price_tiers),
        register_tier=int(tiers.register_tier),
        start_ts=se.utc_to_posix(int(cmd.start_time)),
        duration_min=None
        if cmd.duration_in_minutes == se.DURATION_UNTIL_CHANGED
        else int(cmd.duration_in_minutes),
        price=round(int(cmd.price) * scale, 9),
        price_ratio=None if ratio == se.PRICE_RATIO_UNUSED else ratio / 10.0,
        generation_price=None if gen == se.GENERATION_PRICE_UNUSED else round(gen * scale, 9),
        generation_price_ratio=None if gen_ratio == se.PRICE_RATIO_UNUSED else gen_ratio / 10.0,
        price_control=0 if cmd.price_control is None else int(cmd.price_control),
        source=source,
        received_ts=received_ts,
    )


def decode_display_message(cmd: Any, *, source: str = "", received_ts: float = 0.0) -> UtilityMessage:
    control = se.MessageControl(int(cmd.message_control))
    return UtilityMessage(
        message_id=int(cmd.message_id),
        text=str(cmd.message),
        start_ts=se.utc_to_posix(int(cmd.start_time)),
        duration_min=None
        if cmd.duration_in_minutes == se.DURATION_UNTIL_CHANGED
        else int(cmd.duration_in_minutes),
        importance=control.importance.name.lower(),
        confirmation_required=bool(control.confirmation_required or control.enhanced_confirmation_required),
        source=source,
        received_ts=received_ts,
    )


def decode_cancel_message(cmd: Any, *, source: str = "", received_ts: float = 0.0) -> UtilityMessage:
    control = se.MessageControl(int(cmd.message_control))
    return UtilityMessage(
        message_id=int(cmd.message_id),
        text="",
        start_ts=0.0,
        duration_min=0,
        importance=control.importance.name.lower(),
        confirmation_required=False,
        cancelled=True,
        source=source,
        received_ts=received_ts,
    )


# -- encoding: what the gateway answers ------------------------------------------------------------------


def _applied_set_point(c: float | None) -> int:
    return se.TEMPERATURE_SET_POINT_UNUSED if c is None else round(c * 100)


def report_event_status_fields(
    event: DRLCEvent | None,
    issuer_event_id: int,
    status: str | int | se.EventStatus,
    *,
    ts: float,
    criticality_applied: int | None = None,
    cooling_setpoint_applied_c: float | None = None,
    heating_setpoint_applied_c: float | None = None,
    avg_load_adjustment_applied_pct: int | None = None,
    duty_cycle_applied_pct: int | None = None,
) -> dict[str, Any]:
    """The fields of a Report Event Status command. What was applied defaults to "not used", except the
    criticality and event control, which default to the event's own."""
    if criticality_applied is None:
        criticality_applied = event.criticality if event is not None else 0
    if avg_load_adjustment_applied_pct is not None and not -100 <= avg_load_adjustment_applied_pct <= 100:
        raise ValueError(
            f"avg_load_adjustment_applied_pct must be -100..100, got {avg_load_adjustment_applied_pct}"
        )
    if duty_cycle_applied_pct is not None and not 0 <= duty_cycle_applied_pct <= 100:
        raise ValueError(f"duty_cycle_applied_pct must be 0..100, got {duty_cycle_applied_pct}")
    return {
        "issuer_event_id": issuer_event_id,
        "event_status": status_code(status),
        # The status time must not be 0 (which would read as "now")
        "event_status_time": se.posix_to_utc(max(ts, se.ZIGBEE_EPOCH_POSIX + 1)),
        "criticality_level_applied": se.CriticalityLevel(criticality_applied),
        "cooling_temperature_set_point_applied": _applied_set_point(cooling_setpoint_applied_c),
        "heating_temperature_set_point_applied": _applied_set_point(heating_setpoint_applied_c),
        "average_load_adjustment_percentage_applied": (
            se.AVERAGE_LOAD_ADJUSTMENT_UNUSED
            if avg_load_adjustment_applied_pct is None
            else avg_load_adjustment_applied_pct
        ),
        "duty_cycle_applied": se.DUTY_CYCLE_UNUSED
        if duty_cycle_applied_pct is None
        else duty_cycle_applied_pct,
        "event_control": se.EventControl(event.event_control if event is not None else 0),
        "signature_type": se.SignatureType.No_Signature,
        "signature": se.UNSIGNED,
    }
