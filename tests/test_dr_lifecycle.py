"""hems.dr: the DR event lifecycle — transitions, modifications, cancellation, opt-out, restart, randomisation."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hems.clock import ManualClock
from hems.dr import EVENT_KIND, DREvent, DRManager, DRNotice, DRState, OptState
from hems.store import Store

TZ = "America/Los_Angeles"
T0 = datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo(TZ)).timestamp()  # a Wednesday, noon


class Recorder:
    """A responder that records what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, str]] = []
        self.reports: list[tuple[str, dict]] = []

    async def send_status(self, event: DREvent, status: DRNotice) -> None:
        self.calls.append((event.key, str(status), event.modification_number, str(event.opt)))

    async def send_report(self, event: DREvent, report: dict) -> None:
        self.reports.append((event.key, report))

    def notices(self, key: str = "openadr:e1") -> list[str]:
        return [c[1] for c in self.calls if c[0] == key]


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "hems.sqlite")
    yield s
    s.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def manager(store: Store, clock: ManualClock, responder: Recorder | None = None, **kw) -> DRManager:
    dr = DRManager(store, clock=clock, timezone=TZ, seed=kw.pop("seed", 7), **kw)
    if responder is not None:
        dr.register_responder("openadr", responder)
    return dr


def event(
    event_id: str = "e1", *, start: float = T0 + 600, duration: float = 3600, mn: int = 0, **kw
) -> DREvent:
    return DREvent(
        source="openadr", event_id=event_id, start_ts=start, duration_s=duration, modification_number=mn, **kw
    )


async def test_pending_active_completed_with_notices_in_order(store, clock):
    rec = Recorder()
    dr = manager(store, clock, rec, report_delay_s=60)
    seen: list[tuple[str, str]] = []
    dr.on_change(lambda ev, notice: seen.append((ev.key, str(notice))))

    ev = await dr.receive(event(import_cap_w=2000.0))
    assert ev.state is DRState.PENDING and ev.received_ts == T0 and ev.actuated_ts is None
    assert await dr.tick() == []  # nothing to do yet

    clock.advance(599)
    await dr.tick()
    assert dr.get("openadr:e1").state is DRState.PENDING
    clock.advance(1)  # exactly the start
    changed = await dr.tick()
    assert [e.state for e in changed] == [DRState.ACTIVE]
    assert dr.get("openadr:e1").actuated_ts == T0 + 600
    clock.advance(3599)
    await dr.tick()
    assert dr.get("openadr:e1").state is DRState.ACTIVE
    clock.advance(1)  # the end is exclusive
    await dr.tick()
    done = dr.get("openadr:e1")
    assert done.state is DRState.COMPLETED and done.ended_ts == T0 + 4200
    clock.advance(60)
    await dr.tick()
    await dr.drain()
    assert rec.notices() == ["received", "started", "completed"]
    assert [s for _, s in seen] == ["received", "started", "completed", "reported"]
    assert len(rec.reports) == 1 and rec.reports[0][1]["event"] == "openadr:e1"
    # persisted: one row per version, its state the last one
    rows = store.events(kind=EVENT_KIND, ref="openadr:e1")
    assert len(rows) == 1 and rows[0]["data"]["state"] == "completed" and rows[0]["source"] == "openadr"
    assert rows[0]["data"]["report_ts"] == T0 + 4260


async def test_event_already_started_is_active_at_once_and_one_that_ended_never_starts(store, clock):
    rec = Recorder()
    dr = manager(store, clock, rec)
    ev = await dr.receive(event(start=T0 - 60))
    assert ev.state is DRState.ACTIVE and ev.actuated_ts == T0
    past = await dr.receive(event("old", start=T0 - 7200, duration=3600))
    assert past.state is DRState.COMPLETED and past.actuated_ts is None
    assert "before it could be started" in past.reason
    await dr.drain()
    assert rec.notices("openadr:old") == ["received", "completed"]


async def test_modification_numbers_supersede_repeat_and_stale(store, clock):
    rec = Recorder()
    dr = manager(store, clock, rec)
    await dr.receive(event(level=1))
    v2 = await dr.receive(event(mn=2, level=2, duration=7200))
    assert v2.modification_number == 2 and v2.level == 2 and v2.duration_s == 7200
    assert (await dr.receive(event(mn=2, level=3))).level == 2  # equal: idempotent
    assert (await dr.receive(event(mn=1, level=3))).level == 2  # older: ignored
    await dr.drain()
    assert rec.notices() == ["received", "modified"]
    history = dr.history("openadr:e1")
    assert [(h.modification_number, h.state) for h in history] == [
        (0, DRState.SUPERSEDED),
        (2, DRState.PENDING),
    ]
    assert history[0].reason == "superseded by modification 2"


async def test_modifying_an_active_event_never_starts_it_again(store, clock):
    rec = Recorder()
    dr = manager(store, clock, rec)
    await dr.receive(event(import_cap_w=3000.0))
    clock.advance(700)
    await dr.tick()
    first = dr.get("openadr:e1").actuated_ts
    v1 = await dr.receive(event(mn=1, import_cap_w=1500.0, duration=7200))
    assert v1.state is DRState.ACTIVE and v1.actuated_ts == first
    assert dr.controller_limit_w() == 1500.0
    await dr.drain()
    assert rec.notices() == ["received", "started", "modified"]


async def test_cancellation_by_modification_number(store, clock):
    rec = Recorder()
    dr = manager(store, clock, rec)
    await dr.receive(event(mn=3, import_cap_w=2000.0))
    clock.advance(900)
    await dr.tick()
    assert await dr.cancel("openadr:e1", modification_number=2) is not None
    assert dr.get("openadr:e1").state is DRState.ACTIVE  # older modification: ignored
    assert dr.controller_limit_w() == 2000.0
    ev = await dr.cancel("openadr:e1", modification_number=4, reason="grid ok")
    assert ev.state is DRState.CANCELLED and ev.modification_number == 4 and ev.ended_ts == T0 + 900
    assert dr.controller_limit_w() is None and dr.planner_windows(T0, 900, 96) == ()
    # a repeat of the cancellation or a late copy of the event changes nothing
    assert (await dr.receive(replace(event(mn=4), state=DRState.CANCELLED))).state is DRState.CANCELLED
    assert (await dr.receive(event(mn=5, import_cap_w=1.0))).state is DRState.CANCELLED
    await dr.drain()
    assert rec.notices() == ["received", "started", "cancelled"]


async def test_cancel_of_an_unknown_event_is_remembered(store, clock):
    dr = manager(store, clock)
    assert await dr.cancel("openadr:nope") is None
    ev = await dr.receive(replace(event("x", mn=1), state=DRState.CANCELLED))
    assert ev.state is DRState.CANCELLED
    assert (await dr.receive(event("x", mn=1, level=2))).state is DRState.CANCELLED
    assert (await dr.receive(event("x", mn=0, level=2))).state is DRState.CANCELLED


async def test_opt_out_is_sent_back_and_survives_modifications(store, clock):
    rec = Recorder()
    dr = manager(store, clock, rec)
    await dr.receive(event(level=2))
    clock.advance(1200)
    await dr.tick()
    assert dr.controller_limit_w() == 3000.0  # level 2 without a baseline: its fallback cap
    ev = await dr.opt_out("openadr:e1", "too hot today")
    assert ev.state is DRState.OPTED_OUT and ev.opt is OptState.OPT_OUT and ev.ended_ts == T0 + 1200
    assert ev.reason == "too hot today"
    assert dr.controller_limit_w() is None
    assert (await dr.opt_out("openadr:e1")).reason == "too hot today"  # idempotent
    v1 = await dr.receive(event(mn=1, level=3))
    assert v1.state is DRState.OPTED_OUT and v1.opt is OptState.OPT_OUT and v1.level == 3
    await dr.drain()
    assert rec.calls == [
        ("openadr:e1", "received", 0, "opt_in"),
        ("openadr:e1", "started", 0, "opt_in"),
        ("openadr:e1", "opted_out", 0, "opt_out"),
        ("openadr:e1", "modified", 1, "opt_out"),
    ]
    with pytest.raises(KeyError, match="no DR event"):
        await dr.opt_out("openadr:nope")
    await dr.receive(event("done", start=T0 - 7200, duration=600))
    with pytest.raises(ValueError, match="nothing to opt out of"):
        await dr.opt_out("openadr:done")


async def test_policy_opts_out_at_receipt(store, clock):
    rec = Recorder()
    dr = manager(store, clock, rec, policy=lambda ev: "no level 3 here" if ev.level == 3 else None)
    assert (await dr.receive(event("a", level=3))).opt is OptState.OPT_OUT
    assert (await dr.receive(event("b", level=1))).opt is OptState.OPT_IN
    clock.advance(700)
    await dr.tick()
    await dr.drain()
    assert rec.notices("openadr:a") == ["received"]  # never started
    assert dr.get("openadr:a").reason == "no level 3 here"
    assert rec.notices("openadr:b") == ["received", "started"]


async def test_restart_mid_event_keeps_it_and_never_actuates_twice(store, clock):
    rec1 = Recorder()
    dr1 = manager(store, clock, rec1)
    await dr1.receive(event(import_cap_w=2500.0))
    clock.advance(1800)
    await dr1.tick()
    await dr1.drain()
    assert rec1.notices() == ["received", "started"]
    await dr1.stop()

    # the gateway restarts 10 minutes later (same store, a new manager and a new responder)
    clock.advance(600)
    rec2 = Recorder()
    dr2 = manager(store, clock, rec2)
    started: list[str] = []
    dr2.on_change(lambda ev, n: started.append(str(n)))
    ev = dr2.get("openadr:e1")
    assert ev.state is DRState.ACTIVE and ev.actuated_ts == T0 + 1800
    assert dr2.controller_limit_w() == 2500.0  # still in force before the first tick
    for _ in range(3):
        await dr2.tick()
        clock.advance(60)
    await dr2.drain()
    assert rec2.calls == [] and started == []
    clock.set(T0 + 4200)
    await dr2.tick()
    await dr2.drain()
    assert rec2.notices() == ["completed"]
    # a third start after the end: nothing more
    rec3 = Recorder()
    dr3 = manager(store, clock, rec3)
    await dr3.tick()
    await dr3.drain()
    assert rec3.calls == []


async def test_restart_before_start_starts_once(store, clock):
    dr1 = manager(store, clock, Recorder())
    await dr1.receive(event(start=T0 + 3600))
    rec = Recorder()
    clock.advance(3700)  # the gateway was down across the start
    dr2 = manager(store, clock, rec)
    await dr2.tick()
    await dr2.tick()
    await dr2.drain()
    assert rec.notices() == ["started"]
    assert dr2.get("openadr:e1").actuated_ts == T0 + 3700


async def test_randomisation_is_drawn_once_persisted_and_kept(store, clock):
    dr = manager(store, clock, seed=42)
    ev = await dr.receive(event(randomization_s=600.0, start=T0 + 3600))
    assert 0.0 < ev.offset_s < 600.0
    assert ev.effective_start_ts == T0 + 3600 + ev.offset_s
    assert ev.end_ts == ev.effective_start_ts + 3600
    # the same seed draws the same offset; another seed another one
    other = DRManager(Store(":memory:"), clock=clock, timezone=TZ, seed=42)
    assert (await other.receive(event(randomization_s=600.0))).offset_s == ev.offset_s
    third = DRManager(Store(":memory:"), clock=clock, timezone=TZ, seed=43)
    assert (await third.receive(event(randomization_s=600.0))).offset_s != ev.offset_s
    # persisted: a restart keeps the offset; a modification with the same window keeps it too
    again = manager(store, clock, seed=999)
    assert again.get("openadr:e1").offset_s == ev.offset_s
    v1 = await again.receive(event(mn=1, randomization_s=600.0, start=T0 + 3600, level=1))
    assert v1.offset_s == ev.offset_s
    # starts at the randomised time, not before
    clock.set(T0 + 3600 + ev.offset_s - 1)
    await again.tick()
    assert again.get("openadr:e1").state is DRState.PENDING
    clock.advance(1)
    await again.tick()
    assert again.get("openadr:e1").state is DRState.ACTIVE


async def test_invalid_events_are_refused(store, clock):
    dr = manager(store, clock)
    with pytest.raises(ValueError, match="level"):
        await dr.receive(event(level=5))
    with pytest.raises(ValueError, match="start_ts"):
        await dr.receive(event(start=float("nan")))
    with pytest.raises(ValueError, match="source"):
        await dr.receive(replace(event(), source="a:b"))


async def test_a_failing_responder_or_listener_does_not_stop_the_lifecycle(store, clock):
    class Broken:
        async def send_status(self, event, status):
            raise RuntimeError("VTN gone")

        async def send_report(self, event, report):
            raise RuntimeError("VTN gone")

    dr = manager(store, clock)
    dr.register_responder("openadr", Broken())

    def bad_listener(ev, notice):
        raise RuntimeError("listener bug")

    dr.on_change(bad_listener)
    await dr.receive(event(start=T0 - 10))
    clock.advance(4000)
    await dr.tick()
    await dr.drain()
    assert dr.get("openadr:e1").state is DRState.COMPLETED


async def test_a_crash_between_two_version_writes_loads_the_newer_one(store, clock):
    dr = manager(store, clock)
    await dr.receive(event(start=T0 - 60, import_cap_w=3000.0))
    v0 = dr.get("openadr:e1")
    # as if the process died after writing modification 1 but before marking modification 0 superseded
    v1 = replace(v0, modification_number=1, import_cap_w=2000.0)
    store.add_event(EVENT_KIND, v1.to_json(), ts=T0 + 1, source="openadr", ref="openadr:e1")
    again = manager(store, clock)
    loaded = again.get("openadr:e1")
    assert loaded.modification_number == 1 and loaded.actuated_ts == v0.actuated_ts
    assert again.controller_limit_w() == 2000.0
    assert (await again.receive(event(mn=1, import_cap_w=1.0))).import_cap_w == 2000.0  # a repeat: ignored


async def test_supersede_by_the_source(store, clock):
    rec = Recorder()
    dr = manager(store, clock, rec)
    await dr.receive(event("a", start=T0 - 60, import_cap_w=3000.0))
    await dr.receive(event("b", start=T0 - 60, import_cap_w=1000.0))
    ev = await dr.supersede("openadr:b", "replaced by c")
    assert ev.state is DRState.SUPERSEDED and ev.ended_ts == T0 and ev.reason == "replaced by c"
    assert dr.controller_limit_w() == 3000.0
    assert (await dr.supersede("openadr:b")).reason == "replaced by c"  # terminal: unchanged
    await dr.drain()
    assert rec.notices("openadr:b") == ["received", "started", "superseded"]
