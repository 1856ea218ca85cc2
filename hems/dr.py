"""Demand response: one event lifecycle whatever the source, protocol-free.

OpenADR 2.0b events, IEEE 2030.5 DER controls and EndDeviceControls, Zigbee DRLC events and MQTT VPP dispatch
all become a ``DREvent`` handed to ``DRManager.receive``. The manager keeps each event's lifecycle::

    pending ──▶ active ──▶ completed
       │           │
       ├───────────┴──▶ cancelled      (the source cancels; by modification number)
       ├───────────┴──▶ opted_out      (the homeowner, or the opt policy at receipt)
       └───────────────▶ superseded    (a newer modification replaced this version)

- ``tick(now)`` moves events along in time (also done on every receive/cancel/opt-out).
- A newer modification number supersedes the stored version (kept in the store as ``superseded``); an equal or
  older one is ignored (idempotent). A modification keeps the event's applied random offset, its opt-out and
  its "actuated" marker, so a modified event is never started twice.
- Every version is a row of the store's ``events`` table, kind ``"dr_event"``, ref ``"source:event_id"``. The
  "actuated" marker (``actuated_ts``) is persisted *before* anything is announced, so a restart during an event
  keeps it in force and never announces (actuates) it twice (at most once: a crash between the write and the
  announcement loses the announcement, the limits still apply because they are derived from the state).
- Sources register a ``DRResponder`` per source name; the manager tells it, in order and off the caller's path,
  every notice about its events (received, modified, started, completed, cancelled, opted out, superseded) and
  sends it the verification report once the event is over. Listeners (``on_change``) are told of every change;
  the planner re-plans on it.
- Each event becomes planner constraints (``planner_windows``) and a controller limit (``controller_limit_w``).
  Import caps and SIMPLE levels are relative to the baseline of ``hems.baseline`` (10-in-10, morning adjusted).

OpenADR SIMPLE levels map onto ``LevelResponse`` (what the home does, as data for the controller and planner):

| level | name     | import cap                   | without a baseline | response                                               |
|-------|----------|------------------------------|--------------------|--------------------------------------------------------|
| 0     | normal   | none                         | none               | nothing                                                |
| 1     | moderate | 80 % of the baseline         | 5 kW               | HVAC setback 2 K, EV charging paused                   |
| 2     | high     | 50 % of the baseline         | 3 kW               | + water heater and deferrable loads off, battery discharges to cover the home |
| 3     | special  | 20 % of the baseline         | 1.5 kW             | everything sheddable off (HVAC setback 4 K, held at its safety limits), battery discharges |
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from . import baseline as bl
from .clock import Clock, RealClock
from .planner.types import DRWindow
from .store import Store
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

EVENT_KIND = "dr_event"
LOAD_DAYS = 90  # events received in the last 90 days are loaded at start (older ones are history only)

__all__ = [
    "EVENT_KIND",
    "LEVEL_RESPONSES",
    "DREvent",
    "DRInterval",
    "DRManager",
    "DRNotice",
    "DRResponder",
    "DRState",
    "LevelResponse",
    "OptState",
    "level_response",
]


class DRState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"
    OPTED_OUT = "opted_out"


TERMINAL = frozenset({DRState.COMPLETED, DRState.CANCELLED, DRState.SUPERSEDED, DRState.OPTED_OUT})


class OptState(StrEnum):
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"


class DRNotice(StrEnum):
    """What a responder and the listeners are told."""

    RECEIVED = "received"
    MODIFIED = "modified"
    STARTED = "started"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    OPTED_OUT = "opted_out"
    SUPERSEDED = "superseded"
    REPORTED = "reported"  # listeners only; the responder gets send_report


# ------------------------------------------------------------------------------------------------------------
# SIMPLE levels


@dataclass(frozen=True, slots=True)
class LevelResponse:
    """The default response to an OpenADR SIMPLE level (and to any source's level 0-3).

    The import cap in force is ``import_fraction_of_baseline`` × the event's baseline, or
    ``fallback_import_cap_w`` when no baseline is known (a new installation)."""

    level: int
    name: str
    hvac_setback_c: float  # cooling setpoint up / heating setpoint down by this much
    ev_paused: bool
    water_heater_off: bool
    deferrables_off: bool
    battery_discharge: bool  # the battery covers the home, down to its reserve
    all_sheddable_off: bool
    import_fraction_of_baseline: float | None
    fallback_import_cap_w: float | None
    description: str

    def import_cap_w(self, baseline_w: float | None) -> float | None:
        if self.import_fraction_of_baseline is None:
            return None
        if baseline_w is None:
            return self.fallback_import_cap_w
        return self.import_fraction_of_baseline * max(0.0, baseline_w)


LEVEL_RESPONSES: dict[int, LevelResponse] = {
    0: LevelResponse(0, "normal", 0.0, False, False, False, False, False, None, None, "no event: normal operation"),
    1: LevelResponse(
        1, "moderate", 2.0, True, False, False, False, False, 0.8, 5000.0,
        "moderate: HVAC setback 2 K, EV charging paused; import at most 80 % of the baseline",
    ),
    2: LevelResponse(
        2, "high", 2.0, True, True, True, True, False, 0.5, 3000.0,
        "high: HVAC setback 2 K, EV paused, water heater and deferrable loads off, battery discharging; "
        "import at most 50 % of the baseline",
    ),
    3: LevelResponse(
        3, "special", 4.0, True, True, True, True, True, 0.2, 1500.0,
        "special: everything sheddable off (HVAC setback 4 K, at its safety limits), battery discharging; "
        "import at most 20 % of the baseline",
    ),
}  # fmt: skip


def level_response(level: int) -> LevelResponse:
    """The default response to a SIMPLE level; levels above 3 are treated as 3, below 0 as 0."""
    if isinstance(level, bool) or not isinstance(level, int | float) or not math.isfinite(level):
        raise ValueError(f"a DR level must be a number 0-3, got {level!r}")
    return LEVEL_RESPONSES[min(3, max(0, int(round(float(level)))))]


# ------------------------------------------------------------------------------------------------------------
# the event


@dataclass(frozen=True, slots=True)
class DRInterval:
    """One interval of a multi-interval event, ``offset_s`` after the event's (randomised) start. Its values
    replace the event-wide ones during the interval."""

    offset_s: float
    duration_s: float
    shed_w: float | None = None
    import_cap_w: float | None = None
    price_per_kwh: float | None = None
    level: int | None = None
    export_cap_w: float | None = None  # grid export at most this (IEEE 2030.5 opModExpLimW)
    generation_cap_w: float | None = None  # PV output at most this (opModGenLimW; 0 = cease to energize)

    def to_json(self) -> dict:
        return {
            "offset_s": self.offset_s,
            "duration_s": self.duration_s,
            "shed_w": self.shed_w,
            "import_cap_w": self.import_cap_w,
            "price_per_kwh": self.price_per_kwh,
            "level": self.level,
            "export_cap_w": self.export_cap_w,
            "generation_cap_w": self.generation_cap_w,
        }

    @classmethod
    def from_json(cls, d: dict) -> DRInterval:
        return cls(
            float(d["offset_s"]),
            float(d["duration_s"]),
            d.get("shed_w"),
            d.get("import_cap_w"),
            d.get("price_per_kwh"),
            d.get("level"),
            d.get("export_cap_w"),
            d.get("generation_cap_w"),
        )


@dataclass(frozen=True, slots=True)
class DREvent:
    """One DR event as the core sees it, whatever its source.

    The objective is one or more of ``shed_w`` (shed this much against the baseline), ``import_cap_w``,
    ``price_per_kwh`` and ``level`` (0-3, OpenADR SIMPLE). ``intervals`` (optional) give per-interval values;
    the event-wide fields are then the most demanding of them. ``duration_s = 0`` means "until cancelled".
    ``randomization_s`` is the source's start randomisation window; ``offset_s`` the offset drawn for this home
    (once per event, persisted). ``source_ref`` is opaque to the core: what the source needs to answer."""

    source: str
    event_id: str
    start_ts: float
    duration_s: float
    modification_number: int = 0
    market_context: str = ""
    randomization_s: float = 0.0
    shed_w: float | None = None
    import_cap_w: float | None = None
    price_per_kwh: float | None = None
    level: int | None = None
    intervals: tuple[DRInterval, ...] = ()
    export_cap_w: float | None = None  # grid export at most this (W)
    generation_cap_w: float | None = None  # PV output at most this (W)
    priority: int = 0  # the source's priority; lower first, 0 = unspecified
    test_event: bool = False
    opt: OptState = OptState.OPT_IN
    state: DRState = DRState.PENDING
    reason: str = ""  # why it was cancelled, opted out, superseded, or not started
    offset_s: float = 0.0
    received_ts: float = 0.0
    actuated_ts: float | None = None  # set (and persisted) when the event was started
    ended_ts: float | None = None  # when it completed, was cancelled or opted out
    report_ts: float | None = None  # when the verification report was made
    source_ref: dict = field(default_factory=dict, compare=False, hash=False)
    forecast: dict | None = field(default=None, compare=False, hash=False)  # {"interval_ts", "grid_w"}
    report: dict | None = field(default=None, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"{self.source}:{self.event_id}"

    @property
    def effective_start_ts(self) -> float:
        return self.start_ts + self.offset_s

    @property
    def end_ts(self) -> float:
        return math.inf if self.duration_s <= 0 else self.effective_start_ts + self.duration_s

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def in_force(self) -> bool:
        """Not over, not cancelled, not opted out (it may still be pending)."""
        return self.state in (DRState.PENDING, DRState.ACTIVE) and self.opt is OptState.OPT_IN

    @property
    def objective(self) -> str:
        """A one-line summary for logs and the UI."""
        parts = []
        if self.level is not None:
            parts.append(f"level {self.level} ({level_response(self.level).name})")
        if self.shed_w is not None:
            parts.append(f"shed {self.shed_w / 1000:.2f} kW")
        if self.import_cap_w is not None:
            parts.append(f"import <= {self.import_cap_w / 1000:.2f} kW")
        if self.price_per_kwh is not None:
            parts.append(f"price {self.price_per_kwh:.4g}/kWh")
        if self.export_cap_w is not None:
            parts.append(f"export <= {self.export_cap_w / 1000:.2f} kW")
        if self.generation_cap_w is not None:
            parts.append(f"generation <= {self.generation_cap_w / 1000:.2f} kW")
        return ", ".join(parts) or "no objective"

    def segments(self) -> list[tuple[float, float, DRInterval]]:
        """``(start_ts, end_ts, values)`` covering the event: its intervals, or one segment."""
        t0 = self.effective_start_ts
        if not self.intervals:
            whole = DRInterval(
                0.0,
                self.duration_s,
                self.shed_w,
                self.import_cap_w,
                self.price_per_kwh,
                self.level,
                self.export_cap_w,
                self.generation_cap_w,
            )
            return [(t0, self.end_ts, whole)]
        out = []
        for iv in self.intervals:
            end = math.inf if iv.duration_s <= 0 else t0 + iv.offset_s + iv.duration_s
            out.append((t0 + iv.offset_s, min(end, self.end_ts), iv))
        return out

    def values_at(self, ts: float) -> DRInterval | None:
        """The objective in force at ``ts`` (None outside the event's window)."""
        for start, end, values in self.segments():
            if start <= ts < end:
                return values
        return None

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "source": self.source,
            "event_id": self.event_id,
            "modification_number": self.modification_number,
            "market_context": self.market_context,
            "start_ts": self.start_ts,
            "duration_s": self.duration_s,
            "randomization_s": self.randomization_s,
            "offset_s": self.offset_s,
            "effective_start_ts": self.effective_start_ts,
            "end_ts": None if math.isinf(self.end_ts) else self.end_ts,
            "shed_w": self.shed_w,
            "import_cap_w": self.import_cap_w,
            "export_cap_w": self.export_cap_w,
            "generation_cap_w": self.generation_cap_w,
            "price_per_kwh": self.price_per_kwh,
            "level": self.level,
            "intervals": [iv.to_json() for iv in self.intervals],
            "priority": self.priority,
            "test_event": self.test_event,
            "opt": str(self.opt),
            "state": str(self.state),
            "reason": self.reason,
            "objective": self.objective,
            "received_ts": self.received_ts,
            "actuated_ts": self.actuated_ts,
            "ended_ts": self.ended_ts,
            "report_ts": self.report_ts,
            "source_ref": self.source_ref,
            "forecast": self.forecast,
            "report": self.report,
        }

    @classmethod
    def from_json(cls, d: dict) -> DREvent:
        return cls(
            source=d["source"],
            event_id=d["event_id"],
            start_ts=float(d["start_ts"]),
            duration_s=float(d["duration_s"]),
            modification_number=int(d.get("modification_number", 0)),
            market_context=d.get("market_context", ""),
            randomization_s=float(d.get("randomization_s", 0.0)),
            shed_w=d.get("shed_w"),
            import_cap_w=d.get("import_cap_w"),
            export_cap_w=d.get("export_cap_w"),
            generation_cap_w=d.get("generation_cap_w"),
            price_per_kwh=d.get("price_per_kwh"),
            level=d.get("level"),
            intervals=tuple(DRInterval.from_json(i) for i in d.get("intervals", [])),
            priority=int(d.get("priority", 0)),
            test_event=bool(d.get("test_event", False)),
            opt=OptState(d.get("opt", "opt_in")),
            state=DRState(d.get("state", "pending")),
            reason=d.get("reason", ""),
            offset_s=float(d.get("offset_s", 0.0)),
            received_ts=float(d.get("received_ts", 0.0)),
            actuated_ts=d.get("actuated_ts"),
            ended_ts=d.get("ended_ts"),
            report_ts=d.get("report_ts"),
            source_ref=dict(d.get("source_ref") or {}),
            forecast=d.get("forecast"),
            report=d.get("report"),
        )


def _check(event: DREvent) -> None:
    problems = []
    if not event.source or ":" in event.source:
        problems.append(f"source {event.source!r} must be non-empty and without ':'")
    if not event.event_id:
        problems.append("event_id must not be empty")
    for name in ("start_ts", "duration_s", "randomization_s"):
        if not math.isfinite(getattr(event, name)):
            problems.append(f"{name} must be finite")
    if event.randomization_s < 0:
        problems.append("randomization_s must be >= 0")
    for values in (event, *event.intervals):
        for name in ("shed_w", "import_cap_w", "price_per_kwh", "export_cap_w", "generation_cap_w"):
            v = getattr(values, name)
            if v is not None and (isinstance(v, bool) or not math.isfinite(v)):
                problems.append(f"{name} = {v!r} must be a finite number")
        if values.level is not None and (
            isinstance(values.level, bool) or not isinstance(values.level, int) or not 0 <= values.level <= 3
        ):
            problems.append(f"level = {values.level!r} must be an integer 0-3")
    if problems:
        raise ValueError(f"DR event {event.source}:{event.event_id}: " + "; ".join(problems))


# ------------------------------------------------------------------------------------------------------------
# responders and listeners


class DRResponder(Protocol):
    """A source's way back to whoever sent the event (VTN, 2030.5 server, meter, VPP)."""

    async def send_status(self, event: DREvent, status: DRNotice) -> None: ...

    async def send_report(self, event: DREvent, report: dict) -> None: ...


Listener = Callable[[DREvent, DRNotice], Any]
OptPolicy = Callable[[DREvent], str | None]  # a reason to opt out of a new event, or None to take part


class _ResponderQueue:
    """Calls one responder in order, off the manager's path; a failing call is logged and dropped."""

    def __init__(self, source: str, responder: DRResponder) -> None:
        self.source = source
        self.responder = responder
        self.queue: asyncio.Queue[tuple[str, DREvent, Any]] | None = None
        self.task: asyncio.Task | None = None

    def put(self, kind: str, event: DREvent, arg: Any) -> None:
        if self.queue is None:
            self.queue = asyncio.Queue()
        self.queue.put_nowait((kind, event, arg))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name=f"dr-responder-{self.source}"
            )

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            kind, event, arg = await self.queue.get()
            try:
                if kind == "status":
                    await self.responder.send_status(event, arg)
                else:
                    await self.responder.send_report(event, arg)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("DR responder %s failed on %s %s of %s", self.source, kind, arg, event.key)
            finally:
                self.queue.task_done()

    async def join(self) -> None:
        if self.queue is not None:
            await self.queue.join()

    async def close(self) -> None:
        await cancel_and_wait(self.task, what=f"DR responder {self.source}")
        self.task = None


# ------------------------------------------------------------------------------------------------------------
# the manager


class DRManager:
    """Keeps every DR event's lifecycle, persisted in ``store``; see the module docstring.

    ``timezone`` is the home's (weekday/weekend and local clock times of the baseline). ``seed`` seeds the RNG
    that draws each event's start offset (None: a random seed, so that homes spread their starts). ``meter_id``
    names the grid meter whose history makes the baseline (None: the store's grid-power series).
    ``policy(event)`` may return a reason to opt out of a new event at receipt. ``report_delay_s`` after an
    event ends its verification report is made (the last 15-minute bucket must be rolled up first)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        timezone: str = "UTC",
        seed: int | None = None,
        meter_id: str | None = None,
        baseline_mode: str = "ratio",
        policy: OptPolicy | None = None,
        report_delay_s: float = 120.0,
        holidays: Sequence[date] = (),
    ) -> None:
        if baseline_mode not in bl.MODES:
            raise ValueError(f"baseline_mode must be one of {', '.join(bl.MODES)}, got {baseline_mode!r}")
        ZoneInfo(timezone)  # fail early on a bad zone
        self.store = store
        self.clock: Clock = clock or RealClock()
        self.timezone = timezone
        self.meter_id = meter_id
        self.baseline_mode = baseline_mode
        self.policy = policy
        self.report_delay_s = float(report_delay_s)
        self.holidays = frozenset(holidays)
        self._rng = random.Random(seed)
        self._events: dict[str, DREvent] = {}
        self._rows: dict[str, int] = {}  # key -> events-table id of the current version
        self._responders: dict[str, _ResponderQueue] = {}
        self._listeners: list[Listener] = []
        self._listener_tasks: set[asyncio.Task] = set()
        self._baselines: dict[tuple[str, int, bool], tuple[bl.Baseline | None, float]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._warned: set[str] = set()
        self._load()

    # -- persistence --------------------------------------------------------------------------------------
    def _load(self) -> None:
        since = self.clock.now() - LOAD_DAYS * 86400.0
        latest: dict[str, tuple[DREvent, int]] = {}
        for row in self.store.events(kind=EVENT_KIND, since=since):
            try:
                ev = DREvent.from_json(row["data"])
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring unreadable DR event row %s: %s", row["id"], exc)
                continue
            seen = latest.get(ev.key)
            if seen is None or ev.modification_number >= seen[0].modification_number:
                latest[ev.key] = (ev, row["id"])
        for key, (ev, row_id) in latest.items():
            self._events[key] = ev
            self._rows[key] = row_id
        if self._events:
            live = [e for e in self._events.values() if not e.terminal]
            log.info("DR: loaded %d event(s), %d pending or active", len(self._events), len(live))

    def _insert(self, ev: DREvent) -> None:
        self._rows[ev.key] = self.store.add_event(
            EVENT_KIND, ev.to_json(), ts=ev.received_ts, source=ev.source, ref=ev.key
        )
        self._events[ev.key] = ev

    def _update(self, ev: DREvent) -> None:
        self.store.update_event(self._rows[ev.key], ev.to_json())
        self._events[ev.key] = ev

    def _supersede(self, old: DREvent, new: DREvent) -> None:
        """Store ``new`` as a row of its own, then mark ``old``'s row superseded. In this order a crash in
        between leaves the newer version (the highest modification number) to be loaded, markers and all."""
        old_row = self._rows[old.key]
        self._insert(new)
        reason = f"superseded by modification {new.modification_number}"
        self.store.update_event(old_row, replace(old, state=DRState.SUPERSEDED, reason=reason).to_json())

    # -- registration ---------------------------------------------------------------------------------------
    def register_responder(self, source: str, responder: DRResponder) -> None:
        """The responder for every event whose ``source`` is ``source`` (one per source; a new one replaces the
        old one, also for the notices still queued)."""
        queue = self._responders.get(source)
        if queue is None:
            self._responders[source] = _ResponderQueue(source, responder)
        else:
            queue.responder = responder

    def on_change(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event, notice)`` on every change (a coroutine function is scheduled as a task).
        Returns a function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _announce(self, ev: DREvent, notice: DRNotice) -> None:
        log.info("DR %s %s: %s (%s)", ev.key, notice, ev.objective, ev.state)
        rq = self._responders.get(ev.source)
        if rq is not None:
            if notice is DRNotice.REPORTED:
                rq.put("report", ev, ev.report or {})
            else:
                rq.put("status", ev, notice)
        for callback in list(self._listeners):
            try:
                result = callback(ev, notice)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._listener_tasks.add(task)
                    task.add_done_callback(self._listener_done)
            except Exception:
                log.exception("DR listener %r failed on %s of %s", callback, notice, ev.key)

    def _listener_done(self, task: asyncio.Task) -> None:
        self._listener_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("DR listener failed: %r", task.exception())

    async def drain(self) -> None:
        """Wait until every responder call and listener task queued so far has run (tests, shutdown)."""
        for rq in list(self._responders.values()):
            await rq.join()
        if self._listener_tasks:
            await asyncio.gather(*list(self._listener_tasks), return_exceptions=True)

    # -- queries --------------------------------------------------------------------------------------------
    def get(self, key: str) -> DREvent | None:
        return self._events.get(key)

    def events(self, *, include_terminal: bool = True) -> list[DREvent]:
        """Current versions, by effective start."""
        evs = [e for e in self._events.values() if include_terminal or not e.terminal]
        return sorted(evs, key=lambda e: (e.effective_start_ts, e.key))

    def in_force(self, now: float | None = None) -> list[DREvent]:
        """Opted-in events whose window contains ``now`` (default: the clock's now)."""
        now = self.clock.now() if now is None else now
        return [e for e in self.events() if e.in_force and e.effective_start_ts <= now < e.end_ts]

    def history(self, key: str) -> list[DREvent]:
        """Every stored version of one event, oldest first (superseded ones included)."""
        out = []
        for row in self.store.events(kind=EVENT_KIND, ref=key):
            try:
                out.append(DREvent.from_json(row["data"]))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def receive(self, event: DREvent) -> DREvent:
        """A new event or a new version of a known one; returns the version now in force (with its opt state,
        which the source answers with). ``event.state = CANCELLED`` is a cancellation (see ``cancel``)."""
        _check(event)
        async with self._lock:
            now = self.clock.now()
            if event.state is DRState.CANCELLED:
                return await self._cancel(event.key, event.modification_number, event.reason, event, now)
            old = self._events.get(event.key)
            if old is not None and event.modification_number <= old.modification_number:
                return old  # a repeat or a stale version: idempotent
            if old is not None and old.state is DRState.CANCELLED:
                log.info(
                    "DR %s: modification %d of a cancelled event ignored",
                    event.key,
                    event.modification_number,
                )
                return old
            if old is None:
                ev = self._new(event, now)
                self._insert(ev)
                self._announce(ev, DRNotice.RECEIVED)
            else:
                ev = self._modified(old, event, now)
                self._supersede(old, ev)
                self._announce(ev, DRNotice.MODIFIED)
            self._baselines = {k: v for k, v in self._baselines.items() if k[0] != ev.key}
            await self._advance(ev, now)
            return self._events[ev.key]

    def _new(self, event: DREvent, now: float) -> DREvent:
        offset = self._rng.uniform(0.0, event.randomization_s) if event.randomization_s > 0 else 0.0
        ev = replace(
            event,
            state=DRState.PENDING,
            offset_s=offset,
            received_ts=now,
            actuated_ts=None,
            ended_ts=None,
            report_ts=None,
            report=None,
        )
        if ev.opt is OptState.OPT_OUT:
            return replace(
                ev, state=DRState.OPTED_OUT, reason=ev.reason or "opted out at receipt", ended_ts=now
            )
        reason = self.policy(ev) if self.policy is not None else None
        if reason:
            return replace(ev, opt=OptState.OPT_OUT, state=DRState.OPTED_OUT, reason=reason, ended_ts=now)
        return ev

    def _modified(self, old: DREvent, event: DREvent, now: float) -> DREvent:
        offset = old.offset_s
        if old.actuated_ts is None and (
            event.randomization_s < offset or event.randomization_s != old.randomization_s
        ):
            offset = self._rng.uniform(0.0, event.randomization_s) if event.randomization_s > 0 else 0.0
        ev = replace(
            event,
            state=DRState.PENDING,
            offset_s=offset,
            received_ts=now,
            actuated_ts=old.actuated_ts,
            ended_ts=None,
            report_ts=None,
            report=None,
            forecast=old.forecast,
            source_ref={**old.source_ref, **event.source_ref},
        )
        if old.opt is OptState.OPT_OUT or event.opt is OptState.OPT_OUT:
            reason = old.reason if old.opt is OptState.OPT_OUT else (event.reason or "opted out at receipt")
            return replace(
                ev, opt=OptState.OPT_OUT, state=DRState.OPTED_OUT, reason=reason, ended_ts=old.ended_ts or now
            )
        return ev

    async def cancel(
        self,
        key: str,
        *,
        modification_number: int | None = None,
        reason: str = "",
        event: DREvent | None = None,
    ) -> DREvent | None:
        """Cancel an event (the source did). An older ``modification_number`` than the stored one is ignored.
        An unknown event is recorded as cancelled when ``event`` is given (so later stale copies are ignored),
        else None is returned."""
        async with self._lock:
            return await self._cancel(key, modification_number, reason, event, self.clock.now())

    async def _cancel(
        self, key: str, mn: int | None, reason: str, event: DREvent | None, now: float
    ) -> DREvent | None:
        old = self._events.get(key)
        reason = reason or "cancelled by the source"
        if old is None:
            if event is None:
                return None
            _check(event)
            ev = replace(event, state=DRState.CANCELLED, reason=reason, received_ts=now, ended_ts=now)
            self._insert(ev)
            self._announce(ev, DRNotice.CANCELLED)
            return ev
        if mn is not None and mn < old.modification_number:
            return old
        if old.state in (DRState.CANCELLED, DRState.COMPLETED, DRState.SUPERSEDED):
            return old
        ended = now if old.state is DRState.ACTIVE else old.ended_ts
        ev = replace(old, state=DRState.CANCELLED, reason=reason, ended_ts=ended)
        if mn is not None and mn > old.modification_number:
            extra = event.source_ref if event is not None else {}
            ev = replace(ev, modification_number=mn, received_ts=now, source_ref={**old.source_ref, **extra})
            self._supersede(old, ev)
        else:
            self._update(ev)
        self._announce(ev, DRNotice.CANCELLED)
        await self._maybe_report(ev, now)
        return ev

    async def supersede(self, key: str, reason: str = "") -> DREvent:
        """The source replaced this event by another one (e.g. IEEE 2030.5: an overlapping event of higher
        priority or newer creation time); it ends now and its responder is told ``superseded``."""
        async with self._lock:
            old = self._events.get(key)
            if old is None:
                raise KeyError(f"no DR event {key!r}; known: {', '.join(sorted(self._events)) or 'none'}")
            if old.terminal:
                return old
            ended = self.clock.now() if old.state is DRState.ACTIVE else None
            ev = replace(
                old, state=DRState.SUPERSEDED, reason=reason or "superseded by the source", ended_ts=ended
            )
            self._update(ev)
            self._announce(ev, DRNotice.SUPERSEDED)
            return ev

    async def opt_out(self, key: str, reason: str = "") -> DREvent:
        """The homeowner opts out of a pending or active event; the source is told. Idempotent."""
        async with self._lock:
            now = self.clock.now()
            old = self._events.get(key)
            if old is None:
                raise KeyError(f"no DR event {key!r}; known: {', '.join(sorted(self._events)) or 'none'}")
            if old.state is DRState.OPTED_OUT:
                return old
            if old.terminal:
                raise ValueError(f"DR event {key} is {old.state}: there is nothing to opt out of")
            ended = now if old.state is DRState.ACTIVE else None
            ev = replace(
                old,
                opt=OptState.OPT_OUT,
                state=DRState.OPTED_OUT,
                reason=reason or "opted out by the homeowner",
                ended_ts=ended,
            )
            self._update(ev)
            self._announce(ev, DRNotice.OPTED_OUT)
            return ev

    async def tick(self, now: float | None = None) -> list[DREvent]:
        """Move every event along in time: start, complete, report. Returns the events that changed."""
        async with self._lock:
            now = self.clock.now() if now is None else now
            changed = []
            for key in list(self._events):
                before = self._events[key]
                after = await self._advance(before, now)
                if after is not before:
                    changed.append(after)
            return changed

    async def _advance(self, ev: DREvent, now: float) -> DREvent:
        if ev.state is DRState.PENDING:
            if now >= ev.end_ts:
                reason = "" if ev.actuated_ts is not None else "ended before it could be started"
                ev = replace(ev, state=DRState.COMPLETED, ended_ts=now, reason=ev.reason or reason)
                self._update(ev)
                self._announce(ev, DRNotice.COMPLETED)
            elif now >= ev.effective_start_ts:
                first = ev.actuated_ts is None
                ev = replace(ev, state=DRState.ACTIVE, actuated_ts=now if first else ev.actuated_ts)
                self._update(ev)  # persisted before it is announced: never actuated twice
                if first:
                    self._announce(ev, DRNotice.STARTED)
        elif ev.state is DRState.ACTIVE and now >= ev.end_ts:
            ev = replace(ev, state=DRState.COMPLETED, ended_ts=ev.end_ts)
            self._update(ev)
            self._announce(ev, DRNotice.COMPLETED)
        return await self._maybe_report(ev, now)

    async def _maybe_report(self, ev: DREvent, now: float) -> DREvent:
        if (
            ev.state not in (DRState.COMPLETED, DRState.CANCELLED)
            or ev.actuated_ts is None
            or ev.report_ts is not None
            or ev.ended_ts is None
            or now < ev.ended_ts + self.report_delay_s
        ):
            return ev
        try:
            self.store.rollup(
                now
            )  # idempotent; closes the event's last 15-minute bucket if the recorder lags
            report = self.report_for(ev, now)
        except Exception as exc:  # a report must never stop the lifecycle
            log.exception("DR %s: verification report failed", ev.key)
            report = {"error": str(exc)}
        ev = replace(ev, report=report, report_ts=now)
        self._update(ev)
        self._announce(ev, DRNotice.REPORTED)
        return ev

    # -- baseline and report ------------------------------------------------------------------------------
    def event_days(self, exclude: str | None = None) -> set[date]:
        """Local dates touched by the window of an event this home started (``actuated_ts`` set; ``exclude``
        aside): these days are left out of every baseline. Events cancelled or opted out before they started,
        and events missed while the gateway was down, do not count: the home ran as usual."""
        tz = ZoneInfo(self.timezone)
        days: set[date] = set()
        for ev in self._events.values():
            if ev.key == exclude or ev.actuated_ts is None:
                continue
            start = ev.effective_start_ts
            end = ev.end_ts if math.isfinite(ev.end_ts) else (ev.ended_ts or start)
            d = datetime.fromtimestamp(start, tz).date()
            last = datetime.fromtimestamp(max(start, end - 1e-6), tz).date()
            while d <= last:
                days.add(d)
                d += timedelta(days=1)
        return days

    def _window(self, ev: DREvent, now: float) -> tuple[float, float]:
        end = ev.end_ts
        if not math.isfinite(end):
            end = (
                max(ev.ended_ts or now, ev.effective_start_ts + bl.INTERVAL_S)
                if ev.terminal
                else max(now, ev.effective_start_ts) + 86400.0
            )
        return ev.effective_start_ts, end

    def baseline(self, key: str, now: float | None = None) -> bl.Baseline | None:
        """The event's baseline (``hems.baseline``), cached; morning-adjusted once the adjustment window is over."""
        ev = self._events.get(key)
        if ev is None:
            return None
        now = self.clock.now() if now is None else now
        start, end = self._window(ev, now)
        intervals = bl.event_intervals(start, end)
        adjusted = bool(intervals) and now >= intervals[0] - bl.ADJ_END_S + bl.INTERVAL_S
        cache_key = (key, ev.modification_number, adjusted)
        cached = self._baselines.get(cache_key)
        # a missing baseline is looked for again every 15 minutes (the pre-event fallback appears at the start)
        if cached is None or (cached[0] is None and now - cached[1] >= bl.INTERVAL_S):
            try:
                found = bl.from_store(
                    self.store,
                    start,
                    end,
                    timezone=self.timezone,
                    meter_id=self.meter_id,
                    now=now,
                    mode=self.baseline_mode,
                    event_days=self.event_days(exclude=key),
                    holidays=self.holidays,
                )
            except Exception:
                log.exception("DR %s: baseline failed", key)
                found = None
            cached = (found, now)
            self._baselines[cache_key] = cached
        return cached[0]

    def report_for(self, ev: DREvent, now: float | None = None) -> dict:
        """The verification report of an event (also for one still running: what happened so far)."""
        now = self.clock.now() if now is None else now
        start, end = self._window(ev, now)
        if ev.ended_ts is not None:
            end = min(end, ev.ended_ts)
        base = self.baseline(ev.key, now)
        meter = self.meter_id or bl.find_meter(self.store)
        head = {
            "event": ev.key,
            "modification_number": ev.modification_number,
            "state": str(ev.state),
            "start_ts": start,
            "end_ts": end,
            "objective": ev.objective,
        }
        if base is None or meter is None:
            return {
                **head,
                "method": None,
                "error": "no baseline: not enough metered history",
                "intervals": [],
            }
        metered = bl.load_power(self.store, meter, base.interval_ts[0], end)
        forecast = None
        if ev.forecast:
            forecast = dict(zip(ev.forecast["interval_ts"], ev.forecast["grid_w"], strict=False))
        perf = bl.performance(base, metered, requested_shed_w=ev.shed_w, forecast_w=forecast, end_ts=end)
        return {**head, **perf}

    def note_forecast(self, start_ts: float, step_s: float, grid_w: Sequence[float]) -> None:
        """The planner's no-event forecast of grid power (per step). Stored, per 15-minute interval, with every
        event still pending, so that its report shows it beside the baseline."""
        values = np.asarray(grid_w, dtype=float)
        if values.size == 0 or step_s <= 0:
            return
        horizon_end = start_ts + step_s * values.size
        for ev in list(self._events.values()):
            if ev.state is not DRState.PENDING:
                continue
            start, end = self._window(ev, start_ts)
            buckets = bl.event_intervals(start, min(end, horizon_end))
            if not buckets:
                continue
            out: list[float | None] = []
            for b in buckets:  # the time-weighted mean of the steps overlapping the interval
                lo, hi = max(b, start_ts), min(b + bl.INTERVAL_S, horizon_end)
                total = weight = 0.0
                for k in range(max(0, int((lo - start_ts) // step_s)), values.size):
                    t = start_ts + k * step_s
                    if t >= hi:
                        break
                    overlap = min(hi, t + step_s) - max(lo, t)
                    if overlap > 0 and math.isfinite(values[k]):
                        total += values[k] * overlap
                        weight += overlap
                out.append(round(total / weight, 1) if weight > 0 else None)
            self._update(replace(ev, forecast={"interval_ts": buckets, "grid_w": out}))

    # -- constraints ----------------------------------------------------------------------------------------
    def _baseline_at(self, ev: DREvent, ts: float, now: float) -> float | None:
        base = self.baseline(ev.key, now)
        return None if base is None else base.at(ts)

    def controller_limit_w(self, now: float | None = None) -> float | None:
        """The tightest grid import cap (W) of the events in force at ``now``; None when none caps import.

        ``import_cap_w`` as given; ``shed_w``: baseline − shed (may be negative: export); level: the level's
        fraction of the baseline, or its fallback cap. A shed event without any baseline gives no limit."""
        now = self.clock.now() if now is None else now
        caps = []
        for ev in self.in_force(now):
            values = ev.values_at(now)
            if values is None:
                continue
            base = None
            if values.shed_w is not None or values.level is not None:
                base = self._baseline_at(ev, now, now)
            caps.extend(self._caps(ev, values, base))
        return min(caps) if caps else None

    def controller_export_cap_w(self, now: float | None = None) -> float | None:
        """The tightest grid export cap (W) of the events in force at ``now``; None when none caps export."""
        return self._tightest("export_cap_w", now)

    def controller_generation_cap_w(self, now: float | None = None) -> float | None:
        """The tightest PV generation cap (W) of the events in force at ``now``; None when none caps it."""
        return self._tightest("generation_cap_w", now)

    def _tightest(self, name: str, now: float | None) -> float | None:
        now = self.clock.now() if now is None else now
        caps = [
            float(getattr(v, name))
            for ev in self.in_force(now)
            if (v := ev.values_at(now)) is not None and getattr(v, name) is not None
        ]
        return max(0.0, min(caps)) if caps else None

    def _caps(self, ev: DREvent, values: DRInterval, base: float | None) -> list[float]:
        caps = []
        if values.import_cap_w is not None:
            caps.append(float(values.import_cap_w))
        if values.shed_w is not None:
            if base is not None:
                caps.append(base - values.shed_w)
            elif ev.key not in self._warned:
                self._warned.add(ev.key)
                log.warning(
                    "DR %s: shed %.0f W but no baseline is known yet; no import limit", ev.key, values.shed_w
                )
        if values.level is not None:
            cap = level_response(values.level).import_cap_w(base)
            if cap is not None:
                caps.append(cap)
        return caps

    def planner_windows(
        self, start_ts: float, step_s: float, n_steps: int, forecast_w: Sequence[float] | None = None
    ) -> tuple[DRWindow, ...]:
        """The events in force over the horizon ``[start_ts, start_ts + n_steps·step_s)`` as planner windows.

        A step partly inside an event counts as inside (conservative). Per step the baseline is the event's
        10-in-10 baseline, else ``forecast_w`` (the planner's no-event forecast, per step), else none.
        - ``import_cap_w`` → ``DRWindow.import_cap_w``;
        - ``shed_w`` → ``shed_w`` with ``baseline_w``; skipped when there is no baseline at all;
        - a level → its fraction × the baseline as ``baseline_w`` with ``shed_w = 0`` (import ≤ fraction ×
          baseline), or its fallback cap as ``import_cap_w`` when there is no baseline;
        - a price (only) makes no window: see ``prices``."""
        if step_s <= 0 or n_steps <= 0:
            return ()
        now = self.clock.now()
        forecast = None if forecast_w is None else np.asarray(forecast_w, dtype=float)
        horizon_end = start_ts + step_s * n_steps
        windows: list[DRWindow] = []
        for ev in self.events(include_terminal=False):
            if not ev.in_force or ev.effective_start_ts >= horizon_end or ev.end_ts <= start_ts:
                continue
            base = None
            for seg_start, seg_end, values in ev.segments():
                k0 = max(0, math.floor((seg_start - start_ts) / step_s))
                k1 = min(n_steps, math.ceil((min(seg_end, horizon_end) - start_ts) / step_s))
                if k0 >= k1:
                    continue
                needs_base = values.shed_w is not None or values.level is not None
                per_step = None
                if needs_base:
                    if base is None:
                        base = self.baseline(ev.key, now)
                    per_step = self._per_step(base, forecast, start_ts, step_s, k0, k1, seg_start, seg_end)
                cap = None if values.import_cap_w is None else float(values.import_cap_w)
                if values.shed_w is not None and per_step is not None:
                    windows.append(DRWindow(k0, k1, cap, float(values.shed_w), per_step, ev.key))
                    cap = None
                if (
                    values.level is not None
                    and level_response(values.level).import_fraction_of_baseline is not None
                ):
                    lr = level_response(values.level)
                    if per_step is not None:
                        windows.append(
                            DRWindow(
                                k0,
                                k1,
                                cap,
                                0.0,
                                lr.import_fraction_of_baseline * np.maximum(per_step, 0.0),
                                ev.key,
                            )
                        )
                        cap = None
                    else:
                        fallback = lr.fallback_import_cap_w
                        cap = fallback if cap is None or fallback is None else min(cap, fallback)
                if cap is not None:
                    windows.append(DRWindow(k0, k1, cap, None, None, ev.key))
                if values.export_cap_w is not None or values.generation_cap_w is not None:
                    windows.append(
                        DRWindow(
                            k0,
                            k1,
                            None,
                            None,
                            None,
                            ev.key,
                            export_cap_w=values.export_cap_w,
                            generation_cap_w=values.generation_cap_w,
                        )
                    )
        return tuple(sorted(windows, key=lambda w: (w.start_step, w.end_step, w.event_id)))

    @staticmethod
    def _per_step(
        base: bl.Baseline | None,
        forecast: np.ndarray | None,
        start_ts: float,
        step_s: float,
        k0: int,
        k1: int,
        seg_start: float,
        seg_end: float,
    ) -> np.ndarray | None:
        out = np.full(k1 - k0, np.nan)
        for i, k in enumerate(range(k0, k1)):
            lo = max(start_ts + k * step_s, seg_start)
            hi = min(start_ts + (k + 1) * step_s, seg_end)
            if base is not None:
                value = base.mean_w(lo, hi)
                if value is not None:
                    out[i] = value
                    continue
            if forecast is not None and k < forecast.size and math.isfinite(forecast[k]):
                out[i] = forecast[k]
        if np.isnan(out).any():
            return None
        return out

    def prices(self, start_ts: float, step_s: float, n_steps: int) -> np.ndarray | None:
        """Per step, the DR price (currency per kWh) in force (the highest, when events overlap), NaN where no
        event sets one; None when no event sets a price over the horizon. The planner overlays it on the tariff."""
        out = np.full(max(0, n_steps), np.nan)
        found = False
        for ev in self.events(include_terminal=False):
            if not ev.in_force:
                continue
            for seg_start, seg_end, values in ev.segments():
                if values.price_per_kwh is None:
                    continue
                k0 = max(0, math.floor((seg_start - start_ts) / step_s))
                k1 = (
                    min(n_steps, math.ceil((seg_end - start_ts) / step_s))
                    if math.isfinite(seg_end)
                    else n_steps
                )
                for k in range(k0, k1):
                    out[k] = values.price_per_kwh if np.isnan(out[k]) else max(out[k], values.price_per_kwh)
                    found = True
        return out if found else None

    def level_in_force(self, now: float | None = None) -> LevelResponse | None:
        """The highest SIMPLE level in force at ``now`` as its default response (None: no level event)."""
        now = self.clock.now() if now is None else now
        levels = [
            v.level for e in self.in_force(now) if (v := e.values_at(now)) is not None and v.level is not None
        ]
        return level_response(max(levels)) if levels else None

    # -- running --------------------------------------------------------------------------------------------
    def start(self, interval_s: float = 1.0) -> None:
        """Tick every ``interval_s`` of the clock's time in a task (what the runtime does)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(interval_s), name="dr-manager")

    async def _run(self, interval_s: float) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("DR tick failed")
            await self.clock.sleep(interval_s)

    async def stop(self) -> None:
        await cancel_and_wait(self._task, what="DR manager")
        self._task = None
        try:
            await asyncio.wait_for(self.drain(), timeout=5.0)
        except TimeoutError:
            log.warning("DR: responders still busy at stop")
        for rq in self._responders.values():
            await rq.close()
