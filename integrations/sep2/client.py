"""The IEEE 2030.5 client: discovery from DeviceCapability, polling at each resource's pollRate, DER controls and
EndDeviceControls into the core's DR lifecycle, Responses to the server, direct PV/battery limits, and telemetry.

Flow (every link followed by its ``href``, nothing hard-coded but the DeviceCapability URL)::

    DeviceCapability ─▶ Time (offset to the server's clock, used for every schedule)
                     ─▶ EndDeviceList (our EndDevice by LFDI, else registered by POST) ─▶ Registration (PIN)
                        ─▶ FunctionSetAssignmentsList ─▶ DERProgramList (by primacy) ─▶ DefaultDERControl,
                                                                                         DERControlList
                                                                                         (─▶ DERCurve)
                                                      ─▶ DemandResponseProgramList ─▶ EndDeviceControlList
                                                      ─▶ TariffProfileList ─▶ RateComponentList (ReadingType)
                                                         ─▶ TimeTariffIntervalList ─▶ ConsumptionTariffIntervalList
                        ─▶ DERList ─▶ DER (DERCapability, DERSettings, DERStatus, DERAvailability: PUT)
                     ─▶ MirrorUsagePointList (POST a MirrorUsagePoint, then MirrorMeterReadings to it)

Lists are read whole, page by page (``?s=<start>&l=<limit>``, until ``all`` items are read), so an event withdrawn
from a long list is still noticed. Every event becomes a ``DREvent`` (``source = "sep2"``) in the ``DRManager``, which keeps its lifecycle (random
start offset, started, completed, cancelled) and tells this client (the source's ``DRResponder``), which POSTs
the Response to ``replyTo`` when ``responseRequired`` asks. Supersession (primacy, then creationTime) and
cancellation (EventStatus, or an event withdrawn from a complete list) are decided here; a superseded event
whose superseding event goes away (cancelled, withdrawn) while it is still within its window is reinstated as a
new version. Each TimeTariffInterval becomes a price event (``price-<mRID>``, ``price_per_kwh`` in the
TariffProfile's currency per kWh) for the planner (``DRManager.prices``). DERCurves a control links to
(opModVoltVar, opModFreqWatt...) are read, kept on the event (``source_ref["curves"]``) and reported in
``status()``, but not actuated: the inverter keeps its own curve settings. The control modes in
force (active controls, else DefaultDERControl) are applied directly to the PV inverter (``pv_limit_w``) and, for
opModTargetW/opModFixedW, to the battery, every ``tick_s``, also while the server is unreachable: what was last
received stays in force until it expires, then DefaultDERControl holds. Failed cycles retry with backoff; every
refused document is logged with what was wrong and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlparse

import aiohttp

from hems.bus import Bus
from hems.clock import Clock
from hems.dr import DREvent, DRManager, DRNotice, DRState
from hems.model import Capability, Command, CommandError, Quantity, Setting
from hems.store import Store
from hems.tasks import cancel_and_wait

from . import events as rules
from . import identity
from . import resources as r
from .config import Sep2Config

log = logging.getLogger("integrations.sep2")

LIST_LIMIT = 255  # items asked for per list page (the most the standard's ``l`` allows in one page)
MAX_LIST_PAGES = 64
TLS12_CIPHERS = "ECDHE-ECDSA-AES128-CCM8:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:!aNULL:!eNULL:!SHA1"
KV_STATE = "sep2.state"
_UNSET: Any = object()


class ServerUnavailable(Exception):
    """The server could not be reached or answered with an HTTP error."""


class Refused(ServerUnavailable):
    """The server answered something this client refuses (hostile or invalid XML, a wrong resource)."""


class RegistrationRefused(ServerUnavailable):
    """Our Registration's PIN is not the one configured: the server's controls are not taken."""


@dataclass
class _Cached:
    value: Any
    due_ts: float


@dataclass
class _Program:
    program: r.DERProgram
    default: r.DefaultDERControl | None = None


@dataclass
class Reported:
    """What was last sent (for status and tests)."""

    mirror_posts: int = 0
    der_puts: int = 0
    last_readings: dict[str, float] = field(default_factory=dict)


class Sep2Client:
    """One 2030.5 client (an EndDevice) talking to one server; the ``DRResponder`` of the ``sep2`` source."""

    def __init__(
        self,
        cfg: Sep2Config,
        *,
        dr: DRManager,
        bus: Bus,
        clock: Clock,
        store: Store | None = None,
        name: str = "sep2",
        rated_pv_w: float = 10000.0,
        rated_battery_w: float = 11500.0,
        tick_s: float = 1.0,
        min_poll_s: float = 1.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.dr = dr
        self.bus = bus
        self.clock = clock
        self.store = store
        self.name = name
        self.rated_pv_w = rated_pv_w
        self.rated_battery_w = rated_battery_w
        self.tick_s = tick_s
        self.min_poll_s = min_poll_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self._rng = rng or random.Random()
        self.lfdi = identity.lfdi_of_file(cfg.cert_file)
        self.sfdi = identity.sfdi_from_lfdi(self.lfdi)
        # discovery state
        self.offset_s = 0.0  # server time - local time
        self.time_known = False
        self.dcap: r.DeviceCapability | None = None
        self.end_device: r.EndDevice | None = None
        self.registration: r.Registration | None = None
        self.der: r.DER | None = None
        self.mup_href: str | None = None
        self.programs: dict[str, _Program] = {}
        self.tracked: dict[str, rules.Tracked] = {}  # mRID -> event as last seen
        self.price_intervals: dict[
            str, tuple[str, str]
        ] = {}  # TimeTariffInterval mRID -> (RateComponent, DR key)
        self._curve_modes_logged: set[str] = set()
        self._fingerprints: dict[str, tuple[str, int]] = {}  # mRID -> (content digest, modification number)
        self._duration_draws: dict[str, float] = {}
        self._cancel_codes: dict[str, int] = {}  # DR key -> Response status to send on its cancellation
        self._responded: set[tuple[str, int]] = set()
        self._pending: list[tuple[str, bytes, tuple[str, int]]] = []  # (url, body, (mRID, status))
        self._cache: dict[str, _Cached] = {}
        self._flush_lock = asyncio.Lock()
        # health
        self.refused = 0
        self.last_refusal = ""
        self.failures = 0
        self.last_error = ""
        self.last_ok_ts: float | None = None
        self.cycles = 0
        self.reported = Reported()
        self.applied_pv_w: Any = _UNSET
        # set by the runtime when its controller consults der_limits(): then this client sends no setpoints of
        # its own (two writers of one setpoint would fight)
        self.controlled_by_gateway = False
        self.applied_battery_w: Any = _UNSET
        self.modes_in_force: r.DERControlBase = r.DERControlBase()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopped = False
        self._wake = asyncio.Event()
        self._load()

    # -- persistence ----------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self.store is None:
            return
        saved = self.store.kv_get(KV_STATE, {}) or {}
        if saved.get("server_url") != self.cfg.server_url:
            return
        self._duration_draws = {str(k): float(v) for k, v in (saved.get("duration_draws") or {}).items()}
        self._responded = {(str(m), int(s)) for m, s in saved.get("responded") or []}
        self._fingerprints = {
            str(k): (str(v[0]), int(v[1])) for k, v in (saved.get("fingerprints") or {}).items()
        }

    def _save(self) -> None:
        if self.store is None:
            return
        self.store.kv_set(
            KV_STATE,
            {
                "server_url": self.cfg.server_url,
                "lfdi": self.lfdi,
                "duration_draws": self._duration_draws,
                "responded": sorted([list(x) for x in self._responded])[-500:],
                "fingerprints": {k: list(v) for k, v in list(self._fingerprints.items())[-500:]},
            },
        )

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopped = False
        self.dr.register_responder(self.name, self)
        loop = asyncio.get_running_loop()
        if not self._tasks:
            self._tasks = [
                loop.create_task(self._run_polls(), name=f"sep2-poll-{self.name}"),
                loop.create_task(self._run_controls(), name=f"sep2-controls-{self.name}"),
                loop.create_task(self._run_reports(), name=f"sep2-reports-{self.name}"),
            ]

    async def stop(self) -> None:
        self._stopped = True
        await cancel_and_wait(*self._tasks, what="2030.5 task")
        self._tasks = []
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def poll_now(self) -> None:
        self._cache.clear()
        self._wake.set()

    def status(self) -> dict:
        return {
            "server_url": self.cfg.server_url,
            "lfdi": self.lfdi,
            "sfdi": self.sfdi,
            "end_device": None if self.end_device is None else self.end_device.href,
            "registered": self.registration is not None,
            "time_offset_s": self.offset_s,
            "programs": sorted(
                ({"href": h, "primacy": p.program.primacy} for h, p in self.programs.items()),
                key=lambda d: d["primacy"],
            ),
            "controls": sorted(self.tracked),
            "curves": {
                mrid: {mode: c.to_json() for mode, c in t.curves.items()}
                for mrid, t in sorted(self.tracked.items())
                if t.curves
            },
            "prices": [
                {
                    "mrid": ev.source_ref.get("mrid"),
                    "start_ts": ev.effective_start_ts,
                    "end_ts": ev.end_ts,
                    "price_per_kwh": ev.price_per_kwh,
                    "currency": ev.source_ref.get("currency"),
                    "state": str(ev.state),
                }
                for ev in (self.dr.get(key) for _, key in self.price_intervals.values())
                if ev is not None
            ],
            "modes_in_force": self.modes_in_force.to_json(),
            "pv_limit_w": None if self.applied_pv_w is _UNSET else self.applied_pv_w,
            "cycles": self.cycles,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_ok_ts": self.last_ok_ts,
            "refused_documents": self.refused,
            "last_refusal": self.last_refusal,
            "mirror_posts": self.reported.mirror_posts,
        }

    # -- HTTP -----------------------------------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cfg.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # the suite IEEE 2030.5 mandates on TLS 1.2 (Python's default list leaves AES-CCM out), then the usual ones
        ctx.set_ciphers(TLS12_CIPHERS)
        ctx.load_cert_chain(self.cfg.cert_file, self.cfg.key_file)
        return ctx

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl(), limit=4),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=5),
                headers={"Accept": r.CONTENT_TYPE},
            )
        return self._session

    def url(self, href: str) -> str:
        """An href resolved against the server; links to another host are refused."""
        full = urljoin(self.cfg.server_url, href)
        if urlparse(full).netloc != urlparse(self.cfg.server_url).netloc or not full.startswith("https://"):
            raise Refused(f"link {href!r} leaves the server {self.cfg.base_url}")
        return full

    async def _request(
        self, method: str, href: str, body: bytes | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        url = self.url(href)
        headers = {"Content-Type": r.CONTENT_TYPE} if body is not None else None
        try:
            async with self._http().request(method, url, data=body, headers=headers) as resp:
                if resp.content_length is not None and resp.content_length > r.MAX_DOCUMENT_BYTES:
                    raise Refused(f"{method} {href}: answer of {resp.content_length} bytes is too large")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    data += chunk
                    if len(data) > r.MAX_DOCUMENT_BYTES:
                        raise Refused(f"{method} {href}: answer larger than {r.MAX_DOCUMENT_BYTES} bytes")
                return resp.status, bytes(data), dict(resp.headers)
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
            raise ServerUnavailable(f"{method} {url}: {exc.__class__.__name__}: {exc}") from None

    def _refuse(self, what: str, why: str) -> Refused:
        self.refused += 1
        self.last_refusal = f"{what}: {why}"
        log.warning("2030.5: refused %s from %s: %s", what, self.cfg.base_url, why)
        return Refused(f"{what}: {why}")

    async def _get(
        self,
        href: str,
        parse: Callable,
        *,
        list_page: bool = False,
        on_fresh: Callable[[Any], None] | None = None,
    ) -> Any:
        """GET and parse a resource, or its cached copy until its pollRate has passed."""
        now = self.clock.now()
        cached = self._cache.get(href)
        if cached is not None and now < cached.due_ts:
            return cached.value
        value = await (self._get_list(href, parse) if list_page else self._fetch(href, href, parse))
        if on_fresh is not None:
            on_fresh(value)
        rate = getattr(value, "poll_rate_s", None)
        if rate is None and self.dcap is not None:
            rate = self.dcap.poll_rate_s
        if rate is None:
            rate = self.cfg.poll_default_s
        self._cache[href] = _Cached(value, now + max(self.min_poll_s, float(rate)))
        return value

    async def _fetch(self, href: str, target: str, parse: Callable) -> Any:
        status, body, _ = await self._request("GET", target)
        if status != 200:
            raise ServerUnavailable(
                f"GET {target}: HTTP {status} {body[:200].decode('utf-8', 'replace')}".strip()
            )
        try:
            return parse(r.parse_xml(body))
        except (r.RefusedXML, r.ResourceError) as exc:
            raise self._refuse(f"GET {href}", str(exc)) from None

    async def _get_list(self, href: str, parse: Callable) -> r.ResourceList:
        """A whole list: pages of up to ``LIST_LIMIT`` items (``?s=<start>&l=<limit>``, the standard's query
        parameters) until ``all`` items are read. A server answering fewer ``results`` per page than asked
        (its own page size) is asked again from where it stopped. The list is ``complete`` only when every item
        was read and ``all`` stayed the same from page to page (a list changing while paged is not used to
        decide that an event was withdrawn)."""
        sep = "&" if "?" in href else "?"
        items: list[Any] = []
        seen: set[str] = set()
        first: r.ResourceList | None = None
        total = 0
        stable = True
        for _ in range(MAX_LIST_PAGES):
            page = await self._fetch(href, f"{href}{sep}s={len(items)}&l={LIST_LIMIT}", parse)
            if first is None:
                first, total = page, page.all
            elif page.all != total:
                stable = False
                total = max(total, page.all)
            for item in page.items:
                ident = getattr(item, "mrid", None) or getattr(item, "href", None) or str(len(items))
                if ident not in seen:
                    seen.add(ident)
                    items.append(item)
            if not page.items or len(items) >= total:
                break
        else:
            log.warning("2030.5: %s has more than %d pages; the rest is not read", href, MAX_LIST_PAGES)
        assert first is not None
        results = len(items) if stable else min(len(items), total - 1)
        return r.ResourceList(first.href, first.poll_rate_s, total, max(0, results), tuple(items))

    def _next_due(self) -> float:
        if not self._cache:
            return self.clock.now() + self.cfg.poll_default_s
        return min(c.due_ts for c in self._cache.values())

    # -- the poll loop --------------------------------------------------------------------------------------
    async def _run_polls(self) -> None:
        delay = self.backoff_initial_s
        while True:
            try:
                await self.cycle()
                if self.failures:
                    log.info(
                        "2030.5 server %s reachable again after %d failure(s)",
                        self.cfg.base_url,
                        self.failures,
                    )
                self.failures = 0
                self.last_ok_ts = self.clock.now()
                delay = self.backoff_initial_s
                await self._sleep(
                    max(0.05, min(self._next_due() - self.clock.now(), self.cfg.poll_default_s))
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.last_error = str(exc)
                self._cache.clear()  # rediscover from DeviceCapability when the server is back
                if not isinstance(exc, ServerUnavailable):
                    log.exception("2030.5 cycle failed")
                elif self.failures == 1 or isinstance(exc, Refused):
                    log.warning(
                        "2030.5 server %s: %s; retrying with backoff (controls received stay in force until "
                        "they expire, then DefaultDERControl)",
                        self.cfg.base_url,
                        exc,
                    )
                else:
                    log.debug("2030.5 server still failing (%d): %s", self.failures, exc)
                await self._sleep(delay * self._rng.uniform(0.8, 1.2))
                delay = min(self.backoff_max_s, delay * 2)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass

    async def cycle(self) -> None:
        """One walk of the resource tree from DeviceCapability (cached resources not yet due are reused)."""
        self.cycles += 1
        dcap = await self._get(self.cfg.server_url, r.parse_device_capability)
        self.dcap = dcap
        if dcap.time_link:
            await self._get(dcap.time_link, r.parse_time, on_fresh=self._on_time)
        edev = await self._end_device(dcap)
        self.end_device = edev
        if edev.registration_link:
            reg = await self._get(edev.registration_link, r.parse_registration)
            if self.cfg.pin is not None and reg.pin != self.cfg.pin:
                self.registration = None
                raise self._registration_refused(reg)
            self.registration = reg
        elif self.cfg.pin is not None:
            raise RegistrationRefused(f"EndDevice {edev.href} has no Registration to check the PIN against")
        fresh: dict[str, rules.Tracked] = {}
        complete: set[str] = set()  # programs whose control lists were read whole
        programs: dict[str, _Program] = {}
        program_lists: list[str] = []
        dr_lists: list[str] = []
        tariff_lists: list[str] = []
        if edev.fsa_list_link:
            fsas = await self._get(edev.fsa_list_link, r.parse_fsa_list, list_page=True)
            for fsa in fsas.items:
                if fsa.der_program_list_link:
                    program_lists.append(fsa.der_program_list_link)
                if fsa.demand_response_program_list_link:
                    dr_lists.append(fsa.demand_response_program_list_link)
                if fsa.tariff_profile_list_link:
                    tariff_lists.append(fsa.tariff_profile_list_link)
        if not program_lists and dcap.der_program_list_link:
            program_lists.append(dcap.der_program_list_link)
        if not dr_lists and dcap.demand_response_program_list_link:
            dr_lists.append(dcap.demand_response_program_list_link)
        if not tariff_lists and dcap.tariff_profile_list_link:
            tariff_lists.append(dcap.tariff_profile_list_link)
        for href in dict.fromkeys(program_lists):
            plist = await self._get(href, r.parse_der_program_list, list_page=True)
            for prog in sorted(plist.items, key=lambda p: p.primacy):
                state = _Program(prog)
                if prog.default_der_control_link:
                    state.default = await self._get(
                        prog.default_der_control_link, r.parse_default_der_control
                    )
                programs[prog.href or prog.mrid or href] = state
                if prog.der_control_list_link:
                    controls = await self._get(
                        prog.der_control_list_link, r.parse_der_control_list, list_page=True
                    )
                    for ev in controls.items:
                        curves = await self._curves(ev)
                        fresh[ev.mrid] = rules.Tracked(ev, prog.primacy, prog.href, curves)
                    if controls.complete:
                        complete.add(prog.href)
        for href in dict.fromkeys(dr_lists):
            dlist = await self._get(href, r.parse_dr_program_list, list_page=True)
            for prog in sorted(dlist.items, key=lambda p: p.primacy):
                if prog.end_device_control_list_link:
                    edcs = await self._get(
                        prog.end_device_control_list_link, r.parse_end_device_control_list, list_page=True
                    )
                    for ev in edcs.items:
                        fresh[ev.mrid] = rules.Tracked(ev, prog.primacy, prog.href)
                    if edcs.complete:
                        complete.add(prog.href)
        self.programs = programs
        await self._reconcile(fresh, complete)
        await self._poll_prices(list(dict.fromkeys(tariff_lists)))
        if edev.der_list_link and self.der is None:
            ders = await self._get(edev.der_list_link, r.parse_der_list, list_page=True)
            self.der = ders.items[0] if ders.items else None
        await self._flush_pending()

    def _registration_refused(self, reg: r.Registration) -> RegistrationRefused:
        why = (
            f"Registration {reg.href} has PIN {reg.pin}, not the configured integrations.{self.name}.pin; "
            "this server's controls are not taken (check the PIN the utility gave)"
        )
        self.refused += 1
        self.last_refusal = why
        log.error("2030.5: %s", why)
        return RegistrationRefused(why)

    def _on_time(self, t: r.Time) -> None:
        offset = float(t.current_time) - self.clock.now()
        if not self.time_known or abs(offset - self.offset_s) > 2.0:
            log.info("2030.5: server time is %+.0f s from the gateway's clock", offset)
        self.offset_s = offset
        self.time_known = True

    def server_now(self) -> int:
        return int(round(self.clock.now() + self.offset_s))

    async def _end_device(self, dcap: r.DeviceCapability) -> r.EndDevice:
        if not dcap.end_device_list_link:
            raise self._refuse(
                "DeviceCapability", "no EndDeviceListLink: cannot find or register this device"
            )
        edl = await self._get(dcap.end_device_list_link, r.parse_end_device_list, list_page=True)
        for ed in edl.items:
            if ed.lfdi == self.lfdi:
                return ed
        # not known yet: register by POST (the utility must still enrol the LFDI for controls to follow)
        body = r.end_device_doc(self.lfdi, self.sfdi, self.server_now())
        status, text, headers = await self._request("POST", dcap.end_device_list_link, body)
        if status not in (200, 201, 204):
            raise ServerUnavailable(
                f"registering EndDevice LFDI {self.lfdi}: HTTP {status} {text[:200].decode('utf-8', 'replace')}"
            )
        location = headers.get("Location") or headers.get("location")
        log.info("2030.5: registered EndDevice LFDI %s (SFDI %s) at %s", self.lfdi, self.sfdi, location)
        self._cache.pop(dcap.end_device_list_link, None)
        if location:
            return await self._get(location, r.parse_end_device)
        edl = await self._get(dcap.end_device_list_link, r.parse_end_device_list, list_page=True)
        for ed in edl.items:
            if ed.lfdi == self.lfdi:
                return ed
        raise ServerUnavailable(f"the server accepted EndDevice LFDI {self.lfdi} but does not list it")

    # -- DER curves -----------------------------------------------------------------------------------------
    async def _curves(self, ev: r.Event) -> dict[str, r.DERCurve]:
        """The DERCurves a DERControl links to (opModVoltVar, opModFreqWatt, ...), each GET at its pollRate. A
        curve that cannot be read or is not the curve its link names is left out (logged); the control's
        other modes are still taken."""
        if ev.base is None:
            return {}
        out: dict[str, r.DERCurve] = {}
        for mode, href in ev.base.curve_links().items():
            try:
                curve = await self._get(href, r.parse_der_curve)
            except ServerUnavailable as exc:  # refused, or not there: the curve last read is kept, if any
                known = self.tracked.get(ev.mrid)
                if known is not None and mode in known.curves and known.curves[mode].href in ("", href):
                    out[mode] = known.curves[mode]
                log.warning("2030.5: DERControl %s: %s curve %s not read: %s", ev.mrid, mode, href, exc)
                continue
            if curve.mode != mode:
                log.warning(
                    "2030.5: DERControl %s: %s links to a %s curve (%s); not used",
                    ev.mrid,
                    mode,
                    curve.mode,
                    href,
                )
                continue
            out[mode] = curve
            if mode not in self._curve_modes_logged:
                self._curve_modes_logged.add(mode)
                log.warning(
                    "2030.5: DERControl %s sets %s (curve %s, %d points): recorded, but the gateway does not "
                    "actuate %s on the inverter yet (the inverter's own settings stay in force)",
                    ev.mrid,
                    mode,
                    href,
                    len(curve.points),
                    mode,
                )
        return out

    # -- prices ---------------------------------------------------------------------------------------------
    async def _poll_prices(self, tariff_lists: list[str]) -> None:
        """TariffProfileList → TariffProfile → RateComponentList → RateComponent → TimeTariffIntervalList →
        TimeTariffInterval → ConsumptionTariffIntervalList: each interval becomes a price event in the DR
        manager; one withdrawn from a complete list, or cancelled by its EventStatus, is cancelled."""
        fresh: dict[str, tuple[r.TimeTariffInterval, DREvent]] = {}
        complete: set[str] = set()  # rate components whose interval lists were read whole
        now = self.clock.now()
        for href in tariff_lists:
            profiles = await self._get(href, r.parse_tariff_profile_list, list_page=True)
            for tp in profiles.items:
                if not tp.rate_component_list_link:
                    continue
                rcs = await self._get(
                    tp.rate_component_list_link, r.parse_rate_component_list, list_page=True
                )
                for rc in rcs.items:
                    if not rc.time_tariff_interval_list_link:
                        continue
                    rt = None
                    if rc.reading_type_link:
                        rt = await self._get(rc.reading_type_link, r.parse_reading_type)
                    ttis = await self._get(
                        rc.time_tariff_interval_list_link, r.parse_time_tariff_interval_list, list_page=True
                    )
                    if ttis.complete:
                        complete.add(rc.href)
                    for tti in ttis.items:
                        if tti.end - self.offset_s <= now and tti.mrid not in self.price_intervals:
                            continue  # over before we saw it
                        if not tti.consumption_tariff_interval_list_link:
                            continue
                        ctis = await self._get(
                            tti.consumption_tariff_interval_list_link,
                            r.parse_consumption_tariff_interval_list,
                            list_page=True,
                        )
                        if not ctis.items:
                            continue
                        blocks = sorted(ctis.items, key=lambda c: c.consumption_block)
                        price = r.price_per_kwh(blocks[0].price, tp, rt)
                        dre = rules.price_event(
                            tti,
                            price,
                            offset_s=self.offset_s,
                            market_context=tp.href,
                            primacy=tp.primacy,
                            ref={
                                "tariff_profile": tp.href,
                                "rate_component": rc.href,
                                "rate_code": tp.rate_code,
                                "currency": tp.currency,
                                "price_power_of_ten_multiplier": tp.price_power_of_ten_multiplier,
                                "blocks": [
                                    {
                                        "consumption_block": c.consumption_block,
                                        "start_value": c.start_value,
                                        "price": c.price,
                                        "price_per_kwh": r.price_per_kwh(c.price, tp, rt),
                                    }
                                    for c in blocks
                                ],
                            },
                        )
                        fresh[tti.mrid] = (tti, dre)
        for mrid, (tti, dre) in fresh.items():
            key = dre.key
            current = self.dr.get(key)
            status = tti.event_status
            if status is not None and (status.cancelled or status.superseded):
                if current is not None and not current.terminal:
                    await self.dr.cancel(key, reason="price interval cancelled by the 2030.5 server")
                continue
            content = hashlib.sha256(repr((tti.start, tti.duration, dre.price_per_kwh)).encode()).hexdigest()[
                :16
            ]
            fkey = f"tti:{mrid}"
            seen = self._fingerprints.get(fkey)
            mod = 0 if seen is None else (seen[1] if seen[0] == content else seen[1] + 1)
            if seen != (content, mod):
                self._fingerprints[fkey] = (content, mod)
                self._save()
            try:
                await self.dr.receive(replace(dre, modification_number=mod))
            except ValueError as exc:
                log.warning("2030.5: refusing price interval %s: %s", mrid, exc)
        for mrid, (rc_href, key) in self.price_intervals.items():
            if mrid in fresh or rc_href not in complete:
                continue
            current = self.dr.get(key)
            if current is not None and not current.terminal:
                await self.dr.cancel(key, reason="price interval withdrawn from the 2030.5 server's list")
        kept = {m: v for m, v in self.price_intervals.items() if m not in fresh and v[0] not in complete}
        self.price_intervals = {
            **kept,
            **{m: (d.source_ref["rate_component"], d.key) for m, (_, d) in fresh.items()},
        }

    # -- events ---------------------------------------------------------------------------------------------
    async def _reconcile(self, fresh: dict[str, rules.Tracked], complete: set[str]) -> None:
        now = self.clock.now()
        beaten = rules.superseded(list(fresh.values()))
        for mrid, t in fresh.items():
            ev = t.event
            key = t.key
            current = self.dr.get(key)
            if ev.event_status.cancelled:
                if current is not None and not current.terminal:
                    self._cancel_codes[key] = rules.CANCELLED
                    await self.dr.cancel(key, reason="cancelled by the 2030.5 server")
                continue
            if ev.event_status.superseded or mrid in beaten:
                if current is not None and not current.terminal:
                    by = beaten.get(mrid, "the server")
                    await self.dr.supersede(key, reason=f"superseded by {by}")
                elif current is None and rules.response_wanted(ev.response_required, rules.SUPERSEDED):
                    self._respond(t, rules.SUPERSEDED)
                continue
            content = hashlib.sha256(
                repr((ev.start, ev.duration, ev.randomize_start, ev.randomize_duration, ev.base,
                      ev.target_reduction_w, ev.appliance_load_reduction, sorted(t.curves.items()))).encode()
            ).hexdigest()[:16]  # fmt: skip
            seen = self._fingerprints.get(mrid)
            mod = 0 if seen is None else (seen[1] if seen[0] == content else seen[1] + 1)
            if current is not None and current.state is DRState.SUPERSEDED and now < current.end_ts:
                # what superseded it is gone (cancelled, withdrawn) while it is still within its window:
                # brought back as a new version
                mod = max(mod, current.modification_number + 1)
                log.info("2030.5: %s %s reinstated (what superseded it is gone)", ev.kind, mrid)
            changed = seen != (content, mod)
            self._fingerprints[mrid] = (content, mod)
            if mrid not in self._duration_draws:
                rd = ev.randomize_duration
                self._duration_draws[mrid] = self._rng.uniform(min(0, rd), max(0, rd)) if rd else 0.0
                changed = True
            if changed:
                self._save()
            dre = rules.to_dr_event(
                t,
                offset_s=self.offset_s,
                duration_extra_s=self._duration_draws[mrid],
                modification_number=mod,
            )
            if (
                current is None
                and ev.duration > 0
                and dre.start_ts + dre.randomization_s + dre.duration_s <= now
            ):
                if rules.response_wanted(ev.response_required, rules.RECEIVED):
                    self._respond(t, rules.REJECTED_EXPIRED)
                continue  # over before we saw it
            try:
                await self.dr.receive(dre)
            except ValueError as exc:
                log.warning("2030.5: refusing %s %s: %s", ev.kind, mrid, exc)
                self._respond(t, rules.REJECTED_INVALID)
        for mrid, t in self.tracked.items():
            if mrid in fresh or t.program_href not in complete:
                continue
            current = self.dr.get(t.key)
            if current is not None and not current.terminal:
                self._cancel_codes[t.key] = rules.CANCELLED
                await self.dr.cancel(t.key, reason="withdrawn from the 2030.5 server's list")
        kept = {m: t for m, t in self.tracked.items() if m not in fresh and t.program_href not in complete}
        self.tracked = {**kept, **fresh}

    # -- DRResponder ----------------------------------------------------------------------------------------
    async def send_status(self, event: DREvent, status: DRNotice) -> None:
        code = rules.NOTICE_STATUS.get(status)
        if status is DRNotice.CANCELLED:
            code = self._cancel_codes.pop(event.key, rules.CANCELLED)
        if code is None:
            return
        ref = event.source_ref
        if not ref.get("reply_to") or not rules.response_wanted(int(ref.get("response_required", 0)), code):
            return
        self._respond_ref(ref, code)
        await self._flush_pending()

    async def send_report(self, event: DREvent, report: dict) -> None:
        log.debug("2030.5 has no verification report for %s; not sent", event.key)

    def _respond(self, t: rules.Tracked, code: int) -> None:
        ev = t.event
        if ev.reply_to:
            self._respond_ref({"kind": ev.kind, "mrid": ev.mrid, "reply_to": ev.reply_to}, code)

    def _respond_ref(self, ref: dict, code: int) -> None:
        mark = (str(ref["mrid"]), code)
        if mark in self._responded or any(p[2] == mark for p in self._pending):
            return
        kind = "DERControlResponse" if ref.get("kind") == "DERControl" else "DrResponse"
        body = r.response_doc(kind, self.server_now(), self.lfdi, code, str(ref["mrid"]))
        self._pending.append((str(ref["reply_to"]), body, mark))

    async def _flush_pending(self) -> None:
        async with self._flush_lock:  # the poll loop and the DR manager's responder task both flush
            await self._flush_pending_locked()

    async def _flush_pending_locked(self) -> None:
        while self._pending and not self._stopped:
            href, body, mark = self._pending[0]
            try:
                status, text, _ = await self._request("POST", href, body)
            except Refused as exc:
                log.warning("2030.5: Response %s to %s dropped: %s", mark, href, exc)
                self._pending.pop(0)
                continue
            except ServerUnavailable as exc:
                log.info("2030.5: Response %s not delivered yet (%s); retrying with the next poll", mark, exc)
                return
            self._pending.pop(0)
            if status in (200, 201, 204):
                self._responded.add(mark)
                self._save()
            else:
                log.warning("2030.5: Response %s to %s refused: HTTP %s %s", mark, href, status, text[:200])

    # -- controls in force ----------------------------------------------------------------------------------
    def controls_in_force(self, now: float | None = None) -> r.DERControlBase:
        now = self.clock.now() if now is None else now
        active = []
        for t in self.tracked.values():
            if t.event.kind != "DERControl":
                continue
            ev = self.dr.get(t.key)
            if ev is not None and ev.in_force and ev.effective_start_ts <= now < ev.end_ts:
                active.append(t)
        defaults = sorted(
            (p for p in self.programs.values() if p.default is not None), key=lambda p: p.program.primacy
        )
        default = None
        for p in reversed(defaults):  # the lowest primacy value ends up winning each mode
            assert p.default is not None
            default = (
                rules.merge([], p.default.base) if default is None else _overlay(default, p.default.base)
            )
        return rules.merge(active, default)

    async def _run_controls(self) -> None:
        while True:
            try:
                await self.apply_controls()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("2030.5: applying controls failed")
            await self.clock.sleep(self.tick_s)

    def der_limits(self, now: float | None = None) -> dict:
        """The utility's limits in force now for the gateway's controller (defaults included): ``export_cap_w``,
        ``generation_cap_w`` (0 when told to disconnect or cease to energize), ``battery_charge_power_w``
        (opModTargetW / opModFixedW) and ``battery_max_charge_w`` (opModLoadLimW), each only when set. The controller tightens its decision with them."""
        base = self.controls_in_force(now)
        out: dict = {}
        if base.op_mod_exp_lim_w is not None:
            out["export_cap_w"] = max(0.0, float(base.op_mod_exp_lim_w))
        gen = [v for v in (base.op_mod_gen_lim_w,) if v is not None]
        if base.op_mod_max_lim_pct is not None and math.isfinite(self.rated_pv_w):
            gen.append(base.op_mod_max_lim_pct / 100.0 * self.rated_pv_w)
        if base.op_mod_connect is False or base.op_mod_energize is False:
            gen.append(0.0)
        if gen:
            out["generation_cap_w"] = max(0.0, min(gen))
        batt = rules.battery_setpoint_w(base, self.rated_battery_w)
        if batt is not None:
            out["battery_charge_power_w"] = batt
        if base.op_mod_load_lim_w is not None:  # the DER's own consumption: the battery's charging power
            out["battery_max_charge_w"] = max(0.0, float(base.op_mod_load_lim_w))
        return out

    async def apply_controls(self) -> None:
        base = self.controls_in_force()
        self.modes_in_force = base
        if self.controlled_by_gateway:  # the controller applies der_limits() with the other limits
            return
        pv = rules.pv_limit_w(base, self.rated_pv_w)
        if pv != self.applied_pv_w and not (pv is None and self.applied_pv_w is _UNSET):
            if await self._send_all(Capability.PV_INVERTER, Setting.PV_LIMIT_W, pv):
                log.info("2030.5: PV limit %s", "removed" if pv is None else f"{pv:.0f} W")
                self.applied_pv_w = pv
        batt = rules.battery_setpoint_w(base, self.rated_battery_w)
        if batt != self.applied_battery_w and not (batt is None and self.applied_battery_w is _UNSET):
            if await self._send_all(Capability.BATTERY, Setting.BATTERY_CHARGE_POWER_W, batt):
                self.applied_battery_w = batt

    async def _send_all(self, cap: Capability, setting: Setting, value: float | None) -> bool:
        ok = True
        for dev in self.bus.devices(cap):
            try:
                await self.bus.send(Command(dev.info.device_id, setting, value, source=self.name))
            except CommandError as exc:
                ok = False
                log.warning("2030.5: %s %s = %s not applied: %s", dev.info.device_id, setting, value, exc)
        return ok

    # -- reporting ------------------------------------------------------------------------------------------
    async def _run_reports(self) -> None:
        while True:
            await self.clock.sleep(
                min(self.cfg.post_rate_s, 1.0) if self.dcap is None else self.cfg.post_rate_s
            )
            if self.dcap is None or self.end_device is None:
                continue
            try:
                await self.post_readings()
                await self.put_der_status()
            except asyncio.CancelledError:
                raise
            except ServerUnavailable as exc:
                log.info("2030.5: telemetry not sent (%s); next try in %.0f s", exc, self.cfg.post_rate_s)
            except Exception:
                log.exception("2030.5: telemetry failed")

    def _latest(self, cap: Capability, quantity: str) -> float | None:
        for dev in self.bus.devices(cap):
            v = self.bus.value(dev.info.device_id, quantity)
            if isinstance(v, int | float) and not isinstance(v, bool):
                return float(v)
        return None

    def readings(self) -> dict[str, float]:
        out = {}
        for name, cap, q in (
            ("site_power_w", Capability.GRID_METER, Quantity.GRID_POWER_W),
            ("energy_delivered_wh", Capability.GRID_METER, Quantity.ENERGY_IMPORT_WH),
            ("energy_received_wh", Capability.GRID_METER, Quantity.ENERGY_EXPORT_WH),
            ("battery_soc_pct", Capability.BATTERY, Quantity.SOC_PCT),
        ):
            v = self._latest(cap, q)
            if v is not None:
                out[name] = v
        return out

    async def post_readings(self) -> None:
        dcap = self.dcap
        if dcap is None or not dcap.mirror_usage_point_list_link:
            return
        values = self.readings()
        if not values:
            return
        if self.mup_href is None:
            body = mirror_usage_point_doc(self.lfdi, list(MIRROR_READINGS))
            status, text, headers = await self._request("POST", dcap.mirror_usage_point_list_link, body)
            location = headers.get("Location") or headers.get("location")
            if status not in (200, 201, 204) or not location:
                raise ServerUnavailable(f"MirrorUsagePoint not created: HTTP {status} {text[:200]!r}")
            self.mup_href = location
            log.info("2030.5: MirrorUsagePoint at %s", location)
        body = mirror_readings_doc(self.lfdi, values, self.server_now())
        status, text, _ = await self._request("POST", self.mup_href, body)
        if status == 404:
            self.mup_href = None  # the server forgot it: create it again next time
        if status not in (200, 201, 204):
            raise ServerUnavailable(f"MirrorMeterReadings: HTTP {status} {text[:200]!r}")
        self.reported.mirror_posts += 1
        self.reported.last_readings = values

    async def put_der_status(self) -> None:
        der = self.der
        if der is None:
            return
        now = self.server_now()
        pv_avail = self._latest(Capability.PV_INVERTER, Quantity.PV_AVAILABLE_W)
        soc = self._latest(Capability.BATTERY, Quantity.SOC_PCT)
        docs = {
            der.der_capability_link: r.element(
                "DERCapability",
                modesSupported=f"{MODES_SUPPORTED:08X}",
                rtgMaxW=r.active_power(self.rated_pv_w),
                type=83 if self.bus.devices(Capability.BATTERY) else 4,
            ),
            der.der_settings_link: r.element(
                "DERSettings",
                modesEnabled=f"{MODES_SUPPORTED:08X}",
                setGradW=0,
                setMaxW=r.active_power(self.rated_pv_w),
                updatedTime=now,
            ),
            der.der_status_link: r.element(
                "DERStatus",
                genConnectStatus={"dateTime": now, "value": "01" if self.applied_pv_w != 0.0 else "00"},
                readingTime=now,
                stateOfChargeStatus=None if soc is None else {"dateTime": now, "value": round(soc * 100)},
            ),
            der.der_availability_link: r.element(
                "DERAvailability",
                readingTime=now,
                statWAvail=None if pv_avail is None else r.active_power(pv_avail),
            ),
        }
        for href, el in docs.items():
            if not href:
                continue
            status, text, _ = await self._request("PUT", href, r.to_bytes(el))
            if status == 404:
                self.der = None  # the server no longer has it: look up the DERList again
                raise ServerUnavailable(f"PUT {href}: HTTP 404")
            if status not in (200, 201, 204):
                log.warning("2030.5: PUT %s refused: HTTP %s %s", href, status, text[:200])
            else:
                self.reported.der_puts += 1


def _overlay(low: r.DERControlBase, high: r.DERControlBase) -> r.DERControlBase:
    """``high``'s modes over ``low``'s."""
    values = {n: getattr(high, n) if getattr(high, n) is not None else getattr(low, n) for n in low.__slots__}
    return r.DERControlBase(**values)


# DERControlType bits of what this client acts on: opModConnect (0), opModEnergize (1), opModMaxLimW (9),
# opModTargetW (12), opModFixedW (4)
MODES_SUPPORTED = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 9) | (1 << 12)

# name -> (description, uom, kind, flowDirection, accumulationBehaviour, powerOfTenMultiplier)
MIRROR_READINGS: dict[str, tuple[str, int, int, int, int, int]] = {
    "site_power_w": ("Site real power (W, + delivered to the premises)", 38, 12, 1, 12, 0),
    "energy_delivered_wh": ("Energy delivered to the premises (Wh)", 72, 37, 1, 9, 0),
    "energy_received_wh": ("Energy received from the premises (Wh)", 72, 37, 19, 9, 0),
    "battery_soc_pct": ("Battery state of charge (%)", 0, 0, 0, 12, -2),
}


def mirror_mrid(lfdi: str, name: str) -> str:
    return hashlib.sha256(f"{lfdi}:{name}".encode()).hexdigest()[:32].upper()


def _reading_type(name: str) -> dict:
    _, uom, kind, flow, acc, mult = MIRROR_READINGS[name]
    return {
        "accumulationBehaviour": acc,
        "commodity": 1,
        "flowDirection": flow,
        "kind": kind,
        "powerOfTenMultiplier": mult,
        "uom": uom,
    }


def mirror_usage_point_doc(lfdi: str, names: list[str]) -> bytes:
    mup = r.element(
        "MirrorUsagePoint",
        mRID=mirror_mrid(lfdi, "usage-point"),
        description="HEMS gateway site meter",
        roleFlags="03",
        serviceCategoryKind=0,
        status=1,
        deviceLFDI=lfdi,
    )
    for name in names:
        mmr = r.add(mup, "MirrorMeterReading")
        r.add(mmr, "mRID", mirror_mrid(lfdi, name))
        r.add(mmr, "description", MIRROR_READINGS[name][0])
        r.add(mmr, "ReadingType", _reading_type(name))
    return r.to_bytes(mup)


def mirror_readings_doc(lfdi: str, values: dict[str, float], server_ts: int, period_s: int = 0) -> bytes:
    lst = r.element("MirrorMeterReadingList", {"all": len(values), "results": len(values)})
    for name, value in values.items():
        if name not in MIRROR_READINGS:
            continue
        mult = MIRROR_READINGS[name][5]
        mmr = r.add(lst, "MirrorMeterReading")
        r.add(mmr, "mRID", mirror_mrid(lfdi, name))
        r.add(mmr, "description", MIRROR_READINGS[name][0])
        rd = r.add(mmr, "Reading")
        r.add(rd, "timePeriod", {"duration": period_s, "start": server_ts})
        r.add(rd, "value", round(value / 10.0**mult))
        r.add(mmr, "ReadingType", _reading_type(name))
    return r.to_bytes(lst)
