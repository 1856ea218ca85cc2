"""A simulated OCPP charge point (1.6J, 2.0.1 or 2.1) on the ``ocpp`` library's charge-point side.

It is driven by the simulated home (``hems.livesim.LiveSimHome``, or ``ToyEV`` in tests and the benchmark):
when the physics says the EV is home it plugs in, authorizes its id tag, runs a transaction, charges at the
limit of its active charging profiles (never above it: the limit becomes the physics' ``ev_power_limit_w``),
reports MeterValues with energy, power, current and the EV's SoC, and ends the transaction when the EV leaves.
It keeps its transaction over a lost connection, reconnects with backoff and sends what it could not send.
Told to UpdateFirmware, it downloads the file over HTTP at the retrieve time (with the retries asked), checks it
(the 2.x signature when one is given, then its ``SIMCHARGER-FW <version>`` header), reports every step with
FirmwareStatusNotification, ends a running session, reboots and boots with the new ``firmwareVersion``.

``hems sim ocpp --url ws://127.0.0.1:9000/ocpp/ID --version 2.0.1 [--password PW]`` runs one standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import ssl as ssl_mod
import uuid
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
from ocpp import v16, v21, v201
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16

from hems.home import EVParams

from . import firmware as fw
from . import profiles as pf
from .rpc import (
    VERSION_SUBPROTOCOL,
    ConnectionClosed,
    RpcMixin,
    WSConnection,
    basic_auth_header,
    call_until_closed,
)

log = logging.getLogger("integrations.ocpp.sim")
WIRE_LOG = logging.getLogger("integrations.ocpp.sim.wire")
if WIRE_LOG.level == logging.NOTSET:
    WIRE_LOG.setLevel(logging.WARNING)

CONNECTOR = 1  # one connector (1.6) / EVSE 1 with connector 1 (2.x)
MAX_STACK_LEVEL = 8


# -- a small EV for tests and the benchmark ------------------------------------------------------------------


@dataclass
class ToyStep:
    ts: float
    dt_s: float
    ev_plugged: bool
    ev_soc_pct: float
    ev_power_w: float


class ToyEV:
    """An EV behind the charger with the same surface as ``LiveSimHome`` for what a charger needs (``last``,
    ``params.ev``, ``controls``, ``set_controls``, ``on_step``), stepped on its own clock; ``plug()`` and
    ``unplug()`` play arrival and departure. Charging follows hems.sim's EV: below the J1772 minimum
    nothing flows, the car stops when full."""

    def __init__(
        self,
        clock,
        params: EVParams | None = None,
        *,
        soc_pct: float = 50.0,
        plugged: bool = False,
        tick_s: float = 0.05,
    ) -> None:
        self.clock = clock
        self.params = SimpleNamespace(ev=params or EVParams())
        self.controls = SimpleNamespace(ev_power_limit_w=None)
        self.tick_s = tick_s
        self.soc_wh = self.params.ev.capacity_wh * soc_pct / 100.0
        self.plugged = plugged
        self._now = clock.now()
        self.last = ToyStep(self._now, 0.0, plugged, soc_pct, 0.0)
        self._listeners: list = []
        self._task: asyncio.Task | None = None

    def set_controls(self, **changes) -> None:
        for key, value in changes.items():
            setattr(self.controls, key, value)

    def on_step(self, callback) -> None:
        self._listeners.append(callback)

    def plug(self, soc_pct: float | None = None) -> None:
        if soc_pct is not None:
            self.soc_wh = self.params.ev.capacity_wh * soc_pct / 100.0
        self.plugged = True

    def unplug(self) -> None:
        self.plugged = False

    def step_to(self, ts: float) -> ToyStep:
        dt = max(ts - self._now, 0.0)
        p = self.params.ev
        limit = self.controls.ev_power_limit_w
        w = 0.0
        if self.plugged and dt > 0:
            w = (
                p.charger_max_w
                if limit is None
                else (0.0 if limit < p.charger_min_w else min(limit, p.charger_max_w))
            )
            room_w = (p.capacity_wh - self.soc_wh) / (p.charge_efficiency * dt / 3600.0)
            w = max(0.0, min(w, room_w))
            self.soc_wh += w * p.charge_efficiency * dt / 3600.0
        self._now = ts
        self.last = ToyStep(ts, dt, self.plugged, 100.0 * self.soc_wh / p.capacity_wh, w)
        for callback in self._listeners:
            callback(self.last)
        return self.last

    async def _run(self) -> None:
        while True:
            self.step_to(self.clock.now())
            await asyncio.sleep(self.tick_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="toy-ev")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


# -- the charge point -------------------------------------------------------------------------------------------


@dataclass
class SimTx:
    id: Any  # int (1.6) or str (2.x)
    start_ts: float
    meter_start_wh: float
    id_tag: str
    authorized: bool = True
    seq: int = 0
    remote_start_id: int | None = None


@dataclass
class Event:
    kind: str
    ts: float
    args: dict = field(default_factory=dict)
    offline: bool = False


class SimChargePoint:
    """One simulated charge point with one connector, connected to ``url`` (``.../ocpp/<id>``)."""

    def __init__(
        self,
        url: str,
        version: str = "2.0.1",
        *,
        ev: Any,
        clock: Any,
        password: str | None = None,
        ssl: ssl_mod.SSLContext | None = None,
        id_tag: str = "SIMTAG01",
        max_power_w: float | None = None,
        voltage_v: float = 240.0,
        phases: int = 1,
        rate_units: tuple[str, ...] = ("A", "W"),
        vendor: str = "HEMS",
        model: str = "SimCharger",
        firmware_version: str = "1.0.0",
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 5.0,
        response_timeout_s: float = 10.0,
    ) -> None:
        if version not in VERSION_SUBPROTOCOL:
            raise ValueError(f"OCPP version must be one of {', '.join(VERSION_SUBPROTOCOL)}, got {version!r}")
        self.url = url
        self.version = version
        self.cp_id = url.rstrip("/").rsplit("/", 1)[-1]
        self.ev = ev
        self.clock = clock
        self.password = password
        self.ssl = ssl
        self.id_tag = id_tag
        self.max_power_w = float(max_power_w if max_power_w is not None else ev.params.ev.charger_max_w)
        self.voltage_v = voltage_v
        self.phases = phases
        self.rate_units = rate_units
        self.vendor, self.model = vendor, model
        self.firmware_version = firmware_version
        self.firmware_statuses: list[str] = []  # every FirmwareStatusNotification sent, in order
        self.firmware_downloads: list[dict[str, Any]] = []  # each download attempt: url, http status, bytes
        self._firmware_task: asyncio.Task | None = None
        self._firmware_pending: str | None = None  # the version it boots into at the next reboot
        self._firmware_installed = False  # send Installed after the next boot
        self._firmware_request_id: int | None = None
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.response_timeout_s = response_timeout_s
        # state
        self.energy_wh = 0.0  # the meter register
        self.power_w = 0.0
        self.soc_pct: float | None = None
        self.plugged = False
        self.available = True
        self._unavailable_after_tx = False
        self.tx: SimTx | None = None
        self.finished: list[SimTx] = []
        self._after_tx = False  # a session ended while the EV is still plugged in (1.6 "Finishing")
        self.profiles: list[pf.Profile] = []
        self.limit_w = 0.0
        self._step_limit_w = 0.0
        self.reject_profiles = False  # tests: answer every SetChargingProfile with Rejected
        self.heartbeat_s = 300.0
        self.meter_interval_s = 60.0
        self.config16 = {
            "MeterValueSampleInterval": ["60", False],
            "MeterValuesSampledData": ["Energy.Active.Import.Register,Power.Active.Import", False],
            "HeartbeatInterval": ["300", False],
            "ChargingScheduleAllowedChargingRateUnit": [
                ",".join({"A": "Current", "W": "Power"}[u] for u in rate_units),
                True,
            ],
            "ChargeProfileMaxStackLevel": [str(MAX_STACK_LEVEL), True],
            "AuthorizeRemoteTxRequests": ["false", False],
            "NumberOfConnectors": ["1", True],
        }
        self.variables = {
            ("SampledDataCtrlr", "TxUpdatedInterval"): ["60", False],
            ("SampledDataCtrlr", "TxUpdatedMeasurands"): [
                "Energy.Active.Import.Register,Power.Active.Import",
                False,
            ],
            ("OCPPCommCtrlr", "HeartbeatInterval"): ["300", False],
            ("SmartChargingCtrlr", "RateUnit"): [",".join(rate_units), True],
            ("SmartChargingCtrlr", "Enabled"): ["true", True],
        }
        self.boots = 0
        self.connects = 0
        self.conn: Any = None
        self.online = asyncio.Event()  # connected and booted: messages may flow
        self._need_boot = True
        self._reported: str | None = None  # last status sent
        self._events: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stopped = False
        self._offline_since: float | None = clock.now()
        self._session: aiohttp.ClientSession | None = None
        ev.on_step(self._on_step)

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._tasks = [
            asyncio.create_task(self._connect_loop(), name=f"ocpp-sim-{self.cp_id}-connect"),
            asyncio.create_task(self._worker(), name=f"ocpp-sim-{self.cp_id}-worker"),
            asyncio.create_task(self._meter_loop(), name=f"ocpp-sim-{self.cp_id}-meter"),
            asyncio.create_task(self._heartbeat_loop(), name=f"ocpp-sim-{self.cp_id}-heartbeat"),
        ]
        self._on_step(self.ev.last)

    async def stop(self) -> None:
        self._stopped = True
        if self._firmware_task is not None:
            self._firmware_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._firmware_task
        if self.conn is not None:
            await self.conn._connection.close(1001, "charge point stopping")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drop_connection(self) -> None:
        """Tests: lose the connection (the charge point reconnects by itself, without rebooting)."""
        if self.conn is not None:
            await self.conn._connection.close(1001, "simulated network loss")

    # -- the physics ---------------------------------------------------------------------------------------
    def _on_step(self, r: Any) -> None:
        if self._stopped:
            return
        self.energy_wh += max(float(r.ev_power_w), 0.0) * float(r.dt_s) / 3600.0
        self.power_w = float(r.ev_power_w)
        self._step_limit_w = self.limit_w  # the limit this step's power was drawn under
        self.soc_pct = float(r.ev_soc_pct) if r.ev_plugged else None
        if bool(r.ev_plugged) != self.plugged:
            self.plugged = bool(r.ev_plugged)
            if not self.plugged:
                self._after_tx = False
            self._post("plug" if self.plugged else "unplug")
        self.update_limit()
        if self.tx is not None and self.status() != self._reported:
            self._post_once("status")

    def update_limit(self) -> float:
        """What the EV may draw now: 0 without an authorized transaction, else the composite limit."""
        now = self.clock.now()
        tx = self.tx
        if tx is None or not tx.authorized or not self.available:
            limit = 0.0
        else:
            offline = now - self._offline_since if self._offline_since is not None else 0.0
            profiles = [p for p in self.profiles if p.max_offline_s is None or offline <= p.max_offline_s]
            got = pf.composite_limit_w(
                profiles,
                now,
                CONNECTOR,
                transaction_id=str(tx.id),
                tx_start=tx.start_ts,
                voltage_v=self.voltage_v,
                phases=self.phases,
            )
            limit = self.max_power_w if got is None else max(0.0, min(got, self.max_power_w))
        self.limit_w = limit
        self.ev.set_controls(ev_power_limit_w=limit)
        return limit

    def status(self) -> str:
        """The connector's status in 1.6 terms (2.x maps it to connector status and charging state)."""
        if not self.available:
            return "Unavailable"
        if not self.plugged:
            return "Available"
        if self.tx is None:
            return "Finishing" if self._after_tx else "Preparing"
        if not self.tx.authorized:
            return "Preparing"
        if self.limit_w <= 0 or self.limit_w < self.ev.params.ev.charger_min_w:
            return "SuspendedEVSE"
        if self.power_w < 1.0 and self._step_limit_w >= self.ev.params.ev.charger_min_w:
            return "SuspendedEV"  # offered enough, the EV takes nothing: full
        return "Charging"

    # -- events, sent in order when online ----------------------------------------------------------------------
    def _post(self, kind: str, **args) -> None:
        self._events.append(Event(kind, self.clock.now(), args, offline=not self.online.is_set()))
        self._wake.set()

    def _post_once(self, kind: str) -> None:
        if not any(e.kind == kind for e in self._events):
            self._post(kind)

    async def _worker(self) -> None:
        while True:
            while not self._events:
                self._wake.clear()
                await self._wake.wait()
            await self.online.wait()
            event = self._events[0]
            try:
                await self._handle_event(event)
            except (ConnectionClosed, TimeoutError):
                await asyncio.sleep(0.01)  # keep the event; it goes out after the reconnect
                continue
            except Exception:
                log.exception("simulated charge point %s: %s failed", self.cp_id, event.kind)
            if self._events and self._events[0] is event:
                self._events.popleft()

    async def request(self, payload: Any) -> Any:
        conn = self.conn
        if conn is None:
            raise ConnectionClosed("not connected")
        try:
            return await call_until_closed(conn, payload, conn.closed)
        except OCPPError as exc:
            log.warning(
                "simulated charge point %s: %s answered with %s", self.cp_id, type(payload).__name__, exc
            )
            return None

    async def _handle_event(self, event: Event) -> None:
        impl = self.conn
        if impl is None:
            raise ConnectionClosed("not connected")
        handler = getattr(impl, f"ev_{event.kind}", None)
        if handler is not None:
            await handler(event)

    # -- connection ---------------------------------------------------------------------------------------------
    async def _connect_loop(self) -> None:
        delay = self.reconnect_min_s
        headers = {"Authorization": basic_auth_header(self.cp_id, self.password)} if self.password else None
        while not self._stopped:
            try:
                assert self._session is not None
                async with self._session.ws_connect(
                    self.url,
                    protocols=(VERSION_SUBPROTOCOL[self.version],),
                    headers=headers,
                    ssl=self.ssl if self.ssl is not None else True,
                    autoping=True,
                    heartbeat=None,
                ) as ws:
                    if ws.protocol != VERSION_SUBPROTOCOL[self.version]:
                        log.error(
                            "simulated charge point %s: CSMS did not accept %s", self.cp_id, self.version
                        )
                    else:
                        delay = self.reconnect_min_s
                        await self._serve(ws)
            except aiohttp.WSServerHandshakeError as exc:
                log.warning(
                    "simulated charge point %s: CSMS refused the connection: %s", self.cp_id, exc.status
                )
            except (aiohttp.ClientError, OSError, ConnectionClosed, TimeoutError) as exc:
                log.debug("simulated charge point %s: connection failed: %s", self.cp_id, exc)
            if self._stopped:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        impl = SIM_CONNECTIONS[self.version](
            self.cp_id, WSConnection(ws), response_timeout=self.response_timeout_s, logger=WIRE_LOG
        )
        impl.sim = self
        impl.closed = asyncio.Event()
        self.conn = impl
        self.connects += 1
        reader = asyncio.create_task(impl.start())
        try:
            if self._need_boot:
                while True:  # BootNotification until Accepted (Pending/Rejected: try again later)
                    if await impl.boot():
                        break
                    await asyncio.sleep(min(self.heartbeat_s, 5.0))
                self._need_boot = False
                self.boots += 1
                if self._firmware_installed:  # booted into the new firmware
                    self._firmware_installed = False
                    self._firmware_status("Installed")
            self._offline_since = None
            await impl.report_status(force=True)
            self.online.set()
            self._wake.set()
            await reader
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            self.online.clear()
            self._offline_since = self.clock.now()
            impl.closed.set()
            self.conn = None
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, Exception):
                await reader
            if not ws.closed:
                await ws.close()

    async def _every(self, interval: Any, action: Any) -> None:
        """Call ``action()`` every ``interval()`` seconds of clock time (the interval may change meanwhile)."""
        last = self.clock.now()
        while True:
            await self.clock.sleep(min(interval(), 1.0))
            now = self.clock.now()
            if now - last >= interval() - 1e-6:
                last = now
                await action()

    async def _meter_loop(self) -> None:
        async def meter() -> None:
            if self.tx is not None and self.online.is_set():
                self._post_once("meter")

        await self._every(lambda: self.meter_interval_s, meter)

    async def _heartbeat_loop(self) -> None:
        async def beat() -> None:
            conn = self.conn
            if conn is not None and self.online.is_set():
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    await self.request(conn._call.Heartbeat())

        await self._every(lambda: self.heartbeat_s, beat)

    # -- charging profiles (the same rules for every version) ------------------------------------------------------
    def accept_profile(self, profile: pf.Profile) -> str:
        if self.reject_profiles:
            return "Rejected"
        if (
            profile.unit not in self.rate_units
            or profile.stack_level > MAX_STACK_LEVEL
            or not profile.periods
        ):
            return "Rejected"
        if profile.is_max and profile.connector != 0:
            return "Rejected"
        if profile.purpose == pf.TX:
            if profile.connector == 0 or self.tx is None:
                return "Rejected"
            if profile.transaction_id is not None and profile.transaction_id != str(self.tx.id):
                return "Rejected"
            if self.version != "1.6" and profile.transaction_id is None:
                return "Rejected"
        self.profiles = pf.store_profile(self.profiles, profile)
        self.update_limit()
        return "Accepted"

    def clear(self, **criteria) -> str:
        self.profiles, removed = pf.clear_profiles(self.profiles, **criteria)
        self.update_limit()
        return "Accepted" if removed else "Unknown"

    def composite(self, duration_s: int, unit: str | None) -> tuple[str, list[tuple[int, float]]]:
        unit = unit or self.rate_units[0]
        tx = self.tx
        periods = pf.composite_schedule(
            self.profiles,
            self.clock.now(),
            float(duration_s),
            CONNECTOR,
            transaction_id=str(tx.id) if tx else None,
            tx_start=tx.start_ts if tx else None,
            voltage_v=self.voltage_v,
            phases=self.phases,
            max_w=self.max_power_w,
            unit=unit,
        )
        return unit, periods

    def end_transaction(self) -> SimTx | None:
        tx, self.tx = self.tx, None
        if tx is not None:
            self.finished.append(tx)
            self._after_tx = self.plugged
            self.profiles = [p for p in self.profiles if p.purpose != pf.TX]
            if self._unavailable_after_tx:
                self.available, self._unavailable_after_tx = False, False
        self.update_limit()
        return tx

    # -- firmware ------------------------------------------------------------------------------------------------
    def update_firmware(
        self,
        location: str,
        retrieve_ts: float,
        *,
        retries: int | None = None,
        retry_interval_s: int | None = None,
        request_id: int | None = None,
        signature: str | None = None,
        signing_certificate: str | None = None,
    ) -> str:
        """Start an update (UpdateFirmware); returns Accepted, or AcceptedCanceled when one was running."""
        status = "Accepted"
        if self._firmware_task is not None and not self._firmware_task.done():
            self._firmware_task.cancel()
            status = "AcceptedCanceled"
        self._firmware_request_id = request_id
        self._firmware_task = asyncio.create_task(
            self._firmware(location, retrieve_ts, retries, retry_interval_s, signature, signing_certificate),
            name=f"ocpp-sim-{self.cp_id}-firmware",
        )
        return status

    def _firmware_status(self, status: str) -> None:
        self.firmware_statuses.append(status)
        self._post("firmware", status=status, request_id=self._firmware_request_id)

    async def _firmware(
        self, location, retrieve_ts, retries, retry_interval_s, signature, certificate
    ) -> None:
        wait_s = retrieve_ts - self.clock.now()
        if wait_s > 0:
            if self.version != "1.6":
                self._firmware_status("DownloadScheduled")
            await self.clock.sleep(wait_s)
        data = None
        attempts = 1 + max(retries or 0, 0)
        for attempt in range(attempts):
            self._firmware_status("Downloading")
            data = await self._download(location)
            if data is not None:
                break
            if attempt + 1 < attempts:
                await self.clock.sleep(float(retry_interval_s or 30))
        if data is None:
            self._firmware_status("DownloadFailed")
            return
        self._firmware_status("Downloaded")
        if signature and self.version != "1.6":
            if not certificate or not fw.verify_signature(data, signature, certificate):
                self._firmware_status("InvalidSignature")
                return
            self._firmware_status("SignatureVerified")
        try:
            version = fw.sim_firmware_version(data)
        except ValueError as exc:
            log.warning("simulated charge point %s: %s", self.cp_id, exc)
            self._firmware_status(
                "InstallVerificationFailed" if self.version != "1.6" else "InstallationFailed"
            )
            return
        self._firmware_status("Installing")
        if self.tx is not None:
            self._post("stop", reason="Reboot")
        if self.version != "1.6":
            self._firmware_status("InstallRebooting")
        self._firmware_pending = version
        self._post("reboot")

    async def _download(self, url: str) -> bytes | None:
        record: dict[str, Any] = {"url": url, "status": None, "size_bytes": 0}
        self.firmware_downloads.append(record)
        try:
            assert self._session is not None
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as rsp:
                record["status"] = rsp.status
                if rsp.status != 200:
                    return None
                data = await rsp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            record["error"] = str(exc) or type(exc).__name__
            return None
        record["size_bytes"] = len(data)
        return data

    def _reboot_into_firmware(self) -> None:
        """At a reboot: a downloaded and checked image becomes the running firmware."""
        if self._firmware_pending is not None:
            self.firmware_version, self._firmware_pending = self._firmware_pending, None
            self._firmware_installed = True

    def reboot_soon(self) -> None:
        """After a Reset: end the session, close the connection, boot again."""

        async def reboot() -> None:
            await asyncio.sleep(0.05)  # let the Reset answer go out
            if self.tx is not None:
                self._post("stop", reason="reset")
            self._post("reboot")

        task = asyncio.create_task(reboot())
        self._tasks.append(task)


def _profile_from(raw: dict, connector: int, received: float, version: str) -> pf.Profile:
    """A received chargingProfile (snake-case keys, as the library hands them over) as a Profile."""
    sched = raw.get("charging_schedule")
    if isinstance(sched, list):  # 2.x: one to three schedules; the first is used
        sched = sched[0] if sched else {}
    sched = sched or {}
    periods = [
        (float(p.get("start_period", 0)), float(p.get("limit", 0.0)), p.get("number_phases"))
        for p in sched.get("charging_schedule_period") or []
    ]
    tx_id = raw.get("transaction_id")
    return pf.Profile(
        id=int(raw.get("charging_profile_id", raw.get("id", 0))),
        connector=int(connector),
        purpose=str(raw.get("charging_profile_purpose")),
        stack_level=int(raw.get("stack_level", 0)),
        kind=str(raw.get("charging_profile_kind", "Absolute")),
        unit=str(sched.get("charging_rate_unit", "A")),
        periods=periods,
        start_schedule=pf.parse_iso(sched.get("start_schedule")),
        duration_s=float(sched["duration"]) if sched.get("duration") is not None else None,
        recurrency=raw.get("recurrency_kind"),
        valid_from=pf.parse_iso(raw.get("valid_from")),
        valid_to=pf.parse_iso(raw.get("valid_to")),
        transaction_id=None if tx_id is None else str(tx_id),
        received_ts=received,
        max_offline_s=float(raw["max_offline_duration"])
        if raw.get("max_offline_duration") is not None
        else None,
    )


# -- the charge point's OCPP connections ---------------------------------------------------------------------


class _SimConn(RpcMixin):
    sim: SimChargePoint
    closed: asyncio.Event

    def on_bad_frame(self, raw: str, problem: str) -> None:
        log.warning("simulated charge point %s got a bad frame from the CSMS (%s)", self.id, problem)

    def now_iso(self) -> str:
        return pf.iso(self.sim.clock.now())


class SimConnV16(_SimConn, v16.ChargePoint):
    async def boot(self) -> bool:
        sim = self.sim
        result = await sim.request(
            call16.BootNotification(
                charge_point_model=sim.model,
                charge_point_vendor=sim.vendor,
                firmware_version=sim.firmware_version,
            )
        )
        if result is None or result.status != "Accepted":
            return False
        sim.heartbeat_s = float(result.interval or sim.heartbeat_s)
        await sim.request(call16.StatusNotification(connector_id=0, error_code="NoError", status="Available"))
        return True

    async def report_status(self, force: bool = False) -> None:
        sim = self.sim
        status = sim.status()
        if force or status != sim._reported:
            sim._reported = status
            await sim.request(
                call16.StatusNotification(
                    connector_id=CONNECTOR, error_code="NoError", status=status, timestamp=self.now_iso()
                )
            )

    def _meter_value(self, ts: float, context: str = "Sample.Periodic") -> list[dict]:
        sim = self.sim
        values = [
            {
                "value": f"{sim.energy_wh:.1f}",
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
            },
            {
                "value": f"{sim.power_w:.1f}",
                "context": context,
                "measurand": "Power.Active.Import",
                "unit": "W",
            },
            {
                "value": f"{sim.power_w / (sim.voltage_v * sim.phases):.2f}",
                "context": context,
                "measurand": "Current.Import",
                "phase": "L1",
                "unit": "A",
            },
        ]
        if sim.soc_pct is not None:
            values.append(
                {
                    "value": f"{sim.soc_pct:.1f}",
                    "context": context,
                    "measurand": "SoC",
                    "location": "EV",
                    "unit": "Percent",
                }
            )
        return [{"timestamp": pf.iso(ts), "sampledValue": values}]

    # events
    async def ev_plug(self, event: Event) -> None:
        await self.report_status()
        sim = self.sim
        if sim.tx is None and sim.plugged and sim.available:
            result = await sim.request(call16.Authorize(id_tag=sim.id_tag))
            if result is None or result.id_tag_info.get("status") != "Accepted":
                log.info("simulated charge point %s: id tag %s not accepted", self.id, sim.id_tag)
                return
            await self._start(sim.id_tag, event.ts)

    async def _start(self, id_tag: str, ts: float) -> None:
        sim = self.sim
        meter = sim.energy_wh
        result = await sim.request(
            call16.StartTransaction(
                connector_id=CONNECTOR, id_tag=id_tag, meter_start=int(round(meter)), timestamp=pf.iso(ts)
            )
        )
        if result is None:
            return
        tx = SimTx(result.transaction_id, ts, meter, id_tag, result.id_tag_info.get("status") == "Accepted")
        sim.tx = tx
        sim.update_limit()
        if not tx.authorized:
            self.sim._post("stop", reason="DeAuthorized")
        await self.report_status()

    async def ev_remote_start(self, event: Event) -> None:
        if self.sim.tx is None and self.sim.plugged:
            await self._start(event.args["id_tag"], event.ts)

    async def ev_unplug(self, event: Event) -> None:
        if self.sim.tx is not None:
            await self._stop(event.ts, "EVDisconnected")
        await self.report_status()

    async def ev_stop(self, event: Event) -> None:
        reason = {"reset": "SoftReset"}.get(event.args.get("reason", ""), event.args.get("reason", "Local"))
        if self.sim.tx is not None:
            await self._stop(event.ts, reason)
        await self.report_status()

    async def _stop(self, ts: float, reason: str) -> None:
        sim = self.sim
        tx = sim.tx
        await sim.request(
            call16.StopTransaction(
                meter_stop=int(round(sim.energy_wh)),
                timestamp=pf.iso(ts),
                transaction_id=tx.id,
                reason=reason,
                transaction_data=self._meter_value(ts, "Transaction.End"),
            )
        )
        sim.end_transaction()

    async def ev_status(self, event: Event) -> None:
        await self.report_status()

    async def ev_meter(self, event: Event) -> None:
        sim = self.sim
        if sim.tx is not None:
            await sim.request(
                call16.MeterValues(
                    connector_id=CONNECTOR, transaction_id=sim.tx.id, meter_value=self._meter_value(event.ts)
                )
            )

    async def ev_heartbeat(self, event: Event) -> None:
        await self.sim.request(call16.Heartbeat())

    async def ev_reboot(self, event: Event) -> None:
        self.sim._need_boot = True
        self.sim._reboot_into_firmware()
        await self._connection.close(1000, "rebooting")

    async def ev_firmware(self, event: Event) -> None:
        await self.sim.request(call16.FirmwareStatusNotification(status=event.args["status"]))

    # CSMS → charge point
    @on("SetChargingProfile")
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict, **kw):
        profile = _profile_from(cs_charging_profiles, connector_id, self.sim.clock.now(), "1.6")
        return result16.SetChargingProfile(status=self.sim.accept_profile(profile))

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, **kw):
        status = self.sim.clear(
            profile_id=kw.get("id"),
            connector=kw.get("connector_id"),
            purpose=kw.get("charging_profile_purpose"),
            stack_level=kw.get("stack_level"),
        )
        return result16.ClearChargingProfile(status=status)

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(self, connector_id: int, duration: int, **kw):
        unit = kw.get("charging_rate_unit")
        if unit is not None and unit not in self.sim.rate_units:
            return result16.GetCompositeSchedule(status="Rejected")
        unit, periods = self.sim.composite(duration, unit)
        return result16.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=self.now_iso(),
            charging_schedule={
                "duration": int(duration),
                "startSchedule": self.now_iso(),
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in periods],
            },
        )

    @on("RemoteStartTransaction")
    def on_remote_start_transaction(self, id_tag: str, **kw):
        sim = self.sim
        if sim.tx is not None or not sim.plugged or not sim.available:
            return result16.RemoteStartTransaction(status="Rejected")
        sim._post("remote_start", id_tag=id_tag)
        return result16.RemoteStartTransaction(status="Accepted")

    @on("RemoteStopTransaction")
    def on_remote_stop_transaction(self, transaction_id: int, **kw):
        sim = self.sim
        if sim.tx is None or sim.tx.id != transaction_id:
            return result16.RemoteStopTransaction(status="Rejected")
        sim._post("stop", reason="Remote")
        return result16.RemoteStopTransaction(status="Accepted")

    @on("ChangeAvailability")
    def on_change_availability(self, connector_id: int, type: str, **kw):
        sim = self.sim
        if type == "Inoperative" and sim.tx is not None:
            sim._unavailable_after_tx = True
            return result16.ChangeAvailability(status="Scheduled")
        sim.available = type == "Operative"
        sim._unavailable_after_tx = False
        sim.update_limit()
        sim._post("status")
        return result16.ChangeAvailability(status="Accepted")

    @on("Reset")
    def on_reset(self, type: str, **kw):
        self.sim.reboot_soon()
        return result16.Reset(status="Accepted")

    @on("UpdateFirmware")
    def on_update_firmware(self, location: str, retrieve_date: str, **kw):
        retrieve = pf.parse_iso(retrieve_date) or self.sim.clock.now()
        self.sim.update_firmware(
            location, retrieve, retries=kw.get("retries"), retry_interval_s=kw.get("retry_interval")
        )
        return result16.UpdateFirmware()

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str, **kw):
        sim = self.sim
        entry = sim.config16.get(key)
        if entry is None:
            return result16.ChangeConfiguration(status="NotSupported")
        if entry[1]:
            return result16.ChangeConfiguration(status="Rejected")
        entry[0] = value
        if key == "MeterValueSampleInterval":
            sim.meter_interval_s = max(float(value), 1.0)
        elif key == "HeartbeatInterval":
            sim.heartbeat_s = max(float(value), 1.0)
        return result16.ChangeConfiguration(status="Accepted")

    @on("GetConfiguration")
    def on_get_configuration(self, **kw):
        keys = kw.get("key") or list(self.sim.config16)
        known = [
            {"key": k, "readonly": self.sim.config16[k][1], "value": self.sim.config16[k][0]}
            for k in keys
            if k in self.sim.config16
        ]
        unknown = [k for k in keys if k not in self.sim.config16]
        return result16.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, **kw):
        kinds = {"MeterValues": "meter", "StatusNotification": "status", "Heartbeat": "heartbeat"}
        if requested_message not in kinds:
            return result16.TriggerMessage(status="NotImplemented")
        if requested_message == "StatusNotification":
            self.sim._reported = None
        self.sim._post(kinds[requested_message])
        return result16.TriggerMessage(status="Accepted")

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **kw):
        return result16.DataTransfer(status="UnknownVendorId")


class _SimConnV2(_SimConn):
    """OCPP 2.0.1 / 2.1 charge point: connector status + TransactionEvent."""

    _call: Any
    _call_result: Any

    async def boot(self) -> bool:
        sim = self.sim
        reason = "RemoteReset" if sim.boots else "PowerUp"
        if sim._firmware_installed:
            reason = "FirmwareUpdate"
        result = await sim.request(
            self._call.BootNotification(
                charging_station={
                    "model": sim.model,
                    "vendorName": sim.vendor,
                    "firmwareVersion": sim.firmware_version,
                },
                reason=reason,
            )
        )
        if result is None or result.status != "Accepted":
            return False
        sim.heartbeat_s = float(result.interval or sim.heartbeat_s)
        return True

    def connector_status(self) -> str:
        status = self.sim.status()
        return {"Unavailable": "Unavailable", "Available": "Available"}.get(status, "Occupied")

    def charging_state(self) -> str:
        status = self.sim.status()
        return {
            "Available": "Idle",
            "Unavailable": "Idle",
            "Preparing": "EVConnected",
            "Finishing": "EVConnected",
        }.get(status, status)

    async def report_status(self, force: bool = False) -> None:
        sim = self.sim
        status = self.connector_status()
        if force or status != getattr(self, "_connector_reported", None):
            self._connector_reported = status
            await sim.request(
                self._call.StatusNotification(
                    timestamp=self.now_iso(),
                    connector_status=status,
                    evse_id=CONNECTOR,
                    connector_id=CONNECTOR,
                )
            )
        sim._reported = sim.status()

    def _meter_value(self, ts: float, context: str = "Sample.Periodic") -> list[dict]:
        sim = self.sim
        values = [
            {
                "value": round(sim.energy_wh, 1),
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "unitOfMeasure": {"unit": "Wh"},
            },
            {
                "value": round(sim.power_w, 1),
                "context": context,
                "measurand": "Power.Active.Import",
                "unitOfMeasure": {"unit": "W"},
            },
            {
                "value": round(sim.power_w / (sim.voltage_v * sim.phases), 2),
                "context": context,
                "measurand": "Current.Import",
                "phase": "L1",
                "unitOfMeasure": {"unit": "A"},
            },
        ]
        if sim.soc_pct is not None:
            values.append(
                {
                    "value": round(sim.soc_pct, 1),
                    "context": context,
                    "measurand": "SoC",
                    "location": "EV",
                    "unitOfMeasure": {"unit": "Percent"},
                }
            )
        return [{"timestamp": pf.iso(ts), "sampledValue": values}]

    async def _tx_event(self, event: Event, event_type: str, trigger: str, **extra) -> Any:
        sim = self.sim
        tx = sim.tx
        info: dict = {"transactionId": tx.id, "chargingState": extra.pop("state", self.charging_state())}
        if "stopped_reason" in extra:
            info["stoppedReason"] = extra.pop("stopped_reason")
        if tx.remote_start_id is not None and event_type == "Started":
            info["remoteStartId"] = tx.remote_start_id
        context = {"Started": "Transaction.Begin", "Ended": "Transaction.End"}.get(
            event_type, "Sample.Periodic"
        )
        kwargs: dict = {
            "event_type": event_type,
            "timestamp": pf.iso(event.ts),
            "trigger_reason": trigger,
            "seq_no": tx.seq,
            "transaction_info": info,
            "meter_value": self._meter_value(event.ts, context),
            "evse": {"id": CONNECTOR, "connectorId": CONNECTOR},
        }
        if event.offline:
            kwargs["offline"] = True
        kwargs.update(extra)
        tx.seq += 1
        return await sim.request(self._call.TransactionEvent(**kwargs))

    # events
    async def ev_plug(self, event: Event) -> None:
        sim = self.sim
        await self.report_status()
        if sim.tx is None and sim.plugged and sim.available:
            sim.tx = SimTx(uuid.uuid4().hex[:36], event.ts, sim.energy_wh, sim.id_tag, authorized=False)
            await self._tx_event(event, "Started", "CablePluggedIn", state="EVConnected")
        if sim.tx is not None and not sim.tx.authorized and sim.tx.remote_start_id is None:
            result = await sim.request(
                self._call.Authorize(id_token={"idToken": sim.id_tag, "type": "ISO14443"})
            )
            if result is None or result.id_token_info.get("status") != "Accepted":
                log.info("simulated charge point %s: id token %s not accepted", self.id, sim.id_tag)
                return
            await self._authorized(event, {"idToken": sim.id_tag, "type": "ISO14443"})

    async def _authorized(self, event: Event, id_token: dict) -> None:
        sim = self.sim
        sim.tx.authorized = True
        sim.tx.id_tag = id_token["idToken"]
        sim.update_limit()
        result = await self._tx_event(event, "Updated", "Authorized", id_token=id_token)
        if result is not None and result.id_token_info and result.id_token_info.get("status") != "Accepted":
            sim.tx.authorized = False
            sim._post("stop", reason="DeAuthorized")
        sim._reported = sim.status()

    async def ev_remote_start(self, event: Event) -> None:
        sim = self.sim
        token = {"idToken": event.args["id_tag"], "type": event.args.get("type", "Central")}
        if sim.tx is None and sim.plugged:
            sim.tx = SimTx(
                uuid.uuid4().hex[:36],
                event.ts,
                sim.energy_wh,
                token["idToken"],
                authorized=False,
                remote_start_id=event.args.get("remote_start_id"),
            )
            await self._tx_event(event, "Started", "RemoteStart", state="EVConnected")
        if sim.tx is not None and not sim.tx.authorized:
            await self._authorized(event, token)

    async def ev_unplug(self, event: Event) -> None:
        if self.sim.tx is not None:
            await self._stop(event, "EVCommunicationLost", "EVDisconnected", state="Idle")
        await self.report_status()

    async def ev_stop(self, event: Event) -> None:
        reason = {"reset": "ImmediateReset"}.get(
            event.args.get("reason", ""), event.args.get("reason", "Local")
        )
        trigger = {
            "Remote": "RemoteStop",
            "DeAuthorized": "Deauthorized",
            "ImmediateReset": "ResetCommand",
            "Reboot": "ResetCommand",
        }.get(reason, "StopAuthorized")
        if self.sim.tx is not None:
            await self._stop(event, trigger, reason)
        await self.report_status()

    async def _stop(self, event: Event, trigger: str, reason: str, state: str | None = None) -> None:
        extra: dict = {"stopped_reason": reason}
        if state is not None:
            extra["state"] = state
        await self._tx_event(event, "Ended", trigger, **extra)
        self.sim.end_transaction()

    async def ev_status(self, event: Event) -> None:
        sim = self.sim
        if sim.tx is not None and sim.tx.authorized and sim.status() != sim._reported:
            sim._reported = sim.status()
            await self._tx_event(event, "Updated", "ChargingStateChanged")
        await self.report_status()

    async def ev_meter(self, event: Event) -> None:
        if self.sim.tx is not None:
            await self._tx_event(event, "Updated", "MeterValuePeriodic")

    async def ev_heartbeat(self, event: Event) -> None:
        await self.sim.request(self._call.Heartbeat())

    async def ev_reboot(self, event: Event) -> None:
        self.sim._need_boot = True
        self.sim._reboot_into_firmware()
        await self._connection.close(1000, "rebooting")

    async def ev_firmware(self, event: Event) -> None:
        kwargs = {"status": event.args["status"]}
        if event.args.get("request_id") is not None:
            kwargs["request_id"] = event.args["request_id"]
        await self.sim.request(self._call.FirmwareStatusNotification(**kwargs))

    # CSMS → charge point
    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict, **kw):
        profile = _profile_from(charging_profile, evse_id, self.sim.clock.now(), self._ocpp_version)
        return self._call_result.SetChargingProfile(status=self.sim.accept_profile(profile))

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, **kw):
        criteria = kw.get("charging_profile_criteria") or {}
        status = self.sim.clear(
            profile_id=kw.get("charging_profile_id"),
            connector=criteria.get("evse_id"),
            purpose=criteria.get("charging_profile_purpose"),
            stack_level=criteria.get("stack_level"),
        )
        return self._call_result.ClearChargingProfile(status=status)

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(self, duration: int, evse_id: int, **kw):
        unit = kw.get("charging_rate_unit")
        if unit is not None and unit not in self.sim.rate_units:
            return self._call_result.GetCompositeSchedule(status="Rejected")
        unit, periods = self.sim.composite(duration, unit)
        return self._call_result.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evseId": evse_id,
                "duration": int(duration),
                "scheduleStart": self.now_iso(),
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in periods],
            },
        )

    @on("RequestStartTransaction")
    def on_request_start_transaction(self, id_token: dict, remote_start_id: int, **kw):
        sim = self.sim
        if not sim.plugged or not sim.available or (sim.tx is not None and sim.tx.authorized):
            return self._call_result.RequestStartTransaction(status="Rejected")
        sim._post(
            "remote_start",
            id_tag=id_token.get("id_token"),
            type=id_token.get("type"),
            remote_start_id=remote_start_id,
        )
        return self._call_result.RequestStartTransaction(
            status="Accepted", transaction_id=sim.tx.id if sim.tx is not None else None
        )

    @on("RequestStopTransaction")
    def on_request_stop_transaction(self, transaction_id: str, **kw):
        sim = self.sim
        if sim.tx is None or sim.tx.id != transaction_id:
            return self._call_result.RequestStopTransaction(status="Rejected")
        sim._post("stop", reason="Remote")
        return self._call_result.RequestStopTransaction(status="Accepted")

    @on("ChangeAvailability")
    def on_change_availability(self, operational_status: str, **kw):
        sim = self.sim
        if operational_status == "Inoperative" and sim.tx is not None:
            sim._unavailable_after_tx = True
            return self._call_result.ChangeAvailability(status="Scheduled")
        sim.available = operational_status == "Operative"
        sim._unavailable_after_tx = False
        sim.update_limit()
        sim._post("status")
        return self._call_result.ChangeAvailability(status="Accepted")

    @on("Reset")
    def on_reset(self, type: str, **kw):
        if type == "OnIdle" and self.sim.tx is not None:
            return self._call_result.Reset(status="Scheduled")
        self.sim.reboot_soon()
        return self._call_result.Reset(status="Accepted")

    @on("UpdateFirmware")
    def on_update_firmware(self, request_id: int, firmware: dict, **kw):
        location = firmware.get("location", "")
        retrieve = pf.parse_iso(firmware.get("retrieve_date_time")) or self.sim.clock.now()
        signature, certificate = firmware.get("signature"), firmware.get("signing_certificate")
        if signature and not certificate:
            return self._call_result.UpdateFirmware(status="InvalidCertificate")
        status = self.sim.update_firmware(
            location,
            retrieve,
            retries=kw.get("retries"),
            retry_interval_s=kw.get("retry_interval"),
            request_id=request_id,
            signature=signature,
            signing_certificate=certificate,
        )
        return self._call_result.UpdateFirmware(status=status)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list, **kw):
        sim = self.sim
        results = []
        for item in set_variable_data:
            comp, var = item["component"]["name"], item["variable"]["name"]
            entry = sim.variables.get((comp, var))
            if entry is None:
                status = "UnknownVariable" if any(c == comp for c, _ in sim.variables) else "UnknownComponent"
            elif entry[1]:
                status = "Rejected"
            else:
                entry[0] = str(item["attribute_value"])
                status = "Accepted"
                if (comp, var) == ("SampledDataCtrlr", "TxUpdatedInterval"):
                    sim.meter_interval_s = max(float(entry[0]), 1.0)
                elif (comp, var) == ("OCPPCommCtrlr", "HeartbeatInterval"):
                    sim.heartbeat_s = max(float(entry[0]), 1.0)
            results.append(
                {"attributeStatus": status, "component": {"name": comp}, "variable": {"name": var}}
            )
        return self._call_result.SetVariables(set_variable_result=results)

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list, **kw):
        results = []
        for item in get_variable_data:
            comp, var = item["component"]["name"], item["variable"]["name"]
            entry = self.sim.variables.get((comp, var))
            result = {
                "attributeStatus": "Accepted" if entry else "UnknownVariable",
                "component": {"name": comp},
                "variable": {"name": var},
            }
            if entry:
                result["attributeValue"] = entry[0]
            results.append(result)
        return self._call_result.GetVariables(get_variable_result=results)

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, **kw):
        kinds = {"MeterValues": "meter", "StatusNotification": "status", "Heartbeat": "heartbeat"}
        if requested_message not in kinds:
            return self._call_result.TriggerMessage(status="NotImplemented")
        self._connector_reported = None
        self.sim._post(kinds[requested_message])
        return self._call_result.TriggerMessage(status="Accepted")

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **kw):
        return self._call_result.DataTransfer(status="UnknownVendorId")


class SimConnV201(_SimConnV2, v201.ChargePoint):
    pass


class SimConnV21(_SimConnV2, v21.ChargePoint):
    pass


SIM_CONNECTIONS: dict[str, type] = {"1.6": SimConnV16, "2.0.1": SimConnV201, "2.1": SimConnV21}


# -- hems sim ocpp -----------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hems sim ocpp", description="Run a simulated OCPP charge point driven by a simulated home."
    )
    p.add_argument(
        "--url",
        required=True,
        help="CSMS websocket URL ending in the charge point id, e.g. ws://127.0.0.1:9000/ocpp/garage",
    )
    p.add_argument("--version", default="2.0.1", choices=sorted(VERSION_SUBPROTOCOL), help="OCPP version")
    p.add_argument("--password", default=None, help="basic auth password (security profile 1 and 2)")
    p.add_argument(
        "--cafile", default=None, help="CA or self-signed certificate to trust for wss:// (profile 2)"
    )
    p.add_argument("--id-tag", default="SIMTAG01", help="the RFID tag the simulated driver presents")
    p.add_argument("--speed", type=float, default=1.0, help="simulated time per wall second (default 1)")
    p.add_argument(
        "--start", default="", help="local ISO date/time the simulated home starts at (default now)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many wall seconds (0 = run until ^C)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every OCPP frame")
    return p


async def _run_standalone(args: argparse.Namespace) -> int:
    from hems.clock import SimClock
    from hems.home import HomeParams
    from hems.livesim import LiveSimHome, parse_sim_start

    params = HomeParams()
    clock = SimClock(start=parse_sim_start(args.start, params.site.timezone), speed=args.speed)
    home = LiveSimHome(params, clock, seed=args.seed)
    ssl_ctx = ssl_mod.create_default_context(cafile=args.cafile) if args.cafile else None
    cp = SimChargePoint(
        args.url,
        args.version,
        ev=home,
        clock=clock,
        password=args.password,
        ssl=ssl_ctx,
        id_tag=args.id_tag,
        voltage_v=params.site.voltage_v,
    )
    home.start()
    await cp.start()
    print(f"simulated OCPP {args.version} charge point {cp.cp_id} -> {args.url} (^C to stop)", flush=True)
    try:
        if args.duration > 0:
            await asyncio.sleep(args.duration)
        else:
            await asyncio.Event().wait()
    finally:
        await cp.stop()
        await home.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose:
        WIRE_LOG.setLevel(logging.INFO)
    try:
        return asyncio.run(_run_standalone(args))
    except KeyboardInterrupt:
        return 0
