"""Independent checks of a plan against the physics, recomputed from its arrays and inputs only.

Used by the tests, and usable at run time as a sanity check before a plan is applied:
``plan_violations`` returns what is wrong (an empty list for a sound plan).
"""

from __future__ import annotations

import math

import numpy as np

from hems.home import HomeParams
from hems.planner.types import Plan, PlanInputs

TOL_W = 1.0


def deferrable_load_w(plan: Plan, inputs: PlanInputs) -> np.ndarray:
    load = np.zeros(plan.steps)
    for d in inputs.deferrables:
        if d.name in plan.deferrable_on:
            load += plan.deferrable_on[d.name] * d.power_w
    return load


def balance_residual_w(plan: Plan, inputs: PlanInputs) -> np.ndarray:
    """Supply minus demand per step (W): zero for a balanced plan."""
    supply = plan.pv_used_w + plan.grid_import_w + plan.battery_discharge_w + plan.ev_discharge_w
    demand = (
        np.maximum(np.asarray(inputs.base_load_forecast_w, dtype=float), 0.0)
        + plan.hvac_power_w
        + plan.water_heater_w
        + deferrable_load_w(plan, inputs)
        + plan.ev_charge_w
        + plan.battery_charge_w
        + plan.grid_export_w
    )
    return supply - demand


def simulate_battery_soc_pct(plan: Plan, inputs: PlanInputs, params: HomeParams) -> np.ndarray:
    b = params.battery
    delta_wh = (
        plan.battery_charge_w * b.charge_efficiency - plan.battery_discharge_w / b.discharge_efficiency
    ) * (plan.step_h)
    return inputs.battery_soc_pct + np.cumsum(delta_wh) / b.capacity_wh * 100.0


def simulate_indoor_c(plan: Plan, inputs: PlanInputs, params: HomeParams) -> np.ndarray:
    """The 1R1C envelope driven by the plan's HVAC power (heat or cool per ``hvac_mode``)."""
    h = params.hvac
    a = math.exp(-plan.step_h / (h.r_c_per_kw * h.c_kwh_per_c))
    t = float(inputs.indoor_temp_c)
    out = np.empty(plan.steps)
    t_out = np.broadcast_to(np.asarray(inputs.outdoor_temp_c, dtype=float), (plan.steps,))
    for k in range(plan.steps):
        p = plan.hvac_power_w[k]
        mode = plan.hvac_mode[k] if plan.hvac_mode else "off"
        q_w = (h.cop_heating * p if mode == "heat" else -h.cop_cooling * p if mode == "cool" else 0.0) + (
            h.internal_gains_w
        )
        t = a * t + (1 - a) * (t_out[k] + h.r_c_per_kw * q_w / 1000.0)
        out[k] = t
    return out


def simulate_tank_c(plan: Plan, inputs: PlanInputs, params: HomeParams) -> np.ndarray:
    """The tank: element heat in, draws out, standby loss to ambient (exact for constant inputs)."""
    w = params.water_heater
    c = w.tank_l * 4.186 / 3.6  # Wh/K
    ua = w.loss_w_per_c
    dt = plan.step_h
    b = math.exp(-ua * dt / c) if ua > 0 else 1.0
    f = (1 - b) / ua if ua > 0 else dt / c
    t = float(inputs.tank_temp_c)
    out = np.empty(plan.steps)
    draws = np.broadcast_to(np.asarray(inputs.hot_water_wh, dtype=float), (plan.steps,))
    for k in range(plan.steps):
        t = b * t + (1 - b) * w.ambient_c + f * (plan.water_heater_w[k] - draws[k] / dt)
        out[k] = t
    return out


def energy_cost(plan: Plan, inputs: PlanInputs) -> float:
    """Import cost minus export credit, from the plan's arrays and the tariff."""
    imp = np.asarray(inputs.import_price_per_kwh, dtype=float)
    exp = np.asarray(inputs.export_price_per_kwh, dtype=float)
    return float(np.sum(plan.grid_import_w * imp - plan.grid_export_w * exp) * plan.step_h / 1000.0)


def plan_violations(plan: Plan, inputs: PlanInputs, params: HomeParams) -> list[str]:
    """Every hard rule of the model that the plan breaks (tolerance 1 W, 1e-4 % SOC, 1 mK)."""
    bad: list[str] = []

    def check(ok, what: str) -> None:
        if not bool(ok):
            bad.append(what)

    b = params.battery
    check(np.all(np.abs(balance_residual_w(plan, inputs)) < TOL_W), "energy balance")
    if b.capacity_wh > 0:
        soc = simulate_battery_soc_pct(plan, inputs, params)
        check(np.all(np.abs(plan.battery_soc_pct - soc) < 1e-4), "battery SOC dynamics")
        lo = min(b.min_soc_pct, inputs.battery_soc_pct)
        hi = max(b.max_soc_pct, inputs.battery_soc_pct)
        check(
            plan.battery_soc_pct.min() >= lo - 1e-6 and plan.battery_soc_pct.max() <= hi + 1e-6, "SOC bounds"
        )
    check(plan.battery_charge_w.max(initial=0) <= b.max_charge_w + TOL_W, "battery charge power")
    check(plan.battery_discharge_w.max(initial=0) <= b.max_discharge_w + TOL_W, "battery discharge power")
    arrays = {
        "grid_import_w": plan.grid_import_w,
        "grid_export_w": plan.grid_export_w,
        "battery_charge_w": plan.battery_charge_w,
        "battery_discharge_w": plan.battery_discharge_w,
        "ev_charge_w": plan.ev_charge_w,
        "ev_discharge_w": plan.ev_discharge_w,
        "hvac_power_w": plan.hvac_power_w,
        "water_heater_w": plan.water_heater_w,
        "pv_used_w": plan.pv_used_w,
        "pv_curtailed_w": plan.pv_curtailed_w,
    }
    for name, arr in arrays.items():
        check(arr.min(initial=0) >= -1e-6, f"{name} negative")
    check(np.all(np.minimum(plan.grid_import_w, plan.grid_export_w) <= TOL_W), "simultaneous import/export")
    check(
        np.all(np.minimum(plan.battery_charge_w, plan.battery_discharge_w) <= TOL_W),
        "simultaneous battery charge/discharge",
    )
    check(
        np.allclose(plan.pv_used_w + plan.pv_curtailed_w, np.maximum(inputs.pv_forecast_w, 0.0), atol=1e-3),
        "PV used + curtailed = forecast",
    )
    check(plan.hvac_power_w.max(initial=0) <= params.hvac.max_power_w + TOL_W, "HVAC power")
    check(plan.water_heater_w.max(initial=0) <= params.water_heater.power_w + TOL_W, "water heater power")
    check(plan.ev_charge_w.max(initial=0) <= params.ev.charger_max_w + TOL_W, "EV charger power")
    plugged = np.asarray(inputs.ev_plugged, dtype=bool)
    check(np.all(plan.ev_charge_w[~plugged] == 0.0), "EV charging while unplugged")
    check(np.all(plan.ev_discharge_w[~plugged] == 0.0), "EV discharging while unplugged")
    if inputs.export_limit_w is not None:
        check(plan.grid_export_w.max(initial=0) <= inputs.export_limit_w + TOL_W, "export limit")
    service = params.site.service_limit_w
    base = np.asarray(inputs.base_load_forecast_w, dtype=float)
    check(np.all((plan.grid_import_w <= service + TOL_W) | (base > service)), "service limit")
    check(plan.grid_export_w.max(initial=0) <= service + TOL_W, "service limit (export)")
    if b.capacity_wh > 0 and params.pv.inverter_ac_w > 0:
        ac = plan.pv_used_w + plan.battery_discharge_w - plan.battery_charge_w
        check(np.all(np.abs(ac) <= params.pv.inverter_ac_w + TOL_W), "hybrid inverter AC rating")
    check(np.all(np.abs(plan.indoor_temp_c - simulate_indoor_c(plan, inputs, params)) < 1e-3), "indoor temp")
    if params.water_heater.tank_l > 0:
        check(np.all(np.abs(plan.tank_temp_c - simulate_tank_c(plan, inputs, params)) < 1e-3), "tank temp")
    check(abs(plan.cost - energy_cost(plan, inputs)) < 1e-6, "reported cost")
    costs = sum(v for k, v in plan.penalties.items() if k.endswith("_cost"))
    check(abs(plan.objective - (plan.cost + costs)) < 1e-5 * max(1.0, abs(plan.objective)), "objective")
    return bad
