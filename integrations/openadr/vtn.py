"""A simulated utility VTN on openleadr's server side, for dev mode, tests and ``hems bench dr``.

It registers any VEN, sends events from a small JSON API, records what comes back (oadrCreatedEvent opt
responses, oadrCreateOpt, reports) and refuses hostile XML before openleadr parses it (see ``xmlguard``).

- ``hems sim openadr-vtn [--port 8082] [--host 127.0.0.1] [--poll-freq 10]`` runs one until Ctrl-C.
- ``hems sim openadr-event --level 2 --start +5m --duration 2h [--vtn http://127.0.0.1:8082]`` sends an event
  through its API (also ``--shed-w``, ``--cap-w``, ``--price``, ``--randomize``, ``--modify ID``,
  ``--cancel ID``, ``--list``).
- In dev mode (``dev_peer``) it listens on a free loopback port, keeps time with the simulated clock, and points
  the gateway's VEN at itself.

API (JSON, on the VTN's port): ``POST /hems/events`` (fields: ``level`` | ``shed_w`` | ``import_cap_w`` |
``price_per_kwh``, ``start`` ("+5m", "now", ISO date-time or POSIX seconds), ``duration`` ("2h", "90m", "PT2H" or
seconds), ``randomize``, ``event_id``, ``market_context``, ``priority``, ``ven_id``, ``response_required``),
``POST /hems/events/{id}`` (modify: the same fields), ``POST /hems/events/{id}/cancel``, ``GET /hems/state``.

openleadr keeps some VTN settings on its service classes (message signing, the VEN lookup): run one simulated
VTN per process at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import re
import sys
import urllib.error
import urllib.request
import uuid
import warnings
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from aiohttp import web
from openleadr import objects
from openleadr.server import OpenADRServer
from openleadr.service import VTNService, handler, service

from hems.clock import Clock, RealClock
from hems.integration import DevPeerContext

from . import xmlguard

log = logging.getLogger("integrations.openadr.vtn")
logging.getLogger("openleadr").setLevel(logging.WARNING)

PREFIX = "/OpenADR2/Simple/2.0b"
DEFAULT_PORT = 8082
KEEP_COMPLETED_S = 3600.0  # completed events stay in the distributed list this long


# ------------------------------------------------------------------------------------------------------------
# time parsing for the API and the CLI

_DUR = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90"``, ``"2h"``, ``"1h30m"``, ``"45s"`` or ISO 8601 ``"PT2H"``."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if text.upper().startswith("P"):
        from openleadr.utils import parse_duration as iso

        return iso(text.upper()).total_seconds()
    m = _DUR.match(text.lower())
    if not text or not m or not any(m.groups()):
        raise ValueError(f"not a duration: {value!r} (use e.g. 90, 45s, 30m, 2h, 1h30m or PT2H)")
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def parse_start(value: Any, now: float) -> float:
    """POSIX seconds from ``"now"``, ``"+5m"`` (after ``now``), an ISO date-time (naive = this machine's local
    time) or POSIX seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if text in ("", "now"):
        return now
    if text.startswith("+"):
        return now + parse_duration(text[1:])
    if text.startswith("-"):
        return now - parse_duration(text[1:])
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a start time: {value!r} (use now, +5m, 2026-07-01T16:00 or POSIX seconds)"
        ) from None
    return (dt if dt.tzinfo else dt.astimezone()).timestamp()


# ------------------------------------------------------------------------------------------------------------
# the VTN


@dataclass
class SimEvent:
    event_id: str
    start_ts: float
    duration_s: float
    modification_number: int = 0
    level: int | None = None
    shed_w: float | None = None
    import_cap_w: float | None = None
    price_per_kwh: float | None = None
    randomization_s: float = 0.0
    market_context: str = "http://hems.example/dr-program"
    priority: int = 1
    response_required: str = "always"
    test_event: bool = False
    ven_id: str | None = None  # None: every registered VEN
    cancelled: bool = False
    created_ts: float = 0.0

    @property
    def end_ts(self) -> float:
        return self.start_ts + self.duration_s

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"end_ts": self.end_ts}


@dataclass
class Opt:
    ven_id: str
    event_id: str
    opt_type: str
    via: str  # "oadrCreatedEvent" | "oadrCreateOpt"
    ts: float
    modification_number: int | None = None
    reason: str | None = None


@dataclass
class ReportValue:
    ven_id: str
    r_id: str
    ts: float
    value: float


@dataclass
class VenRecord:
    ven_id: str
    ven_name: str
    registration_id: str
    fingerprint: str | None = None
    registered_ts: float = 0.0
    push_address: str | None = None  # set when the VEN registered for the push model


@service("EiOpt")
class _OptService(VTNService):
    """openleadr's server has no working EiOpt service; this one records oadrCreateOpt / oadrCancelOpt."""

    def __init__(self, vtn_id: str, vtn: SimVTN) -> None:
        super().__init__(vtn_id)
        self.vtn = vtn

    @handler("oadrCreateOpt")
    async def create_opt(self, payload: dict):
        self.vtn._record_opt(
            Opt(
                ven_id=payload.get("ven_id"),
                event_id=str(payload.get("event_id")),
                opt_type=payload.get("opt_type"),
                via="oadrCreateOpt",
                ts=self.vtn.clock.now(),
                modification_number=payload.get("modification_number"),
                reason=payload.get("opt_reason"),
            )
        )
        return "oadrCreatedOpt", {"opt_id": payload.get("opt_id")}

    @handler("oadrCancelOpt")
    async def cancel_opt(self, payload: dict):
        return "oadrCanceledOpt", {"opt_id": payload.get("opt_id")}


class SimVTN:
    """A VTN that accepts every VEN and distributes the events given to ``add_event``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        vtn_id: str = "HEMS-SIM-VTN",
        clock: Clock | None = None,
        poll_freq_s: int = 10,
        report_sampling_s: float = 10.0,
        cert: str | None = None,
        key: str | None = None,
        http_cert: str | None = None,
        http_key: str | None = None,
        ca_file: str | None = None,
        verify_message_signatures: bool = True,
        enrolled: dict[str, str] | None = None,
        api: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.vtn_id = vtn_id
        self.clock: Clock = clock or RealClock()
        self.report_sampling_s = report_sampling_s
        self.tls = bool(http_cert and http_key and ca_file)
        # venID or venName -> certificate fingerprint, enrolled out of band (needed with TLS: openleadr checks
        # every message's client certificate and signature against it)
        self.enrolled = {k: v.upper() for k, v in (enrolled or {}).items()}
        self.vens: dict[str, VenRecord] = {}
        self.events: dict[str, SimEvent] = {}
        self.opts: list[Opt] = []
        self.reports: list[ReportValue] = []
        self.refused: list[str] = []
        self.messages: dict[str, int] = {}  # message type -> count received
        self._updated: dict[str, bool] = {}
        self._queue: dict[str, list[tuple[str, dict]]] = {}
        self._changed = asyncio.Condition()
        with (
            warnings.catch_warnings()
        ):  # openleadr stores itself under a str app key (aiohttp's NotAppKeyWarning)
            warnings.simplefilter("ignore")
            self.server = self._server(
                vtn_id,
                cert,
                key,
                http_cert,
                http_key,
                ca_file,
                host,
                port,
                poll_freq_s,
                verify_message_signatures,
            )
        s = self.server
        s.add_handler("on_create_party_registration", self._on_register)
        s.add_handler("on_poll", self._on_poll)
        s.add_handler("on_request_event", self._on_request_event)
        s.add_handler("on_created_event", self._on_created_event)
        s.add_handler("on_register_report", self._on_register_report)
        self._opt_service = _OptService(vtn_id, self)
        s.app.add_routes([web.post(f"{PREFIX}/EiOpt", self._opt_service.handler)])
        s.app.middlewares.append(self._guard)
        if api:
            s.app.add_routes(
                [
                    web.post("/hems/events", self._api_add),
                    web.post("/hems/events/{event_id}", self._api_modify),
                    web.post("/hems/events/{event_id}/cancel", self._api_cancel),
                    web.get("/hems/state", self._api_state),
                ]
            )
        self._runner: web.AppRunner | None = None

    def _server(
        self, vtn_id, cert, key, http_cert, http_key, ca_file, host, port, poll_freq_s, verify_signatures
    ) -> OpenADRServer:
        return OpenADRServer(
            vtn_id=vtn_id,
            cert=cert,
            key=key,
            http_cert=http_cert,
            http_key=http_key,
            http_ca_file=ca_file,
            http_host=host,
            http_port=port,
            requested_poll_freq=timedelta(seconds=max(1, int(poll_freq_s))),
            ven_lookup=self._ven_lookup,
            verify_message_signatures=verify_signatures,
            show_fingerprint=False,
        )

    # -- running ----------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """What the VEN is configured with (``vtn_url``)."""
        return self.base_url + PREFIX

    async def start(self) -> int:
        self._runner = web.AppRunner(self.server.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.server.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("simulated VTN %s at %s", self.vtn_id, self.url)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- guard ------------------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if request.method == "POST" and request.path.startswith(PREFIX):
            try:
                xmlguard.check(await request.read())
            except xmlguard.RefusedXML as exc:
                self.refused.append(str(exc))
                log.warning("VTN refused a message on %s: %s", request.path, exc)
                return web.Response(status=400, text=f"refused: {exc}")
            except web.HTTPException:
                raise
        return await handler(request)

    # -- openleadr handlers -----------------------------------------------------------------------------
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _count(self, message_type: str) -> None:
        self.messages[message_type] = self.messages.get(message_type, 0) + 1

    async def _ven_lookup(self, ven_id: str) -> dict | None:
        rec = self.vens.get(ven_id)
        if rec is None:
            if ven_id in self.enrolled:  # enrolled, not registered yet: its registration is authenticated
                return {"ven_id": ven_id, "registration_id": None, "fingerprint": self.enrolled[ven_id]}
            return None
        return {
            "ven_id": rec.ven_id,
            "ven_name": rec.ven_name,
            "registration_id": rec.registration_id,
            "fingerprint": rec.fingerprint,
        }

    async def _on_register(self, payload: dict):
        self._count("oadrCreatePartyRegistration")
        ven_name = payload.get("ven_name") or "ven"
        ven_id = payload.get("ven_id") or next(
            (v.ven_id for v in self.vens.values() if v.ven_name == ven_name), f"ven-{uuid.uuid4().hex[:8]}"
        )
        if self.tls and self.enrolled:
            expected = self.enrolled.get(ven_id) or self.enrolled.get(ven_name)
            if expected is None or expected != payload.get("fingerprint"):
                log.warning("VTN refused the registration of %s: certificate not enrolled", ven_name)
                return False
            self.enrolled.setdefault(ven_id, expected)
        rec = VenRecord(
            ven_id=ven_id,
            ven_name=ven_name,
            registration_id=f"reg-{uuid.uuid4().hex[:12]}",
            fingerprint=payload.get("fingerprint"),
            registered_ts=self.clock.now(),
            push_address=None if payload.get("http_pull_model", True) else payload.get("transport_address"),
        )
        self.vens[ven_id] = rec
        self._updated[ven_id] = False
        await self._notify()
        return rec.ven_id, rec.registration_id

    async def push(self, ven_id: str | None = None) -> dict[str, int]:
        """Push the current events to every VEN (or one) that registered for the push model.

        Returns {ven_id: HTTP status}; a VEN that cannot be reached is left to find the events by polling."""
        import aiohttp
        from openleadr.messaging import create_message

        out: dict[str, int] = {}
        async with aiohttp.ClientSession() as session:
            for rec in list(self.vens.values()):
                if rec.push_address is None or (ven_id is not None and rec.ven_id != ven_id):
                    continue
                message = create_message(
                    "oadrDistributeEvent",
                    response={
                        "response_code": 200,
                        "response_description": "OK",
                        "request_id": uuid.uuid4().hex,
                    },
                    request_id=uuid.uuid4().hex,
                    vtn_id=self.vtn_id,
                    events=self._events_for(rec.ven_id),
                    disable_signature=True,
                )
                try:
                    async with session.post(f"{rec.push_address}/EiEvent", data=message) as resp:
                        out[rec.ven_id] = resp.status
                except aiohttp.ClientError as exc:
                    log.warning("VTN could not push to %s: %s", rec.push_address, exc)
                    out[rec.ven_id] = 0
                if out[rec.ven_id] == 200:
                    self._updated[rec.ven_id] = False  # delivered: the next poll need not repeat it
        self._count("push")
        return out

    async def _on_poll(self, ven_id: str):
        self._count("oadrPoll")
        if self._updated.get(ven_id):
            self._updated[ven_id] = False
            return "oadrDistributeEvent", {"events": self._events_for(ven_id)}
        queue = self._queue.get(ven_id)
        if queue:
            return queue.pop(0)
        return None

    async def _on_request_event(self, ven_id: str):
        self._count("oadrRequestEvent")
        self._updated[ven_id] = False
        return self._events_for(ven_id) or None

    async def _on_created_event(self, ven_id: str, event_id: str, opt_type: str):
        self._count("oadrCreatedEvent")
        self._record_opt(Opt(ven_id, str(event_id), opt_type, "oadrCreatedEvent", self.clock.now()))

    def _record_opt(self, opt: Opt) -> None:
        self.opts.append(opt)
        asyncio.get_running_loop().create_task(self._notify())

    async def _on_register_report(
        self, ven_id, resource_id, measurement, unit, scale, min_sampling_interval, max_sampling_interval
    ):
        self._count("oadrRegisterReport")
        sampling = max(min_sampling_interval, timedelta(seconds=self.report_sampling_s))
        sampling = min(sampling, max_sampling_interval)

        async def collect(values) -> None:
            for dt, value in values:
                ts = dt.timestamp() if isinstance(dt, datetime) else float(dt)
                self.reports.append(ReportValue(ven_id, resource_id, ts, float(value)))
            await self._notify()

        return collect, sampling, sampling

    def request_reregistration(self, ven_id: str) -> None:
        self._queue.setdefault(ven_id, []).append(("oadrRequestReregistration", {"ven_id": ven_id}))

    # -- events -----------------------------------------------------------------------------------------
    def _status(self, ev: SimEvent, now: float) -> str:
        if ev.cancelled:
            return "cancelled"
        if now >= ev.end_ts:
            return "completed"
        if now >= ev.start_ts:
            return "active"
        return "near" if ev.start_ts - now <= 3600 else "far"

    def _events_for(self, ven_id: str) -> list[objects.Event]:
        now = self.clock.now()
        out = []
        for ev in self.events.values():
            if ev.ven_id not in (None, ven_id):
                continue
            if now >= ev.end_ts + KEEP_COMPLETED_S:
                continue
            out.append(self._build(ev, ven_id, now))
        return out

    def _build(self, ev: SimEvent, ven_id: str, now: float) -> objects.Event:
        start = datetime.fromtimestamp(ev.start_ts, UTC)
        duration = timedelta(seconds=ev.duration_s)
        power = objects.Measurement(
            name="powerReal",
            description="RealPower",
            unit="W",
            scale="none",
            power_attributes=objects.PowerAttributes(hertz=60, voltage=240, ac=True),
        )
        signals = []

        def signal(name: str, kind: str, value: float, measurement=None) -> None:
            signals.append(
                objects.EventSignal(
                    intervals=[
                        objects.Interval(dtstart=start, duration=duration, signal_payload=value, uid=0)
                    ],
                    signal_name=name,
                    signal_type=kind,
                    signal_id=f"{ev.event_id}-{len(signals)}",
                    measurement=measurement,
                )
            )

        if ev.level is not None:
            signal("SIMPLE", "level", float(ev.level))
            signals[
                -1
            ].current_value = 0.0  # openleadr's preflight insists on 0 (its check never sees "active")
        if ev.shed_w is not None:
            signal("LOAD_DISPATCH", "delta", float(ev.shed_w), copy.deepcopy(power))
        if ev.import_cap_w is not None:
            signal("LOAD_DISPATCH", "setpoint", float(ev.import_cap_w), copy.deepcopy(power))
        if ev.price_per_kwh is not None:
            signal("ELECTRICITY_PRICE", "price", float(ev.price_per_kwh))
        tolerance = {"startafter": timedelta(seconds=ev.randomization_s)} if ev.randomization_s > 0 else None
        event = objects.Event(
            event_descriptor=objects.EventDescriptor(
                event_id=ev.event_id,
                modification_number=ev.modification_number,
                market_context=ev.market_context,
                event_status="far",
                priority=ev.priority,
                test_event=ev.test_event,
                created_date_time=datetime.fromtimestamp(ev.created_ts, UTC),
            ),
            event_signals=signals,
            targets=[objects.Target(ven_id=ven_id)],
            active_period=objects.ActivePeriod(dtstart=start, duration=duration, tolerance=tolerance),
            response_required=ev.response_required,
        )
        event.event_descriptor.event_status = self._status(ev, now)  # by this VTN's clock, not the wall's
        return event

    def _changed_events(self, ven_id: str | None) -> None:
        for v in self.vens:
            if ven_id in (None, v):
                self._updated[v] = True

    def add_event(
        self,
        *,
        start_ts: float,
        duration_s: float,
        level: int | None = None,
        shed_w: float | None = None,
        import_cap_w: float | None = None,
        price_per_kwh: float | None = None,
        randomization_s: float = 0.0,
        event_id: str | None = None,
        ven_id: str | None = None,
        market_context: str = "http://hems.example/dr-program",
        priority: int = 1,
        response_required: str = "always",
    ) -> SimEvent:
        if all(v is None for v in (level, shed_w, import_cap_w, price_per_kwh)):
            raise ValueError("an event needs one of level, shed_w, import_cap_w, price_per_kwh")
        if level is not None and level not in (0, 1, 2, 3):
            raise ValueError(f"level must be 0, 1, 2 or 3, got {level!r}")
        if duration_s <= 0:
            raise ValueError(f"duration must be > 0, got {duration_s}")
        if response_required not in ("always", "never"):
            raise ValueError("response_required must be 'always' or 'never'")
        event_id = event_id or f"evt-{uuid.uuid4().hex[:10]}"
        if event_id in self.events:
            raise ValueError(f"event {event_id!r} exists; modify it instead")
        ev = SimEvent(
            event_id=event_id,
            start_ts=float(start_ts),
            duration_s=float(duration_s),
            level=level,
            shed_w=shed_w,
            import_cap_w=import_cap_w,
            price_per_kwh=price_per_kwh,
            randomization_s=float(randomization_s),
            market_context=market_context,
            priority=priority,
            response_required=response_required,
            ven_id=ven_id,
            created_ts=self.clock.now(),
        )
        self.events[event_id] = ev
        self._changed_events(ven_id)
        log.info("VTN event %s: %s", event_id, ev.to_json())
        return ev

    def modify_event(self, event_id: str, **changes: Any) -> SimEvent:
        ev = self._get(event_id)
        if ev.cancelled:
            raise ValueError(f"event {event_id!r} is cancelled")
        allowed = {
            "start_ts",
            "duration_s",
            "level",
            "shed_w",
            "import_cap_w",
            "price_per_kwh",
            "randomization_s",
            "priority",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(
                f"cannot modify {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
            )
        new = replace(ev, **changes, modification_number=ev.modification_number + 1)
        self.events[event_id] = new
        self._changed_events(new.ven_id)
        return new

    def cancel_event(self, event_id: str) -> SimEvent:
        ev = self._get(event_id)
        if not ev.cancelled:
            ev = replace(ev, cancelled=True, modification_number=ev.modification_number + 1)
            self.events[event_id] = ev
            self._changed_events(ev.ven_id)
        return ev

    def _get(self, event_id: str) -> SimEvent:
        try:
            return self.events[event_id]
        except KeyError:
            raise KeyError(f"no event {event_id!r}; known: {', '.join(self.events) or 'none'}") from None

    async def wait_for(self, predicate, timeout_s: float = 10.0):
        """Wait until ``predicate()`` is truthy (re-checked on every registration, opt and report)."""

        async def waiting():
            async with self._changed:
                while not (result := predicate()):
                    try:
                        await asyncio.wait_for(self._changed.wait(), timeout=0.1)
                    except TimeoutError:
                        pass
                return result

        return await asyncio.wait_for(waiting(), timeout=timeout_s)

    def state(self) -> dict:
        return {
            "vtn_id": self.vtn_id,
            "url": self.url,
            "now": self.clock.now(),
            "vens": [v.__dict__ for v in self.vens.values()],
            "events": [
                e.to_json() | {"status": self._status(e, self.clock.now())} for e in self.events.values()
            ],
            "opts": [o.__dict__ for o in self.opts],
            "reports": len(self.reports),
            "last_reports": [r.__dict__ for r in self.reports[-10:]],
            "refused": list(self.refused),
            "messages": dict(self.messages),
        }

    # -- JSON API ---------------------------------------------------------------------------------------
    def _fields(self, body: dict, *, new: bool) -> dict:
        out: dict[str, Any] = {}
        now = self.clock.now()
        if "start" in body or new:
            out["start_ts"] = parse_start(body.get("start", "now"), now)
        if "duration" in body or new:
            out["duration_s"] = parse_duration(body.get("duration", "1h"))
        if "randomize" in body:
            out["randomization_s"] = parse_duration(body["randomize"])
        for key, kind in (
            ("level", int),
            ("shed_w", float),
            ("import_cap_w", float),
            ("price_per_kwh", float),
            ("priority", int),
        ):
            if body.get(key) is not None:
                out[key] = kind(body[key])
        if new:
            for key in ("event_id", "ven_id", "market_context", "response_required"):
                if body.get(key) is not None:
                    out[key] = str(body[key])
        return out

    async def _json(self, request: web.Request) -> dict:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="body must be a JSON object") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body

    async def _api_add(self, request: web.Request) -> web.Response:
        try:
            ev = self.add_event(**self._fields(await self._json(request), new=True))
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(ev.to_json(), status=201)

    async def _api_modify(self, request: web.Request) -> web.Response:
        try:
            ev = self.modify_event(
                request.match_info["event_id"], **self._fields(await self._json(request), new=False)
            )
        except KeyError as exc:
            return web.json_response({"error": str(exc.args[0])}, status=404)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(ev.to_json())

    async def _api_cancel(self, request: web.Request) -> web.Response:
        try:
            ev = self.cancel_event(request.match_info["event_id"])
        except KeyError as exc:
            return web.json_response({"error": str(exc.args[0])}, status=404)
        return web.json_response(ev.to_json())

    async def _api_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())


# ------------------------------------------------------------------------------------------------------------
# dev mode


class OpenADRDevPeer:
    def __init__(self, vtn: SimVTN) -> None:
        self.vtn = vtn
        self.replaces: set[str] = set()
        self.section: dict[str, Any] = {"vtn_url": vtn.url, "ven_name": "hems-dev", "poll_interval_s": 1.0}
        self.devices: list[dict[str, Any]] = []

    async def stop(self) -> None:
        await self.vtn.stop()


async def dev_peer(ctx: DevPeerContext) -> OpenADRDevPeer:
    """A simulated VTN on a free loopback port, on the simulated home's clock; the VEN is pointed at it."""
    vtn = SimVTN(host=ctx.host, port=0, clock=ctx.clock, poll_freq_s=1)
    await vtn.start()
    ctx.log.info(
        "OpenADR VTN (simulated) at %s; send an event: hems sim openadr-event --vtn %s --level 2 --start +5m "
        "--duration 2h",
        vtn.url,
        vtn.base_url,
    )
    return OpenADRDevPeer(vtn)


# ------------------------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    """``hems sim openadr-vtn``: run a simulated VTN until interrupted."""
    p = argparse.ArgumentParser(prog="hems sim openadr-vtn", description="Run a simulated OpenADR 2.0b VTN.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 = any free)"
    )
    p.add_argument("--vtn-id", default="HEMS-SIM-VTN")
    p.add_argument(
        "--poll-freq", type=int, default=10, help="oadrRequestedOadrPollFreq in seconds (default 10)"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        vtn = SimVTN(host=args.host, port=args.port, vtn_id=args.vtn_id, poll_freq_s=args.poll_freq)
        await vtn.start()
        print(f"OpenADR VTN (simulated) at {vtn.url}")
        print(f'point the VEN at it:  [integrations.openadr] vtn_url = "{vtn.url}"')
        print(
            f"send an event:        hems sim openadr-event --vtn {vtn.base_url} --level 2 --start +5m --duration 2h"
        )
        try:
            await asyncio.Event().wait()
        finally:
            await vtn.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"hems sim openadr-vtn: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _api(base: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    u = urlparse(base if "://" in base else f"http://{base}")
    url = f"{u.scheme}://{u.netloc}{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, {"error": str(exc)}


def event_main(argv: list[str] | None = None) -> int:
    """``hems sim openadr-event``: send (modify, cancel, list) events through a simulated VTN's API."""
    p = argparse.ArgumentParser(
        prog="hems sim openadr-event",
        description="Send a DR event through a simulated VTN (hems sim openadr-vtn, or the one dev mode starts).",
    )
    p.add_argument("--vtn", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="the VTN's base URL")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--modify", metavar="EVENT_ID", help="modify this event (a new modification number)")
    what.add_argument("--cancel", metavar="EVENT_ID", help="cancel this event")
    what.add_argument(
        "--list", action="store_true", help="print the VTN's state: VENs, events, opts, reports"
    )
    p.add_argument("--level", type=int, choices=(0, 1, 2, 3), help="OpenADR SIMPLE level")
    p.add_argument("--shed-w", type=float, help="LOAD_DISPATCH delta: shed this many W against the baseline")
    p.add_argument("--cap-w", type=float, help="LOAD_DISPATCH setpoint: import at most this many W")
    p.add_argument("--price", type=float, help="ELECTRICITY_PRICE in currency per kWh")
    p.add_argument("--start", default=None, help="now, +5m, an ISO date-time or POSIX seconds (default now)")
    p.add_argument("--duration", default=None, help="e.g. 2h, 90m, PT2H (default 1h)")
    p.add_argument("--randomize", default=None, help="start randomisation window, e.g. 10m")
    p.add_argument("--event-id", default=None)
    args = p.parse_args(argv)
    body: dict[str, Any] = {}
    for key, value in (
        ("level", args.level),
        ("shed_w", args.shed_w),
        ("import_cap_w", args.cap_w),
        ("price_per_kwh", args.price),
        ("start", args.start),
        ("duration", args.duration),
        ("randomize", args.randomize),
        ("event_id", args.event_id),
    ):
        if value is not None:
            body[key] = value
    try:
        if args.list:
            status, answer = _api(args.vtn, "/hems/state")
        elif args.cancel:
            status, answer = _api(args.vtn, f"/hems/events/{args.cancel}/cancel", {})
        elif args.modify:
            status, answer = _api(args.vtn, f"/hems/events/{args.modify}", body)
        else:
            if not any(k in body for k in ("level", "shed_w", "import_cap_w", "price_per_kwh")):
                p.error("give one of --level, --shed-w, --cap-w, --price")
            status, answer = _api(args.vtn, "/hems/events", body)
    except (urllib.error.URLError, OSError) as exc:
        print(f"hems sim openadr-event: cannot reach the VTN at {args.vtn}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2, default=str))
    return 0 if status < 400 else 1
