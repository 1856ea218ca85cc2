"""``hems simulate``: the simulated home in-process at full speed, priced under a tariff.

Strategies:
- ``none``: every device on its own defaults (battery self-consumption, EV at full power on arrival);
- ``rules``: the reference home's rule table (``hems.rules``);
- ``planner``: the model-predictive planner re-planning every 15 min on forecasts learned from what it
  measured (forecast error included);
- ``optimal``: the perfect-foresight bound (``hems.optimal``): the planning model told the true future
  (weather, load, hot water, EV trips), committing a day at a time with a 72 h look-ahead.

The controller sees what it would see live: the state measured at the end of the previous step (no
peeking at the step it decides). Figures are totals over the whole run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from .forecast import step_index
from .home import HomeParams
from .limits import LimitInputs, apply_limits
from .mpc import Outlook, PlannerStrategy
from .rules import HomeState, NoControlStrategy, RulesStrategy
from .sim.environment import Environment, EnvSeries
from .sim.home import Controls, SimHome
from .tariff import Tariff, TariffPoint

STRATEGIES = ("none", "rules", "planner", "optimal")
DEFAULT_START = "2026-01-01"
PLAN_STEP_S = 900.0
NO_LIMITS = LimitInputs()


@dataclass(frozen=True, slots=True)
class SimulationSpec:
    days: float
    strategy: str
    seed: int = 1
    start: str = DEFAULT_START  # local date (site time zone)
    step_s: float = 300.0
    load_csv: str | None = None  # measured household power replaces the simulated base load
    weather_file: str | None = None  # a TMY3 file replaces the synthetic weather
    dr_events: tuple[tuple[float, float, float], ...] = ()  # (start ts, duration s, import cap W)


class FixedDREvents:
    """Utility DR events known in advance (``--dr-event``), offered to the planner and the limits like the
    live DR lifecycle does: an import cap over a window."""

    def __init__(self, events: tuple[tuple[float, float, float], ...]) -> None:
        self.events = events

    def cap_at(self, ts: float) -> float | None:
        caps = [cap for start, dur, cap in self.events if start <= ts < start + dur]
        return min(caps) if caps else None

    def planner_windows(self, start_ts: float, step_s: float, n_steps: int, forecast_w=None) -> tuple:
        from .planner.types import DRWindow

        out = []
        for i, (start, dur, cap) in enumerate(self.events):
            k0 = max(0, int(np.floor((start - start_ts) / step_s)))
            k1 = min(n_steps, int(np.ceil((start + dur - start_ts) / step_s)))
            if k0 < k1:
                out.append(DRWindow(k0, k1, import_cap_w=cap, event_id=f"sim-{i + 1}"))
        return tuple(out)

    def prices(self, start_ts: float, step_s: float, n_steps: int):
        return None

    def level_in_force(self, ts: float | None = None):
        return None

    def note_forecast(self, *args) -> None:
        return None


def parse_dr_event(text: str, timezone: str) -> tuple[float, float, float]:
    """``START,HOURS,CAP_KW`` with START a local ISO date/time, e.g. ``2026-07-07T17:00,2,2.5``."""
    parts = text.split(",")
    if len(parts) != 3:
        raise InputError(f"--dr-event {text!r}: expected START,HOURS,CAP_KW such as 2026-07-07T17:00,2,2.5")
    try:
        start = datetime.fromisoformat(parts[0])
        hours, cap_kw = float(parts[1]), float(parts[2])
    except ValueError as exc:
        raise InputError(f"--dr-event {text!r}: {exc}") from None
    if hours <= 0 or cap_kw < 0:
        raise InputError(f"--dr-event {text!r}: hours must be > 0 and the cap >= 0 kW")
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(timezone))
    return start.timestamp(), hours * 3600.0, cap_kw * 1000.0


class InputError(ValueError):
    """A user-supplied input file is unusable; the message names the file, the line and what is wrong."""


def load_power_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A CSV of ``timestamp, power_w`` rows (ISO 8601 or POSIX seconds; any regular step; a header is allowed).

    Returns (POSIX seconds, W), sorted. Timestamps without a zone are taken as UTC.
    """
    import csv

    ts: list[float] = []
    watts: list[float] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for lineno, row in enumerate(csv.reader(fh), start=1):
                if not row or row[0].strip().startswith("#"):
                    continue
                if len(row) < 2:
                    raise InputError(f"{path}:{lineno}: expected 'timestamp,power_w', got {row!r}")
                t_text, w_text = row[0].strip(), row[1].strip()
                try:
                    w = float(w_text)
                except ValueError:
                    if lineno == 1:  # a header line
                        continue
                    raise InputError(f"{path}:{lineno}: power {w_text!r} is not a number") from None
                try:
                    t = float(t_text)
                except ValueError:
                    try:
                        dt = datetime.fromisoformat(t_text)
                    except ValueError:
                        raise InputError(
                            f"{path}:{lineno}: timestamp {t_text!r} is not ISO 8601 or POSIX seconds"
                        ) from None
                    t = (dt if dt.tzinfo else dt.replace(tzinfo=ZoneInfo("UTC"))).timestamp()
                if not np.isfinite(w) or w < 0:
                    raise InputError(f"{path}:{lineno}: power {w} W must be a finite number >= 0")
                ts.append(t)
                watts.append(w)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    if len(ts) < 2:
        raise InputError(f"{path}: needs at least two rows of timestamp,power_w")
    order = np.argsort(ts)
    return np.asarray(ts)[order], np.asarray(watts)[order]


class _MeasuredLoad:
    """Wraps an Environment so that every series it gives carries the measured base load."""

    def __init__(self, env: Environment, ts: np.ndarray, watts: np.ndarray, path: str) -> None:
        self.env = env
        self.path = path
        # mean power over [t_k, t_k+1) held per sample; energy integrated exactly for any step
        step = np.median(np.diff(ts))
        self.t0, self.t1 = float(ts[0]), float(ts[-1] + step)
        edges = np.append(ts, self.t1)
        self.edges = edges
        self.cum_wh = np.concatenate(([0.0], np.cumsum(watts * np.diff(edges) / 3600.0)))

    def series(self, start_ts: float, n: int, step_s: float) -> EnvSeries:
        s = self.env.series(start_ts, n, step_s)
        a, b = start_ts, start_ts + n * step_s
        if a < self.t0 - 1 or b > self.t1 + 1:

            def when(t: float) -> str:
                return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")

            raise InputError(
                f"{self.path} covers {when(self.t0)} to {when(self.t1)}; "
                f"the simulation needs {when(a)} to {when(b)} (use --start and --days inside it)"
            )
        bounds = start_ts + np.arange(n + 1) * step_s
        e = np.interp(bounds, self.edges, self.cum_wh)
        load = np.diff(e) * 3600.0 / step_s
        return EnvSeries(
            ts=s.ts,
            step_s=s.step_s,
            pv_available_w=s.pv_available_w,
            outdoor_temp_c=s.outdoor_temp_c,
            base_load_w=load,
            hot_water_l=s.hot_water_l,
            ev_home=s.ev_home,
            ev_trip_wh=s.ev_trip_wh,
        )

    def __getattr__(self, name):
        return getattr(self.env, name)


class OracleOutlook:
    """The true future, from the same environment the simulated home runs in."""

    def __init__(self, params: HomeParams, series: EnvSeries) -> None:
        self.params = params
        self.s = series
        wh = params.water_heater
        self.hot_water_wh = series.hot_water_l * 4.186 * (wh.setpoint_c - wh.cold_water_c) / 3.6

    def outlook(self, state: HomeState, start_ts: float, n: int, step_s: float) -> Outlook:
        if step_s != self.s.step_s:
            raise ValueError(f"the perfect-foresight outlook is at {self.s.step_s} s steps, asked {step_s}")
        i0 = step_index(start_ts, float(self.s.ts[0]), step_s)
        sl = slice(i0, i0 + n)
        home = np.asarray(self.s.ev_home[sl], dtype=bool)
        plugged = np.zeros(n, dtype=bool)
        departure: int | None = None
        soc = state.ev_soc_pct if state.ev_soc_pct is not None else self.params.ev.initial_soc_pct
        if state.ev_plugged:
            away = np.flatnonzero(~home)
            departure = int(away[0]) if away.size else None
            plugged[: departure if departure is not None else n] = True
        else:  # plan for the next arrival: the car comes home with what the trip left it
            back = np.flatnonzero(home)
            if back.size:
                a = int(back[0])
                trip_wh = float(np.sum(self.s.ev_trip_wh[i0 : i0 + a + 1]))
                soc = max(0.0, soc - 100.0 * trip_wh / self.params.ev.capacity_wh)
                away = np.flatnonzero(~home[a:])
                departure = a + int(away[0]) if away.size else None
                plugged[a : departure if departure is not None else n] = True
        return Outlook(
            pv_w=np.asarray(self.s.pv_available_w[sl], dtype=float),
            base_load_w=np.asarray(self.s.base_load_w[sl], dtype=float),
            outdoor_temp_c=np.asarray(self.s.outdoor_temp_c[sl], dtype=float),
            hot_water_wh=self.hot_water_wh[sl],
            ev_plugged=plugged,
            ev_departure_step=departure,
            ev_soc_pct=soc,
        )


def make_strategy(
    name: str,
    tariff: Tariff,
    params: HomeParams,
    env: Environment,
    start_ts: float,
    n_plan: int,
    step_s: float,
    dr: FixedDREvents | None = None,
):
    if name == "none":
        return NoControlStrategy()
    if name == "rules":
        return RulesStrategy(tariff, params)
    if name == "planner":
        s = PlannerStrategy(tariff, params, step_s=PLAN_STEP_S, decision_interval_s=step_s, dr=dr)
        s.outlook.pv.precompute(start_ts, n_plan + s.horizon_steps, PLAN_STEP_S)
        return s
    raise ValueError(f"unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}")


def local_midnight(day: str, timezone: str) -> float:
    d = date.fromisoformat(day)
    return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(timezone)).timestamp()


def _state(r, ts: float) -> HomeState:
    return HomeState(
        ts=ts,
        pv_power_w=r.pv_power_w,
        home_load_w=r.home_load_w,
        battery_soc_pct=r.battery_soc_pct,
        ev_plugged=r.ev_plugged,
        ev_soc_pct=r.ev_soc_pct,
        ev_power_w=r.ev_power_w,
        tank_temp_c=r.tank_temp_c,
        indoor_temp_c=r.indoor_temp_c,
        outdoor_temp_c=r.outdoor_temp_c,
        hvac_power_w=r.hvac_power_w,
        water_heater_power_w=r.water_heater_power_w,
    )


def simulate(params: HomeParams, tariff: Tariff, spec: SimulationSpec) -> dict:
    if spec.days <= 0:
        raise ValueError(f"days must be > 0, got {spec.days}")
    if spec.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {spec.strategy!r}; allowed: {', '.join(STRATEGIES)}")
    wall0 = time.perf_counter()
    tz = params.site.timezone
    step_s = spec.step_s
    n = int(round(spec.days * 86400 / step_s))
    start_ts = local_midnight(spec.start, tz)
    weather = None
    if spec.weather_file:
        from .sim.weather import load_tmy3

        try:
            weather = load_tmy3(spec.weather_file)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{spec.weather_file}: not a readable TMY3 file ({exc})") from exc
    env = Environment(params, seed=spec.seed, weather=weather)
    if spec.load_csv:
        env = _MeasuredLoad(env, *load_power_csv(spec.load_csv), spec.load_csv)
    if spec.strategy == "optimal":  # a bound computed in the planning model, not a run of the simulated home
        from .optimal import optimal_bound

        bound = optimal_bound(params, tariff, env, start_ts, spec.days)
        return {
            "strategy": "optimal",
            "days": spec.days,
            "start": spec.start,
            "seed": spec.seed,
            "step_s": 900.0,
            "currency": tariff.currency,
            **bound,
        }
    series = env.series(start_ts, n, step_s)
    imp, exp, periods = tariff.prices(start_ts, n, step_s)
    weekend = np.asarray(
        pd.DatetimeIndex(pd.to_datetime(series.ts, unit="s", utc=True)).tz_convert(tz).day_of_week >= 5
    )
    n_plan = int(np.ceil(spec.days * 86400 / PLAN_STEP_S))
    dr = FixedDREvents(spec.dr_events) if spec.dr_events else None
    strategy = make_strategy(spec.strategy, tariff, params, env, start_ts, n_plan, step_s, dr)
    dr_intervals = dr_met = 0
    dr_bucket_cap: float | None = None
    home = SimHome(params, getattr(env, "env", env), start_ts)

    state = HomeState(
        ts=start_ts,
        pv_power_w=0.0,
        home_load_w=0.0,
        battery_soc_pct=params.battery.initial_soc_pct,
        ev_plugged=bool(series.ev_home[0]),
        ev_soc_pct=params.ev.initial_soc_pct,
        indoor_temp_c=params.hvac.initial_indoor_c,
        outdoor_temp_c=float(series.outdoor_temp_c[0]),
    )
    h = step_s / 3600.0
    import_wh = export_wh = pv_wh = load_wh = ev_wh = 0.0
    import_cost = export_credit = 0.0
    batt_throughput_wh = 0.0
    comfort_dh = 0.0
    ev_missed_wh = 0.0
    steps_per_15 = max(1, int(round(900 / step_s)))
    bucket_wh = 0.0
    peak_15_w = 0.0
    month_peak_w: dict[tuple[int, int], float] = {}  # (year, month) local -> highest 15-min import
    months = pd.DatetimeIndex(pd.to_datetime(series.ts, unit="s", utc=True)).tz_convert(tz)
    month_key = list(zip(np.asarray(months.year), np.asarray(months.month), strict=True))
    hvac = params.hvac
    observe = getattr(strategy, "observe", None)
    for i in range(n):
        point = TariffPoint(periods[i], float(imp[i]), float(exp[i]))
        d = strategy.decide(state, point, bool(weekend[i]))
        cap = dr.cap_at(state.ts) if dr else None
        if spec.strategy != "none":  # the same limits as live (service limit, DR caps, reserve)
            d = apply_limits(d, state, params, NO_LIMITS if cap is None else LimitInputs(dr_import_cap_w=cap))
        if i % steps_per_15 == 0:
            dr_bucket_cap = cap
        controls = Controls(
            battery_charge_power_w=d.battery_charge_power_w,
            pv_limit_w=d.pv_limit_w,
            ev_power_limit_w=d.ev_power_limit_w,
            water_heater_enabled=d.water_heater_enabled,
            hvac_mode=d.hvac_mode or "auto",
            heat_setpoint_c=d.heat_setpoint_c,
            cool_setpoint_c=d.cool_setpoint_c,
            battery_grid_target_w=d.grid_target_w,
            battery_min_w=d.battery_min_w,
            battery_max_w=d.battery_max_w,
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
        if state.ev_plugged and not r.ev_plugged:  # departure: how far short of the target did it leave?
            ev_missed_wh += (
                max(0.0, params.ev.target_soc_pct - state.ev_soc_pct) / 100.0 * params.ev.capacity_wh
            )
        bucket_wh += r.import_w * h
        if (i + 1) % steps_per_15 == 0:
            avg_w = bucket_wh / (steps_per_15 * h)
            peak_15_w = max(peak_15_w, avg_w)
            key = month_key[i]
            month_peak_w[key] = max(month_peak_w.get(key, 0.0), avg_w)
            if dr_bucket_cap is not None:  # DR is verified on 15-min interval averages
                dr_intervals += 1
                dr_met += avg_w <= dr_bucket_cap * 1.01 + 10.0
            bucket_wh = 0.0
        state = _state(r, r.ts + r.dt_s)
        if observe is not None:
            observe(state, step_s)
    demand_charge = tariff.demand_charge_per_kw * sum(month_peak_w.values()) / 1000.0
    cost = import_cost - export_credit + demand_charge
    self_use_wh = max(0.0, pv_wh - export_wh)
    result = {
        "strategy": spec.strategy,
        "days": spec.days,
        "start": spec.start,
        "seed": spec.seed,
        "step_s": step_s,
        "currency": tariff.currency,
        "cost": round(cost, 2),
        "import_cost": round(import_cost, 2),
        "export_credit": round(export_credit, 2),
        "demand_charge": round(demand_charge, 2),
        "import_kwh": round(import_wh / 1000, 2),
        "export_kwh": round(export_wh / 1000, 2),
        "pv_kwh": round(pv_wh / 1000, 2),
        "base_load_kwh": round(float(np.sum(series.base_load_w)) * h / 1000, 2),
        "home_load_kwh": round(load_wh / 1000, 2),
        "ev_kwh": round(ev_wh / 1000, 2),
        "self_consumption_pct": round(100.0 * self_use_wh / pv_wh, 1) if pv_wh > 0 else 0.0,
        "peak_import_kw": round(peak_15_w / 1000, 2),
        "battery_cycles": round(batt_throughput_wh / 2 / params.battery.capacity_wh, 2),
        "comfort_degree_hours": round(comfort_dh, 2),
        "ev_missed_kwh": round(ev_missed_wh / 1000, 2),
        "dr_intervals": dr_intervals,
        "dr_compliance_pct": round(100.0 * dr_met / dr_intervals, 1) if dr_intervals else None,
        "final_battery_soc_pct": round(home.battery_soc_pct, 1),
        "final_ev_soc_pct": round(home.ev_soc_pct, 1),
    }
    if isinstance(strategy, PlannerStrategy):
        result.update(strategy.stats.summary())
    result["runtime_s"] = round(time.perf_counter() - wall0, 2)
    return result
