"""The history arithmetic as pure functions: energy and cost per step, the "no control" counterfactual (battery
in self-consumption, EV at full power from plug-in) and the savings, local-time ranges across DST."""

from __future__ import annotations

import math
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from hems.home import BatteryParams
from web.api import (
    Steps,
    ev_sessions,
    ev_uncontrolled_w,
    grid_cost,
    no_control,
    parse_range,
    period_edges,
    range_days,
    step_table,
)

HOUR = 3600.0
NAN = math.nan


def steps(grid, pv=None, battery=None, ev=None, plugged=None, soc=None, step_s=HOUR) -> Steps:
    n = len(grid)

    def arr(v, fill=0.0):
        return np.array(v if v is not None else [fill] * n, dtype=float)

    return Steps(
        ts=np.arange(n) * step_s,
        step_s=step_s,
        grid_w=arr(grid),
        pv_w=arr(pv),
        battery_w=arr(battery, NAN) if battery is None else arr(battery),
        ev_w=arr(ev),
        ev_plugged=arr(plugged),
        soc_pct=arr(soc, NAN),
    )


def test_grid_cost_prices_import_and_export_separately_and_skips_missing_steps():
    out = grid_cost(np.array([2000.0, -1000.0, NAN, 0.0]), np.full(4, 0.30), np.full(4, 0.05), 1800.0)
    assert out["import_kwh"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert out["export_kwh"].tolist() == [0.0, 0.5, 0.0, 0.0]
    assert out["cost"].tolist() == pytest.approx([0.30, -0.025, 0.0, 0.0])


def test_battery_shifting_is_the_saving_when_the_battery_starts_empty():
    """1 kW of home load for 4 h: off-peak (0.10) twice, then peak (0.50) twice. With control the battery
    charges 2 kW off-peak and covers the peak; without control it is empty, has no solar, so does nothing."""
    bat = BatteryParams(capacity_wh=10_000, min_soc_pct=5, charge_efficiency=1.0, discharge_efficiency=1.0)
    s = steps(grid=[2000, 2000, 0, 0], battery=[1000, 1000, -1000, -1000], soc=[5, 15, 25, 15])
    imp = np.array([0.10, 0.10, 0.50, 0.50])
    exp = np.zeros(4)  # (stored energy counts at the export price: none here, see the next test)
    t = step_table(s, imp, exp, bat, 11_500)
    assert s.home_w.tolist() == [1000, 1000, 1000, 1000]
    assert t["grid_no_control_w"].tolist() == [1000, 1000, 1000, 1000]
    assert t["cost"].sum() == pytest.approx(0.4)  # 2 kWh x 0.10 x 2
    assert t["cost_no_control"].sum() == pytest.approx(0.2 + 1.0)  # 1 kWh per hour at 0.10, 0.10, 0.50, 0.50
    assert t["savings"].sum() == pytest.approx(0.8)


def test_no_control_battery_runs_self_consumption_with_its_efficiency_and_limits():
    """Solar surplus of 3 kW for 2 h charges the counterfactual battery (max 2 kW, 90 % in), which then
    covers the 1 kW evening load until it reaches its floor."""
    bat = BatteryParams(
        capacity_wh=4000,
        max_charge_w=2000,
        max_discharge_w=5000,
        min_soc_pct=0,
        max_soc_pct=100,
        charge_efficiency=0.9,
        discharge_efficiency=1.0,
    )
    # metered: the controlled home exported everything and bought the evening load
    s = steps(
        grid=[-3000, -3000, 1000, 1000, 1000, 1000],
        pv=[3000, 3000, 0, 0, 0, 0],
        battery=[0, 0, 0, 0, 0, 0],
        soc=[0, 0, 0, 0, 0, 0],
    )
    nc = no_control(s, bat, 0.0)
    assert nc["battery_w"].tolist() == pytest.approx([2000, 2000, -1000, -1000, -1000, -600])
    assert nc["grid_w"].tolist() == pytest.approx([-1000, -1000, 0, 0, 0, 400])  # 3.6 kWh stored, 3.6 used


def test_energy_left_in_the_batteries_counts_at_the_export_price():
    """At noon the uncontrolled battery has stored 3.6 kWh of solar that the controlled home exported; that
    energy is not lost, so it counts at the export price (0.05) instead of making the gateway look better."""
    bat = BatteryParams(
        capacity_wh=4000, max_charge_w=2000, min_soc_pct=0, charge_efficiency=0.9, discharge_efficiency=1.0
    )
    s = steps(grid=[-3000, -3000], pv=[3000, 3000], battery=[0, 0], soc=[0, 0])
    t = step_table(s, np.full(2, 0.30), np.full(2, 0.05), bat, 0.0)
    assert t["cost"].sum() == pytest.approx(-6 * 0.05)  # sold 6 kWh
    # without control: sold 2 kWh, holds 3.6 kWh worth 0.05 each
    assert t["cost_no_control"].sum() == pytest.approx(-2 * 0.05 - 3.6 * 0.05)
    assert t["savings"].sum() == pytest.approx(0.4 * 0.05)  # what the charging losses cost


def test_ev_without_control_charges_at_full_power_from_plug_in_with_the_same_energy():
    plugged = [0, 1, 1, 1, 1, 1, 1, 0]
    ev = [0, 0, 0, 0, 7000, 7000, 0, 0]  # controlled: waits for off-peak
    s = steps(grid=[500 + e for e in ev], ev=ev, plugged=plugged)
    out = ev_uncontrolled_w(s, 11_500)
    assert out.tolist() == pytest.approx([0, 11_500, 2_500, 0, 0, 0, 0, 0])
    assert out.sum() == pytest.approx(sum(ev))  # the car gets the same energy
    imp = np.array([0.2, 0.5, 0.5, 0.5, 0.1, 0.1, 0.2, 0.2])
    t = step_table(s, imp, np.zeros(8), BatteryParams(), 11_500)
    # without control: 11.5 kWh + 2.5 kWh at 0.50 instead of 14 kWh at 0.10
    assert t["savings"].sum() == pytest.approx(14 * 0.5 - 14 * 0.1)


def test_ev_sessions_come_from_the_plug_state_or_from_power_drawn():
    assert ev_sessions(np.array([0, 1, 1, 0, 1.0]), np.zeros(5)) == [(1, 3), (4, 5)]
    # no plug state reported: a charger drawing power has a car
    assert ev_sessions(np.full(4, NAN), np.array([0, 3000, 0, 0.0])) == [(1, 2)]


def test_v2h_discharge_is_netted_and_missing_grid_steps_count_nothing():
    s = steps(grid=[NAN, 1000, 1000], ev=[0, 4000, -2000], plugged=[1, 1, 1])
    assert ev_uncontrolled_w(s, 11_500).tolist() == pytest.approx([2000, 0, 0])
    t = step_table(s, np.full(3, 0.2), np.zeros(3), BatteryParams(), 11_500)
    assert t["known"].tolist() == [False, True, True]
    assert t["cost"][0] == 0 and t["cost_no_control"][0] == 0 and math.isnan(t["grid_no_control_w"][0])


def test_ranges_and_their_errors():
    today = date(2026, 7, 7)
    assert parse_range({}, today) == ("day", today)
    assert parse_range({"range": "week", "date": "2026-07-01"}, today) == ("week", date(2026, 7, 1))
    with pytest.raises(ValueError, match="range must be one of day, week, month, got 'year'"):
        parse_range({"range": "year"}, today)
    with pytest.raises(ValueError, match="date must be a local date YYYY-MM-DD, got '07/07/2026'"):
        parse_range({"date": "07/07/2026"}, today)
    with pytest.raises(ValueError, match="out of range"):
        parse_range({"date": "1999-12-31"}, today)
    assert range_days("week", today) == (date(2026, 7, 1), date(2026, 7, 8))
    assert range_days("month", date(2026, 2, 14)) == (date(2026, 2, 1), date(2026, 3, 1))
    assert range_days("month", date(2026, 12, 31)) == (date(2026, 12, 1), date(2027, 1, 1))


def test_days_with_a_dst_change_have_23_and_25_hourly_bars():
    tz = ZoneInfo("America/Los_Angeles")
    spring, labels = period_edges("day", date(2026, 3, 8), date(2026, 3, 9), tz)
    assert (
        len(labels) == 23
        and labels[:3] == ["00:00", "01:00", "03:00"]
        and spring[-1] - spring[0] == 23 * HOUR
    )
    fall, labels = period_edges("day", date(2026, 11, 1), date(2026, 11, 2), tz)
    assert len(labels) == 25 and labels[1:3] == ["01:00", "01:00"] and fall[-1] - fall[0] == 25 * HOUR
    month, labels = period_edges("month", date(2026, 3, 1), date(2026, 4, 1), tz)
    assert len(labels) == 31 and month[8] - month[7] == 23 * HOUR
