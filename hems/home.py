"""The home's description: site and assets. Defaults are the reference home of DESIGN.md.

These parameters are shared by the simulated home, the rule controller and the planner; the
config file fills them (see ``hems.config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SiteParams:
    latitude: float = 38.58  # Sacramento, CA: a TOU utility territory with a real PV/battery market
    longitude: float = -121.49
    altitude_m: float = 9.0
    timezone: str = "America/Los_Angeles"
    service_limit_a: float = 200.0
    voltage_v: float = 240.0

    @property
    def service_limit_w(self) -> float:
        return self.service_limit_a * self.voltage_v


@dataclass(frozen=True, slots=True)
class PVParams:
    capacity_w: float = 8000.0  # DC nameplate: 20 x 400 W
    tilt_deg: float = 25.0
    azimuth_deg: float = 180.0  # pvlib convention: 180 = south
    inverter_ac_w: float = 10000.0  # hybrid inverter rating
    losses_pct: float = 14.0  # wiring, soiling, mismatch (PVWatts default)
    temp_coeff_pct_per_c: float = -0.37


@dataclass(frozen=True, slots=True)
class BatteryParams:
    capacity_wh: float = 13500.0
    max_charge_w: float = 11500.0
    max_discharge_w: float = 11500.0
    charge_efficiency: float = 0.95  # one way; round trip ~ 0.90
    discharge_efficiency: float = 0.95
    min_soc_pct: float = 5.0  # hardware floor kept by the battery itself
    max_soc_pct: float = 100.0
    reserve_soc_pct: float = 20.0  # homeowner's backup reserve, kept by the gateway
    initial_soc_pct: float = 50.0


@dataclass(frozen=True, slots=True)
class EVParams:
    capacity_wh: float = 75000.0
    charger_max_w: float = 11520.0  # 48 A at 240 V
    charger_min_w: float = 1440.0  # 6 A: IEC 61851 / J1772 minimum
    charge_efficiency: float = 0.92
    target_soc_pct: float = 80.0
    departure_time: str = "07:30"  # local, weekdays
    arrival_time: str = "18:00"
    daily_energy_wh: float = 12000.0  # mean energy used by a weekday commute
    initial_soc_pct: float = 60.0
    v2h: bool = False


@dataclass(frozen=True, slots=True)
class HVACParams:
    max_power_w: float = 2000.0  # electric input of the heat pump
    cop_cooling: float = 3.0
    cop_heating: float = 3.2
    r_c_per_kw: float = 5.0  # 1R1C envelope resistance, K per kW of heat flow (UA = 200 W/K)
    c_kwh_per_c: float = 8.0  # thermal capacitance, kWh per K (time constant R·C = 40 h)
    internal_gains_w: float = 400.0
    heat_setpoint_c: float = 20.0
    cool_setpoint_c: float = 24.0
    comfort_min_c: float = 19.0  # homeowner's comfort band
    comfort_max_c: float = 25.0
    initial_indoor_c: float = 21.0


@dataclass(frozen=True, slots=True)
class WaterHeaterParams:
    power_w: float = 4500.0
    tank_l: float = 190.0
    setpoint_c: float = 55.0
    deadband_c: float = 5.0
    min_temp_c: float = 45.0  # below this hot water is "run out": comfort penalty
    cold_water_c: float = 15.0
    ambient_c: float = 20.0
    loss_w_per_c: float = 2.0  # standby loss
    daily_draw_l: float = 160.0  # hot water at tank temperature


@dataclass(frozen=True, slots=True)
class LoadParams:
    daily_energy_wh: float = 12000.0  # base household load (lights, appliances, plug loads)
    noise_pct: float = 15.0


@dataclass(frozen=True, slots=True)
class HomeParams:
    site: SiteParams = field(default_factory=SiteParams)
    pv: PVParams = field(default_factory=PVParams)
    battery: BatteryParams = field(default_factory=BatteryParams)
    ev: EVParams = field(default_factory=EVParams)
    hvac: HVACParams = field(default_factory=HVACParams)
    water_heater: WaterHeaterParams = field(default_factory=WaterHeaterParams)
    load: LoadParams = field(default_factory=LoadParams)
