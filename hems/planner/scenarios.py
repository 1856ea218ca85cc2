"""Planning scenarios: the reference home's summer weekday (benchmark, realistic tests) and a
minimal builder for small, hand-checkable cases.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from hems.home import HomeParams
from hems.planner.types import Deferrable, DRWindow, PlanInputs

TZ = "America/Los_Angeles"
START_LOCAL = datetime(2025, 7, 15, 14, 0, tzinfo=ZoneInfo(TZ))  # a Tuesday

OFF_PEAK, SHOULDER, PEAK, EXPORT = 0.14, 0.24, 0.46, 0.06


def tou_period(local: datetime) -> str:
    """Default reference tariff period (DESIGN.md): weekday TOU, weekend super-off-peak."""
    if local.weekday() >= 5:
        return "super-off-peak"
    h = local.hour
    if h >= 23 or h < 6:
        return "off-peak"
    if 16 <= h < 21:
        return "peak"
    return "shoulder"


PRICES = {"off-peak": OFF_PEAK, "shoulder": SHOULDER, "peak": PEAK, "super-off-peak": 0.10}


def reference_inputs(
    steps: int = 96,
    step_s: float = 900.0,
    *,
    start: datetime = START_LOCAL,
    params: HomeParams | None = None,
    with_dr: bool = True,
    with_deferrables: bool = True,
) -> PlanInputs:
    """The benchmark scenario, usable by tests as a realistic full-home case."""
    params = params or HomeParams()
    times = [start + timedelta(seconds=step_s * k) for k in range(steps)]
    hours = np.array([t.hour + t.minute / 60 for t in times])
    names = tuple(tou_period(t) for t in times)
    price = np.array([PRICES[p] for p in names])
    day = np.clip(np.sin((hours - 6.0) / 14.0 * np.pi), 0.0, None)
    pv = params.pv.capacity_w * 0.8 * day**1.5
    base = (
        350.0 + 400.0 * np.exp(-(((hours - 19.0) / 2.5) ** 2)) + 250.0 * np.exp(-(((hours - 7.5) / 1.5) ** 2))
    )
    t_out = 29.0 + 9.0 * np.sin((hours - 9.0) / 24.0 * 2 * np.pi)  # a hot day: 20-38 °C
    draw_rate = np.exp(-(((hours - 7.0) / 1.0) ** 2)) + 0.8 * np.exp(-(((hours - 20.0) / 1.5) ** 2))
    daily_wh = params.water_heater.daily_draw_l * (params.water_heater.setpoint_c - 15.0) * 4.186 / 3.6
    draws = draw_rate / draw_rate.sum() * daily_wh * steps * step_s / 86400.0
    # EV: plugged from 18:00 until 07:30 the next morning
    dep_local = (start + timedelta(days=1)).replace(hour=7, minute=30)
    arr_local = start.replace(hour=18, minute=0)
    step_of = lambda t: int(round((t - start).total_seconds() / step_s))  # noqa: E731
    dep, arr = step_of(dep_local), step_of(arr_local)
    plugged = np.zeros(steps, dtype=bool)
    plugged[max(arr, 0) : min(dep, steps)] = True
    per_h = 3600.0 / step_s
    deferrables: tuple[Deferrable, ...] = ()
    if with_deferrables:
        deferrables = (
            Deferrable("dishwasher", 1800.0, int(2 * per_h), step_of(arr_local), min(dep, steps)),
            Deferrable("pool pump", 1100.0, int(3 * per_h), 0, min(int(20 * per_h), steps)),
        )
    windows: tuple[DRWindow, ...] = ()
    if with_dr:
        s0 = step_of(start.replace(hour=17))
        windows = (DRWindow(s0, s0 + int(2 * per_h), import_cap_w=3000.0, event_id="evt-1"),)
    return PlanInputs(
        start_ts=start.timestamp(),
        step_s=step_s,
        import_price_per_kwh=price,
        export_price_per_kwh=np.full(steps, EXPORT),
        period_names=names,
        pv_forecast_w=pv,
        base_load_forecast_w=base,
        outdoor_temp_c=t_out,
        hot_water_wh=draws,
        battery_soc_pct=50.0,
        ev_plugged=plugged,
        ev_soc_pct=40.0,
        ev_departure_step=dep,
        ev_target_soc_pct=80.0,
        indoor_temp_c=24.0,
        tank_temp_c=50.0,
        comfort_min_c=np.full(steps, params.hvac.comfort_min_c),
        comfort_max_c=np.full(steps, params.hvac.comfort_max_c),
        deferrables=deferrables,
        dr_windows=windows,
    )


def simple_inputs(
    steps: int,
    step_s: float = 900.0,
    *,
    start_ts: float = 0.0,
    import_price=0.20,
    export_price=0.05,
    pv_w=0.0,
    base_w=500.0,
    outdoor_c=21.0,
    indoor_c=21.0,
    comfort_min_c=15.0,
    comfort_max_c=30.0,
    hot_water_wh=0.0,
    tank_c=50.0,
    battery_soc_pct=50.0,
    ev_plugged=False,
    ev_soc_pct=50.0,
    ev_departure_step: int | None = None,
    ev_target_soc_pct: float = 50.0,
    period_names: tuple[str, ...] | None = None,
    **kw,
) -> PlanInputs:
    """A small case: scalars are broadcast to every step; defaults leave every asset idle."""

    def arr(v, dtype=float):
        return np.broadcast_to(np.asarray(v, dtype=dtype), (steps,)).copy()

    return PlanInputs(
        start_ts=start_ts,
        step_s=step_s,
        import_price_per_kwh=arr(import_price),
        export_price_per_kwh=arr(export_price),
        period_names=period_names,
        pv_forecast_w=arr(pv_w),
        base_load_forecast_w=arr(base_w),
        outdoor_temp_c=arr(outdoor_c),
        hot_water_wh=arr(hot_water_wh),
        battery_soc_pct=battery_soc_pct,
        ev_plugged=arr(ev_plugged, bool),
        ev_soc_pct=ev_soc_pct,
        ev_departure_step=ev_departure_step,
        ev_target_soc_pct=ev_target_soc_pct,
        indoor_temp_c=indoor_c,
        tank_temp_c=tank_c,
        comfort_min_c=arr(comfort_min_c),
        comfort_max_c=arr(comfort_max_c),
        **kw,
    )
