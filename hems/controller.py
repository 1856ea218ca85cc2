"""The live controller: every few seconds, read the home from the bus, decide, and command the devices.

It knows devices only by capability. A setting is re-sent only when it changes (or when the device
reports something else than what was asked, e.g. after a restart of the device), and a device that refuses
a command is reported once and does not stop the others.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from .bus import Bus
from .home import HomeParams
from .limits import LimitInputs, apply_limits
from .model import Capability, Command, CommandError, Quantity, Setting
from .rules import Decision, HomeState
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

OVERRIDE_FIELDS = ("battery_charge_power_w", "ev_power_limit_w", "water_heater_enabled")


class ReadingHistory:
    """The last minute of the powers that make up the home-load estimate, so that the estimate can use
    values from the same moment as the grid meter's reading. Devices report at their own pace (a Zigbee meter
    every few seconds, an OCPP charger with its meter values): subtracting a fresh EV power from a stale grid
    reading would make the controller chase a load that is not there."""

    QUANTITIES = frozenset({Quantity.BATTERY_POWER_W, Quantity.PV_POWER_W, Quantity.POWER_W})
    KEEP_S = 60.0

    def __init__(self, bus: Bus) -> None:
        self._sub = bus.subscribe(maxsize=10_000)
        self._series: dict[tuple[str, str], deque[tuple[float, float]]] = {}

    def update(self) -> None:
        for r in self._sub.drain():
            if (
                r.quantity in self.QUANTITIES
                and isinstance(r.value, int | float)
                and not isinstance(r.value, bool)
            ):
                q = self._series.setdefault((r.device_id, r.quantity), deque())
                q.append((r.ts, float(r.value)))
                while q and q[0][0] < r.ts - self.KEEP_S:
                    q.popleft()

    def at(self, device_id: str, quantity: str, ts: float, default: float) -> float:
        """The value the device reported last at or before ``ts``; ``default`` when none is kept."""
        q = self._series.get((device_id, quantity))
        if not q:
            return default
        i = bisect.bisect_right([t for t, _ in q], ts)
        return q[i - 1][1] if i > 0 else q[0][1]

    def close(self) -> None:
        self._sub.close()


def state_from_bus(bus: Bus, history: ReadingHistory | None = None) -> HomeState | None:
    """The controller's view of the home; None until the grid meter and battery have reported."""
    meter = bus.first(Capability.GRID_METER)
    battery = bus.first(Capability.BATTERY)
    if meter is None or battery is None:
        return None
    grid_w = bus.value(meter.info.device_id, Quantity.GRID_POWER_W)
    soc = bus.value(battery.info.device_id, Quantity.SOC_PCT)
    batt_w = bus.value(battery.info.device_id, Quantity.BATTERY_POWER_W, 0.0)
    if grid_w is None or soc is None:
        return None
    pv_w = sum(
        float(bus.value(d.info.device_id, Quantity.PV_POWER_W, 0.0))
        for d in bus.devices(Capability.PV_INVERTER)
    )
    ev_plugged, ev_soc, ev_w = False, None, 0.0
    charger = bus.first(Capability.EV_CHARGER)
    if charger is not None:
        cid = charger.info.device_id
        ev_plugged = bool(bus.value(cid, Quantity.EV_PLUGGED, False))
        ev_soc = bus.value(cid, Quantity.EV_SOC_PCT)
        ev_w = float(bus.value(cid, Quantity.POWER_W, 0.0))
    tank = None
    wh_w = 0.0
    for sw in bus.devices(Capability.SWITCH):
        if sw.info.extra.get("load") == "water_heater":
            tank = bus.value(sw.info.device_id, Quantity.TANK_TEMP_C)
            wh_w = _num(bus.value(sw.info.device_id, Quantity.POWER_W, 0.0))
    indoor = outdoor = None
    hvac_w = 0.0
    thermostat = bus.first(Capability.THERMOSTAT)
    if thermostat is not None:
        tid = thermostat.info.device_id
        indoor = bus.value(tid, Quantity.INDOOR_TEMP_C)
        outdoor = bus.value(tid, Quantity.OUTDOOR_TEMP_C)
        hvac_w = _num(bus.value(tid, Quantity.POWER_W, 0.0))
    # The meter is the balance: what is neither PV, battery nor EV is the home's load, all taken at the moment
    # of the meter's reading where the history has it.
    at_pv, at_batt, at_ev = pv_w, float(batt_w), ev_w
    grid_reading = bus.latest(meter.info.device_id, Quantity.GRID_POWER_W)
    if history is not None and grid_reading is not None:
        history.update()
        t = grid_reading.ts
        at_pv = sum(
            history.at(
                d.info.device_id,
                Quantity.PV_POWER_W,
                t,
                _num(bus.value(d.info.device_id, Quantity.PV_POWER_W, 0.0)),
            )
            for d in bus.devices(Capability.PV_INVERTER)
        )
        at_batt = history.at(battery.info.device_id, Quantity.BATTERY_POWER_W, t, float(batt_w))
        if charger is not None:
            at_ev = history.at(charger.info.device_id, Quantity.POWER_W, t, ev_w)
    home_w = float(grid_w) + at_pv - at_batt - at_ev
    return HomeState(
        ts=bus.clock.now(),
        pv_power_w=pv_w,
        home_load_w=max(0.0, home_w),
        battery_soc_pct=float(soc),
        ev_plugged=ev_plugged,
        ev_soc_pct=None if ev_soc is None else float(ev_soc),
        ev_power_w=ev_w,
        tank_temp_c=None if tank is None else float(tank),
        indoor_temp_c=None if indoor is None else float(indoor),
        outdoor_temp_c=None if outdoor is None else float(outdoor),
        hvac_power_w=hvac_w,
        water_heater_power_w=wh_w,
    )


def _num(value) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def ground_fault(bus: Bus) -> bool:
    """Any device reporting a ground fault trips the safety interlock."""
    return any(
        r.get(Quantity.GROUND_FAULT) is not None and r[Quantity.GROUND_FAULT].value is True
        for r in bus.snapshot().values()
    )


@dataclass
class ControllerStatus:
    strategy: str
    decision: Decision | None = None
    ts: float = 0.0
    errors: int = 0

    def to_json(self) -> dict:
        d = self.decision
        return {
            "strategy": self.strategy,
            "ts": self.ts,
            "period": d.period if d else None,
            "reasons": list(d.reasons) if d else [],
            "battery_charge_power_w": d.battery_charge_power_w if d else None,
            "ev_power_limit_w": d.ev_power_limit_w if d else None,
            "water_heater_enabled": d.water_heater_enabled if d else None,
            "heat_setpoint_c": d.heat_setpoint_c if d else None,
            "cool_setpoint_c": d.cool_setpoint_c if d else None,
            "command_errors": self.errors,
        }


class Controller:
    BATTERY_DEADBAND_W = 50.0  # don't chase measurement noise

    SETPOINT_DEADBAND_C = 0.1

    def __init__(
        self,
        bus: Bus,
        strategy,
        params: HomeParams,
        *,
        interval_s: float = 5.0,
        dr_limit: Callable[[float], tuple] | None = None,
    ) -> None:
        self.bus = bus
        self.strategy = strategy
        self.params = params
        self.interval_s = interval_s
        self.dr_limit = dr_limit  # now -> (import cap W or None, event ids, SIMPLE level response or None)
        self._last_ts: float | None = None
        self._poked = asyncio.Event()
        self.history = ReadingHistory(bus)
        # callables now -> {"battery_charge_power_w"?, "ev_power_limit_w"?, "water_heater_enabled"?, "reasons"}
        self.overrides: list[Callable[[float], dict | None]] = []
        # callables now -> {"export_cap_w"?, "generation_cap_w"?, "battery_charge_power_w"?} from utility DER controls
        self.der_limits: list[Callable[[float], dict]] = []
        self.export_limit_w: float | None = None  # the site's own export limit (a homeowner setting)
        self.status = ControllerStatus(strategy.name)
        self._task: asyncio.Task | None = None
        self._refused: set[tuple[str, str]] = set()

    async def step(self) -> Decision | None:
        state = state_from_bus(self.bus, self.history)
        if state is None:
            return None
        observe = getattr(self.strategy, "observe", None)
        if observe is not None and self._last_ts is not None and state.ts > self._last_ts:
            observe(state, state.ts - self._last_ts)
        self._last_ts = state.ts
        decision = self.strategy.decide(state)
        for source in self.overrides:  # a VPP dispatch replaces the plan's setpoints for its duration
            o = source(state.ts)
            if o:
                fields = {k: o[k] for k in OVERRIDE_FIELDS if k in o}
                decision = replace(decision, **fields, reasons=(*decision.reasons, *o.get("reasons", ())))
        if self.strategy.name != "none":
            cap, event_id, level, *utility = self.dr_limit(state.ts) if self.dr_limit else (None, "", None)
            export_cap, generation_cap = [*utility, None, None][:2]
            export_cap = _tighter(export_cap, self.export_limit_w)
            for source in self.der_limits:  # utility DER controls (IEEE 2030.5), defaults included
                der = source(state.ts) or {}
                export_cap = _tighter(export_cap, der.get("export_cap_w"))
                generation_cap = _tighter(generation_cap, der.get("generation_cap_w"))
                if der.get("battery_max_charge_w") is not None:  # a utility load limit on the battery
                    ceiling = float(der["battery_max_charge_w"])
                    wanted = decision.battery_charge_power_w
                    if wanted is None or wanted > ceiling:
                        decision = replace(
                            decision,
                            battery_charge_power_w=ceiling if wanted is None else min(wanted, ceiling),
                            reasons=(*decision.reasons, f"utility load limit {ceiling / 1000:.1f} kW"),
                        )
                if der.get("battery_charge_power_w") is not None:
                    decision = replace(
                        decision,
                        battery_charge_power_w=float(der["battery_charge_power_w"]),
                        reasons=(*decision.reasons, "utility battery setpoint"),
                    )
            limits = LimitInputs(
                ground_fault=ground_fault(self.bus),
                dr_import_cap_w=cap,
                dr_event=event_id,
                dr_level=level,
                export_cap_w=export_cap,
                generation_cap_w=generation_cap,
            )
            decision = apply_limits(decision, state, self.params, limits)
        self.status.decision = decision
        self.status.ts = state.ts
        if self.strategy.name != "none":
            await self._apply(decision)
        return decision

    async def _apply(self, d: Decision) -> None:
        for battery in self.bus.devices(Capability.BATTERY):
            await self._send(battery.info.device_id, Setting.BATTERY_CHARGE_POWER_W, d.battery_charge_power_w)
        for inverter in self.bus.devices(Capability.PV_INVERTER):
            await self._send(inverter.info.device_id, Setting.PV_LIMIT_W, d.pv_limit_w)
        for charger in self.bus.devices(Capability.EV_CHARGER):
            await self._send(charger.info.device_id, Setting.EV_POWER_LIMIT_W, d.ev_power_limit_w)
        for sw in self.bus.devices(Capability.SWITCH):
            if sw.info.extra.get("load") == "water_heater":
                await self._send(sw.info.device_id, Setting.SWITCH_ON, d.water_heater_enabled)
        for th in self.bus.devices(Capability.THERMOSTAT):
            tid = th.info.device_id
            if d.hvac_mode is not None:
                await self._send(tid, Setting.HVAC_MODE, d.hvac_mode)
            if d.heat_setpoint_c is not None:
                await self._send(tid, Setting.HEAT_SETPOINT_C, d.heat_setpoint_c, self.SETPOINT_DEADBAND_C)
            if d.cool_setpoint_c is not None:
                await self._send(tid, Setting.COOL_SETPOINT_C, d.cool_setpoint_c, self.SETPOINT_DEADBAND_C)

    async def _send(self, device_id: str, setting: Setting, value, deadband: float | None = None) -> None:
        asked = self.bus.asked(device_id, setting)
        if asked is not None and _same(
            asked.value, value, self.BATTERY_DEADBAND_W if deadband is None else deadband
        ):
            return
        try:
            await self.bus.send(Command(device_id, setting, value, source=f"controller:{self.strategy.name}"))
            self._refused.discard((device_id, setting))
        except CommandError as exc:
            self.status.errors += 1
            if (device_id, setting) not in self._refused:  # log once per device and setting
                log.warning("command %s=%r to %s failed: %s", setting, value, device_id, exc)
                self._refused.add((device_id, setting))

    async def run(self) -> None:
        last_error = ""
        while True:
            try:
                await self.step()
                last_error = ""
            except Exception as exc:  # the controller must keep running whatever one cycle hit
                if repr(exc) != last_error:  # a repeating failure is logged once, not every cycle
                    log.exception("controller cycle failed")
                    last_error = repr(exc)
            await self._pause()

    async def _pause(self) -> None:
        """Wait one interval, or less when poked (a DR event must not wait for the next cycle)."""
        self._poked.clear()
        sleeper = asyncio.ensure_future(self.bus.clock.sleep(self.interval_s))
        poke = asyncio.ensure_future(self._poked.wait())
        try:
            await asyncio.wait((sleeper, poke), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            poke.cancel()

    def poke(self) -> None:
        """Run the next cycle now (a DR event started or ended, a dispatch arrived, a setting changed)."""
        self._poked.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="controller")

    async def stop(self) -> None:
        await cancel_and_wait(self._task, what="controller")
        self._task = None


def _tighter(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _same(a, b, tolerance: float) -> bool:
    if (
        not (isinstance(a, int | float) and isinstance(b, int | float))
        or isinstance(a, bool)
        or isinstance(b, bool)
    ):
        return a == b
    return abs(float(a) - float(b)) <= tolerance
