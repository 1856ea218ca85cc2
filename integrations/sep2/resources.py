"""IEEE 2030.5 resources as typed, frozen dataclasses, parsed from XML by a hardened parser, and the XML the
client sends (EndDevice registration, Responses, DER status resources, mirror usage points).

Element names follow the standard (namespace ``urn:ieee:std:2030.5:ns``). The CSIP-AUS control modes
(``opModExpLimW``, ``opModImpLimW``, ``opModGenLimW``, ``opModLoadLimW``) are accepted in the 2030.5 namespace or
in the CSIP-AUS one (``https://csipaus.org/ns``): children are matched by local name inside a 2030.5 element.

Hardening (``parse_xml``): a size limit checked before parsing, UTF-8 only, any ``<!DOCTYPE``/``<!ENTITY`` refused
before the bytes reach a parser, and the parser itself resolves no entities, loads no DTD, reads nothing from the
network and keeps libxml2's depth and size limits (no ``huge_tree``). Every refusal raises ``RefusedXML`` naming
what was wrong; a well-formed document that is not the expected resource raises ``ResourceError``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from lxml import etree

from hems import xmlsafe
from hems.xmlsafe import RefusedXML as RefusedXML  # re-exported: callers catch r.RefusedXML

NS = "urn:ieee:std:2030.5:ns"
CSIP_NS = "https://csipaus.org/ns"
CONTENT_TYPE = "application/sep+xml"
MAX_DOCUMENT_BYTES = 256 * 1024  # far above any real 2030.5 resource (a list page of 255 controls ~ 150 kB)
DEFAULT_POLL_RATE_S = 900  # the standard's default pollRate

_HEX = re.compile(r"^[0-9A-Fa-f]*$")


class ResourceError(ValueError):
    """Well-formed XML that is not the expected 2030.5 resource (wrong root, missing or bad field)."""


def parse_xml(content: bytes | str, limit: int = MAX_DOCUMENT_BYTES) -> etree._Element:
    return xmlsafe.parse(content, limit, what="document", kind="2030.5 resources")


# ------------------------------------------------------------------------------------------------------------
# element helpers


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _child(el: etree._Element, name: str) -> etree._Element | None:
    for c in el:
        if isinstance(c.tag, str) and etree.QName(c).localname == name:
            return c
    return None


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and etree.QName(c).localname == name]


def _text(el: etree._Element, name: str, default: str | None = None) -> str | None:
    c = _child(el, name)
    if c is None or c.text is None:
        return default
    return c.text.strip()


def _int(
    el: etree._Element, name: str, default: int | None = None, lo: int | None = None, hi: int | None = None
):
    raw = _text(el, name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ResourceError(f"{_local(el)}.{name} = {raw!r} is not an integer") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ResourceError(f"{_local(el)}.{name} = {v} is out of range {lo}..{hi}")
    return v


def _bool(el: etree._Element, name: str) -> bool | None:
    raw = _text(el, name)
    if raw is None:
        return None
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise ResourceError(f"{_local(el)}.{name} = {raw!r} is not a boolean")


def _hex(el: etree._Element, name: str, max_len: int) -> str | None:
    raw = _text(el, name)
    if raw is None:
        return None
    if not _HEX.match(raw) or len(raw) > max_len:
        raise ResourceError(
            f"{_local(el)}.{name} = {raw[:60]!r} is not hexBinary of at most {max_len} digits"
        )
    return raw.upper()


def _link(el: etree._Element, name: str) -> str | None:
    c = _child(el, name)
    return None if c is None else c.get("href")


def _poll(el: etree._Element, default: int | None = None) -> int | None:
    raw = el.get("pollRate")
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ResourceError(f"{_local(el)}@pollRate = {raw!r} is not an integer") from None
    if v < 0:
        raise ResourceError(f"{_local(el)}@pollRate = {v} is negative")
    return v


def _expect(root: etree._Element, name: str) -> None:
    if not isinstance(root.tag, str) or etree.QName(root).namespace != NS or _local(root) != name:
        raise ResourceError(f"expected a 2030.5 {name}, got {root.tag!r}")


# ------------------------------------------------------------------------------------------------------------
# resources


@dataclass(frozen=True, slots=True)
class DeviceCapability:
    href: str
    poll_rate_s: int | None
    time_link: str | None
    end_device_list_link: str | None
    mirror_usage_point_list_link: str | None
    der_program_list_link: str | None
    demand_response_program_list_link: str | None
    tariff_profile_list_link: str | None
    self_device_link: str | None


def parse_device_capability(root: etree._Element) -> DeviceCapability:
    _expect(root, "DeviceCapability")
    return DeviceCapability(
        href=root.get("href", ""),
        poll_rate_s=_poll(root),
        time_link=_link(root, "TimeLink"),
        end_device_list_link=_link(root, "EndDeviceListLink"),
        mirror_usage_point_list_link=_link(root, "MirrorUsagePointListLink"),
        der_program_list_link=_link(root, "DERProgramListLink"),
        demand_response_program_list_link=_link(root, "DemandResponseProgramListLink"),
        tariff_profile_list_link=_link(root, "TariffProfileListLink"),
        self_device_link=_link(root, "SelfDeviceLink"),
    )


@dataclass(frozen=True, slots=True)
class Time:
    href: str
    poll_rate_s: int | None
    current_time: int
    tz_offset: int = 0
    dst_offset: int = 0
    quality: int | None = None


def parse_time(root: etree._Element) -> Time:
    _expect(root, "Time")
    current = _int(root, "currentTime")
    if current is None:
        raise ResourceError("Time.currentTime is missing")
    return Time(
        href=root.get("href", ""),
        poll_rate_s=_poll(root),
        current_time=current,
        tz_offset=_int(root, "tzOffset", 0),
        dst_offset=_int(root, "dstOffset", 0),
        quality=_int(root, "quality"),
    )


@dataclass(frozen=True, slots=True)
class EndDevice:
    href: str
    lfdi: str | None
    sfdi: int | None
    changed_time: int | None
    enabled: bool | None
    registration_link: str | None
    fsa_list_link: str | None
    der_list_link: str | None


def parse_end_device(el: etree._Element) -> EndDevice:
    _expect(el, "EndDevice")
    return EndDevice(
        href=el.get("href", ""),
        lfdi=_hex(el, "lFDI", 40),
        sfdi=_int(el, "sFDI", lo=0),
        changed_time=_int(el, "changedTime"),
        enabled=_bool(el, "enabled"),
        registration_link=_link(el, "RegistrationLink"),
        fsa_list_link=_link(el, "FunctionSetAssignmentsListLink"),
        der_list_link=_link(el, "DERListLink"),
    )


@dataclass(frozen=True, slots=True)
class ResourceList:
    """Any 2030.5 list: ``all`` items on the server, ``results`` in this page."""

    href: str
    poll_rate_s: int | None
    all: int
    results: int
    items: tuple[Any, ...]

    @property
    def complete(self) -> bool:
        return self.all <= self.results


def _list(root: etree._Element, name: str, item: str, parse_item) -> ResourceList:
    _expect(root, name)
    try:
        all_ = int(root.get("all", "0"))
        results = int(root.get("results", "0"))
    except ValueError:
        raise ResourceError(f"{name}@all/@results must be integers") from None
    items = tuple(parse_item(c) for c in _children(root, item))
    return ResourceList(root.get("href", ""), _poll(root), all_, max(results, len(items)), items)


def parse_end_device_list(root: etree._Element) -> ResourceList:
    return _list(root, "EndDeviceList", "EndDevice", parse_end_device)


@dataclass(frozen=True, slots=True)
class Registration:
    href: str
    poll_rate_s: int | None
    date_time_registered: int | None
    pin: int


def parse_registration(root: etree._Element) -> Registration:
    _expect(root, "Registration")
    pin = _int(root, "pIN", lo=0)
    if pin is None:
        raise ResourceError("Registration.pIN is missing")
    return Registration(root.get("href", ""), _poll(root), _int(root, "dateTimeRegistered"), pin)


@dataclass(frozen=True, slots=True)
class FunctionSetAssignments:
    href: str
    mrid: str | None
    description: str | None
    der_program_list_link: str | None
    demand_response_program_list_link: str | None
    time_link: str | None
    tariff_profile_list_link: str | None


def parse_fsa(el: etree._Element) -> FunctionSetAssignments:
    _expect(el, "FunctionSetAssignments")
    return FunctionSetAssignments(
        href=el.get("href", ""),
        mrid=_hex(el, "mRID", 32),
        description=_text(el, "description"),
        der_program_list_link=_link(el, "DERProgramListLink"),
        demand_response_program_list_link=_link(el, "DemandResponseProgramListLink"),
        time_link=_link(el, "TimeLink"),
        tariff_profile_list_link=_link(el, "TariffProfileListLink"),
    )


def parse_fsa_list(root: etree._Element) -> ResourceList:
    return _list(root, "FunctionSetAssignmentsList", "FunctionSetAssignments", parse_fsa)


@dataclass(frozen=True, slots=True)
class DERProgram:
    href: str
    mrid: str | None
    description: str | None
    primacy: int
    default_der_control_link: str | None
    der_control_list_link: str | None
    active_der_control_list_link: str | None


def parse_der_program(el: etree._Element) -> DERProgram:
    _expect(el, "DERProgram")
    primacy = _int(el, "primacy", lo=0, hi=255)
    if primacy is None:
        raise ResourceError("DERProgram.primacy is missing")
    return DERProgram(
        href=el.get("href", ""),
        mrid=_hex(el, "mRID", 32),
        description=_text(el, "description"),
        primacy=primacy,
        default_der_control_link=_link(el, "DefaultDERControlLink"),
        der_control_list_link=_link(el, "DERControlListLink"),
        active_der_control_list_link=_link(el, "ActiveDERControlListLink"),
    )


def parse_der_program_list(root: etree._Element) -> ResourceList:
    return _list(root, "DERProgramList", "DERProgram", parse_der_program)


@dataclass(frozen=True, slots=True)
class DERControlBase:
    """Control modes; powers already in watts (value × 10^multiplier), percentages in percent."""

    op_mod_exp_lim_w: float | None = None
    op_mod_imp_lim_w: float | None = None
    op_mod_gen_lim_w: float | None = None
    op_mod_load_lim_w: float | None = None
    op_mod_max_lim_pct: float | None = None  # % of setMaxW
    op_mod_target_w: float | None = None  # + delivered to the grid
    op_mod_fixed_w_pct: float | None = None  # % of setMaxW, signed
    op_mod_connect: bool | None = None
    op_mod_energize: bool | None = None
    # DERCurve links (hrefs), one per curve mode the control sets; the curves are fetched by the client
    op_mod_volt_var: str | None = None
    op_mod_volt_watt: str | None = None
    op_mod_freq_watt: str | None = None
    op_mod_watt_pf: str | None = None
    op_mod_watt_var: str | None = None
    op_mod_hfrt_may_trip: str | None = None
    op_mod_hfrt_must_trip: str | None = None
    op_mod_hvrt_may_trip: str | None = None
    op_mod_hvrt_momentary_cessation: str | None = None
    op_mod_hvrt_must_trip: str | None = None
    op_mod_lfrt_may_trip: str | None = None
    op_mod_lfrt_must_trip: str | None = None
    op_mod_lvrt_may_trip: str | None = None
    op_mod_lvrt_momentary_cessation: str | None = None
    op_mod_lvrt_must_trip: str | None = None

    def curve_links(self) -> dict[str, str]:
        """``{2030.5 element name: DERCurve href}`` of the curve modes set."""
        return {tag: getattr(self, attr) for tag, attr in CURVE_MODES.items() if getattr(self, attr)}

    def modes(self) -> frozenset[str]:
        return frozenset(name for name in self.__slots__ if getattr(self, name) is not None)

    def to_json(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__ if getattr(self, name) is not None}


def scaled(value: int, power_of_ten: int) -> float:
    """``value`` × 10^``power_of_ten``, dividing for negative powers (2500 × 10^-4 is 0.25, not 0.25000000000000006)."""
    return float(value) * 10**power_of_ten if power_of_ten >= 0 else float(value) / 10 ** (-power_of_ten)


def active_power_w(el: etree._Element | None) -> float | None:
    """An ActivePower element (``value`` × 10^``multiplier`` W)."""
    if el is None:
        return None
    value = _int(el, "value")
    mult = _int(el, "multiplier", 0, lo=-9, hi=9)
    if value is None:
        raise ResourceError(f"{_local(el)}.value is missing")
    w = float(value) * 10.0**mult
    if not math.isfinite(w):
        raise ResourceError(f"{_local(el)} is not finite")
    return w


def _percent(el: etree._Element, name: str) -> float | None:
    """PerCent / SignedPerCent: hundredths of a percent."""
    v = _int(el, name, lo=-10000, hi=10000)
    return None if v is None else v / 100.0


def parse_der_control_base(el: etree._Element | None) -> DERControlBase:
    if el is None:
        return DERControlBase()
    return DERControlBase(
        op_mod_exp_lim_w=active_power_w(_child(el, "opModExpLimW")),
        op_mod_imp_lim_w=active_power_w(_child(el, "opModImpLimW")),
        op_mod_gen_lim_w=active_power_w(_child(el, "opModGenLimW")),
        op_mod_load_lim_w=active_power_w(_child(el, "opModLoadLimW")),
        op_mod_max_lim_pct=_percent(el, "opModMaxLimW"),
        op_mod_target_w=active_power_w(_child(el, "opModTargetW")),
        op_mod_fixed_w_pct=_percent(el, "opModFixedW"),
        op_mod_connect=_bool(el, "opModConnect"),
        op_mod_energize=_bool(el, "opModEnergize"),
        **{attr: _link(el, tag) for tag, attr in CURVE_MODES.items()},
    )


# DERControlBase curve elements (links to a DERCurve) -> DERControlBase attribute
CURVE_MODES: dict[str, str] = {
    "opModVoltVar": "op_mod_volt_var",
    "opModVoltWatt": "op_mod_volt_watt",
    "opModFreqWatt": "op_mod_freq_watt",
    "opModWattPF": "op_mod_watt_pf",
    "opModWattVar": "op_mod_watt_var",
    "opModHFRTMayTrip": "op_mod_hfrt_may_trip",
    "opModHFRTMustTrip": "op_mod_hfrt_must_trip",
    "opModHVRTMayTrip": "op_mod_hvrt_may_trip",
    "opModHVRTMomentaryCessation": "op_mod_hvrt_momentary_cessation",
    "opModHVRTMustTrip": "op_mod_hvrt_must_trip",
    "opModLFRTMayTrip": "op_mod_lfrt_may_trip",
    "opModLFRTMustTrip": "op_mod_lfrt_must_trip",
    "opModLVRTMayTrip": "op_mod_lvrt_may_trip",
    "opModLVRTMomentaryCessation": "op_mod_lvrt_momentary_cessation",
    "opModLVRTMustTrip": "op_mod_lvrt_must_trip",
}

# DERCurveType (IEEE 2030.5 DERCurve.curveType)
CURVE_TYPES: dict[int, str] = {
    0: "opModFreqWatt",
    1: "opModHFRTMayTrip",
    2: "opModHFRTMustTrip",
    3: "opModHVRTMayTrip",
    4: "opModHVRTMomentaryCessation",
    5: "opModHVRTMustTrip",
    6: "opModLFRTMayTrip",
    7: "opModLFRTMustTrip",
    8: "opModLVRTMayTrip",
    9: "opModLVRTMomentaryCessation",
    10: "opModLVRTMustTrip",
    11: "opModVoltVar",
    12: "opModVoltWatt",
    13: "opModWattPF",
    14: "opModWattVar",
}


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """One CurveData point, already scaled by the curve's xMultiplier / yMultiplier."""

    x: float
    y: float
    excitation: bool | None = None  # opModWattPF: true = over-excited


@dataclass(frozen=True, slots=True)
class DERCurve:
    """A DERCurve (volt-var, volt-watt, freq-watt, ride-through...). Times are in hundredths of a second in the
    standard (``*Tms``) and kept so; ``x``/``y`` units follow ``curveType`` (e.g. volt-var: x % of vRef, y in
    the ``yRefType`` unit, typically % of setMaxVar)."""

    href: str
    mrid: str | None
    description: str | None
    creation_time: int | None
    curve_type: int
    points: tuple[CurvePoint, ...]
    x_multiplier: int = 0
    y_multiplier: int = 0
    y_ref_type: int | None = None
    v_ref_pct: float | None = None  # vRef: PerCent (hundredths of a percent in the document)
    autonomous_v_ref_enable: bool | None = None
    autonomous_v_ref_time_constant_s: int | None = None
    open_loop_tms: int | None = None
    ramp_dec_tms: int | None = None
    ramp_inc_tms: int | None = None
    ramp_pt1_tms: int | None = None

    @property
    def mode(self) -> str:
        return CURVE_TYPES.get(self.curve_type, f"curveType {self.curve_type}")

    def to_json(self) -> dict:
        return {
            "href": self.href,
            "mrid": self.mrid,
            "description": self.description,
            "curve_type": self.curve_type,
            "mode": self.mode,
            "points": [
                {"x": p.x, "y": p.y, **({} if p.excitation is None else {"excitation": p.excitation})}
                for p in self.points
            ],
            "y_ref_type": self.y_ref_type,
            "v_ref_pct": self.v_ref_pct,
            "autonomous_v_ref_enable": self.autonomous_v_ref_enable,
            "autonomous_v_ref_time_constant_s": self.autonomous_v_ref_time_constant_s,
            "open_loop_tms": self.open_loop_tms,
            "ramp_dec_tms": self.ramp_dec_tms,
            "ramp_inc_tms": self.ramp_inc_tms,
            "ramp_pt1_tms": self.ramp_pt1_tms,
        }


def parse_der_curve(el: etree._Element) -> DERCurve:
    _expect(el, "DERCurve")
    curve_type = _int(el, "curveType", lo=0, hi=255)
    if curve_type is None:
        raise ResourceError("DERCurve.curveType is missing")
    xm = _int(el, "xMultiplier", 0, lo=-9, hi=9)
    ym = _int(el, "yMultiplier", 0, lo=-9, hi=9)
    points = []
    for cd in _children(el, "CurveData"):
        x = _int(cd, "xvalue")
        y = _int(cd, "yvalue")
        if x is None or y is None:
            raise ResourceError("DERCurve.CurveData needs xvalue and yvalue")
        points.append(CurvePoint(scaled(x, xm), scaled(y, ym), _bool(cd, "excitation")))
    if not points:
        raise ResourceError("DERCurve has no CurveData")
    if len(points) > 10:  # the standard allows at most 10 points
        raise ResourceError(f"DERCurve has {len(points)} CurveData points; at most 10 are allowed")
    v_ref = _int(el, "vRef", lo=0)
    return DERCurve(
        href=el.get("href", ""),
        mrid=_hex(el, "mRID", 32),
        description=_text(el, "description"),
        creation_time=_int(el, "creationTime"),
        curve_type=curve_type,
        points=tuple(points),
        x_multiplier=xm,
        y_multiplier=ym,
        y_ref_type=_int(el, "yRefType"),
        v_ref_pct=None if v_ref is None else v_ref / 100.0,
        autonomous_v_ref_enable=_bool(el, "autonomousVRefEnable"),
        autonomous_v_ref_time_constant_s=_int(el, "autonomousVRefTimeConstant", lo=0),
        open_loop_tms=_int(el, "openLoopTms", lo=0),
        ramp_dec_tms=_int(el, "rampDecTms", lo=0),
        ramp_inc_tms=_int(el, "rampIncTms", lo=0),
        ramp_pt1_tms=_int(el, "rampPT1Tms", lo=0),
    )


@dataclass(frozen=True, slots=True)
class EventStatus:
    """currentStatus: 0 scheduled, 1 active, 2 cancelled, 3 cancelled with randomization, 4 superseded."""

    current_status: int
    date_time: int | None
    potentially_superseded: bool
    reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.current_status in (2, 3)

    @property
    def superseded(self) -> bool:
        return self.current_status == 4


@dataclass(frozen=True, slots=True)
class Event:
    """What DERControl and EndDeviceControl share (RandomizableEvent, RespondableResource)."""

    kind: str  # "DERControl" | "EndDeviceControl"
    href: str
    mrid: str
    description: str | None
    creation_time: int
    event_status: EventStatus
    start: int
    duration: int
    randomize_start: int
    randomize_duration: int
    reply_to: str | None
    response_required: int
    base: DERControlBase | None = None  # DERControl
    target_reduction_w: float | None = None  # EndDeviceControl TargetReduction (kW type only)
    appliance_load_reduction: int | None = None  # EndDeviceControl ApplianceLoadReduction type
    duty_cycle_pct: int | None = None

    @property
    def end(self) -> int:
        return self.start + self.duration


def _event(el: etree._Element, kind: str) -> Event:
    _expect(el, kind)
    mrid = _hex(el, "mRID", 32)
    if not mrid:
        raise ResourceError(f"{kind}.mRID is missing")
    creation = _int(el, "creationTime")
    if creation is None:
        raise ResourceError(f"{kind} {mrid}: creationTime is missing")
    es = _child(el, "EventStatus")
    if es is None:
        raise ResourceError(f"{kind} {mrid}: EventStatus is missing")
    current = _int(es, "currentStatus", lo=0, hi=255)
    if current is None:
        raise ResourceError(f"{kind} {mrid}: EventStatus.currentStatus is missing")
    status = EventStatus(
        current, _int(es, "dateTime"), bool(_bool(es, "potentiallySuperseded")), _text(es, "reason")
    )
    iv = _child(el, "interval")
    if iv is None:
        raise ResourceError(f"{kind} {mrid}: interval is missing")
    start = _int(iv, "start")
    duration = _int(iv, "duration", lo=0, hi=2**32 - 1)
    if start is None or duration is None:
        raise ResourceError(f"{kind} {mrid}: interval needs start and duration")
    rr_raw = el.get("responseRequired", "00")
    if not _HEX.match(rr_raw) or not 1 <= len(rr_raw) <= 2:
        raise ResourceError(f"{kind} {mrid}: responseRequired = {rr_raw!r} is not hexBinary8")
    target = None
    alr = None
    duty = None
    if kind == "EndDeviceControl":
        tr = _child(el, "TargetReduction")
        if tr is not None and _int(tr, "type") == 1:  # 0 = kWh, 1 = kW
            v = _int(tr, "value", lo=0)
            target = None if v is None else v * 1000.0
        a = _child(el, "ApplianceLoadReduction")
        alr = None if a is None else _int(a, "type", lo=0, hi=255)
        d = _child(el, "DutyCycle")
        duty = None if d is None else _int(d, "normalValue", lo=0, hi=100)
    return Event(
        kind=kind,
        href=el.get("href", ""),
        mrid=mrid,
        description=_text(el, "description"),
        creation_time=creation,
        event_status=status,
        start=start,
        duration=duration,
        randomize_start=_int(el, "randomizeStart", 0, lo=-3600, hi=3600),
        randomize_duration=_int(el, "randomizeDuration", 0, lo=-3600, hi=3600),
        reply_to=el.get("replyTo"),
        response_required=int(rr_raw, 16),
        base=parse_der_control_base(_child(el, "DERControlBase")) if kind == "DERControl" else None,
        target_reduction_w=target,
        appliance_load_reduction=alr,
        duty_cycle_pct=duty,
    )


def parse_der_control(el: etree._Element) -> Event:
    return _event(el, "DERControl")


def parse_der_control_list(root: etree._Element) -> ResourceList:
    return _list(root, "DERControlList", "DERControl", parse_der_control)


@dataclass(frozen=True, slots=True)
class DefaultDERControl:
    href: str
    mrid: str | None
    base: DERControlBase


def parse_default_der_control(root: etree._Element) -> DefaultDERControl:
    _expect(root, "DefaultDERControl")
    return DefaultDERControl(
        root.get("href", ""), _hex(root, "mRID", 32), parse_der_control_base(_child(root, "DERControlBase"))
    )


@dataclass(frozen=True, slots=True)
class DemandResponseProgram:
    href: str
    mrid: str | None
    description: str | None
    primacy: int
    end_device_control_list_link: str | None
    active_end_device_control_list_link: str | None


def parse_dr_program(el: etree._Element) -> DemandResponseProgram:
    _expect(el, "DemandResponseProgram")
    return DemandResponseProgram(
        href=el.get("href", ""),
        mrid=_hex(el, "mRID", 32),
        description=_text(el, "description"),
        primacy=_int(el, "primacy", 0, lo=0, hi=255),
        end_device_control_list_link=_link(el, "EndDeviceControlListLink"),
        active_end_device_control_list_link=_link(el, "ActiveEndDeviceControlListLink"),
    )


def parse_dr_program_list(root: etree._Element) -> ResourceList:
    return _list(root, "DemandResponseProgramList", "DemandResponseProgram", parse_dr_program)


def parse_end_device_control(el: etree._Element) -> Event:
    return _event(el, "EndDeviceControl")


def parse_end_device_control_list(root: etree._Element) -> ResourceList:
    return _list(root, "EndDeviceControlList", "EndDeviceControl", parse_end_device_control)


@dataclass(frozen=True, slots=True)
class TariffProfile:
    """A tariff: ``currency`` (ISO 4217 numeric, e.g. 840 USD, 036 AUD, 978 EUR) and the power of ten of every
    ``price`` under it (``pricePowerOfTenMultiplier``)."""

    href: str
    mrid: str | None
    description: str | None
    currency: int | None
    price_power_of_ten_multiplier: int
    primacy: int
    rate_code: str | None
    rate_component_list_link: str | None


def parse_tariff_profile(el: etree._Element) -> TariffProfile:
    _expect(el, "TariffProfile")
    return TariffProfile(
        href=el.get("href", ""),
        mrid=_hex(el, "mRID", 32),
        description=_text(el, "description"),
        currency=_int(el, "currency", lo=0, hi=999),
        price_power_of_ten_multiplier=_int(el, "pricePowerOfTenMultiplier", 0, lo=-9, hi=9),
        primacy=_int(el, "primacy", 0, lo=0, hi=255),
        rate_code=_text(el, "rateCode"),
        rate_component_list_link=_link(el, "RateComponentListLink"),
    )


def parse_tariff_profile_list(root: etree._Element) -> ResourceList:
    return _list(root, "TariffProfileList", "TariffProfile", parse_tariff_profile)


@dataclass(frozen=True, slots=True)
class RateComponent:
    href: str
    mrid: str | None
    description: str | None
    role_flags: str | None
    reading_type_link: str | None
    time_tariff_interval_list_link: str | None


def parse_rate_component(el: etree._Element) -> RateComponent:
    _expect(el, "RateComponent")
    return RateComponent(
        href=el.get("href", ""),
        mrid=_hex(el, "mRID", 32),
        description=_text(el, "description"),
        role_flags=_hex(el, "roleFlags", 4),
        reading_type_link=_link(el, "ReadingTypeLink"),
        time_tariff_interval_list_link=_link(el, "TimeTariffIntervalListLink"),
    )


def parse_rate_component_list(root: etree._Element) -> ResourceList:
    return _list(root, "RateComponentList", "RateComponent", parse_rate_component)


@dataclass(frozen=True, slots=True)
class ReadingType:
    href: str
    uom: int | None  # 72 = Wh, 38 = W
    power_of_ten_multiplier: int
    commodity: int | None = None
    flow_direction: int | None = None


def parse_reading_type(root: etree._Element) -> ReadingType:
    _expect(root, "ReadingType")
    return ReadingType(
        href=root.get("href", ""),
        uom=_int(root, "uom"),
        power_of_ten_multiplier=_int(root, "powerOfTenMultiplier", 0, lo=-9, hi=9),
        commodity=_int(root, "commodity"),
        flow_direction=_int(root, "flowDirection"),
    )


@dataclass(frozen=True, slots=True)
class TimeTariffInterval:
    """A price interval (TariffProfile → RateComponent → TimeTariffIntervalList), an Event with EventStatus."""

    href: str
    mrid: str
    creation_time: int
    start: int
    duration: int
    tou_tier: int | None
    consumption_tariff_interval_list_link: str | None
    event_status: EventStatus | None = None
    randomize_start: int = 0
    randomize_duration: int = 0

    @property
    def end(self) -> int:
        return self.start + self.duration


def parse_time_tariff_interval(el: etree._Element) -> TimeTariffInterval:
    _expect(el, "TimeTariffInterval")
    mrid = _hex(el, "mRID", 32)
    if not mrid:
        raise ResourceError("TimeTariffInterval.mRID is missing")
    iv = _child(el, "interval")
    if iv is None:
        raise ResourceError(f"TimeTariffInterval {mrid}: interval is missing")
    start = _int(iv, "start")
    duration = _int(iv, "duration", lo=0, hi=2**32 - 1)
    if start is None or duration is None:
        raise ResourceError(f"TimeTariffInterval {mrid}: interval needs start and duration")
    status = None
    es = _child(el, "EventStatus")
    if es is not None:
        current = _int(es, "currentStatus", 0, lo=0, hi=255)
        status = EventStatus(
            current, _int(es, "dateTime"), bool(_bool(es, "potentiallySuperseded")), _text(es, "reason")
        )
    return TimeTariffInterval(
        href=el.get("href", ""),
        mrid=mrid,
        creation_time=_int(el, "creationTime", 0),
        start=start,
        duration=duration,
        tou_tier=_int(el, "touTier"),
        consumption_tariff_interval_list_link=_link(el, "ConsumptionTariffIntervalListLink"),
        event_status=status,
        randomize_start=_int(el, "randomizeStart", 0, lo=-3600, hi=3600),
        randomize_duration=_int(el, "randomizeDuration", 0, lo=-3600, hi=3600),
    )


def parse_time_tariff_interval_list(root: etree._Element) -> ResourceList:
    return _list(root, "TimeTariffIntervalList", "TimeTariffInterval", parse_time_tariff_interval)


@dataclass(frozen=True, slots=True)
class ConsumptionTariffInterval:
    """``price`` as sent (an Int32 in the TariffProfile's currency × 10^pricePowerOfTenMultiplier per unit of
    the RateComponent's ReadingType) for consumption from ``start_value`` on (block ``consumption_block``,
    0 = not applicable)."""

    href: str
    consumption_block: int
    price: int
    start_value: int | None


def parse_consumption_tariff_interval(el: etree._Element) -> ConsumptionTariffInterval:
    _expect(el, "ConsumptionTariffInterval")
    price = _int(el, "price", lo=-(2**31), hi=2**31 - 1)
    if price is None:
        raise ResourceError("ConsumptionTariffInterval.price is missing")
    return ConsumptionTariffInterval(
        href=el.get("href", ""),
        consumption_block=_int(el, "consumptionBlock", 0, lo=0, hi=255),
        price=price,
        start_value=_int(el, "startValue", lo=0),
    )


def parse_consumption_tariff_interval_list(root: etree._Element) -> ResourceList:
    return _list(
        root, "ConsumptionTariffIntervalList", "ConsumptionTariffInterval", parse_consumption_tariff_interval
    )


def price_per_kwh(price: int, profile: TariffProfile, reading_type: ReadingType | None = None) -> float:
    """A ConsumptionTariffInterval's ``price`` in currency units per kWh: ``price`` × 10^pricePowerOfTenMultiplier
    is per unit of the RateComponent's ReadingType (Wh × 10^powerOfTenMultiplier); without a ReadingType (or
    one that is not energy in Wh) the unit is taken to be the kWh."""
    power = profile.price_power_of_ten_multiplier
    if reading_type is not None and reading_type.uom == 72:
        power += 3 - reading_type.power_of_ten_multiplier  # per Wh x 10^m -> per kWh
    return scaled(price, power)


@dataclass(frozen=True, slots=True)
class DER:
    href: str
    der_capability_link: str | None
    der_settings_link: str | None
    der_status_link: str | None
    der_availability_link: str | None


def parse_der(el: etree._Element) -> DER:
    _expect(el, "DER")
    return DER(
        el.get("href", ""),
        _link(el, "DERCapabilityLink"),
        _link(el, "DERSettingsLink"),
        _link(el, "DERStatusLink"),
        _link(el, "DERAvailabilityLink"),
    )


def parse_der_list(root: etree._Element) -> ResourceList:
    return _list(root, "DERList", "DER", parse_der)


@dataclass(frozen=True, slots=True)
class Response:
    kind: str  # DERControlResponse | DrResponse | Response
    created: int
    lfdi: str
    status: int
    subject: str


def parse_response(root: etree._Element) -> Response:
    kind = _local(root)
    if etree.QName(root).namespace != NS or kind not in ("DERControlResponse", "DrResponse", "Response"):
        raise ResourceError(f"expected a 2030.5 Response, got {root.tag!r}")
    status = _int(root, "status", lo=0, hi=255)
    lfdi = _hex(root, "endDeviceLFDI", 40)
    subject = _hex(root, "subject", 32)
    if status is None or lfdi is None or subject is None:
        raise ResourceError(f"{kind} needs status, endDeviceLFDI and subject")
    return Response(kind, _int(root, "createdDateTime", 0), lfdi, status, subject)


@dataclass(frozen=True, slots=True)
class MirrorReading:
    """One MirrorMeterReading with its single Reading, scaled by the ReadingType's powerOfTenMultiplier."""

    mrid: str
    description: str | None
    uom: int | None
    flow_direction: int | None
    kind: int | None
    value: float | None
    time: int | None


def _mirror_reading(el: etree._Element) -> MirrorReading:
    rt = _child(el, "ReadingType")
    uom = flow = kind = None
    mult = 0
    if rt is not None:
        uom = _int(rt, "uom")
        flow = _int(rt, "flowDirection")
        kind = _int(rt, "kind")
        mult = _int(rt, "powerOfTenMultiplier", 0, lo=-9, hi=9)
    value = ts = None
    rd = _child(el, "Reading")
    if rd is not None:
        raw = _int(rd, "value")
        value = None if raw is None else raw * 10.0**mult
        tp = _child(rd, "timePeriod")
        ts = None if tp is None else _int(tp, "start")
    return MirrorReading(_hex(el, "mRID", 32) or "", _text(el, "description"), uom, flow, kind, value, ts)


def parse_mirror_readings(root: etree._Element) -> list[MirrorReading]:
    """A MirrorUsagePoint, a MirrorMeterReadingList or a single MirrorMeterReading."""
    kind = _local(root)
    if etree.QName(root).namespace != NS:
        raise ResourceError(f"expected a 2030.5 resource, got {root.tag!r}")
    if kind == "MirrorMeterReading":
        return [_mirror_reading(root)]
    if kind in ("MirrorUsagePoint", "MirrorMeterReadingList"):
        return [_mirror_reading(c) for c in _children(root, "MirrorMeterReading")]
    raise ResourceError(f"expected mirror readings, got {kind}")


# ------------------------------------------------------------------------------------------------------------
# building documents (client requests and the simulated server's answers)


def element(tag: str, attrib: dict | None = None, **children: Any) -> etree._Element:
    el = etree.Element(f"{{{NS}}}{tag}", nsmap={None: NS})
    for k, v in (attrib or {}).items():
        if v is not None:
            el.set(k, str(v))
    for k, v in children.items():
        add(el, k, v)
    return el


def add(parent: etree._Element, tag: str, value: Any = None, attrib: dict | None = None) -> etree._Element:
    """Append ``<tag>``: a scalar becomes text, a dict nested children (None values skipped)."""
    el = etree.SubElement(parent, f"{{{NS}}}{tag}")
    for k, v in (attrib or {}).items():
        if v is not None:
            el.set(k, str(v))
    if isinstance(value, dict):
        for k, v in value.items():
            if v is not None:
                add(el, k, v)
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    elif value is not None:
        el.text = str(value)
    return el


def to_bytes(el: etree._Element) -> bytes:
    return etree.tostring(el, xml_declaration=True, encoding="UTF-8")


def active_power(watts: float) -> dict:
    """An ActivePower value for ``watts``: the smallest multiplier that fits an Int16 value."""
    mult = 0
    v = round(watts)
    while abs(v) > 32767 and mult < 9:
        mult += 1
        v = round(watts / 10**mult)
    return {"multiplier": mult, "value": v}


def response_doc(kind: str, created: int, lfdi: str, status: int, subject: str) -> bytes:
    return to_bytes(
        element(kind, createdDateTime=created, endDeviceLFDI=lfdi, status=status, subject=subject)
    )


def end_device_doc(lfdi: str, sfdi: int, changed_time: int) -> bytes:
    return to_bytes(element("EndDevice", changedTime=changed_time, lFDI=lfdi, sFDI=sfdi))
