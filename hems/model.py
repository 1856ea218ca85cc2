"""Values that cross boundaries: readings, commands, device descriptions.

Sign conventions (used everywhere in the gateway):
- ``grid_power_w``: positive = import from the grid, negative = export.
- ``battery_power_w`` / ``battery_charge_power_w``: positive = charging, negative = discharging.
- ``pv_power_w``: AC power produced, always >= 0.
- every load (``power_w`` of a switch, EV, HVAC, home): positive = consumed.

Timestamps are POSIX seconds (float, UTC); local time is only used for tariff periods and display.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Capability(StrEnum):
    GRID_METER = "grid_meter"
    PV_INVERTER = "pv_inverter"
    BATTERY = "battery"
    EV_CHARGER = "ev_charger"
    THERMOSTAT = "thermostat"
    SWITCH = "switch"
    METER = "meter"  # a device that also measures its own consumption


class Quantity(StrEnum):
    """Reading names. The suffix is the unit; a quantity never changes unit."""

    GRID_POWER_W = "grid_power_w"
    ENERGY_IMPORT_WH = "energy_import_wh"
    ENERGY_EXPORT_WH = "energy_export_wh"
    VOLTAGE_V = "voltage_v"
    CURRENT_A = "current_a"
    PV_POWER_W = "pv_power_w"
    PV_AVAILABLE_W = "pv_available_w"
    PV_LIMIT_W = "pv_limit_w"
    BATTERY_POWER_W = "battery_power_w"
    BATTERY_SETPOINT_W = "battery_setpoint_w"
    SOC_PCT = "soc_pct"
    POWER_W = "power_w"
    ENERGY_WH = "energy_wh"
    EV_PLUGGED = "ev_plugged"
    EV_SOC_PCT = "ev_soc_pct"
    EV_POWER_LIMIT_W = "ev_power_limit_w"
    SESSION_ENERGY_WH = "session_energy_wh"
    INDOOR_TEMP_C = "indoor_temp_c"
    OUTDOOR_TEMP_C = "outdoor_temp_c"
    HEAT_SETPOINT_C = "heat_setpoint_c"
    COOL_SETPOINT_C = "cool_setpoint_c"
    HVAC_MODE = "hvac_mode"
    SWITCH_ON = "switch_on"
    TANK_TEMP_C = "tank_temp_c"
    GROUND_FAULT = "ground_fault"  # true trips the safety interlock: PV and EV off
    STATUS = "status"

    @property
    def unit(self) -> str:
        suffix = self.value.rsplit("_", 1)[-1]
        return _UNITS.get(suffix, "")


_UNITS = {"w": "W", "wh": "Wh", "v": "V", "a": "A", "pct": "%", "c": "°C"}


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value of one device at one time."""

    device_id: str
    quantity: str
    value: float | bool | str
    ts: float

    @property
    def unit(self) -> str:
        try:
            return Quantity(self.quantity).unit
        except ValueError:
            return ""

    def to_json(self) -> dict:
        return {
            "device_id": self.device_id,
            "quantity": self.quantity,
            "value": self.value,
            "unit": self.unit,
            "ts": self.ts,
        }


class Setting(StrEnum):
    """What a command can set. The same name, where one exists, is the quantity read back."""

    BATTERY_CHARGE_POWER_W = "battery_charge_power_w"  # +charge / -discharge; None = device's own mode
    PV_LIMIT_W = "pv_limit_w"  # AC limit; None = no curtailment
    EV_POWER_LIMIT_W = "ev_power_limit_w"  # 0 pauses charging
    SWITCH_ON = "switch_on"
    HEAT_SETPOINT_C = "heat_setpoint_c"
    COOL_SETPOINT_C = "cool_setpoint_c"
    HVAC_MODE = "hvac_mode"  # off | heat | cool | auto


HVAC_MODES = ("off", "heat", "cool", "auto")


@dataclass(frozen=True, slots=True)
class Command:
    """A request to change one setting of one device, kept beside what the device reports."""

    device_id: str
    setting: Setting
    value: float | bool | str | None
    source: str = "controller"
    ts: float = 0.0

    def to_json(self) -> dict:
        return {
            "device_id": self.device_id,
            "setting": str(self.setting),
            "value": self.value,
            "source": self.source,
            "ts": self.ts,
        }


class DeviceStatus(StrEnum):
    OK = "ok"
    OFFLINE = "offline"
    FAULTY = "faulty"  # answered garbage; logged once, ignored until it recovers


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    name: str
    capabilities: frozenset[Capability]
    integration: str
    manufacturer: str = ""
    model: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict:
        return {
            "device_id": self.device_id,
            "name": self.name,
            "capabilities": sorted(str(c) for c in self.capabilities),
            "integration": self.integration,
            "manufacturer": self.manufacturer,
            "model": self.model,
        }


class CommandError(Exception):
    """A device refused or could not apply a command; the message says why."""


FIRMWARE_UPDATE_STATES = ("idle", "downloading", "installing", "installed", "failed")


@dataclass(frozen=True, slots=True)
class FirmwareStatus:
    """A device's firmware and the state of its update, whatever the protocol (Zigbee OTA, OCPP, ...).

    ``update_state`` is one of ``FIRMWARE_UPDATE_STATES``; ``progress_pct`` is None while unknown;
    ``message`` says what the device last reported (or why it failed) in words a person can act on.
    """

    version: str = ""
    update_state: str = "idle"
    progress_pct: float | None = None
    target_version: str = ""
    message: str = ""
    ts: float = 0.0

    def __post_init__(self) -> None:
        if self.update_state not in FIRMWARE_UPDATE_STATES:
            raise ValueError(
                f"firmware update state {self.update_state!r} must be one of {', '.join(FIRMWARE_UPDATE_STATES)}"
            )

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "update": {
                "state": self.update_state,
                "progress_pct": self.progress_pct,
                "target_version": self.target_version,
                "message": self.message,
                "ts": self.ts,
            },
        }
