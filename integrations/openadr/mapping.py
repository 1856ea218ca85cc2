"""OpenADR 2.0b events (as openleadr parses them) → the core's ``DREvent``. Pure functions.

Signals the gateway acts on (others are answered with optOut, response code 460 "signal not supported"):

| signalName              | signalType | becomes                                                          |
|-------------------------|------------|------------------------------------------------------------------|
| SIMPLE / simple         | level      | ``level`` 0-3 (payload rounded and clipped)                      |
| LOAD_DISPATCH           | delta      | ``shed_w``: reduce import by this much against the baseline      |
| LOAD_DISPATCH           | setpoint   | ``import_cap_w``: import at most this                            |
| ELECTRICITY_PRICE, ENERGY_PRICE | price | ``price_per_kwh`` (currency per kWh)                        |

Power values are in the signal's itemBase (``itemUnits`` W with ``siScaleCode``, e.g. k); a LOAD_DISPATCH signal
without an itemBase is read as kW, the unit OpenADR programmes usually dispatch in. Intervals follow each other
from the event's ``dtstart``; an event with one interval per signal gets event-wide values, one with several
gets ``DRInterval``s (and, event-wide, the most demanding value of each kind). ``tolerance.tolerate.startafter``
is the start randomisation window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from hems.dr import DREvent, DRInterval, DRState, OptState

SIGNAL_NOT_SUPPORTED = 460
SI_SCALE = {
    "p": 1e-12,
    "n": 1e-9,
    "micro": 1e-6,
    "m": 1e-3,
    "c": 1e-2,
    "d": 1e-1,
    "none": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
}
PRICE_SIGNALS = ("ELECTRICITY_PRICE", "ENERGY_PRICE")


class MappingError(ValueError):
    """The event lacks what any response needs (an id, a start, a duration)."""


@dataclass(frozen=True, slots=True)
class Mapped:
    event: DREvent
    status: str  # the VTN's eventStatus: far, near, active, completed, cancelled, none
    response_required: bool
    response_code: int = 200
    response_description: str = "OK"

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"


def _ts(value: Any, what: str) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise MappingError(f"{what} has no time zone")
        return value.timestamp()
    raise MappingError(f"{what} is missing or not a date-time ({value!r})")


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if value is None:
        return 0.0
    raise MappingError(f"{what} is not a duration ({value!r})")


def _power_scale(signal: dict) -> float | None:
    """Watts per payload unit from the signal's itemBase; None when it has none (or it is not a power)."""
    item = signal.get("measurement")
    if not isinstance(item, dict):
        item = next((v for v in signal.values() if isinstance(v, dict) and "item_units" in v), None)
        if item is not None:
            item = {"unit": item.get("item_units"), "scale": item.get("si_scale_code")}
    if not isinstance(item, dict) or item.get("unit") is None:
        return None
    unit = str(item.get("unit"))
    base = {"W": 1.0, "kW": 1e3, "MW": 1e6}.get(unit)
    if base is None:
        return None
    return base * SI_SCALE.get(str(item.get("scale") or "none"), 1.0)


def _signal_kind(signal: dict) -> tuple[str, float] | None:
    """(DREvent field, factor) for a supported signal, None otherwise."""
    name = str(signal.get("signal_name", ""))
    kind = str(signal.get("signal_type", ""))
    if name.upper() == "SIMPLE" and kind == "level":
        return "level", 1.0
    if name == "LOAD_DISPATCH" and kind in ("delta", "setpoint"):
        scale = _power_scale(signal)
        return ("shed_w" if kind == "delta" else "import_cap_w"), (1e3 if scale is None else scale)
    if name in PRICE_SIGNALS and kind == "price":
        return "price_per_kwh", 1.0
    return None


def _value(kind: str, payload: float, factor: float) -> float | int:
    if kind == "level":
        return int(min(3, max(0, round(payload))))
    return float(payload) * factor


def _most_demanding(kind: str, values: list[float]) -> float | int:
    return min(values) if kind == "import_cap_w" else max(values)


def to_dr_event(
    raw: dict, *, source: str, request_id: str | None = None, vtn_id: str | None = None
) -> Mapped:
    """Map one parsed ``ei:eiEvent`` (with ``response_required``) onto a ``DREvent``."""
    desc = raw.get("event_descriptor") or {}
    event_id = desc.get("event_id")
    if event_id in (None, ""):
        raise MappingError("event without an eventID")
    event_id = str(event_id)
    period = raw.get("active_period") or {}
    start_ts = _ts(period.get("dtstart"), f"event {event_id}: dtstart")
    duration_s = _seconds(period.get("duration"), f"event {event_id}: duration")
    tolerance = period.get("tolerance") or {}
    startafter = (tolerance.get("tolerate") or {}).get("startafter") if isinstance(tolerance, dict) else None
    randomization_s = max(0.0, _seconds(startafter, f"event {event_id}: startafter"))
    mn = desc.get("modification_number") or 0
    status = str(desc.get("event_status") or "none")

    signals = raw.get("event_signals") or []
    if isinstance(signals, dict):
        signals = signals.get("event_signals") or [signals]
    wide: dict[str, float | int] = {}
    per_interval: dict[tuple[float, float], dict[str, float | int]] = {}
    unsupported = []
    for signal in signals:
        found = _signal_kind(signal)
        if found is None:
            unsupported.append(f"{signal.get('signal_name')}/{signal.get('signal_type')}")
            continue
        kind, factor = found
        offset = 0.0
        values = []
        for interval in signal.get("intervals") or []:
            length = _seconds(interval.get("duration"), f"event {event_id}: interval duration")
            if isinstance(interval.get("dtstart"), datetime):
                offset = interval["dtstart"].timestamp() - start_ts
            payload = interval.get("signal_payload")
            if isinstance(payload, int | float) and not isinstance(payload, bool) and math.isfinite(payload):
                v = _value(kind, payload, factor)
                values.append(v)
                per_interval.setdefault((offset, length), {})[kind] = v
            offset += length
        if values:
            wide[kind] = _most_demanding(kind, values)

    intervals: tuple[DRInterval, ...] = ()
    if len(per_interval) > 1:
        intervals = tuple(
            DRInterval(
                offset, length, v.get("shed_w"), v.get("import_cap_w"), v.get("price_per_kwh"), v.get("level")
            )
            for (offset, length), v in sorted(per_interval.items())
        )
    ref = {
        "request_id": request_id,
        "vtn_id": vtn_id,
        "response_required": raw.get("response_required", "always"),
        "vtn_status": status,
        "signals": [f"{s.get('signal_name')}/{s.get('signal_type')}" for s in signals],
    }
    event = DREvent(
        source=source,
        event_id=event_id,
        start_ts=start_ts,
        duration_s=max(0.0, duration_s),
        modification_number=int(mn),
        market_context=str(desc.get("market_context") or ""),
        randomization_s=randomization_s,
        shed_w=wide.get("shed_w"),
        import_cap_w=wide.get("import_cap_w"),
        price_per_kwh=wide.get("price_per_kwh"),
        level=wide.get("level"),  # type: ignore[arg-type]
        intervals=intervals,
        priority=int(desc.get("priority") or 0),
        test_event=bool(desc.get("test_event", False)),
        state=DRState.CANCELLED if status == "cancelled" else DRState.PENDING,
        reason="cancelled by the VTN" if status == "cancelled" else "",
        source_ref=ref,
    )
    required = raw.get("response_required", "always") == "always"
    if not wide and status != "cancelled":
        what = ", ".join(unsupported) or "none"
        return Mapped(
            replace(event, opt=OptState.OPT_OUT, reason=f"no supported signal (got {what})"),
            status,
            required,
            SIGNAL_NOT_SUPPORTED,
            "signal not supported",
        )
    return Mapped(event, status, required)
