"""The perfect-foresight bound: what the home could have cost with the future known exactly.

The planner is told the true weather, load, hot-water draws and EV trips, and commits one local day at a
time with a 72 h look-ahead; each day starts from the state the previous day's committed plan ended in.
The figures are those of the committed plans in the planning model (15-min steps), so this is a lower
bound for the planner and the rule table run in the simulated home, not a simulation of its own. (One LP
over a whole year gives the same figure within a fraction of a percent, at minutes and hundreds of MB.)
"""

from __future__ import annotations

import time

import numpy as np

from .home import HomeParams
from .planner import PlannerSettings, plan
from .planner.types import PlanInputs
from .rules import HomeState
from .sim.environment import Environment
from .tariff import Tariff

STEP_S = 900.0
HORIZON_STEPS = 288  # 72 h look-ahead


def optimal_bound(params: HomeParams, tariff: Tariff, env: Environment, start_ts: float, days: float) -> dict:
    # imported here: simulate imports this module, and the oracle lives there
    from .simulate import OracleOutlook

    wall0 = time.perf_counter()
    n_total = int(round(days * 86400 / STEP_S))
    truth = env.series(start_ts, n_total + HORIZON_STEPS, STEP_S)
    oracle = OracleOutlook(params, truth)
    imp_all, exp_all, names_all = tariff.prices(start_ts, n_total + HORIZON_STEPS, STEP_S)
    settings = PlannerSettings()
    hvac, wh, ev = params.hvac, params.water_heater, params.ev
    dt = STEP_S / 3600.0

    soc, ev_soc = params.battery.initial_soc_pct, ev.initial_soc_pct
    indoor, tank = hvac.initial_indoor_c, wh.setpoint_c
    totals = dict.fromkeys(
        (
            "import_wh",
            "export_wh",
            "import_cost",
            "export_credit",
            "pv_used_wh",
            "pv_wh",
            "base_wh",
            "hvac_wh",
            "wh_wh",
            "ev_wh",
            "batt_wh",
            "comfort_dh",
            "ev_missed_wh",
        ),
        0.0,
    )
    peak_w = 0.0
    month_peak: dict[tuple[int, int], float] = {}
    solve_ms: list[float] = []
    i0 = 0
    midnights = _local_midnights(start_ts, n_total, params.site.timezone)
    while i0 < n_total:
        i1 = min(next((m for m in midnights if m > i0), n_total), n_total)
        state = HomeState(
            ts=start_ts + i0 * STEP_S,
            pv_power_w=0.0,
            home_load_w=0.0,
            battery_soc_pct=soc,
            ev_plugged=bool(truth.ev_home[i0]),
            ev_soc_pct=ev_soc,
            indoor_temp_c=indoor,
            tank_temp_c=tank,
        )
        o = oracle.outlook(state, state.ts, HORIZON_STEPS, STEP_S)
        sl = slice(i0, i0 + HORIZON_STEPS)
        inputs = PlanInputs(
            start_ts=state.ts,
            step_s=STEP_S,
            import_price_per_kwh=np.asarray(imp_all[sl], dtype=float),
            export_price_per_kwh=np.asarray(exp_all[sl], dtype=float),
            period_names=tuple(names_all[sl]),
            pv_forecast_w=o.pv_w,
            base_load_forecast_w=o.base_load_w,
            outdoor_temp_c=o.outdoor_temp_c,
            hot_water_wh=o.hot_water_wh,
            battery_soc_pct=soc,
            ev_plugged=o.ev_plugged,
            ev_soc_pct=o.ev_soc_pct,
            ev_departure_step=o.ev_departure_step,
            ev_target_soc_pct=ev.target_soc_pct,
            indoor_temp_c=indoor,
            tank_temp_c=tank,
            comfort_min_c=np.full(HORIZON_STEPS, hvac.comfort_min_c),
            comfort_max_c=np.full(HORIZON_STEPS, hvac.comfort_max_c),
            allow_ev_v2h=ev.v2h,
        )
        p = plan(params, inputs, time_limit_s=30.0, settings=settings)
        solve_ms.append(p.build_ms + p.solve_ms)
        k = i1 - i0  # the committed day
        imp_w, exp_w = p.grid_import_w[:k], p.grid_export_w[:k]
        totals["import_wh"] += float(imp_w.sum()) * dt
        totals["export_wh"] += float(exp_w.sum()) * dt
        totals["import_cost"] += float(np.sum(imp_w * inputs.import_price_per_kwh[:k])) * dt / 1000.0
        totals["export_credit"] += float(np.sum(exp_w * inputs.export_price_per_kwh[:k])) * dt / 1000.0
        totals["pv_used_wh"] += float(p.pv_used_w[:k].sum()) * dt
        totals["pv_wh"] += float(o.pv_w[:k].sum()) * dt
        totals["base_wh"] += float(o.base_load_w[:k].sum()) * dt
        totals["hvac_wh"] += float(p.hvac_power_w[:k].sum()) * dt
        totals["wh_wh"] += float(p.water_heater_w[:k].sum()) * dt
        totals["ev_wh"] += float(p.ev_charge_w[:k].sum()) * dt
        totals["batt_wh"] += float((p.battery_charge_w[:k] + p.battery_discharge_w[:k]).sum()) * dt
        t_in = p.indoor_temp_c[:k]
        totals["comfort_dh"] += (
            float(np.sum(np.maximum(hvac.comfort_min_c - t_in, 0) + np.maximum(t_in - hvac.comfort_max_c, 0)))
            * dt
        )
        if o.ev_departure_step is not None and o.ev_departure_step <= k:
            totals["ev_missed_wh"] += p.penalties.get("ev_target_missed_wh", 0.0)
        peak_w = max(peak_w, float(imp_w.max(initial=0.0)))
        for j in range(k):
            key = _month(start_ts + (i0 + j) * STEP_S, params.site.timezone)
            month_peak[key] = max(month_peak.get(key, 0.0), float(imp_w[j]))
        # the next day starts where this day's committed plan ended (trips that came home today cost energy)
        soc = float(p.battery_soc_pct[k - 1])
        # EV energy book: what the plan charged today less the trips that came home today (i0, i1]
        eta = ev.charge_efficiency
        charged_wh = (eta * float(p.ev_charge_w[:k].sum()) - float(p.ev_discharge_w[:k].sum()) / eta) * dt
        driven_wh = float(np.sum(truth.ev_trip_wh[i0 + 1 : i1 + 1]))
        ev_soc = min(100.0, max(0.0, ev_soc + 100.0 * (charged_wh - driven_wh) / ev.capacity_wh))
        indoor, tank = float(p.indoor_temp_c[k - 1]), float(p.tank_temp_c[k - 1])
        i0 = i1
    demand = tariff.demand_charge_per_kw * sum(month_peak.values()) / 1000.0
    cost = totals["import_cost"] - totals["export_credit"] + demand
    ms = np.asarray(solve_ms)
    return {
        "cost": round(cost, 2),
        "import_cost": round(totals["import_cost"], 2),
        "export_credit": round(totals["export_credit"], 2),
        "demand_charge": round(demand, 2),
        "import_kwh": round(totals["import_wh"] / 1000, 2),
        "export_kwh": round(totals["export_wh"] / 1000, 2),
        "pv_kwh": round(totals["pv_wh"] / 1000, 2),
        "base_load_kwh": round(totals["base_wh"] / 1000, 2),
        "home_load_kwh": round((totals["base_wh"] + totals["hvac_wh"] + totals["wh_wh"]) / 1000, 2),
        "ev_kwh": round(totals["ev_wh"] / 1000, 2),
        "self_consumption_pct": round(
            100.0 * (totals["pv_used_wh"] - totals["export_wh"]) / totals["pv_wh"], 1
        )
        if totals["pv_wh"] > 0
        else 0.0,
        "peak_import_kw": round(peak_w / 1000, 2),
        "battery_cycles": round(totals["batt_wh"] / 2 / params.battery.capacity_wh, 2),
        "comfort_degree_hours": round(totals["comfort_dh"], 2),
        "ev_missed_kwh": round(totals["ev_missed_wh"] / 1000, 2),
        "final_battery_soc_pct": round(soc, 1),
        "final_ev_soc_pct": round(ev_soc, 1),
        "plans": len(solve_ms),
        "failures": 0,
        "solve_ms_median": round(float(np.median(ms)), 2),
        "solve_ms_p95": round(float(np.percentile(ms, 95)), 2),
        "runtime_s": round(time.perf_counter() - wall0, 2),
    }


def _local_midnights(start_ts: float, n: int, timezone: str) -> list[int]:
    """Step indices (at 15 min) of every local midnight after the start, DST days included."""
    import pandas as pd

    idx = pd.DatetimeIndex(pd.to_datetime(start_ts + np.arange(n) * STEP_S, unit="s", utc=True)).tz_convert(
        timezone
    )
    return [
        int(i) for i in np.flatnonzero((np.asarray(idx.hour) == 0) & (np.asarray(idx.minute) == 0)) if i > 0
    ]


def _month(ts: float, timezone: str) -> tuple[int, int]:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    d = datetime.fromtimestamp(ts, ZoneInfo(timezone))
    return d.year, d.month
