"""A simulated IEEE 2030.5 utility server (aiohttp) for dev mode and tests, over mutual TLS with a test PKI made on
the fly (``make_pki``: a CA, a server certificate for 127.0.0.1/localhost, a device certificate whose LFDI the
server knows and has registered with a PIN).

Resources: ``/dcap`` → ``/tm``, ``/edev`` (only the caller's EndDevice, found by the LFDI of its TLS
certificate; POST registers one), ``/edev/{i}/reg``, ``/edev/{i}/fsa``, ``/edev/{i}/der`` (DER status resources,
PUT), ``/derp`` (DERPrograms with DefaultDERControl and DERControlList), ``/dr`` (a DemandResponseProgram with
EndDeviceControls), ``/rsps/{p}/rsp`` (Responses, recorded), ``/mup`` (MirrorUsagePoints; readings recorded).
``/derp/{p}/dc`` (DERCurves), ``/tp`` (a TariffProfile → RateComponent (``/rt/0``: kWh) →
TimeTariffIntervals → ConsumptionTariffIntervals). Every list carries ``pollRate`` and is served in pages of at
most ``page_size`` items (``?s=<start>&l=<limit>``). A small JSON API (same port and TLS) creates resources:
``POST /api/controls`` (``"curves": {"opModVoltVar": index}`` links curves), ``POST /api/controls/{mrid}/cancel``,
``DELETE /api/controls/{mrid}`` (withdrawn from the list), ``POST /api/curves``, ``POST /api/prices``,
``POST /api/prices/{mrid}/cancel``, ``DELETE /api/prices/{mrid}``, ``POST /api/edc``, ``GET /api/responses``,
``GET /api/readings``. ``hostile[path] = bytes`` serves a hostile document instead of a resource (tests).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import signal
import ssl
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from hems import pki
from hems.clock import Clock, RealClock

from . import identity
from . import resources as r

log = logging.getLogger("integrations.sep2.server")

DEFAULT_PORT = 8443
DEFAULT_PIN = 111115


# ------------------------------------------------------------------------------------------------------------
# test PKI


@dataclass(frozen=True)
class Pki:
    dir: str
    ca_file: str
    server_cert: str
    server_key: str
    device_cert: str
    device_key: str
    device_lfdi: str
    device_sfdi: int


def make_pki(directory: str | os.PathLike) -> Pki:
    """A CA, the server's certificate (127.0.0.1, localhost) and one device certificate, EC P-256."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key = pki.new_key()
    ca = pki.certificate("HEMS 2030.5 test CA", ca_key, ca=True, days=30)
    ca_file, _ = pki.write_pem(d / "ca", ca, ca_key)
    s_key = pki.new_key()
    server = pki.certificate("localhost", s_key, ca.subject, ca_key, server=True, days=30)
    server_cert, server_key = pki.write_pem(d / "server", server, s_key)
    d_key = pki.new_key()
    dev = pki.certificate("hems-gateway", d_key, ca.subject, ca_key, days=30)
    device_cert, device_key = pki.write_pem(d / "device", dev, d_key)
    return Pki(
        str(d),
        ca_file,
        server_cert,
        server_key,
        device_cert,
        device_key,
        identity.lfdi(dev),
        identity.sfdi(dev),
    )


def new_mrid(*parts: Any) -> str:
    return hashlib.sha256(repr((parts, os.urandom(8))).encode()).hexdigest()[:32].upper()


# ------------------------------------------------------------------------------------------------------------
# the server


@dataclass
class SimControl:
    mrid: str
    program: int
    creation_time: int
    start: int
    duration: int
    modes: dict[str, Any]  # DERControlBase children (ActivePower as watts)
    randomize_start: int = 0
    randomize_duration: int = 0
    response_required: str = "03"
    status: int | None = None  # None = scheduled/active by time; 2 cancelled; 4 superseded
    kind: str = "DERControl"  # or EndDeviceControl
    description: str = ""


@dataclass
class SimCurve:
    index: int
    program: int
    mrid: str
    curve_type: int  # DERCurveType: 11 volt-var, 12 volt-watt, 0 freq-watt...
    points: list[tuple[int, int]]  # (xvalue, yvalue) as sent, before the multipliers
    x_multiplier: int = 0
    y_multiplier: int = 0
    y_ref_type: int = 3  # % of var availability
    ramp_tms: dict[str, int] = field(default_factory=dict)  # openLoopTms, rampDecTms, rampIncTms, rampPT1Tms
    v_ref: int | None = None  # hundredths of a percent
    creation_time: int = 0
    description: str = ""


@dataclass
class SimPrice:
    """A TimeTariffInterval with its ConsumptionTariffIntervals (raw prices, by consumption block)."""

    mrid: str
    creation_time: int
    start: int
    duration: int
    blocks: list[tuple[int, int]]  # (consumptionBlock, price as sent)
    tou_tier: int | None = None
    status: int | None = None  # None = scheduled/active by time; 2 cancelled


@dataclass
class SimProgram:
    index: int
    mrid: str
    primacy: int
    description: str
    default: dict[str, Any] = field(default_factory=dict)


POWER_MODES = ("opModExpLimW", "opModImpLimW", "opModGenLimW", "opModLoadLimW", "opModTargetW")
ORDER = tuple(
    sorted(
        (
            "opModConnect",
            "opModEnergize",
            "opModExpLimW",
            "opModFixedW",
            "opModGenLimW",
            "opModImpLimW",
            "opModLoadLimW",
            "opModMaxLimW",
            "opModTargetW",
            *r.CURVE_MODES,
        )
    )
)


class SimServer:
    def __init__(
        self,
        pki: Pki,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        time_offset_s: float = 0.0,
        poll_rate_s: int = 1,
        pin: int = DEFAULT_PIN,
        preregister: bool = True,
        strict_tls12: bool = False,
        page_size: int = 255,
    ) -> None:
        self.pki = pki
        self.host = host
        self.port = port
        self.clock = clock or RealClock()
        self.time_offset_s = time_offset_s
        self.poll_rate_s = poll_rate_s
        self.pin = pin
        self.strict_tls12 = (
            strict_tls12  # TLS 1.2 with only TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, as 2030.5 mandates
        )
        self.end_devices: list[dict[str, Any]] = []
        if preregister:
            self.end_devices.append({"lfdi": pki.device_lfdi, "sfdi": pki.device_sfdi, "changed": self.now()})
        self.programs = [
            SimProgram(0, new_mrid("p0"), 1, "Utility emergency program"),
            SimProgram(1, new_mrid("p1"), 10, "Utility export management"),
        ]
        self.page_size = max(1, int(page_size))  # items per list page at most, whatever ``l`` asks
        self.controls: list[SimControl] = []
        self.curves: list[SimCurve] = []
        self.prices: list[SimPrice] = []
        # the tariff: ISO 4217 currency (840 USD), prices sent in 10^price_multiplier currency units per kWh
        self.currency = 840
        self.price_multiplier = -4
        self.responses: list[r.Response] = []
        self.readings: list[r.MirrorReading] = []
        self.mups: dict[int, bytes] = {}
        self.der_resources: dict[str, bytes] = {}
        self.hostile: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.queries: list[tuple[str, str]] = []  # with the query string (?s=..&l=..)
        self._runner: web.AppRunner | None = None

    # -- time and state -------------------------------------------------------------------------------------
    def now(self) -> int:
        return int(self.clock.now() + self.time_offset_s)

    def add_control(
        self,
        *,
        program: int = 1,
        start: int | None = None,
        duration_s: int = 3600,
        export_limit_w: float | None = None,
        import_limit_w: float | None = None,
        gen_limit_w: float | None = None,
        max_lim_pct: float | None = None,
        target_w: float | None = None,
        connect: bool | None = None,
        randomize_start_s: int = 0,
        randomize_duration_s: int = 0,
        response_required: str = "03",
        creation_time: int | None = None,
        description: str = "",
        curves: dict[str, int] | None = None,
    ) -> str:
        """A DERControl in program ``program``; ``start`` in server time (default: now); ``curves`` = {mode name
        (opModVoltVar...): index of a curve from ``add_curve``}. Returns its mRID."""
        modes: dict[str, Any] = {}
        for mode, index in (curves or {}).items():
            if mode not in r.CURVE_MODES:
                raise ValueError(f"{mode!r} is not a DERCurve mode; one of {', '.join(r.CURVE_MODES)}")
            c = self.curves[int(index)]
            modes[mode] = f"/derp/{c.program}/dc/{c.index}"
        for name, v in (
            ("opModExpLimW", export_limit_w),
            ("opModImpLimW", import_limit_w),
            ("opModGenLimW", gen_limit_w),
            ("opModTargetW", target_w),
            ("opModConnect", connect),
        ):
            if v is not None:
                modes[name] = v
        if max_lim_pct is not None:
            modes["opModMaxLimW"] = round(max_lim_pct * 100)
        mrid = new_mrid("derc", len(self.controls))
        self.controls.append(
            SimControl(
                mrid,
                program,
                self.now() if creation_time is None else creation_time,
                self.now() if start is None else int(start),
                int(duration_s),
                modes,
                randomize_start_s,
                randomize_duration_s,
                response_required,
                description=description,
            )
        )
        return mrid

    def add_end_device_control(
        self,
        *,
        start: int | None = None,
        duration_s: int = 3600,
        target_reduction_kw: int | None = None,
        response_required: str = "03",
    ) -> str:
        mrid = new_mrid("edc", len(self.controls))
        modes = {} if target_reduction_kw is None else {"TargetReduction": target_reduction_kw}
        self.controls.append(
            SimControl(
                mrid,
                0,
                self.now(),
                self.now() if start is None else int(start),
                int(duration_s),
                modes,
                response_required=response_required,
                kind="EndDeviceControl",
            )
        )
        return mrid

    def add_curve(
        self,
        points: list[tuple[int, int]] | list[list[int]],
        *,
        curve_type: int = 11,
        program: int = 1,
        x_multiplier: int = 0,
        y_multiplier: int = 0,
        y_ref_type: int = 3,
        v_ref: int | None = None,
        ramp_tms: dict[str, int] | None = None,
        description: str = "",
    ) -> int:
        """A DERCurve in program ``program`` (points as sent: ``(xvalue, yvalue)`` before the multipliers);
        returns its index, for ``add_control(curves={"opModVoltVar": index})``."""
        index = len(self.curves)
        self.curves.append(
            SimCurve(
                index,
                program,
                new_mrid("curve", index),
                int(curve_type),
                [(int(x), int(y)) for x, y in points],
                x_multiplier,
                y_multiplier,
                y_ref_type,
                dict(ramp_tms or {}),
                v_ref,
                self.now(),
                description,
            )
        )
        return index

    def add_price(
        self,
        *,
        price_per_kwh: float | None = None,
        start: int | None = None,
        duration_s: int = 3600,
        blocks: list[tuple[int, int]] | None = None,
        tou_tier: int | None = None,
    ) -> str:
        """A TimeTariffInterval; ``price_per_kwh`` in currency units (sent as an integer in units of
        10^``price_multiplier``), or ``blocks`` = [(consumptionBlock, raw price)]. Returns its mRID."""
        if blocks is None:
            if price_per_kwh is None:
                raise ValueError("a price needs price_per_kwh or blocks")
            blocks = [(0, round(price_per_kwh / 10.0**self.price_multiplier))]
        mrid = new_mrid("tti", len(self.prices))
        self.prices.append(
            SimPrice(
                mrid,
                self.now(),
                self.now() if start is None else int(start),
                int(duration_s),
                [(int(b), int(p)) for b, p in blocks],
                tou_tier,
            )
        )
        return mrid

    def price(self, mrid: str) -> SimPrice:
        for p in self.prices:
            if p.mrid == mrid:
                return p
        raise KeyError(mrid)

    def cancel_price(self, mrid: str) -> None:
        self.price(mrid).status = 2

    def withdraw_price(self, mrid: str) -> None:
        """Remove a price interval from its list (as a server does once it is no longer offered)."""
        self.prices.remove(self.price(mrid))

    def withdraw(self, mrid: str) -> None:
        """Remove a control from its list altogether (the client must notice it is gone)."""
        self.controls.remove(self.control(mrid))

    def control(self, mrid: str) -> SimControl:
        for c in self.controls:
            if c.mrid == mrid:
                return c
        raise KeyError(mrid)

    def cancel(self, mrid: str) -> None:
        self.control(mrid).status = 2

    def set_default(self, program: int = 1, **modes: Any) -> None:
        self.programs[program].default = dict(modes)

    def responses_for(self, mrid: str) -> list[int]:
        return [x.status for x in self.responses if x.subject == mrid]

    def latest_reading(self, description_prefix: str) -> float | None:
        for x in reversed(self.readings):
            if (x.description or "").startswith(description_prefix):
                return x.value
        return None

    # -- serving --------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}/dcap"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.pki.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.strict_tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("ECDHE-ECDSA-AES128-CCM8")
        ctx.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        return ctx

    async def start(self) -> None:
        app = web.Application(client_max_size=r.MAX_DOCUMENT_BYTES, middlewares=[self._middleware])
        app.router.add_get("/dcap", self._dcap)
        app.router.add_get("/tm", self._time)
        app.router.add_get("/edev", self._edev_list)
        app.router.add_post("/edev", self._edev_register)
        app.router.add_get("/edev/{i}", self._edev)
        app.router.add_get("/edev/{i}/reg", self._registration)
        app.router.add_get("/edev/{i}/fsa", self._fsa)
        app.router.add_get("/edev/{i}/der", self._der_list)
        app.router.add_put("/edev/{i}/der/0/{res}", self._der_put)
        app.router.add_get("/derp", self._programs)
        app.router.add_get("/derp/{p}/dderc", self._default)
        app.router.add_get("/derp/{p}/derc", self._controls)
        app.router.add_get("/derp/{p}/dc", self._curve_list)
        app.router.add_get("/derp/{p}/dc/{c}", self._curve)
        app.router.add_get("/tp", self._tariff_profiles)
        app.router.add_get("/tp/0/rc", self._rate_components)
        app.router.add_get("/tp/0/rc/0/tti", self._time_tariff_intervals)
        app.router.add_get("/tp/0/rc/0/tti/{mrid}/cti", self._consumption_tariff_intervals)
        app.router.add_get("/rt/0", self._reading_type)
        app.router.add_get("/dr", self._dr_programs)
        app.router.add_get("/dr/0/edc", self._edcs)
        app.router.add_post("/rsps/{p}/rsp", self._response)
        app.router.add_post("/mup", self._mup_create)
        app.router.add_post("/mup/{i}", self._mup_post)
        app.router.add_post("/api/controls", self._api_control)
        app.router.add_post("/api/controls/{mrid}/cancel", self._api_cancel)
        app.router.add_delete("/api/controls/{mrid}", self._api_withdraw)
        app.router.add_post("/api/curves", self._api_curve)
        app.router.add_post("/api/prices", self._api_price)
        app.router.add_post("/api/prices/{mrid}/cancel", self._api_price_cancel)
        app.router.add_delete("/api/prices/{mrid}", self._api_price_withdraw)
        app.router.add_post("/api/edc", self._api_edc)
        app.router.add_get("/api/responses", self._api_responses)
        app.router.add_get("/api/readings", self._api_readings)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.port, ssl_context=self.ssl_context(), reuse_address=True
        )
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("2030.5 server (simulated) at %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        self.requests.append((request.method, request.path))
        self.queries.append((request.method, request.path_qs))
        if request.method == "GET" and request.path in self.hostile:
            return web.Response(body=self.hostile[request.path], content_type=r.CONTENT_TYPE)
        return await handler(request)

    def _caller_lfdi(self, request: web.Request) -> str | None:
        sslobj = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        return identity.lfdi(der) if der else None

    def _xml(self, el, status: int = 200) -> web.Response:
        return web.Response(body=r.to_bytes(el), status=status, content_type=r.CONTENT_TYPE)

    def _page(self, request: web.Request, items: list) -> list:
        """The page ``?s=<start>&l=<limit>`` asks for, at most ``page_size`` items."""
        try:
            start = max(0, int(request.query.get("s", "0")))
            limit = max(0, int(request.query.get("l", str(self.page_size))))
        except ValueError:
            raise web.HTTPBadRequest(text="s and l must be integers") from None
        return items[start : start + min(limit, self.page_size)]

    def _list_el(self, request: web.Request, name: str, href: str, items: list, make, **attrib):
        page = self._page(request, items)
        el = r.element(
            name,
            {"href": href, "all": len(items), "results": len(page), **attrib, "pollRate": self.poll_rate_s},
        )
        for item in page:
            el.append(make(item))
        return el

    async def _body(self, request: web.Request):
        try:
            return r.parse_xml(await request.read())
        except r.RefusedXML as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    def _mine(self, request: web.Request) -> tuple[int, dict]:
        i = int(request.match_info["i"])
        lfdi = self._caller_lfdi(request)
        if not 0 <= i < len(self.end_devices) or self.end_devices[i]["lfdi"] != lfdi:
            raise web.HTTPNotFound()
        return i, self.end_devices[i]

    async def _dcap(self, request: web.Request) -> web.Response:
        el = r.element("DeviceCapability", {"href": "/dcap", "pollRate": self.poll_rate_s})
        for tag, href in (
            ("DemandResponseProgramListLink", "/dr"),
            ("DERProgramListLink", "/derp"),
            ("TimeLink", "/tm"),
            ("EndDeviceListLink", "/edev"),
            ("MirrorUsagePointListLink", "/mup"),
            ("TariffProfileListLink", "/tp"),
        ):
            r.add(el, tag, attrib={"href": href, "all": 1 if "List" in tag else None})
        return self._xml(el)

    async def _time(self, request: web.Request) -> web.Response:
        return self._xml(
            r.element(
                "Time",
                {"href": "/tm", "pollRate": self.poll_rate_s},
                currentTime=self.now(),
                dstEndTime=0,
                dstOffset=0,
                dstStartTime=0,
                quality=7,
                tzOffset=0,
            )
        )

    def _edev_el(self, i: int, d: dict):
        el = r.element("EndDevice", {"href": f"/edev/{i}"})
        r.add(el, "DERListLink", attrib={"href": f"/edev/{i}/der", "all": 1})
        r.add(el, "changedTime", d["changed"])
        r.add(el, "lFDI", d["lfdi"])
        r.add(el, "sFDI", d["sfdi"])
        r.add(el, "FunctionSetAssignmentsListLink", attrib={"href": f"/edev/{i}/fsa", "all": 1})
        r.add(el, "RegistrationLink", attrib={"href": f"/edev/{i}/reg"})
        return el

    async def _edev_list(self, request: web.Request) -> web.Response:
        lfdi = self._caller_lfdi(request)
        mine = [(i, d) for i, d in enumerate(self.end_devices) if d["lfdi"] == lfdi]
        el = r.element(
            "EndDeviceList",
            {"href": "/edev", "all": len(mine), "results": len(mine), "pollRate": self.poll_rate_s},
        )
        for i, d in mine:
            el.append(self._edev_el(i, d))
        return self._xml(el)

    async def _edev_register(self, request: web.Request) -> web.Response:
        root = await self._body(request)
        try:
            ed = r.parse_end_device(root)
        except r.ResourceError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        lfdi = self._caller_lfdi(request)
        if ed.lfdi != lfdi:
            raise web.HTTPBadRequest(text=f"lFDI {ed.lfdi} is not the LFDI of your certificate ({lfdi})")
        for i, d in enumerate(self.end_devices):
            if d["lfdi"] == lfdi:
                return web.Response(status=204, headers={"Location": f"/edev/{i}"})
        self.end_devices.append({"lfdi": lfdi, "sfdi": ed.sfdi, "changed": self.now()})
        return web.Response(status=201, headers={"Location": f"/edev/{len(self.end_devices) - 1}"})

    async def _edev(self, request: web.Request) -> web.Response:
        i, d = self._mine(request)
        return self._xml(self._edev_el(i, d))

    async def _registration(self, request: web.Request) -> web.Response:
        i, d = self._mine(request)
        return self._xml(
            r.element(
                "Registration",
                {"href": f"/edev/{i}/reg", "pollRate": 3600},
                dateTimeRegistered=d["changed"],
                pIN=self.pin,
            )
        )

    async def _fsa(self, request: web.Request) -> web.Response:
        i, _ = self._mine(request)
        el = r.element(
            "FunctionSetAssignmentsList",
            {"href": f"/edev/{i}/fsa", "all": 1, "results": 1, "pollRate": self.poll_rate_s},
        )
        fsa = r.add(el, "FunctionSetAssignments", attrib={"href": "/fsa/0"})
        r.add(fsa, "mRID", "F5A00000000000000000000000000000")
        r.add(fsa, "description", "Default assignments")
        r.add(fsa, "DemandResponseProgramListLink", attrib={"href": "/dr", "all": 1})
        r.add(fsa, "DERProgramListLink", attrib={"href": "/derp", "all": len(self.programs)})
        r.add(fsa, "TariffProfileListLink", attrib={"href": "/tp", "all": 1})
        r.add(fsa, "TimeLink", attrib={"href": "/tm"})
        return self._xml(el)

    async def _der_list(self, request: web.Request) -> web.Response:
        i, _ = self._mine(request)
        el = r.element("DERList", {"href": f"/edev/{i}/der", "all": 1, "results": 1, "pollRate": 3600})
        der = r.add(el, "DER", attrib={"href": f"/edev/{i}/der/0"})
        for tag, res in (("DERAvailabilityLink", "dera"), ("DERCapabilityLink", "dercap"),
                         ("DERSettingsLink", "derg"), ("DERStatusLink", "ders")):  # fmt: skip
            r.add(der, tag, attrib={"href": f"/edev/{i}/der/0/{res}"})
        return self._xml(el)

    async def _der_put(self, request: web.Request) -> web.Response:
        self._mine(request)
        body = await request.read()
        root = await self._body(request)
        expected = {
            "dera": "DERAvailability",
            "dercap": "DERCapability",
            "derg": "DERSettings",
            "ders": "DERStatus",
        }
        name = expected.get(request.match_info["res"])
        if name is None or etree_local(root) != name:
            raise web.HTTPBadRequest(text=f"expected {name}")
        self.der_resources[name] = body
        return web.Response(status=204)

    def _program_el(self, p: SimProgram):
        el = r.element("DERProgram", {"href": f"/derp/{p.index}"})
        r.add(el, "mRID", p.mrid)
        r.add(el, "description", p.description)
        r.add(el, "DefaultDERControlLink", attrib={"href": f"/derp/{p.index}/dderc"})
        n = len([c for c in self.controls if c.program == p.index and c.kind == "DERControl"])
        r.add(el, "DERControlListLink", attrib={"href": f"/derp/{p.index}/derc", "all": n})
        nc = len([c for c in self.curves if c.program == p.index])
        r.add(el, "DERCurveListLink", attrib={"href": f"/derp/{p.index}/dc", "all": nc})
        r.add(el, "primacy", p.primacy)
        return el

    async def _programs(self, request: web.Request) -> web.Response:
        return self._xml(self._list_el(request, "DERProgramList", "/derp", self.programs, self._program_el))

    @staticmethod
    def _base(modes: dict[str, Any], parent) -> None:
        base = r.add(parent, "DERControlBase")
        for name in ORDER:
            if name not in modes:
                continue
            v = modes[name]
            if name in r.CURVE_MODES:
                r.add(base, name, attrib={"href": v})  # a DERCurveLink
            else:
                r.add(base, name, r.active_power(v) if name in POWER_MODES else v)

    async def _default(self, request: web.Request) -> web.Response:
        p = self.programs[int(request.match_info["p"])]
        el = r.element("DefaultDERControl", {"href": f"/derp/{p.index}/dderc"})
        r.add(el, "mRID", hashlib.sha256(p.mrid.encode()).hexdigest()[:32].upper())
        r.add(el, "description", "default")
        self._base(p.default, el)
        return self._xml(el)

    def _event_el(self, c: SimControl, href: str, reply: str):
        el = r.element(c.kind, {"href": href, "replyTo": reply, "responseRequired": c.response_required})
        r.add(el, "mRID", c.mrid)
        r.add(el, "description", c.description or c.kind)
        r.add(el, "creationTime", c.creation_time)
        now = self.now()
        status = c.status if c.status is not None else (1 if c.start <= now < c.start + c.duration else 0)
        r.add(el, "EventStatus", {"currentStatus": status, "dateTime": now, "potentiallySuperseded": False})
        r.add(el, "interval", {"duration": c.duration, "start": c.start})
        if c.randomize_duration:
            r.add(el, "randomizeDuration", c.randomize_duration)
        if c.randomize_start:
            r.add(el, "randomizeStart", c.randomize_start)
        if c.kind == "DERControl":
            self._base(c.modes, el)
        else:
            r.add(el, "DeviceCategory", "FFFFFFFF")
            if "TargetReduction" in c.modes:
                r.add(el, "TargetReduction", {"type": 1, "value": c.modes["TargetReduction"]})
        return el

    async def _controls(self, request: web.Request) -> web.Response:
        p = int(request.match_info["p"])
        mine = [c for c in self.controls if c.program == p and c.kind == "DERControl"]
        mine.sort(key=lambda c: (c.start, -c.creation_time))
        href = f"/derp/{p}/derc"
        el = self._list_el(
            request,
            "DERControlList",
            href,
            mine,
            lambda c: self._event_el(c, f"{href}/{c.mrid}", f"/rsps/{p}/rsp"),
            subscribable=1,
        )
        return self._xml(el)

    def _curve_el(self, c: SimCurve):
        el = r.element("DERCurve", {"href": f"/derp/{c.program}/dc/{c.index}"})
        r.add(el, "mRID", c.mrid)
        r.add(el, "description", c.description or r.CURVE_TYPES.get(c.curve_type, "curve"))
        r.add(el, "creationTime", c.creation_time)
        for x, y in c.points:
            r.add(el, "CurveData", {"xvalue": x, "yvalue": y})
        r.add(el, "curveType", c.curve_type)
        for name in ("openLoopTms", "rampDecTms", "rampIncTms", "rampPT1Tms"):
            if name in c.ramp_tms:
                r.add(el, name, c.ramp_tms[name])
        if c.v_ref is not None:
            r.add(el, "vRef", c.v_ref)
        r.add(el, "xMultiplier", c.x_multiplier)
        r.add(el, "yMultiplier", c.y_multiplier)
        r.add(el, "yRefType", c.y_ref_type)
        return el

    async def _curve_list(self, request: web.Request) -> web.Response:
        p = int(request.match_info["p"])
        mine = [c for c in self.curves if c.program == p]
        return self._xml(self._list_el(request, "DERCurveList", f"/derp/{p}/dc", mine, self._curve_el))

    async def _curve(self, request: web.Request) -> web.Response:
        p, i = int(request.match_info["p"]), int(request.match_info["c"])
        if not 0 <= i < len(self.curves) or self.curves[i].program != p:
            raise web.HTTPNotFound()
        return self._xml(self._curve_el(self.curves[i]))

    # -- pricing: /tp → /tp/0 → /tp/0/rc → /tp/0/rc/0 → /tp/0/rc/0/tti → .../tti/{mRID}/cti -----------------
    def _tariff_el(self, _):
        el = r.element("TariffProfile", {"href": "/tp/0"})
        r.add(el, "mRID", "7A000000000000000000000000000001")
        r.add(el, "description", "Time of use")
        r.add(el, "currency", self.currency)
        r.add(el, "pricePowerOfTenMultiplier", self.price_multiplier)
        r.add(el, "primacy", 1)
        r.add(el, "rateCode", "TOU-1")
        r.add(el, "RateComponentListLink", attrib={"href": "/tp/0/rc", "all": 1})
        r.add(el, "serviceCategoryKind", 0)
        return el

    async def _tariff_profiles(self, request: web.Request) -> web.Response:
        return self._xml(self._list_el(request, "TariffProfileList", "/tp", [0], self._tariff_el))

    def _rate_component_el(self, _):
        el = r.element("RateComponent", {"href": "/tp/0/rc/0"})
        r.add(el, "mRID", "7AC00000000000000000000000000001")
        r.add(el, "description", "Energy delivered")
        r.add(el, "ReadingTypeLink", attrib={"href": "/rt/0"})
        r.add(el, "roleFlags", "01")
        r.add(el, "TimeTariffIntervalListLink", attrib={"href": "/tp/0/rc/0/tti", "all": len(self.prices)})
        return el

    async def _rate_components(self, request: web.Request) -> web.Response:
        return self._xml(
            self._list_el(request, "RateComponentList", "/tp/0/rc", [0], self._rate_component_el)
        )

    async def _reading_type(self, request: web.Request) -> web.Response:
        # energy delivered, in kWh (Wh x 10^3): prices are per kWh
        return self._xml(
            r.element(
                "ReadingType",
                {"href": "/rt/0"},
                accumulationBehaviour=4,
                commodity=1,
                flowDirection=1,
                kind=12,
                powerOfTenMultiplier=3,
                uom=72,
            )
        )

    def _tti_el(self, p: SimPrice):
        href = f"/tp/0/rc/0/tti/{p.mrid}"
        el = r.element("TimeTariffInterval", {"href": href})
        r.add(el, "mRID", p.mrid)
        r.add(el, "description", "price interval")
        r.add(el, "creationTime", p.creation_time)
        now = self.now()
        status = p.status if p.status is not None else (1 if p.start <= now < p.start + p.duration else 0)
        r.add(el, "EventStatus", {"currentStatus": status, "dateTime": now, "potentiallySuperseded": False})
        r.add(el, "interval", {"duration": p.duration, "start": p.start})
        r.add(el, "ConsumptionTariffIntervalListLink", attrib={"href": f"{href}/cti", "all": len(p.blocks)})
        if p.tou_tier is not None:
            r.add(el, "touTier", p.tou_tier)
        return el

    async def _time_tariff_intervals(self, request: web.Request) -> web.Response:
        mine = sorted(self.prices, key=lambda p: p.start)
        return self._xml(
            self._list_el(request, "TimeTariffIntervalList", "/tp/0/rc/0/tti", mine, self._tti_el)
        )

    async def _consumption_tariff_intervals(self, request: web.Request) -> web.Response:
        try:
            p = self.price(request.match_info["mrid"])
        except KeyError:
            raise web.HTTPNotFound() from None
        href = f"/tp/0/rc/0/tti/{p.mrid}/cti"

        def cti(block: tuple[int, int]):
            el = r.element("ConsumptionTariffInterval", {"href": f"{href}/{block[0]}"})
            r.add(el, "consumptionBlock", block[0])
            r.add(el, "price", block[1])
            r.add(el, "startValue", 0)
            return el

        return self._xml(self._list_el(request, "ConsumptionTariffIntervalList", href, p.blocks, cti))

    async def _dr_programs(self, request: web.Request) -> web.Response:
        el = r.element(
            "DemandResponseProgramList", {"href": "/dr", "all": 1, "results": 1, "pollRate": self.poll_rate_s}
        )
        prog = r.add(el, "DemandResponseProgram", attrib={"href": "/dr/0"})
        r.add(prog, "mRID", "D0000000000000000000000000000001")
        r.add(prog, "description", "Load control")
        n = len([c for c in self.controls if c.kind == "EndDeviceControl"])
        r.add(prog, "EndDeviceControlListLink", attrib={"href": "/dr/0/edc", "all": n})
        r.add(prog, "primacy", 5)
        return self._xml(el)

    async def _edcs(self, request: web.Request) -> web.Response:
        mine = [c for c in self.controls if c.kind == "EndDeviceControl"]
        el = self._list_el(
            request,
            "EndDeviceControlList",
            "/dr/0/edc",
            mine,
            lambda c: self._event_el(c, f"/dr/0/edc/{c.mrid}", "/rsps/dr/rsp"),
        )
        return self._xml(el)

    async def _response(self, request: web.Request) -> web.Response:
        root = await self._body(request)
        try:
            resp = r.parse_response(root)
        except r.ResourceError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        if resp.lfdi != self._caller_lfdi(request):
            raise web.HTTPBadRequest(text="endDeviceLFDI is not the LFDI of your certificate")
        self.responses.append(resp)
        log.info("Response %s for %s from %s", resp.status, resp.subject, resp.lfdi)
        return web.Response(status=201, headers={"Location": f"{request.path}/{len(self.responses) - 1}"})

    async def _mup_create(self, request: web.Request) -> web.Response:
        body = await request.read()
        root = await self._body(request)
        if etree_local(root) != "MirrorUsagePoint":
            raise web.HTTPBadRequest(text="expected a MirrorUsagePoint")
        try:
            r.parse_mirror_readings(root)
        except r.ResourceError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        i = len(self.mups)
        self.mups[i] = body
        return web.Response(status=201, headers={"Location": f"/mup/{i}"})

    async def _mup_post(self, request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        if i not in self.mups:
            raise web.HTTPNotFound()
        root = await self._body(request)
        try:
            self.readings.extend(r.parse_mirror_readings(root))
        except r.ResourceError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.Response(status=204)

    # -- JSON API -------------------------------------------------------------------------------------------
    async def _api_control(self, request: web.Request) -> web.Response:
        d = await request.json()
        start = d.pop("start", None)
        if isinstance(start, str) and start.startswith("+"):
            start = self.now() + int(start[1:])
        mrid = self.add_control(start=start, **d)
        return web.json_response({"mrid": mrid}, status=201)

    async def _api_cancel(self, request: web.Request) -> web.Response:
        try:
            self.cancel(request.match_info["mrid"])
        except KeyError:
            raise web.HTTPNotFound() from None
        return web.json_response({"ok": True})

    async def _api_withdraw(self, request: web.Request) -> web.Response:
        try:
            self.withdraw(request.match_info["mrid"])
        except (KeyError, ValueError):
            raise web.HTTPNotFound() from None
        return web.json_response({"ok": True})

    async def _api_curve(self, request: web.Request) -> web.Response:
        d = await request.json()
        try:
            index = self.add_curve(**d)
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        c = self.curves[index]
        return web.json_response({"index": index, "href": f"/derp/{c.program}/dc/{index}"}, status=201)

    async def _api_price(self, request: web.Request) -> web.Response:
        d = await request.json()
        start = d.pop("start", None)
        if isinstance(start, str) and start.startswith("+"):
            start = self.now() + int(start[1:])
        try:
            mrid = self.add_price(start=start, **d)
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response({"mrid": mrid}, status=201)

    async def _api_price_cancel(self, request: web.Request) -> web.Response:
        try:
            self.cancel_price(request.match_info["mrid"])
        except KeyError:
            raise web.HTTPNotFound() from None
        return web.json_response({"ok": True})

    async def _api_price_withdraw(self, request: web.Request) -> web.Response:
        try:
            self.withdraw_price(request.match_info["mrid"])
        except (KeyError, ValueError):
            raise web.HTTPNotFound() from None
        return web.json_response({"ok": True})

    async def _api_edc(self, request: web.Request) -> web.Response:
        d = await request.json()
        start = d.pop("start", None)
        if isinstance(start, str) and start.startswith("+"):
            start = self.now() + int(start[1:])
        return web.json_response({"mrid": self.add_end_device_control(start=start, **d)}, status=201)

    async def _api_responses(self, request: web.Request) -> web.Response:
        return web.json_response(
            [{"subject": x.subject, "status": x.status, "lfdi": x.lfdi} for x in self.responses]
        )

    async def _api_readings(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"mrid": x.mrid, "description": x.description, "value": x.value, "time": x.time}
                for x in self.readings
            ]
        )


def etree_local(el) -> str:
    from lxml import etree

    return etree.QName(el).localname


# ------------------------------------------------------------------------------------------------------------
# dev mode


class Sep2DevPeer:
    def __init__(self, server: SimServer, tmp: tempfile.TemporaryDirectory) -> None:
        self.server = server
        self._tmp = tmp
        self.replaces: set[str] = set()
        self.section: dict[str, Any] = {
            "server_url": server.url,
            "cert_file": server.pki.device_cert,
            "key_file": server.pki.device_key,
            "ca_file": server.pki.ca_file,
            "pin": server.pin,
            "poll_default_s": 5.0,
            "post_rate_s": 10.0,
        }
        self.devices: list[dict[str, Any]] = []

    async def stop(self) -> None:
        await self.server.stop()
        self._tmp.cleanup()


async def dev_peer(ctx) -> Sep2DevPeer:
    """A simulated 2030.5 server on a free loopback port with a fresh test PKI in a temporary directory."""
    tmp = tempfile.TemporaryDirectory(prefix="hems-sep2-")
    pki = make_pki(tmp.name)
    server = SimServer(pki, host=getattr(ctx, "host", "127.0.0.1"), port=0, clock=ctx.clock, poll_rate_s=5)
    await server.start()
    ctx.log.info(
        "IEEE 2030.5 server (simulated) at %s; create a control: curl --cacert %s --cert %s --key %s "
        '-d \'{"export_limit_w": 2000, "duration_s": 600}\' https://%s:%d/api/controls',
        server.url,
        pki.ca_file,
        pki.device_cert,
        pki.device_key,
        server.host,
        server.port,
    )
    return Sep2DevPeer(server, tmp)


def main(argv: list[str] | None = None) -> int:
    """``hems sim sep2-server``: run a simulated 2030.5 server until interrupted."""
    p = argparse.ArgumentParser(
        prog="hems sim sep2-server", description="Run a simulated IEEE 2030.5 server."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 = any free)"
    )
    p.add_argument(
        "--pki-dir", default=None, help="where the test PKI is written (default: a temporary directory)"
    )
    p.add_argument(
        "--poll-rate", type=int, default=10, help="pollRate of every resource, seconds (default 10)"
    )
    p.add_argument("--pin", type=int, default=DEFAULT_PIN, help=f"registration PIN (default {DEFAULT_PIN})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        tmp = None
        pki_dir = args.pki_dir
        if pki_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="hems-sep2-")
            pki_dir = tmp.name
        pki = make_pki(pki_dir)
        server = SimServer(pki, host=args.host, port=args.port, poll_rate_s=args.poll_rate, pin=args.pin)
        await server.start()
        print(f"IEEE 2030.5 server (simulated) at {server.url}")
        print("point the client at it:")
        print(f'  [integrations.sep2]\n  server_url = "{server.url}"\n  cert_file = "{pki.device_cert}"')
        print(f'  key_file = "{pki.device_key}"\n  ca_file = "{pki.ca_file}"\n  pin = {server.pin}')
        print(f"device LFDI {pki.device_lfdi}, SFDI {pki.device_sfdi}")
        print(
            f"create a control: curl --cacert {pki.ca_file} --cert {pki.device_cert} --key {pki.device_key} "
            f'-d \'{{"export_limit_w": 2000, "start": "+60", "duration_s": 600}}\' '
            f"https://{server.host}:{server.port}/api/controls"
        )
        done = asyncio.Event()
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
            pass
        try:
            await done.wait()
        finally:
            await server.stop()
            if tmp is not None:
                tmp.cleanup()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"hems sim sep2-server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["Pki", "SimServer", "dev_peer", "main", "make_pki"]
