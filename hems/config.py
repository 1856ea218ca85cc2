"""Configuration: one TOML file, validated at start.

Every problem is reported at once, each naming the key, the value and what is allowed, e.g.::

    battery.capacity_wh = -5: must be > 0
    unknown key 'battery.capacty_wh' (did you mean 'capacity_wh'?); allowed: capacity_wh, ...

Sections map onto frozen dataclasses; the home's sections (site, pv, battery, ev, hvac, water_heater,
load) onto ``hems.home``. ``[integrations.<name>]`` tables are passed to the integration of that name,
which validates its own keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .home import (
    BatteryParams,
    EVParams,
    HomeParams,
    HVACParams,
    LoadParams,
    PVParams,
    SiteParams,
    WaterHeaterParams,
)
from .tariff import Tariff, TariffError


class ConfigError(ValueError):
    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        head = f"invalid configuration{f' in {source}' if source else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in problems))


STRATEGIES = ("none", "rules", "planner")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    id: str = "hems-gateway"
    data_dir: str = "var"
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: str = ""  # PEM files; https when both are set (the gateway image makes them at first boot)
    tls_key: str = ""
    session_idle_h: float = 12.0  # a login lasts this long without use


@dataclass(frozen=True, slots=True)
class StoreConfig:
    raw_retention_days: float = 7.0
    rollup_1m_retention_days: float = 90.0


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    strategy: str = "planner"
    interval_s: float = 5.0
    replan_s: float = 900.0


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: int = 1
    speed: float = 1.0
    start: str = ""  # local ISO date/time the simulated clock starts at; "" = now
    tick_s: float = 1.0  # wall seconds between physics steps in dev mode


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    web: WebConfig = field(default_factory=WebConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    home: HomeParams = field(default_factory=HomeParams)
    tariff: Tariff = field(default_factory=Tariff.default)
    integrations: dict[str, dict] = field(default_factory=lambda: {"sim": {}})
    devices: tuple[dict, ...] = ()  # [[devices]] entries; each has "type" = the integration that drives it

    def integration_names(self) -> list[str]:
        """Integrations to start: every enabled [integrations.X] table and every type named by [[devices]]."""
        names = list(self.integrations)
        for device in self.devices:
            if device["type"] not in names:
                names.append(device["type"])
        return names

    def devices_of(self, integration: str) -> list[dict]:
        return [dict(d) for d in self.devices if d["type"] == integration]

    @property
    def store_path(self) -> Path:
        return Path(self.gateway.data_dir) / "hems.sqlite"


# Constraints beyond the type: (predicate, what is allowed). Keys are "section.key".
_POSITIVE = (lambda v: v > 0, "must be > 0")
_NONNEG = (lambda v: v >= 0, "must be >= 0")
_PCT = (lambda v: 0 <= v <= 100, "must be between 0 and 100")
_EFF = (lambda v: 0 < v <= 1, "must be in (0, 1]")
_HHMM = (lambda v: re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v) is not None, "must be a local time HH:MM")
_RULES: dict[str, tuple] = {
    "gateway.id": (
        lambda v: re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v) is not None,
        "must be 1-64 of A-Z a-z 0-9 _ . -",
    ),
    "gateway.log_level": (lambda v: v in LOG_LEVELS, f"must be one of {', '.join(LOG_LEVELS)}"),
    "web.port": (lambda v: 0 <= v <= 65535, "must be a TCP port 0-65535 (0 = any free port)"),
    "web.session_idle_h": (lambda v: 0.1 <= v <= 24 * 90, "must be between 0.1 and 2160 hours"),
    "store.raw_retention_days": _POSITIVE,
    "store.rollup_1m_retention_days": _POSITIVE,
    "controller.strategy": (lambda v: v in STRATEGIES, f"must be one of {', '.join(STRATEGIES)}"),
    "controller.interval_s": (lambda v: 0.1 <= v <= 3600, "must be between 0.1 and 3600 seconds"),
    "controller.replan_s": (lambda v: 60 <= v <= 3600, "must be between 60 and 3600 seconds"),
    "sim.speed": (lambda v: 0 < v <= 100000, "must be > 0 and <= 100000"),
    "sim.tick_s": (lambda v: 0.01 <= v <= 60, "must be between 0.01 and 60 seconds"),
    "sim.start": (
        lambda v: v == "" or _iso_ok(v),
        "must be '' or a local ISO date/time like 2026-07-01T06:00",
    ),
    "site.latitude": (lambda v: -90 <= v <= 90, "must be between -90 and 90 degrees"),
    "site.longitude": (lambda v: -180 <= v <= 180, "must be between -180 and 180 degrees"),
    "site.timezone": (lambda v: _tz_ok(v), "must be an IANA time zone such as America/Los_Angeles"),
    "site.service_limit_a": _POSITIVE,
    "site.voltage_v": _POSITIVE,
    "pv.capacity_w": _NONNEG,
    "pv.tilt_deg": (lambda v: 0 <= v <= 90, "must be between 0 and 90 degrees"),
    "pv.azimuth_deg": (lambda v: 0 <= v < 360, "must be between 0 and 360 degrees (180 = south)"),
    "pv.inverter_ac_w": _POSITIVE,
    "pv.losses_pct": _PCT,
    "battery.capacity_wh": _POSITIVE,
    "battery.max_charge_w": _POSITIVE,
    "battery.max_discharge_w": _POSITIVE,
    "battery.charge_efficiency": _EFF,
    "battery.discharge_efficiency": _EFF,
    "battery.min_soc_pct": _PCT,
    "battery.max_soc_pct": _PCT,
    "battery.reserve_soc_pct": _PCT,
    "battery.initial_soc_pct": _PCT,
    "ev.capacity_wh": _POSITIVE,
    "ev.charger_max_w": _POSITIVE,
    "ev.charger_min_w": _NONNEG,
    "ev.charge_efficiency": _EFF,
    "ev.target_soc_pct": _PCT,
    "ev.initial_soc_pct": _PCT,
    "ev.daily_energy_wh": _NONNEG,
    "ev.departure_time": _HHMM,
    "ev.arrival_time": _HHMM,
    "hvac.max_power_w": _NONNEG,
    "hvac.cop_cooling": _POSITIVE,
    "hvac.cop_heating": _POSITIVE,
    "hvac.r_c_per_kw": _POSITIVE,
    "hvac.c_kwh_per_c": _POSITIVE,
    "water_heater.power_w": _NONNEG,
    "water_heater.tank_l": _POSITIVE,
    "water_heater.deadband_c": _POSITIVE,
    "load.daily_energy_wh": _NONNEG,
    "load.noise_pct": _PCT,
}


def _tz_ok(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _iso_ok(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


_TYPE_NAMES = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}


def _check_type(value: Any, expected: type) -> Any:
    """Return the value converted to ``expected`` or raise TypeError. Integers are accepted as floats."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise TypeError
    if not isinstance(value, expected):
        raise TypeError
    if expected is float and value != value:  # NaN
        raise TypeError
    return value


def _build(cls: type, table: Any, section: str, problems: list[str]) -> Any:
    if not isinstance(table, dict):
        problems.append(f"[{section}] must be a table, got {table!r}")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{section}.{key}"
        f = fields.get(key)
        if f is None:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"unknown key '{path}'{hint}; allowed: {', '.join(fields)}")
            continue
        expected = {"float": float, "int": int, "str": str, "bool": bool}.get(str(f.type), None)
        if expected is None:
            continue
        raw = value  # messages show the value as the file wrote it
        try:
            value = _check_type(value, expected)
        except TypeError:
            problems.append(f"{path} = {raw!r}: must be {_TYPE_NAMES[expected]}")
            continue
        rule = _RULES.get(path)
        if rule is not None and not rule[0](value):
            problems.append(f"{path} = {raw!r}: {rule[1]}")
            continue
        kwargs[key] = value
    return cls(**kwargs)


_SECTIONS: dict[str, type] = {
    "gateway": GatewayConfig,
    "web": WebConfig,
    "store": StoreConfig,
    "controller": ControllerConfig,
    "sim": SimConfig,
}
_HOME_SECTIONS: dict[str, type] = {
    "site": SiteParams,
    "pv": PVParams,
    "battery": BatteryParams,
    "ev": EVParams,
    "hvac": HVACParams,
    "water_heater": WaterHeaterParams,
    "load": LoadParams,
}
ALLOWED_SECTIONS = (*_SECTIONS, *_HOME_SECTIONS, "tariff", "integrations", "devices")


def parse_config(data: dict, source: str = "") -> Config:
    problems: list[str] = []
    for key in data:
        if key not in ALLOWED_SECTIONS:
            close = difflib.get_close_matches(key, ALLOWED_SECTIONS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"unknown section '{key}'{hint}; allowed: {', '.join(ALLOWED_SECTIONS)}")
    parts = {name: _build(cls, data.get(name, {}), name, problems) for name, cls in _SECTIONS.items()}
    home_parts = {
        name: _build(cls, data.get(name, {}), name, problems) for name, cls in _HOME_SECTIONS.items()
    }
    home = HomeParams(**home_parts)
    _cross_checks(home, problems)
    if bool(parts["web"].tls_cert) != bool(parts["web"].tls_key):
        problems.append("web.tls_cert and web.tls_key: set both (https) or neither (http)")

    tariff = Tariff.default(home.site.timezone)
    if "tariff" in data:
        try:
            tariff = Tariff.from_dict(data["tariff"], path="tariff", timezone=home.site.timezone)
        except TariffError as exc:
            problems.append(str(exc))

    integrations: dict[str, dict] = {"sim": {}}
    disabled: set[str] = set()
    if "integrations" in data:
        raw = data["integrations"]
        if not isinstance(raw, dict):
            problems.append(f"[integrations] must be a table of integration tables, got {raw!r}")
        else:
            integrations = {}
            for name, table in raw.items():
                if not isinstance(table, dict):
                    problems.append(f"[integrations.{name}] must be a table, got {table!r}")
                    continue
                enabled = table.get("enabled", True)
                if not isinstance(enabled, bool):
                    problems.append(f"integrations.{name}.enabled = {enabled!r}: must be true or false")
                    continue
                if enabled:
                    integrations[name] = {k: v for k, v in table.items() if k != "enabled"}
                else:
                    disabled.add(name)

    devices: list[dict] = []
    raw_devices = data.get("devices", [])
    if not isinstance(raw_devices, list):
        problems.append("devices must be an array of tables: write each device as [[devices]]")
        raw_devices = []
    for i, device in enumerate(raw_devices):
        if not isinstance(device, dict):
            problems.append(f"devices[{i}] must be a table, got {device!r}")
            continue
        kind = device.get("type")
        if not isinstance(kind, str) or not kind:
            problems.append(
                f'devices[{i}].type = {kind!r}: must name the integration that drives it, e.g. "sunspec"'
            )
            continue
        if kind in disabled:
            problems.append(f"devices[{i}].type = {kind!r} but [integrations.{kind}] has enabled = false")
            continue
        devices.append(device)

    if problems:
        raise ConfigError(problems, source)
    return Config(**parts, home=home, tariff=tariff, integrations=integrations, devices=tuple(devices))


def _cross_checks(home: HomeParams, problems: list[str]) -> None:
    b = home.battery
    if b.min_soc_pct >= b.max_soc_pct:
        problems.append(
            f"battery.min_soc_pct = {b.min_soc_pct} must be below battery.max_soc_pct = {b.max_soc_pct}"
        )
    if not b.min_soc_pct <= b.reserve_soc_pct <= b.max_soc_pct:
        problems.append(
            f"battery.reserve_soc_pct = {b.reserve_soc_pct} must be between min_soc_pct and max_soc_pct"
        )
    if home.ev.charger_min_w > home.ev.charger_max_w:
        problems.append(
            f"ev.charger_min_w = {home.ev.charger_min_w} must not exceed ev.charger_max_w = {home.ev.charger_max_w}"
        )
    h = home.hvac
    if h.comfort_min_c >= h.comfort_max_c:
        problems.append(
            f"hvac.comfort_min_c = {h.comfort_min_c} must be below hvac.comfort_max_c = {h.comfort_max_c}"
        )
    if h.heat_setpoint_c > h.cool_setpoint_c:
        problems.append(
            f"hvac.heat_setpoint_c = {h.heat_setpoint_c} must not exceed hvac.cool_setpoint_c = {h.cool_setpoint_c}"
        )


def load_config(path: str | Path | None) -> Config:
    """Read and validate a config file; ``None`` gives the reference home's defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read config file: {exc.strerror}"], str(p)) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(p)) from exc
    return parse_config(data, str(p))
