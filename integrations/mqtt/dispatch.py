"""MQTT commands (VPP dispatch): parse, check against the home's limits, and hold as controller overrides.

Pure functions and plain state, no I/O: ``parse_command`` turns a payload into a ``ParsedCommand`` or raises
``Rejected`` with a reason a person can act on; ``plan_command`` checks it against the latest measured state
(``HomeView``) and the home's parameters and returns the device commands and the override it amounts to.

``Dispatch`` holds the overrides in force. **How the controller uses it** (the lead wires this): after the
strategy decided and *before* ``apply_limits``, ask ``dispatch.active_override(now)``; when it returns a dict,
replace the decision's fields that the dict names (``battery_charge_power_w``, ``ev_power_limit_w``,
``water_heater_enabled``) and add ``dict["reasons"]`` to the decision's reasons, then run ``apply_limits`` as
always, so safety, the service limit, DR caps and the battery reserve still tighten a dispatch::

    override = dispatch.active_override(state.ts)
    if override is not None:
        fields = {k: v for k, v in override.items() if k in OVERRIDE_FIELDS}
        decision = replace(decision, **fields, reasons=decision.reasons + tuple(override["reasons"]))
    decision = apply_limits(decision, state, params, limits)

Until that is wired, the MQTT integration re-sends the override's device commands every second while it is
active (the controller, every few seconds, only re-sends a setting when its decision differs from what was
last asked, so the dispatch wins most of the time, with a short blip at most).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from hems.home import HomeParams
from hems.model import Setting

COMMAND_TYPES = ("battery_power", "load_shed", "ev_pause", "return_to_plan")
OVERRIDE_FIELDS = ("battery_charge_power_w", "ev_power_limit_w", "water_heater_enabled")
MAX_PAYLOAD_BYTES = 4096
MAX_DURATION_S = 86400.0


class Rejected(Exception):
    """A command that is not carried out; ``str()`` is the reason sent back."""

    def __init__(self, reason: str, command_id: str | int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command_id = command_id


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    id: str | int
    type: str
    value_w: float | None = None
    duration_s: float | None = None
    event: str | None = None  # optional DR event id or key the dispatch belongs to


def parse_command(payload: bytes, token: str | None) -> ParsedCommand:
    """Validate a ``hems/<gw>/cmd`` payload. Raises ``Rejected`` (with the id when one could be read)."""
    import hmac

    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected(f"payload too large ({len(payload)} bytes, at most {MAX_PAYLOAD_BYTES})")
    try:
        msg = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected(f"payload is not JSON: {str(exc)[:80]}") from None
    if not isinstance(msg, dict):
        raise Rejected("payload must be a JSON object")
    cid = msg.get("id")
    if (
        isinstance(cid, bool)
        or not isinstance(cid, str | int)
        or (isinstance(cid, str) and not 0 < len(cid) <= 128)
    ):
        raise Rejected("'id' (correlation id) must be a string of 1-128 characters or an integer")
    if token is not None:
        given = msg.get("token")
        if not isinstance(given, str):
            raise Rejected("unauthorised: 'token' missing", cid)
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Rejected("unauthorised: wrong 'token'", cid)
    unknown = sorted(set(msg) - {"id", "type", "value_w", "duration_s", "token", "event"})
    if unknown:
        raise Rejected(f"unknown field(s) {', '.join(map(repr, unknown))}", cid)
    ctype = msg.get("type")
    if ctype not in COMMAND_TYPES:
        raise Rejected(f"'type' must be one of {', '.join(COMMAND_TYPES)}, got {ctype!r}", cid)
    value_w = duration_s = None
    if ctype in ("battery_power", "load_shed"):
        value_w = _number(msg, "value_w", cid)
        if ctype == "load_shed" and value_w <= 0:
            raise Rejected(f"load_shed 'value_w' must be > 0 (W to shed), got {value_w:g}", cid)
    elif "value_w" in msg:
        raise Rejected(f"{ctype} takes no 'value_w'", cid)
    if ctype != "return_to_plan":
        duration_s = _number(msg, "duration_s", cid)
        if not 0 < duration_s <= MAX_DURATION_S:
            raise Rejected(f"'duration_s' must be > 0 and <= {MAX_DURATION_S:.0f}, got {duration_s:g}", cid)
    elif "duration_s" in msg:
        raise Rejected("return_to_plan takes no 'duration_s'", cid)
    event = msg.get("event")
    if event is not None and (not isinstance(event, str) or not 0 < len(event) <= 200):
        raise Rejected("'event' must be a DR event id (string)", cid)
    return ParsedCommand(cid, ctype, value_w, duration_s, event)


def _number(msg: dict, key: str, cid) -> float:
    v = msg.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise Rejected(f"'{key}' must be a finite number, got {v!r}", cid)
    return float(v)


@dataclass(frozen=True, slots=True)
class Sheddable:
    device_id: str
    power_w: float
    on: bool


@dataclass(frozen=True, slots=True)
class HomeView:
    """The latest measured state, as far as commands need it (None = not known)."""

    battery_id: str | None = None
    soc_pct: float | None = None
    battery_w: float = 0.0
    grid_w: float | None = None
    ev_id: str | None = None
    ev_plugged: bool = False
    ev_power_w: float = 0.0
    water_heaters: tuple[Sheddable, ...] = ()
    dr_import_cap_w: float | None = None
    dr_event: str = ""
    opted_out: tuple[tuple[str, str, float], ...] = ()  # (key, event_id, end_ts) opted out, window now
    dr_in_force: bool = False  # a DR event in force may take the battery below the reserve


@dataclass
class Override:
    command_id: str | int
    link: str
    type: str
    settings: dict  # OVERRIDE_FIELDS -> value
    commands: list[tuple[str, Setting, object]]  # (device_id, setting, value) held while active
    start_ts: float
    until_ts: float
    reason: str = ""

    def to_json(self) -> dict:
        return {
            "id": self.command_id,
            "link": self.link,
            "type": self.type,
            "settings": dict(self.settings),
            "start_ts": self.start_ts,
            "until_ts": self.until_ts,
            "reason": self.reason,
        }


def plan_command(cmd: ParsedCommand, view: HomeView, params: HomeParams) -> tuple[dict, list, str]:
    """``(override settings, device commands, reason)`` for an accepted command; raises ``Rejected``."""
    b = params.battery
    limit_w = params.site.service_limit_w
    dispatching_down = cmd.type in ("load_shed", "ev_pause") or (
        cmd.type == "battery_power" and (cmd.value_w or 0) < 0
    )
    if cmd.event is not None:
        for key, event_id, _ in view.opted_out:
            if cmd.event in (key, event_id):
                raise Rejected(f"the homeowner opted out of DR event {event_id!r}", cmd.id)
    elif dispatching_down and view.opted_out:
        _key, event_id, _end = view.opted_out[0]
        raise Rejected(f"the homeowner opted out of DR event {event_id!r}, in its window now", cmd.id)

    if cmd.type == "battery_power":
        value = float(cmd.value_w or 0.0)
        if view.battery_id is None:
            raise Rejected("no battery on the gateway", cmd.id)
        if not -b.max_discharge_w <= value <= b.max_charge_w:
            raise Rejected(
                f"value_w {value:g} W outside the battery's range {-b.max_discharge_w:g}..{b.max_charge_w:g} W",
                cmd.id,
            )
        if value < 0:
            _check_reserve(view, b.reserve_soc_pct, cmd.id)
        if value > view.battery_w:
            if view.grid_w is None:
                raise Rejected("grid power not known yet: cannot check the service limit", cmd.id)
            projected = view.grid_w + value - view.battery_w
            if projected > limit_w:
                raise Rejected(
                    f"charging at {value:g} W would import {projected / 1000:.1f} kW, above the "
                    f"{limit_w / 1000:.1f} kW service limit",
                    cmd.id,
                )
            if view.dr_import_cap_w is not None and projected > view.dr_import_cap_w:
                raise Rejected(
                    f"charging at {value:g} W would import {projected / 1000:.1f} kW, above the DR cap of "
                    f"{view.dr_import_cap_w / 1000:.1f} kW ({view.dr_event or 'event in force'})",
                    cmd.id,
                )
        reason = f"battery {'charging' if value >= 0 else 'discharging'} at {abs(value):g} W"
        return (
            {"battery_charge_power_w": value},
            [(view.battery_id, Setting.BATTERY_CHARGE_POWER_W, value)],
            reason,
        )

    if cmd.type == "ev_pause":
        if view.ev_id is None:
            raise Rejected("no EV charger on the gateway", cmd.id)
        return {"ev_power_limit_w": 0.0}, [(view.ev_id, Setting.EV_POWER_LIMIT_W, 0.0)], "EV charging paused"

    if cmd.type == "load_shed":
        want = float(cmd.value_w or 0.0)
        settings: dict = {}
        commands: list = []
        parts = []
        shed = 0.0
        for wh in view.water_heaters:
            if shed >= want:
                break
            commands.append((wh.device_id, Setting.SWITCH_ON, False))
            settings["water_heater_enabled"] = False
            shed += max(0.0, wh.power_w) if wh.on else 0.0
            parts.append(f"{wh.device_id} off")
        if shed < want and view.ev_id is not None and view.ev_plugged and view.ev_power_w > 0:
            commands.append((view.ev_id, Setting.EV_POWER_LIMIT_W, 0.0))
            settings["ev_power_limit_w"] = 0.0
            shed += view.ev_power_w
            parts.append("EV paused")
        if shed < want:
            if view.battery_id is None:
                raise Rejected(f"can shed only {shed:.0f} W of {want:.0f} W: no battery", cmd.id)
            target = view.battery_w - (want - shed)
            if target < -b.max_discharge_w:
                raise Rejected(
                    f"can shed only {shed + view.battery_w + b.max_discharge_w:.0f} W of {want:.0f} W "
                    f"(battery at most {b.max_discharge_w:g} W discharge)",
                    cmd.id,
                )
            if target < 0:
                try:
                    _check_reserve(view, b.reserve_soc_pct, cmd.id)
                except Rejected as exc:
                    raise Rejected(
                        f"can shed only {shed + max(0.0, view.battery_w):.0f} W of {want:.0f} W: {exc}",
                        cmd.id,
                    ) from None
            commands.append((view.battery_id, Setting.BATTERY_CHARGE_POWER_W, round(target, 1)))
            settings["battery_charge_power_w"] = round(target, 1)
            parts.append(f"battery at {target:.0f} W")
        if not commands:
            raise Rejected("nothing to shed: no water heater, EV charger or battery", cmd.id)
        return settings, commands, f"shedding {want:.0f} W: " + ", ".join(parts)

    raise Rejected(f"unexpected type {cmd.type!r}", cmd.id)  # return_to_plan is handled by the caller


def _check_reserve(view: HomeView, reserve_pct: float, cid) -> None:
    if view.dr_in_force:
        return  # a DR event may use the reserve: that is what it is for (as hems.limits)
    if view.soc_pct is None:
        raise Rejected("battery state of charge not known yet: cannot check the reserve", cid)
    if view.soc_pct <= reserve_pct:
        raise Rejected(
            f"battery at {view.soc_pct:.0f} %, at or below the homeowner's {reserve_pct:.0f} % reserve", cid
        )


@dataclass
class Dispatch:
    """The overrides in force. Newer overrides win, field by field; an older one left with no field ends."""

    overrides: list[Override] = field(default_factory=list)

    def add(self, ov: Override) -> list[Override]:
        """Put ``ov`` in force; returns the older overrides it fully replaced (now ended)."""
        ended = []
        for old in list(self.overrides):
            for key in ov.settings:
                old.settings.pop(key, None)
            old.commands = [
                c for c in old.commands if not any(c[1] == n[1] and c[0] == n[0] for n in ov.commands)
            ]
            if not old.settings and not old.commands:
                self.overrides.remove(old)
                ended.append(old)
        self.overrides.append(ov)
        return ended

    def clear(self) -> list[Override]:
        ended, self.overrides = self.overrides, []
        return ended

    def expire(self, now: float) -> list[Override]:
        ended = [o for o in self.overrides if now >= o.until_ts]
        self.overrides = [o for o in self.overrides if now < o.until_ts]
        return ended

    def active(self, now: float) -> list[Override]:
        return [o for o in self.overrides if o.start_ts <= now < o.until_ts]

    def active_override(self, now: float) -> dict | None:
        """What the controller should apply instead of its own decision now, or None.

        ``{"battery_charge_power_w"?, "ev_power_limit_w"?, "water_heater_enabled"?, "until_ts", "ids",
        "reasons"}`` — only the fields a dispatch holds are present; apply ``hems.limits`` after it."""
        active = self.active(now)
        if not active:
            return None
        out: dict = {}
        for o in active:
            out.update(o.settings)
        out["until_ts"] = min(o.until_ts for o in active)
        out["ids"] = [o.command_id for o in active]
        out["reasons"] = [f"MQTT dispatch {o.command_id} ({o.link}): {o.reason}" for o in active]
        return out
