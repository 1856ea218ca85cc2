"""The CSMS: an aiohttp websocket server that EV chargers connect to, mapped onto the EV charger capability.

One ``ChargerDevice`` per enrolled charge point lives as long as the integration, across connections, so a
charger that drops off mid-session and comes back finds its transaction where it left it. Each websocket gets
a connection object of its negotiated version (``CsmsV16``, ``CsmsV201``, ``CsmsV21``) that turns OCPP messages
into calls on the device and the device's commands into OCPP calls.

Control (what keeps a home safe when the gateway goes silent):
- at boot (and on every reconnect) the charger gets a TxDefaultProfile on connector/EVSE 0, stack level 0,
  without an end: ``safe_limit_w``. It is what the charger does when nothing else is valid;
- the planner's limit goes out as a stack level 1 profile that expires ``profile_validity_s`` after it was sent
  (a TxDefaultProfile outside a session, a TxProfile on the transaction inside one; in 2.1 also
  ``maxOfflineDuration``), refreshed every third of that while the gateway runs. If the gateway stops, the
  planner's profile expires and the charger falls back to the safe default;
- every change is checked with GetCompositeSchedule where the charger supports it, and read back as
  ``ev_power_limit_w``.

Commissioning (``commission_actions()`` / ``commission(action, params)``): ``enrol_charger`` and
``remove_charger`` (see ``enrol.py``, which also says what happens to unknown chargers) and ``update_firmware``
(UpdateFirmware, tracked through the FirmwareStatusNotifications as the device's ``FirmwareStatus``; see
``firmware.py``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from ocpp import v16, v21, v201
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16

from hems.integration import IntegrationContext
from hems.model import Capability, CommandError, DeviceInfo, DeviceStatus, FirmwareStatus, Quantity, Reading

from . import config, enrol
from . import firmware as fw
from . import profiles as pf
from .config import ChargerConfig, OcppSettings, parse_settings
from .rpc import MAX_MESSAGE_BYTES, SUBPROTOCOLS, ConnectionClosed, RpcMixin, WSConnection, call_until_closed

log = logging.getLogger("integrations.ocpp")
# every OCPP frame in and out, logged by the ocpp library at INFO: quiet unless asked for
WIRE_LOG = logging.getLogger("integrations.ocpp.wire")
if WIRE_LOG.level == logging.NOTSET:
    WIRE_LOG.setLevel(logging.WARNING)
Q = Quantity

MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC"
PLUGGED_16 = {"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"}
UNPLUGGED_16 = {"Available", "Unavailable", "Faulted", "Reserved"}
LIMIT_TOLERANCE_W = 25.0  # 0.1 A rounding at 240 V is 24 W


@dataclass
class Session:
    """One charging session (an OCPP transaction) as the gateway saw it."""

    tx_id: str
    raw_id: Any  # int in 1.6, str in 2.x: what goes back to the charger
    connector: int
    id_tag: str | None
    start_ts: float
    meter_start_wh: float | None
    register_wh: float | None = None
    stop_ts: float | None = None
    reason: str | None = None

    @property
    def energy_wh(self) -> float:
        if self.meter_start_wh is None or self.register_wh is None:
            return 0.0
        return max(0.0, self.register_wh - self.meter_start_wh)

    def duration_s(self, now: float) -> float:
        return max(0.0, (self.stop_ts if self.stop_ts is not None else now) - self.start_ts)


@dataclass
class Sample:
    ts: float | None
    energy_wh: float | None = None
    power_w: float | None = None
    current_a: dict[str, float] | None = None
    soc_pct: float | None = None
    begin_wh: float | None = None  # Transaction.Begin register
    end_wh: float | None = None  # Transaction.End register


_SCALE = {"Wh": 1.0, "kWh": 1000.0, "W": 1.0, "kW": 1000.0, "A": 1.0, "Percent": 1.0}
_PHASES = {"L1": "l1", "L1-N": "l1", "L2": "l2", "L2-N": "l2", "L3": "l3", "L3-N": "l3"}


def parse_meter_values(meter_value: list | None) -> list[Sample]:
    """OCPP MeterValue entries (snake-case keys, 1.6 or 2.x) to samples in W, Wh, A and %."""
    out: list[Sample] = []
    for mv in meter_value or []:
        if not isinstance(mv, dict):
            continue
        s = Sample(pf.parse_iso(mv.get("timestamp")))
        energy_phases: dict[str, float] = {}
        power_phases: dict[str, float] = {}
        currents: dict[str, float] = {}
        for sv in mv.get("sampled_value") or []:
            if not isinstance(sv, dict) or sv.get("format") == "SignedData":
                continue
            try:
                value = float(sv.get("value"))
            except (TypeError, ValueError):
                continue
            uom = sv.get("unit_of_measure")
            if isinstance(uom, dict):  # 2.x
                unit = uom.get("unit", "")
                value *= 10.0 ** float(uom.get("multiplier", 0) or 0)
            else:
                unit = sv.get("unit", "")
            measurand = sv.get("measurand") or "Energy.Active.Import.Register"
            phase = _PHASES.get(sv.get("phase") or "", "" if not sv.get("phase") else None)
            if phase is None:  # N, L1-L2, ...: not a per-phase import value
                continue
            if not math.isfinite(value):
                continue
            context = sv.get("context") or ""
            if measurand == "Energy.Active.Import.Register":
                wh = value * _SCALE.get(unit or "Wh", 1.0)
                if phase:
                    energy_phases[phase] = wh
                else:
                    s.energy_wh = wh
                    if context == "Transaction.Begin":
                        s.begin_wh = wh
                    elif context == "Transaction.End":
                        s.end_wh = wh
            elif measurand == "Power.Active.Import":
                w = value * _SCALE.get(unit or "W", 1.0)
                if phase:
                    power_phases[phase] = w
                else:
                    s.power_w = w
            elif measurand == "Current.Import":
                currents[phase or "total"] = value
            elif measurand == "SoC":
                s.soc_pct = value
        if s.energy_wh is None and energy_phases:
            s.energy_wh = sum(energy_phases.values())
        if s.power_w is None and power_phases:
            s.power_w = sum(power_phases.values())
        if currents:
            s.current_a = currents
        out.append(s)
    return out


class ChargerDevice:
    """An enrolled charge point on the bus: the EV charger capability plus the charger's own commands."""

    def __init__(self, cfg: ChargerConfig, csms: OcppIntegration) -> None:
        self.cfg = cfg
        self.csms = csms
        self.settings: OcppSettings = csms.settings
        self.bus = csms.ctx.bus
        self.clock = csms.ctx.clock
        self.conn: _CsmsBase | None = None
        self.version: str | None = None
        self.vendor = ""
        self.model = ""
        self.firmware = ""
        self.firmware_status: str | None = None
        self.connector_status: dict[int, str] = {}
        self.plugged = False
        self.sessions: dict[str, Session] = {}
        self.finished: list[Session] = []
        self.asked: float | None = None
        self.has_ask = False
        self.rate_unit = cfg.rate_unit if cfg.rate_unit != "auto" else "A"
        self.limit_w: float | None = None  # what the charger confirmed (W); None = unknown
        self.last_accept_s: float | None = None  # seconds from a limit change to the charger's Accepted
        self.ready = asyncio.Event()  # set when the boot/reconnect setup of the current connection is done
        self.boots = 0
        self.bad_frames = 0
        self.remote_tags: set[str] = set()
        self._apply_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._refresh: asyncio.Task | None = None
        self._remote_start_id = 0
        self.firmware_request_id = 0  # 2.x requestId of the last UpdateFirmware (its notifications carry it)

    # -- identity ----------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.cfg.id

    @property
    def info(self) -> DeviceInfo:
        return DeviceInfo(
            self.cfg.id,
            self.cfg.name,
            frozenset({Capability.EV_CHARGER, Capability.METER}),
            "ocpp",
            self.vendor,
            self.model,
            {"ocpp_version": self.version or "", "firmware": self.firmware},
        )

    @property
    def active_session(self) -> Session | None:
        for s in self.sessions.values():
            if s.stop_ts is None:
                return s
        return None

    # -- the EV charger capability -----------------------------------------------------------------
    async def set_ev_power_limit_w(self, limit_w: float | None) -> None:
        """0 pauses charging; None = the charger's maximum (``max_power_w``). Raises CommandError."""
        if limit_w is not None:
            if isinstance(limit_w, bool) or not math.isfinite(limit_w) or limit_w < 0:
                raise CommandError(f"ev_power_limit_w must be >= 0 or None, got {limit_w!r}")
            limit_w = float(limit_w)
        await self._apply(limit_w)
        self.asked, self.has_ask = limit_w, True

    # -- the charger's own commands ----------------------------------------------------------------
    async def clear_limit(self) -> None:
        """Remove the planner's profiles: the charger goes back to the safe default limit."""
        conn = self._require_conn()
        async with self._apply_lock:
            await conn.clear_profiles([pf.PLAN_PROFILE_ID, pf.TX_PROFILE_ID])
            self.asked, self.has_ask = None, False
            self._publish_limit(self.settings.safe_limit_w)

    async def remote_start(self, id_tag: str = "HEMS", connector_id: int = 1) -> None:
        conn = self._require_conn()
        self.remote_tags.add(id_tag)
        self._remote_start_id += 1
        status = await conn.remote_start(id_tag, connector_id, self._remote_start_id)
        if status != "Accepted":
            raise CommandError(f"charger {self.id!r} refused to start a session: {status}")

    async def remote_stop(self) -> None:
        conn = self._require_conn()
        session = self.active_session
        if session is None:
            raise CommandError(f"charger {self.id!r} has no session to stop")
        status = await conn.remote_stop(session)
        if status != "Accepted":
            raise CommandError(f"charger {self.id!r} refused to stop session {session.tx_id}: {status}")

    async def change_availability(self, available: bool, connector_id: int = 0) -> str:
        """Operative / Inoperative. Returns Accepted or Scheduled (after the running session); else CommandError."""
        status = await self._require_conn().change_availability(available, connector_id)
        if status not in ("Accepted", "Scheduled"):
            raise CommandError(f"charger {self.id!r} refused to change availability: {status}")
        return status

    async def reset(self, hard: bool = False) -> str:
        status = await self._require_conn().reset(hard)
        if status not in ("Accepted", "Scheduled"):
            raise CommandError(f"charger {self.id!r} refused to reset: {status}")
        return status

    async def update_firmware(
        self,
        location: str,
        *,
        retrieve_ts: float | None = None,
        retries: int | None = None,
        retry_interval_s: int | None = None,
        signature: str | None = None,
        signing_certificate: str | None = None,
        target_version: str = "",
    ) -> dict[str, Any]:
        """Send UpdateFirmware; the charger's notifications then drive the firmware status. CommandError if it
        is not connected or refuses."""
        conn = self._require_conn()
        location = fw.check_location(location)
        retrieve_ts = self.clock.now() if retrieve_ts is None else retrieve_ts
        self.firmware_request_id += 1
        request_id = self.firmware_request_id
        status = await conn.update_firmware(
            request_id,
            location,
            pf.iso(retrieve_ts),
            retries=retries,
            retry_interval_s=retry_interval_s,
            signature=signature,
            signing_certificate=signing_certificate,
        )
        if status not in ("Accepted", "AcceptedCanceled"):
            self._set_firmware(
                update_state="failed", message=f"the charger answered UpdateFirmware with {status}"
            )
            raise CommandError(f"charger {self.id!r} refused the firmware update: {status}")
        when = "now" if retrieve_ts <= self.clock.now() + 1 else f"at {pf.iso(retrieve_ts)}"
        self._set_firmware(
            update_state="downloading",
            progress_pct=0.0,
            target_version=target_version,
            message=f"update requested; the charger downloads it {when}",
        )
        log.info("charger %s: UpdateFirmware %s (%s, retrieve %s)", self.id, location, status, when)
        return {
            "charge_point_id": self.id,
            "request_id": request_id,
            "status": status,
            "location": location,
            "retrieve_ts": retrieve_ts,
        }

    def _set_firmware(self, **changes: Any) -> None:
        current = self.bus.firmware(self.id) or FirmwareStatus(version=self.firmware)
        values = {
            "version": current.version,
            "update_state": current.update_state,
            "progress_pct": current.progress_pct,
            "target_version": current.target_version,
            "message": current.message,
        }
        values.update(changes)
        self.bus.set_firmware(self.id, FirmwareStatus(**values, ts=self.clock.now()))

    # -- limits --------------------------------------------------------------------------------------
    def _require_conn(self) -> _CsmsBase:
        if self.conn is None:
            raise CommandError(f"charger {self.id!r} is not connected")
        return self.conn

    async def _apply(self, limit_w: float | None, *, verify: bool = True) -> None:
        conn = self._require_conn()
        cfg = self.cfg
        target = cfg.max_power_w if limit_w is None else min(limit_w, cfg.max_power_w)
        async with self._apply_lock:
            unit = self.rate_unit
            rate = pf.watts_to_rate(target, unit, cfg.voltage_v, cfg.phases)
            session = self.active_session
            valid_to = self.clock.now() + self.settings.profile_validity_s
            t0 = time.perf_counter()
            status = await conn.set_profile(
                pf.TX_PROFILE_ID if session else pf.PLAN_PROFILE_ID,
                pf.TX if session else pf.TX_DEFAULT,
                pf.PLAN_STACK_LEVEL,
                rate,
                unit,
                valid_to=valid_to,
                session=session,
            )
            self.last_accept_s = time.perf_counter() - t0
            if status != "Accepted":
                what = "TxProfile" if session else "TxDefaultProfile"
                log.warning("charger %s rejected the %s limit of %.0f W: %s", self.id, what, target, status)
                raise CommandError(
                    f"charger {self.id!r} rejected the charging profile ({what}, {rate:g} {unit}): {status}"
                )
            applied = pf.rate_to_watts(rate, unit, cfg.voltage_v, cfg.phases)
            if verify:
                composite = await conn.composite_limit_w(session.connector if session else 1)
                if composite is not None:
                    if composite > applied + LIMIT_TOLERANCE_W:
                        raise CommandError(
                            f"charger {self.id!r} accepted a {applied:.0f} W limit but its composite schedule "
                            f"allows {composite:.0f} W"
                        )
                    if composite < applied - LIMIT_TOLERANCE_W:
                        log.info("charger %s caps the %.0f W limit at %.0f W", self.id, applied, composite)
                    applied = composite
            self._publish_limit(round(applied, 1), no_limit=limit_w is None)

    def _publish_limit(self, value_w: float, *, no_limit: bool = False) -> None:
        self.limit_w = value_w
        self._pub(Q.EV_POWER_LIMIT_W, "none" if no_limit else float(value_w))

    async def _refresh_loop(self) -> None:
        """Re-send the planner's limit before it expires, for as long as the charger is connected."""
        period = max(self.settings.profile_validity_s / 3.0, 0.2)
        while True:
            await self.clock.sleep(period)
            if self.has_ask and self.conn is not None:
                try:
                    await self._apply(self.asked, verify=False)
                except CommandError as exc:
                    log.warning("charger %s: refreshing the limit failed: %s", self.id, exc)

    def _resync_soon(self) -> None:
        """After a session starts or ends the planner's limit moves between TxProfile and TxDefaultProfile."""
        if self.has_ask and self.conn is not None:
            self.spawn(self._resync(), "resync")

    async def _resync(self) -> None:
        try:
            await self._apply(self.asked, verify=False)
        except CommandError as exc:
            log.warning("charger %s: re-applying the limit failed: %s", self.id, exc)

    async def setup(self, conn: _CsmsBase, booted: bool) -> None:
        """After a boot or a reconnect: configure, install the safe default, re-apply the planner's limit."""
        try:
            await conn.configure()
            if self.cfg.rate_unit == "auto":
                self.rate_unit = await conn.detect_rate_unit()
            cfg = self.cfg
            safe = pf.watts_to_rate(self.settings.safe_limit_w, self.rate_unit, cfg.voltage_v, cfg.phases)
            status = await conn.set_profile(
                pf.SAFE_PROFILE_ID,
                pf.TX_DEFAULT,
                pf.SAFE_STACK_LEVEL,
                safe,
                self.rate_unit,
                valid_to=None,
                session=None,
            )
            if status != "Accepted":
                log.error(
                    "charger %s rejected the safe default profile (%s): it will not fall back to %.0f W "
                    "if the gateway stops",
                    self.id,
                    status,
                    self.settings.safe_limit_w,
                )
            if self.has_ask:
                await self._apply(self.asked)
            else:
                try:
                    await conn.clear_profiles([pf.PLAN_PROFILE_ID, pf.TX_PROFILE_ID])
                except CommandError as exc:
                    log.info("%s", exc)
                self._publish_limit(self.settings.safe_limit_w)
        except CommandError as exc:
            log.warning(
                "charger %s: setup after %s incomplete: %s", self.id, "boot" if booted else "reconnect", exc
            )
        finally:
            if self.conn is conn:
                self.ready.set()
                if self._refresh is None or self._refresh.done():
                    self._refresh = self.spawn(self._refresh_loop(), "refresh")

    # -- connection lifecycle --------------------------------------------------------------------------
    def spawn(self, coro: Awaitable, what: str) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        task.set_name(f"ocpp-{self.id}-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("charger %s: %s failed", self.id, task.get_name(), exc_info=task.exception())

    def attach(self, conn: _CsmsBase, version: str) -> None:
        old = self.conn
        self.conn, self.version = conn, version
        self.ready.clear()
        if old is not None:
            log.info("charger %s reconnected; closing its previous connection", self.id)
            self.spawn(old.close(1000, "replaced by a new connection"), "close-old")
        log.info("charger %s connected (OCPP %s)", self.id, version)
        self.bus.set_status(self.id, DeviceStatus.OK)

    def detach(self, conn: _CsmsBase) -> None:
        if self.conn is not conn:
            return
        self.conn = None
        self.ready.clear()
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        session = self.active_session
        detail = f" during session {session.tx_id} (kept until it reconnects)" if session else ""
        log.warning("charger %s disconnected%s", self.id, detail)
        self.bus.set_status(self.id, DeviceStatus.OFFLINE, "disconnected" + detail)

    async def shutdown(self) -> None:
        conn = self.conn
        if conn is not None:
            await conn.close(1001, "gateway stopping")
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    def on_bad_frame(self, problem: str) -> None:
        self.bad_frames += 1
        self.bus.set_status(self.id, DeviceStatus.FAULTY, f"sent an invalid OCPP frame ({problem})")

    def on_good_message(self) -> None:
        if self.bus.status(self.id)[0] is DeviceStatus.FAULTY and self.conn is not None:
            self.bus.set_status(self.id, DeviceStatus.OK)

    # -- what the charger reports -----------------------------------------------------------------------
    def _pub(self, quantity: str, value: float | bool | str, ts: float | None = None) -> None:
        self.bus.publish(Reading(self.id, str(quantity), value, self.clock.now() if ts is None else ts))

    def authorize(self, id_tag: str | None) -> str:
        if self.settings.free_vend:
            return "Accepted"
        if id_tag and (id_tag in self.cfg.authorized_id_tags or id_tag in self.remote_tags):
            return "Accepted"
        log.info("charger %s: id tag %r is not authorized", self.id, id_tag)
        return "Invalid"

    def on_boot(self, vendor: str, model: str, firmware: str | None) -> None:
        previous = self.firmware
        self.vendor, self.model, self.firmware = vendor or "", model or "", firmware or ""
        self.boots += 1
        if self.firmware and previous and self.firmware != previous:
            log.info("charger %s: firmware %s -> %s", self.id, previous, self.firmware)
        self._set_firmware(version=self.firmware)
        log.info(
            "charger %s booted: %s %s firmware %s", self.id, self.vendor, self.model, self.firmware or "?"
        )
        # a charger that boots has ended whatever session it had (it reports the stop itself if it kept one)

    def on_firmware_status(self, status: str, request_id: int | None = None) -> None:
        self.firmware_status = status
        log.info("charger %s firmware status: %s", self.id, status)
        self._pub("firmware_status", status)
        if request_id is not None and request_id != self.firmware_request_id:
            log.info(
                "charger %s: firmware status %s is for request %s, not the last one (%s)",
                self.id,
                status,
                request_id,
                self.firmware_request_id,
            )
        state, pct, message = fw.state_of(status)
        if state == "idle" and (self.bus.firmware(self.id) or FirmwareStatus()).update_state != "idle":
            return  # "Idle" answers a TriggerMessage; it does not end an update the charger reported on
        changes: dict[str, Any] = {"update_state": state, "message": message}
        if pct is not None or state == "failed":
            changes["progress_pct"] = pct
        if state == "installed":
            changes["version"] = self.firmware
        self._set_firmware(**changes)

    def set_plugged(self, plugged: bool) -> None:
        changed = plugged != self.plugged
        self.plugged = plugged
        self._pub(Q.EV_PLUGGED, plugged)
        if changed and not plugged:
            self._pub(Q.POWER_W, 0.0)

    def on_connector_status(self, connector: int, status: str, error_code: str | None = None) -> None:
        self.connector_status[connector] = status
        if error_code and error_code != "NoError":
            log.warning("charger %s connector %s reports %s (%s)", self.id, connector, status, error_code)
        if connector == 0:
            if status in ("Faulted", "Unavailable"):
                self._pub("connector_status", status)
            return
        self._pub("connector_status", status)
        if self.version == "1.6":
            self.set_plugged(
                status in PLUGGED_16 or (self.active_session is not None and status not in UNPLUGGED_16)
            )
        else:
            self.set_plugged(status == "Occupied")

    def start_session(
        self, raw_id: Any, connector: int, id_tag: str | None, ts: float | None, meter_start_wh: float | None
    ) -> Session:
        tx_id = str(raw_id)
        existing = self.sessions.get(tx_id)
        if existing is not None:  # a repeated Started (offline queue): keep the first
            return existing
        running = self.active_session
        if running is not None and running.connector == connector:
            self.stop_session(running, ts, None, "Other")  # the charger moved on without reporting the end
        session = Session(
            tx_id, raw_id, connector, id_tag, ts or self.clock.now(), meter_start_wh, meter_start_wh
        )
        self.sessions[tx_id] = session
        log.info(
            "charger %s: session %s started on connector %s (id tag %s)", self.id, tx_id, connector, id_tag
        )
        self.set_plugged(True)
        self._publish_session(session)
        self._resync_soon()
        return session

    def session_for(self, raw_id: Any, connector: int | None) -> Session | None:
        """The session a message names; one the gateway never saw start (it restarted) is adopted."""
        if raw_id is None:
            active = self.active_session
            return (
                active
                if active is not None and (connector in (None, 0) or active.connector == connector)
                else None
            )
        session = self.sessions.get(str(raw_id))
        if session is None:
            session = next((s for s in self.finished if s.tx_id == str(raw_id)), None)
        if session is None:
            log.info("charger %s: adopting session %s already running on the charger", self.id, raw_id)
            session = Session(str(raw_id), raw_id, connector or 1, None, self.clock.now(), None)
            self.sessions[str(raw_id)] = session
        return session

    def on_samples(self, samples: list[Sample], session: Session | None) -> None:
        for s in samples:
            ts = s.ts if s.ts is not None else self.clock.now()
            if session is not None:
                if session.meter_start_wh is None:
                    session.meter_start_wh = s.begin_wh if s.begin_wh is not None else s.energy_wh
                if s.energy_wh is not None and session.stop_ts is None:
                    session.register_wh = s.energy_wh
            if s.energy_wh is not None:
                self._pub(Q.ENERGY_WH, round(s.energy_wh, 1), ts)
            if s.power_w is not None:
                self._pub(Q.POWER_W, round(s.power_w, 1), ts)
            if s.current_a:
                for phase, amps in sorted(s.current_a.items()):
                    if phase != "total":
                        self._pub(f"current_{phase}_a", round(amps, 2), ts)
                self._pub(Q.CURRENT_A, round(max(s.current_a.values()), 2), ts)
            if s.soc_pct is not None:
                self._pub(Q.EV_SOC_PCT, round(s.soc_pct, 2), ts)
            if session is not None:
                self._publish_session(session, ts)

    def _publish_session(self, session: Session, ts: float | None = None) -> None:
        now = self.clock.now()
        self._pub(Q.SESSION_ENERGY_WH, round(session.energy_wh, 1), ts)
        self._pub("session_duration_s", round(session.duration_s(now), 1), ts)
        self._pub("session_id_tag", session.id_tag or "", ts)

    def stop_session(
        self, session: Session, ts: float | None, meter_stop_wh: float | None, reason: str | None
    ) -> None:
        if session.stop_ts is not None:
            return
        if meter_stop_wh is not None:
            if session.meter_start_wh is None:
                session.meter_start_wh = meter_stop_wh
            session.register_wh = meter_stop_wh
            self._pub(Q.ENERGY_WH, round(meter_stop_wh, 1), ts)
        session.stop_ts = ts or self.clock.now()
        session.reason = reason
        log.info(
            "charger %s: session %s ended (%s): %.0f Wh in %.0f s",
            self.id,
            session.tx_id,
            reason or "no reason given",
            session.energy_wh,
            session.duration_s(session.stop_ts),
        )
        self._publish_session(session, ts)
        self._pub(Q.POWER_W, 0.0, ts)
        self.finished.append(session)
        self.sessions.pop(session.tx_id, None)
        del self.finished[:-20]
        self._resync_soon()


# -- connections ---------------------------------------------------------------------------------------------


class _CsmsBase(RpcMixin):
    """What every version's connection does; the version classes add the OCPP messages."""

    device: ChargerDevice
    _ocpp_version: str

    def setup_connection(self, device: ChargerDevice, ws: WSConnection) -> None:
        self.device = device
        self.ws = ws
        self.closed = asyncio.Event()
        self._setup_started = False
        self._response_timeout = device.settings.response_timeout_s

    def now_iso(self) -> str:
        return pf.iso(self.device.clock.now())

    # RpcMixin hooks
    def on_bad_frame(self, raw: str, problem: str) -> None:
        if self.device.bad_frames == 0 or self.device.bad_frames % 100 == 0:
            log.warning("charger %s sent an invalid frame (%s): %.200r", self.id, problem, raw)
        self.device.on_bad_frame(problem)

    def after_call(self, action: str) -> None:
        self.device.on_good_message()
        if action == "BootNotification" or not self._setup_started:
            self._setup_started = True
            self.device.spawn(self.device.setup(self, action == "BootNotification"), "setup")

    async def close(self, code: int = 1000, message: str = "") -> None:
        await self.ws.close(code, message)

    async def request(self, payload: Any) -> Any:
        """Send a CALL and return its result; CommandError for a CALLERROR, a timeout or a lost connection."""
        action = type(payload).__name__
        if self.closed.is_set():
            raise CommandError(f"charger {self.id!r} is not connected")
        try:
            return await call_until_closed(self, payload, self.closed)
        except OCPPError as exc:
            raise CommandError(
                f"charger {self.id!r} answered {action} with CALLERROR {exc.code}: {exc.description}"
            ) from exc
        except TimeoutError as exc:
            raise CommandError(
                f"charger {self.id!r} did not answer {action} within {self._response_timeout:g} s"
            ) from exc
        except ConnectionClosed as exc:
            raise CommandError(f"charger {self.id!r} disconnected before answering {action}: {exc}") from exc
        except Exception as exc:  # e.g. an answer that fails the schema
            raise CommandError(f"charger {self.id!r} gave an unusable answer to {action}: {exc}") from exc

    async def try_request(self, payload: Any) -> Any | None:
        try:
            return await self.request(payload)
        except CommandError as exc:
            log.info("%s", exc)
            return None

    # version-specific (implemented below)
    async def configure(self) -> None: ...
    async def detect_rate_unit(self) -> str: ...
    async def set_profile(
        self,
        profile_id: int,
        purpose: str,
        stack_level: int,
        rate: float,
        unit: str,
        *,
        valid_to: float | None,
        session: Session | None,
    ) -> str: ...
    async def composite_limit_w(self, connector: int) -> float | None: ...
    async def clear_profiles(self, ids: list[int]) -> None: ...
    async def remote_start(self, id_tag: str, connector: int, remote_id: int) -> str: ...
    async def remote_stop(self, session: Session) -> str: ...
    async def change_availability(self, available: bool, connector: int) -> str: ...
    async def reset(self, hard: bool) -> str: ...
    async def update_firmware(
        self,
        request_id: int,
        location: str,
        retrieve_iso: str,
        *,
        retries: int | None,
        retry_interval_s: int | None,
        signature: str | None,
        signing_certificate: str | None,
    ) -> str: ...


def parse_basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, sep, password = decoded.partition(":")
    return (login, password) if sep else None


def _units_from(value: str | None) -> str:
    """'Current,Power' / 'A,W' style lists to the unit to use: W when the charger takes it, else A."""
    items = {v.strip() for v in (value or "").split(",")}
    return "W" if items & {"Power", "W"} else "A"


class CsmsV16(_CsmsBase, v16.ChargePoint):
    # -- charger → gateway
    @on("BootNotification")
    def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **kw):
        self.device.on_boot(charge_point_vendor, charge_point_model, kw.get("firmware_version"))
        return result16.BootNotification(
            current_time=self.now_iso(), interval=self.device.settings.heartbeat_interval_s, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **kw):
        return result16.Heartbeat(current_time=self.now_iso())

    @on("StatusNotification")
    def on_status_notification(self, connector_id: int, error_code: str, status: str, **kw):
        self.device.on_connector_status(connector_id, status, error_code)
        return result16.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag: str, **kw):
        return result16.Authorize(id_tag_info={"status": self.device.authorize(id_tag)})

    @on("StartTransaction")
    def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kw):
        dev = self.device
        status = dev.authorize(id_tag)
        ts = pf.parse_iso(timestamp)
        running = dev.active_session
        if running is not None and running.connector == connector_id:
            if running.id_tag == id_tag and running.meter_start_wh == float(meter_start):
                # the same StartTransaction again (its answer was lost with the connection): same transaction
                return result16.StartTransaction(
                    transaction_id=running.raw_id, id_tag_info={"status": status}
                )
        tx_id = dev.csms.next_transaction_id()
        dev.start_session(tx_id, connector_id, id_tag, ts, float(meter_start))
        return result16.StartTransaction(transaction_id=tx_id, id_tag_info={"status": status})

    @on("StopTransaction")
    def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int, **kw):
        session = self.device.session_for(transaction_id, None)
        if session is not None:
            self.device.on_samples(parse_meter_values(kw.get("transaction_data")), session)
            self.device.stop_session(
                session, pf.parse_iso(timestamp), float(meter_stop), kw.get("reason") or "Local"
            )
        id_tag = kw.get("id_tag")
        if id_tag:
            return result16.StopTransaction(id_tag_info={"status": self.device.authorize(id_tag)})
        return result16.StopTransaction()

    @on("MeterValues")
    def on_meter_values(self, connector_id: int, meter_value: list, **kw):
        session = self.device.session_for(kw.get("transaction_id"), connector_id)
        self.device.on_samples(parse_meter_values(meter_value), session)
        return result16.MeterValues()

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **kw):
        log.info(
            "charger %s DataTransfer from %s: %s %.200r",
            self.id,
            vendor_id,
            kw.get("message_id"),
            kw.get("data"),
        )
        return result16.DataTransfer(status="Accepted")

    @on("FirmwareStatusNotification")
    def on_firmware_status_notification(self, status: str, **kw):
        self.device.on_firmware_status(status)
        return result16.FirmwareStatusNotification()

    @on("DiagnosticsStatusNotification")
    def on_diagnostics_status_notification(self, status: str, **kw):
        log.info("charger %s diagnostics status: %s", self.id, status)
        return result16.DiagnosticsStatusNotification()

    @on("SecurityEventNotification")
    def on_security_event_notification(self, type: str, timestamp: str, **kw):
        log.warning("charger %s security event %s at %s: %s", self.id, type, timestamp, kw.get("tech_info"))
        return result16.SecurityEventNotification()

    # -- gateway → charger
    async def configure(self) -> None:
        settings = self.device.settings
        for key, value in (
            ("MeterValueSampleInterval", str(settings.meter_interval_s)),
            ("MeterValuesSampledData", MEASURANDS),
            ("HeartbeatInterval", str(settings.heartbeat_interval_s)),
        ):
            result = await self.try_request(call16.ChangeConfiguration(key=key, value=value))
            if result is not None and result.status not in ("Accepted", "RebootRequired"):
                log.info("charger %s: %s = %s %s", self.id, key, value, result.status)

    async def detect_rate_unit(self) -> str:
        result = await self.try_request(
            call16.GetConfiguration(key=["ChargingScheduleAllowedChargingRateUnit"])
        )
        for item in (result.configuration_key or []) if result is not None else []:
            if item.get("key") == "ChargingScheduleAllowedChargingRateUnit":
                return _units_from(item.get("value"))
        return "A"

    async def set_profile(self, profile_id, purpose, stack_level, rate, unit, *, valid_to, session) -> str:
        profile = pf.profile_v16(
            profile_id,
            purpose,
            stack_level,
            rate,
            unit,
            valid_to=valid_to,
            transaction_id=session.raw_id if session is not None else None,
            phases=self.device.cfg.phases,
        )
        connector = session.connector if session is not None else 0
        result = await self.request(
            call16.SetChargingProfile(connector_id=connector, cs_charging_profiles=profile)
        )
        return str(result.status)

    async def composite_limit_w(self, connector: int) -> float | None:
        unit = self.device.rate_unit
        result = await self.try_request(
            call16.GetCompositeSchedule(connector_id=connector, duration=60, charging_rate_unit=unit)
        )
        if result is None or result.status != "Accepted" or not result.charging_schedule:
            return None
        sched = result.charging_schedule
        limit = pf.first_limit(sched.get("charging_schedule_period"))
        if limit is None:
            return None
        cfg = self.device.cfg
        return pf.rate_to_watts(limit, sched.get("charging_rate_unit", unit), cfg.voltage_v, cfg.phases)

    async def clear_profiles(self, ids: list[int]) -> None:
        for profile_id in ids:
            await self.request(call16.ClearChargingProfile(id=profile_id))

    async def remote_start(self, id_tag, connector, remote_id) -> str:
        result = await self.request(call16.RemoteStartTransaction(id_tag=id_tag, connector_id=connector))
        return str(result.status)

    async def remote_stop(self, session) -> str:
        result = await self.request(call16.RemoteStopTransaction(transaction_id=session.raw_id))
        return str(result.status)

    async def change_availability(self, available, connector) -> str:
        kind = "Operative" if available else "Inoperative"
        result = await self.request(call16.ChangeAvailability(connector_id=connector, type=kind))
        return str(result.status)

    async def reset(self, hard) -> str:
        result = await self.request(call16.Reset(type="Hard" if hard else "Soft"))
        return str(result.status)

    async def update_firmware(
        self, request_id, location, retrieve_iso, *, retries, retry_interval_s, signature, signing_certificate
    ) -> str:
        if signature or signing_certificate:
            raise CommandError(
                f"charger {self.id!r} speaks OCPP 1.6, whose UpdateFirmware carries no signature; leave it out"
            )
        await self.request(
            call16.UpdateFirmware(
                location=location,
                retrieve_date=retrieve_iso,
                retries=retries,
                retry_interval=retry_interval_s,
            )
        )
        return "Accepted"  # 1.6 answers with an empty CALLRESULT


class _CsmsV2(_CsmsBase):
    """OCPP 2.0.1 and 2.1 (the same messages for what the gateway uses)."""

    _call: Any
    _call_result: Any

    @on("BootNotification")
    def on_boot_notification(self, charging_station: dict, reason: str, **kw):
        cs = charging_station or {}
        self.device.on_boot(cs.get("vendor_name", ""), cs.get("model", ""), cs.get("firmware_version"))
        return self._call_result.BootNotification(
            current_time=self.now_iso(), interval=self.device.settings.heartbeat_interval_s, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **kw):
        return self._call_result.Heartbeat(current_time=self.now_iso())

    @on("StatusNotification")
    def on_status_notification(self, connector_status: str, evse_id: int, connector_id: int, **kw):
        self.device.on_connector_status(evse_id, connector_status)
        return self._call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_token: dict, **kw):
        return self._call_result.Authorize(
            id_token_info={"status": self.device.authorize(id_token.get("id_token"))}
        )

    @on("TransactionEvent")
    def on_transaction_event(
        self, event_type: str, timestamp: str, trigger_reason: str, seq_no: int, transaction_info: dict, **kw
    ):
        dev = self.device
        ts = pf.parse_iso(timestamp)
        tx_id = transaction_info.get("transaction_id")
        evse = kw.get("evse") or {}
        samples = parse_meter_values(kw.get("meter_value"))
        id_token = kw.get("id_token") or {}
        tag = id_token.get("id_token")
        out: dict = {}
        if id_token:
            out["id_token_info"] = {"status": dev.authorize(tag)}
        if event_type == "Started":
            begin = next((s.begin_wh for s in samples if s.begin_wh is not None), None)
            if begin is None:
                begin = next((s.energy_wh for s in samples if s.energy_wh is not None), None)
            session = dev.start_session(tx_id, int(evse.get("id", 1)), tag, ts, begin)
        else:
            session = dev.session_for(tx_id, evse.get("id"))
        if session is not None and tag and session.id_tag != tag:
            session.id_tag = tag
        dev.on_samples(samples, session)
        state = transaction_info.get("charging_state")
        if state:
            dev._pub("charging_state", state)
            dev.set_plugged(state != "Idle" and event_type != "Ended")
        if event_type == "Ended" and session is not None:
            end = next((s.end_wh for s in samples if s.end_wh is not None), None)
            if end is None:
                end = next((s.energy_wh for s in reversed(samples) if s.energy_wh is not None), None)
            dev.stop_session(session, ts, end, transaction_info.get("stopped_reason") or trigger_reason)
        return self._call_result.TransactionEvent(**out)

    @on("MeterValues")
    def on_meter_values(self, evse_id: int, meter_value: list, **kw):
        self.device.on_samples(parse_meter_values(meter_value), self.device.session_for(None, evse_id))
        return self._call_result.MeterValues()

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **kw):
        log.info(
            "charger %s DataTransfer from %s: %s %.200r",
            self.id,
            vendor_id,
            kw.get("message_id"),
            kw.get("data"),
        )
        return self._call_result.DataTransfer(status="Accepted")

    @on("FirmwareStatusNotification")
    def on_firmware_status_notification(self, status: str, **kw):
        self.device.on_firmware_status(status, kw.get("request_id"))
        return self._call_result.FirmwareStatusNotification()

    @on("NotifyEvent")
    def on_notify_event(self, generated_at: str, seq_no: int, event_data: list, **kw):
        for event in event_data[:20]:
            log.info(
                "charger %s event: %s.%s = %s (%s)",
                self.id,
                (event.get("component") or {}).get("name"),
                (event.get("variable") or {}).get("name"),
                event.get("actual_value"),
                event.get("trigger"),
            )
        return self._call_result.NotifyEvent()

    @on("NotifyReport")
    def on_notify_report(self, **kw):
        return self._call_result.NotifyReport()

    @on("SecurityEventNotification")
    def on_security_event_notification(self, type: str, timestamp: str, **kw):
        log.warning("charger %s security event %s at %s: %s", self.id, type, timestamp, kw.get("tech_info"))
        return self._call_result.SecurityEventNotification()

    # -- gateway → charger
    async def configure(self) -> None:
        settings = self.device.settings
        data = [
            ("SampledDataCtrlr", "TxUpdatedInterval", str(settings.meter_interval_s)),
            ("SampledDataCtrlr", "TxUpdatedMeasurands", MEASURANDS),
            ("OCPPCommCtrlr", "HeartbeatInterval", str(settings.heartbeat_interval_s)),
        ]
        result = await self.try_request(
            self._call.SetVariables(
                set_variable_data=[
                    {"attributeValue": value, "component": {"name": comp}, "variable": {"name": var}}
                    for comp, var, value in data
                ]
            )
        )
        for item in (result.set_variable_result or []) if result is not None else []:
            if item.get("attribute_status") not in ("Accepted", "RebootRequired"):
                log.info(
                    "charger %s: %s.%s %s",
                    self.id,
                    (item.get("component") or {}).get("name"),
                    (item.get("variable") or {}).get("name"),
                    item.get("attribute_status"),
                )

    async def detect_rate_unit(self) -> str:
        result = await self.try_request(
            self._call.GetVariables(
                get_variable_data=[
                    {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"}}
                ]
            )
        )
        for item in (result.get_variable_result or []) if result is not None else []:
            if item.get("attribute_status") == "Accepted":
                return _units_from(item.get("attribute_value"))
        return "A"

    async def set_profile(self, profile_id, purpose, stack_level, rate, unit, *, valid_to, session) -> str:
        offline = None
        if self._ocpp_version == "2.1" and valid_to is not None:
            offline = int(self.device.settings.profile_validity_s)
        profile = pf.profile_v2(
            profile_id,
            purpose,
            stack_level,
            rate,
            unit,
            valid_to=valid_to,
            transaction_id=session.raw_id if session is not None else None,
            phases=self.device.cfg.phases,
            max_offline_s=offline,
        )
        evse = session.connector if session is not None else 0
        result = await self.request(self._call.SetChargingProfile(evse_id=evse, charging_profile=profile))
        return str(result.status)

    async def composite_limit_w(self, connector: int) -> float | None:
        unit = self.device.rate_unit
        result = await self.try_request(
            self._call.GetCompositeSchedule(duration=60, evse_id=connector, charging_rate_unit=unit)
        )
        if result is None or result.status != "Accepted" or not result.schedule:
            return None
        sched = result.schedule
        limit = pf.first_limit(sched.get("charging_schedule_period"))
        if limit is None:
            return None
        cfg = self.device.cfg
        return pf.rate_to_watts(limit, sched.get("charging_rate_unit", unit), cfg.voltage_v, cfg.phases)

    async def clear_profiles(self, ids: list[int]) -> None:
        for profile_id in ids:
            await self.request(self._call.ClearChargingProfile(charging_profile_id=profile_id))

    async def remote_start(self, id_tag, connector, remote_id) -> str:
        result = await self.request(
            self._call.RequestStartTransaction(
                id_token={"idToken": id_tag, "type": "Central"}, remote_start_id=remote_id, evse_id=connector
            )
        )
        return str(result.status)

    async def remote_stop(self, session) -> str:
        result = await self.request(self._call.RequestStopTransaction(transaction_id=str(session.raw_id)))
        return str(result.status)

    async def change_availability(self, available, connector) -> str:
        status = "Operative" if available else "Inoperative"
        evse = {"id": connector} if connector else None
        result = await self.request(self._call.ChangeAvailability(operational_status=status, evse=evse))
        return str(result.status)

    async def reset(self, hard) -> str:
        result = await self.request(self._call.Reset(type="Immediate" if hard else "OnIdle"))
        return str(result.status)

    async def update_firmware(
        self, request_id, location, retrieve_iso, *, retries, retry_interval_s, signature, signing_certificate
    ) -> str:
        firmware: dict[str, Any] = {"location": location, "retrieveDateTime": retrieve_iso}
        if signature:
            firmware["signature"] = signature
        if signing_certificate:
            firmware["signingCertificate"] = signing_certificate
        result = await self.request(
            self._call.UpdateFirmware(
                request_id=request_id, firmware=firmware, retries=retries, retry_interval=retry_interval_s
            )
        )
        return str(result.status)


class CsmsV201(_CsmsV2, v201.ChargePoint):
    pass


class CsmsV21(_CsmsV2, v21.ChargePoint):
    pass


CONNECTIONS: dict[str, type[_CsmsBase]] = {"1.6": CsmsV16, "2.0.1": CsmsV201, "2.1": CsmsV21}


# -- the server ---------------------------------------------------------------------------------------------


class OcppIntegration:
    """``[integrations.ocpp]``: the CSMS the home's chargers connect to at ``ws(s)://host:port/ocpp/<id>``."""

    name = "ocpp"

    def __init__(self, ctx: IntegrationContext) -> None:
        self.ctx = ctx
        self.settings = parse_settings(ctx)
        self.devices = {cp_id: ChargerDevice(cfg, self) for cp_id, cfg in self.settings.chargers.items()}
        self._ssl = self.settings.ssl_context()
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task] = set()
        self._refused: dict[str, int] = {}
        self.enrolled: dict[str, ChargerConfig] = {}  # enrolled by the installer (kept in the store)
        self.waiting: dict[str, dict[str, Any]] = {}  # unknown charge points that tried to connect
        self._tx_counter = int(time.time()) % 1_000_000_000
        self.port: int | None = None
        if self.settings.security_profile == 0:
            log.warning("OCPP security profile 0: chargers connect without a password (lab use only)")

    @property
    def url(self) -> str:
        scheme = "wss" if self._ssl is not None else "ws"
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::", "") else self.settings.host
        return f"{scheme}://{host}:{self.port}/ocpp"

    def next_transaction_id(self) -> int:
        self._tx_counter += 1
        return self._tx_counter

    async def start(self) -> None:
        for cfg in self._load_enrolled():
            if cfg.id in self.devices:
                log.warning(
                    "charger %s is in the config file and was enrolled here: the config file wins", cfg.id
                )
                continue
            self.enrolled[cfg.id] = cfg
            self.devices[cfg.id] = ChargerDevice(cfg, self)
        for dev in self.devices.values():
            self.ctx.bus.add_device(dev)
            self.ctx.bus.set_status(dev.id, DeviceStatus.OFFLINE, "not connected yet")
        app = web.Application()
        app.router.add_get("/ocpp/{cp_id}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port, ssl_context=self._ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the real port when 0 asked for a free one
        log.info(
            "OCPP CSMS listening on %s/<charge point id> (security profile %d) for %s",
            self.url,
            self.settings.security_profile,
            ", ".join(self.devices) or "no enrolled charger",
        )

    async def stop(self) -> None:
        for dev in self.devices.values():
            await dev.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for dev in self.devices.values():
            self.ctx.bus.remove_device(dev.id)

    def _refuse(self, cp_id: str, status: int, why: str, headers: dict | None = None) -> web.Response:
        count = self._refused[cp_id] = self._refused.get(cp_id, 0) + 1
        if count == 1 or count % 100 == 0:
            log.warning("refused charge point %r: %s (%d time(s))", cp_id, why, count)
        return web.Response(status=status, text=why, headers=headers)

    def _authorized(self, request: web.Request, dev: ChargerDevice) -> bool:
        """HTTP basic auth: user = the charge point id, password = its enrolled password (constant time)."""
        credentials = parse_basic_auth(request.headers.get("Authorization", ""))
        expected = dev.cfg.password
        if credentials is None or not (expected or dev.cfg.password_hash):
            return False
        login, password = credentials
        same_id = hmac.compare_digest(login.encode(), dev.id.encode())
        if expected:
            return hmac.compare_digest(password.encode(), expected.encode()) and same_id
        return enrol.verify_password(password, dev.cfg.password_hash) and same_id

    # -- commissioning (the installer's page) ----------------------------------------------------------
    def commission_actions(self) -> list[dict[str, Any]]:
        chargers = sorted(self.devices)
        return [
            {
                "integration": self.name,
                "action": "enrol_charger",
                "title": "Enrol an EV charger",
                "description": (
                    f"Accept a charger that connects to {self.url}/<charge point id>. Leave the password "
                    "empty to have one made (shown once)."
                ),
                "params": {
                    "charge_point_id": {
                        "type": "string",
                        "label": "Charge point id",
                        "choices": sorted(self.waiting),
                    },
                    "password": {"type": "string", "label": "Password (16-40 characters)", "default": ""},
                    "name": {"type": "string", "label": "Name", "default": ""},
                    "id_tags": {
                        "type": "string",
                        "label": "RFID tags allowed to charge (comma-separated)",
                        "default": "",
                    },
                },
                "state": {
                    "url": self.url if self.port is not None else "",
                    "security_profile": self.settings.security_profile,
                    "enrolled": [
                        {
                            "charge_point_id": cp_id,
                            "name": dev.cfg.name,
                            "enrolled_by": "installer" if cp_id in self.enrolled else "config",
                            "connected": dev.conn is not None,
                        }
                        for cp_id, dev in sorted(self.devices.items())
                    ],
                    "waiting": [{"charge_point_id": k, **v} for k, v in self.waiting.items()],
                },
            },
            {
                "integration": self.name,
                "action": "remove_charger",
                "title": "Remove an EV charger",
                "description": "Stop accepting a charger enrolled here (those in the config file stay).",
                "params": {
                    "charge_point_id": {
                        "type": "string",
                        "label": "Charger",
                        "choices": sorted(self.enrolled),
                    }
                },
            },
            {
                "integration": self.name,
                "action": "update_firmware",
                "title": "Update an EV charger's firmware",
                "description": "Send OCPP UpdateFirmware: the charger downloads the file from the URL and installs it.",
                "params": {
                    "charge_point_id": {"type": "string", "label": "Charger", "choices": chargers},
                    "location": {"type": "string", "label": "Firmware URL"},
                    "retrieve_at": {
                        "type": "string",
                        "label": "Download at (ISO date-time; empty = now)",
                        "default": "",
                    },
                    "retries": {
                        "type": "integer",
                        "label": "Download retries",
                        "default": 2,
                        "min": 0,
                        "max": 10,
                    },
                    "retry_interval_s": {
                        "type": "integer",
                        "label": "Seconds between retries",
                        "default": 60,
                        "min": 1,
                        "max": 86400,
                    },
                    "version": {"type": "string", "label": "Version it brings (for display)", "default": ""},
                    "signature": {"type": "string", "label": "Signature (base64, OCPP 2.x)", "default": ""},
                    "signing_certificate": {
                        "type": "string",
                        "label": "Signing certificate (PEM, OCPP 2.x)",
                        "default": "",
                    },
                },
            },
        ]

    async def commission(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one commissioning action; ValueError says what is wrong with the request (nothing changed)."""
        params = dict(params or {})
        if action == "enrol_charger":
            return self._enrol(params)
        if action == "remove_charger":
            return await self._remove(params)
        if action == "update_firmware":
            return await self._update_firmware(params)
        raise ValueError(
            f"unknown ocpp action {action!r}; available: enrol_charger, remove_charger, update_firmware"
        )

    def _enrol(self, params: dict[str, Any]) -> dict[str, Any]:
        home = self.ctx.config.home
        cfg, generated = enrol.parse_request(
            params,
            security_profile=self.settings.security_profile,
            taken=set(self.devices),
            max_power_w=float(home.ev.charger_max_w),
            voltage_v=float(home.site.voltage_v),
        )
        if cfg.id in {d.info.device_id for d in self.ctx.bus.devices()}:
            raise ValueError(f"device id {cfg.id!r} is already used by another device")
        self.enrolled[cfg.id] = cfg
        self._save_enrolled()
        dev = ChargerDevice(cfg, self)
        self.devices[cfg.id] = dev
        self.ctx.bus.add_device(dev)
        self.ctx.bus.set_status(dev.id, DeviceStatus.OFFLINE, "enrolled; not connected yet")
        self.waiting.pop(cfg.id, None)
        self._refused.pop(cfg.id, None)
        log.info("charger %s enrolled (security profile %d)", cfg.id, self.settings.security_profile)
        result: dict[str, Any] = {
            "charge_point_id": cfg.id,
            "url": f"{self.url}/{cfg.id}",
            "security_profile": self.settings.security_profile,
            "password_generated": generated is not None,
        }
        if generated is not None:
            result["password"] = generated  # shown once: only its hash is kept
        return result

    async def _remove(self, params: dict[str, Any]) -> dict[str, Any]:
        cp_id = params.pop("charge_point_id", None)
        if params:
            raise ValueError(f"ocpp remove_charger: unknown parameter(s) {', '.join(sorted(params))}")
        if cp_id not in self.enrolled:
            if cp_id in self.devices:
                raise ValueError(f"charger {cp_id!r} is in the config file; remove it there")
            raise ValueError(
                f"no charger {cp_id!r} was enrolled here; enrolled: {', '.join(sorted(self.enrolled)) or 'none'}"
            )
        dev = self.devices.pop(cp_id)
        del self.enrolled[cp_id]
        self._save_enrolled()
        await dev.shutdown()
        self.ctx.bus.remove_device(cp_id)
        return {"charge_point_id": cp_id, "removed": True}

    async def _update_firmware(self, params: dict[str, Any]) -> dict[str, Any]:
        known = {
            "charge_point_id",
            "location",
            "retrieve_at",
            "retries",
            "retry_interval_s",
            "version",
            "signature",
            "signing_certificate",
        }
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"ocpp update_firmware: unknown parameter(s) {', '.join(unknown)}")
        cp_id = params.get("charge_point_id")
        dev = self.devices.get(cp_id) if isinstance(cp_id, str) else None
        if dev is None:
            raise ValueError(
                f"charge_point_id = {cp_id!r}: no such charger; enrolled: {', '.join(sorted(self.devices)) or 'none'}"
            )
        location = fw.check_location(params.get("location"))
        retrieve = params.get("retrieve_at") or None
        retrieve_ts = None
        if retrieve is not None:
            retrieve_ts = pf.parse_iso(retrieve) if isinstance(retrieve, str) else None
            if retrieve_ts is None:
                raise ValueError(
                    f"retrieve_at = {retrieve!r}: must be an ISO 8601 date-time with a zone, e.g. 2026-07-01T02:00:00Z"
                )
        numbers: dict[str, int | None] = {}
        for key, low, high in (("retries", 0, 10), ("retry_interval_s", 1, 86400)):
            value = params.get(key)
            if value is None:
                numbers[key] = None
            elif isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
                numbers[key] = value
            else:
                raise ValueError(f"{key} = {value!r}: must be a whole number {low}-{high}")
        texts = {}
        for key in ("version", "signature", "signing_certificate"):
            value = params.get(key) or ""
            if not isinstance(value, str):
                raise ValueError(f"{key} must be text")
            texts[key] = value.strip()
        if dev.conn is None:
            raise ValueError(f"charger {cp_id!r} is not connected; it must be online to take UpdateFirmware")
        try:
            return await dev.update_firmware(
                location,
                retrieve_ts=retrieve_ts,
                retries=numbers["retries"],
                retry_interval_s=numbers["retry_interval_s"],
                signature=texts["signature"] or None,
                signing_certificate=texts["signing_certificate"] or None,
                target_version=texts["version"],
            )
        except CommandError as exc:
            raise ValueError(str(exc)) from exc

    def _load_enrolled(self) -> list[ChargerConfig]:
        if self.ctx.store is None:
            return list(self.enrolled.values())
        out = []
        for entry in self.ctx.store.kv_get(enrol.KV_CHARGERS, []) or []:
            try:
                out.append(enrol.from_entry(entry))
            except ValueError as exc:
                log.error("ignoring a stored charger: %s", exc)
        return out

    def _save_enrolled(self) -> None:
        if self.ctx.store is None:
            log.warning("no store: the enrolled charger is forgotten at restart")
            return
        self.ctx.store.kv_set(enrol.KV_CHARGERS, [enrol.to_entry(c) for c in self.enrolled.values()])

    def _remember_unknown(self, cp_id: str, request: web.Request) -> None:
        now = self.ctx.clock.now()
        seen = self.waiting.pop(cp_id, None) or {"first_seen_ts": now, "attempts": 0}
        seen.update(last_seen_ts=now, attempts=seen["attempts"] + 1, remote=request.remote or "")
        self.waiting[cp_id] = seen  # most recent last
        while len(self.waiting) > enrol.MAX_WAITING:
            self.waiting.pop(next(iter(self.waiting)))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        cp_id = request.match_info["cp_id"]
        dev = self.devices.get(cp_id)
        if dev is None:
            if config.CP_ID_RE.fullmatch(cp_id):
                self._remember_unknown(cp_id, request)
            return self._refuse(
                cp_id,
                404,
                'unknown charge point: enrol it on the gateway\'s Devices page (or [[devices]] type = "ocpp")',
            )
        if self.settings.security_profile >= 1 and not self._authorized(request, dev):
            return self._refuse(
                cp_id,
                401,
                "wrong or missing basic auth credentials",
                {"WWW-Authenticate": 'Basic realm="hems-ocpp"'},
            )
        offered = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        ]
        chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
        ws = web.WebSocketResponse(
            protocols=(chosen,) if chosen else (),
            heartbeat=60.0,
            max_msg_size=MAX_MESSAGE_BYTES,
            autoping=True,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="OCPP-J needs a websocket upgrade")
        await ws.prepare(request)
        if chosen is None:
            log.warning(
                "charge point %s offered no supported OCPP subprotocol (%s)", cp_id, offered or "none"
            )
            await ws.close(code=1002, message=b"no supported OCPP subprotocol")
            return ws
        version = SUBPROTOCOLS[chosen]
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        conn = CONNECTIONS[version](
            cp_id, WSConnection(ws), response_timeout=self.settings.response_timeout_s, logger=WIRE_LOG
        )
        conn.setup_connection(dev, conn._connection)
        dev.attach(conn, version)
        try:
            await conn.start()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("charger %s: connection handler failed", cp_id)
        finally:
            conn.closed.set()
            dev.detach(conn)
            if not ws.closed:
                await ws.close()
            if task is not None:
                self._handlers.discard(task)
        return ws


def create(ctx: IntegrationContext) -> OcppIntegration:
    return OcppIntegration(ctx)
