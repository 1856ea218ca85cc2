"""The simulated home: devices driven by the environment and by the gateway's controls.

The grid meter is the balance of everything behind it:
``grid = home_load + ev + battery - pv`` (+ import, - export), so
``pv + import + battery discharge = load + ev + export + battery charge`` holds at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from hems.home import HomeParams
from hems.model import HVAC_MODES
from hems.sim.devices import EV, Battery, House, WaterHeater
from hems.sim.environment import Environment, EnvSample, EnvSeries

SOLAR_GAIN_PEAK_W = 600.0  # solar heat gain through windows at the PV array's nameplate output


@dataclass(frozen=True, slots=True)
class Controls:
    """What the gateway sets for one step. The defaults are "no gateway": every device on its own."""

    battery_charge_power_w: float | None = None  # None = battery's self-consumption mode
    pv_limit_w: float | None = None  # None = no curtailment
    ev_power_limit_w: float | None = None  # None = charge at full power when plugged
    water_heater_enabled: bool = True
    hvac_mode: str = "auto"  # off | heat | cool | auto
    heat_setpoint_c: float | None = None  # None = HVACParams default
    cool_setpoint_c: float | None = None
    # Grid following: the battery holds the grid at this power (+ import) within [min, max] of its own power,
    # as the gateway's seconds-fast control loop does live; it overrides battery_charge_power_w when set.
    battery_grid_target_w: float | None = None
    battery_min_w: float = -float("inf")
    battery_max_w: float = float("inf")

    def __post_init__(self) -> None:
        if self.hvac_mode not in HVAC_MODES:
            raise ValueError(f"hvac_mode must be one of {', '.join(HVAC_MODES)}, got {self.hvac_mode!r}")


NO_CONTROL = Controls()


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of the home. Powers are means over the step (W); SOC and temperatures are at its end."""

    ts: float
    dt_s: float
    pv_power_w: float
    pv_available_w: float
    base_load_w: float
    hvac_power_w: float
    water_heater_power_w: float
    ev_power_w: float
    home_load_w: float  # base + hvac + water heater (EV separate)
    battery_power_w: float  # + charge, - discharge
    battery_soc_pct: float
    ev_plugged: bool
    ev_soc_pct: float
    indoor_temp_c: float
    outdoor_temp_c: float
    tank_temp_c: float
    grid_power_w: float  # + import, - export: the balance
    import_w: float
    export_w: float


_FIELDS = tuple(f.name for f in fields(StepResult))


@dataclass(frozen=True, slots=True)
class RunResult:
    """A run of many steps, column-wise: one numpy array per ``StepResult`` field."""

    ts: np.ndarray
    dt_s: np.ndarray
    pv_power_w: np.ndarray
    pv_available_w: np.ndarray
    base_load_w: np.ndarray
    hvac_power_w: np.ndarray
    water_heater_power_w: np.ndarray
    ev_power_w: np.ndarray
    home_load_w: np.ndarray
    battery_power_w: np.ndarray
    battery_soc_pct: np.ndarray
    ev_plugged: np.ndarray
    ev_soc_pct: np.ndarray
    indoor_temp_c: np.ndarray
    outdoor_temp_c: np.ndarray
    tank_temp_c: np.ndarray
    grid_power_w: np.ndarray
    import_w: np.ndarray
    export_w: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def __getitem__(self, i: int) -> StepResult:
        return StepResult(*(_scalar(getattr(self, name)[i]) for name in _FIELDS))

    def energy_kwh(self, name: str) -> float:
        """Energy of a power column over the run, kWh (e.g. ``energy_kwh("import_w")``)."""
        if not name.endswith("_w"):
            raise ValueError(f"{name!r} is not a power column")
        return float(np.dot(getattr(self, name), self.dt_s)) / 3.6e6

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> RunResult:
        arr = np.array(rows, dtype=float).reshape(len(rows), len(_FIELDS))
        cols = {name: arr[:, k] for k, name in enumerate(_FIELDS)}
        cols["ev_plugged"] = cols["ev_plugged"].astype(bool)
        return cls(**cols)


def _scalar(v: object) -> object:
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.generic):
        return float(v)
    return v


ControlsFn = Callable[["SimHome", int], Controls]


class SimHome:
    """The home's devices with their state, advanced step by step."""

    def __init__(self, params: HomeParams, env: Environment, start_ts: float) -> None:
        self.params = params
        self.env = env
        self._now = float(start_ts)
        self.battery = Battery(params.battery)
        self.ev = EV(params.ev, plugged=env.at(self._now).ev_home)
        self.house = House(params.hvac)
        self.water_heater = WaterHeater(params.water_heater)
        cap = params.pv.capacity_w
        self._solar_gain_per_w = SOLAR_GAIN_PEAK_W / cap if cap > 0 else 0.0

    # -- state the controller reads -------------------------------------------------------------
    @property
    def now(self) -> float:
        return self._now

    @property
    def battery_soc_pct(self) -> float:
        return self.battery.soc_pct

    @property
    def ev_soc_pct(self) -> float:
        return self.ev.soc_pct

    @property
    def ev_plugged(self) -> bool:
        return self.ev.plugged

    @property
    def indoor_temp_c(self) -> float:
        return self.house.temp_c

    @property
    def tank_temp_c(self) -> float:
        return self.water_heater.temp_c

    # -- stepping -------------------------------------------------------------------------------
    def step(
        self, dt_s: float, controls: Controls = NO_CONTROL, sample: EnvSample | None = None
    ) -> StepResult:
        """Advance ``dt_s`` seconds. ``sample`` gives the environment over the step; by default it is
        taken from the environment's 1-min cache (``Environment.window``)."""
        if dt_s <= 0:
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        if sample is None:
            sample = self.env.window(self._now, self._now + dt_s)
        self._arrive(sample.ev_home, sample.ev_trip_wh)
        row = self._advance(
            dt_s,
            controls,
            sample.pv_available_w,
            sample.outdoor_temp_c,
            sample.base_load_w,
            sample.hot_water_l,
        )
        return StepResult(*row)

    def run(self, series: EnvSeries, controls_fn: ControlsFn | None = None) -> RunResult:
        """Step through a whole series (the fast path). ``controls_fn(home, i)`` is called at the start
        of step ``i``, after the EV's arrival or departure for that step is known; ``None`` = no gateway."""
        n = len(series)
        if n and abs(float(series.ts[0]) - self._now) > 1e-3:
            raise ValueError(f"series starts at {float(series.ts[0])}, the home is at {self._now}")
        dt = float(series.step_s)
        pv = series.pv_available_w.tolist()
        temp = series.outdoor_temp_c.tolist()
        base = series.base_load_w.tolist()
        hot = series.hot_water_l.tolist()
        home = series.ev_home.tolist()
        trip = series.ev_trip_wh.tolist()
        rows = []
        append = rows.append
        for i in range(n):
            self._arrive(home[i], trip[i])
            c = controls_fn(self, i) if controls_fn is not None else NO_CONTROL
            append(self._advance(dt, c, pv[i], temp[i], base[i], hot[i]))
        return RunResult.from_rows(rows)

    def _arrive(self, ev_home: bool, trip_wh: float) -> None:
        if trip_wh:
            self.ev.drive(trip_wh)
        self.ev.plugged = bool(ev_home)

    def _advance(
        self,
        dt: float,
        c: Controls,
        pv_available: float,
        outdoor_c: float,
        base_w: float,
        hot_l: float,
    ) -> tuple:
        ts = self._now
        limit = c.pv_limit_w
        pv = pv_available if limit is None else min(pv_available, max(limit, 0.0))
        hvac_w = self.house.step(
            dt,
            outdoor_c,
            c.hvac_mode,
            c.heat_setpoint_c,
            c.cool_setpoint_c,
            pv_available * self._solar_gain_per_w,
        )
        wh_w = self.water_heater.step(dt, hot_l, c.water_heater_enabled)
        ev = self.ev
        ev_w = ev.step(dt, c.ev_power_limit_w)
        home_w = base_w + hvac_w + wh_w
        if c.battery_grid_target_w is not None:
            want = c.battery_grid_target_w - (home_w + ev_w - pv)
            bat_w = self.battery.step(dt, min(c.battery_max_w, max(c.battery_min_w, want)))
        elif c.battery_charge_power_w is None:
            bat_w = self.battery.self_consumption(dt, home_w + ev_w - pv)
        else:
            bat_w = self.battery.step(dt, c.battery_charge_power_w)
        grid = home_w + ev_w + bat_w - pv
        self._now = ts + dt
        return (
            ts,
            dt,
            pv,
            pv_available,
            base_w,
            hvac_w,
            wh_w,
            ev_w,
            home_w,
            bat_w,
            self.battery.soc_pct,
            ev.plugged,
            ev.soc_pct,
            self.house.temp_c,
            outdoor_c,
            self.water_heater.temp_c,
            grid,
            grid if grid > 0 else 0.0,
            -grid if grid < 0 else 0.0,
        )


def simulate(
    params: HomeParams,
    start_ts: float,
    n_steps: int,
    step_s: float,
    *,
    seed: int = 1,
    controls_fn: ControlsFn | None = None,
    env: Environment | None = None,
) -> RunResult:
    """Simulate the home from ``start_ts`` for ``n_steps`` of ``step_s``. ``controls_fn=None`` is the
    home without a gateway (every device on its own defaults), at any resolution, e.g. hourly."""
    env = env if env is not None else Environment(params, seed=seed)
    series = env.series(start_ts, n_steps, step_s)
    return SimHome(params, env, start_ts).run(series, controls_fn)
