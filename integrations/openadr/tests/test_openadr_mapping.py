"""OpenADR events (as openleadr parses them) → DREvent: signals, units, intervals, randomisation, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from openleadr import objects
from openleadr.messaging import create_message, parse_message

from hems.dr import DRInterval, DRState, OptState
from integrations.openadr.mapping import SIGNAL_NOT_SUPPORTED, MappingError, to_dr_event

T = datetime(2026, 7, 1, 23, 0, tzinfo=UTC)


def parsed(signals: list[objects.EventSignal], *, status="far", tolerance_s: float = 0, **desc) -> dict:
    """Round-trip an event through openleadr's message builder and parser, as the VEN receives it."""
    total = sum((i.duration for i in signals[0].intervals), timedelta())
    event = objects.Event(
        event_descriptor=objects.EventDescriptor(
            event_id=desc.pop("event_id", "e1"),
            modification_number=desc.pop("modification_number", 3),
            market_context="http://utility.example/cpp",
            event_status=status,
            priority=desc.pop("priority", 2),
            test_event=desc.pop("test_event", False),
        ),
        event_signals=signals,
        targets=[objects.Target(ven_id="ven-1")],
        active_period=objects.ActivePeriod(
            dtstart=T,
            duration=total,
            tolerance={"startafter": timedelta(seconds=tolerance_s)} if tolerance_s else None,
        ),
    )
    event.event_descriptor.event_status = status
    msg = create_message(
        "oadrDistributeEvent",
        request_id="r1",
        vtn_id="VTN",
        response={"response_code": 200, "response_description": "OK", "request_id": None},
        events=[event],
    )
    _, payload = parse_message(msg)
    return payload["events"][0]


def sig(
    name: str, kind: str, values: list[float], minutes: int = 30, measurement=None
) -> objects.EventSignal:
    intervals = [
        objects.Interval(
            dtstart=T + timedelta(minutes=minutes * i),
            duration=timedelta(minutes=minutes),
            signal_payload=v,
            uid=i,
        )
        for i, v in enumerate(values)
    ]
    return objects.EventSignal(
        intervals=intervals,
        signal_name=name,
        signal_type=kind,
        signal_id=f"{name}-{kind}",
        measurement=measurement,
    )


def test_simple_level_event():
    m = to_dr_event(
        parsed([sig("SIMPLE", "level", [2.0])], tolerance_s=900), source="openadr", request_id="r1"
    )
    ev = m.event
    assert (ev.key, ev.level, ev.start_ts, ev.duration_s) == ("openadr:e1", 2, T.timestamp(), 1800.0)
    assert (
        ev.modification_number == 3 and ev.priority == 2 and ev.market_context == "http://utility.example/cpp"
    )
    assert ev.randomization_s == 900.0 and ev.intervals == () and ev.opt is OptState.OPT_IN
    assert m.response_code == 200 and m.response_required and m.status == "far"
    assert ev.source_ref["request_id"] == "r1" and ev.source_ref["signals"] == ["SIMPLE/level"]


def test_multi_interval_levels_and_load_dispatch_units():
    kw = objects.Measurement(
        name="powerReal",
        description="RealPower",
        unit="W",
        scale="k",
        power_attributes=objects.PowerAttributes(),
    )
    m = to_dr_event(
        parsed(
            [
                sig("SIMPLE", "level", [1.0, 3.0, 2.0]),
                sig("LOAD_DISPATCH", "delta", [1.5, 2.0, 0.5], measurement=kw),
            ]
        ),
        source="openadr",
    )
    ev = m.event
    assert ev.level == 3 and ev.shed_w == 2000.0  # event-wide: the most demanding
    assert ev.intervals == (
        DRInterval(0.0, 1800.0, shed_w=1500.0, level=1),
        DRInterval(1800.0, 1800.0, shed_w=2000.0, level=3),
        DRInterval(3600.0, 1800.0, shed_w=500.0, level=2),
    )
    # without an itemBase a LOAD_DISPATCH payload is read as kW; a setpoint is an import cap (the lowest wins)
    m = to_dr_event(parsed([sig("LOAD_DISPATCH", "setpoint", [3.0, 2.5])]), source="openadr")
    assert m.event.import_cap_w == 2500.0
    watts = objects.Measurement(
        name="powerReal",
        description="RealPower",
        unit="W",
        scale="none",
        power_attributes=objects.PowerAttributes(),
    )
    m = to_dr_event(parsed([sig("LOAD_DISPATCH", "delta", [750.0], measurement=watts)]), source="openadr")
    assert m.event.shed_w == 750.0


def test_price_signal_and_level_clipping():
    m = to_dr_event(parsed([sig("ELECTRICITY_PRICE", "price", [0.42, 0.95])]), source="openadr")
    assert m.event.price_per_kwh == 0.95 and [i.price_per_kwh for i in m.event.intervals] == [0.42, 0.95]
    raw = parsed([sig("SIMPLE", "level", [3.0])])
    raw["event_signals"][0]["intervals"][0]["signal_payload"] = 7.0  # out of range from a sloppy VTN
    assert to_dr_event(raw, source="openadr").event.level == 3


def test_unsupported_signal_is_opted_out_with_460():
    m = to_dr_event(parsed([sig("BID_PRICE", "price", [1.0])]), source="openadr")
    assert m.response_code == SIGNAL_NOT_SUPPORTED and m.event.opt is OptState.OPT_OUT
    assert "no supported signal (got BID_PRICE/price)" in m.event.reason


def test_cancelled_status_and_missing_fields():
    m = to_dr_event(parsed([sig("SIMPLE", "level", [1.0])], status="cancelled"), source="openadr")
    assert m.cancelled and m.event.state is DRState.CANCELLED and m.event.reason == "cancelled by the VTN"
    raw = parsed([sig("SIMPLE", "level", [1.0])])
    raw["event_descriptor"]["event_id"] = None
    with pytest.raises(MappingError, match="eventID"):
        to_dr_event(raw, source="openadr")
    raw = parsed([sig("SIMPLE", "level", [1.0])])
    raw["active_period"]["dtstart"] = "yesterday"
    with pytest.raises(MappingError, match="dtstart"):
        to_dr_event(raw, source="openadr")
