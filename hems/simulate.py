"""``hems simulate``: the simulated home in-process at full speed, priced under a tariff.

The controller sees what it would see live: the state measured at the end of the previous step (no
peeking at the step it decides). Figures are totals over the whole run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from .home import HomeParams
from .rules import HomeState, NoControlStrategy, RulesStrategy
from .sim.environment import Environment
from .sim.home import Controls, SimHome
from .tariff import Tariff, TariffPoint

STRATEGIES = ("none", "rules")
DEFAULT_START = "2026-01-01"


@dataclass(frozen=True, slots=True)
class SimulationSpec:
    days: float
    strategy: str
    seed: int = 1
    start: str = DEFAULT_START  # local date (site time zone)
    step_s: float = 300.0


def make_strategy(name: str, tariff: Tariff, params: HomeParams):
    if name == "none":
        return NoControlStrategy()
    if name == "rules":
        return RulesStrategy(tariff, params)
    raise ValueError(f"unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}")


def local_midnight(day: str, timezone: str) -> float:
    d = date.fromisoformat(day)
    return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(timezone)).timestamp()


def simulate(params: HomeParams, tariff: Tariff, spec: SimulationSpec) -> dict:
    if spec.days <= 0:
        raise ValueError(f"days must be > 0, got {spec.days}")
    wall0 = time.perf_counter()
    tz = params.site.timezone
    step_s = spec.step_s
    n = int(round(spec.days * 86400 / step_s))
    start_ts = local_midnight(spec.start, tz)
    env = Environment(params, seed=spec.seed)
    series = env.series(start_ts, n, step_s)
    imp, exp, periods = tariff.prices(start_ts, n, step_s)
    weekend = pd.DatetimeIndex(pd.to_datetime(series.ts, unit="s", utc=True)).tz_convert(tz).day_of_week >= 5
    weekend = np.asarray(weekend)
    strategy = make_strategy(spec.strategy, tariff, params)
    home = SimHome(params, env, start_ts)

    state = HomeState(
        ts=start_ts,
        pv_power_w=0.0,
        home_load_w=0.0,
        battery_soc_pct=params.battery.initial_soc_pct,
        ev_plugged=bool(series.ev_home[0]),
        ev_soc_pct=params.ev.initial_soc_pct,
        tank_temp_c=None,
    )
    h = step_s / 3600.0
    import_wh = export_wh = pv_wh = load_wh = ev_wh = cost = 0.0
    import_cost = export_credit = 0.0
    batt_throughput_wh = 0.0
    comfort_dh = 0.0
    ev_missed_wh = 0.0
    steps_per_15 = max(1, int(round(900 / step_s)))
    bucket_wh = 0.0
    peak_15_w = 0.0
    hvac = params.hvac
    was_plugged = state.ev_plugged
    for i in range(n):
        point = TariffPoint(periods[i], float(imp[i]), float(exp[i]))
        d = strategy.decide(state, point, bool(weekend[i]))
        controls = Controls(
            battery_charge_power_w=d.battery_charge_power_w,
            pv_limit_w=d.pv_limit_w,
            ev_power_limit_w=d.ev_power_limit_w,
            water_heater_enabled=d.water_heater_enabled,
        )
        r = home.step(step_s, controls, series.sample(i))
        import_wh += r.import_w * h
        export_wh += r.export_w * h
        pv_wh += r.pv_power_w * h
        load_wh += r.home_load_w * h
        ev_wh += r.ev_power_w * h
        import_cost += r.import_w * h / 1000.0 * imp[i]
        export_credit += r.export_w * h / 1000.0 * exp[i]
        batt_throughput_wh += abs(r.battery_power_w) * h
        if r.indoor_temp_c < hvac.comfort_min_c:
            comfort_dh += (hvac.comfort_min_c - r.indoor_temp_c) * h
        elif r.indoor_temp_c > hvac.comfort_max_c:
            comfort_dh += (r.indoor_temp_c - hvac.comfort_max_c) * h
        if was_plugged and not r.ev_plugged:  # departure: how far short of the target did it leave?
            ev_missed_wh += (
                max(0.0, params.ev.target_soc_pct - state.ev_soc_pct) / 100.0 * params.ev.capacity_wh
            )
        was_plugged = r.ev_plugged
        bucket_wh += r.import_w * h
        if (i + 1) % steps_per_15 == 0:
            peak_15_w = max(peak_15_w, bucket_wh / (steps_per_15 * h))
            bucket_wh = 0.0
        state = HomeState(
            ts=r.ts + r.dt_s,
            pv_power_w=r.pv_power_w,
            home_load_w=r.home_load_w,
            battery_soc_pct=r.battery_soc_pct,
            ev_plugged=r.ev_plugged,
            ev_soc_pct=r.ev_soc_pct,
            ev_power_w=r.ev_power_w,
            tank_temp_c=r.tank_temp_c,
        )
    cost = import_cost - export_credit
    self_use_wh = max(0.0, pv_wh - export_wh)
    return {
        "strategy": spec.strategy,
        "days": spec.days,
        "start": spec.start,
        "seed": spec.seed,
        "step_s": step_s,
        "currency": tariff.currency,
        "cost": round(cost, 2),
        "import_cost": round(import_cost, 2),
        "export_credit": round(export_credit, 2),
        "import_kwh": round(import_wh / 1000, 2),
        "export_kwh": round(export_wh / 1000, 2),
        "pv_kwh": round(pv_wh / 1000, 2),
        "home_load_kwh": round(load_wh / 1000, 2),
        "ev_kwh": round(ev_wh / 1000, 2),
        "self_consumption_pct": round(100.0 * self_use_wh / pv_wh, 1) if pv_wh > 0 else 0.0,
        "peak_import_kw": round(peak_15_w / 1000, 2),
        "battery_cycles": round(batt_throughput_wh / 2 / params.battery.capacity_wh, 2),
        "comfort_degree_hours": round(comfort_dh, 2),
        "ev_missed_kwh": round(ev_missed_wh / 1000, 2),
        "runtime_s": round(time.perf_counter() - wall0, 2),
    }
