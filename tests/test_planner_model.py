"""Planner MILP: physics of the returned plan, and optimality against hand-computed optima."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from hems.home import BatteryParams, HomeParams, HVACParams, WaterHeaterParams
from hems.planner import Deferrable, PlannerSettings, plan
from hems.planner.checks import energy_cost, plan_violations
from hems.planner.scenarios import EXPORT, PRICES, reference_inputs, simple_inputs, tou_period

TZ = ZoneInfo("America/Los_Angeles")


def isolated(**assets) -> HomeParams:
    """The reference home with every flexible asset switched off unless given."""
    base = HomeParams(
        battery=BatteryParams(capacity_wh=0.0),
        hvac=HVACParams(max_power_w=0.0),
        water_heater=WaterHeaterParams(tank_l=0.0, power_w=0.0),
    )
    return replace(base, **assets)


@pytest.fixture(scope="module")
def reference_day():
    params = HomeParams()
    inputs = reference_inputs(96)
    return params, inputs, plan(params, inputs)


def test_reference_day_is_physical_and_optimal(reference_day):
    params, inputs, p = reference_day
    assert p.status == "optimal"
    assert plan_violations(p, inputs, params) == []
    assert p.steps == 96 and len(p.reasons) == 96


def test_reference_day_battery_soc_within_bounds(reference_day):
    params, inputs, p = reference_day
    b = params.battery
    assert p.battery_soc_pct.min() >= b.min_soc_pct - 1e-6
    assert p.battery_soc_pct.max() <= b.max_soc_pct + 1e-6
    outside_dr = np.ones(96, dtype=bool)
    for w in inputs.dr_windows:
        outside_dr[w.start_step : w.end_step] = False
    assert p.battery_soc_pct[outside_dr].min() >= b.reserve_soc_pct - 1e-6  # reserve kept outside DR


def test_reference_day_energy_balance_per_step(reference_day):
    _, inputs, p = reference_day
    load = (
        inputs.base_load_forecast_w
        + p.hvac_power_w
        + p.water_heater_w
        + p.ev_charge_w
        + p.battery_charge_w
        + sum(p.deferrable_on[d.name] * d.power_w for d in inputs.deferrables)
    )
    supply = p.pv_used_w + p.grid_import_w + p.battery_discharge_w + p.ev_discharge_w - p.grid_export_w
    np.testing.assert_allclose(supply, load, atol=1.0)


def test_reference_day_never_does_both_directions(reference_day):
    _, _, p = reference_day
    assert np.minimum(p.grid_import_w, p.grid_export_w).max() <= 1.0
    assert np.minimum(p.battery_charge_w, p.battery_discharge_w).max() <= 1.0


def test_reported_cost_equals_cost_of_returned_arrays(reference_day):
    _, inputs, p = reference_day
    dt_h = inputs.step_s / 3600
    by_hand = sum(
        (
            p.grid_import_w[k] * inputs.import_price_per_kwh[k]
            - p.grid_export_w[k] * inputs.export_price_per_kwh[k]
        )
        * dt_h
        / 1000
        for k in range(p.steps)
    )
    assert p.cost == pytest.approx(by_hand, abs=1e-9)
    assert p.objective == pytest.approx(
        p.cost + sum(v for k, v in p.penalties.items() if k.endswith("_cost"))
    )


def test_battery_charges_off_peak_and_discharges_at_peak_on_flat_load_tou_day():
    start = datetime(2025, 7, 15, 0, 0, tzinfo=TZ)  # a Tuesday
    names = tuple(tou_period(datetime.fromtimestamp(start.timestamp() + 900 * k, TZ)) for k in range(96))
    prices = np.array([PRICES[n] for n in names])
    assert set(names) == {"off-peak", "shoulder", "peak"} and prices.tolist().count(0.46) == 20
    params = isolated(battery=BatteryParams())
    inputs = simple_inputs(
        96,
        start_ts=start.timestamp(),
        import_price=prices,
        export_price=EXPORT,
        base_w=800.0,
        period_names=names,
    )
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    names_arr = np.array(names)
    charging = p.battery_charge_w > 1.0
    discharging = p.battery_discharge_w > 1.0
    assert charging.any() and set(names_arr[charging]) == {"off-peak"}
    assert discharging.any() and "off-peak" not in set(names_arr[discharging])
    peak = names_arr == "peak"
    assert p.grid_import_w[peak].max() < 1.0  # the battery carries the whole peak
    np.testing.assert_allclose(p.battery_discharge_w[peak], 800.0, atol=1.0)
    assert p.battery_soc_pct[np.flatnonzero(names_arr == "off-peak")[:24][-1]] == pytest.approx(
        100.0, abs=1e-6
    )


def test_battery_arbitrage_matches_closed_form_optimum():
    """4 h at 0.10 then 4 h at 0.50, 1 kW load, an empty 4 kWh battery (2 kW, 90 % each way).

    Optimum by hand: fill the battery in the cheap hours (4/0.9 kWh bought), deliver 0.9 x 4 = 3.6 kWh in
    the dear hours. cost = 4 x 0.10 + 4/0.9 x 0.10 + (4 - 3.6) x 0.50; throughput 0.02 x (4/0.9 + 3.6).
    """
    battery = BatteryParams(
        capacity_wh=4000.0,
        max_charge_w=2000.0,
        max_discharge_w=2000.0,
        charge_efficiency=0.9,
        discharge_efficiency=0.9,
        min_soc_pct=0.0,
        max_soc_pct=100.0,
        reserve_soc_pct=0.0,
    )
    params = isolated(battery=battery)
    settings = PlannerSettings(terminal_value_per_kwh=0.0, battery_throughput_per_kwh=0.02, mip_abs_gap=0.0)
    inputs = simple_inputs(
        8, 3600.0, import_price=[0.1] * 4 + [0.5] * 4, export_price=0.0, base_w=1000.0, battery_soc_pct=0.0
    )
    p = plan(params, inputs, settings=settings)
    cost = 4 * 0.10 + 4 / 0.9 * 0.10 + (4 - 3.6) * 0.50
    throughput = 0.02 * (4 / 0.9 + 3.6)
    assert p.cost == pytest.approx(cost, abs=1e-6)
    assert p.penalties["battery_throughput_cost"] == pytest.approx(throughput, abs=1e-6)
    assert p.objective == pytest.approx(cost + throughput, abs=1e-6)
    assert p.battery_charge_w[:4].sum() == pytest.approx(4000 / 0.9, abs=1e-3)
    assert p.battery_discharge_w[4:].sum() == pytest.approx(3600.0, abs=1e-3)
    assert p.battery_soc_pct[3] == pytest.approx(100.0) and p.battery_soc_pct[-1] == pytest.approx(
        0.0, abs=1e-6
    )


def test_export_dearer_than_import_uses_the_exclusive_grid_optimum():
    """Export pays 0.30 > import 0.20 in hours 2-3: a full 4 kWh battery (90 % out), 1 kW load.

    The exclusive optimum (by hand): a step that exports must cover its own load first, so the 3.6 kWh
    go 2 x 1 kWh to the load of the export hours and 1.6 kWh to export: cost = 2 x 0.2 - 1.6 x 0.3.
    Without the binary the LP would import for the load and export everything (cost -0.28).
    """
    battery = BatteryParams(
        capacity_wh=4000.0,
        max_charge_w=2000.0,
        max_discharge_w=2000.0,
        charge_efficiency=0.9,
        discharge_efficiency=0.9,
        min_soc_pct=0.0,
        reserve_soc_pct=0.0,
    )
    params = isolated(battery=battery)
    settings = PlannerSettings(terminal_value_per_kwh=0.0, battery_throughput_per_kwh=0.0, mip_abs_gap=0.0)
    inputs = simple_inputs(
        4, 3600.0, import_price=0.2, export_price=[0.0, 0.0, 0.3, 0.3], base_w=1000.0, battery_soc_pct=100.0
    )
    p = plan(params, inputs, settings=settings)
    assert plan_violations(p, inputs, params) == []
    assert p.cost == pytest.approx(2 * 0.2 - 1.6 * 0.3, abs=1e-6)
    assert p.grid_export_w[2:].sum() == pytest.approx(1600.0, abs=1e-3)
    assert p.grid_import_w[2:].max() < 1.0


def test_deferrable_runs_once_in_the_cheapest_slot_brute_force():
    prices = np.array([0.30, 0.25, 0.10, 0.35, 0.12, 0.11, 0.40, 0.20, 0.15, 0.13])
    d = Deferrable("dishwasher", 2000.0, 3, 1, 10)
    params = isolated()
    inputs = simple_inputs(10, import_price=prices, base_w=300.0, deferrables=(d,))
    p = plan(params, inputs, settings=PlannerSettings(mip_abs_gap=0.0))
    assert plan_violations(p, inputs, params) == []
    costs = {s: prices[s : s + 3].sum() for s in range(1, 10 - 3 + 1)}
    best = min(costs, key=costs.get)
    on = p.deferrable_on["dishwasher"]
    assert on.sum() == 3 and np.flatnonzero(on).tolist() == [best, best + 1, best + 2]
    assert p.cost == pytest.approx(energy_cost(p, inputs))
    assert p.cost == pytest.approx((prices * 300.0).sum() / 4000 + costs[best] * 2000.0 / 4000, abs=1e-9)
    assert p.penalties["deferrables_missed"] == 0.0


def test_two_deferrables_each_run_exactly_once_inside_their_windows(reference_day):
    _, inputs, p = reference_day
    for d in inputs.deferrables:
        on = np.flatnonzero(p.deferrable_on[d.name])
        assert on.size == d.run_steps
        assert on[-1] - on[0] == d.run_steps - 1  # uninterrupted
        assert on[0] >= d.earliest_step and on[-1] < d.latest_end_step


def test_water_heater_preheats_cheaply_and_respects_tank_limits():
    params = isolated(water_heater=WaterHeaterParams())
    w = params.water_heater
    prices = [0.10] * 8 + [0.50] * 8
    draws = [0.0] * 12 + [500.0] * 4  # 2 kWh drawn in the last hour: less than the tank's headroom
    inputs = simple_inputs(16, import_price=prices, hot_water_wh=draws, tank_c=46.0)
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    assert p.tank_temp_c.max() <= w.setpoint_c + PlannerSettings().tank_max_above_setpoint_c + 1e-6
    assert p.tank_temp_c.min() >= w.min_temp_c - 1e-6
    assert p.water_heater_w[8:].sum() < 1.0  # all the heat bought in the cheap hours
    assert p.water_heater_w[:8].sum() > 0.0
    assert p.penalties["hot_water_deficit_wh_h"] == pytest.approx(0.0, abs=1e-6)


def test_precooling_before_peak_comes_from_the_prices():
    start = datetime(2025, 7, 15, 12, 0, tzinfo=TZ)
    names = tuple(tou_period(datetime.fromtimestamp(start.timestamp() + 900 * k, TZ)) for k in range(44))
    prices = np.array([PRICES[n] for n in names])  # shoulder 12-16, peak 16-21, shoulder 21-23
    params = isolated(hvac=HVACParams())
    inputs = simple_inputs(
        44,
        start_ts=start.timestamp(),
        import_price=prices,
        outdoor_c=36.0,
        indoor_c=24.5,
        comfort_min_c=20.0,
        comfort_max_c=25.0,
        period_names=names,
    )
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    peak = np.array(names) == "peak"
    first_peak = int(np.argmax(peak))
    assert p.penalties["comfort_degree_hours"] == pytest.approx(0.0, abs=1e-6)
    assert p.indoor_temp_c[first_peak - 1] < 25.0 - 0.5  # cooled below the band's top before the peak
    hour_before = slice(first_peak - 4, first_peak)
    assert p.hvac_power_w[hour_before].mean() > p.hvac_power_w[peak].mean()
    assert any(r.startswith("pre-cooling before peak") for rs in p.reasons[:first_peak] for r in rs)
    assert set(p.hvac_mode) <= {"cool", "off"}
