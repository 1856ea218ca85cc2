"""Values that cross the planner's boundary: its inputs, its settings and the plan it returns.

Units are in the names (``_w`` mean power over a step, ``_wh`` energy, ``_pct`` state of charge,
``_c`` temperature, ``_per_kwh`` currency per kWh). Step ``k`` covers ``[start_ts + k*step_s, start_ts +
(k+1)*step_s)``; state arrays (``*_soc_pct``, ``indoor_temp_c``, ``tank_temp_c``) hold the value at the
END of the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class PlannerError(Exception):
    """HiGHS returned no usable solution (solver error, or time limit with no incumbent).

    The caller falls back to the rule-based controller.
    """


@dataclass(frozen=True, slots=True)
class Deferrable:
    """An appliance that must run once, uninterrupted, inside a window (dishwasher, pool pump).

    It may start at any step ``s`` with ``earliest_step <= s`` and ``s + run_steps <= latest_end_step``.
    """

    name: str
    power_w: float
    run_steps: int
    earliest_step: int
    latest_end_step: int


@dataclass(frozen=True, slots=True)
class DRWindow:
    """A demand-response constraint over the steps ``[start_step, end_step)``.

    ``import_cap_w``: grid import <= cap. ``shed_w`` with ``baseline_w`` (one value per step of the
    window): grid import <= baseline - shed. Both may be given; the tighter applies. Soft, with the
    ``dr_excess_per_kwh`` penalty, so a contradictory event still gives a plan.
    """

    start_step: int
    end_step: int
    import_cap_w: float | None = None
    shed_w: float | None = None
    baseline_w: np.ndarray | None = None
    event_id: str = ""
    export_cap_w: float | None = None  # grid export <= this in the window (hard: PV can always be curtailed)
    generation_cap_w: float | None = None  # PV used <= this in the window


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """Everything one planning run needs besides the home's parameters. Arrays are per step.

    EV: it can charge in the plugged steps before ``ev_departure_step`` (the step it leaves at); the
    target applies at departure. A departure beyond the horizon asks only for what could not be
    charged after it; ``None`` takes the end of the first plugged run (or the horizon's end).
    ``ev_soc_pct`` is the SOC now, or at arrival if it is not plugged yet. A later plugged run (after
    a departure) is left to the next plan, since its arrival SOC is unknown. V2H needs both
    ``allow_ev_v2h`` (the homeowner's choice) and ``HomeParams.ev.v2h`` (the charger can).
    Negative forecasts of PV or base load are clipped to 0; NaN raises ``ValueError``.
    """

    start_ts: float
    step_s: float
    import_price_per_kwh: np.ndarray
    export_price_per_kwh: np.ndarray
    period_names: tuple[str, ...] | None
    pv_forecast_w: np.ndarray
    base_load_forecast_w: np.ndarray
    outdoor_temp_c: np.ndarray
    hot_water_wh: np.ndarray  # heat drawn from the tank per step (Wh thermal)
    battery_soc_pct: float
    ev_plugged: np.ndarray  # bool per step (forecast of presence; now = [0])
    ev_soc_pct: float
    ev_departure_step: int | None
    ev_target_soc_pct: float
    indoor_temp_c: float
    tank_temp_c: float
    comfort_min_c: np.ndarray
    comfort_max_c: np.ndarray
    deferrables: tuple[Deferrable, ...] = ()
    dr_windows: tuple[DRWindow, ...] = ()
    export_limit_w: float | None = None
    allow_ev_v2h: bool = False


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    """Economic weights of the planner and solver tolerances. Currency is the tariff's.

    The penalties follow the controller's priorities (service limit > DR > battery reserve > plan)
    and should exceed what breaking the constraint could save: with the defaults, a kWh missed at the
    EV's departure (5) or a degree-hour outside the comfort band (5) costs more than any retail price
    up to ~2 per kWh would save. Everything is soft, so contradictory inputs still give a plan whose
    ``penalties`` say what was missed and by how much.
    """

    ev_target_missed_per_kwh: float = 5.0  # per kWh of EV energy short of the target at departure
    comfort_per_degree_hour: float = 5.0  # per K·h the indoor temperature is outside the comfort band
    tank_below_min_per_kwh_h: float = 2.0  # per kWh·h of tank heat below the minimum temperature
    dr_excess_per_kwh: float = 20.0  # per kWh imported above a DR cap / short of a DR shed
    service_limit_excess_per_kwh: float = 1000.0  # per kWh imported above the service limit
    reserve_below_per_kwh_h: float = 10.0  # per kWh·h the battery is below the reserve (outside DR)
    deferrable_missed: float = 5.0  # per deferrable run that cannot be placed in its window
    battery_throughput_per_kwh: float = 0.02  # degradation, per kWh charged and per kWh discharged (AC side)
    ev_v2h_throughput_per_kwh: float = 0.05  # degradation of the EV pack, per kWh discharged by V2H
    ev_v2h_floor_pct: float = 40.0  # V2H never takes the EV below this (or its current SOC if lower)
    terminal_value_per_kwh: float | None = None  # value of a kWh left in the battery at the horizon end;
    # None = min import price of the horizon x discharge efficiency (what it saves later at worst)
    tank_max_above_setpoint_c: float = (
        0.0  # hard tank maximum = setpoint + this: a relay cannot heat past the heater's thermostat
    )
    ev_late_cost_per_kwh: float = (
        2e-4  # tie-breaker: at equal prices charge the EV sooner (up to this at the end)
    )
    pv_use_bonus_per_kwh: float = 1e-4  # tie-breaker: use PV rather than curtail when export pays 0
    hvac_use_cost_per_kwh: float = 1e-3  # tie-breaker (> the PV bonus): no HVAC run without a reason,
    # e.g. heating and cooling at once to burn free PV
    mip_rel_gap: float = 1e-4  # a plan is accepted as optimal within this relative gap...
    mip_abs_gap: float = 0.005  # ...or within this many currency units (half a cent over the horizon)
    threads: int = 1


@dataclass(frozen=True, slots=True)
class Plan:
    """The planner's answer: per-step means (W) and states at the end of each step."""

    start_ts: float
    step_s: float
    grid_import_w: np.ndarray
    grid_export_w: np.ndarray
    battery_charge_w: np.ndarray
    battery_discharge_w: np.ndarray
    battery_soc_pct: np.ndarray
    ev_charge_w: np.ndarray
    ev_discharge_w: np.ndarray
    ev_soc_pct: np.ndarray
    hvac_power_w: np.ndarray  # electric input, heating + cooling
    indoor_temp_c: np.ndarray
    water_heater_w: np.ndarray
    tank_temp_c: np.ndarray
    pv_used_w: np.ndarray
    pv_curtailed_w: np.ndarray
    deferrable_on: dict[str, np.ndarray]
    cost: float  # energy cost: import - export credit
    penalties: dict[str, float]  # "<x>_cost" entries are currency; the others physical (unit in the name)
    objective: float
    status: str  # "optimal" | "time_limit" | "feasible"
    solve_ms: float
    build_ms: float
    reasons: tuple[tuple[str, ...], ...]
    hvac_mode: tuple[str, ...] = ()  # per step: "heat" | "cool" | "off"
    dr_limit_w: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per step, inf outside DR windows

    @property
    def steps(self) -> int:
        return len(self.grid_import_w)

    @property
    def step_h(self) -> float:
        return self.step_s / 3600.0

    def net_grid_w(self) -> np.ndarray:
        """Grid power in the gateway's sign convention: + import, - export."""
        return self.grid_import_w - self.grid_export_w

    def battery_power_w(self) -> np.ndarray:
        """Battery power in the gateway's sign convention: + charge, - discharge."""
        return self.battery_charge_w - self.battery_discharge_w
