"""Planner limits and soft constraints: EV target, DR windows, service and export limits, curtailment,
deferrable windows, the battery reserve, contradictory inputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hems.home import BatteryParams, HomeParams, HVACParams, SiteParams, WaterHeaterParams
from hems.planner import Deferrable, DRWindow, PlannerSettings, plan
from hems.planner.checks import plan_violations
from hems.planner.scenarios import simple_inputs

EV = HomeParams().ev
STEP_H = 0.25


def isolated(**assets) -> HomeParams:
    base = HomeParams(
        battery=BatteryParams(capacity_wh=0.0),
        hvac=HVACParams(max_power_w=0.0),
        water_heater=WaterHeaterParams(tank_l=0.0, power_w=0.0),
    )
    return replace(base, **assets)


# ---- EV


def test_ev_target_met_when_feasible_with_exactly_the_needed_energy():
    params = isolated()
    prices = [0.3, 0.1, 0.3, 0.12, 0.3, 0.3, 0.11, 0.3]
    inputs = simple_inputs(
        8, import_price=prices, ev_plugged=True, ev_soc_pct=50.0, ev_departure_step=8, ev_target_soc_pct=60.0
    )
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    assert p.ev_soc_pct[7] == pytest.approx(60.0, abs=1e-6)
    assert p.penalties["ev_target_missed_wh"] == pytest.approx(0.0, abs=1e-6)
    need_wh = 0.10 * EV.capacity_wh / EV.charge_efficiency
    assert p.ev_charge_w.sum() * STEP_H == pytest.approx(need_wh, rel=1e-9)
    # the cheapest slots first: 0.10, then 0.11, then 0.12 (11.52 kW x 15 min each = 2.88 kWh)
    assert p.ev_charge_w[1] == pytest.approx(EV.charger_max_w) and p.ev_charge_w[6] == pytest.approx(
        EV.charger_max_w
    )
    assert p.ev_charge_w[[0, 2, 4, 5, 7]].max() < 1.0


def test_ev_target_impossible_charges_at_max_and_reports_exact_shortfall():
    params = isolated()
    plugged = [False, True, True, True, False, False]
    inputs = simple_inputs(
        6, ev_plugged=plugged, ev_soc_pct=50.0, ev_departure_step=4, ev_target_soc_pct=90.0
    )
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    np.testing.assert_allclose(p.ev_charge_w[1:4], EV.charger_max_w)
    assert p.ev_charge_w[[0, 4, 5]].max() == 0.0
    deliverable_wh = 3 * EV.charger_max_w * STEP_H * EV.charge_efficiency
    shortfall_wh = 0.40 * EV.capacity_wh - deliverable_wh
    assert p.penalties["ev_target_missed_wh"] == pytest.approx(shortfall_wh, rel=1e-9)
    assert p.penalties["ev_target_cost"] == pytest.approx(
        shortfall_wh / 1000 * PlannerSettings().ev_target_missed_per_kwh, rel=1e-9
    )
    assert any("EV target not reachable" in r for r in p.reasons[1])


def test_ev_departure_beyond_horizon_only_asks_what_cannot_be_charged_later():
    params = isolated()
    inputs = simple_inputs(
        4, ev_plugged=True, ev_soc_pct=50.0, ev_departure_step=8, ev_target_soc_pct=70.0, import_price=0.2
    )
    p = plan(params, inputs)
    later_wh = 4 * EV.charger_max_w * STEP_H * EV.charge_efficiency  # steps 4..7, after the horizon
    need_now_wh = 0.20 * EV.capacity_wh - later_wh
    assert p.ev_charge_w.sum() * STEP_H * EV.charge_efficiency == pytest.approx(need_now_wh, rel=1e-9)
    assert p.penalties["ev_target_missed_wh"] == pytest.approx(0.0, abs=1e-6)


def test_five_minute_steps_scale_energy_with_the_step():
    params = isolated()
    inputs = simple_inputs(
        12, 300.0, ev_plugged=True, ev_soc_pct=20.0, ev_departure_step=12, ev_target_soc_pct=90.0
    )
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    np.testing.assert_allclose(p.ev_charge_w, EV.charger_max_w)
    shortfall_wh = 0.70 * EV.capacity_wh - 12 * EV.charger_max_w * (300 / 3600) * EV.charge_efficiency
    assert p.penalties["ev_target_missed_wh"] == pytest.approx(shortfall_wh, rel=1e-9)


def test_v2h_discharges_only_when_allowed_and_keeps_the_target():
    params = isolated(ev=replace(EV, v2h=True))
    prices = [0.1] * 4 + [0.6] * 4
    common = dict(
        import_price=prices, ev_plugged=True, ev_soc_pct=80.0, ev_departure_step=8, ev_target_soc_pct=70.0
    )
    assert plan(params, simple_inputs(8, **common)).ev_discharge_w.max() == 0.0
    inputs = simple_inputs(8, allow_ev_v2h=True, **common)
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    assert p.ev_discharge_w[4:].sum() > 0 and p.grid_import_w[4:].max() < 1.0
    assert p.ev_soc_pct[7] >= 70.0 - 1e-6
    assert np.minimum(p.ev_charge_w, p.ev_discharge_w).max() <= 1.0


# ---- grid limits


def test_dr_import_cap_is_honoured_in_its_window():
    params = HomeParams()
    window = DRWindow(2, 6, import_cap_w=2000.0, event_id="evt-7")
    inputs = simple_inputs(
        8,
        base_w=1500.0,
        outdoor_c=35.0,
        indoor_c=25.0,
        comfort_min_c=20.0,
        comfort_max_c=26.0,
        ev_plugged=True,
        ev_soc_pct=40.0,
        ev_departure_step=8,
        ev_target_soc_pct=60.0,
        dr_windows=(window,),
    )
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    assert p.grid_import_w[2:6].max() <= 2000.0 + 1e-6
    assert p.penalties["dr_cap_excess_wh"] == pytest.approx(0.0, abs=1e-6)
    assert p.penalties["ev_target_missed_wh"] == pytest.approx(0.0, abs=1e-6)
    assert all("DR event evt-7: import cap 2.0 kW" in p.reasons[k] for k in range(2, 6))
    np.testing.assert_array_equal(p.dr_limit_w[2:6], 2000.0)


def test_dr_shed_against_baseline():
    params = isolated()
    window = DRWindow(1, 3, shed_w=1000.0, baseline_w=np.array([2500.0, 3000.0]), event_id="shed")
    inputs = simple_inputs(
        4,
        base_w=800.0,
        ev_plugged=True,
        ev_soc_pct=40.0,
        ev_departure_step=4,
        ev_target_soc_pct=50.0,
        dr_windows=(window,),
    )
    p = plan(params, inputs)
    assert p.grid_import_w[1] <= 1500.0 + 1e-6 and p.grid_import_w[2] <= 2000.0 + 1e-6
    assert p.penalties["dr_cap_excess_wh"] == pytest.approx(0.0, abs=1e-6)


def test_service_limit_never_exceeded():
    params = replace(isolated(), site=SiteParams(service_limit_a=40.0))  # 9.6 kW
    inputs = simple_inputs(
        4, base_w=1000.0, ev_plugged=True, ev_soc_pct=10.0, ev_departure_step=4, ev_target_soc_pct=90.0
    )
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    assert p.grid_import_w.max() <= 9600.0 + 1e-6
    np.testing.assert_allclose(p.ev_charge_w, 8600.0)
    assert p.penalties["service_limit_excess_wh"] == 0.0


def test_service_limit_is_soft_only_when_the_base_load_alone_exceeds_it():
    params = replace(isolated(), site=SiteParams(service_limit_a=40.0))
    inputs = simple_inputs(4, base_w=[5000.0, 12000.0, 12000.0, 5000.0])
    p = plan(params, inputs)
    assert p.status == "optimal"
    assert p.penalties["service_limit_excess_wh"] == pytest.approx(2 * 2400.0 * STEP_H, rel=1e-9)
    assert p.penalties["service_limit_cost"] > 0


def test_curtails_pv_when_export_price_is_negative():
    params = isolated()
    inputs = simple_inputs(4, pv_w=5000.0, base_w=1000.0, import_price=0.2, export_price=-0.05)
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    assert p.grid_export_w.max() == 0.0
    np.testing.assert_allclose(p.pv_curtailed_w, 4000.0, atol=1e-6)
    assert all("negative export price: curtailing" in r for r in p.reasons)


def test_export_limit_curtails_the_rest():
    params = isolated()
    inputs = simple_inputs(4, pv_w=6000.0, base_w=1000.0, export_price=0.05, export_limit_w=2000.0)
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    np.testing.assert_allclose(p.grid_export_w, 2000.0, atol=1e-6)
    np.testing.assert_allclose(p.pv_curtailed_w, 3000.0, atol=1e-6)
    assert all("export limit: curtailing" in r for r in p.reasons)


def test_pv_is_exported_not_curtailed_at_a_zero_export_price():
    params = isolated()
    inputs = simple_inputs(4, pv_w=3000.0, base_w=1000.0, export_price=0.0)
    p = plan(params, inputs)
    np.testing.assert_allclose(p.pv_curtailed_w, 0.0, atol=1e-6)


# ---- deferrables, reserve, contradictions


def test_deferrable_with_an_impossible_window_is_reported_not_fatal():
    params = isolated()
    d = Deferrable("pool pump", 1000.0, 5, 2, 5)  # 5 steps in a 3-step window
    p = plan(params, simple_inputs(8, deferrables=(d,)))
    assert p.status == "optimal"
    assert not p.deferrable_on["pool pump"].any()
    assert p.penalties["deferrables_missed"] == 1.0
    assert p.penalties["deferrable_cost"] == PlannerSettings().deferrable_missed


def test_deferrable_window_past_the_horizon_may_wait():
    params = isolated()
    d = Deferrable("dishwasher", 1800.0, 2, 0, 20)
    p = plan(params, simple_inputs(6, import_price=[0.5] * 6, deferrables=(d,)))
    assert p.penalties["deferrables_missed"] == 0.0  # running after the horizon is no shortfall
    assert p.deferrable_on["dishwasher"].sum() in (0, 2)


def test_battery_reserve_kept_outside_dr_and_used_inside():
    params = isolated(battery=BatteryParams())
    window = DRWindow(2, 6, import_cap_w=0.0, event_id="evt")
    inputs = simple_inputs(10, base_w=3000.0, import_price=0.3, battery_soc_pct=30.0, dr_windows=(window,))
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    b = params.battery
    assert p.battery_soc_pct[:2].min() >= b.reserve_soc_pct - 1e-6
    assert p.battery_soc_pct[2:6].min() < b.reserve_soc_pct  # the DR event may use the reserve
    assert p.battery_soc_pct.min() >= b.min_soc_pct - 1e-6
    assert p.grid_import_w[2:6].max() <= 1e-6
    assert p.battery_charge_w[6] > 0  # back to the reserve right after the event
    assert any("DR event: using battery reserve" in r for r in p.reasons[2:6])


def test_contradictory_inputs_still_give_a_plan_with_penalties():
    """Comfort impossible under a zero DR cap, and an EV target no charger could meet."""
    params = isolated(hvac=HVACParams())
    window = DRWindow(0, 8, import_cap_w=0.0, event_id="blackout")
    inputs = simple_inputs(
        8,
        base_w=500.0,
        outdoor_c=40.0,
        indoor_c=27.0,
        comfort_min_c=20.0,
        comfort_max_c=25.0,
        ev_plugged=True,
        ev_soc_pct=10.0,
        ev_departure_step=4,
        ev_target_soc_pct=100.0,
        dr_windows=(window,),
    )
    p = plan(params, inputs)
    assert p.status == "optimal"
    assert plan_violations(p, inputs, params) == []
    assert p.penalties["dr_cap_excess_wh"] >= 500.0 * 8 * STEP_H - 1e-6  # the base load alone breaks the cap
    assert p.penalties["comfort_degree_hours"] > 0.0
    assert p.penalties["ev_target_missed_wh"] > 0.0
    for key in ("dr_cost", "comfort_cost", "ev_target_cost"):
        assert p.penalties[key] > 0.0
