"""The simulated SunSpec hybrid inverter: a pymodbus TCP server driven by the simulated home's physics.

It presents models 1, 120, 121, 123, 124, 103, 160, 701, 702, 704, 713 and 802 from base 40000, built from
the SunSpec Alliance's model definitions (pysunspec2's JSON) and encoded with scale factors. Measurements
come from the simulated home (``hems.livesim.LiveSimHome``) after every physics step; the control registers
act on it:

- PV power limit: 123 WMaxLimPct (% of 121 WMax) with WMaxLim_Ena, or 704 WMaxLimPct (% of 702 WMax) with
  WMaxLimPctEna; the lower of the two applies;
- battery: 124 StorCtl_Mod with InWRte/OutWRte (% of WChaMax / WDisChaRteMax) as a charge/discharge window
  (a window collapsed to one value is a setpoint), or 704 WSet as an AC output setpoint;
- 123 Conn = 0 disconnects (no PV, battery idle); 802 SetOp = DISCONNECT idles the battery;
- revert timers (123 Conn_RvrtTms, WMaxLimPct_RvrtTms, 124 InOutWRte_RvrtTms, 704 WMaxLimPctRvrtTms and
  WSetRvrtTms) run on the simulated clock: not refreshed in time, the control returns to its default.

Writes to read-only registers are refused (illegal address), out-of-range values too (illegal value).

``hems sim sunspec --host 127.0.0.1 --port 5020 [--speed 60] [--seed 1]`` runs it standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from .models import (
    END_MODEL_ID,
    SUNS_MARKER,
    Model,
    ModelDef,
    decode_model,
    encode_model,
    fixed_points,
    model_def,
)

log = logging.getLogger("integrations.sunspec.sim")

MODEL_IDS = (1, 103, 120, 121, 123, 124, 160, 701, 702, 704, 713, 802)
BASE_ADDRESS = 40000
BATTERY_V = 400.0  # nominal DC voltage of the simulated high-voltage battery
PV_STRING_V = 380.0

WriteHook = Callable[[int, list[int]], ExcCodes | None]


class RegisterServer:
    """A Modbus TCP server over one image of holding registers starting at ``base``.

    ``on_read(address, count)`` runs before every read (to refresh the image); ``on_write(address, values)``
    decides every write: it returns an exception code to refuse it, or None after applying it to ``image``
    itself. Without ``on_write`` writes go straight into the image. Addresses outside the image are illegal.
    """

    def __init__(
        self,
        image: list[int],
        base: int = BASE_ADDRESS,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_read: Callable[[int, int], None] | None = None,
        on_write: WriteHook | None = None,
    ) -> None:
        self.image = image
        self.base = base
        self.host = host
        self.port = port
        self.on_read = on_read
        self.on_write = on_write
        self.requests = 0
        self._server: ModbusTcpServer | None = None

    async def start(self) -> int:
        """Listen (on a free port when ``port`` is 0, then on the same port on a restart); returns the port."""
        device = SimDevice(
            id=0,  # answer every unit id
            simdata=[SimData(self.base, values=list(self.image), datatype=DataType.REGISTERS)],
            action=self._action,
        )
        server = ModbusTcpServer(device, address=(self.host, self.port))
        await server.serve_forever(background=True)
        self._server = server
        self.port = server.transport.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        try:
            if set_values is None:
                if self.on_read is not None:
                    self.on_read(address, count)
            else:
                values = [int(v) for v in set_values]
                if self.on_write is not None:
                    refused = self.on_write(address, values)
                    if refused is not None:
                        return refused
                else:
                    off = address - self.base
                    self.image[off : off + len(values)] = values
        except Exception:  # the simulator must answer, not die
            log.exception("simulated SunSpec device failed on a request at %s", address)
            return ExcCodes.DEVICE_FAILURE
        n = min(len(self.image), len(registers) - 1)  # the block keeps its size (and its end sentinel)
        registers[:n] = self.image[:n]
        return None


# -- the simulated inverter ----------------------------------------------------------------------------


@dataclass
class _Timer:
    model_id: int
    points: frozenset[str]
    rvrt_point: str
    rem_point: str | None = None
    deadline: float | None = None


def _timers() -> dict[str, _Timer]:
    return {
        "conn": _Timer(123, frozenset({"Conn", "Conn_WinTms", "Conn_RvrtTms"}), "Conn_RvrtTms"),
        "wmaxlim": _Timer(
            123,
            frozenset(
                {"WMaxLimPct", "WMaxLimPct_WinTms", "WMaxLimPct_RvrtTms", "WMaxLimPct_RmpTms", "WMaxLim_Ena"}
            ),
            "WMaxLimPct_RvrtTms",
        ),
        "storage": _Timer(
            124,
            frozenset(
                {
                    "StorCtl_Mod",
                    "OutWRte",
                    "InWRte",
                    "InOutWRte_WinTms",
                    "InOutWRte_RvrtTms",
                    "InOutWRte_RmpTms",
                }
            ),
            "InOutWRte_RvrtTms",
        ),
        "wmaxlimpct": _Timer(
            704,
            frozenset(
                {"WMaxLimPctEna", "WMaxLimPct", "WMaxLimPctRvrt", "WMaxLimPctEnaRvrt", "WMaxLimPctRvrtTms"}
            ),
            "WMaxLimPctRvrtTms",
            "WMaxLimPctRvrtRem",
        ),
        "wset": _Timer(
            704,
            frozenset(
                {
                    "WSetEna",
                    "WSetMod",
                    "WSet",
                    "WSetRvrt",
                    "WSetPct",
                    "WSetPctRvrt",
                    "WSetEnaRvrt",
                    "WSetRvrtTms",
                }
            ),
            "WSetRvrtTms",
            "WSetRvrtRem",
        ),
    }


# Values a control register accepts (scaled): anything else is refused with "illegal value".
_LIMITS: dict[tuple[int, str], tuple[float, float]] = {
    (123, "WMaxLimPct"): (0.0, 100.0),
    (124, "InWRte"): (-100.0, 100.0),
    (124, "OutWRte"): (-100.0, 100.0),
    (124, "StorCtl_Mod"): (0, 3),
    (124, "MinRsvPct"): (0.0, 100.0),
    (704, "WMaxLimPct"): (0.0, 100.0),
    (704, "WMaxLimPctRvrt"): (0.0, 100.0),
    (704, "WSetPct"): (-100.0, 100.0),
    (704, "WSetPctRvrt"): (-100.0, 100.0),
}


class SunSpecSimInverter:
    """The simulated hybrid inverter. ``sim`` is a ``LiveSimHome`` (or anything with ``last``, ``controls``,
    ``set_controls``, ``params``, ``on_step`` and ``clock``)."""

    def __init__(
        self,
        sim: Any,
        *,
        clock: Any = None,
        host: str = "127.0.0.1",
        port: int = 0,
        base: int = BASE_ADDRESS,
        model_ids: tuple[int, ...] = MODEL_IDS,
        serial: str = "SIM-0001",
        logger: logging.Logger | None = None,
    ) -> None:
        self.sim = sim
        self.clock = clock or sim.clock
        self.base = base
        self.log = logger or log
        self.model_ids = model_ids
        self.serial = serial
        self.values: dict[int, dict[str, Any]] = {}
        self.addr: dict[int, int] = {}
        self.defs: dict[int, ModelDef] = {}
        self.timers = _timers()
        self.energy_wh = {"ac_inj": 18_250_000.0, "ac_abs": 1_200_000.0, "dc": 19_600_000.0, "cycles": 312.0}
        self.heartbeat = 0
        self.reverts = 0  # revert timers that expired (for tests and logs)
        self._running = False
        p = sim.params
        self.rating_w = float(p.pv.inverter_ac_w)
        self.max_charge_w = float(p.battery.max_charge_w)
        self.max_discharge_w = float(p.battery.max_discharge_w)
        self.capacity_wh = float(p.battery.capacity_wh)
        self.volts = float(p.site.voltage_v)
        for mid in model_ids:
            mdef = model_def(mid)
            if mdef is None:
                raise ValueError(f"no SunSpec definition for model {mid}")
            self.defs[mid] = mdef
            self.values[mid] = self._initial(mid)
        self.image = self._layout()
        self.server = RegisterServer(
            self.image, base, host=host, port=port, on_read=self._on_read, on_write=self._on_write
        )
        self._update_measurements(sim.last)
        self._encode_all()
        sim.on_step(self._on_step)

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> int:
        self._running = True
        return await self.server.start()

    async def stop(self) -> None:
        self._running = False
        await self.server.stop()

    @property
    def port(self) -> int:
        return self.server.port

    # -- register image ------------------------------------------------------------------------------
    def _layout(self) -> list[int]:
        image = list(SUNS_MARKER)
        for mid in self.model_ids:
            self.addr[mid] = self.base + len(image)
            image.extend(encode_model(self.defs[mid], self.values[mid]))
        image.extend([END_MODEL_ID, 0])
        return image

    def _encode(self, mid: int) -> None:
        regs = encode_model(self.defs[mid], self.values[mid])
        off = self.addr[mid] - self.base
        self.image[off : off + len(regs)] = regs

    def _encode_all(self) -> None:
        for mid in self.model_ids:
            self._encode(mid)

    def model(self, model_id: int) -> Model:
        """The model as a client would decode it now (for tests)."""
        off = self.addr[model_id] - self.base
        length = self.image[off + 1]
        return decode_model(model_id, self.addr[model_id], self.image[off : off + length + 2])

    # -- Modbus hooks --------------------------------------------------------------------------------
    def _on_read(self, address: int, count: int) -> None:
        self._tick()

    def _on_write(self, address: int, values: list[int]) -> ExcCodes | None:
        self._tick()
        end = address + len(values)
        mid = next((m for m in self.model_ids if self.addr[m] <= address < self._end(m)), None)
        if mid is None or end > self._end(mid):
            return ExcCodes.ILLEGAL_ADDRESS
        mdef = self.defs[mid]
        start = address - self.addr[mid]
        touched: set[str] = set()
        for name, (off, p) in fixed_points(mdef).items():
            if off < start + len(values) and start < off + p.size:
                if not p.writable:
                    return ExcCodes.ILLEGAL_ADDRESS
                touched.add(name)
        if not touched:
            return ExcCodes.ILLEGAL_ADDRESS
        model_off = self.addr[mid] - self.base
        regs = self.image[model_off : self._end(mid) - self.base]
        regs[start : start + len(values)] = values
        decoded = decode_model(mid, self.addr[mid], regs)
        if decoded.problems:
            return ExcCodes.ILLEGAL_VALUE
        for name in touched:
            new = _get(decoded.values, name)
            if not self._valid(mid, name, new):
                return ExcCodes.ILLEGAL_VALUE
        for name in touched:
            _set(self.values[mid], name, _get(decoded.values, name))
        now = self.clock.now()
        for timer in self.timers.values():
            if timer.model_id == mid and touched & timer.points:
                tms = self.values[mid].get(timer.rvrt_point) or 0
                timer.deadline = now + float(tms) if tms and self._active(timer) else None
        self._apply_controls()
        self._update_remaining(now)
        self._encode(mid)
        return None

    def _end(self, mid: int) -> int:
        off = self.addr[mid] - self.base
        return self.addr[mid] + 2 + self.image[off + 1]

    def _valid(self, mid: int, name: str, value: Any) -> bool:
        if value is None:
            return False
        _, p = self.defs[mid].point(name)
        if p.symbols and p.type.startswith("enum") and int(value) not in p.symbols:
            return False
        lo_hi = _LIMITS.get((mid, name))
        return lo_hi is None or lo_hi[0] <= value <= lo_hi[1]

    # -- timers --------------------------------------------------------------------------------------
    def _active(self, timer: _Timer) -> bool:
        v = self.values[timer.model_id]
        if timer is self.timers["conn"]:
            return v.get("Conn") == 0
        if timer is self.timers["wmaxlim"]:
            return v.get("WMaxLim_Ena") == 1
        if timer is self.timers["storage"]:
            return bool(v.get("StorCtl_Mod"))
        return True  # 704: reverts to its *Rvrt values whatever they are

    def _tick(self) -> None:
        now = self.clock.now()
        expired = [name for name, t in self.timers.items() if t.deadline is not None and now >= t.deadline]
        for name in expired:
            self._revert(name)
        if expired:
            self._apply_controls()
            for mid in {self.timers[n].model_id for n in expired}:
                self._encode(mid)
        if self._update_remaining(now):
            self._encode(704)

    def _revert(self, name: str) -> None:
        t = self.timers[name]
        t.deadline = None
        v = self.values[t.model_id]
        if name == "conn":
            v["Conn"] = 1
        elif name == "wmaxlim":
            v.update(WMaxLim_Ena=0, WMaxLimPct=100.0)
        elif name == "storage":
            v.update(StorCtl_Mod=0, InWRte=100.0, OutWRte=100.0)
        elif name == "wmaxlimpct":
            v.update(WMaxLimPct=v.get("WMaxLimPctRvrt"), WMaxLimPctEna=v.get("WMaxLimPctEnaRvrt"))
        elif name == "wset":
            v.update(WSet=v.get("WSetRvrt"), WSetPct=v.get("WSetPctRvrt"), WSetEna=v.get("WSetEnaRvrt"))
        self.reverts += 1
        self.log.info("simulated inverter: %s reverted to its default after its revert timer expired", name)

    def _update_remaining(self, now: float) -> bool:
        changed = False
        v = self.values[704] if 704 in self.values else None
        if v is None:
            return False
        for t in self.timers.values():
            if t.rem_point is None:
                continue
            rem = 0 if t.deadline is None else max(0, round(t.deadline - now))
            if v.get(t.rem_point) != rem:
                v[t.rem_point] = rem
                changed = True
        return changed

    # -- physics coupling ----------------------------------------------------------------------------
    def _on_step(self, result: Any) -> None:
        if not self._running:
            return
        self._tick()
        self._update_measurements(result)
        self._apply_controls()
        self._encode_all()

    def effective_controls(self) -> tuple[float | None, float | None]:
        """(pv_limit_w, battery_charge_power_w) that the registers ask of the physics now."""
        v123, v124, v704 = self.values.get(123, {}), self.values.get(124, {}), self.values.get(704, {})
        disconnected = v123.get("Conn") == 0
        limits = []
        if v123.get("WMaxLim_Ena") == 1 and v123.get("WMaxLimPct") is not None:
            limits.append(v123["WMaxLimPct"] / 100.0 * self._wmax(123))
        if v704.get("WMaxLimPctEna") == 1 and v704.get("WMaxLimPct") is not None:
            limits.append(v704["WMaxLimPct"] / 100.0 * self._wmax(704))
        pv_limit = 0.0 if disconnected else (min(limits) if limits else None)
        battery: float | None = None
        if disconnected or self.values.get(802, {}).get("SetOp") == 2:
            battery = 0.0
        elif v124.get("StorCtl_Mod"):
            battery = self._window_setpoint(v124)
        elif v704.get("WSetEna") == 1:
            ac = (
                v704.get("WSet")
                if v704.get("WSetMod") == 1
                else (v704.get("WSetPct") or 0.0) / 100 * self._wmax(704)
            )
            pv = self.sim.last.pv_power_w if pv_limit is None else min(self.sim.last.pv_power_w, pv_limit)
            battery = pv - float(ac or 0.0)
        if battery is not None:
            battery = max(-self.max_discharge_w, min(self.max_charge_w, battery))
        return pv_limit, battery

    def _wmax(self, mid: int) -> float:
        v = self.values[121].get("WMax") if mid == 123 and 121 in self.values else None
        if v is None and 702 in self.values:
            v = self.values[702].get("WMax") or self.values[702].get("WMaxRtg")
        return float(v or self.rating_w)

    def _window_setpoint(self, v124: dict[str, Any]) -> float | None:
        mod = int(v124.get("StorCtl_Mod") or 0)
        in_ref = float(v124.get("WChaMax") or self.max_charge_w)
        out_ref = float(self.values.get(702, {}).get("WDisChaRteMax") or self.max_discharge_w)
        hi = v124["InWRte"] / 100.0 * in_ref if mod & 1 and v124.get("InWRte") is not None else in_ref
        lo = -v124["OutWRte"] / 100.0 * out_ref if mod & 2 and v124.get("OutWRte") is not None else -out_ref
        if abs(hi - lo) <= max(1.0, 0.002 * in_ref):
            return (hi + lo) / 2.0
        if lo > 0:
            return lo  # forced charge at least lo
        if hi < 0:
            return hi  # forced discharge at least -hi
        return None  # a window around 0: the battery's own mode (the physics knows no partial limits)

    def _apply_controls(self) -> None:
        pv_limit, battery = self.effective_controls()
        c = self.sim.controls
        if c.pv_limit_w != pv_limit or c.battery_charge_power_w != battery:
            self.sim.set_controls(pv_limit_w=pv_limit, battery_charge_power_w=battery)

    def _update_measurements(self, r: Any) -> None:
        dt_h = max(0.0, float(getattr(r, "dt_s", 0.0))) / 3600.0
        pv = max(0.0, float(r.pv_power_w))
        bat = float(r.battery_power_w)  # + charge
        soc = float(r.battery_soc_pct)
        ac = pv - bat  # inverter AC output: + to the house/grid
        throttled = pv + 1.0 < float(r.pv_available_w)
        e = self.energy_wh
        e["ac_inj"] += max(ac, 0.0) * dt_h
        e["ac_abs"] += max(-ac, 0.0) * dt_h
        e["dc"] += pv * dt_h
        e["cycles"] += abs(bat) * dt_h / (2.0 * self.capacity_wh)
        self.heartbeat = (self.heartbeat + 1) % 65536
        connected = self.values[123].get("Conn") != 0 if 123 in self.values else True
        producing = pv > 0.5 or abs(bat) > 0.5
        amps = abs(ac) / self.volts if self.volts else 0.0
        if abs(bat) < 1.0:
            cha_st = 5 if soc >= 99.9 else 2 if soc <= self.sim.params.battery.min_soc_pct + 0.01 else 6
        else:
            cha_st = 4 if bat > 0 else 3
        if 103 in self.values:
            st = 7 if not connected else (5 if throttled else 4) if producing else 2
            self.values[103].update(
                A=amps, AphA=amps / 3, AphB=amps / 3, AphC=amps / 3,
                PhVphA=self.volts, PhVphB=self.volts, PhVphC=self.volts,
                W=ac, Hz=60.0, VA=abs(ac), VAr=0.0, PF=100.0 if ac >= 0 else -100.0,
                WH=e["ac_inj"], DCA=pv / PV_STRING_V, DCV=PV_STRING_V, DCW=pv, St=st if connected else 8,
            )  # fmt: skip
        if 160 in self.values:
            half = pv / 2.0
            for m in self.values[160]["module"]:
                m.update(DCA=half / PV_STRING_V, DCV=PV_STRING_V, DCW=half, DCWH=e["dc"] / 2.0,
                         DCSt=(5 if throttled else 4) if pv > 0.5 else 2)  # fmt: skip
        if 701 in self.values:
            inv_st = 7 if not connected else (4 if throttled else 3) if producing else 1
            self.values[701].update(
                St=1 if connected else 0, InvSt=inv_st, ConnSt=1 if connected else 0,
                DERMode=1 | (4 if throttled else 0), W=ac, VA=abs(ac), Var=0.0, PF=1.0, A=amps,
                LLV=self.volts, LNV=self.volts / 2, Hz=60.0, TotWhInj=e["ac_inj"], TotWhAbs=e["ac_abs"],
                WL1=ac / 2, VAL1=abs(ac) / 2, VarL1=0.0, PFL1=1.0, AL1=amps, VL1L2=self.volts, VL1=self.volts / 2,
                TotWhInjL1=e["ac_inj"] / 2, TotWhAbsL1=e["ac_abs"] / 2,
                WL2=ac / 2, VAL2=abs(ac) / 2, VarL2=0.0, PFL2=1.0, AL2=amps, VL2L3=None, VL2=self.volts / 2,
                TotWhInjL2=e["ac_inj"] / 2, TotWhAbsL2=e["ac_abs"] / 2,
                ThrotPct=round(100.0 * pv / r.pv_available_w) if throttled and r.pv_available_w > 0 else 100,
                ThrotSrc=1 if throttled else 0,
            )  # fmt: skip
        if 124 in self.values:
            self.values[124].update(ChaState=soc, InBatV=BATTERY_V, ChaSt=cha_st,
                                    StorAval=soc / 100.0 * self.capacity_wh / BATTERY_V)  # fmt: skip
        if 713 in self.values:
            self.values[713].update(SoC=soc, WHAvail=soc / 100.0 * self.capacity_wh)
        if 802 in self.values:
            self.values[802].update(
                SoC=soc, DoD=100.0 - soc, NCyc=int(e["cycles"]), ChaSt=cha_st, Hb=self.heartbeat,
                V=BATTERY_V, A=-bat / BATTERY_V, W=-bat,
            )  # fmt: skip

    # -- initial register values ---------------------------------------------------------------------
    def _initial(self, mid: int) -> dict[str, Any]:
        p = self.sim.params
        rating, cap = self.rating_w, self.capacity_wh
        vmax, vmin = round(self.volts * 1.1, 1), round(self.volts * 0.88, 1)
        amax = round(rating / self.volts, 1)
        if mid == 1:
            return {"Mn": "HEMS Simulator", "Md": "SunSpec Hybrid 10k", "Opt": "sim", "Vr": "1.0.0",
                    "SN": self.serial, "DA": 1}  # fmt: skip
        if mid == 120:
            return {
                "DERTyp": 82, "WRtg": rating, "WRtg_SF": 0, "VARtg": rating, "VARtg_SF": 0,
                "VArRtgQ1": rating * 0.6, "VArRtgQ2": rating * 0.6, "VArRtgQ3": -rating * 0.6,
                "VArRtgQ4": -rating * 0.6, "VArRtg_SF": 0, "ARtg": amax, "ARtg_SF": -1,
                "PFRtgQ1": 0.8, "PFRtgQ2": 0.8, "PFRtgQ3": -0.8, "PFRtgQ4": -0.8, "PFRtg_SF": -2,
                "WHRtg": cap, "WHRtg_SF": 0, "AhrRtg": None, "AhrRtg_SF": 0,
                "MaxChaRte": self.max_charge_w, "MaxChaRte_SF": 0,
                "MaxDisChaRte": self.max_discharge_w, "MaxDisChaRte_SF": 0,
            }  # fmt: skip
        if mid == 121:
            return {
                "WMax": rating, "VRef": self.volts, "VRefOfs": 0.0, "VMax": vmax, "VMin": vmin,
                "VAMax": rating, "WGra": None, "VArAct": None, "ClcTotVA": 1, "ECPNomHz": 60.0, "ConnPh": None,
                "WMax_SF": 0, "VRef_SF": -1, "VRefOfs_SF": -1, "VMinMax_SF": -1, "VAMax_SF": 0,
                "VArMax_SF": 0, "WGra_SF": 0, "PFMin_SF": -3, "MaxRmpRte_SF": 0, "ECPNomHz_SF": -2,
            }  # fmt: skip
        if mid == 123:
            return {
                "Conn_WinTms": 0, "Conn_RvrtTms": 0, "Conn": 1,
                "WMaxLimPct": 100.0, "WMaxLimPct_WinTms": 0, "WMaxLimPct_RvrtTms": 0, "WMaxLimPct_RmpTms": 0,
                "WMaxLim_Ena": 0, "OutPFSet": 1.0, "OutPFSet_WinTms": 0, "OutPFSet_RvrtTms": 0,
                "OutPFSet_RmpTms": 0, "OutPFSet_Ena": 0, "VArWMaxPct": 0.0, "VArMaxPct": None, "VArAvalPct": None,
                "VArPct_WinTms": 0, "VArPct_RvrtTms": 0, "VArPct_RmpTms": 0, "VArPct_Mod": 1, "VArPct_Ena": 0,
                "WMaxLimPct_SF": -1, "OutPFSet_SF": -3, "VArPct_SF": -1,
            }  # fmt: skip
        if mid == 124:
            return {
                "WChaMax": self.max_charge_w, "WChaGra": 100.0, "WDisChaGra": 100.0, "StorCtl_Mod": 0,
                "VAChaMax": None, "MinRsvPct": p.battery.min_soc_pct, "ChaState": p.battery.initial_soc_pct,
                "StorAval": None, "InBatV": BATTERY_V, "ChaSt": 6, "OutWRte": 100.0, "InWRte": 100.0,
                "InOutWRte_WinTms": 0, "InOutWRte_RvrtTms": 0, "InOutWRte_RmpTms": 0, "ChaGriSet": 1,
                "WChaMax_SF": 0, "WChaDisChaGra_SF": 0, "VAChaMax_SF": 0, "MinRsvPct_SF": -1,
                "ChaState_SF": -1, "StorAval_SF": -1, "InBatV_SF": -1, "InOutWRte_SF": -2,
            }  # fmt: skip
        if mid == 103:
            return {
                "A_SF": -2, "PPVphAB": None, "PPVphBC": None, "PPVphCA": None, "V_SF": -1, "W_SF": 0,
                "Hz_SF": -2, "VA_SF": 0, "VAr_SF": 0, "PF_SF": -1, "WH_SF": 0, "DCA_SF": -2, "DCV_SF": -1,
                "DCW_SF": 0, "TmpCab": 35.0, "TmpSnk": None, "TmpTrns": None, "TmpOt": None, "Tmp_SF": -1,
                "St": 2, "StVnd": None, "Evt1": 0, "Evt2": 0, "EvtVnd1": None, "EvtVnd2": None,
                "EvtVnd3": None, "EvtVnd4": None,
            }  # fmt: skip
        if mid == 160:
            modules = [
                {"ID": i + 1, "IDStr": f"PV{i + 1}", "Tms": None, "Tmp": 40, "DCSt": 2, "DCEvt": 0}
                for i in range(2)
            ]
            return {"DCA_SF": -2, "DCV_SF": -1, "DCW_SF": 0, "DCWH_SF": 0, "Evt": 0, "N": 2, "TmsPer": None,
                    "module": modules}  # fmt: skip
        if mid == 701:
            return {
                "ACType": 1, "Alrm": 0, "TotVarhInj": None, "TotVarhAbs": None,
                "TmpAmb": 25.0, "TmpCab": 35.0, "TmpSnk": None, "TmpTrns": None, "TmpSw": None, "TmpOt": None,
                "A_SF": -2, "V_SF": -1, "Hz_SF": -2, "W_SF": 0, "PF_SF": -3, "VA_SF": 0, "Var_SF": 0,
                "TotWh_SF": 0, "TotVarh_SF": 0, "Tmp_SF": -1, "MnAlrmInfo": None,
            }  # fmt: skip
        if mid == 702:
            return {
                "WMaxRtg": rating, "WOvrExtRtg": rating, "WOvrExtRtgPF": 0.8, "WUndExtRtg": rating,
                "WUndExtRtgPF": 0.8, "VAMaxRtg": rating, "VarMaxInjRtg": rating * 0.6,
                "VarMaxAbsRtg": rating * 0.6, "WChaRteMaxRtg": self.max_charge_w,
                "WDisChaRteMaxRtg": self.max_discharge_w, "VAChaRteMaxRtg": self.max_charge_w,
                "VADisChaRteMaxRtg": self.max_discharge_w, "VNomRtg": self.volts, "VMaxRtg": vmax,
                "VMinRtg": vmin, "AMaxRtg": amax, "PFOvrExtRtg": 0.8, "PFUndExtRtg": 0.8,
                "ReactSusceptRtg": None, "NorOpCatRtg": 1, "AbnOpCatRtg": 2, "CtrlModes": 0b11,
                "IntIslandCatRtg": 1, "WMax": rating, "WMaxOvrExt": rating, "WOvrExtPF": 0.8,
                "WMaxUndExt": rating, "WUndExtPF": 0.8, "VAMax": rating, "VarMaxInj": rating * 0.6,
                "VarMaxAbs": rating * 0.6, "WChaRteMax": self.max_charge_w, "WDisChaRteMax": self.max_discharge_w,
                "VAChaRteMax": self.max_charge_w, "VADisChaRteMax": self.max_discharge_w, "VNom": self.volts,
                "VMax": vmax, "VMin": vmin, "AMax": amax, "PFOvrExt": 0.8, "PFUndExt": 0.8, "IntIslandCat": 1,
                "W_SF": 0, "PF_SF": -2, "VA_SF": 0, "Var_SF": 0, "V_SF": -1, "A_SF": -1, "S_SF": 0,
            }  # fmt: skip
        if mid == 704:
            pf = {"PF": 1.0, "Ext": 0}
            return {
                "PFWInjEna": 0, "PFWInjEnaRvrt": 0, "PFWInjRvrtTms": 0, "PFWInjRvrtRem": 0,
                "PFWAbsEna": 0, "PFWAbsEnaRvrt": 0, "PFWAbsRvrtTms": 0, "PFWAbsRvrtRem": 0,
                "WMaxLimPctEna": 0, "WMaxLimPct": 100.0, "WMaxLimPctRvrt": 100.0, "WMaxLimPctEnaRvrt": 0,
                "WMaxLimPctRvrtTms": 0, "WMaxLimPctRvrtRem": 0,
                "WSetEna": 0, "WSetMod": 1, "WSet": 0.0, "WSetRvrt": 0.0, "WSetPct": 0.0, "WSetPctRvrt": 0.0,
                "WSetEnaRvrt": 0, "WSetRvrtTms": 0, "WSetRvrtRem": 0,
                "VarSetEna": 0, "VarSetMod": 4, "VarSetPri": 0, "VarSet": 0.0, "VarSetRvrt": 0.0,
                "VarSetPct": 0.0, "VarSetPctRvrt": 0.0, "VarSetEnaRvrt": 0, "VarSetRvrtTms": 0,
                "VarSetRvrtRem": 0, "WRmp": None, "WRmpRef": None, "VarRmp": None, "AntiIslEna": 1,
                "PF_SF": -3, "WMaxLimPct_SF": -1, "WSet_SF": 0, "WSetPct_SF": -1, "VarSet_SF": 0,
                "VarSetPct_SF": -1,
                "PFWInj": dict(pf), "PFWInjRvrt": dict(pf), "PFWAbs": dict(pf), "PFWAbsRvrt": dict(pf),
            }  # fmt: skip
        if mid == 713:
            return {
                "WHRtg": cap,
                "WHAvail": None,
                "SoC": None,
                "SoH": 100.0,
                "Sta": 0,
                "WH_SF": 0,
                "Pct_SF": -1,
            }
        if mid == 802:
            return {
                "AHRtg": round(cap / BATTERY_V, 1), "WHRtg": cap, "WChaRteMax": self.max_charge_w,
                "WDisChaRteMax": self.max_discharge_w, "DisChaRte": None, "SoCMax": p.battery.max_soc_pct,
                "SoCMin": p.battery.min_soc_pct, "SocRsvMax": None, "SoCRsvMin": p.battery.reserve_soc_pct,
                "SoH": 100.0, "LocRemCtl": 0, "CtrlHb": 0, "AlmRst": 0, "Typ": 4, "State": 3,
                "StateVnd": None, "WarrDt": None, "Evt1": 0, "Evt2": 0, "EvtVnd1": 0, "EvtVnd2": 0,
                "VMax": BATTERY_V * 1.1, "VMin": BATTERY_V * 0.8, "CellVMax": 3.35, "CellVMaxStr": 1,
                "CellVMaxMod": 1, "CellVMin": 3.3, "CellVMinStr": 1, "CellVMinMod": 2, "CellVAvg": 3.32,
                "AChaMax": round(self.max_charge_w / BATTERY_V, 1),
                "ADisChaMax": round(self.max_discharge_w / BATTERY_V, 1), "ReqInvState": 0, "ReqW": None,
                "SetOp": 1, "SetInvState": 3,
                "AHRtg_SF": -1, "WHRtg_SF": 0, "WChaDisChaMax_SF": 0, "DisChaRte_SF": 0, "SoC_SF": -1,
                "DoD_SF": -1, "SoH_SF": -1, "V_SF": -1, "CellV_SF": -3, "A_SF": -1, "AMax_SF": -1, "W_SF": 0,
            }  # fmt: skip
        return {}


def _get(values: dict[str, Any], path: str) -> Any:
    for part in path.split(".")[:-1]:
        values = values.get(part) or {}
    return values.get(path.split(".")[-1])


def _set(values: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        values = values.setdefault(part, {})
    values[parts[-1]] = value


# -- standalone ----------------------------------------------------------------------------------------


async def serve(
    host: str,
    port: int,
    speed: float,
    seed: int,
    ready: Callable[[int], Awaitable[None] | None] | None = None,
) -> None:
    from hems.clock import SimClock
    from hems.home import HomeParams
    from hems.livesim import LiveSimHome

    clock = SimClock(speed=speed)
    home = LiveSimHome(HomeParams(), clock, seed=seed)
    inverter = SunSpecSimInverter(home, clock=clock, host=host, port=port)
    bound = await inverter.start()
    home.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(
        f"SunSpec simulated hybrid inverter on {host}:{bound} (models {', '.join(map(str, inverter.model_ids))}, "
        f"base {inverter.base}), simulated time at {speed:g}x; Ctrl-C stops it",
        flush=True,
    )
    if ready is not None:
        res = ready(bound)
        if asyncio.iscoroutine(res):
            await res
    try:
        await stop.wait()
    finally:
        await home.stop()
        await inverter.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="hems sim sunspec", description="Run the simulated SunSpec hybrid inverter."
    )
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=5020, help="Modbus TCP port (default 5020; 0 = a free port)")
    ap.add_argument("--speed", type=float, default=1.0, help="simulated time runs this many times faster")
    ap.add_argument("--seed", type=int, default=1, help="weather and load seed of the simulated home")
    args = ap.parse_args(argv)
    if args.speed <= 0:
        ap.error(f"--speed {args.speed}: must be > 0")
    if not 0 <= args.port <= 65535:
        ap.error(f"--port {args.port}: must be 0-65535")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(args.host, args.port, args.speed, args.seed))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"hems sim sunspec: cannot listen on {args.host}:{args.port}: {exc}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
