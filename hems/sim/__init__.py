"""The simulated home: deterministic physics of PV, load, battery, EV, HVAC and water heater."""

from hems.sim.devices import EV, Battery, House, WaterHeater
from hems.sim.environment import Environment, EnvSample, EnvSeries, Trip
from hems.sim.home import NO_CONTROL, Controls, RunResult, SimHome, StepResult, simulate
from hems.sim.weather import SACRAMENTO, Climate, WeatherSeries, load_tmy3

__all__ = [
    "EV",
    "NO_CONTROL",
    "SACRAMENTO",
    "Battery",
    "Climate",
    "Controls",
    "EnvSample",
    "EnvSeries",
    "Environment",
    "House",
    "RunResult",
    "SimHome",
    "StepResult",
    "Trip",
    "WaterHeater",
    "WeatherSeries",
    "load_tmy3",
    "simulate",
]
