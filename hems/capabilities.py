"""Device capabilities as small protocols, composed per device.

A device object implements ``Device`` plus the capability protocols it has: a hybrid inverter is a
``PVInverter`` and a ``Battery``; a metering relay is a ``Switch`` that also reports ``power_w``.
Readings do not go through these methods: integrations publish them on the bus. These protocols are the
command side, and each lists in its docstring the quantities (``hems.model.Quantity``) it publishes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .model import HVAC_MODES, Capability, Command, CommandError, DeviceInfo, Setting


@runtime_checkable
class Device(Protocol):
    @property
    def info(self) -> DeviceInfo: ...


@runtime_checkable
class GridMeter(Device, Protocol):
    """Publishes grid_power_w (+import), energy_import_wh, energy_export_wh, voltage_v. No commands."""


@runtime_checkable
class PVInverter(Device, Protocol):
    """Publishes pv_power_w, pv_limit_w (None = no curtailment)."""

    async def set_pv_limit_w(self, limit_w: float | None) -> None: ...


@runtime_checkable
class Battery(Device, Protocol):
    """Publishes battery_power_w (+charge), soc_pct, battery_setpoint_w."""

    async def set_battery_charge_power_w(self, charge_power_w: float | None) -> None:
        """+charge / -discharge at the AC terminal; None hands control back to the battery's own mode."""
        ...


@runtime_checkable
class EVCharger(Device, Protocol):
    """Publishes power_w, ev_plugged, ev_soc_pct (when known), session_energy_wh, ev_power_limit_w."""

    async def set_ev_power_limit_w(self, limit_w: float | None) -> None:
        """0 pauses charging; None removes the gateway's limit (charger's own maximum)."""
        ...


@runtime_checkable
class Thermostat(Device, Protocol):
    """Publishes indoor_temp_c, heat_setpoint_c, cool_setpoint_c, hvac_mode, power_w (when metered)."""

    async def set_hvac(
        self,
        *,
        mode: str | None = None,
        heat_setpoint_c: float | None = None,
        cool_setpoint_c: float | None = None,
    ) -> None: ...


@runtime_checkable
class Switch(Device, Protocol):
    """Publishes switch_on and, when metered, power_w and energy_wh."""

    async def set_switch(self, on: bool) -> None: ...


# Which capability a setting belongs to: the bus routes a Command to the matching method.
SETTING_CAPABILITY: dict[Setting, Capability] = {
    Setting.BATTERY_CHARGE_POWER_W: Capability.BATTERY,
    Setting.PV_LIMIT_W: Capability.PV_INVERTER,
    Setting.EV_POWER_LIMIT_W: Capability.EV_CHARGER,
    Setting.SWITCH_ON: Capability.SWITCH,
    Setting.HEAT_SETPOINT_C: Capability.THERMOSTAT,
    Setting.COOL_SETPOINT_C: Capability.THERMOSTAT,
    Setting.HVAC_MODE: Capability.THERMOSTAT,
}

CAPABILITY_PROTOCOL: dict[Capability, type] = {
    Capability.GRID_METER: GridMeter,
    Capability.PV_INVERTER: PVInverter,
    Capability.BATTERY: Battery,
    Capability.EV_CHARGER: EVCharger,
    Capability.THERMOSTAT: Thermostat,
    Capability.SWITCH: Switch,
}


def check_device(device: Device) -> None:
    """Raise TypeError if a device claims a capability it does not implement."""
    for cap in device.info.capabilities:
        proto = CAPABILITY_PROTOCOL.get(cap)
        if proto is not None and not isinstance(device, proto):
            raise TypeError(
                f"device {device.info.device_id!r} claims {cap} but does not implement {proto.__name__}"
            )


async def apply_command(device: Device, command: Command) -> None:
    """Call the capability method that a command names; CommandError if the device lacks it."""
    cap = SETTING_CAPABILITY[command.setting]
    if cap not in device.info.capabilities:
        raise CommandError(
            f"device {command.device_id!r} has no {cap} capability for setting {command.setting}"
        )
    v = command.value
    match command.setting:
        case Setting.BATTERY_CHARGE_POWER_W:
            await device.set_battery_charge_power_w(None if v is None else float(v))  # type: ignore[attr-defined]
        case Setting.PV_LIMIT_W:
            await device.set_pv_limit_w(None if v is None else float(v))  # type: ignore[attr-defined]
        case Setting.EV_POWER_LIMIT_W:
            await device.set_ev_power_limit_w(None if v is None else float(v))  # type: ignore[attr-defined]
        case Setting.SWITCH_ON:
            if not isinstance(v, bool):
                raise CommandError(f"switch_on takes true or false, got {v!r}")
            await device.set_switch(v)  # type: ignore[attr-defined]
        case Setting.HEAT_SETPOINT_C:
            await device.set_hvac(heat_setpoint_c=float(v))  # type: ignore[attr-defined,arg-type]
        case Setting.COOL_SETPOINT_C:
            await device.set_hvac(cool_setpoint_c=float(v))  # type: ignore[attr-defined,arg-type]
        case Setting.HVAC_MODE:
            if v not in HVAC_MODES:
                raise CommandError(f"hvac_mode must be one of {', '.join(HVAC_MODES)}, got {v!r}")
            await device.set_hvac(mode=str(v))  # type: ignore[attr-defined]
