"""Model-predictive control: re-plan every few minutes (and at once on an event), follow the plan between.

``PlannerStrategy`` is a strategy like the rule table: ``decide(state)`` returns a ``Decision``. Inside,
it keeps the current plan (``hems.planner``), re-plans every ``replan_s`` or when ``request_replan`` was
called (DR event received or cancelled, EV plugged or unplugged, a setting changed), warm-starting from
the previous plan, and follows the plan's current step:

- battery: the planned power; when the plan intends to import nothing in this step, the battery also
  absorbs the forecast error so that the grid stays at the planned value (measured-grid correction);
- EV: the planned charging power, rounded to what a charger can do (0, or at least the 6 A minimum);
- water heater: on for the planned share of the step (duty cycle), and always when the tank is below
  its minimum;
- HVAC: the planned indoor temperature becomes the set point (pre-cooling, setback come from the plan);
- PV: limited to the planned use when the plan curtails.

When the planner fails (no solution in its time budget, bad inputs), the rule table takes over for that
step, says so in the reasons, and the next cycle tries again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .dr import DRManager
from .forecast import (
    LoadForecaster,
    PVForecaster,
    TemperatureForecaster,
    ev_departure_ts,
    hot_water_profile_wh,
    step_index,
)
from .home import HomeParams
from .planner import Plan, PlanInputs, PlannerError, PlannerSettings, plan
from .planner.types import DRWindow
from .rules import Decision, HomeState, RulesStrategy
from .tariff import Tariff, TariffPoint

log = logging.getLogger(__name__)

GRID_TRACKING_IMPORT_W = 50.0  # a planned import below this means "the plan intends no import now"
TRACKING_DISCHARGE_PRICE_SHARE = (
    0.9  # at >= 90 % of the dearest price ahead, cover surprises from the battery
)


@dataclass(frozen=True, slots=True)
class Outlook:
    """What the planner is told about the horizon (forecasts, or the truth for the perfect-foresight run)."""

    pv_w: np.ndarray
    base_load_w: np.ndarray
    outdoor_temp_c: np.ndarray
    hot_water_wh: np.ndarray
    ev_plugged: np.ndarray
    ev_departure_step: int | None
    ev_soc_pct: float  # SOC the plan starts from (now, or at the forecast arrival)


class ForecastOutlook:
    """Realistic outlook: forecasters that learn from what the gateway measured."""

    def __init__(self, params: HomeParams) -> None:
        self.params = params
        self.pv = PVForecaster(params)
        self.load = LoadForecaster(params)
        self.temp = TemperatureForecaster(params)

    def observe(self, state: HomeState, dt_s: float) -> None:
        self.pv.observe(state.ts, state.pv_power_w, dt_s)
        base = max(0.0, state.home_load_w - state.hvac_power_w - state.water_heater_power_w)
        self.load.observe(state.ts, base, dt_s)
        if state.outdoor_temp_c is not None:
            self.temp.observe(state.ts, state.outdoor_temp_c)

    def outlook(self, state: HomeState, start_ts: float, n: int, step_s: float) -> Outlook:
        plugged = np.zeros(n, dtype=bool)
        departure: int | None = None
        if state.ev_plugged:
            dep_ts = ev_departure_ts(self.params, state.ts)
            departure = max(0, step_index(dep_ts, start_ts, step_s))
            plugged[: min(departure, n)] = True
            if departure >= n:
                departure = None
        return Outlook(
            pv_w=self.pv.forecast(start_ts, n, step_s, now=state.ts),
            base_load_w=self.load.forecast(start_ts, n, step_s),
            outdoor_temp_c=self.temp.forecast(start_ts, n, step_s, now=state.ts),
            hot_water_wh=hot_water_profile_wh(self.params, start_ts, n, step_s),
            ev_plugged=plugged,
            ev_departure_step=departure,
            ev_soc_pct=state.ev_soc_pct if state.ev_soc_pct is not None else self.params.ev.initial_soc_pct,
        )


@dataclass
class PlannerStats:
    solve_ms: list[float] = field(default_factory=list)
    plans: int = 0
    failures: int = 0
    last_error: str = ""

    def summary(self) -> dict:
        if not self.solve_ms:
            return {
                "plans": self.plans,
                "failures": self.failures,
                "solve_ms_median": None,
                "solve_ms_p95": None,
            }
        ms = np.asarray(self.solve_ms)
        return {
            "plans": self.plans,
            "failures": self.failures,
            "solve_ms_median": round(float(np.median(ms)), 2),
            "solve_ms_p95": round(float(np.percentile(ms, 95)), 2),
        }


class PlannerStrategy:
    name = "planner"

    def __init__(
        self,
        tariff: Tariff,
        params: HomeParams,
        *,
        outlook=None,
        horizon_steps: int = 96,
        step_s: float = 900.0,
        replan_s: float = 900.0,
        settings: PlannerSettings | None = None,
        time_limit_s: float = 5.0,
        dr: DRManager | None = None,
        planner: Callable[..., Plan] = plan,
        decision_interval_s: float = 5.0,
    ) -> None:
        self.tariff = tariff
        self.params = params
        self.outlook = outlook or ForecastOutlook(params)
        self.horizon_steps = horizon_steps
        self.step_s = step_s
        self.replan_s = replan_s
        self.settings = settings or PlannerSettings()
        self.time_limit_s = time_limit_s
        self.dr = dr
        self._no_event: tuple[float, float, np.ndarray] | None = None  # the last plan made with no DR event
        self._planner = planner  # injectable so tests can make the planner fail
        self.decision_interval_s = decision_interval_s  # how often decide() is called: duty-cycle resolution
        self.export_limit_w: float | None = None  # the site's export limit (homeowner / interconnection)
        self.rules = RulesStrategy(tariff, params)
        self.plan: Plan | None = None
        self.inputs: PlanInputs | None = None
        self.stats = PlannerStats()
        self._next_plan_ts = -math.inf
        self._replan_reason: str | None = "start"
        self._last_plugged: bool | None = None
        self.on_plan: list[
            Callable[[Plan, PlanInputs, str], None]
        ] = []  # e.g. store the plan and its forecast

    # -- events ----------------------------------------------------------------------------------
    def set_home(self, params: HomeParams, tariff: Tariff, export_limit_w: float | None) -> None:
        """The homeowner changed a setting: plan with it from the next decision (call request_replan too)."""
        self.params = params
        self.tariff = tariff
        self.export_limit_w = export_limit_w
        self.rules = RulesStrategy(tariff, params)
        if hasattr(self.outlook, "params"):
            self.outlook.params = params  # EV departure, initial SOC
        self._no_event = None  # the no-event baseline was planned with the old settings

    def request_replan(self, reason: str) -> None:
        """Re-plan at the next decision (DR event, EV plugged/unplugged, a setting changed)."""
        self._replan_reason = reason

    def observe(self, state: HomeState, dt_s: float) -> None:
        if hasattr(self.outlook, "observe"):
            self.outlook.observe(state, dt_s)

    # -- planning --------------------------------------------------------------------------------
    def build_inputs(self, state: HomeState, start_ts: float) -> PlanInputs:
        n, step_s = self.horizon_steps, self.step_s
        imp, exp, names = self.tariff.prices(start_ts, n, step_s)
        o = self.outlook.outlook(state, start_ts, n, step_s)
        hvac = self.params.hvac
        imp = np.asarray(imp, dtype=float)
        comfort_min = np.full(n, hvac.comfort_min_c)
        comfort_max = np.full(n, hvac.comfort_max_c)
        windows: tuple[DRWindow, ...] = ()
        if self.dr is not None:
            windows = self.dr.planner_windows(
                start_ts, step_s, n, forecast_w=self._no_event_forecast(start_ts, n)
            )
            dr_price = self.dr.prices(start_ts, step_s, n)
            if dr_price is not None:  # a price event replaces the tariff where it applies
                imp = np.where(np.isnan(dr_price), imp, dr_price)
            mids = start_ts + (np.arange(n) + 0.5) * step_s
            for k, t in enumerate(mids):  # SIMPLE levels set the comfort band back during the event
                level = self.dr.level_in_force(float(t))
                if level is not None and level.hvac_setback_c > 0:
                    comfort_min[k] -= level.hvac_setback_c
                    comfort_max[k] += level.hvac_setback_c
        return PlanInputs(
            start_ts=start_ts,
            step_s=step_s,
            import_price_per_kwh=imp,
            export_price_per_kwh=np.asarray(exp, dtype=float),
            period_names=tuple(names),
            pv_forecast_w=o.pv_w,
            base_load_forecast_w=o.base_load_w,
            outdoor_temp_c=o.outdoor_temp_c,
            hot_water_wh=o.hot_water_wh,
            battery_soc_pct=state.battery_soc_pct,
            ev_plugged=o.ev_plugged,
            ev_soc_pct=o.ev_soc_pct,
            ev_departure_step=o.ev_departure_step,
            ev_target_soc_pct=self.params.ev.target_soc_pct,
            indoor_temp_c=state.indoor_temp_c if state.indoor_temp_c is not None else hvac.initial_indoor_c,
            tank_temp_c=state.tank_temp_c
            if state.tank_temp_c is not None
            else self.params.water_heater.setpoint_c,
            comfort_min_c=comfort_min,
            comfort_max_c=comfort_max,
            dr_windows=tuple(windows),
            allow_ev_v2h=self.params.ev.v2h,
            export_limit_w=self.export_limit_w,
        )

    def replan(self, state: HomeState, reason: str) -> Plan | None:
        start_ts = math.floor(state.ts / self.step_s) * self.step_s  # plans start on a step boundary
        try:
            inputs = self.build_inputs(state, start_ts)
            new = self._planner(
                self.params,
                inputs,
                time_limit_s=self.time_limit_s,
                warm_start=self.plan,
                settings=self.settings,
            )
        except (PlannerError, ValueError) as exc:
            self.stats.failures += 1
            self.stats.last_error = str(exc)
            log.warning("planner failed (%s): the rule table is in charge until the next plan", exc)
            self.plan = None
            self._next_plan_ts = state.ts + min(self.replan_s, 60.0)  # retry soon, not every second
            return None
        self.plan, self.inputs = new, inputs
        self.stats.plans += 1
        if not inputs.dr_windows:  # what the home would import with no event: the baseline's companion
            grid = np.asarray(new.grid_import_w - new.grid_export_w, dtype=float)
            self._no_event = (start_ts, self.step_s, grid)
            if self.dr is not None:
                self.dr.note_forecast(start_ts, self.step_s, grid)
        self.stats.solve_ms.append(new.build_ms + new.solve_ms)
        self._next_plan_ts = start_ts + self.replan_s
        for callback in self.on_plan:
            try:
                callback(new, inputs, reason)
            except Exception:  # storing or showing a plan must never stop control
                log.exception("plan listener failed")
        log.debug("re-planned (%s): cost %.2f, %s in %.1f ms", reason, new.cost, new.status, new.solve_ms)
        return new

    def _no_event_forecast(self, start_ts: float, n: int) -> np.ndarray | None:
        """The last no-event plan's grid import, shifted onto this horizon (None when it does not cover it)."""
        if self._no_event is None:
            return None
        t0, step, grid = self._no_event
        k0 = int(round((start_ts - t0) / step))
        if step != self.step_s or k0 < 0 or k0 >= len(grid):
            return None
        out = np.full(n, float(grid[-1]))
        seg = grid[k0 : k0 + n]
        out[: len(seg)] = seg
        return np.maximum(out, 0.0)

    # -- following the plan ----------------------------------------------------------------------
    def decide(
        self, state: HomeState, point: TariffPoint | None = None, weekend: bool | None = None
    ) -> Decision:
        if self._last_plugged is not None and state.ev_plugged != self._last_plugged:
            self.request_replan("EV plugged in" if state.ev_plugged else "EV left")
        self._last_plugged = state.ev_plugged
        if self._replan_reason is not None or state.ts >= self._next_plan_ts:
            reason, self._replan_reason = self._replan_reason or "schedule", None
            self.replan(state, reason)
        p = self.plan
        k = -1 if p is None else step_index(state.ts, p.start_ts, p.step_s)
        if p is None or not 0 <= k < p.steps:
            fallback = self.rules.decide(state, point, weekend)
            why = self.stats.last_error or "no plan covers now"
            return replace(
                fallback, reasons=(f"planner unavailable ({why}): rule table in charge", *fallback.reasons)
            )
        return self.follow(p, k, state)

    def follow(self, p: Plan, k: int, state: HomeState) -> Decision:
        params = self.params
        b, ev, wh, hvac = params.battery, params.ev, params.water_heater, params.hvac
        inputs = self.inputs
        planned_batt = float(p.battery_charge_w[k] - p.battery_discharge_w[k])
        battery = planned_batt
        grid_target = None
        lo, hi = -b.max_discharge_w, b.max_charge_w
        if p.grid_import_w[k] < GRID_TRACKING_IMPORT_W and inputs is not None:
            # the plan intends no import now: let the battery take the forecast error, holding the grid
            grid_target = float(p.grid_import_w[k] - p.grid_export_w[k])
            planned_net = grid_target - planned_batt
            measured_net = state.home_load_w + state.ev_power_w - state.pv_power_w
            battery = planned_batt - (measured_net - planned_net)
            price = float(inputs.import_price_per_kwh[k])
            dearest = float(inputs.import_price_per_kwh[k:].max())
            if planned_batt >= 0 and price < TRACKING_DISCHARGE_PRICE_SHARE * dearest:
                # a step planned for charging: an unexpected load is cheaper from the grid now than the
                # stored energy will be later, so the battery does not discharge for it
                lo = 0.0
        battery = max(lo, min(hi, battery))

        ev_w = float(p.ev_charge_w[k])
        ev_limit = 0.0 if ev_w < ev.charger_min_w / 2 else max(ev.charger_min_w, min(ev.charger_max_w, ev_w))

        # on for the planned share of the step, at the controller's own time resolution
        duty = float(p.water_heater_w[k]) / wh.power_w if wh.power_w > 0 else 0.0
        into_step = state.ts - (p.start_ts + k * p.step_s)
        heater_on = duty * p.step_s - into_step >= self.decision_interval_s / 2
        if state.tank_temp_c is not None and state.tank_temp_c < wh.min_temp_c:
            heater_on = True

        # the planned indoor temperature at the end of the step is the set point of the mode the plan uses
        mode = p.hvac_mode[k] if p.hvac_mode else "off"
        target = min(hvac.comfort_max_c, max(hvac.comfort_min_c, float(p.indoor_temp_c[k])))
        heat_sp, cool_sp = hvac.comfort_min_c, hvac.comfort_max_c
        if mode == "cool":
            cool_sp = target
        elif mode == "heat":
            heat_sp = target

        pv_limit = float(p.pv_used_w[k]) if p.pv_curtailed_w[k] > 1.0 else None
        period = inputs.period_names[k] if inputs is not None and inputs.period_names else ""
        return Decision(
            battery_charge_power_w=round(battery, 1),
            ev_power_limit_w=ev_limit if state.ev_plugged else 0.0,
            water_heater_enabled=heater_on,
            pv_limit_w=pv_limit,
            period=period or "",
            reasons=tuple(p.reasons[k]) if p.reasons else (),
            hvac_mode="auto",
            heat_setpoint_c=round(heat_sp, 2),
            cool_setpoint_c=round(cool_sp, 2),
            grid_target_w=grid_target,
            battery_min_w=lo,
            battery_max_w=hi,
        )


def plan_to_json(p: Plan, inputs: PlanInputs | None, reason: str = "") -> dict:
    """The plan as the dashboard and the store keep it: per-step series (rounded), reasons, the forecast used."""

    def r(a, nd=1) -> list:
        return [round(float(v), nd) for v in a]

    out = {
        "start_ts": p.start_ts,
        "step_s": p.step_s,
        "reason": reason,
        "status": p.status,
        "cost": round(p.cost, 4),
        "solve_ms": round(p.build_ms + p.solve_ms, 2),
        "penalties": {k: round(v, 4) for k, v in p.penalties.items() if abs(v) > 1e-9},
        "grid_w": r(p.grid_import_w - p.grid_export_w),
        "battery_w": r(p.battery_charge_w - p.battery_discharge_w),
        "battery_soc_pct": r(p.battery_soc_pct, 2),
        "ev_w": r(p.ev_charge_w - p.ev_discharge_w),
        "ev_soc_pct": r(p.ev_soc_pct, 2),
        "hvac_w": r(p.hvac_power_w),
        "indoor_temp_c": r(p.indoor_temp_c, 2),
        "water_heater_w": r(p.water_heater_w),
        "tank_temp_c": r(p.tank_temp_c, 2),
        "pv_used_w": r(p.pv_used_w),
        "pv_curtailed_w": r(p.pv_curtailed_w),
        "reasons": [list(x) for x in p.reasons],
    }
    if inputs is not None:
        out["forecast"] = {
            "import_price_per_kwh": r(inputs.import_price_per_kwh, 4),
            "export_price_per_kwh": r(inputs.export_price_per_kwh, 4),
            "period": list(inputs.period_names or ()),
            "pv_w": r(inputs.pv_forecast_w),
            "base_load_w": r(inputs.base_load_forecast_w),
            "outdoor_temp_c": r(inputs.outdoor_temp_c, 2),
            "ev_plugged": [bool(v) for v in inputs.ev_plugged],
            "ev_departure_step": inputs.ev_departure_step,
            "dr_windows": [
                {
                    "event_id": w.event_id,
                    "start_step": w.start_step,
                    "end_step": w.end_step,
                    "import_cap_w": w.import_cap_w,
                    "shed_w": w.shed_w,
                }
                for w in inputs.dr_windows
            ],
        }
    return out
