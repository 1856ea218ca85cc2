"""Charging profiles as plain values: what the CSMS sends and how a charge point combines them.

Pure functions, no I/O. The CSMS builds its three profiles here (the safe default, the planner's default
and the planner's transaction profile); the simulated charge point stores what it receives as ``Profile``
values and asks ``composite_limit`` / ``composite_schedule`` what it may deliver, the way OCPP 1.6 §3.13
and 2.0.1 K describe it:

- per purpose, the valid profile with the highest stack level that has a period at that time wins;
- a TxProfile (for the running transaction) overrides the TxDefaultProfile;
- a connector's own TxDefaultProfile overrides the one on connector/EVSE 0;
- the charge point's max profile (ChargePointMaxProfile / ChargingStationMaxProfile) caps the result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Profile ids and stack levels the gateway owns on every charger it manages.
SAFE_PROFILE_ID = 901  # TxDefaultProfile, connector/EVSE 0, stack level 0, no end: the fail-safe
PLAN_PROFILE_ID = 902  # TxDefaultProfile, connector/EVSE 0, stack level 1, expires: planner, no transaction
TX_PROFILE_ID = 903  # TxProfile on the transaction's connector, stack level 1, expires: planner, in a session
SAFE_STACK_LEVEL = 0
PLAN_STACK_LEVEL = 1

TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
MAX_PURPOSES = ("ChargePointMaxProfile", "ChargingStationMaxProfile")

DAY_S = 86400.0
WEEK_S = 7 * DAY_S


def iso(ts: float) -> str:
    """POSIX seconds to the OCPP date-time form (UTC, millisecond precision, 'Z')."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def parse_iso(text: str | None) -> float | None:
    """An RFC 3339 date-time to POSIX seconds; None for None or text that is not one."""
    if not text or not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def watts_to_rate(limit_w: float, unit: str, voltage_v: float, phases: int) -> float:
    """A power limit in the charger's rate unit, rounded down to 0.1 (OCPP 1.6 decimals allow one)."""
    value = limit_w if unit == "W" else limit_w / (voltage_v * phases)
    return math.floor(max(value, 0.0) * 10 + 1e-6) / 10


def rate_to_watts(limit: float, unit: str, voltage_v: float, phases: int) -> float:
    return float(limit) if unit == "W" else float(limit) * voltage_v * phases


# -- what the CSMS sends --------------------------------------------------------------------------------


def profile_v16(
    profile_id: int,
    purpose: str,
    stack_level: int,
    limit: float,
    unit: str,
    *,
    valid_to: float | None = None,
    transaction_id: int | None = None,
    phases: int | None = None,
) -> dict:
    """``csChargingProfiles`` of an OCPP 1.6 SetChargingProfile: one constant period from the start.

    Relative kind: the period starts with the charger's own reference (the transaction start), so a skewed
    charger clock cannot delay the limit; only the expiry depends on the clock."""
    period: dict = {"startPeriod": 0, "limit": limit}
    if phases is not None and unit == "A":
        period["numberPhases"] = phases
    profile: dict = {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": unit, "chargingSchedulePeriod": [period]},
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    if valid_to is not None:
        profile["validTo"] = iso(valid_to)
    return profile


def profile_v2(
    profile_id: int,
    purpose: str,
    stack_level: int,
    limit: float,
    unit: str,
    *,
    valid_to: float | None = None,
    transaction_id: str | None = None,
    phases: int | None = None,
    max_offline_s: int | None = None,
) -> dict:
    """``chargingProfile`` of an OCPP 2.0.1 / 2.1 SetChargingProfile (``max_offline_s`` is 2.1 only: the
    charger drops the profile when it has been offline that long)."""
    period: dict = {"startPeriod": 0, "limit": limit}
    if phases is not None and unit == "A":
        period["numberPhases"] = phases
    profile: dict = {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
        "chargingSchedule": [
            {"id": profile_id, "chargingRateUnit": unit, "chargingSchedulePeriod": [period]}
        ],
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    if valid_to is not None:
        profile["validTo"] = iso(valid_to)
    if max_offline_s is not None:
        profile["maxOfflineDuration"] = int(max_offline_s)
        profile["invalidAfterOfflineDuration"] = True
    return profile


def first_limit(periods: list[dict] | None) -> float | None:
    """The limit of the period at offset 0 of a composite schedule's periods (camel or snake keys)."""
    if not periods:
        return None
    best = None
    for p in periods:
        start = p.get("start_period", p.get("startPeriod", 0))
        if float(start) <= 0 and (best is None or float(start) >= best[0]):
            best = (float(start), p.get("limit"))
    return None if best is None or best[1] is None else float(best[1])


# -- what a charge point keeps ----------------------------------------------------------------------------


@dataclass
class Profile:
    """A charging profile as a charge point stores it (one schedule; limits in ``unit``)."""

    id: int
    connector: int  # connector (1.6) or EVSE (2.x); 0 = the whole charge point
    purpose: str
    stack_level: int
    kind: str = "Absolute"  # Absolute | Relative | Recurring
    unit: str = "A"
    periods: list[tuple[float, float, int | None]] = field(default_factory=list)  # (start_s, limit, phases)
    start_schedule: float | None = None
    duration_s: float | None = None
    recurrency: str | None = None  # Daily | Weekly
    valid_from: float | None = None
    valid_to: float | None = None
    transaction_id: str | None = None
    received_ts: float = 0.0
    max_offline_s: float | None = None  # 2.1: invalid once the charger has been offline this long

    @property
    def is_max(self) -> bool:
        return self.purpose in MAX_PURPOSES

    def valid_at(self, ts: float) -> bool:
        return (self.valid_from is None or ts >= self.valid_from) and (
            self.valid_to is None or ts < self.valid_to
        )

    def schedule_start(self, ts: float, tx_start: float | None) -> float:
        if self.kind == "Relative":
            return tx_start if tx_start is not None else ts
        if self.kind == "Recurring":
            start = self.start_schedule if self.start_schedule is not None else self.received_ts
            period = WEEK_S if self.recurrency == "Weekly" else DAY_S
            return start + math.floor((ts - start) / period) * period
        return (
            self.start_schedule if self.start_schedule is not None else (self.valid_from or self.received_ts)
        )

    def limit_at(self, ts: float, tx_start: float | None = None) -> tuple[float, int | None] | None:
        """(limit, phases) in ``unit`` at ``ts``, or None when the profile says nothing then."""
        if not self.valid_at(ts) or not self.periods:
            return None
        elapsed = ts - self.schedule_start(ts, tx_start)
        if elapsed < -1e-9 or (self.duration_s is not None and elapsed >= self.duration_s):
            return None
        current = None
        for start, limit, phases in sorted(self.periods):
            if start <= elapsed + 1e-9:
                current = (limit, phases)
        return current

    def change_times(self, start: float, end: float, tx_start: float | None) -> set[float]:
        """Times in [start, end) where this profile's contribution may change."""
        times = {t for t in (self.valid_from, self.valid_to) if t is not None and start <= t < end}
        base_starts = []
        if self.kind == "Recurring":
            period = WEEK_S if self.recurrency == "Weekly" else DAY_S
            s = self.schedule_start(start, tx_start)
            while s < end:
                base_starts.append(s)
                s += period
        else:
            base_starts.append(self.schedule_start(start, tx_start))
        for s in base_starts:
            for offset, _, _ in self.periods:
                if start <= s + offset < end:
                    times.add(s + offset)
            if self.duration_s is not None and start <= s + self.duration_s < end:
                times.add(s + self.duration_s)
        return times


def store_profile(profiles: list[Profile], new: Profile) -> list[Profile]:
    """Add ``new``, replacing a profile with the same id or the same purpose, stack level and connector."""
    kept = [
        p
        for p in profiles
        if p.id != new.id
        and not (
            p.purpose == new.purpose and p.stack_level == new.stack_level and p.connector == new.connector
        )
    ]
    return [*kept, new]


def clear_profiles(
    profiles: list[Profile],
    *,
    profile_id: int | None = None,
    connector: int | None = None,
    purpose: str | None = None,
    stack_level: int | None = None,
) -> tuple[list[Profile], int]:
    """Remove the profiles matching every criterion given (none given = all). Returns (kept, removed count)."""

    def matches(p: Profile) -> bool:
        if profile_id is not None:
            return p.id == profile_id
        return (
            (connector is None or p.connector == connector)
            and (purpose is None or p.purpose == purpose)
            and (stack_level is None or p.stack_level == stack_level)
        )

    kept = [p for p in profiles if not matches(p)]
    return kept, len(profiles) - len(kept)


def _best(
    candidates: Iterable[Profile], ts: float, tx_start: float | None
) -> tuple[Profile, float, int | None] | None:
    found = None
    for p in candidates:
        got = p.limit_at(ts, tx_start)
        if got is not None and (found is None or p.stack_level > found[0].stack_level):
            found = (p, got[0], got[1])
    return found


def composite_limit_w(
    profiles: list[Profile],
    ts: float,
    connector: int,
    *,
    transaction_id: str | None,
    tx_start: float | None,
    voltage_v: float,
    phases: int,
) -> float | None:
    """The power the charge point may deliver on ``connector`` at ``ts`` (W); None = no profile limits it."""

    def watts(hit: tuple[Profile, float, int | None] | None) -> float | None:
        if hit is None:
            return None
        profile, limit, n = hit
        return rate_to_watts(limit, profile.unit, voltage_v, n or phases)

    cap = watts(_best((p for p in profiles if p.is_max and p.connector == 0), ts, tx_start))
    tx_hit = None
    if transaction_id is not None:
        tx_hit = _best(
            (
                p
                for p in profiles
                if p.purpose == TX
                and p.connector == connector
                and (p.transaction_id is None or p.transaction_id == transaction_id)
            ),
            ts,
            tx_start,
        )
    if tx_hit is None:
        tx_hit = _best(
            (p for p in profiles if p.purpose == TX_DEFAULT and p.connector == connector), ts, tx_start
        )
    if tx_hit is None:
        tx_hit = _best((p for p in profiles if p.purpose == TX_DEFAULT and p.connector == 0), ts, tx_start)
    limit = watts(tx_hit)
    if cap is None:
        return limit
    return cap if limit is None else min(cap, limit)


def composite_schedule(
    profiles: list[Profile],
    start: float,
    duration_s: float,
    connector: int,
    *,
    transaction_id: str | None,
    tx_start: float | None,
    voltage_v: float,
    phases: int,
    max_w: float,
    unit: str,
) -> list[tuple[int, float]]:
    """The composite schedule over [start, start + duration): [(offset_s, limit in ``unit``)], merged."""
    end = start + duration_s
    times = {start}
    for p in profiles:
        times |= p.change_times(start, end, tx_start)
    out: list[tuple[int, float]] = []
    for t in sorted(times):
        w = composite_limit_w(
            profiles,
            t,
            connector,
            transaction_id=transaction_id,
            tx_start=tx_start,
            voltage_v=voltage_v,
            phases=phases,
        )
        w = max_w if w is None else min(w, max_w)
        limit = watts_to_rate(w, unit, voltage_v, phases)
        offset = int(round(t - start))
        if out and out[-1][1] == limit:
            continue
        if out and out[-1][0] == offset:
            out[-1] = (offset, limit)
        else:
            out.append((offset, limit))
    return out
