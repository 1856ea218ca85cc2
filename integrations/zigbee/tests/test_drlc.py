"""Demand response, price and messages from the meter, round trip at the frame level."""

from __future__ import annotations

import pytest

from hems.model import CommandError
from integrations.zigbee import smartenergy as se
from integrations.zigbee.events import DRLCCancel, DRLCEvent, PriceEvent, UtilityMessage

from .conftest import METER_ID, START_TS, wait_for

ES = se.EventStatus


async def started(env):
    zigbee = await env.start()
    got: list = []
    zigbee.on_drlc_event = got.append
    return zigbee, got


async def test_load_control_event_round_trip(env):
    zigbee, got = await started(env)
    meter = env.home.meter
    start = START_TS + 600
    meter.issue_load_control_event(
        issuer_event_id=0x12345678,
        device_class=int(se.DeviceClass.Water_Heater | se.DeviceClass.HVAC_Compressor_or_Furnace),
        utility_enrollment_group=3,
        start_ts=start,
        duration_min=90,
        criticality=se.CriticalityLevel.Level_4,
        cooling_offset_c=2.5,
        cooling_setpoint_c=26.5,
        avg_load_adjustment_pct=-30,
        duty_cycle_pct=60,
        event_control=int(se.EventControl.Randomize_Start_Time | se.EventControl.Randomize_End_Time),
    )
    await wait_for(lambda: got, what="the decoded event")
    event = got[0]
    assert isinstance(event, DRLCEvent)
    assert event == DRLCEvent(
        issuer_event_id=0x12345678,
        device_class=0x0005,
        utility_enrollment_group=3,
        start_ts=start,
        duration_min=90,
        criticality=5,
        cooling_offset_c=2.5,
        heating_offset_c=None,
        cooling_setpoint_c=26.5,
        heating_setpoint_c=None,
        avg_load_adjustment_pct=-30,
        duty_cycle_pct=60,
        event_control=3,
        source=METER_ID,
        received_ts=START_TS,
    )
    assert event.loads == ("hvac", "water_heater")
    assert event.criticality_name == "Level_4" and not event.mandatory
    assert event.randomize_start and event.randomize_end
    assert event.end(now=START_TS) == start + 90 * 60

    # The integration acknowledged it with "received", decoded by the meter from the frame zigpy encoded
    await wait_for(lambda: meter.drlc.reports, what="the acknowledgement")
    ack = meter.drlc.reports[0]
    assert (ack.issuer_event_id, ack.event_status) == (0x12345678, ES.Load_Control_Event_Received)
    assert ack.criticality_level_applied == se.CriticalityLevel.Level_4
    assert ack.signature_type == se.SignatureType.No_Signature and ack.signature == [0xFF] * 42

    # The DR lifecycle reports the start, with what it applied
    env.frames.clear()
    await zigbee.report_event_status(
        0x12345678,
        "started",
        ts=start + 5,
        cooling_setpoint_applied_c=26.5,
        avg_load_adjustment_applied_pct=-30,
    )
    report = meter.drlc.reports[-1]
    assert report.event_status == ES.Event_Started
    assert report.event_status_time == start + 5 - se.ZIGBEE_EPOCH_POSIX
    assert report.cooling_temperature_set_point_applied == 2650
    assert report.heating_temperature_set_point_applied == se.TEMPERATURE_SET_POINT_UNUSED
    assert report.average_load_adjustment_percentage_applied == -30
    assert report.duty_cycle_applied == se.DUTY_CYCLE_UNUSED
    assert report.event_control == 3
    # On the air: ZCL header (3 bytes) + 60 bytes of Report Event Status, from the gateway's SE endpoint
    (frame,) = env.sent(se.Drlc.cluster_id)
    assert len(frame.payload) == 3 + 60
    assert frame.profile == se.PROFILE_ID

    # The meter repeating its schedule does not hand the same event on twice
    await zigbee.get_scheduled_events()
    await wait_for(lambda: len(meter.node.commands_received) >= 3, what="Get Scheduled Events")
    assert len(got) == 1


async def test_cancel_opt_out_and_rejections(env):
    zigbee, got = await started(env)
    meter = env.home.meter
    first = meter.issue_load_control_event(duration_min=30)
    second = meter.issue_load_control_event(duration_min=45, criticality=se.CriticalityLevel.Emergency)
    await wait_for(lambda: len(got) == 2, what="two events")
    assert got[1].mandatory

    meter.drlc.cancel(first, graceful=True, effective_time=0)
    await wait_for(lambda: len(got) == 3, what="the cancel")
    assert got[2] == DRLCCancel(
        issuer_event_id=first,
        device_class=0x0FFF,
        utility_enrollment_group=0,
        graceful=True,
        effective_ts=0.0,
        source=METER_ID,
        received_ts=START_TS,
    )
    await zigbee.report_event_status(first, "cancelled")
    await zigbee.report_event_status(second, "opted_out")
    statuses = [(r.issuer_event_id, r.event_status) for r in meter.drlc.reports]
    assert statuses[-2:] == [(first, ES.Event_Cancelled), (second, ES.User_Opted_Out)]

    # A cancel of an event the meter never sent is rejected by the integration itself
    meter.drlc.cancel(999)
    await wait_for(lambda: meter.drlc.reports[-1].issuer_event_id == 999, what="the rejection")
    assert meter.drlc.reports[-1].event_status == ES.Rejected_Invalid_Cancel_Undefined_Event
    assert len(got) == 3

    meter.drlc.cancel_all()
    await wait_for(lambda: len(got) == 4, what="cancel all")
    assert got[3].cancel_all and got[3].issuer_event_id is None

    with pytest.raises(LookupError, match="no Zigbee DRLC event 4242"):
        await zigbee.report_event_status(4242, "started")
    with pytest.raises(ValueError, match="unknown DRLC event status 'begun'"):
        await zigbee.report_event_status(first, "begun")


async def test_without_a_lifecycle_events_are_logged_and_published(env, caplog):
    await env.start()
    caplog.set_level("INFO", logger="integrations.zigbee")
    env.home.meter.issue_load_control_event(
        issuer_event_id=77, duration_min=15, device_class=int(se.DeviceClass.Water_Heater)
    )
    await wait_for(lambda: env.value(METER_ID, "drlc_event"), what="the reading")
    assert env.value(METER_ID, "drlc_event") == "event 77: Level_1, 15 min, loads water_heater"
    assert "DRLC event 77" in caplog.text


async def test_price_publish_acknowledge_and_request(env):
    zigbee = await env.start()
    prices: list[PriceEvent] = []
    meter = env.home.meter
    meter.publish_price(
        0.1234,
        now=START_TS,
        issuer_event_id=55,
        tier=2,
        tiers=3,
        trailing_digits=4,
        duration_min=120,
        generation_price=0.05,
        ack_required=True,
    )
    # The default handler publishes it until the tariff takes prices over
    await wait_for(lambda: env.value(METER_ID, "price_per_kwh") == 0.1234, what="the price reading")
    assert env.value(METER_ID, "price_tier") == 2
    await wait_for(lambda: meter.price.acks, what="the acknowledgement")
    assert (meter.price.acks[0].issuer_event_id, meter.price.acks[0].provider_id) == (55, 0x00C0FFEE)

    zigbee.on_price = prices.append
    price = await zigbee.request_current_price()
    assert prices == [price]
    assert price.price == 0.1234 and price.generation_price == 0.05
    assert (price.price_tier, price.number_of_price_tiers, price.register_tier) == (2, 3, 2)
    assert (price.currency, price.rate_label, price.duration_min, price.start_ts) == (840, "TOU", 120, 0.0)
    assert price.current_ts == START_TS and price.per_kwh and price.acknowledgement_required


async def test_message_display_and_confirmation(env):
    zigbee = await env.start()
    messages: list[UtilityMessage] = []
    zigbee.on_message = messages.append
    env.home.meter.display_message(
        "Peak 4-9 pm", message_id=9, importance=se.MessageImportance.High, confirm=True
    )
    await wait_for(lambda: messages, what="the message")
    assert messages[0].text == "Peak 4-9 pm"
    assert (messages[0].importance, messages[0].confirmation_required) == ("high", True)
    await zigbee.confirm_message(9)
    assert env.home.meter.messaging.confirmations[0].message_id == 9
    env.home.meter.messaging.cancel(9)
    await wait_for(lambda: len(messages) == 2, what="the cancel")
    assert messages[1].cancelled and 9 not in zigbee.messages


async def test_a_status_the_meter_does_not_confirm_raises(env):
    zigbee, got = await started(env)
    event_id = env.home.meter.issue_load_control_event()
    await wait_for(lambda: got, what="the event")
    env.home.meter.node.power_off()
    with pytest.raises(CommandError, match="did not confirm the DRLC event status"):
        await zigbee.report_event_status(event_id, "completed")
