"""The homeowner's settings: what the dashboard edits, validated, kept, and turned into the home's parameters.

Pure: validation and the mapping onto :class:`HomeParams` / :class:`Tariff` have no I/O; the runtime persists the
settings in the store and applies them to the planner and controller.

The JSON shape (``GET/PATCH /api/settings``)::

    {"battery_reserve_pct": 20, "ev_departure": "07:30", "ev_target_soc_pct": 80,
     "comfort_min_c": 19, "comfort_max_c": 25, "export_limit_w": null,
     "tariff": {... Tariff.to_dict() ...},
     "cloud": {"mqtt_enabled": false, "mqtt_host": "", "mqtt_port": 8883, "mqtt_username": "",
               "mqtt_tls": true, "mqtt_password_set": false}}

A PATCH carries any subset; ``cloud`` may carry ``mqtt_password`` (write-only: never read back).
Settings saved from the dashboard win over the config file from then on.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .home import HomeParams
from .tariff import Tariff, TariffError

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:]+\]?$")
COMFORT_RANGE_C = (10.0, 32.0)  # a band outside this is not a comfort band for a home
MIN_COMFORT_WIDTH_C = 1.0  # the thermostat needs room to work
FIELDS = (
    "battery_reserve_pct",
    "ev_departure",
    "ev_target_soc_pct",
    "comfort_min_c",
    "comfort_max_c",
    "export_limit_w",
    "tariff",
    "cloud",
)


class SettingsError(ValueError):
    """Every problem of one change, by field: ``errors = {"battery_reserve_pct": "must be ..."}``."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass(frozen=True, slots=True)
class CloudLink:
    """The MQTT link to the utility/aggregator cloud, as the homeowner or installer sets it."""

    mqtt_enabled: bool = False
    mqtt_host: str = ""
    mqtt_port: int = 8883
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_tls: bool = True

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["mqtt_password_set"] = bool(d.pop("mqtt_password"))
        return d


@dataclass(frozen=True, slots=True)
class UserSettings:
    battery_reserve_pct: float
    ev_departure: str
    ev_target_soc_pct: float
    comfort_min_c: float
    comfort_max_c: float
    export_limit_w: float | None
    tariff: Tariff
    cloud: CloudLink = field(default_factory=CloudLink)

    def to_json(self) -> dict:
        return {
            "battery_reserve_pct": self.battery_reserve_pct,
            "ev_departure": self.ev_departure,
            "ev_target_soc_pct": self.ev_target_soc_pct,
            "comfort_min_c": self.comfort_min_c,
            "comfort_max_c": self.comfort_max_c,
            "export_limit_w": self.export_limit_w,
            "tariff": self.tariff.to_dict(),
            "cloud": self.cloud.to_json(),
        }

    def stored(self) -> dict:
        """What the store keeps (the password too: the gateway needs it to connect)."""
        d = self.to_json()
        d["cloud"] = dataclasses.asdict(self.cloud)
        return d


def from_home(home: HomeParams, tariff: Tariff, cloud: CloudLink | None = None) -> UserSettings:
    return UserSettings(
        battery_reserve_pct=home.battery.reserve_soc_pct,
        ev_departure=home.ev.departure_time,
        ev_target_soc_pct=home.ev.target_soc_pct,
        comfort_min_c=home.hvac.comfort_min_c,
        comfort_max_c=home.hvac.comfort_max_c,
        export_limit_w=None,
        tariff=tariff,
        cloud=cloud or CloudLink(),
    )


def _number(value: Any, lo: float, hi: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"must be between {lo:g} and {hi:g} {unit}, got {value:g}")
    return float(value)


def apply_patch(current: UserSettings, patch: Mapping, home: HomeParams) -> UserSettings:
    """The settings after ``patch``, or :class:`SettingsError` naming every bad field (then nothing changes)."""
    if not isinstance(patch, Mapping):
        raise SettingsError({"body": "must be a JSON object of settings"})
    errors: dict[str, str] = {}
    changes: dict[str, Any] = {}
    for key in patch:
        if key not in FIELDS:
            errors[key] = f"unknown setting; allowed: {', '.join(FIELDS)}"
    b = home.battery

    def take(key: str, check) -> None:
        if key in patch:
            try:
                changes[key] = check(patch[key])
            except (ValueError, TypeError) as exc:
                errors[key] = str(exc)

    # the reserve lives between the battery's own floor and its top
    take("battery_reserve_pct", lambda v: _number(v, b.min_soc_pct, b.max_soc_pct, "%"))
    take("ev_target_soc_pct", lambda v: _number(v, 20, 100, "%"))

    def hhmm(v: Any) -> str:
        if not isinstance(v, str) or not _HHMM.fullmatch(v):
            raise ValueError(f"must be a local time HH:MM such as 07:30, got {v!r}")
        return v

    take("ev_departure", hhmm)
    take("comfort_min_c", lambda v: _number(v, *COMFORT_RANGE_C, "°C"))
    take("comfort_max_c", lambda v: _number(v, *COMFORT_RANGE_C, "°C"))

    def export(v: Any) -> float | None:
        if v is None:
            return None
        return _number(v, 0, home.site.service_limit_w, "W (0 = no export; null = no limit)")

    take("export_limit_w", export)

    def tariff(v: Any) -> Tariff:
        if not isinstance(v, Mapping):
            raise ValueError("must be an object like the one GET /api/settings returns")
        try:
            return Tariff.from_dict(v, path="tariff", timezone=home.site.timezone)
        except TariffError as exc:
            raise ValueError(str(exc).removeprefix("tariff: ").removeprefix("tariff.")) from None

    take("tariff", tariff)
    take("cloud", lambda v: _cloud(current.cloud, v))
    if not errors:
        lo = changes.get("comfort_min_c", current.comfort_min_c)
        hi = changes.get("comfort_max_c", current.comfort_max_c)
        if hi - lo < MIN_COMFORT_WIDTH_C:
            key = "comfort_max_c" if "comfort_max_c" in changes else "comfort_min_c"
            errors[key] = (
                f"the comfort band must be at least {MIN_COMFORT_WIDTH_C:g} °C wide "
                f"(minimum {lo:g} °C, maximum {hi:g} °C)"
            )
    if errors:
        raise SettingsError(errors)
    return replace(current, **changes)


def _cloud(current: CloudLink, v: Any) -> CloudLink:
    if not isinstance(v, Mapping):
        raise ValueError("must be an object with mqtt_enabled, mqtt_host, mqtt_port, ...")
    allowed = {f.name for f in dataclasses.fields(CloudLink)} | {"mqtt_password_set"}
    unknown = sorted(set(v) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    out: dict[str, Any] = {}
    for key in ("mqtt_enabled", "mqtt_tls"):
        if key in v:
            if not isinstance(v[key], bool):
                raise ValueError(f"{key} must be true or false")
            out[key] = v[key]
    if "mqtt_port" in v:
        port = v["mqtt_port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"mqtt_port must be a TCP port 1-65535, got {port!r}")
        out["mqtt_port"] = port
    for key in ("mqtt_host", "mqtt_username", "mqtt_password"):
        if key in v:
            if not isinstance(v[key], str) or len(v[key]) > 255:
                raise ValueError(f"{key} must be text of at most 255 characters")
            out[key] = v[key].strip() if key == "mqtt_host" else v[key]
    new = replace(current, **out)
    if new.mqtt_host and not _HOST.fullmatch(new.mqtt_host):
        raise ValueError(f"mqtt_host {new.mqtt_host!r} is not a host name or IP address")
    if new.mqtt_enabled and not new.mqtt_host:
        raise ValueError("mqtt_host is needed to enable the cloud link")
    return new


def from_stored(data: Mapping, base: UserSettings, home: HomeParams) -> UserSettings:
    """Settings saved earlier, over ``base``; a saved value that no longer validates keeps the base value."""
    result = base
    for key in FIELDS:
        if key not in data:
            continue
        try:
            result = apply_patch(result, {key: data[key]}, home)
        except SettingsError:
            continue  # e.g. a reserve outside a new battery's range: the config's value stands
    return result


def home_with(home: HomeParams, s: UserSettings) -> HomeParams:
    """The home's parameters with the homeowner's settings in them."""
    return replace(
        home,
        battery=replace(home.battery, reserve_soc_pct=s.battery_reserve_pct),
        ev=replace(home.ev, departure_time=s.ev_departure, target_soc_pct=s.ev_target_soc_pct),
        hvac=replace(home.hvac, comfort_min_c=s.comfort_min_c, comfort_max_c=s.comfort_max_c),
    )


def describe_change(old: UserSettings, new: UserSettings) -> str:
    """A short line for the log and the plan's reason: ``battery reserve 20 → 35 %``."""
    parts = []
    labels = {
        "battery_reserve_pct": ("battery reserve", "%"),
        "ev_departure": ("EV departure", ""),
        "ev_target_soc_pct": ("EV target", "%"),
        "comfort_min_c": ("comfort min", "°C"),
        "comfort_max_c": ("comfort max", "°C"),
        "export_limit_w": ("export limit", "W"),
    }
    for key, (label, unit) in labels.items():
        a, b = getattr(old, key), getattr(new, key)
        if a != b:
            fmt = (lambda x: "none" if x is None else f"{x:g}") if key != "ev_departure" else str
            parts.append(f"{label} {fmt(a)} → {fmt(b)}{(' ' + unit) if unit else ''}")
    if old.tariff != new.tariff:
        parts.append("tariff")
    if old.cloud != new.cloud:
        parts.append("cloud link")
    return ", ".join(parts) or "nothing"
