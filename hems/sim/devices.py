"""Device physics of the simulated home. Each device keeps its state and advances it by ``step``.

Powers are means over the step in W at the device's AC terminal; energies in Wh; the sign
conventions are those of ``hems.model`` (battery + charge / - discharge, loads + consumed).
"""

from __future__ import annotations

import math

from hems.home import BatteryParams, EVParams, HVACParams, WaterHeaterParams
from hems.model import HVAC_MODES

WATER_J_PER_L_K = 4186.0  # 1 L of water ~ 1 kg
EV_V2H_MIN_SOC_PCT = 20.0  # V2H never discharges the car below this
EV_MAX_SOC_PCT = 100.0  # the car's own charge limit


class Battery:
    """Home battery: SOC in Wh, one-way efficiencies, power limits, SOC kept within [min, max]."""

    def __init__(self, p: BatteryParams, soc_pct: float | None = None) -> None:
        if p.capacity_wh <= 0:
            raise ValueError(f"battery.capacity_wh must be > 0, got {p.capacity_wh}")
        if not 0.0 <= p.min_soc_pct <= p.max_soc_pct <= 100.0:
            raise ValueError("battery: need 0 <= min_soc_pct <= max_soc_pct <= 100")
        self.p = p
        self.min_wh = p.capacity_wh * p.min_soc_pct / 100.0
        self.max_wh = p.capacity_wh * p.max_soc_pct / 100.0
        soc = p.initial_soc_pct if soc_pct is None else soc_pct
        self.soc_wh = min(max(p.capacity_wh * soc / 100.0, self.min_wh), self.max_wh)

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.soc_wh / self.p.capacity_wh

    def step(self, dt_s: float, request_w: float) -> float:
        """Charge (+) or discharge (-) at ``request_w`` (AC), clamped to the power limits and so that the
        SOC stays within [min, max]. Returns the actual AC power."""
        p = self.p
        h = dt_s / 3600.0
        if h <= 0:
            return 0.0
        if request_w > 0:
            room = (self.max_wh - self.soc_wh) / (p.charge_efficiency * h)
            w = min(request_w, p.max_charge_w, max(room, 0.0))
            self.soc_wh = min(self.soc_wh + w * p.charge_efficiency * h, self.max_wh)
        elif request_w < 0:
            avail = (self.soc_wh - self.min_wh) * p.discharge_efficiency / h
            w = -min(-request_w, p.max_discharge_w, max(avail, 0.0))
            self.soc_wh = max(self.soc_wh + w / p.discharge_efficiency * h, self.min_wh)
        else:
            w = 0.0
        return w

    def self_consumption(self, dt_s: float, net_load_w: float) -> float:
        """The battery's own firmware mode: charge from surplus (net load < 0), discharge to cover the
        net load (> 0)."""
        return self.step(dt_s, -net_load_w)


class EV:
    """Electric vehicle behind a Level 2 charger: SOC in Wh, charging efficiency, J1772 minimum."""

    def __init__(
        self,
        p: EVParams,
        soc_pct: float | None = None,
        plugged: bool = True,
        soc_limit_pct: float = EV_MAX_SOC_PCT,
    ) -> None:
        if p.capacity_wh <= 0:
            raise ValueError(f"ev.capacity_wh must be > 0, got {p.capacity_wh}")
        self.p = p
        self.soc_limit_pct = soc_limit_pct
        soc = p.initial_soc_pct if soc_pct is None else soc_pct
        self.soc_wh = min(max(p.capacity_wh * soc / 100.0, 0.0), p.capacity_wh)
        self.plugged = plugged

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.soc_wh / self.p.capacity_wh

    def drive(self, energy_wh: float) -> None:
        """A trip used ``energy_wh`` from the battery (the car does not go below empty)."""
        self.soc_wh = max(self.soc_wh - max(energy_wh, 0.0), 0.0)

    def charge_power_w(self, limit_w: float | None) -> float:
        """The charger's power for a limit, before SOC is considered: ``None`` = full power; a positive
        limit below the J1772 minimum cannot be served, so 0; negative = V2H discharge if supported."""
        p = self.p
        if limit_w is None:
            return p.charger_max_w
        if limit_w < 0:
            return max(limit_w, -p.charger_max_w) if p.v2h else 0.0
        if limit_w < p.charger_min_w:
            return 0.0
        return min(limit_w, p.charger_max_w)

    def step(self, dt_s: float, limit_w: float | None) -> float:
        """Charge while plugged; returns the AC power (+ charging, - V2H discharging)."""
        p = self.p
        h = dt_s / 3600.0
        if not self.plugged or h <= 0:
            return 0.0
        w = self.charge_power_w(limit_w)
        if w > 0:
            target_wh = p.capacity_wh * min(self.soc_limit_pct, 100.0) / 100.0
            room = (target_wh - self.soc_wh) / (p.charge_efficiency * h)
            w = min(w, max(room, 0.0))
            self.soc_wh = min(self.soc_wh + w * p.charge_efficiency * h, max(target_wh, self.soc_wh))
        elif w < 0:
            floor_wh = p.capacity_wh * EV_V2H_MIN_SOC_PCT / 100.0
            avail = (self.soc_wh - floor_wh) * p.charge_efficiency / h
            w = -min(-w, max(avail, 0.0))
            self.soc_wh = max(self.soc_wh + w / p.charge_efficiency * h, min(floor_wh, self.soc_wh))
        return w


class House:
    """1R1C envelope with a modulating heat pump.

    C dT/dt = (T_out - T)/R + Q_hvac + Q_gains, integrated exactly over the step (exponential
    solution with constant inputs), so any step length is stable. The heat pump supplies the thermal
    power that brings T to the active setpoint at the end of the step, limited by max_power_w x COP.
    """

    def __init__(self, p: HVACParams, temp_c: float | None = None) -> None:
        if p.r_c_per_kw <= 0 or p.c_kwh_per_c <= 0:
            raise ValueError("hvac: r_c_per_kw and c_kwh_per_c must be > 0")
        self.p = p
        self.r_k_per_w = p.r_c_per_kw / 1000.0
        self.c_j_per_k = p.c_kwh_per_c * 3.6e6
        self.tau_s = self.r_k_per_w * self.c_j_per_k
        self.temp_c = p.initial_indoor_c if temp_c is None else temp_c
        self.thermal_w = 0.0  # last step's heat-pump thermal power (+ heating, - cooling)

    def step(
        self,
        dt_s: float,
        outdoor_c: float,
        mode: str = "auto",
        heat_setpoint_c: float | None = None,
        cool_setpoint_c: float | None = None,
        extra_gains_w: float = 0.0,
    ) -> float:
        """Advance ``dt_s``; returns the heat pump's mean electric power, W."""
        p = self.p
        if dt_s <= 0:
            return 0.0
        if mode not in HVAC_MODES:
            raise ValueError(f"hvac_mode must be one of {', '.join(HVAC_MODES)}, got {mode!r}")
        heat_sp = p.heat_setpoint_c if heat_setpoint_c is None else heat_setpoint_c
        cool_sp = p.cool_setpoint_c if cool_setpoint_c is None else cool_setpoint_c
        if mode == "auto" and cool_sp < heat_sp:
            cool_sp = heat_sp
        r = self.r_k_per_w
        a = math.exp(-dt_s / self.tau_s)
        gains = p.internal_gains_w + extra_gains_w
        t0 = self.temp_c
        t_free = outdoor_c + r * gains
        end_free = t_free + (t0 - t_free) * a
        q = 0.0
        if mode in ("heat", "auto") and end_free < heat_sp:
            q = min(self._q_to_reach(heat_sp, t0, a, outdoor_c, gains), p.max_power_w * p.cop_heating)
            q = max(q, 0.0)
        elif mode in ("cool", "auto") and end_free > cool_sp:
            q = max(self._q_to_reach(cool_sp, t0, a, outdoor_c, gains), -p.max_power_w * p.cop_cooling)
            q = min(q, 0.0)
        t_eq = outdoor_c + r * (gains + q)
        self.temp_c = t_eq + (t0 - t_eq) * a
        self.thermal_w = q
        if q > 0:
            return q / p.cop_heating
        if q < 0:
            return -q / p.cop_cooling
        return 0.0

    def _q_to_reach(self, target_c: float, t0: float, a: float, outdoor_c: float, gains_w: float) -> float:
        t_eq = (target_c - t0 * a) / (1.0 - a)
        return (t_eq - outdoor_c) / self.r_k_per_w - gains_w


class WaterHeater:
    """Fully mixed electric tank with its own hysteresis thermostat and a gateway relay.

    Draws are replaced by cold water (continuous-flow mixing), standby loss to the ambient, the
    element heats at ``power_w`` while the thermostat calls and the relay allows, exactly integrated
    until the setpoint is reached inside the step.
    """

    def __init__(self, p: WaterHeaterParams, temp_c: float | None = None) -> None:
        if p.tank_l <= 0:
            raise ValueError(f"water_heater.tank_l must be > 0, got {p.tank_l}")
        self.p = p
        self.c_j_per_k = p.tank_l * WATER_J_PER_L_K
        self.temp_c = p.setpoint_c if temp_c is None else temp_c
        self.calling = self.temp_c < p.setpoint_c - p.deadband_c  # thermostat state (hysteresis)

    def step(self, dt_s: float, draw_l: float = 0.0, enabled: bool = True) -> float:
        """Advance ``dt_s`` with ``draw_l`` litres drawn; returns the element's mean electric power, W."""
        p = self.p
        if dt_s <= 0:
            return 0.0
        if draw_l > 0:
            self.temp_c = p.cold_water_c + (self.temp_c - p.cold_water_c) * math.exp(-draw_l / p.tank_l)
        if self.temp_c < p.setpoint_c - p.deadband_c:
            self.calling = True
        elif self.temp_c >= p.setpoint_c:
            self.calling = False
        ua = p.loss_w_per_c
        k = ua / self.c_j_per_k  # 1/s
        t0 = self.temp_c
        if not (self.calling and enabled and p.power_w > 0):
            self.temp_c = self._decay(t0, dt_s, 0.0)
            return 0.0
        t_inf = p.ambient_c + p.power_w / ua if ua > 0 else math.inf
        if ua > 0:
            t_on = math.log((t_inf - t0) / (t_inf - p.setpoint_c)) / k if t0 < p.setpoint_c else 0.0
        else:
            t_on = (p.setpoint_c - t0) * self.c_j_per_k / p.power_w
        if t_on >= dt_s:
            self.temp_c = self._decay(t0, dt_s, p.power_w)
            return p.power_w
        self.calling = False
        self.temp_c = self._decay(p.setpoint_c, dt_s - t_on, 0.0)
        return p.power_w * t_on / dt_s

    def _decay(self, t0: float, dt_s: float, power_w: float) -> float:
        p = self.p
        ua = p.loss_w_per_c
        if ua <= 0:
            return t0 + power_w * dt_s / self.c_j_per_k
        t_inf = p.ambient_c + power_w / ua
        return t_inf + (t0 - t_inf) * math.exp(-ua * dt_s / self.c_j_per_k)
