"""The OpenADR 2.0b VEN: openleadr's message layer, driven by the gateway's own loop.

openleadr's ``OpenADRClient`` builds and signs the messages and parses what comes back; this module replaces the
parts that do not fit a gateway that must keep running: the transport (bounded reads, the hostile-XML guard of
``xmlguard``, an exception for an unreachable VTN instead of a log line), the run loop (openleadr gives up when
the first registration fails; here registration and polling retry with exponential backoff, and events already
received stay in force in the ``DRManager``), and reporting (openleadr schedules reports on wall-clock cron jobs;
here they run on the gateway's clock from the bus's meter readings).

Push: with ``push_port`` set, the VEN registers with ``oadrHttpPullModel`` false and its ``oadrTransportAddress``,
and serves ``POST <address>/EiEvent``: an oadrDistributeEvent the VTN pushes goes through the same guard, signature
check and handling as a polled one and is answered with an oadrResponse. It keeps polling as well (at the poll
interval), so a push lost on the network is still picked up.

Flow: oadrQueryRegistration → oadrCreatePartyRegistration → oadrRegisterReport (TELEMETRY_USAGE and
TELEMETRY_STATUS offered; the VTN's requests answered with oadrCreatedReport) → oadrRequestEvent → oadrPoll every
poll interval. Each oadrDistributeEvent becomes DR events in the manager, answered with one oadrCreatedEvent
(optIn/optOut per event, as the manager decided). Events missing from a later oadrDistributeEvent are cancelled
(implicit cancellation, OpenADR 2.0b). A later opt-out by the homeowner is sent as an oadrCreatedEvent (optOut) and
an oadrCreateOpt for the event (reason ``overrideStatus``); both are retried until the VTN has them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import aiohttp.web
from openleadr import enums, objects, utils
from openleadr.client import OpenADRClient
from openleadr.messaging import parse_message, validate_xml_signature

from hems.bus import Bus
from hems.clock import Clock
from hems.dr import DREvent, DRManager, DRNotice, DRState, OptState
from hems.model import Capability, DeviceStatus, Quantity
from hems.store import Store
from hems.tasks import cancel_and_wait

from . import mapping, xmlguard
from .config import VenConfig

log = logging.getLogger("integrations.openadr")

USAGE_SPEC = "hems-telemetry-usage"
STATUS_SPEC = "hems-telemetry-status"
IMPLICIT_CANCEL_GRACE_S = 5.0  # an event missing from a distribute within this of its end has simply ended
KV_REGISTRATION = "openadr.registration"
MAX_BUFFERED_SAMPLES = 2000
PUSH_PATH = "/OpenADR2/Simple/2.0b"
DR_STATE_CODES = {"none": 0.0, "pending": 1.0, "active": 2.0, "opted_out": 3.0}


class VTNUnavailable(Exception):
    """The VTN could not be reached, or answered with an HTTP error or a refusal."""


class GuardedClient(OpenADRClient):
    """openleadr's client with a transport fit for a gateway (see the module docstring)."""

    def __init__(self, cfg: VenConfig, timeout_s: float = 10.0) -> None:
        super().__init__(
            ven_name=cfg.ven_name,
            vtn_url=cfg.vtn_url,
            ven_id=cfg.ven_id,
            cert=cfg.cert,
            key=cfg.key,
            ca_file=cfg.ca_file,
            vtn_fingerprint=cfg.vtn_fingerprint,
            show_fingerprint=False,
        )
        self.cfg = cfg
        self.timeout_s = timeout_s
        self.refused = 0  # messages refused by the guard, the schema or the signature check
        self.last_refusal = ""
        self.on_report_requests = None  # set by the Ven: called with an oadrRegisteredReport/oadrCreateReport

    async def _ensure_client_session(self) -> None:
        if self.client_session is not None and not self.client_session.closed:
            return
        ssl_ctx: ssl.SSLContext | bool = True
        if self.cfg.tls:
            ctx = ssl.create_default_context(cafile=self.cfg.ca_file)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.cfg.cert and self.cfg.key:
                ctx.load_cert_chain(self.cfg.cert, self.cfg.key)
            ssl_ctx = ctx
        self.client_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_ctx),
            headers={"content-type": "application/xml"},
            timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=5),
        )

    def _refuse(self, service: str, why: str) -> tuple[None, dict]:
        self.refused += 1
        self.last_refusal = why
        log.warning("refused a message from the VTN (%s): %s", service, why)
        return None, {}

    async def _perform_request(self, service: str, message: str) -> tuple[str | None, dict]:
        await self._ensure_client_session()
        url = f"{self.vtn_url}/{service}"
        try:
            async with self.client_session.post(url, data=message) as resp:
                if resp.content_length is not None and resp.content_length > xmlguard.MAX_MESSAGE_BYTES:
                    return self._refuse(service, f"answer of {resp.content_length} bytes is too large")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > xmlguard.MAX_MESSAGE_BYTES:
                        return self._refuse(service, "answer larger than the allowed size")
                if resp.status != 200:
                    text = bytes(body[:200]).decode("utf-8", "replace")
                    raise VTNUnavailable(f"{url}: HTTP {resp.status} {text}".strip())
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
            raise VTNUnavailable(f"{url}: {exc.__class__.__name__}: {exc}") from None
        if not body.strip():
            return None, {}
        try:
            tree = xmlguard.parse(bytes(body))
            if self.vtn_fingerprint:
                validate_xml_signature(tree, cert_fingerprint=self.vtn_fingerprint)
            message_type, payload = parse_message(bytes(body))
        except xmlguard.RefusedXML as exc:
            return self._refuse(service, str(exc))
        except Exception as exc:  # signature, fingerprint, replay protection, or a parse openleadr cannot do
            return self._refuse(service, f"{exc.__class__.__name__}: {exc}")
        response = payload.get("response") if isinstance(payload, dict) else None
        if isinstance(response, dict) and response.get("response_code") not in (None, 200, "200"):
            log.warning(
                "the VTN answered %s with %s %s",
                message_type,
                response.get("response_code"),
                response.get("response_description"),
            )
        return message_type, payload

    async def create_report(self, response_payload: dict) -> None:  # called by register_reports
        if self.on_report_requests is not None:
            await self.on_report_requests(response_payload)

    async def close(self) -> None:
        if self.client_session is not None and not self.client_session.closed:
            await self.client_session.close()


@dataclass
class _ReportRequest:
    report_request_id: str
    report_specifier_id: str
    report_name: str
    r_ids: list[str]
    granularity_s: float
    report_back_s: float
    samples: list[tuple[float, str, float]] = field(default_factory=list)
    task: asyncio.Task | None = None


class Ven:
    """One VEN registered with one VTN; the ``DRResponder`` of the events it brings in."""

    def __init__(
        self,
        cfg: VenConfig,
        *,
        dr: DRManager,
        bus: Bus,
        clock: Clock,
        store: Store | None = None,
        name: str = "openadr",
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.dr = dr
        self.bus = bus
        self.clock = clock
        self.store = store
        self.name = name
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.client = GuardedClient(cfg, timeout_s)
        self.client.on_report_requests = self._on_report_requests
        saved = store.kv_get(KV_REGISTRATION, {}) if store is not None else {}
        if cfg.ven_id is None and saved.get("vtn_url") == cfg.vtn_url and saved.get("ven_id"):
            self.client.ven_id = saved["ven_id"]  # present the venID the VTN gave us before a restart
        self.registered = False
        self.failures = 0
        self.last_ok_ts: float | None = None
        self.last_error = ""
        self.polls = 0
        self._requests: dict[str, _ReportRequest] = {}
        self._pending_created: list[tuple[str | None, list[dict]]] = []
        self._pending_opt_outs: dict[str, DREvent] = {}
        self._task: asyncio.Task | None = None
        self._stopped = False
        self._wake = asyncio.Event()
        self._push_runner: aiohttp.web.AppRunner | None = None
        self.push_address: str | None = None
        self.pushes = 0
        self._add_reports()

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopped = False
        self.dr.register_responder(self.name, self)
        if self.cfg.push_port is not None and self._push_runner is None:
            await self._start_push_server()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"openadr-ven-{self.name}")

    async def stop(self) -> None:
        self._stopped = True
        tasks = [t for t in [self._task, *(r.task for r in self._requests.values())] if t is not None]
        await cancel_and_wait(*tasks, what="VEN task")
        self._task = None
        for r in self._requests.values():
            r.task = None
        await self.client.close()
        if self._push_runner is not None:
            await self._push_runner.cleanup()
            self._push_runner = None

    # -- push -----------------------------------------------------------------------------------------------
    async def _start_push_server(self) -> None:
        app = aiohttp.web.Application(client_max_size=xmlguard.MAX_MESSAGE_BYTES)
        app.router.add_post(f"{PUSH_PATH}/EiEvent", self._on_push)
        self._push_runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._push_runner.setup()
        site = aiohttp.web.TCPSite(self._push_runner, self.cfg.push_host, self.cfg.push_port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        host = "127.0.0.1" if self.cfg.push_host in ("0.0.0.0", "::") else self.cfg.push_host
        self.push_address = self.cfg.push_address or f"http://{host}:{port}{PUSH_PATH}"
        log.info("OpenADR push endpoint at %s", self.push_address)

    async def _on_push(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        """An oadrDistributeEvent pushed by the VTN: guarded, checked and handled like a polled one."""
        body = await request.read()
        try:
            tree = xmlguard.parse(body)
            if self.cfg.vtn_fingerprint:
                validate_xml_signature(tree, cert_fingerprint=self.cfg.vtn_fingerprint)
            message_type, payload = parse_message(body)
        except xmlguard.RefusedXML as exc:
            log.warning("OpenADR push refused: %s", exc)
            return aiohttp.web.Response(status=400, text=f"refused: {exc}")
        except Exception as exc:  # signature, replay protection, or something openleadr cannot parse
            log.warning("OpenADR push refused: %s: %s", exc.__class__.__name__, exc)
            return aiohttp.web.Response(status=400, text=f"refused: {exc.__class__.__name__}")
        if message_type != "oadrDistributeEvent":
            return aiohttp.web.Response(status=400, text=f"refused: {message_type} is not pushed to a VEN")
        self.pushes += 1
        await self._on_distribute(payload)
        reply = self.client._create_message(
            "oadrResponse",
            response={
                "response_code": 200,
                "response_description": "OK",
                "request_id": payload.get("request_id"),
            },
            ven_id=self.client.ven_id,
        )
        return aiohttp.web.Response(text=reply, content_type="application/xml")

    def poll_now(self) -> None:
        """Skip the rest of the current poll wait (e.g. after a local change that the VTN should hear of)."""
        self._wake.set()

    @property
    def ven_id(self) -> str | None:
        return self.client.ven_id

    @property
    def poll_interval_s(self) -> float:
        if self.cfg.poll_interval_s is not None:
            return self.cfg.poll_interval_s
        freq = self.client.poll_frequency
        return freq.total_seconds() if isinstance(freq, timedelta) and freq.total_seconds() > 0 else 10.0

    def status(self) -> dict:
        return {
            "vtn_url": self.cfg.vtn_url,
            "ven_name": self.cfg.ven_name,
            "ven_id": self.client.ven_id,
            "registration_id": self.client.registration_id,
            "registered": self.registered,
            "poll_interval_s": self.poll_interval_s,
            "polls": self.polls,
            "last_ok_ts": self.last_ok_ts,
            "failures": self.failures,
            "last_error": self.last_error,
            "refused_messages": self.client.refused,
            "report_requests": sorted(self._requests),
            "tls": self.cfg.tls,
            "signing": self.cfg.signs,
        }

    async def _run(self) -> None:
        delay = self.backoff_initial_s
        while True:
            try:
                if not self.registered:
                    await self._register()
                await self._poll_until_empty()
                if self.registered:
                    await self._flush_pending()
                if self.failures:
                    log.info(
                        "VTN %s reachable again after %d failed attempt(s)", self.cfg.vtn_url, self.failures
                    )
                self.failures = 0
                self.last_ok_ts = self.clock.now()
                delay = self.backoff_initial_s
                await self._sleep(self.poll_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.last_error = str(exc)
                if self.failures == 1:
                    log.warning(
                        "VTN %s: %s; retrying with backoff (events already received stay in force)",
                        self.cfg.vtn_url,
                        exc,
                    )
                else:
                    log.debug("VTN still failing (%d): %s", self.failures, exc)
                if not isinstance(exc, VTNUnavailable):
                    log.exception("VEN cycle failed")
                await self._sleep(delay * random.uniform(0.8, 1.2))
                delay = min(self.backoff_max_s, delay * 2)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass

    async def _request(self, service: str, message: str) -> tuple[str | None, dict]:
        """Send one message (not a poll); an answer asking for re-registration counts as not delivered."""
        message_type, payload = await self.client._perform_request(service, message)
        if message_type == "oadrRequestReregistration":
            self.registered = False
            raise VTNUnavailable("the VTN does not know this VEN (it asks it to register again)")
        return message_type, payload

    # -- registration ---------------------------------------------------------------------------------------
    async def _register(self) -> None:
        c = self.client
        _, payload = await c.query_registration()
        request_id = (payload.get("response") or {}).get("request_id") if payload else None
        if self.push_address:
            await c.create_party_registration(
                ven_id=c.ven_id,
                request_id=request_id,
                http_pull_model=False,
                transport_address=self.push_address,
            )
        else:
            await c.create_party_registration(ven_id=c.ven_id, request_id=request_id)
        if not c.registration_id:
            raise VTNUnavailable("the VTN did not register this VEN (no registrationID)")
        log.info(
            "registered with VTN %s as venID %s (registration %s, poll every %.3g s)",
            self.cfg.vtn_url,
            c.ven_id,
            c.registration_id,
            self.poll_interval_s,
        )
        if self.store is not None:
            self.store.kv_set(
                KV_REGISTRATION,
                {"vtn_url": self.cfg.vtn_url, "ven_id": c.ven_id, "registration_id": c.registration_id},
            )
        self._stop_reports()
        await c.register_reports(c.reports)
        message_type, payload = await c.request_event()
        if message_type == "oadrDistributeEvent":
            await self._on_distribute(payload)
        self.registered = True

    # -- polling --------------------------------------------------------------------------------------------
    async def _poll_until_empty(self, limit: int = 10) -> None:
        for _ in range(limit):
            message_type, payload = await self.client.poll()
            self.polls += 1
            if message_type in (None, "oadrResponse"):
                return
            await self._dispatch(message_type, payload)
            if not self.registered:
                return

    async def _dispatch(self, message_type: str, payload: dict) -> None:
        c = self.client
        if message_type == "oadrDistributeEvent":
            await self._on_distribute(payload)
        elif message_type == "oadrRequestReregistration":
            log.info("the VTN asks this VEN to register again")
            await c.send_response(service="EiRegisterParty")
            self.registered = False
        elif message_type == "oadrCreateReport":
            await self._on_report_requests(payload)
        elif message_type == "oadrCancelReport":
            await self._cancel_report(payload)
        elif message_type == "oadrRegisterReport":  # the VTN offers reports; this VEN takes none
            msg = c._create_message(
                "oadrRegisteredReport",
                report_requests=[],
                ven_id=c.ven_id,
                response=_ok(payload.get("request_id")),
            )
            await c._perform_request("EiReport", msg)
        elif message_type == "oadrCancelPartyRegistration":
            log.warning(
                "the VTN cancelled this VEN's registration; registering again after %s s", self.backoff_max_s
            )
            msg = c._create_message(
                "oadrCanceledPartyRegistration",
                response=_ok(payload.get("request_id")),
                ven_id=c.ven_id,
                registration_id=c.registration_id,
            )
            await c._perform_request("EiRegisterParty", msg)
            c.registration_id = None
            self.registered = False
            self._stop_reports()
            await self._sleep(self.backoff_max_s)
        else:
            log.warning("no handler for %s from the VTN; ignored", message_type)

    # -- events ---------------------------------------------------------------------------------------------
    async def _on_distribute(self, payload: dict) -> None:
        request_id = payload.get("request_id")
        vtn_id = payload.get("vtn_id")
        now = self.clock.now()
        present: set[str] = set()
        responses: list[dict] = []
        for raw in payload.get("events") or []:
            try:
                mapped = mapping.to_dr_event(raw, source=self.name, request_id=request_id, vtn_id=vtn_id)
            except (mapping.MappingError, TypeError, ValueError) as exc:
                log.warning("ignoring an event the VTN sent: %s", exc)
                continue
            present.add(mapped.event.key)
            try:
                ev = await self.dr.receive(mapped.event)
            except ValueError as exc:
                log.warning("refusing event %s: %s", mapped.event.event_id, exc)
                ev = None
            if not mapped.response_required or (ev is not None and ev.state is DRState.COMPLETED):
                continue
            opt = (
                "optIn"
                if ev is not None and ev.opt is OptState.OPT_IN and mapped.response_code == 200
                else "optOut"
            )
            code, text = (
                (mapped.response_code, mapped.response_description) if ev is not None else (400, "invalid")
            )
            responses.append(
                {
                    "response_code": code,
                    "response_description": text,
                    "request_id": request_id,
                    "event_id": mapped.event.event_id,
                    "modification_number": mapped.event.modification_number,
                    "opt_type": opt,
                }
            )
        for ev in self.dr.events(include_terminal=False):
            if ev.source == self.name and ev.key not in present and ev.end_ts > now + IMPLICIT_CANCEL_GRACE_S:
                await self.dr.cancel(ev.key, reason="implicitly cancelled: no longer in the VTN's event list")
        if responses:
            await self._send_created(request_id, responses)

    async def _send_created(self, request_id: str | None, responses: list[dict]) -> None:
        c = self.client
        msg = c._create_message(
            "oadrCreatedEvent", response=_ok(request_id), event_responses=responses, ven_id=c.ven_id
        )
        try:
            await self._request("EiEvent", msg)
        except VTNUnavailable:
            self._pending_created.append((request_id, responses))
            raise

    async def _flush_pending(self) -> None:
        while self._pending_created:
            request_id, responses = self._pending_created.pop(0)
            await self._send_created(request_id, responses)
        for key, event in list(self._pending_opt_outs.items()):
            await self._send_opt_out(event)
            self._pending_opt_outs.pop(key, None)

    # -- DRResponder ----------------------------------------------------------------------------------------
    async def send_status(self, event: DREvent, status: DRNotice) -> None:
        """Receipt and modifications are answered in the oadrCreatedEvent of the distribute they came in;
        OpenADR has no message for started/completed (TELEMETRY_STATUS reports them). A later opt-out is sent."""
        if self._stopped:
            log.info(
                "VEN stopped: %s of %s not sent (the next oadrCreatedEvent will carry the opt state)",
                status,
                event.key,
            )
            return
        if status is DRNotice.OPTED_OUT:
            try:
                await self._send_opt_out(event)
            except VTNUnavailable as exc:
                log.warning(
                    "opt-out of %s not delivered yet (%s); retrying with the next poll", event.key, exc
                )
                self._pending_opt_outs[event.key] = event

    async def _send_opt_out(self, event: DREvent) -> None:
        c = self.client
        ref = event.source_ref
        await self._request(
            "EiEvent",
            c._create_message(
                "oadrCreatedEvent",
                response=_ok(None),
                event_responses=[
                    {
                        "response_code": 200,
                        "response_description": "OK",
                        "request_id": ref.get("request_id"),
                        "event_id": event.event_id,
                        "modification_number": event.modification_number,
                        "opt_type": "optOut",
                    }
                ],
                ven_id=c.ven_id,
            ),
        )
        opt = objects.Opt(
            opt_type="optOut",
            opt_reason="overrideStatus",
            opt_id=utils.generate_id(),
            event_id=event.event_id,
            modification_number=event.modification_number,
            targets=[objects.Target(ven_id=c.ven_id)],
            market_context=event.market_context or None,
        )
        payload = {"request_id": utils.generate_id(), "ven_id": c.ven_id, **asdict(opt)}
        message_type, _ = await c._perform_request("EiOpt", c._create_message("oadrCreateOpt", **payload))
        if message_type != "oadrCreatedOpt":
            log.warning("the VTN did not acknowledge the oadrCreateOpt for %s (%s)", event.key, message_type)
        log.info("opt-out of %s sent to the VTN (%s)", event.key, event.reason)

    async def send_report(self, event: DREvent, report: dict) -> None:
        """The event's verification report, per 15-minute interval (metered, baseline, shed), into the
        TELEMETRY_USAGE report the VTN requested; kept locally only when it requested none."""
        if self._stopped:
            return
        req = next((r for r in self._requests.values() if r.report_specifier_id == USAGE_SPEC), None)
        rows = report.get("intervals") or []
        if req is None or not rows:
            log.info("DR report of %s kept locally (the VTN requested no usage report)", event.key)
            return
        samples = []
        for row in rows:
            for r_id, key in (
                ("grid_power_w", "metered_w"),
                ("dr_baseline_w", "baseline_w"),
                ("dr_shed_w", "shed_w"),
            ):
                if r_id in req.r_ids and row.get(key) is not None:
                    samples.append((float(row["ts"]), r_id, float(row[key])))
        if samples:
            await self._send_update(req, samples, duration_s=900.0)
            log.info("DR report of %s sent to the VTN (%d values)", event.key, len(samples))

    # -- reports --------------------------------------------------------------------------------------------
    def _add_reports(self) -> None:
        c = self.client
        rate = objects.SamplingRate(
            min_period=timedelta(seconds=self.cfg.report_interval_s),
            max_period=timedelta(hours=1),
            on_change=False,
        )
        power = objects.Measurement(
            name="powerReal",
            description="RealPower",
            unit="W",
            scale="none",
            power_attributes=objects.PowerAttributes(hertz=60, voltage=240, ac=True),
        )
        energy = objects.Measurement(name="energyReal", description="RealEnergy", unit="Wh", scale="none")
        usage = [
            ("grid_power_w", power, enums.REPORT_TYPE.DEMAND, enums.READING_TYPE.DIRECT_READ),
            ("grid_import_wh", energy, enums.REPORT_TYPE.USAGE, enums.READING_TYPE.DIRECT_READ),
            ("dr_baseline_w", power, enums.REPORT_TYPE.BASELINE, enums.READING_TYPE.DERIVED),
            ("dr_shed_w", power, enums.REPORT_TYPE.DELTA_DEMAND, enums.READING_TYPE.DERIVED),
        ]
        for r_id, measurement, report_type, reading_type in usage:
            c.add_report(
                callback=self._sampler(r_id),
                resource_id=r_id,
                measurement=measurement,
                report_specifier_id=USAGE_SPEC,
                r_id=r_id,
                report_name=enums.REPORT_NAME.TELEMETRY_USAGE,
                report_type=report_type,
                reading_type=reading_type,
                report_duration=timedelta(hours=1),
                sampling_rate=rate,
                unit=measurement.unit,
                scale="none",
            )
        for r_id in ("dr_state", "import_limit_w"):
            c.add_report(
                callback=self._sampler(r_id),
                resource_id=r_id,
                report_specifier_id=STATUS_SPEC,
                r_id=r_id,
                report_name=enums.REPORT_NAME.TELEMETRY_STATUS,
                report_type=enums.REPORT_TYPE.X_RESOURCE_STATUS,
                reading_type=enums.READING_TYPE.X_NOT_APPLICABLE,
                report_duration=timedelta(hours=1),
                sampling_rate=rate,
            )

    def _sampler(self, r_id: str):
        return lambda: self.sample(r_id)

    def sample(self, r_id: str) -> float | None:
        """The current value of one report point; None when there is none to report."""
        now = self.clock.now()
        meter = self.bus.first(Capability.GRID_METER)
        grid = None
        if meter is not None and self.bus.status(meter.info.device_id)[0] is DeviceStatus.OK:
            value = self.bus.value(meter.info.device_id, Quantity.GRID_POWER_W)
            grid = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        if r_id == "grid_power_w":
            return grid
        if r_id == "grid_import_wh":
            if meter is None:
                return None
            value = self.bus.value(meter.info.device_id, Quantity.ENERGY_IMPORT_WH)
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        if r_id in ("dr_baseline_w", "dr_shed_w"):
            for ev in self.dr.in_force(now):
                base = self.dr.baseline(ev.key, now)
                at = None if base is None else base.at(now)
                if at is not None:
                    return at if r_id == "dr_baseline_w" else (None if grid is None else at - grid)
            return None
        if r_id == "dr_state":
            mine = [e for e in self.dr.events(include_terminal=True) if e.source == self.name]
            if any(e.state is DRState.ACTIVE and e.opt is OptState.OPT_IN for e in mine):
                return DR_STATE_CODES["active"]
            if any(e.state is DRState.OPTED_OUT and e.end_ts > now for e in mine):
                return DR_STATE_CODES["opted_out"]
            if any(e.state is DRState.PENDING for e in mine):
                return DR_STATE_CODES["pending"]
            return DR_STATE_CODES["none"]
        if r_id == "import_limit_w":
            limit = self.dr.controller_limit_w(now)
            return -1.0 if limit is None else float(limit)
        return None

    async def _on_report_requests(self, payload: dict) -> None:
        """An oadrRegisteredReport or oadrCreateReport: start each requested report; answer oadrCreatedReport."""
        c = self.client
        pending = []
        code = 200
        for rr in payload.get("report_requests") or []:
            spec = rr.get("report_specifier") or {}
            rrid = str(rr.get("report_request_id"))
            spec_id = spec.get("report_specifier_id")
            report = next((r for r in c.reports if r.report_specifier_id == spec_id), None)
            known = {d.r_id for d in report.report_descriptions} if report is not None else set()
            r_ids = [
                str(p.get("r_id"))
                for p in spec.get("specifier_payloads") or []
                if str(p.get("r_id")) in known
            ]
            if report is None or not r_ids:
                log.warning("the VTN requested report %s (%s) which this VEN does not offer", rrid, spec_id)
                code = enums.STATUS_CODES.INVALID_ID
                continue
            granularity = spec.get("granularity")
            back = spec.get("report_back_duration")
            g = granularity.total_seconds() if isinstance(granularity, timedelta) else 0.0
            g = max(self.cfg.report_interval_s, g)
            b = back.total_seconds() if isinstance(back, timedelta) else 0.0
            b = max(g, b)
            old = self._requests.pop(rrid, None)
            if old is not None and old.task is not None:
                old.task.cancel()
            name = report.report_name.replace("METADATA_", "")
            req = _ReportRequest(rrid, spec_id, name, r_ids, g, b)
            req.task = asyncio.get_running_loop().create_task(
                self._report_loop(req), name=f"openadr-report-{rrid}"
            )
            self._requests[rrid] = req
            pending.append({"report_request_id": rrid})
            log.info("reporting %s (%s) every %.3g s, sampled every %.3g s", name, ", ".join(r_ids), b, g)
        request_id = payload.get("request_id") or (payload.get("response") or {}).get("request_id")
        msg = c._create_message(
            "oadrCreatedReport",
            response={
                "response_code": code,
                "response_description": "OK" if code == 200 else "ERROR",
                "request_id": request_id,
            },
            pending_reports=pending,
            ven_id=c.ven_id,
        )
        await c._perform_request("EiReport", msg)

    async def _cancel_report(self, payload: dict) -> None:
        c = self.client
        rrid = str(payload.get("report_request_id"))
        req = self._requests.pop(rrid, None)
        if req is not None and req.task is not None:
            req.task.cancel()
        msg = c._create_message(
            "oadrCanceledReport",
            response=_ok(payload.get("request_id")),
            ven_id=c.ven_id,
            report_request_id=rrid,
            pending_reports=[],
        )
        await c._perform_request("EiReport", msg)

    def _stop_reports(self) -> None:
        for req in self._requests.values():
            if req.task is not None:
                req.task.cancel()
        self._requests.clear()

    async def _report_loop(self, req: _ReportRequest) -> None:
        batch_start = self.clock.now()
        while True:
            await self.clock.sleep(req.granularity_s)
            now = self.clock.now()
            for r_id in req.r_ids:
                try:
                    value = self.sample(r_id)
                except Exception:
                    log.exception("report point %s failed", r_id)
                    value = None
                if value is not None:
                    req.samples.append((now, r_id, value))
            if now - batch_start >= req.report_back_s - 1e-6 and req.samples:
                batch, req.samples = req.samples, []
                try:
                    await self._send_update(req, batch)
                    batch_start = now
                except VTNUnavailable as exc:
                    log.debug(
                        "report %s not delivered (%s); kept for the next one", req.report_request_id, exc
                    )
                    req.samples = (batch + req.samples)[-MAX_BUFFERED_SAMPLES:]
                except Exception:
                    log.exception("report %s failed", req.report_request_id)

    async def _send_update(
        self, req: _ReportRequest, samples: list[tuple[float, str, float]], duration_s: float | None = None
    ) -> None:
        c = self.client
        intervals = [
            objects.ReportInterval(
                dtstart=datetime.fromtimestamp(ts, UTC),
                report_payload=objects.ReportPayload(r_id=r_id, value=round(value, 3)),
                duration=None if duration_s is None else timedelta(seconds=duration_s),
            )
            for ts, r_id, value in samples
        ]
        report = objects.Report(
            report_specifier_id=req.report_specifier_id,
            report_name=req.report_name,
            report_request_id=req.report_request_id,
            intervals=intervals,
            dtstart=min(i.dtstart for i in intervals),
            created_date_time=datetime.now(UTC),
        )
        msg = c._create_message(
            "oadrUpdateReport", ven_id=c.ven_id, request_id=utils.generate_id(), reports=[report]
        )
        message_type, payload = await self._request("EiReport", msg)
        if message_type == "oadrUpdatedReport" and isinstance(payload, dict) and payload.get("cancel_report"):
            await self._cancel_report(payload["cancel_report"])


def _ok(request_id: Any) -> dict:
    return {"response_code": 200, "response_description": "OK", "request_id": request_id}
