"""Model-predictive control: re-planning, plan following, and the year-simulation ordering of strategies."""

import json

import numpy as np
import pytest

from hems.cli import main
from hems.forecast import LoadForecaster, PVForecaster, TemperatureForecaster, ev_departure_ts
from hems.home import HomeParams
from hems.mpc import PlannerStrategy
from hems.rules import HomeState
from hems.tariff import Tariff

P = HomeParams()
TUE_14H = 1783458000.0  # Tuesday 7 July 2026, 14:00 in Los Angeles


def st(ts=TUE_14H, **kw):
    base = dict(
        ts=ts,
        pv_power_w=5000.0,
        home_load_w=800.0,
        battery_soc_pct=50.0,
        indoor_temp_c=23.0,
        outdoor_temp_c=33.0,
        tank_temp_c=52.0,
    )
    return HomeState(**{**base, **kw})


def test_replans_on_schedule_and_on_ev_plug_in():
    s = PlannerStrategy(Tariff.default(), P)
    s.decide(st())
    assert s.stats.plans == 1
    s.decide(st(TUE_14H + 300))
    assert s.stats.plans == 1  # within the 15-min cycle the plan is followed
    s.decide(st(TUE_14H + 600, ev_plugged=True, ev_soc_pct=30.0))
    assert s.stats.plans == 2  # EV plugged in: re-plan at once
    s.decide(st(TUE_14H + 900 + 600, ev_plugged=True, ev_soc_pct=30.0))
    assert s.stats.plans == 3
    s.request_replan("DR event received")
    s.decide(st(TUE_14H + 1600, ev_plugged=True, ev_soc_pct=30.0))
    assert s.stats.plans == 4


def test_plan_is_followed_and_explained():
    s = PlannerStrategy(Tariff.default(), P)
    d = s.decide(st(ev_plugged=True, ev_soc_pct=20.0))
    p = s.plan
    assert p is not None and p.start_ts == TUE_14H
    planned = p.battery_charge_w[0] - p.battery_discharge_w[0]
    if p.grid_import_w[0] >= 50:  # no grid tracking: exactly the planned power
        assert d.battery_charge_power_w == pytest.approx(planned, abs=0.1)
    assert d.reasons == p.reasons[0]
    assert d.period == "shoulder"
    # the EV must reach 80 % by 07:30 tomorrow; in the 16:00-21:00 peak it only takes PV that would be exported
    ev = p.ev_charge_w
    peak = [k for k in range(p.steps) if s.inputs.period_names[k] == "peak" and ev[k] > 1.0]
    assert ev.sum() > 0
    assert all(p.grid_import_w[k] < 1.0 for k in peak)
    assert p.ev_soc_pct.max() >= 79.5


def test_grid_tracking_absorbs_forecast_error_when_no_import_planned():
    peak = TUE_14H + 5.5 * 3600  # 19:30: the plan covers the home from the battery
    s = PlannerStrategy(Tariff.default(), P)
    s.decide(st(peak, pv_power_w=500.0, home_load_w=1500.0, battery_soc_pct=90.0))
    p = s.plan
    assert p.grid_import_w[0] < 50 and p.battery_discharge_w[0] > 0
    as_planned = s.decide(st(peak, pv_power_w=500.0, home_load_w=1500.0, battery_soc_pct=90.0))
    more_load = s.decide(st(peak, pv_power_w=500.0, home_load_w=3000.0, battery_soc_pct=90.0))
    assert more_load.battery_charge_power_w == pytest.approx(
        as_planned.battery_charge_power_w - 1500.0, abs=1.0
    )
    # in a step planned for charging, an unexpected load is taken from the grid, not the battery
    noon = TUE_14H - 2 * 3600
    s2 = PlannerStrategy(Tariff.default(), P)
    d = s2.decide(st(noon, pv_power_w=7000.0, home_load_w=800.0, battery_soc_pct=30.0))
    assert d.battery_charge_power_w > 0
    spike = s2.decide(st(noon, pv_power_w=7000.0, home_load_w=800.0 + 20000.0, battery_soc_pct=30.0))
    assert spike.battery_charge_power_w == 0.0


def test_ev_departure_is_the_next_weekday_morning():
    fri_20h = 1783738800.0  # Friday 10 July 2026, 20:00 local
    dep = ev_departure_ts(P, fri_20h)
    assert dep - fri_20h == pytest.approx((2 * 24 + 11.5) * 3600)  # Monday 07:30


def test_forecasters_learn_from_measurements():
    pv = PVForecaster(P)
    t0 = TUE_14H - 86400
    cs = pv.clear_sky_w(t0, 96, 900)
    for k in range(96):  # a day at 60 % of clear sky
        pv.observe(t0 + k * 900, 0.6 * cs[k], 900, clear_sky_w=cs[k])
    assert pv.ratio() == pytest.approx(0.6, abs=0.01)
    fc = pv.forecast(TUE_14H, 96, 900, now=TUE_14H)
    cs_now = pv.clear_sky_w(TUE_14H, 96, 900)
    assert fc[0] == pytest.approx(cs_now[0] * (0.8 + (0.6 - 0.8) * np.exp(-0.125 / 6)), rel=1e-6)

    load = LoadForecaster(P)
    for day in range(3):
        for k in range(96):
            load.observe(t0 - 86400 * (7 * day) + k * 900, 1000.0 + 10 * k, 900)
    load.observe(t0 + 96 * 900, 0.0, 1)  # closes the last slot
    f = load.forecast(t0 + 7 * 86400, 96, 900)  # the same weekday type
    assert f[10] == pytest.approx(1100.0, rel=0.01)

    temp = TemperatureForecaster(P)
    for k in range(200):
        temp.observe(t0 - 86400 + k * 900, 20.0 + 5 * np.sin(k / 96 * 2 * np.pi))
    now = t0 - 86400 + 199 * 900
    f = temp.forecast(now, 4, 900, now=now)
    assert abs(f[0] - (20.0 + 5 * np.sin(199.5 / 96 * 2 * np.pi))) < 0.6


def test_costs_order_optimal_planner_rules_none_on_a_fixed_seed_week(capsys):
    results = {}
    for strategy in ("none", "rules", "planner", "optimal"):
        assert main(["simulate", "--days", "7", "--strategy", strategy, "--seed", "3", "--json"]) == 0
        results[strategy] = json.loads(capsys.readouterr().out)
    cost = {k: v["cost"] for k, v in results.items()}
    assert cost["optimal"] <= cost["planner"] <= cost["rules"] <= cost["none"], cost
    planner = results["planner"]
    assert planner["failures"] == 0 and planner["plans"] >= 7 * 96
    assert planner["solve_ms_median"] is not None and planner["solve_ms_p95"] >= planner["solve_ms_median"]
    for r in results.values():
        assert r["comfort_degree_hours"] < 1.0
