"""hems.baseline: 10-in-10 day selection, morning adjustment, performance — hand-computed on synthetic history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hems import baseline as bl
from hems.clock import ManualClock
from hems.dr import DREvent, DRManager, DRState
from hems.model import Quantity, Reading
from hems.store import Store

TZ = "America/Los_Angeles"
Z = ZoneInfo(TZ)
EVENT_DAY = date(2026, 7, 1)  # a Wednesday
START = datetime(2026, 7, 1, 16, 0, tzinfo=Z).timestamp()
END = datetime(2026, 7, 1, 18, 0, tzinfo=Z).timestamp()
METER = "grid-meter"


def local_ts(d: date, hour: int, minute: int = 0) -> float:
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=Z).timestamp()


def history(
    days_back: int = 46,
    *,
    weekday_w: Callable[[int, float], float] = lambda back, hour: 1000 + 10 * back + 50 * int(hour),
    weekend_w: Callable[[int, float], float] = lambda back, hour: 5000.0,
    event_day_w: Callable[[float], float] | None = None,
    event_day: date = EVENT_DAY,
    until_hour: float = 24,
) -> dict[float, float]:
    """{15-min bucket: W} for ``days_back`` days before ``event_day`` (value by days back and local hour) and,
    if given, the event day up to ``until_hour``."""
    out: dict[float, float] = {}
    for back in range(1, days_back + 1):
        d = event_day - timedelta(days=back)
        fn = weekend_w if d.weekday() >= 5 else weekday_w
        for q in range(96):
            out[local_ts(d, q // 4, 15 * (q % 4))] = fn(back, q // 4 + (q % 4) / 4)
    if event_day_w is not None:
        for q in range(int(until_hour * 4)):
            out[local_ts(event_day, q // 4, 15 * (q % 4))] = event_day_w(q // 4 + (q % 4) / 4)
    return out


# the weekdays the method picks from the default history with Jun 29 an event day and Jun 26 missing an interval
CHOSEN_BACK = (1, 6, 7, 8, 9, 12, 13, 14, 15, 16)
MEAN_BACK = sum(CHOSEN_BACK) / 10  # 10.1


def unadjusted(hour: float) -> float:
    return 1000 + 10 * MEAN_BACK + 50 * int(hour)


TYPICAL_A = sum(unadjusted(h) for h in (12, 12, 12, 12, 13, 13, 13, 13)) / 8  # 1726.0


def fixture_history(**kw) -> dict[float, float]:
    power = history(**kw)
    del power[local_ts(date(2026, 6, 26), 16, 30)]  # a gap in the event window of Fri Jun 26
    return power


def test_intervals_are_the_rollup_buckets_overlapping_the_window():
    assert bl.event_intervals(START, END) == [START + 900 * k for k in range(8)]
    assert bl.event_intervals(START + 60, START + 901) == [START, START + 900]
    assert bl.event_intervals(START, START) == []


def test_ten_in_ten_picks_the_right_days():
    power = fixture_history()
    days = bl.similar_days(power, START, END, timezone=TZ, event_days={date(2026, 6, 29)})
    assert days == [EVENT_DAY - timedelta(days=b) for b in CHOSEN_BACK]
    # weekend event: only weekend days (Sat Jul 4 -> the Saturdays and Sundays before it)
    sat = date(2026, 7, 4)
    wk = history(event_day=sat)
    start = local_ts(sat, 16)
    chosen = bl.similar_days(wk, start, start + 7200, timezone=TZ)
    assert len(chosen) == 10 and all(d.weekday() >= 5 for d in chosen)
    assert chosen[:3] == [date(2026, 6, 28), date(2026, 6, 27), date(2026, 6, 21)]
    # holidays count as weekend days: Fri Jun 19 a holiday leaves the weekday list and joins the weekend one
    holiday = date(2026, 6, 19)
    assert holiday not in bl.similar_days(power, START, END, timezone=TZ, holidays={holiday})
    assert holiday in bl.similar_days(wk, start, start + 7200, timezone=TZ, holidays={holiday})


def test_unadjusted_baseline_is_the_mean_of_the_chosen_days():
    power = fixture_history()
    base = bl.ten_in_ten(power, START, END, timezone=TZ, event_days={date(2026, 6, 29)})
    assert base is not None and base.method == "10-in-10" and len(base.days) == 10
    assert base.adjustment == "none"  # the event day has no data for the adjustment window
    assert base.unadjusted_w == pytest.approx([unadjusted(16)] * 4 + [unadjusted(17)] * 4)
    assert base.baseline_w == base.unadjusted_w
    assert base.unadjusted_w[0] == pytest.approx(1901.0)
    assert base.at(START + 1000) == pytest.approx(1901.0) and base.at(END) is None


@pytest.mark.parametrize(
    ("event_day_w", "mode", "kind", "value"),
    [
        (lambda h: 1.1 * unadjusted(h), "ratio", "ratio", 1.1),  # exact ratio
        (lambda h: 1.5 * unadjusted(h), "ratio", "ratio", 1.2),  # capped at +20 %
        (lambda h: 0.5 * unadjusted(h), "ratio", "ratio", 0.8),  # capped at -20 %
        (lambda h: unadjusted(h) + 100, "additive", "additive", 100.0),
        # additive cap: 20 % of the mean unadjusted over the event, (1901 + 1951) / 2 * 0.2 = 385.2
        (lambda h: unadjusted(h) + 1000, "additive", "additive", 385.2),
        (lambda h: unadjusted(h) - 1000, "additive", "additive", -385.2),
    ],
)
def test_morning_adjustment_exact(event_day_w, mode, kind, value):
    power = fixture_history(event_day_w=event_day_w, until_hour=14)
    base = bl.ten_in_ten(power, START, END, timezone=TZ, mode=mode, event_days={date(2026, 6, 29)})
    assert base.adjustment == kind
    assert base.adjustment_value == pytest.approx(value)
    for b, u, w in zip(base.interval_ts, base.unadjusted_w, base.baseline_w, strict=True):
        hour = datetime.fromtimestamp(b, Z).hour
        assert u == pytest.approx(unadjusted(hour))
        assert w == pytest.approx(u * value if kind == "ratio" else u + value)
    # e.g. the first interval with a 1.1 ratio: 1.1 x 1901 = 2091.1
    if value == 1.1:
        assert base.baseline_w[0] == pytest.approx(2091.1)


def test_adjustment_waits_for_its_window_and_ratio_falls_back_to_additive_on_export():
    power = fixture_history(event_day_w=lambda h: 1.1 * unadjusted(h), until_hour=14)
    early = bl.ten_in_ten(
        power, START, END, timezone=TZ, now=START - 3 * 3600, event_days={date(2026, 6, 29)}
    )
    assert early.adjustment == "none"
    on_time = bl.ten_in_ten(
        power, START, END, timezone=TZ, now=START - 2 * 3600, event_days={date(2026, 6, 29)}
    )
    assert on_time.adjustment == "ratio"
    # a PV home exporting around noon: typical_A < 100 W, so the ratio is replaced by the additive adjustment
    pv = history(
        weekday_w=lambda back, hour: -800.0 if 10 <= hour < 15 else 1500.0,
        event_day_w=lambda hour: -900.0,
        until_hour=14,
    )
    base = bl.ten_in_ten(pv, START, END, timezone=TZ, mode="ratio")
    assert base.adjustment == "additive" and base.adjustment_value == pytest.approx(-100.0)
    assert base.baseline_w[0] == pytest.approx(1400.0)


def test_too_few_days_gives_no_baseline_but_the_pre_event_fallback():
    power = history(days_back=3, event_day_w=lambda h: 700.0, until_hour=16)  # Tue, Mon, Sun: two weekdays
    assert bl.ten_in_ten(power, START, END, timezone=TZ) is None
    flat = bl.pre_event(power, START, END, now=START)
    assert flat.method == "pre-event" and flat.baseline_w == (700.0,) * 8
    assert bl.pre_event(power, START, END, now=START - 1) is None


def test_performance_numbers():
    power = fixture_history(event_day_w=lambda h: 1.1 * unadjusted(h), until_hour=14)
    base = bl.ten_in_ten(power, START, END, timezone=TZ, event_days={date(2026, 6, 29)})
    metered = {b: 1000.0 for b in base.interval_ts[:6]}  # the last half hour was not metered
    forecast = {b: 2000.0 for b in base.interval_ts}
    perf = bl.performance(base, metered, requested_shed_w=800.0, forecast_w=forecast)
    rows = perf["intervals"]
    assert [r["shed_w"] for r in rows[:4]] == [pytest.approx(1091.1)] * 4  # 2091.1 - 1000
    assert [r["shed_w"] for r in rows[4:6]] == [pytest.approx(1146.1)] * 2  # 1.1 x 1951 - 1000
    assert rows[6]["metered_w"] is None and rows[6]["shed_w"] is None
    # 4 x 1091.1 x 0.25 h + 2 x 1146.1 x 0.25 h = 1091.1 + 573.05
    assert perf["shed_wh"] == pytest.approx(1664.2, abs=0.06)
    assert perf["mean_shed_w"] == pytest.approx(1109.4, abs=0.1)
    assert perf["complete"] is False and perf["requested_shed_w"] == 800.0
    assert perf["forecast_shed_wh"] is None  # not every interval metered
    # cut short (cancelled 20 minutes in): the second interval counts 5 minutes
    cut = bl.performance(base, metered, end_ts=START + 1200)
    assert [r["overlap_s"] for r in cut["intervals"]] == [900.0, 300.0]
    assert cut["shed_wh"] == pytest.approx(1091.1 * 1200 / 3600, abs=0.06)


def store_with(power: dict[float, float], path: Path) -> Store:
    store = Store(path)
    readings = [Reading(METER, Quantity.GRID_POWER_W, w, b + 1.0) for b, w in power.items()]
    store.add_readings(readings)
    store.rollup(max(power) + 900)
    return store


def test_from_store_matches_the_pure_function(tmp_path):
    power = fixture_history(event_day_w=lambda h: 1.1 * unadjusted(h), until_hour=14)
    store = store_with(power, tmp_path / "h.sqlite")
    try:
        assert bl.find_meter(store) == METER
        got = bl.from_store(store, START, END, timezone=TZ, event_days={date(2026, 6, 29)}, now=START)
        want = bl.ten_in_ten(power, START, END, timezone=TZ, event_days={date(2026, 6, 29)})
        assert got == want
    finally:
        store.close()


async def test_manager_skips_its_own_event_days_and_reports_the_shed(tmp_path):
    power = history(event_day_w=lambda h: 1.1 * unadjusted(h) if h < 16 else 1000.0, until_hour=18)
    del power[local_ts(date(2026, 6, 26), 16, 30)]
    store = store_with({b: w for b, w in power.items() if b < START}, tmp_path / "h.sqlite")
    try:
        monday = local_ts(date(2026, 6, 29), 17)
        clock = ManualClock(monday + 60)
        dr = DRManager(store, clock=clock, timezone=TZ, report_delay_s=60)
        # an event that ran on Mon Jun 29 makes that day an event day; events cancelled before they started,
        # or missed (over before they arrived), do not count
        assert (await dr.receive(DREvent("openadr", "monday", monday, 3600))).state is DRState.ACTIVE
        await dr.receive(DREvent("openadr", "sunday", monday - 86400, 3600))
        clock.set(local_ts(date(2026, 6, 30), 12))
        await dr.receive(DREvent("openadr", "tuesday", local_ts(date(2026, 6, 30), 17), 3600))
        await dr.cancel("openadr:tuesday")
        clock.set(START - 3600)
        await dr.tick()
        assert dr.get("openadr:monday").state is DRState.COMPLETED
        assert dr.get("openadr:sunday").actuated_ts is None
        assert dr.event_days(exclude="openadr:today") == {date(2026, 6, 29)}

        ev = await dr.receive(DREvent("openadr", "today", START, END - START, shed_w=800.0))
        base = dr.baseline(ev.key)
        assert base.days == tuple((EVENT_DAY - timedelta(days=b)).isoformat() for b in CHOSEN_BACK)
        assert base.adjustment == "ratio" and base.adjustment_value == pytest.approx(1.1)
        clock.set(START + 60)
        await dr.tick()
        assert dr.controller_limit_w() == pytest.approx(2091.1 - 800.0)
        # the event runs; the meter reads 1000 W; the recorder rolls up
        store.add_readings(
            Reading(METER, Quantity.GRID_POWER_W, w, b + 1.0) for b, w in power.items() if b >= START
        )
        clock.set(END + 60)
        await dr.tick()
        done = dr.get(ev.key)
        assert done.state is DRState.COMPLETED and done.report["shed_wh"] == pytest.approx(
            4 * 1091.1 * 0.25 + 4 * 1146.1 * 0.25, abs=0.1
        )
        assert done.report["complete"] is True and done.report["requested_shed_w"] == 800.0
        assert done.report["days"] == list(base.days)
        # persisted with the event
        again = DRManager(store, clock=clock, timezone=TZ)
        assert again.get(ev.key).report == done.report
    finally:
        store.close()
