"""ZigBee Smart Energy 1.x clusters that zigpy defines without attributes or commands.

Price (0x0700), Demand Response and Load Control (0x0701) and Messaging (0x0703), written as ordinary
zigpy clusters so that frames are encoded and decoded by zigpy itself. This module depends on zigpy only
and is meant to be offered upstream (``zigpy/zcl/clusters/smartenergy.py``); importing it registers these
classes for their cluster ids, replacing zigpy's empty placeholders (they subclass them, so
``isinstance`` checks against zigpy's classes still hold).

Naming follows zigpy: ``ServerCommandDefs`` are the commands a server receives (client to server),
``ClientCommandDefs`` the commands a client receives (server to client). The Energy Service Interface
(the utility meter) is the server of all three clusters; the gateway is their client.

Field layouts are from the ZigBee Smart Energy Standard (SE 1.1 / 1.2a, clusters D.4, D.2, D.5). Fields added
after SE 1.0 are optional (``name?``) so that frames from older meters still decode.
"""

from __future__ import annotations

from typing import Final

import zigpy.types as t
from zigpy.zcl.clusters import smartenergy as _zigpy_se
from zigpy.zcl.clusters.smartenergy import MeteringUnitofMeasure
from zigpy.zcl.foundation import BaseAttributeDefs, BaseCommandDefs, ZCLAttributeDef, ZCLCommandDef

PROFILE_ID: Final = 0x0109  # Smart Energy application profile

# Seconds between the POSIX epoch and the ZigBee epoch (2000-01-01T00:00:00Z) used by UTCTime.
ZIGBEE_EPOCH_POSIX: Final = 946684800


class DeviceType(t.enum16):
    """Smart Energy device identifiers (SE 1.x, 5.7)."""

    Range_Extender = 0x0008
    Energy_Service_Interface = 0x0500
    Metering_Device = 0x0501
    In_Premise_Display = 0x0502
    Programmable_Communicating_Thermostat = 0x0503
    Load_Control_Device = 0x0504
    Smart_Appliance = 0x0505
    Prepayment_Terminal = 0x0506
    Physical_Device = 0x0507
    Remote_Communications_Device = 0x0508


# -- Demand Response and Load Control (0x0701) ----------------------------------------------------


class DeviceClass(t.bitmap16):
    """Device Class field: which kinds of load an event targets (SE D.2.2.3.1.1.1)."""

    HVAC_Compressor_or_Furnace = 1 << 0
    Strip_Heaters_Baseboard_Heaters = 1 << 1
    Water_Heater = 1 << 2
    Pool_Pump_Spa_Jacuzzi = 1 << 3
    Smart_Appliances = 1 << 4
    Irrigation_Pump = 1 << 5
    Managed_Commercial_Industrial_Loads = 1 << 6
    Simple_Misc_Loads = 1 << 7
    Exterior_Lighting = 1 << 8
    Interior_Lighting = 1 << 9
    Electric_Vehicle = 1 << 10
    Generation_Systems = 1 << 11


class CriticalityLevel(t.enum8):
    """Criticality Level field. Levels 1-6 are voluntary, 7-9 mandatory (SE D.2.2.3.1.1.1)."""

    Reserved = 0x00
    Green = 0x01
    Level_1 = 0x02
    Level_2 = 0x03
    Level_3 = 0x04
    Level_4 = 0x05
    Level_5 = 0x06
    Emergency = 0x07
    Planned_Outage = 0x08
    Service_Disconnect = 0x09
    Utility_Defined_1 = 0x0A
    Utility_Defined_2 = 0x0B
    Utility_Defined_3 = 0x0C
    Utility_Defined_4 = 0x0D
    Utility_Defined_5 = 0x0E
    Utility_Defined_6 = 0x0F


class EventControl(t.bitmap8):
    """Event Control field of Load Control Event and Report Event Status."""

    Randomize_Start_Time = 0x01
    Randomize_End_Time = 0x02


class CancelControl(t.bitmap8):
    """Cancel Control field: bit 0 set = end the event gracefully, with the randomized end time."""

    Graceful = 0x01


class EventStatus(t.enum8):
    """Event Status field of Report Event Status (SE D.2.3.3.1.1)."""

    Load_Control_Event_Received = 0x01
    Event_Started = 0x02
    Event_Completed = 0x03
    User_Opted_Out = 0x04
    User_Opted_In = 0x05
    Event_Cancelled = 0x06
    Event_Superseded = 0x07
    Partially_Completed_With_User_Opt_Out = 0x08
    Partially_Completed_Due_To_User_Opt_In = 0x09
    Completed_No_User_Participation_Previous_Opt_Out = 0x0A
    Rejected_Invalid_Opt_Out = 0xF6
    Rejected_Event_Not_Found = 0xF7
    Rejected_Invalid_Cancel_Command = 0xF8
    Rejected_Invalid_Cancel_Effective_Time = 0xF9
    Rejected_Event_Expired = 0xFB
    Rejected_Invalid_Cancel_Undefined_Event = 0xFD
    Load_Control_Event_Rejected = 0xFE


class SignatureType(t.enum8):
    No_Signature = 0x00
    ECDSA = 0x01


class Signature(t.FixedList, item_type=t.uint8_t, length=42):
    """The 42-octet ECDSA signature of Report Event Status (all 0xFF when unsigned)."""


UNSIGNED: Final = Signature([0xFF] * 42)

# "Field not used" values of the Load Control Event and Report Event Status fields.
TEMPERATURE_OFFSET_UNUSED: Final = 0xFF  # uint8, 0.1 °C steps
TEMPERATURE_SET_POINT_UNUSED: Final = -0x8000  # int16 (0x8000), 0.01 °C steps
AVERAGE_LOAD_ADJUSTMENT_UNUSED: Final = -0x80  # int8 (0x80), percent
DUTY_CYCLE_UNUSED: Final = 0xFF  # uint8, percent
DURATION_UNTIL_CHANGED: Final = 0xFFFF  # Price/Messaging duration: until changed
START_NOW: Final = 0  # UTCTime 0: start now


class Drlc(_zigpy_se.Drlc):
    """Demand Response and Load Control. The ESI sends events; load control devices report their status."""

    DeviceClass: Final = DeviceClass
    CriticalityLevel: Final = CriticalityLevel
    EventControl: Final = EventControl
    CancelControl: Final = CancelControl
    EventStatus: Final = EventStatus
    SignatureType: Final = SignatureType
    Signature: Final = Signature

    class AttributeDefs(BaseAttributeDefs):
        # Client attributes (the server has none)
        utility_enrollment_group: Final = ZCLAttributeDef(id=0x0000, type=t.uint8_t, access="rw")
        start_randomization_minutes: Final = ZCLAttributeDef(id=0x0001, type=t.uint8_t, access="rw")
        duration_randomization_minutes: Final = ZCLAttributeDef(id=0x0002, type=t.uint8_t, access="rw")
        device_class_value: Final = ZCLAttributeDef(id=0x0003, type=DeviceClass, access="rw")

    class ServerCommandDefs(BaseCommandDefs):
        report_event_status: Final = ZCLCommandDef(
            id=0x00,
            schema={
                "issuer_event_id": t.uint32_t,
                "event_status": EventStatus,
                "event_status_time": t.UTCTime,
                "criticality_level_applied": CriticalityLevel,
                "cooling_temperature_set_point_applied": t.int16s,
                "heating_temperature_set_point_applied": t.int16s,
                "average_load_adjustment_percentage_applied": t.int8s,
                "duty_cycle_applied": t.uint8_t,
                "event_control": EventControl,
                "signature_type": SignatureType,
                # Fixed 42 octets; some stacks leave it out when unsigned, so it decodes as optional
                "signature?": Signature,
            },
        )
        get_scheduled_events: Final = ZCLCommandDef(
            id=0x01,
            schema={
                "start_time": t.UTCTime,
                "number_of_events": t.uint8_t,  # 0 = all
                "issuer_event_id?": t.uint32_t,  # SE 1.2
            },
        )

    class ClientCommandDefs(BaseCommandDefs):
        load_control_event: Final = ZCLCommandDef(
            id=0x00,
            schema={
                "issuer_event_id": t.uint32_t,
                "device_class": DeviceClass,
                "utility_enrollment_group": t.uint8_t,
                "start_time": t.UTCTime,  # 0 = now
                "duration_in_minutes": t.uint16_t,  # at most 1440
                "criticality_level": CriticalityLevel,
                "cooling_temperature_offset": t.uint8_t,  # 0.1 °C, 0xFF = not used
                "heating_temperature_offset": t.uint8_t,
                "cooling_temperature_set_point": t.int16s,  # 0.01 °C, 0x8000 = not used
                "heating_temperature_set_point": t.int16s,
                "average_load_adjustment_percentage": t.int8s,  # -100..+100, 0x80 = not used
                "duty_cycle": t.uint8_t,  # 0..100 %, 0xFF = not used
                "event_control": EventControl,
            },
        )
        cancel_load_control_event: Final = ZCLCommandDef(
            id=0x01,
            schema={
                "issuer_event_id": t.uint32_t,
                "device_class": DeviceClass,
                "utility_enrollment_group": t.uint8_t,
                "cancel_control": CancelControl,
                "effective_time": t.UTCTime,  # 0 = now
            },
        )
        cancel_all_load_control_events: Final = ZCLCommandDef(
            id=0x02, schema={"cancel_control": CancelControl}
        )


# -- Price (0x0700) -------------------------------------------------------------------------------


class PriceTrailingDigitAndTier(t.IntStruct, t.uint8_t):
    """Price Trailing Digit (bits 4-7: digits right of the decimal point) and Price Tier (bits 0-3)."""

    price_tier: t.uint4_t
    trailing_digit: t.uint4_t


class NumberOfTiersAndRegisterTier(t.IntStruct, t.uint8_t):
    """Number of Price Tiers (bits 4-7) and Register Tier (bits 0-3)."""

    register_tier: t.uint4_t
    number_of_price_tiers: t.uint4_t


class NumberOfTiersAndBlockThresholds(t.IntStruct, t.uint8_t):
    """Number of Price Tiers (bits 4-7) and Number of Block Thresholds (bits 0-3)."""

    number_of_block_thresholds: t.uint4_t
    number_of_price_tiers: t.uint4_t


class PriceControl(t.bitmap8):
    Price_Acknowledgement_Required = 0x01
    Total_Tiers_Exceeds_15 = 0x02


class GetCurrentPriceOptions(t.bitmap8):
    Requestor_Rx_On_When_Idle = 0x01


class CommodityType(t.enum8):
    Electric_Metering = 0x00
    Gas_Metering = 0x01
    Water_Metering = 0x02
    Thermal_Metering = 0x03
    Pressure_Metering = 0x04
    Heat_Metering = 0x05
    Cooling_Metering = 0x06


PRICE_RATIO_UNUSED: Final = 0xFF
GENERATION_PRICE_UNUSED: Final = 0xFFFFFFFF


class Price(_zigpy_se.Price):
    """Price: the ESI publishes the current and scheduled prices; clients ask for and acknowledge them."""

    PriceTrailingDigitAndTier: Final = PriceTrailingDigitAndTier
    NumberOfTiersAndRegisterTier: Final = NumberOfTiersAndRegisterTier
    PriceControl: Final = PriceControl
    CommodityType: Final = CommodityType

    class AttributeDefs(BaseAttributeDefs):
        # Tier Label set (0x00)
        tier1_price_label: Final = ZCLAttributeDef(id=0x0000, type=t.LVBytes, access="rw")
        tier2_price_label: Final = ZCLAttributeDef(id=0x0001, type=t.LVBytes, access="rw")
        tier3_price_label: Final = ZCLAttributeDef(id=0x0002, type=t.LVBytes, access="rw")
        tier4_price_label: Final = ZCLAttributeDef(id=0x0003, type=t.LVBytes, access="rw")
        tier5_price_label: Final = ZCLAttributeDef(id=0x0004, type=t.LVBytes, access="rw")
        tier6_price_label: Final = ZCLAttributeDef(id=0x0005, type=t.LVBytes, access="rw")
        # Block Threshold set (0x01)
        block1_threshold: Final = ZCLAttributeDef(id=0x0100, type=t.uint48_t, access="r")
        block2_threshold: Final = ZCLAttributeDef(id=0x0101, type=t.uint48_t, access="r")
        block3_threshold: Final = ZCLAttributeDef(id=0x0102, type=t.uint48_t, access="r")
        block4_threshold: Final = ZCLAttributeDef(id=0x0103, type=t.uint48_t, access="r")
        block5_threshold: Final = ZCLAttributeDef(id=0x0104, type=t.uint48_t, access="r")
        # Block Period set (0x02)
        start_of_block_period: Final = ZCLAttributeDef(id=0x0200, type=t.UTCTime, access="r")
        block_period_duration: Final = ZCLAttributeDef(id=0x0201, type=t.uint24_t, access="r")
        threshold_multiplier: Final = ZCLAttributeDef(id=0x0202, type=t.uint24_t, access="r")
        threshold_divisor: Final = ZCLAttributeDef(id=0x0203, type=t.uint24_t, access="r")
        # Commodity set (0x03)
        commodity_type: Final = ZCLAttributeDef(id=0x0300, type=CommodityType, access="r")
        standing_charge: Final = ZCLAttributeDef(id=0x0301, type=t.uint32_t, access="r")
        conversion_factor: Final = ZCLAttributeDef(id=0x0302, type=t.uint32_t, access="r")
        conversion_factor_trailing_digit: Final = ZCLAttributeDef(id=0x0303, type=t.bitmap8, access="r")
        calorific_value: Final = ZCLAttributeDef(id=0x0304, type=t.uint32_t, access="r")
        calorific_value_unit: Final = ZCLAttributeDef(id=0x0305, type=t.enum8, access="r")
        calorific_value_trailing_digit: Final = ZCLAttributeDef(id=0x0306, type=t.bitmap8, access="r")

    class ServerCommandDefs(BaseCommandDefs):
        get_current_price: Final = ZCLCommandDef(id=0x00, schema={"command_options": GetCurrentPriceOptions})
        get_scheduled_prices: Final = ZCLCommandDef(
            id=0x01, schema={"start_time": t.UTCTime, "number_of_events": t.uint8_t}
        )
        price_acknowledgement: Final = ZCLCommandDef(
            id=0x02,
            schema={
                "provider_id": t.uint32_t,
                "issuer_event_id": t.uint32_t,
                "price_ack_time": t.UTCTime,
                "control": PriceControl,
            },
        )
        get_block_periods: Final = ZCLCommandDef(
            id=0x03,
            schema={"start_time": t.UTCTime, "number_of_events": t.uint8_t, "tariff_type?": t.bitmap8},
        )
        get_conversion_factor: Final = ZCLCommandDef(
            id=0x04,
            schema={
                "earliest_start_time": t.UTCTime,
                "min_issuer_event_id": t.uint32_t,
                "number_of_commands": t.uint8_t,
            },
        )
        get_calorific_value: Final = ZCLCommandDef(
            id=0x05,
            schema={
                "earliest_start_time": t.UTCTime,
                "min_issuer_event_id": t.uint32_t,
                "number_of_commands": t.uint8_t,
            },
        )

    class ClientCommandDefs(BaseCommandDefs):
        publish_price: Final = ZCLCommandDef(
            id=0x00,
            schema={
                "provider_id": t.uint32_t,
                "rate_label": t.LVBytes,  # octet string, at most 12 octets
                "issuer_event_id": t.uint32_t,
                "current_time": t.UTCTime,
                "unit_of_measure": MeteringUnitofMeasure,
                "currency": t.uint16_t,  # ISO 4217 numeric code
                "price_trailing_digit_and_price_tier": PriceTrailingDigitAndTier,
                "number_of_price_tiers_and_register_tier": NumberOfTiersAndRegisterTier,
                "start_time": t.UTCTime,  # 0 = now
                "duration_in_minutes": t.uint16_t,  # 0xFFFF = until changed
                "price": t.uint32_t,
                "price_ratio": t.uint8_t,  # 0.1 steps, 0xFF = not used
                "generation_price": t.uint32_t,  # 0xFFFFFFFF = not used
                "generation_price_ratio": t.uint8_t,
                # SE 1.1
                "alternate_cost_delivered?": t.uint32_t,
                "alternate_cost_unit?": t.enum8,
                "alternate_cost_trailing_digit?": t.bitmap8,
                "number_of_block_thresholds?": t.uint8_t,
                "price_control?": PriceControl,
            },
        )
        publish_block_period: Final = ZCLCommandDef(
            id=0x01,
            schema={
                "provider_id": t.uint32_t,
                "issuer_event_id": t.uint32_t,
                "block_period_start_time": t.UTCTime,
                "block_period_duration": t.uint24_t,  # minutes
                "number_of_price_tiers_and_block_thresholds": NumberOfTiersAndBlockThresholds,
                "block_period_control": t.bitmap8,
            },
        )
        publish_conversion_factor: Final = ZCLCommandDef(
            id=0x02,
            schema={
                "issuer_event_id": t.uint32_t,
                "start_time": t.UTCTime,
                "conversion_factor": t.uint32_t,
                "conversion_factor_trailing_digit": t.bitmap8,
            },
        )
        publish_calorific_value: Final = ZCLCommandDef(
            id=0x03,
            schema={
                "issuer_event_id": t.uint32_t,
                "start_time": t.UTCTime,
                "calorific_value": t.uint32_t,
                "calorific_value_unit": t.enum8,
                "calorific_value_trailing_digit": t.bitmap8,
            },
        )


# -- Messaging (0x0703) ---------------------------------------------------------------------------


class MessageTransmission(t.enum2):
    Normal = 0
    Normal_And_Anonymous_Inter_PAN = 1
    Anonymous_Inter_PAN_Only = 2
    Reserved = 3


class MessageImportance(t.enum2):
    Low = 0
    Medium = 1
    High = 2
    Critical = 3


class MessageControl(t.IntStruct, t.uint8_t):
    """Message Control field (SE D.5.2.3.1.1.1)."""

    transmission: MessageTransmission
    importance: MessageImportance
    reserved_4: t.uint1_t
    enhanced_confirmation_required: t.uint1_t  # SE 1.2
    reserved_6: t.uint1_t
    confirmation_required: t.uint1_t


class MessageConfirmationControl(t.bitmap8):
    No_Returned = 0x01
    Yes_Returned = 0x02


class Messaging(_zigpy_se.Messaging):
    """Messaging: the ESI shows text to the occupant, who may have to confirm it."""

    MessageControl: Final = MessageControl
    MessageImportance: Final = MessageImportance
    MessageTransmission: Final = MessageTransmission

    class ServerCommandDefs(BaseCommandDefs):
        get_last_message: Final = ZCLCommandDef(id=0x00, schema={})
        message_confirmation: Final = ZCLCommandDef(
            id=0x01,
            schema={
                "message_id": t.uint32_t,
                "confirmation_time": t.UTCTime,
                # SE 1.2
                "message_confirmation_control?": MessageConfirmationControl,
                "message_confirmation_response?": t.LVBytes,
            },
        )

    class ClientCommandDefs(BaseCommandDefs):
        display_message: Final = ZCLCommandDef(
            id=0x00,
            schema={
                "message_id": t.uint32_t,
                "message_control": MessageControl,
                "start_time": t.UTCTime,  # 0 = now
                "duration_in_minutes": t.uint16_t,  # 0xFFFF = until changed
                "message": t.CharacterString,
                "extended_message_control?": t.bitmap8,  # SE 1.2
            },
        )
        cancel_message: Final = ZCLCommandDef(
            id=0x01, schema={"message_id": t.uint32_t, "message_control": MessageControl}
        )


def utc_to_posix(value: int) -> float:
    """A ZCL UTCTime (seconds since 2000-01-01Z) as POSIX seconds; 0 stays 0 ("now")."""
    return 0.0 if value == 0 else float(value) + ZIGBEE_EPOCH_POSIX


def posix_to_utc(ts: float) -> t.UTCTime:
    """POSIX seconds as a ZCL UTCTime; 0 stays 0 ("now")."""
    if ts == 0:
        return t.UTCTime(0)
    return t.UTCTime(max(1, min(0xFFFFFFFE, round(ts) - ZIGBEE_EPOCH_POSIX)))


__all__ = [
    "PROFILE_ID",
    "CancelControl",
    "CriticalityLevel",
    "DeviceClass",
    "DeviceType",
    "Drlc",
    "EventControl",
    "EventStatus",
    "MessageControl",
    "Messaging",
    "Price",
    "PriceControl",
    "Signature",
    "SignatureType",
    "posix_to_utc",
    "utc_to_posix",
]
