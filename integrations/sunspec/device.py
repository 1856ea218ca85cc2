"""A SunSpec hybrid inverter as a gateway device: a ``PVInverter`` and a ``Battery``, polled over Modbus TCP.

Which models it uses, when the device has them:

- identity: common model 1 (maker, model, serial, version);
- AC side: 701, else 103/102/101 (power, voltage, lifetime energy, state);
- PV: the PV ports of 714, else the modules of 160 (DC power); a device without either and without storage
  reports its AC power as PV power;
- battery: 802, 713, 124 (SOC, power, capacity, state);
- controls: the PV power limit through 704 (WMaxLimPct) or 123 (WMaxLimPct), the battery through 124
  (StorCtl_Mod with InWRte/OutWRte as a charge/discharge window), connect/disconnect through 123 (Conn).

Every control write also sets the device's revert timer (``revert_timeout_s``), is read back, and while the
gateway asks for something other than the device's default it is written again every third of that time, so
a gateway that dies leaves the inverter on its own safe defaults within ``revert_timeout_s``. A setting that
the device reports differently from what was asked (changed at the device, or refused) is shown as a
``command_status`` reading and logged once; it is not fought.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hems.bus import Bus
from hems.clock import Clock
from hems.model import (
    Capability,
    CommandError,
    DeviceInfo,
    DeviceStatus,
    FirmwareStatus,
    Quantity,
    Reading,
)

from .client import DeviceMap, DeviceRefused, Garbage, SunSpecClient, Unreachable
from .models import Model, ModelError

log = logging.getLogger("integrations.sunspec")

Q = Quantity
TRACK_DEADBAND_W = 10.0  # a setpoint that follows PV is written again when it moved this much
MIN_WALL_INTERVAL_S = 0.2  # never poll faster than this in wall time, whatever the clock's speed
AC_MODELS = (701, 103, 102, 101)
STORAGE_MODELS = (124, 713, 802)
STATIC_MODELS = (1, 120, 121, 702)  # read at discovery only

# Extra quantities this device publishes beside the core ones (units in the names, as in hems.model).
AC_POWER_W = "ac_power_w"  # inverter AC output, + to the house/grid, - absorbed (charging from the grid)
BATTERY_CAPACITY_WH = "battery_capacity_wh"
BATTERY_STATE = "battery_state"
INVERTER_STATE = "inverter_state"
CONNECTED = "connected"
COMMAND_STATUS = "command_status"  # "ok", or what the device reports differently from what was asked


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    host: str
    port: int = 502
    unit_id: int = 1
    poll_interval_s: float = 5.0
    id: str = "inverter"
    name: str = "Hybrid inverter"
    revert_timeout_s: int = 60
    timeout_s: float = 3.0
    max_backoff_s: float = 300.0


@dataclass
class _Setting:
    """One control the gateway asked for, kept to refresh it and to compare with what the device reports."""

    name: str  # the Setting it implements: pv_limit_w, battery_charge_power_w, connected
    value: Any
    model_id: int
    changes: dict[str, Any]
    active: bool  # not the device's default: refreshed before its revert timer expires
    written: dict[str, list[int]] = field(default_factory=dict)
    last_write: float = 0.0
    overridden: bool = False
    track: Callable[[Any], dict[str, Any]] | None = None  # recomputes the changes at every poll


class SunSpecInverter:
    """PVInverter + Battery over SunSpec. ``run()`` polls until cancelled; commands may come at any time."""

    def __init__(
        self, cfg: DeviceConfig, bus: Bus, clock: Clock, logger: logging.Logger | None = None
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.clock = clock
        self.log = logger or log
        self.client = SunSpecClient(cfg.host, cfg.port, cfg.unit_id, timeout_s=cfg.timeout_s)
        self.map: DeviceMap | None = None
        self.latest: dict[int, Model] = {}
        self.polls = 0
        self._poll_set: list[Model] = []
        self._settings: dict[str, _Setting] = {}
        self._io = asyncio.Lock()
        self._logged: set[str] = set()  # problems logged once, forgotten when they go away
        self._command_status = "ok"
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._info = DeviceInfo(
            cfg.id,
            cfg.name,
            frozenset({Capability.PV_INVERTER, Capability.BATTERY}),
            "sunspec",
            extra={"host": cfg.host, "port": cfg.port, "unit_id": cfg.unit_id},
        )

    @property
    def info(self) -> DeviceInfo:
        return self._info

    @property
    def device_id(self) -> str:
        return self.cfg.id

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name=f"sunspec-{self.cfg.id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True
        # cancel until it is done: asyncio.wait_for (used by pymodbus) can swallow one cancellation on 3.11,
        # and awaiting the task through asyncio.wait never swallows a cancellation of our own caller
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.2)
        self.client.close()

    async def run(self) -> None:
        interval = self.cfg.poll_interval_s
        backoff = interval
        while not self._stopping:
            try:
                if self.map is None or not self.client.connected:
                    await self.connect()
                readings = await self.poll_once()
                self.bus.publish_many(readings)
                backoff = interval
                await self._sleep(interval)
                continue
            except asyncio.CancelledError:
                raise
            except Unreachable as exc:
                self._mark(
                    DeviceStatus.OFFLINE, f"{exc}; retrying with backoff up to {self.cfg.max_backoff_s:g} s"
                )
            except (Garbage, DeviceRefused) as exc:
                self.map = None  # rediscover: the map may have changed
                self.client.close()
                self._report({str(exc): str(exc)})
            except Exception as exc:  # a bug here must not stop the gateway
                self.map = None
                self.client.close()
                key = f"internal:{type(exc).__name__}:{exc}"
                if key not in self._logged:
                    self._logged.add(key)
                    self.log.exception("%s: unexpected error while polling", self.cfg.id)
                self._mark(DeviceStatus.FAULTY, f"internal error: {exc}")
            await self._sleep(backoff)
            backoff = min(backoff * 2, self.cfg.max_backoff_s)

    async def _sleep(self, seconds: float) -> None:
        await asyncio.gather(self.clock.sleep(seconds), asyncio.sleep(MIN_WALL_INTERVAL_S))

    def _mark(self, status: DeviceStatus, reason: str = "") -> None:
        self.bus.set_status(self.cfg.id, status, reason)

    # -- discovery -----------------------------------------------------------------------------------
    async def connect(self) -> DeviceMap:
        async with self._io:
            await self.client.connect()
            dmap = await self.client.discover()
        self.map = dmap
        self.latest = {}
        for m in dmap.models:
            self.latest.setdefault(m.id, m)
        wanted = {self._first(AC_MODELS), self._first((714, 160)), 123, 704, *STORAGE_MODELS}
        self._poll_set = [dmap.find(i) for i in sorted(i for i in wanted if i is not None and dmap.find(i))]
        self._update_info(dmap)
        self.log.info(
            "%s: SunSpec device %s %s at %s (base %s), models %s",
            self.cfg.id,
            self._info.manufacturer or "?",
            self._info.model or "?",
            self.client,
            dmap.base,
            dmap.ids,
        )
        await self._reapply()
        return dmap

    def _first(self, ids: tuple[int, ...]) -> int | None:
        assert self.map is not None
        for i in ids:
            if self.map.find(i) is not None and self.map.find(i).values:
                return i
        return None

    def _update_info(self, dmap: DeviceMap) -> None:
        common = dmap.find(1)
        caps = {Capability.PV_INVERTER}
        if any(dmap.find(i) for i in STORAGE_MODELS):
            caps.add(Capability.BATTERY)
        extra = {
            "host": self.cfg.host,
            "port": self.cfg.port,
            "unit_id": self.cfg.unit_id,
            "base_address": dmap.base,
            "models": dmap.ids,
        }
        if common is not None:
            extra.update(
                serial=common.get("SN", ""), version=common.get("Vr", ""), options=common.get("Opt", "")
            )
        self._info = DeviceInfo(
            self.cfg.id,
            self.cfg.name,
            frozenset(caps),
            "sunspec",
            manufacturer=common.get("Mn", "") if common else "",
            model=common.get("Md", "") if common else "",
            extra=extra,
        )
        version = str(extra.get("version") or "")
        if version:  # SunSpec has no firmware update; the device list still shows what it runs
            previous = self.bus.firmware(self.cfg.id)
            if previous is None or previous.version != version:
                self.bus.set_firmware(self.cfg.id, FirmwareStatus(version=version, ts=self.clock.now()))

    async def _reapply(self) -> None:
        """After a (re)connection, write again what the gateway still asks for: the device may have reverted."""
        for setting in list(self._settings.values()):
            if not setting.active or setting.overridden:
                continue
            try:
                await self._apply(setting, raise_mismatch=False)
            except CommandError as exc:
                self._problem(
                    f"reapply:{setting.name}", f"{self.cfg.id}: could not apply {setting.name} again: {exc}"
                )

    # -- polling -------------------------------------------------------------------------------------
    async def poll_once(self) -> list[Reading]:
        """Read every polled model and map it, then write again the settings that are due (unless the device
        now reports them differently: that is shown, not fought). Garbage is logged once and dropped."""
        async with self._io:
            models = await self.client.read_models(self._poll_set)
            for m in models:
                self.latest[m.id] = m
            self.polls += 1
            problems: dict[str, str] = {}
            for p in self.map.problems if self.map else []:
                problems[p] = p  # models dropped at discovery (wrong length, ...) stay a fault
            for m in models:
                for p in m.problems:
                    problems[p] = p
            readings = self._readings(problems)
            self._check_settings(readings)
            await self._refresh_settings()
        self._report(problems)
        return readings

    def _report(self, problems: dict[str, str]) -> None:
        """Each problem is logged once while it lasts; the device is faulty while there is any. The problem
        that turns the device faulty is logged by the bus with the status change, the others here."""
        stale = {k for k in self._logged if not k.startswith(_STICKY)} - set(problems)
        self._logged -= stale
        if not problems:
            self._mark(DeviceStatus.OK)
            return
        first_key, first = next(iter(problems.items()))
        if self.bus.status(self.cfg.id)[0] is not DeviceStatus.FAULTY:
            self._logged.add(first_key)
        for key, msg in problems.items():
            self._problem(key, f"{self.cfg.id}: {msg}")
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        self._mark(DeviceStatus.FAULTY, f"{first}{more}")

    def _problem(self, key: str, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            self.log.warning("%s", message)

    def _val(self, model_id: int, name: str) -> Any:
        m = self.latest.get(model_id)
        return None if m is None else m.values.get(name)

    def _has(self, model_id: int) -> bool:
        m = self.latest.get(model_id)
        return m is not None and bool(m.values)

    def _rating_w(self) -> float | None:
        for mid, name in ((121, "WMax"), (702, "WMax"), (702, "WMaxRtg"), (120, "WRtg")):
            v = self._val(mid, name)
            if v:
                return float(v)
        return None

    def _wmax_for(self, model_id: int) -> float | None:
        order = ((702, "WMax"), (702, "WMaxRtg"), (121, "WMax"), (120, "WRtg"))
        if model_id == 123:
            order = ((121, "WMax"), (120, "WRtg"), (702, "WMax"), (702, "WMaxRtg"))
        for mid, name in order:
            v = self._val(mid, name)
            if v:
                return float(v)
        return None

    def _charge_ref_w(self) -> float | None:
        for mid, name in ((124, "WChaMax"), (702, "WChaRteMax"), (802, "WChaRteMax"), (120, "MaxChaRte")):
            v = self._val(mid, name)
            if v:
                return float(v)
        return None

    def _discharge_ref_w(self) -> float | None:
        for mid, name in ((702, "WDisChaRteMax"), (802, "WDisChaRteMax"), (120, "MaxDisChaRte")):
            v = self._val(mid, name)
            if v:
                return float(v)
        return self._charge_ref_w()

    def _readings(self, problems: dict[str, str]) -> list[Reading]:
        d, ts = self.cfg.id, self.clock.now()
        out: list[Reading] = []
        rating = self._rating_w() or 100_000.0
        bat_ref = max(self._charge_ref_w() or 0.0, self._discharge_ref_w() or 0.0) or 100_000.0

        def add(quantity: str, value: Any, lo: float | None = None, hi: float | None = None, digits: int = 1):
            if value is None:
                return
            if isinstance(value, float | int) and not isinstance(value, bool):
                if lo is not None and hi is not None and not lo <= value <= hi:
                    problems[f"range:{quantity}"] = (
                        f"{quantity} = {value:g} is outside {lo:g}..{hi:g}: reading dropped"
                    )
                    return
                value = round(float(value), digits)
            out.append(Reading(d, quantity, value, ts))

        ac_id = self._first_present(AC_MODELS)
        ac_w = self._val(ac_id, "W") if ac_id else None
        add(AC_POWER_W, ac_w, -1.5 * rating, 1.5 * rating)

        pv = self._pv_power_w()
        if pv is None and ac_id and not any(self._has(i) for i in STORAGE_MODELS):
            pv = ac_w
        if pv is not None and -0.02 * rating <= pv < 0:
            pv = 0.0  # standby draw of the DC side
        add(Q.PV_POWER_W, pv, 0.0, 1.5 * rating)

        bat = self._battery_power_w()
        add(Q.BATTERY_POWER_W, bat, -1.5 * bat_ref, 1.5 * bat_ref)

        soc = next(
            (
                v
                for v in (self._val(802, "SoC"), self._val(713, "SoC"), self._val(124, "ChaState"))
                if v is not None
            ),
            None,
        )
        add(Q.SOC_PCT, soc, 0.0, 100.0, digits=2)

        cap = next(
            (v for v in (self._val(713, "WHRtg"), self._val(802, "WHRtg"), self._val(120, "WHRtg")) if v),
            None,
        )
        add(BATTERY_CAPACITY_WH, cap, 0.0, 10_000_000.0)

        if ac_id == 701:
            # the service voltage: line to line on a split-phase service (240 V), line to neutral otherwise
            split = self.latest[701].raw.get("ACType") == 1
            order = ("LLV", "VL1L2", "LNV") if split else ("LNV", "VL1", "LLV")
            volts = next((self._val(701, n) for n in order if self._val(701, n) is not None), None)
            energy = self._val(701, "TotWhInj")
            state = self.latest[701].symbol("InvSt")
        elif ac_id:
            volts = self._val(ac_id, "PhVphA")
            energy = self._val(ac_id, "WH")
            state = self.latest[ac_id].symbol("St")
        else:
            volts = energy = state = None
        add(Q.VOLTAGE_V, volts, 0.0, 1000.0)
        add(Q.ENERGY_WH, energy, 0.0, 1e15, digits=0)
        if state:
            out.append(Reading(d, INVERTER_STATE, state.lower(), ts))
        sources = ((802, "ChaSt"), (124, "ChaSt"), (802, "State"))  # charging/holding/..., else connected/...
        bstate = next(
            (self.latest[m].symbol(n) for m, n in sources if self._has(m) and self.latest[m].symbol(n)), None
        )
        if bstate:
            out.append(Reading(d, BATTERY_STATE, bstate.lower(), ts))

        connected = self._connected()
        if connected is not None:
            out.append(Reading(d, CONNECTED, connected, ts))

        limit = self._pv_limit_w(problems)
        if limit is not False:
            out.append(Reading(d, Q.PV_LIMIT_W, "none" if limit is None else round(limit, 1), ts))
        setpoint = self._battery_setpoint()
        if setpoint is not None:
            out.append(
                Reading(
                    d, Q.BATTERY_SETPOINT_W, setpoint if isinstance(setpoint, str) else round(setpoint, 1), ts
                )
            )
        out.append(Reading(d, COMMAND_STATUS, self._command_status, ts))
        return out

    def _first_present(self, ids: tuple[int, ...]) -> int | None:
        return next((i for i in ids if self._has(i)), None)

    def _pv_power_w(self) -> float | None:
        if self._has(714):
            ports = [p for p in self._val(714, "Prt") or [] if p.get("PrtTyp") == 0]
            watts = [p.get("DCW") for p in ports]
            if ports and all(w is not None for w in watts):
                return float(sum(watts))
        if self._has(160):
            watts = [m.get("DCW") for m in self._val(160, "module") or []]
            if watts and all(w is not None for w in watts):
                return float(sum(watts))
        return None

    def _battery_power_w(self) -> float | None:
        w = self._val(802, "W")  # + discharge (generator convention, as the 7xx models)
        if w is not None:
            return -float(w)
        if self._has(714):
            ports = [p for p in self._val(714, "Prt") or [] if p.get("PrtTyp") == 1]
            watts = [p.get("DCW") for p in ports]
            if ports and all(x is not None for x in watts):
                return -float(sum(watts))
        return None

    def _connected(self) -> bool | None:
        conn = self.latest[123].raw.get("Conn") if self._has(123) else None
        if conn is not None:
            return conn == 1
        st = self.latest[701].raw.get("ConnSt") if self._has(701) else None
        return None if st is None else st == 1

    def _limit_model(self) -> Model | None:
        for mid in (704, 123):
            m = self.latest.get(mid)
            if m is not None and m.values and m.raw.get("WMaxLimPct") is not None:
                return m
        return None

    def _pv_limit_w(self, problems: dict[str, str]) -> float | bool | None:
        """The active AC power limit in W, None when there is none, False when the device has no limit."""
        m = self._limit_model()
        if m is None:
            return False
        ena = m.raw.get("WMaxLimPctEna" if m.id == 704 else "WMaxLim_Ena")
        pct = m.values.get("WMaxLimPct")
        wmax = self._wmax_for(m.id)
        if not ena or pct is None or wmax is None:
            return None
        if not 0.0 <= pct <= 100.0:
            problems[f"range:{m.id}.WMaxLimPct"] = (
                f"model {m.id} WMaxLimPct = {pct:g} is outside 0..100: dropped"
            )
            return False
        return pct / 100.0 * wmax

    def _battery_setpoint(self) -> float | str | None:
        m = self.latest.get(124)
        if m is None or not m.values:
            w = self._wset_model()
            if w is None:
                return None
            if w.raw.get("WSetEna") != 1:
                return "auto"
            if w.raw.get("WSetMod") == 1 and w.values.get("WSet") is not None:
                return (self._pv_power_w() or 0.0) - w.values["WSet"]
            return "limited"
        mod = m.raw.get("StorCtl_Mod")
        if mod is None:
            return None
        if mod & 3 == 0:
            return "auto"
        in_ref, out_ref = self._charge_ref_w(), self._discharge_ref_w()
        in_pct, out_pct = m.values.get("InWRte"), m.values.get("OutWRte")
        if not in_ref or not out_ref:
            return "limited"
        hi = in_pct / 100.0 * in_ref if mod & 1 and in_pct is not None else in_ref
        lo = -out_pct / 100.0 * out_ref if mod & 2 and out_pct is not None else -out_ref
        if abs(hi - lo) <= max(1.0, 0.002 * in_ref):
            return (hi + lo) / 2.0
        if lo > 0:
            return lo
        if hi < 0:
            return hi
        return "limited"

    # -- commands ------------------------------------------------------------------------------------
    async def set_pv_limit_w(self, limit_w: float | None) -> None:
        if limit_w is not None and (not math.isfinite(limit_w) or limit_w < 0):
            raise CommandError(f"pv_limit_w must be >= 0 or None, got {limit_w}")
        self._require_connected()
        m = self._limit_model()
        if m is None:
            raise CommandError(f"{self.cfg.id}: the device has no power limit control (model 704 or 123)")
        wmax = self._wmax_for(m.id)
        if wmax is None:
            raise CommandError(f"{self.cfg.id}: the device reports no WMax to express a limit in percent of")
        t = self.cfg.revert_timeout_s
        if m.id == 704:
            if limit_w is None:
                changes: dict[str, Any] = {"WMaxLimPctEna": 0, "WMaxLimPct": 100.0}
            else:
                pct = min(100.0, limit_w / wmax * 100.0)
                changes = {
                    "WMaxLimPct": pct,
                    "WMaxLimPctRvrt": 100.0,
                    "WMaxLimPctEnaRvrt": 0,
                    "WMaxLimPctRvrtTms": t,
                    "WMaxLimPctEna": 1,
                }
        else:
            if limit_w is None:
                changes = {"WMaxLim_Ena": 0, "WMaxLimPct": 100.0}
            else:
                pct = min(100.0, limit_w / wmax * 100.0)
                changes = {"WMaxLimPct": pct, "WMaxLimPct_RvrtTms": t, "WMaxLim_Ena": 1}
        await self._apply(_Setting("pv_limit_w", limit_w, m.id, changes, active=limit_w is not None))

    async def set_battery_charge_power_w(self, charge_power_w: float | None) -> None:
        if charge_power_w is not None and not math.isfinite(charge_power_w):
            raise CommandError(f"battery_charge_power_w must be a number or None, got {charge_power_w}")
        self._require_connected()
        m = self.latest.get(124)
        if m is None or not m.values or m.raw.get("StorCtl_Mod") is None:
            if self._wset_model() is None:
                raise CommandError(
                    f"{self.cfg.id}: the device has no storage control (model 124, or 704 WSet)"
                )
            active = charge_power_w is not None
            setting = _Setting(
                "battery_charge_power_w",
                charge_power_w,
                704,
                self._wset_changes(charge_power_w),
                active=active,
                track=self._wset_changes if active else None,
            )
            await self._apply(setting)
            return
        in_ref, out_ref = self._charge_ref_w(), self._discharge_ref_w()
        if not in_ref or not out_ref:
            raise CommandError(f"{self.cfg.id}: the device reports no maximum charge rate (124 WChaMax)")
        if charge_power_w is None:
            changes: dict[str, Any] = {"StorCtl_Mod": 0, "InWRte": 100.0, "OutWRte": 100.0}
        else:
            w = max(-out_ref, min(in_ref, charge_power_w))
            changes = {
                "InWRte": w / in_ref * 100.0,
                "OutWRte": -w / out_ref * 100.0,
                "InOutWRte_RvrtTms": self.cfg.revert_timeout_s,
                "StorCtl_Mod": 3,  # both limits on: the window [-OutWRte, InWRte] collapses to the setpoint
            }
        await self._apply(
            _Setting(
                "battery_charge_power_w", charge_power_w, 124, changes, active=charge_power_w is not None
            )
        )

    def _wset_model(self) -> Model | None:
        """Model 704 with an active power setpoint, on a device with storage: the 7xx way to drive a battery."""
        m = self.latest.get(704)
        if m is None or not m.values or m.raw.get("WSet") is None or m.raw.get("WSetEna") is None:
            return None
        return m if any(self._has(i) for i in (713, 802)) else None

    def _wset_changes(self, charge_power_w: float | None) -> dict[str, Any]:
        """704 WSet is the inverter's AC output (+ injecting): the battery gets what PV does not cover, so the
        setpoint follows PV (recomputed at every poll)."""
        if charge_power_w is None:
            return {"WSetEna": 0}
        lim = self._discharge_ref_w() or float("inf"), self._charge_ref_w() or float("inf")
        w = max(-lim[0], min(lim[1], charge_power_w))
        return {
            "WSetMod": 1,  # watts
            "WSet": round((self._pv_power_w() or 0.0) - w),
            "WSetRvrt": 0.0,
            "WSetEnaRvrt": 0,
            "WSetRvrtTms": self.cfg.revert_timeout_s,
            "WSetEna": 1,
        }

    async def set_connected(self, on: bool) -> None:
        """Connect to (True) or disconnect from (False) the grid; a disconnect reverts after revert_timeout_s."""
        self._require_connected()
        m = self.latest.get(123)
        if m is None or not m.values or m.raw.get("Conn") is None:
            raise CommandError(
                f"{self.cfg.id}: the device has no connect/disconnect control (model 123 Conn)"
            )
        changes = {"Conn_RvrtTms": self.cfg.revert_timeout_s, "Conn": 1 if on else 0}
        await self._apply(_Setting("connected", bool(on), 123, changes, active=not on))

    def _require_connected(self) -> None:
        if self.map is None or not self.client.connected:
            raise CommandError(f"{self.cfg.id}: not connected to the inverter at {self.client}")

    def _writable(self, m: Model, setting: _Setting) -> dict[str, Any]:
        """Drop revert/timer points the device does not implement (warned once); refuse if a main one is."""
        out = {}
        for name, value in setting.changes.items():
            if m.raw.get(name) is None and name in m.raw:
                if "Rvrt" in name:
                    self._problem(
                        f"norevert:{m.id}.{name}",
                        f"{self.cfg.id}: model {m.id} does not implement {name}: a gateway that dies leaves "
                        f"{setting.name} as last set",
                    )
                    continue
                raise CommandError(f"{self.cfg.id}: model {m.id} does not implement {name}")
            out[name] = value
        return out

    async def _apply(self, setting: _Setting, raise_mismatch: bool = True) -> None:
        async with self._io:
            m = self.latest.get(setting.model_id)
            if m is None:
                raise CommandError(f"{self.cfg.id}: model {setting.model_id} not found")
            setting.changes = self._writable(m, setting)
            try:
                setting.written = await self.client.write_points(m, setting.changes)
                (fresh,) = await self.client.read_models([m])
            except Unreachable as exc:
                self._mark(DeviceStatus.OFFLINE, str(exc))
                raise CommandError(f"{self.cfg.id}: {exc}") from exc
            except (DeviceRefused, Garbage, ModelError) as exc:
                raise CommandError(f"{self.cfg.id}: {setting.name} = {setting.value}: {exc}") from exc
            setting.last_write = self.clock.now()
            self.latest[fresh.id] = fresh
            self._settings[setting.name] = setting
        mismatch = self._mismatch(setting, fresh)
        self.bus.publish_many([r for r in self._readings({}) if r.quantity in _CONTROL_QUANTITIES])
        if mismatch:
            setting.overridden = True
            self._set_command_status(setting.name, mismatch)
            if raise_mismatch:
                raise CommandError(mismatch)
        else:
            self._set_command_status(setting.name, None)

    def _mismatch(self, setting: _Setting, fresh: Model) -> str | None:
        if fresh.mdef is None or not fresh.values:
            return f"{setting.name}: model {fresh.id} could not be read back: {'; '.join(fresh.problems)}"
        diffs = []
        for name, regs in setting.written.items():
            off, p = fresh.mdef.point(name)
            if fresh.regs[off : off + p.size] != regs:
                asked = setting.changes.get(name)
                diffs.append(
                    f"{fresh.id}.{name} asked {_fmt(asked)}, device reports {_fmt(fresh.values.get(name))}"
                )
        if not diffs:
            return None
        return f"{setting.name} = {_fmt(setting.value)}: {'; '.join(diffs)}"

    def _set_command_status(self, name: str, mismatch: str | None) -> None:
        key = f"mismatch:{name}"
        if mismatch is None:
            self._logged.discard(key)
            if self._command_status.startswith(f"mismatch: {name}"):
                self._command_status = "ok"
        else:
            self._problem(key, f"{self.cfg.id}: the device did not take what was asked: {mismatch}")
            self._command_status = f"mismatch: {mismatch}"
        self.bus.publish(Reading(self.cfg.id, COMMAND_STATUS, self._command_status, self.clock.now()))

    async def _refresh_settings(self) -> None:
        """Write again the settings whose revert timer would otherwise expire (called under the I/O lock)."""
        now = self.clock.now()
        due = self.cfg.revert_timeout_s / 3.0
        for s in self._settings.values():
            if not s.active or s.overridden:
                continue
            m = self.latest.get(s.model_id)
            if m is None:
                continue
            changes = s.changes
            if s.track is not None:
                changes = {k: v for k, v in s.track(s.value).items() if k in s.changes}
                moved = abs(float(changes.get("WSet", 0.0)) - float(s.changes.get("WSet", 0.0)))
                if moved < TRACK_DEADBAND_W and now - s.last_write < due:
                    continue
            elif now - s.last_write < due:
                continue
            s.written = await self.client.write_points(m, changes)
            s.changes = changes
            s.last_write = now

    def _check_settings(self, readings: list[Reading]) -> None:
        """A setting that the device now reports differently was changed at the device: show it, stop
        refreshing it."""
        for s in self._settings.values():
            if s.overridden or not s.written:
                continue
            m = self.latest.get(s.model_id)
            if m is None or not m.values:
                continue
            mismatch = self._mismatch(s, m)
            if mismatch:
                s.overridden = True
                self._set_command_status(s.name, f"{mismatch} (changed at the device, or reverted)")
                for i, r in enumerate(readings):
                    if r.quantity == COMMAND_STATUS:
                        readings[i] = Reading(r.device_id, r.quantity, self._command_status, r.ts)


_CONTROL_QUANTITIES = {Q.PV_LIMIT_W, Q.BATTERY_SETPOINT_W, CONNECTED}
_STICKY = ("mismatch:", "norevert:", "internal:", "reapply:")  # not cleared by a clean poll


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
