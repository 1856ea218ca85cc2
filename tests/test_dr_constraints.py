"""hems.dr: events as planner windows, controller limits, prices and SIMPLE level responses."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from hems.clock import ManualClock
from hems.dr import LEVEL_RESPONSES, DREvent, DRInterval, DRManager, level_response
from hems.planner.types import DRWindow
from hems.store import Store
from tests.test_dr_baseline import CHOSEN_BACK, END, START, TZ, fixture_history, store_with, unadjusted

Z = ZoneInfo(TZ)
T0 = datetime(2026, 7, 1, 10, 0, tzinfo=Z).timestamp()  # Wednesday 10:00, a multiple of 900 s


@pytest.fixture
def dr(tmp_path: Path):
    store = Store(tmp_path / "hems.sqlite")
    yield DRManager(store, clock=ManualClock(T0), timezone=TZ, seed=1)
    store.close()


def ev(event_id: str, start: float, duration: float, **kw) -> DREvent:
    return DREvent("openadr", event_id, start, duration, **kw)


def test_level_responses_are_data():
    assert [level_response(n).name for n in range(4)] == ["normal", "moderate", "high", "special"]
    one, two, three = LEVEL_RESPONSES[1], LEVEL_RESPONSES[2], LEVEL_RESPONSES[3]
    assert (
        one.hvac_setback_c == 2.0 and one.ev_paused and not one.water_heater_off and not one.battery_discharge
    )
    assert (
        two.water_heater_off and two.deferrables_off and two.battery_discharge and not two.all_sheddable_off
    )
    assert three.all_sheddable_off
    assert [level_response(n).import_cap_w(2000.0) for n in range(4)] == [None, 1600.0, 1000.0, 400.0]
    assert [level_response(n).import_cap_w(None) for n in range(4)] == [None, 5000.0, 3000.0, 1500.0]
    assert level_response(7).level == 3 and level_response(-1).level == 0
    with pytest.raises(ValueError):
        level_response(float("nan"))


async def test_import_caps_tightest_wins_and_planner_windows_cover_partial_steps(dr):
    await dr.receive(ev("a", T0 + 420, 2700, import_cap_w=3000.0))  # 10:07-10:52
    await dr.receive(ev("b", T0 + 1800, 3600, import_cap_w=2000.0))  # 10:30-11:30
    assert dr.controller_limit_w(T0 + 419) is None
    assert dr.controller_limit_w(T0 + 420) == 3000.0
    assert dr.controller_limit_w(T0 + 1800) == 2000.0
    assert dr.controller_limit_w(T0 + 3119) == 2000.0
    assert dr.controller_limit_w(T0 + 5399) == 2000.0 and dr.controller_limit_w(T0 + 5400) is None
    windows = dr.planner_windows(T0, 900.0, 8)
    assert windows == (
        DRWindow(0, 4, 3000.0, None, None, "openadr:a"),  # 10:07-10:52 -> steps 10:00..11:00
        DRWindow(2, 6, 2000.0, None, None, "openadr:b"),
    )
    # a horizon starting inside the event, and one that ends inside it
    assert dr.planner_windows(T0 + 3600, 900.0, 4) == (DRWindow(0, 2, 2000.0, None, None, "openadr:b"),)
    assert dr.planner_windows(T0 - 1800, 1800.0, 2) == (DRWindow(1, 2, 3000.0, None, None, "openadr:a"),)
    # opted out and cancelled events constrain nothing
    await dr.opt_out("openadr:a")
    await dr.cancel("openadr:b")
    assert dr.planner_windows(T0, 900.0, 8) == () and dr.controller_limit_w(T0 + 1800) is None


async def test_levels_without_baseline_use_forecast_or_fallback_caps(dr):
    await dr.receive(ev("l1", T0 + 900, 1800, level=1))
    forecast = np.arange(8, dtype=float) * 1000.0
    (w,) = dr.planner_windows(T0, 900.0, 8, forecast_w=forecast)
    assert (w.start_step, w.end_step, w.import_cap_w, w.shed_w) == (1, 3, None, 0.0)
    np.testing.assert_allclose(w.baseline_w, [800.0, 1600.0])  # 0.8 x the no-event forecast
    assert dr.planner_windows(T0, 900.0, 8) == (DRWindow(1, 3, 5000.0, None, None, "openadr:l1"),)
    assert dr.controller_limit_w(T0 + 900) == 5000.0
    assert dr.level_in_force(T0 + 900).name == "moderate" and dr.level_in_force(T0) is None


async def test_shed_without_any_baseline_is_skipped_not_guessed(dr):
    await dr.receive(ev("s", T0 + 900, 1800, shed_w=1000.0))
    assert dr.planner_windows(T0, 900.0, 8) == ()
    assert dr.controller_limit_w(T0 + 900) is None
    (w,) = dr.planner_windows(T0, 900.0, 8, forecast_w=np.full(8, 2500.0))
    assert (w.start_step, w.end_step, w.shed_w) == (1, 3, 1000.0)
    np.testing.assert_allclose(w.baseline_w, [2500.0, 2500.0])


async def test_multi_interval_event_and_prices(dr):
    await dr.receive(
        ev(
            "m",
            T0,
            3600,
            level=3,
            intervals=(DRInterval(0, 1800, level=1), DRInterval(1800, 1800, level=3, price_per_kwh=0.9)),
        )
    )
    assert dr.controller_limit_w(T0 + 10) == 5000.0 and dr.controller_limit_w(T0 + 1800) == 1500.0
    assert dr.planner_windows(T0, 900.0, 4) == (
        DRWindow(0, 2, 5000.0, None, None, "openadr:m"),
        DRWindow(2, 4, 1500.0, None, None, "openadr:m"),
    )
    await dr.receive(ev("p", T0 + 2700, 1800, price_per_kwh=0.5))
    prices = dr.prices(T0, 900.0, 6)
    np.testing.assert_allclose(prices, [np.nan, np.nan, 0.9, 0.9, 0.5, np.nan])
    assert dr.prices(T0 + 7200, 900.0, 4) is None


async def test_shed_and_level_against_the_baseline(tmp_path):
    power = fixture_history(event_day_w=lambda h: 1.1 * unadjusted(h), until_hour=14)
    store = store_with(power, tmp_path / "h.sqlite")
    try:
        clock = ManualClock(START - 1800)
        dr = DRManager(store, clock=clock, timezone=TZ)
        # Jun 29 is not an event day here: the method takes it instead of Jun 16 (days back 2 instead of 16)
        days_back = sorted({*CHOSEN_BACK, 2} - {16})
        mean_back = sum(days_back) / 10
        ratio = 1.1 * (1000 + 10 * 10.1 + 50 * 12.5) / (1000 + 10 * mean_back + 50 * 12.5)

        def base(hour: int) -> float:
            return ratio * (1000 + 10 * mean_back + 50 * hour)

        await dr.receive(ev("shed", START, END - START, shed_w=700.0))
        await dr.receive(ev("lvl", START + 3600, 1800, level=2))
        b = dr.baseline("openadr:shed")
        assert b.days[1] == date(2026, 6, 29).isoformat() and b.adjustment == "ratio"
        assert b.baseline_w[0] == pytest.approx(base(16))
        assert dr.controller_limit_w(START + 10) == pytest.approx(base(16) - 700.0)
        # the level event (17:00-17:30) has its own baseline: Fri Jun 26 (its gap is at 16:30) qualifies, so the
        # days back are 1 2 5 6 7 8 9 12 13 14 (mean 7.7); its adjustment window 13:00-15:00 lacks the event
        # day's 14:00-15:00, so it is not adjusted: 1000 + 77 + 50 x 17 = 1927 W
        lvl_base = dr.baseline("openadr:lvl")
        assert lvl_base.adjustment == "none" and lvl_base.baseline_w == (1927.0, 1927.0)
        # at 17:00 both are in force: the shed (base(17) - 700) and level 2 (0.5 x 1927): the tighter one
        assert dr.controller_limit_w(START + 3600) == pytest.approx(min(base(17) - 700.0, 963.5))
        assert dr.controller_limit_w(START + 3600) == pytest.approx(963.5)
        step0 = START - 1800
        windows = dr.planner_windows(step0, 1800.0, 6)
        shed = next(w for w in windows if w.event_id == "openadr:shed")
        lvl = next(w for w in windows if w.event_id == "openadr:lvl")
        assert (shed.start_step, shed.end_step, shed.shed_w) == (1, 5, 700.0)
        np.testing.assert_allclose(shed.baseline_w, [base(16), base(16), base(17), base(17)])
        assert (lvl.start_step, lvl.end_step, lvl.shed_w, lvl.import_cap_w) == (3, 4, 0.0, None)
        np.testing.assert_allclose(lvl.baseline_w, [963.5])
    finally:
        store.close()


async def test_planner_forecast_is_kept_with_pending_events(dr):
    await dr.receive(ev("f", T0 + 1800, 1800, shed_w=500.0))
    dr.note_forecast(T0, 600.0, [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0])
    fc = dr.get("openadr:f").forecast
    # 15-minute intervals from 10-minute steps, time-weighted: 10:30-10:45 = (10 x 400 + 5 x 500) / 15,
    # 10:45-11:00 = (5 x 500 + 10 x 600) / 15
    assert fc["interval_ts"] == [T0 + 1800, T0 + 2700]
    assert fc["grid_w"] == [433.3, 566.7]
    # kept with the event and shown beside the baseline in its report
    assert DRManager(dr.store, clock=dr.clock, timezone=TZ).get("openadr:f").forecast == fc
