"""Built-in ``sim`` integration: the simulated home's devices, exposed directly as core capabilities.

It lets dev mode and tests run a whole home before any protocol adapter exists. Each later protocol
integration ships its own simulated peer that speaks the real protocol; this one speaks none.

Options (``[integrations.sim]``): ``prefix`` (string prepended to device ids, default ""), ``exclude`` (device
ids not to expose, e.g. ``["inverter"]`` when a protocol integration's simulated peer serves that device).
"""

from __future__ import annotations

from hems.config import ConfigError
from hems.integration import IntegrationContext
from hems.livesim import LiveSimHome
from hems.model import HVAC_MODES, Capability, CommandError, DeviceInfo, Quantity, Reading
from hems.sim.home import StepResult

Q = Quantity


class _SimDevice:
    def __init__(self, sim: LiveSimHome, info: DeviceInfo) -> None:
        self.sim = sim
        self._info = info

    @property
    def info(self) -> DeviceInfo:
        return self._info


class SimGridMeter(_SimDevice):
    def __init__(self, sim: LiveSimHome, info: DeviceInfo) -> None:
        super().__init__(sim, info)
        self.import_wh = 0.0
        self.export_wh = 0.0

    def readings(self, r: StepResult, ts: float) -> list[Reading]:
        self.import_wh += r.import_w * r.dt_s / 3600.0
        self.export_wh += r.export_w * r.dt_s / 3600.0
        d = self.info.device_id
        return [
            Reading(d, Q.GRID_POWER_W, round(r.grid_power_w, 1), ts),
            Reading(d, Q.ENERGY_IMPORT_WH, round(self.import_wh, 1), ts),
            Reading(d, Q.ENERGY_EXPORT_WH, round(self.export_wh, 1), ts),
            Reading(d, Q.VOLTAGE_V, self.sim.params.site.voltage_v, ts),
        ]


class SimHybridInverter(_SimDevice):
    """PV inverter and battery in one device, like the reference home's hybrid inverter."""

    async def set_pv_limit_w(self, limit_w: float | None) -> None:
        if limit_w is not None and limit_w < 0:
            raise CommandError(f"pv_limit_w must be >= 0 or None, got {limit_w}")
        self.sim.set_controls(pv_limit_w=limit_w)

    async def set_battery_charge_power_w(self, charge_power_w: float | None) -> None:
        b = self.sim.params.battery
        if charge_power_w is not None:
            charge_power_w = max(-b.max_discharge_w, min(b.max_charge_w, charge_power_w))
        self.sim.set_controls(battery_charge_power_w=charge_power_w)

    def readings(self, r: StepResult, ts: float) -> list[Reading]:
        d = self.info.device_id
        limit = self.sim.controls.pv_limit_w
        setpoint = self.sim.controls.battery_charge_power_w
        out = [
            Reading(d, Q.PV_POWER_W, round(r.pv_power_w, 1), ts),
            Reading(d, Q.PV_AVAILABLE_W, round(r.pv_available_w, 1), ts),
            Reading(d, Q.BATTERY_POWER_W, round(r.battery_power_w, 1), ts),
            Reading(d, Q.SOC_PCT, round(r.battery_soc_pct, 2), ts),
        ]
        out.append(Reading(d, Q.PV_LIMIT_W, "none" if limit is None else float(limit), ts))
        out.append(Reading(d, Q.BATTERY_SETPOINT_W, "auto" if setpoint is None else float(setpoint), ts))
        return out


class SimEVCharger(_SimDevice):
    def __init__(self, sim: LiveSimHome, info: DeviceInfo) -> None:
        super().__init__(sim, info)
        self.session_wh = 0.0
        self.total_wh = 0.0
        self._was_plugged = False

    async def set_ev_power_limit_w(self, limit_w: float | None) -> None:
        if limit_w is not None and limit_w < 0:
            raise CommandError(f"ev_power_limit_w must be >= 0 or None, got {limit_w}")
        self.sim.set_controls(ev_power_limit_w=limit_w)

    def readings(self, r: StepResult, ts: float) -> list[Reading]:
        if r.ev_plugged and not self._was_plugged:
            self.session_wh = 0.0
        self._was_plugged = r.ev_plugged
        energy = r.ev_power_w * r.dt_s / 3600.0
        self.session_wh += energy
        self.total_wh += energy
        d = self.info.device_id
        limit = self.sim.controls.ev_power_limit_w
        return [
            Reading(d, Q.POWER_W, round(r.ev_power_w, 1), ts),
            Reading(d, Q.EV_PLUGGED, bool(r.ev_plugged), ts),
            Reading(d, Q.EV_SOC_PCT, round(r.ev_soc_pct, 2), ts),
            Reading(d, Q.SESSION_ENERGY_WH, round(self.session_wh, 1), ts),
            Reading(d, Q.ENERGY_WH, round(self.total_wh, 1), ts),
            Reading(d, Q.EV_POWER_LIMIT_W, "none" if limit is None else float(limit), ts),
        ]


class SimThermostat(_SimDevice):
    async def set_hvac(
        self,
        *,
        mode: str | None = None,
        heat_setpoint_c: float | None = None,
        cool_setpoint_c: float | None = None,
    ) -> None:
        changes: dict = {}
        if mode is not None:
            if mode not in HVAC_MODES:
                raise CommandError(f"hvac_mode must be one of {', '.join(HVAC_MODES)}, got {mode!r}")
            changes["hvac_mode"] = mode
        for key, value in (("heat_setpoint_c", heat_setpoint_c), ("cool_setpoint_c", cool_setpoint_c)):
            if value is not None:
                if not 5.0 <= value <= 35.0:
                    raise CommandError(f"{key} must be between 5 and 35 °C, got {value}")
                changes[key] = value
        self.sim.set_controls(**changes)

    def readings(self, r: StepResult, ts: float) -> list[Reading]:
        d = self.info.device_id
        c = self.sim.controls
        h = self.sim.params.hvac
        return [
            Reading(d, Q.INDOOR_TEMP_C, round(r.indoor_temp_c, 2), ts),
            Reading(d, Q.OUTDOOR_TEMP_C, round(r.outdoor_temp_c, 2), ts),
            Reading(
                d,
                Q.HEAT_SETPOINT_C,
                c.heat_setpoint_c if c.heat_setpoint_c is not None else h.heat_setpoint_c,
                ts,
            ),
            Reading(
                d,
                Q.COOL_SETPOINT_C,
                c.cool_setpoint_c if c.cool_setpoint_c is not None else h.cool_setpoint_c,
                ts,
            ),
            Reading(d, Q.HVAC_MODE, c.hvac_mode, ts),
            Reading(d, Q.POWER_W, round(r.hvac_power_w, 1), ts),
        ]


class SimWaterHeaterRelay(_SimDevice):
    async def set_switch(self, on: bool) -> None:
        self.sim.set_controls(water_heater_enabled=bool(on))

    def readings(self, r: StepResult, ts: float) -> list[Reading]:
        d = self.info.device_id
        return [
            Reading(d, Q.SWITCH_ON, bool(self.sim.controls.water_heater_enabled), ts),
            Reading(d, Q.POWER_W, round(r.water_heater_power_w, 1), ts),
            Reading(d, Q.TANK_TEMP_C, round(r.tank_temp_c, 2), ts),
        ]


class SimIntegration:
    name = "sim"

    def __init__(self, ctx: IntegrationContext) -> None:
        ctx.reject_unknown({"prefix", "exclude"})
        self.ctx = ctx
        prefix = ctx.option("prefix", "", str, "a string")
        exclude = ctx.option("exclude", [], list, "a list of device ids")
        self._own_sim = ctx.sim is None
        self.sim = ctx.sim or LiveSimHome(ctx.config.home, ctx.clock, seed=ctx.config.sim.seed)

        def info(name: str, label: str, caps: set[Capability], **extra) -> DeviceInfo:
            return DeviceInfo(prefix + name, label, frozenset(caps), "sim", "HEMS", "simulated", extra)

        self.devices = [
            SimGridMeter(self.sim, info("grid-meter", "Grid meter", {Capability.GRID_METER})),
            SimHybridInverter(
                self.sim, info("inverter", "Hybrid inverter", {Capability.PV_INVERTER, Capability.BATTERY})
            ),
            SimEVCharger(
                self.sim, info("ev-charger", "EV charger", {Capability.EV_CHARGER, Capability.METER})
            ),
            SimThermostat(
                self.sim, info("thermostat", "Thermostat", {Capability.THERMOSTAT, Capability.METER})
            ),
            SimWaterHeaterRelay(
                self.sim,
                info(
                    "water-heater", "Water heater", {Capability.SWITCH, Capability.METER}, load="water_heater"
                ),
            ),
        ]
        known = {d.info.device_id.removeprefix(prefix) for d in self.devices}
        unknown = sorted(set(exclude) - known)
        if unknown:
            raise ConfigError(
                [
                    f"integrations.sim.exclude: no simulated device {u!r}; known: {', '.join(sorted(known))}"
                    for u in unknown
                ]
            )
        self.devices = [d for d in self.devices if d.info.device_id.removeprefix(prefix) not in exclude]

    def _publish(self, result: StepResult) -> None:
        ts = self.ctx.clock.now()
        for device in self.devices:
            self.ctx.bus.publish_many(device.readings(result, ts))

    async def start(self) -> None:
        for device in self.devices:
            self.ctx.bus.add_device(device)
        self.sim.on_step(self._publish)
        self._publish(self.sim.last)
        if self._own_sim:
            self.sim.start()

    async def stop(self) -> None:
        if self._own_sim:
            await self.sim.stop()
        for device in self.devices:
            self.ctx.bus.remove_device(device.info.device_id)


def create(ctx: IntegrationContext) -> SimIntegration:
    return SimIntegration(ctx)
