"""DR verification: what the home would have imported without the event, and what it shed.

Pure functions over 15-minute average grid power (``{bucket_start_ts: watts}``), plus helpers that read those
averages from the store's 15-minute rollups. Grid power is the meter's net power (import positive, export
negative), i.e. what the utility's meter sees.

The baseline is the standard "10-in-10 with morning adjustment", computed exactly as follows:

1. **Intervals.** The event's window ``[start, end)`` (``start`` includes the applied random offset) is cut into
   the 15-minute buckets of the store's rollups (multiples of 900 s since the UTC epoch) that overlap it. A
   bucket only partly inside the window counts with its overlap in the energy totals.
2. **Similar days.** Walking back one local day at a time (the home's time zone) from the day before the event,
   a day is selected when all of these hold, until 10 are selected or 45 days were examined:
   - it is the same kind of day as the event day: weekday (Mon–Fri) or weekend (Sat–Sun; a date in
     ``holidays`` counts as a weekend day);
   - it is not an event day (``event_days``: the local dates touched by another DR event's window);
   - the meter has a 15-minute average for every event interval *and* every adjustment interval (below) at the
     same local clock times on that day.
   With fewer than 3 such days there is no 10-in-10 baseline (see the pre-event fallback below).
3. **Unadjusted baseline** per interval: the mean, over the selected days, of that day's 15-minute average at
   the same local clock time.
4. **Morning adjustment.** The adjustment window A is the 8 intervals of ``[s - 4 h, s - 2 h)`` where ``s`` is
   the start of the first event interval. ``actual_A`` is the mean metered average over A on the event day,
   ``typical_A`` the mean of the selected days over A.
   - ``"ratio"`` (default): ``r = actual_A / typical_A`` clipped to ``[0.8, 1.2]``; baseline = ``r`` × unadjusted.
     Only when ``typical_A >= 100 W`` and ``actual_A >= 0`` (a PV home can export in the morning, where a ratio
     means nothing); otherwise the additive adjustment is used.
   - ``"additive"``: ``d = actual_A - typical_A`` clipped to ± 20 % of the mean ``|unadjusted|`` over the event
     intervals; baseline = unadjusted + ``d``.
   - none (factor 1) while the window is not over yet (``now < s - 2 h``) or when the event day lacks any of
     its intervals.
5. **Pre-event fallback** (``method = "pre-event"``), for a new installation without 3 similar days: a flat
   baseline equal to the mean metered average over ``[s - 2 h, s)``, available once that window is over.
6. **Performance.** Per interval: ``metered_w`` (the event day's 15-minute average), ``shed_w = baseline_w -
   metered_w``; ``shed_wh = Σ shed_w × overlap_s / 3600``; ``mean_shed_w = shed_wh / (event hours covered by
   metered intervals)``. The planner's no-event forecast, when given, is reported beside the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from .model import Quantity
from .store import Store

INTERVAL_S = 900.0
N_DAYS = 10
LOOKBACK_DAYS = 45
MIN_DAYS = 3
ADJ_START_S = 4 * 3600.0  # adjustment window: [s - 4 h, s - 2 h)
ADJ_END_S = 2 * 3600.0
RATIO_CAP = 0.2  # ratio clipped to [0.8, 1.2]; additive to ± 20 % of the mean unadjusted baseline
RATIO_MIN_TYPICAL_W = 100.0
MODES = ("ratio", "additive")

__all__ = [
    "Baseline",
    "event_intervals",
    "find_meter",
    "from_store",
    "load_power",
    "performance",
    "pre_event",
    "similar_days",
    "ten_in_ten",
]


@dataclass(frozen=True, slots=True)
class Baseline:
    """A baseline per 15-minute interval of one event window."""

    start_ts: float
    end_ts: float
    interval_ts: tuple[float, ...]  # bucket starts
    baseline_w: tuple[float, ...]  # adjusted
    unadjusted_w: tuple[float, ...]
    days: tuple[str, ...]  # ISO dates of the selected days (empty for "pre-event")
    method: str = "10-in-10"  # "10-in-10" | "pre-event"
    adjustment: str = "none"  # "ratio" | "additive" | "none"
    adjustment_value: float = 1.0  # the ratio, or the additive watts

    def at(self, ts: float) -> float | None:
        """The baseline (W) of the interval that contains ``ts``; None outside the event's intervals."""
        bucket = math.floor(ts / INTERVAL_S) * INTERVAL_S
        for b, w in zip(self.interval_ts, self.baseline_w, strict=True):
            if b == bucket:
                return w
        return None

    def mean_w(self, start_ts: float, end_ts: float) -> float | None:
        """The overlap-weighted mean baseline over ``[start_ts, end_ts)``; None without overlap."""
        total = weight = 0.0
        for b, w in zip(self.interval_ts, self.baseline_w, strict=True):
            overlap = min(end_ts, b + INTERVAL_S) - max(start_ts, b)
            if overlap > 0:
                total += w * overlap
                weight += overlap
        return total / weight if weight > 0 else None

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "interval_ts": list(self.interval_ts),
            "baseline_w": [round(w, 1) for w in self.baseline_w],
            "unadjusted_w": [round(w, 1) for w in self.unadjusted_w],
            "days": list(self.days),
            "adjustment": self.adjustment,
            "adjustment_value": round(self.adjustment_value, 4),
        }


def event_intervals(start_ts: float, end_ts: float) -> list[float]:
    """Starts of the 15-minute buckets that overlap ``[start_ts, end_ts)``."""
    if not (math.isfinite(start_ts) and math.isfinite(end_ts)) or end_ts <= start_ts:
        return []
    first = math.floor(start_ts / INTERVAL_S) * INTERVAL_S
    out = []
    b = first
    while b < end_ts:
        out.append(float(b))
        b += INTERVAL_S
    return out


def _overlap(bucket: float, start_ts: float, end_ts: float) -> float:
    return max(0.0, min(end_ts, bucket + INTERVAL_S) - max(start_ts, bucket))


def _is_weekend(d: date, holidays: Collection[date]) -> bool:
    return d.weekday() >= 5 or d in holidays


def _slots(buckets: Sequence[float], day0: date, tz: ZoneInfo) -> list[tuple[int, int, int]]:
    """Each bucket as (days after ``day0``, local hour, local minute)."""
    out = []
    for b in buckets:
        local = datetime.fromtimestamp(b, tz)
        out.append(((local.date() - day0).days, local.hour, local.minute))
    return out


def _on_day(slot: tuple[int, int, int], d: date, tz: ZoneInfo) -> float:
    """The bucket at the same local clock time as ``slot``, counted from day ``d``."""
    day = d + timedelta(days=slot[0])
    ts = datetime(day.year, day.month, day.day, slot[1], slot[2], tzinfo=tz).timestamp()
    return math.floor(ts / INTERVAL_S) * INTERVAL_S


def similar_days(
    power_w: Mapping[float, float],
    start_ts: float,
    end_ts: float,
    *,
    timezone: str,
    event_days: Collection[date] = (),
    holidays: Collection[date] = (),
    n_days: int = N_DAYS,
    lookback_days: int = LOOKBACK_DAYS,
) -> list[date]:
    """The days step 2 of the method selects, most recent first."""
    tz = ZoneInfo(timezone)
    buckets = event_intervals(start_ts, end_ts)
    if not buckets:
        return []
    day0 = datetime.fromtimestamp(start_ts, tz).date()
    adj = [
        buckets[0] - ADJ_START_S + i * INTERVAL_S for i in range(int((ADJ_START_S - ADJ_END_S) / INTERVAL_S))
    ]
    slots = _slots(buckets + adj, day0, tz)
    weekend = _is_weekend(day0, holidays)
    event_days = set(event_days)
    chosen: list[date] = []
    for back in range(1, lookback_days + 1):
        d = day0 - timedelta(days=back)
        if _is_weekend(d, holidays) != weekend or d in event_days:
            continue
        values = [power_w.get(_on_day(s, d, tz)) for s in slots]
        if any(v is None or not math.isfinite(v) for v in values):
            continue
        chosen.append(d)
        if len(chosen) >= n_days:
            break
    return chosen


def ten_in_ten(
    power_w: Mapping[float, float],
    start_ts: float,
    end_ts: float,
    *,
    timezone: str,
    now: float | None = None,
    mode: str = "ratio",
    event_days: Collection[date] = (),
    holidays: Collection[date] = (),
    n_days: int = N_DAYS,
    lookback_days: int = LOOKBACK_DAYS,
    min_days: int = MIN_DAYS,
) -> Baseline | None:
    """The 10-in-10 baseline with morning adjustment (steps 1-4); None with fewer than ``min_days`` days.

    ``power_w`` holds 15-minute averages for the history and (for the adjustment) the event day. With ``now``
    given, the adjustment is applied only once its window is over (``now >= s - 2 h``)."""
    if mode not in MODES:
        raise ValueError(f"baseline mode must be one of {', '.join(MODES)}, got {mode!r}")
    tz = ZoneInfo(timezone)
    buckets = event_intervals(start_ts, end_ts)
    days = similar_days(
        power_w,
        start_ts,
        end_ts,
        timezone=timezone,
        event_days=event_days,
        holidays=holidays,
        n_days=n_days,
        lookback_days=lookback_days,
    )
    if len(days) < min_days:
        return None
    day0 = datetime.fromtimestamp(start_ts, tz).date()
    slots = _slots(buckets, day0, tz)
    unadjusted = [sum(power_w[_on_day(s, d, tz)] for d in days) / len(days) for s in slots]

    s0 = buckets[0]
    adj_buckets = [
        s0 - ADJ_START_S + i * INTERVAL_S for i in range(int((ADJ_START_S - ADJ_END_S) / INTERVAL_S))
    ]
    adj_slots = _slots(adj_buckets, day0, tz)
    typical_a = sum(power_w[_on_day(s, d, tz)] for s in adj_slots for d in days) / (
        len(adj_slots) * len(days)
    )
    window_over = now is None or now >= s0 - ADJ_END_S
    actual = [power_w.get(b) for b in adj_buckets]
    adjustment, value = "none", 1.0
    baseline = list(unadjusted)
    if window_over and all(v is not None and math.isfinite(v) for v in actual):
        actual_a = sum(actual) / len(actual)  # type: ignore[arg-type]
        if mode == "ratio" and typical_a >= RATIO_MIN_TYPICAL_W and actual_a >= 0:
            ratio = min(1.0 + RATIO_CAP, max(1.0 - RATIO_CAP, actual_a / typical_a))
            adjustment, value = "ratio", ratio
            baseline = [w * ratio for w in unadjusted]
        else:
            cap = RATIO_CAP * sum(abs(w) for w in unadjusted) / len(unadjusted)
            delta = min(cap, max(-cap, actual_a - typical_a))
            adjustment, value = "additive", delta
            baseline = [w + delta for w in unadjusted]
    return Baseline(
        start_ts=start_ts,
        end_ts=end_ts,
        interval_ts=tuple(buckets),
        baseline_w=tuple(baseline),
        unadjusted_w=tuple(unadjusted),
        days=tuple(d.isoformat() for d in days),
        method="10-in-10",
        adjustment=adjustment,
        adjustment_value=value,
    )


def pre_event(
    power_w: Mapping[float, float], start_ts: float, end_ts: float, *, now: float | None = None
) -> Baseline | None:
    """Step 5: a flat baseline from the 2 hours before the event; None until they are over or with a gap."""
    buckets = event_intervals(start_ts, end_ts)
    if not buckets:
        return None
    s0 = buckets[0]
    if now is not None and now < s0:
        return None
    before = [power_w.get(s0 - ADJ_END_S + i * INTERVAL_S) for i in range(int(ADJ_END_S / INTERVAL_S))]
    if any(v is None or not math.isfinite(v) for v in before):
        return None
    flat = sum(before) / len(before)  # type: ignore[arg-type]
    values = tuple(flat for _ in buckets)
    return Baseline(start_ts, end_ts, tuple(buckets), values, values, (), "pre-event", "none", 1.0)


def performance(
    baseline: Baseline,
    metered_w: Mapping[float, float],
    *,
    requested_shed_w: float | None = None,
    forecast_w: Mapping[float, float] | None = None,
    end_ts: float | None = None,
) -> dict:
    """Step 6: per-interval metered load and shed, and the totals. ``end_ts`` cuts the event short (cancelled
    or opted out while active). Intervals without a metered average are reported with ``metered_w = None``."""
    end = baseline.end_ts if end_ts is None else min(end_ts, baseline.end_ts)
    rows = []
    shed_wh = 0.0
    covered_s = 0.0
    forecast_shed_wh = 0.0
    forecast_complete = forecast_w is not None
    for b, base in zip(baseline.interval_ts, baseline.baseline_w, strict=True):
        overlap = _overlap(b, baseline.start_ts, end)
        if overlap <= 0:
            continue
        metered = metered_w.get(b)
        if metered is not None and not math.isfinite(metered):
            metered = None
        shed = None if metered is None else base - metered
        row = {
            "ts": b,
            "overlap_s": overlap,
            "baseline_w": round(base, 1),
            "metered_w": None if metered is None else round(metered, 1),
            "shed_w": None if shed is None else round(shed, 1),
        }
        if forecast_w is not None:
            fc = forecast_w.get(b)
            row["forecast_w"] = None if fc is None else round(fc, 1)
            if fc is None or metered is None:
                forecast_complete = False
            else:
                forecast_shed_wh += (fc - metered) * overlap / 3600.0
        rows.append(row)
        if shed is not None:
            shed_wh += shed * overlap / 3600.0
            covered_s += overlap
    report = {
        "method": baseline.method + ("" if baseline.method != "10-in-10" else ", morning adjustment"),
        "days": list(baseline.days),
        "adjustment": baseline.adjustment,
        "adjustment_value": round(baseline.adjustment_value, 4),
        "intervals": rows,
        "shed_wh": round(shed_wh, 1),
        "mean_shed_w": round(shed_wh * 3600.0 / covered_s, 1) if covered_s > 0 else None,
        "requested_shed_w": requested_shed_w,
        "complete": bool(rows) and all(r["metered_w"] is not None for r in rows),
    }
    if forecast_w is not None:
        report["forecast_shed_wh"] = round(forecast_shed_wh, 1) if forecast_complete else None
    return report


# ------------------------------------------------------------------------------------------------------------
# store helpers


def find_meter(store: Store) -> str | None:
    """The device id of the (first, by id) series of grid power in the store, or None."""
    ids = sorted({r.device_id for r in store.latest() if r.quantity == Quantity.GRID_POWER_W})
    return ids[0] if ids else None


def load_power(store: Store, meter_id: str, start_ts: float, end_ts: float) -> dict[float, float]:
    """15-minute average grid power of ``meter_id`` for buckets starting in ``[start_ts, end_ts)``."""
    rows = store.series(meter_id, Quantity.GRID_POWER_W, start_ts, end_ts, "15m")
    return {b: avg for b, avg, _lo, _hi in rows if avg is not None and math.isfinite(avg)}


def from_store(
    store: Store,
    start_ts: float,
    end_ts: float,
    *,
    timezone: str,
    meter_id: str | None = None,
    now: float | None = None,
    mode: str = "ratio",
    event_days: Collection[date] = (),
    holidays: Collection[date] = (),
) -> Baseline | None:
    """The 10-in-10 baseline from the store's 15-minute rollups, else the pre-event fallback, else None."""
    meter_id = meter_id or find_meter(store)
    if meter_id is None or not event_intervals(start_ts, end_ts):
        return None
    lo = math.floor(start_ts / INTERVAL_S) * INTERVAL_S - (LOOKBACK_DAYS + 2) * 86400.0
    hi = start_ts if now is None else min(now, start_ts)
    power = load_power(store, meter_id, lo, hi)
    found = ten_in_ten(
        power,
        start_ts,
        end_ts,
        timezone=timezone,
        now=now,
        mode=mode,
        event_days=event_days,
        holidays=holidays,
    )
    return found or pre_event(power, start_ts, end_ts, now=now)
