"""The 2030.5 event rules as pure functions: DERControls and EndDeviceControls → core ``DREvent``s, supersession
by primacy and creation time, the control modes in force (with DefaultDERControl as the fallback), and what the
PV inverter and battery are told.

Times: a 2030.5 server's times are its own clock's; ``offset_s`` = server time − local time (from the Time
resource), so a server time ``t`` is ``t − offset_s`` on the gateway's clock.

Response status codes (IEEE 2030.5 Response, by function set): 1 event received, 2 started, 3 completed,
4 opted out, 5 opted in, 6 cancelled, 7 superseded, 252 rejected (invalid), 253 rejected (expired).
``responseRequired`` (hexBinary8): bit 0 = acknowledge receipt, bit 1 = send the specific responses (started,
completed, cancelled, superseded, opt-out), bit 2 = a user response.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from hems.dr import DREvent, DRNotice

from .resources import DERControlBase, DERCurve, Event, TimeTariffInterval

SOURCE = "sep2"

RECEIVED = 1
STARTED = 2
COMPLETED = 3
OPTED_OUT = 4
OPTED_IN = 5
CANCELLED = 6
SUPERSEDED = 7
REJECTED_INVALID = 252
REJECTED_EXPIRED = 253

NOTICE_STATUS: dict[DRNotice, int] = {
    DRNotice.RECEIVED: RECEIVED,
    DRNotice.STARTED: STARTED,
    DRNotice.COMPLETED: COMPLETED,
    DRNotice.OPTED_OUT: OPTED_OUT,
    DRNotice.CANCELLED: CANCELLED,
    DRNotice.SUPERSEDED: SUPERSEDED,
}


def response_wanted(response_required: int, status: int) -> bool:
    """Whether ``responseRequired`` asks for a Response with ``status``."""
    if status == RECEIVED:
        return bool(response_required & 0x01)
    return bool(response_required & 0x02)


@dataclass(frozen=True, slots=True)
class Tracked:
    """One event as the client knows it: the resource, its program's primacy and where it came from."""

    event: Event
    primacy: int
    program_href: str
    # the DERCurves its DERControlBase links to, by 2030.5 mode name (opModVoltVar...): fetched by the client
    curves: dict[str, DERCurve] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"{SOURCE}:{event_id(self.event)}"

    def precedes(self, other: Tracked) -> bool:
        """This event wins over ``other``: lower primacy value, then the later creationTime, then mRID."""
        a, b = self.event, other.event
        return (self.primacy, -a.creation_time, a.mrid) < (other.primacy, -b.creation_time, b.mrid)


def event_id(event: Event) -> str:
    return ("derc-" if event.kind == "DERControl" else "edc-") + event.mrid


def _conflict(a: Event, b: Event) -> bool:
    if a.kind != b.kind:
        return False
    if not (a.start < b.end and b.start < a.end):
        return False
    if a.kind == "DERControl" and a.base is not None and b.base is not None:
        return bool(a.base.modes() & b.base.modes())
    return True


def superseded(tracked: list[Tracked]) -> dict[str, str]:
    """``{mRID: mRID of the event that supersedes it}``: among events that overlap in time (and, for DER
    controls, share a control mode), the one with the lower primacy value wins, then the later creationTime.
    Cancelled events take no part."""
    live = [t for t in tracked if not t.event.event_status.cancelled]
    out: dict[str, str] = {}
    for t in live:
        for other in live:
            if other is t or not _conflict(t.event, other.event):
                continue
            if other.precedes(t):
                best = out.get(t.event.mrid)
                if best is None:
                    out[t.event.mrid] = other.event.mrid
    return out


def to_dr_event(
    tracked: Tracked,
    *,
    offset_s: float,
    duration_extra_s: float = 0.0,
    modification_number: int = 0,
) -> DREvent:
    """The core DR event of a DERControl or EndDeviceControl. ``duration_extra_s`` is this home's draw from
    ``randomizeDuration`` (drawn once per event by the caller). A negative ``randomizeStart`` moves the window
    so that the core's draw from ``[0, |r|]`` lands in ``[start − |r|, start]``."""
    ev = tracked.event
    start = ev.start - offset_s
    rand = float(ev.randomize_start)
    if rand < 0:
        start += rand
        rand = -rand
    duration = max(1.0, ev.duration + duration_extra_s) if ev.duration > 0 else 0.0
    import_cap = None
    shed = None
    level = None
    export_cap = generation_cap = None
    ref: dict = {
        "kind": ev.kind,
        "mrid": ev.mrid,
        "href": ev.href,
        "program": tracked.program_href,
        "primacy": tracked.primacy,
        "creation_time": ev.creation_time,
        "reply_to": ev.reply_to,
        "response_required": ev.response_required,
        "server_start": ev.start,
        "server_duration": ev.duration,
    }
    if ev.base is not None:
        import_cap = ev.base.op_mod_imp_lim_w
        ref["controls"] = ev.base.to_json()
        export = export_limit_w(ev.base)
        if export is not None:
            ref["export_limit_w"] = export
        export_cap = None if ev.base.op_mod_exp_lim_w is None else max(0.0, float(ev.base.op_mod_exp_lim_w))
        generation_cap = (
            None if ev.base.op_mod_gen_lim_w is None else max(0.0, float(ev.base.op_mod_gen_lim_w))
        )
        if ev.base.op_mod_connect is False or ev.base.op_mod_energize is False:
            generation_cap = 0.0
        links = ev.base.curve_links()
        if links:
            ref["curves"] = {
                mode: tracked.curves[mode].to_json() if mode in tracked.curves else {"href": href}
                for mode, href in links.items()
            }
    else:
        shed = ev.target_reduction_w
        level = 2 if ev.appliance_load_reduction == 1 else 1
        ref["target_reduction_w"] = ev.target_reduction_w
        ref["appliance_load_reduction"] = ev.appliance_load_reduction
        ref["duty_cycle_pct"] = ev.duty_cycle_pct
    return DREvent(
        source=SOURCE,
        event_id=event_id(ev),
        start_ts=float(start),
        duration_s=float(duration),
        modification_number=modification_number,
        market_context=tracked.program_href,
        randomization_s=rand,
        shed_w=shed,
        import_cap_w=import_cap,
        export_cap_w=export_cap,
        generation_cap_w=generation_cap,
        level=level,
        priority=tracked.primacy + 1,  # the core's 0 means "unspecified"; 2030.5 primacy 0 is the highest
        source_ref=ref,
    )


def export_limit_w(base: DERControlBase) -> float | None:
    """The tightest of the export and generation limits (W); None when neither is set."""
    limits = [v for v in (base.op_mod_exp_lim_w, base.op_mod_gen_lim_w) if v is not None]
    return max(0.0, min(limits)) if limits else None


def merge(active: list[Tracked], default: DERControlBase | None) -> DERControlBase:
    """The control modes in force: each mode from the highest-precedence active control that sets it, else
    from DefaultDERControl."""
    ordered = sorted(active, key=lambda t: (t.primacy, -t.event.creation_time, t.event.mrid))
    values: dict[str, object] = {}
    for name in DERControlBase.__slots__:
        for t in ordered:
            if t.event.base is not None and getattr(t.event.base, name) is not None:
                values[name] = getattr(t.event.base, name)
                break
        else:
            if default is not None and getattr(default, name) is not None:
                values[name] = getattr(default, name)
    return replace(DERControlBase(), **values)


def pv_limit_w(base: DERControlBase, rated_w: float) -> float | None:
    """The PV inverter's AC limit for these modes: 0 when told to disconnect or cease to energize, else the
    tightest of the export limit, the generation limit and opModMaxLimW × the rating; None = no curtailment.
    (An export limit is applied to the inverter as a generation limit: never exported above it, whatever the
    home consumes; the controller can refine this once the core DR event carries an export cap.)"""
    if base.op_mod_connect is False or base.op_mod_energize is False:
        return 0.0
    limits = []
    exp = export_limit_w(base)
    if exp is not None:
        limits.append(exp)
    if base.op_mod_max_lim_pct is not None and math.isfinite(rated_w):
        limits.append(max(0.0, base.op_mod_max_lim_pct / 100.0 * rated_w))
    return min(limits) if limits else None


def battery_setpoint_w(base: DERControlBase, rated_w: float) -> float | None:
    """The battery's charge power (+charge) for opModTargetW / opModFixedW (2030.5: + = delivered to the grid,
    so the sign flips); None = the battery's own mode."""
    if base.op_mod_target_w is not None:
        return -base.op_mod_target_w
    if base.op_mod_fixed_w_pct is not None:
        return -base.op_mod_fixed_w_pct / 100.0 * rated_w
    return None


def price_event_id(interval: TimeTariffInterval) -> str:
    return "price-" + interval.mrid


def price_event(
    interval: TimeTariffInterval,
    price_per_kwh: float,
    *,
    offset_s: float,
    market_context: str,
    primacy: int = 0,
    modification_number: int = 0,
    ref: dict | None = None,
) -> DREvent:
    """A TimeTariffInterval as a core price event (only ``price_per_kwh`` set): the planner plans on it for its
    window (``DRManager.prices``)."""
    return DREvent(
        source=SOURCE,
        event_id=price_event_id(interval),
        start_ts=float(interval.start - offset_s),
        duration_s=float(max(1, interval.duration)),
        modification_number=modification_number,
        market_context=market_context,
        price_per_kwh=float(price_per_kwh),
        priority=primacy + 1,
        source_ref={
            "kind": "TimeTariffInterval",
            "mrid": interval.mrid,
            "href": interval.href,
            "server_start": interval.start,
            "server_duration": interval.duration,
            "tou_tier": interval.tou_tier,
            **(ref or {}),
        },
    )
