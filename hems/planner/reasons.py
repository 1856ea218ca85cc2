"""Why the plan does what it does, per step: short labels for the dashboard, derived after the solve.

They are read off the solution and the inputs (prices, PV, DR windows, comfort band, departure), never
fed back into the optimisation.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from hems.home import HomeParams
from hems.planner.types import Plan, PlanInputs

ON_W = 10.0  # below this a power is "off" for the reasons
WATER_HEATER_ON_W = 100.0  # above the tank's standby loss: holding temperature alone is no news
LOOKAHEAD_H = 12.0  # how far ahead "before peak" looks
MAX_REASONS = 5


def _local_hhmm(ts: float, tz: str) -> str:
    try:
        zone = ZoneInfo(tz)
    except Exception:  # unknown zone name: show UTC rather than fail the plan
        zone = ZoneInfo("UTC")
    return datetime.fromtimestamp(ts, zone).strftime("%H:%M")


def _price_labels(inputs: PlanInputs, price: np.ndarray) -> list[str]:
    n = price.size
    if inputs.period_names is not None and len(inputs.period_names) == n:
        return [f"{name} price" if name else "" for name in inputs.period_names]
    lo, hi = float(price.min()), float(price.max())
    if hi - lo < 1e-9:
        return [""] * n
    q1, q2 = np.quantile(price, [1 / 3, 2 / 3])
    return ["low price" if p <= q1 else "high price" if p > q2 else "mid price" for p in price]


def derive_reasons(
    params: HomeParams,
    inputs: PlanInputs,
    plan: Plan,
    *,
    hvac_cooling_w: np.ndarray,
    hvac_heating_w: np.ndarray,
) -> tuple[tuple[str, ...], ...]:
    n = plan.steps
    dt = plan.step_h
    price = np.asarray(inputs.import_price_per_kwh, dtype=float)
    exp_price = np.asarray(inputs.export_price_per_kwh, dtype=float)
    labels = _price_labels(inputs, price)
    pv_fc = np.maximum(np.asarray(inputs.pv_forecast_w, dtype=float), 0.0)
    base = np.maximum(np.asarray(inputs.base_load_forecast_w, dtype=float), 0.0)
    defer_w = np.zeros(n)
    for d in inputs.deferrables:
        if d.name in plan.deferrable_on:
            defer_w += plan.deferrable_on[d.name] * d.power_w
    home_w = base + plan.hvac_power_w + plan.water_heater_w + defer_w
    c_min = np.broadcast_to(np.asarray(inputs.comfort_min_c, dtype=float), (n,))
    c_max = np.broadcast_to(np.asarray(inputs.comfort_max_c, dtype=float), (n,))
    bat = params.battery
    soc_prev = np.concatenate(([inputs.battery_soc_pct], plan.battery_soc_pct[:-1]))
    tank_prev = np.concatenate(([inputs.tank_temp_c], plan.tank_temp_c[:-1]))
    tank_min = params.water_heater.min_temp_c
    service_w = params.site.service_limit_w
    look = max(int(round(LOOKAHEAD_H / dt)), 1)
    tz = params.site.timezone

    # DR windows active per step, and the next one to start
    dr_text: list[list[str]] = [[] for _ in range(n)]
    dr_starts: list[tuple[int, str]] = []
    for w in inputs.dr_windows:
        s0, s1 = max(w.start_step, 0), min(w.end_step, n)
        name = f"DR event {w.event_id}" if w.event_id else "DR event"
        if w.import_cap_w is not None:
            what = f"{name}: import cap {w.import_cap_w / 1000:.1f} kW"
        elif w.shed_w is not None:
            what = f"{name}: shed {w.shed_w / 1000:.1f} kW"
        else:
            what = name
        for k in range(s0, s1):
            dr_text[k].append(what)
        if w.start_step > 0:
            dr_starts.append((w.start_step, name))
    dr_starts.sort()

    def before(k: int) -> str | None:
        """What dearer time (or DR event) ahead the step prepares for, if any."""
        for start, name in dr_starts:
            if k < start <= k + look:
                return name
        ahead = price[k + 1 : k + 1 + look]
        if ahead.size == 0 or ahead.max() <= price[k] + 5e-3:
            return None
        j = k + 1 + int(np.argmax(ahead))
        lab = labels[j].removesuffix(" price")
        return lab if lab and labels[j] != labels[k] else "higher price"

    dep_text = None
    if inputs.ev_departure_step is not None:
        dep_text = _local_hhmm(inputs.start_ts + inputs.ev_departure_step * inputs.step_s, tz)
    ev_short = plan.penalties.get("ev_target_missed_wh", 0.0) > 1.0
    reserve = bat.reserve_soc_pct

    out: list[tuple[str, ...]] = []
    for k in range(n):
        r: list[str] = list(dr_text[k])
        if plan.grid_import_w[k] >= service_w - ON_W:
            r.append(f"service limit {service_w / 1000:.1f} kW")
        if labels[k]:
            r.append(labels[k])
        if pv_fc[k] > home_w[k] + ON_W:
            r.append("PV surplus")
        # battery
        if plan.battery_charge_w[k] > ON_W and plan.grid_import_w[k] > ON_W:
            if soc_prev[k] < reserve - 0.1:
                r.append("restoring battery reserve")
            else:
                ahead = before(k)
                r.append(f"charging battery before {ahead}" if ahead else "charging battery")
        elif plan.battery_charge_w[k] > ON_W:
            r.append("storing PV surplus")
        elif plan.battery_discharge_w[k] > ON_W and dr_text[k] and plan.battery_soc_pct[k] < reserve - 0.1:
            r.append("DR event: using battery reserve")
        elif plan.battery_discharge_w[k] > ON_W:
            r.append("battery supplies the home")
        elif (
            plan.battery_discharge_w[k] <= ON_W
            and abs(plan.battery_soc_pct[k] - reserve) < 0.1
            and plan.grid_import_w[k] > ON_W
        ):
            r.append("battery reserve")
        # EV
        if plan.ev_charge_w[k] > ON_W:
            r.append(f"charging EV for departure {dep_text}" if dep_text else "charging EV to target")
            if ev_short:
                r.append("EV target not reachable")
        if plan.ev_discharge_w[k] > ON_W:
            r.append("V2H: EV supplies the home")
        # HVAC
        t = plan.indoor_temp_c[k]
        if t > c_max[k] + 0.05 or t < c_min[k] - 0.05:
            r.append("comfort band not met")
        elif hvac_cooling_w[k] > ON_W:
            ahead = before(k) if t < c_max[k] - 0.25 else None
            r.append(f"pre-cooling before {ahead}" if ahead else "comfort band")
        elif hvac_heating_w[k] > ON_W:
            ahead = before(k) if t > c_min[k] + 0.25 else None
            r.append(f"pre-heating before {ahead}" if ahead else "comfort band")
        # water heater
        if plan.water_heater_w[k] > WATER_HEATER_ON_W:
            if plan.tank_temp_c[k] < tank_min - 0.05:
                r.append("hot water below minimum")
            elif plan.tank_temp_c[k] > tank_prev[k] + 0.05:
                ahead = before(k)
                r.append(f"pre-heating water before {ahead}" if ahead else "heating water")
            elif plan.tank_temp_c[k] < tank_min + 0.1:
                r.append("keeping hot water at minimum")
            else:
                r.append("heating water")
        for name, on in plan.deferrable_on.items():
            if on[k] and (k == 0 or not on[k - 1]):
                r.append(f"{name}: cheapest slot in its window")
        # curtailment
        if plan.pv_curtailed_w[k] > ON_W:
            if exp_price[k] < 0:
                r.append("negative export price: curtailing")
            elif inputs.export_limit_w is not None and plan.grid_export_w[k] >= inputs.export_limit_w - ON_W:
                r.append("export limit: curtailing")
            elif plan.pv_used_w[k] + plan.battery_discharge_w[k] - plan.battery_charge_w[k] >= (
                params.pv.inverter_ac_w - ON_W
            ):
                r.append("inverter limit: curtailing")
            else:
                r.append("curtailing PV")
        elif plan.grid_export_w[k] > ON_W and plan.battery_soc_pct[k] >= bat.max_soc_pct - 0.1:
            r.append("battery full: exporting")
        out.append(tuple(dict.fromkeys(r))[:MAX_REASONS])
    return tuple(out)
