"""The meter's DRLC events join the core DR lifecycle, and its notices go back as Report Event Status."""

from __future__ import annotations

from hems.dr import DRManager, DRState
from hems.store import Store
from integrations.zigbee import smartenergy as se

from .conftest import START_TS, wait_for

ES = se.EventStatus


async def test_drlc_event_becomes_a_core_event_and_is_answered(env):
    store = Store(":memory:")
    env.dr = DRManager(store, clock=env.clock, timezone="America/Los_Angeles", seed=1)
    await env.start()
    meter = env.home.meter
    meter.issue_load_control_event(
        issuer_event_id=77,
        device_class=int(se.DeviceClass.Water_Heater),
        utility_enrollment_group=0,
        start_ts=START_TS + 600,
        duration_min=60,
        criticality=se.CriticalityLevel.Level_4,
        avg_load_adjustment_pct=-30,
        event_control=0,
    )
    event = await wait_for(lambda: env.dr.get("zigbee:77"), what="the core DR event")
    assert (event.level, event.duration_s, event.start_ts) == (2, 3600.0, START_TS + 600)
    assert event.state is DRState.PENDING
    await wait_for(lambda: meter.drlc.reports, what="received")
    assert meter.drlc.reports[0].event_status == ES.Load_Control_Event_Received

    env.clock.advance(601)
    await env.dr.tick()
    await env.dr.drain()
    await wait_for(lambda: len(meter.drlc.reports) >= 2, what="started")
    assert meter.drlc.reports[-1].event_status == ES.Event_Started
    assert meter.drlc.reports[-1].average_load_adjustment_percentage_applied == -30
    assert env.dr.level_in_force().level == 2

    await env.dr.opt_out("zigbee:77", "homeowner")
    await env.dr.drain()
    await wait_for(lambda: len(meter.drlc.reports) >= 3, what="opted out")
    assert meter.drlc.reports[-1].event_status == ES.User_Opted_Out
    store.close()


async def test_cancel_from_the_meter_cancels_the_core_event(env):
    store = Store(":memory:")
    env.dr = DRManager(store, clock=env.clock, timezone="America/Los_Angeles", seed=1)
    await env.start()
    meter = env.home.meter
    meter.issue_load_control_event(
        issuer_event_id=78,
        device_class=int(se.DeviceClass.HVAC_Compressor_or_Furnace),
        utility_enrollment_group=0,
        start_ts=START_TS + 3600,
        duration_min=30,
        criticality=se.CriticalityLevel.Emergency,
        event_control=0,
    )
    event = await wait_for(lambda: env.dr.get("zigbee:78"), what="the core DR event")
    assert event.level == 3
    meter.drlc.cancel(78)
    await wait_for(lambda: env.dr.get("zigbee:78").state is DRState.CANCELLED, what="the cancellation")
    store.close()


async def test_published_price_reaches_the_planner_as_a_price_event(env):
    store = Store(":memory:")
    env.dr = DRManager(store, clock=env.clock, timezone="America/Los_Angeles", seed=1)
    await env.start()
    env.home.meter.publish_price(
        0.61234, now=START_TS, issuer_event_id=9, start_ts=START_TS, duration_min=120
    )
    event = await wait_for(lambda: env.dr.get("zigbee:price-9"), what="the price event")
    assert event.price_per_kwh == 0.61234 and event.duration_s == 7200.0
    prices = env.dr.prices(START_TS, 900.0, 12)
    assert list(prices[:8]) == [0.61234] * 8  # the two hours the utility priced
    assert all(p != p for p in prices[8:])  # NaN: the tariff applies again
    store.close()
