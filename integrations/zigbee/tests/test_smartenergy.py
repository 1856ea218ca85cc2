"""The Smart Energy clusters as zigpy encodes and decodes them, byte for byte, and their typed values."""

from __future__ import annotations

import pytest
import zigpy.types as t
from zigpy.zcl import Cluster
from zigpy.zcl.clusters import smartenergy as zigpy_se

from integrations.zigbee import events as ev
from integrations.zigbee import smartenergy as se

LCE = se.Drlc.ClientCommandDefs.load_control_event.schema
RES = se.Drlc.ServerCommandDefs.report_event_status.schema
PRICE = se.Price.ClientCommandDefs.publish_price.schema


def test_the_clusters_replace_zigpys_placeholders():
    for cluster_id, ours, theirs in (
        (0x0700, se.Price, zigpy_se.Price),
        (0x0701, se.Drlc, zigpy_se.Drlc),
        (0x0703, se.Messaging, zigpy_se.Messaging),
    ):
        assert Cluster._registry[cluster_id] is ours
        assert issubclass(ours, theirs) and ours.ep_attribute == theirs.ep_attribute


def test_load_control_event_bytes():
    event = LCE(
        issuer_event_id=0x01020304,
        device_class=se.DeviceClass.Water_Heater | se.DeviceClass.Pool_Pump_Spa_Jacuzzi,
        utility_enrollment_group=2,
        start_time=0,
        duration_in_minutes=120,
        criticality_level=se.CriticalityLevel.Emergency,
        cooling_temperature_offset=25,
        heating_temperature_offset=se.TEMPERATURE_OFFSET_UNUSED,
        cooling_temperature_set_point=se.TEMPERATURE_SET_POINT_UNUSED,
        heating_temperature_set_point=1850,
        average_load_adjustment_percentage=-100,
        duty_cycle=se.DUTY_CYCLE_UNUSED,
        event_control=se.EventControl.Randomize_End_Time,
    )
    data = event.serialize()
    assert data.hex(" ") == "04 03 02 01 0c 00 02 00 00 00 00 78 00 07 19 ff 00 80 3a 07 9c ff 02"
    decoded, rest = LCE.deserialize(data)
    assert rest == b"" and decoded == event
    value = ev.decode_load_control_event(decoded, source="m", received_ts=100.0)
    assert (value.loads, value.criticality_name, value.mandatory) == (
        ("water_heater", "pool_pump"),
        "Emergency",
        True,
    )
    assert (value.cooling_offset_c, value.heating_offset_c) == (2.5, None)
    assert (value.cooling_setpoint_c, value.heating_setpoint_c) == (None, 18.5)
    assert (value.avg_load_adjustment_pct, value.duty_cycle_pct) == (-100, None)
    assert value.start(now=999.0) == 100.0  # "now" is when it was received
    with pytest.raises(ValueError):
        LCE.deserialize(data[:-1])


def test_report_event_status_is_60_bytes_and_decodes_without_a_signature():
    fields = ev.report_event_status_fields(None, 7, "opted_out", ts=se.ZIGBEE_EPOCH_POSIX + 1000)
    data = RES(**fields).serialize()
    assert len(data) == 60 and data[-42:] == b"\xff" * 42
    assert data[:10].hex(" ") == "07 00 00 00 04 e8 03 00 00 00"
    # Some stacks leave the 42 signature octets out when unsigned: it still decodes
    short, _ = RES.deserialize(data[:-42])
    assert short.event_status == se.EventStatus.User_Opted_Out and short.signature is None
    assert ev.status_code("superseded") == se.EventStatus.Event_Superseded
    with pytest.raises(ValueError):
        ev.report_event_status_fields(None, 7, "started", ts=0, duty_cycle_applied_pct=140)


def test_publish_price_from_an_se_1_0_meter_and_with_the_1_1_fields():
    fields = {
        "provider_id": 1,
        "rate_label": t.LVBytes(b"Peak"),
        "issuer_event_id": 2,
        "current_time": 3,
        "unit_of_measure": 0,
        "currency": 978,
        "price_trailing_digit_and_price_tier": se.PriceTrailingDigitAndTier(price_tier=3, trailing_digit=3),
        "number_of_price_tiers_and_register_tier": se.NumberOfTiersAndRegisterTier(
            number_of_price_tiers=4, register_tier=3
        ),
        "start_time": 0,
        "duration_in_minutes": 0xFFFF,
        "price": 315,
        "price_ratio": 25,
        "generation_price": 0xFFFFFFFF,
        "generation_price_ratio": 0xFF,
    }
    se10 = PRICE(**fields).serialize()
    assert len(se10) == 4 + 5 + 4 + 4 + 1 + 2 + 1 + 1 + 4 + 2 + 4 + 1 + 4 + 1
    decoded, _ = PRICE.deserialize(se10)
    price = ev.decode_publish_price(decoded)
    assert (price.price, price.price_tier, price.number_of_price_tiers, price.currency) == (0.315, 3, 4, 978)
    assert (price.rate_label, price.duration_min, price.price_ratio, price.generation_price) == (
        "Peak",
        None,
        2.5,
        None,
    )
    assert price.current_ts == se.ZIGBEE_EPOCH_POSIX + 3 and not price.acknowledgement_required

    se11 = PRICE(
        **fields,
        alternate_cost_delivered=0,
        alternate_cost_unit=1,
        alternate_cost_trailing_digit=0,
        number_of_block_thresholds=0,
        price_control=se.PriceControl.Price_Acknowledgement_Required,
    ).serialize()
    assert len(se11) == len(se10) + 8
    assert ev.decode_publish_price(PRICE.deserialize(se11)[0]).acknowledgement_required


def test_display_message():
    schema = se.Messaging.ClientCommandDefs.display_message.schema
    control = se.MessageControl(0x88)  # high importance, confirmation required
    data = schema(
        message_id=42,
        message_control=control,
        start_time=0,
        duration_in_minutes=30,
        message=t.CharacterString("Hi"),
    ).serialize()
    assert data.hex(" ") == "2a 00 00 00 88 00 00 00 00 1e 00 02 48 69"
    message = ev.decode_display_message(schema.deserialize(data)[0])
    assert (message.text, message.importance, message.confirmation_required, message.duration_min) == (
        "Hi",
        "high",
        True,
        30,
    )


def test_times():
    assert se.utc_to_posix(0) == 0.0
    assert se.utc_to_posix(1) == se.ZIGBEE_EPOCH_POSIX + 1
    assert se.posix_to_utc(0) == 0
    assert se.posix_to_utc(1_782_900_000.4) == 1_782_900_000 - se.ZIGBEE_EPOCH_POSIX
