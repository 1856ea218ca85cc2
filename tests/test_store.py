"""hems.store: migrations, readings, restart and crash safety, rollups, retention, events, outbox."""

from __future__ import annotations

import math
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hems.model import Reading
from hems.store import MIGRATIONS, Store, StoreError

DAY = 86400.0
T0 = 1_700_000_100.0  # a multiple of 900 s: 15-min and 1-min buckets start here


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "hems.db"


@pytest.fixture
def store(db_path: Path):
    s = Store(db_path)
    yield s
    s.close()


def rows_1m(store: Store, device_id: str = "m", quantity: str = "p") -> dict[int, tuple]:
    """{bucket_ts: (n, avg, min, max)} straight from the table, to see the counts."""
    return _rows(store, "rollup_1m", device_id, quantity)


def rows_15m(store: Store, device_id: str = "m", quantity: str = "p") -> dict[int, tuple]:
    return _rows(store, "rollup_15m", device_id, quantity)


def _rows(store: Store, table: str, device_id: str, quantity: str) -> dict[int, tuple]:
    sql = (
        f"SELECT bucket_ts, n, total / n, vmin, vmax FROM {table} JOIN series s ON s.id = series_id "
        "WHERE s.device_id = ? AND s.quantity = ? ORDER BY bucket_ts"
    )
    return {b: (n, avg, lo, hi) for b, n, avg, lo, hi in store.db.execute(sql, (device_id, quantity))}


def assert_same_rows(got: dict[int, tuple], want: dict[int, tuple]) -> None:
    assert sorted(got) == sorted(want)
    for bucket, row in want.items():
        assert got[bucket] == pytest.approx(row, rel=1e-12), bucket


def aggregate(values: list[float]) -> tuple:
    return (len(values), sum(values) / len(values), min(values), max(values))


# ---------------------------------------------------------------------------------------------------------
# opening and migrations


def test_open_creates_parent_dirs_wal_and_schema(db_path: Path, store: Store) -> None:
    assert db_path.exists()
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert {
        "schema_migrations",
        "series",
        "readings",
        "rollup_1m",
        "rollup_15m",
        "events",
        "settings",
    } <= set(store.db.table_names())
    index_columns = sorted(tuple(ix.columns) for ix in store.db["readings"].indexes)
    assert index_columns == [("series_id", "ts"), ("ts",)]


def test_migrations_apply_once_and_are_recorded(db_path: Path) -> None:
    with Store(db_path) as s:
        applied = s.applied_migrations()
        assert [m["version"] for m in applied] == [m[0] for m in MIGRATIONS] == [1]
        assert s.schema_version() == Store.SCHEMA_VERSION == 1
        assert applied[0]["description"] == MIGRATIONS[0][1]
    with Store(db_path) as s:  # reopening is a no-op
        assert s.applied_migrations() == applied


def test_new_migration_runs_once_on_an_old_database(db_path: Path) -> None:
    Store(db_path).close()  # a version-1 database
    calls = []

    def m2(db) -> None:
        calls.append(1)
        db.execute("CREATE TABLE tariffs (id INTEGER PRIMARY KEY, name TEXT)")

    class Store2(Store):
        MIGRATIONS = (*MIGRATIONS, (2, "add tariffs", m2))
        SCHEMA_VERSION = 2

    with Store2(db_path) as s:
        assert s.schema_version() == 2
        assert [(m["version"], m["description"]) for m in s.applied_migrations()][-1] == (2, "add tariffs")
        assert "tariffs" in s.db.table_names()
    with Store2(db_path) as s:
        assert len(s.applied_migrations()) == 2
    assert calls == [1]


def test_database_from_a_newer_version_is_refused(db_path: Path) -> None:
    class Store5(Store):
        MIGRATIONS = (*MIGRATIONS, (5, "future", lambda db: db.execute("CREATE TABLE future (x)")))
        SCHEMA_VERSION = 5

    Store5(db_path).close()
    with pytest.raises(StoreError) as exc:
        Store(db_path)
    msg = str(exc.value)
    assert str(db_path) in msg
    assert "schema version 5" in msg
    assert "supports (1)" in msg


def test_failed_migration_leaves_the_previous_version(db_path: Path) -> None:
    Store(db_path).close()

    def broken(db) -> None:
        db.execute("CREATE TABLE half_done (x)")
        db.execute("INSERT INTO no_such_table VALUES (1)")

    class Broken(Store):
        MIGRATIONS = (*MIGRATIONS, (2, "broken", broken))
        SCHEMA_VERSION = 2

    with pytest.raises(StoreError, match=r"migration 2 \(broken\) failed"):
        Broken(db_path)
    with Store(db_path) as s:
        assert s.schema_version() == 1
        assert "half_done" not in s.db.table_names()


def test_unopenable_paths_raise_store_error_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open database") as exc:
        Store(blocker / "sub" / "hems.db")  # parent is a file
    assert str(blocker) in str(exc.value)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"garbage\.db"):
        Store(garbage)


def test_memory_store() -> None:
    with Store(":memory:") as s:
        assert s.add_readings([Reading("m", "p", 1.0, T0)]) == 1
        assert s.readings() == [Reading("m", "p", 1.0, T0)]


# ---------------------------------------------------------------------------------------------------------
# readings


def test_readings_filters_and_order(store: Store) -> None:
    batch = [
        Reading("meter", "grid_power_w", 300.0, T0 + 2),
        Reading("meter", "grid_power_w", 100.0, T0),
        Reading("meter", "voltage_v", 230.5, T0 + 1),
        Reading("pv", "pv_power_w", 4000.0, T0 + 1),
        Reading("meter", "grid_power_w", 200.0, T0 + 1),
        Reading("pv", "pv_power_w", 4100.0, T0 + 3),
    ]
    assert store.add_readings(batch) == 6
    assert store.add_readings([]) == 0
    assert [r.ts for r in store.readings()] == [T0, T0 + 1, T0 + 1, T0 + 1, T0 + 2, T0 + 3]
    assert [r.value for r in store.readings(device_id="meter", quantity="grid_power_w")] == [
        100.0,
        200.0,
        300.0,
    ]
    assert [r.value for r in store.readings(device_id="meter")] == [100.0, 230.5, 200.0, 300.0]
    assert [r.device_id for r in store.readings(quantity="pv_power_w")] == ["pv", "pv"]
    # half-open [start, end)
    got = store.readings(device_id="meter", quantity="grid_power_w", start=T0 + 1, end=T0 + 2)
    assert got == [Reading("meter", "grid_power_w", 200.0, T0 + 1)]
    assert [r.value for r in store.readings(start=T0 + 2)] == [300.0, 4100.0]
    assert [r.value for r in store.readings(end=T0 + 1)] == [100.0]
    assert [r.value for r in store.readings(limit=2)] == [100.0, 230.5]
    assert store.readings(device_id="nobody") == []
    assert store.readings(device_id="pv", quantity="grid_power_w") == []


def test_text_bool_int_and_nan_values_round_trip(store: Store) -> None:
    store.add_readings(
        [
            Reading("ev", "status", "Charging", T0),
            Reading("ev", "ev_plugged", True, T0 + 1),
            Reading("relay", "switch_on", False, T0 + 2),
            Reading("ev", "session_energy_wh", 1234, T0 + 3),
            Reading("ev", "power_w", math.nan, T0 + 4),
            Reading("hvac", "hvac_mode", "", T0 + 5),
        ]
    )
    got = store.readings()
    assert [r.value for r in got[:4]] == ["Charging", True, False, 1234.0]
    assert type(got[0].value) is str
    assert type(got[1].value) is bool and type(got[2].value) is bool
    assert type(got[3].value) is float
    assert math.isnan(got[4].value)
    assert got[5].value == ""
    # storage: text in the TEXT column, bools as 0/1 in the REAL column
    raw = store.db.execute("SELECT kind, num, txt FROM readings ORDER BY ts").fetchall()
    assert raw[:3] == [(2, None, "Charging"), (1, 1.0, None), (1, 0.0, None)]


def test_invalid_readings_are_skipped_and_the_rest_stored(store: Store) -> None:
    batch = [
        Reading("m", "p", 1.0, T0),
        Reading("m", "p", math.inf, T0 + 1),
        Reading("m", "p", None, T0 + 2),  # type: ignore[arg-type]
        Reading("m", "p", 2.0, math.nan),
        Reading("m", "p", 3.0, T0 + 4),
    ]
    assert store.add_readings(batch) == 2
    assert [r.value for r in store.readings()] == [1.0, 3.0]


def test_latest_is_the_newest_per_series_whatever_the_insert_order(store: Store) -> None:
    store.add_readings(
        [Reading("m", "p", 2.0, T0 + 10), Reading("m", "p", 1.0, T0), Reading("ev", "status", "A", T0)]
    )
    store.add_readings([Reading("m", "p", 0.5, T0 + 5)])  # older than what is there: not the latest
    store.add_readings([Reading("ev", "status", "C", T0 + 20), Reading("ev", "status", "B", T0 + 20)])
    assert store.latest() == [Reading("ev", "status", "B", T0 + 20), Reading("m", "p", 2.0, T0 + 10)]


# ---------------------------------------------------------------------------------------------------------
# restart and crash


def _fill(store: Store) -> None:
    store.add_readings([Reading("m", "p", float(i), T0 + i) for i in range(120)])
    store.add_readings(
        [Reading("ev", "status", "Charging", T0 + 5), Reading("ev", "ev_plugged", True, T0 + 6)]
    )
    store.add_event("dr", {"level": 2, "limit_w": 3000}, ts=T0, source="openadr", ref="evt-1")
    store.set_setting("battery_reserve_pct", 20, ts=T0)
    store.outbox_put("hems/telemetry", b"\x00\x01", ts=T0)
    store.rollup(T0 + 120)


def _check(store: Store) -> None:
    assert len(store.readings()) == 122
    assert store.readings(quantity="p")[-1] == Reading("m", "p", 119.0, T0 + 119)
    assert store.latest() == [
        Reading("ev", "ev_plugged", True, T0 + 6),
        Reading("ev", "status", "Charging", T0 + 5),
        Reading("m", "p", 119.0, T0 + 119),
    ]
    assert store.events()[0]["data"] == {"level": 2, "limit_w": 3000}
    assert store.get_setting("battery_reserve_pct") == 20
    assert [m["payload"] for m in store.outbox_peek(10)] == [b"\x00\x01"]
    assert store.series("m", "p", T0, T0 + 120) == [(T0, 29.5, 0.0, 59.0), (T0 + 60, 89.5, 60.0, 119.0)]


def test_restart_after_close_keeps_everything_and_removes_the_wal(db_path: Path) -> None:
    s = Store(db_path)
    _fill(s)
    s.close()
    s.close()  # idempotent
    assert not Path(f"{db_path}-wal").exists()
    assert not Path(f"{db_path}-shm").exists()
    with Store(db_path) as s2:
        _check(s2)
        # the rollup watermark survived: nothing to roll again, later minutes continue
        assert s2.rollup(T0 + 120)["buckets_1m"] == 0


def test_second_connection_sees_committed_data_without_close(db_path: Path) -> None:
    s1 = Store(db_path)
    _fill(s1)  # never closed: as if the process died
    s2 = Store(db_path)
    try:
        _check(s2)
    finally:
        s2.close()
        s1.close()


def test_process_killed_without_close_loses_nothing_committed(db_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os
        from hems.model import Reading
        from hems.store import Store
        s = Store({str(db_path)!r})
        for k in range(10):
            s.add_readings([Reading("m", "p", float(k * 50 + i), {T0} + k * 50 + i) for i in range(50)])
        s.add_event("fault", {{"device": "inverter"}}, ts={T0})
        s.set_setting("ev_departure", "07:30", ts={T0})
        os._exit(0)  # no close, no checkpoint
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[1])
    assert Path(f"{db_path}-wal").exists()  # the data is (at least partly) only in the WAL
    with Store(db_path) as s:
        got = s.readings()
        assert len(got) == 500
        assert [r.value for r in got] == [float(i) for i in range(500)]
        assert s.latest() == [Reading("m", "p", 499.0, T0 + 499)]
        assert s.events()[0]["data"] == {"device": "inverter"}
        assert s.get_setting("ev_departure") == "07:30"


# ---------------------------------------------------------------------------------------------------------
# rollups


def test_rollup_numbers_across_bucket_edges(store: Store) -> None:
    store.add_readings(
        [
            Reading("m", "p", 1.0, T0 + 30),
            Reading("m", "p", 3.0, T0 + 59.999),  # last instant of bucket 0
            Reading("m", "p", 5.0, T0 + 60),  # first instant of bucket 60
            Reading("m", "p", -7.0, T0 + 119.5),
            Reading("m", "p", 100.0, T0 + 120),
            Reading("m", "status", "ok", T0 + 1),  # text: not rolled
            Reading("m", "on", True, T0 + 1),
            Reading("m", "on", False, T0 + 2),
            Reading("m", "on", True, T0 + 3),
            Reading("m", "on", True, T0 + 4),
        ]
    )
    # at T0+150 the bucket [T0+120, T0+180) is still open
    counts = store.rollup(T0 + 150)
    assert counts["buckets_1m"] == 3  # p: 2 buckets, on: 1
    assert counts["watermark_1m"] == T0 + 120
    assert rows_1m(store) == {T0: (2, 2.0, 1.0, 3.0), T0 + 60: (2, -1.0, -7.0, 5.0)}
    assert rows_1m(store, "m", "on") == {T0: (4, 0.75, 0.0, 1.0)}  # bool avg = share of samples on
    assert rows_1m(store, "m", "status") == {}
    assert store.series("m", "p", T0, T0 + 3600) == [(T0, 2.0, 1.0, 3.0), (T0 + 60, -1.0, -7.0, 5.0)]
    # the bucket that ends exactly at `now` is closed
    assert store.rollup(T0 + 180)["buckets_1m"] == 1
    assert rows_1m(store)[T0 + 120] == (1, 100.0, 100.0, 100.0)
    # series bounds are on bucket start, half-open
    assert [b for b, *_ in store.series("m", "p", T0 + 60, T0 + 120)] == [T0 + 60]
    assert store.series("m", "p", T0, T0 + 3600, "raw") == [
        (T0 + 30, 1.0, 1.0, 1.0),
        (T0 + 59.999, 3.0, 3.0, 3.0),
        (T0 + 60, 5.0, 5.0, 5.0),
        (T0 + 119.5, -7.0, -7.0, -7.0),
        (T0 + 120, 100.0, 100.0, 100.0),
    ]
    # 15-min bucket not closed before T0 + 900
    assert store.series("m", "p", T0, T0 + 3600, "15m") == []
    assert store.rollup(T0 + 900)["buckets_15m"] == 2  # p and on
    assert rows_15m(store) == {T0: (5, 102.0 / 5, -7.0, 100.0)}


def test_15m_is_the_count_weighted_aggregate_of_1m_and_of_raw(store: Store) -> None:
    rng = random.Random(7)
    raw: list[Reading] = []
    for minute in range(60):
        for _ in range(rng.randint(1, 9)):  # uneven counts per minute make plain averaging wrong
            raw.append(Reading("m", "p", rng.uniform(-5000, 5000), T0 + minute * 60 + rng.uniform(0, 59.99)))
    store.add_readings(raw)
    counts = store.rollup(T0 + 3600)
    assert counts["buckets_1m"] == 60 and counts["buckets_15m"] == 4
    one = rows_1m(store)
    fifteen = rows_15m(store)
    assert sorted(fifteen) == [T0 + k * 900 for k in range(4)]
    for b15, (n, avg, lo, hi) in fifteen.items():
        minutes = [v for b, v in one.items() if b15 <= b < b15 + 900]
        assert len(minutes) == 15
        assert n == sum(m[0] for m in minutes)
        assert avg == pytest.approx(sum(m[0] * m[1] for m in minutes) / n, rel=1e-12)
        assert lo == min(m[2] for m in minutes) and hi == max(m[3] for m in minutes)
        assert (n, avg, lo, hi) == pytest.approx(aggregate([r.value for r in raw if b15 <= r.ts < b15 + 900]))
    # plain mean of the minute averages differs: the weighting matters
    first = [v for b, v in one.items() if b < T0 + 900]
    assert fifteen[T0][1] != pytest.approx(sum(m[1] for m in first) / 15, rel=1e-6)


def test_rollup_is_idempotent_and_incremental(store: Store) -> None:
    store.add_readings([Reading("m", "p", float(i), T0 + i * 10) for i in range(360)])  # one hour
    first = store.rollup(T0 + 1800)
    assert (first["buckets_1m"], first["buckets_15m"]) == (30, 2)
    snapshot = (rows_1m(store), rows_15m(store))
    again = store.rollup(T0 + 1800)
    assert (again["buckets_1m"], again["buckets_15m"], again["late_readings"]) == (0, 0, 0)
    assert store.rollup(T0 + 1000)["buckets_1m"] == 0  # an earlier `now` does not move anything back
    assert (rows_1m(store), rows_15m(store)) == snapshot
    rest = store.rollup(T0 + 3600)
    assert (rest["buckets_1m"], rest["buckets_15m"]) == (30, 2)
    assert rows_1m(store)[T0 + 3540] == aggregate([float(i) for i in range(354, 360)])
    assert rows_15m(store)[T0 + 2700] == aggregate([float(i) for i in range(270, 360)])


def test_late_readings_re_roll_their_buckets(store: Store, tmp_path: Path) -> None:
    on_time = [Reading("m", "p", float(i), T0 + i * 20) for i in range(90)]  # 30 min, 3 per minute
    late = [
        Reading("m", "p", 1000.0, T0 + 65),  # 1-min bucket 60 and 15-min bucket 0: both rolled
        Reading("m", "p", -1000.0, T0 + 70),
        Reading("m", "p", 7.0, T0 + 1500),  # 15-min bucket 900: rolled
        Reading("x", "new", 3.0, T0 + 10),  # a series nobody had seen
    ]
    store.add_readings(on_time)
    store.rollup(T0 + 1800)
    store.add_readings(late)
    counts = store.rollup(T0 + 1800)
    assert counts["late_readings"] == 4
    assert counts["buckets_1m"] == 3 and counts["buckets_15m"] == 3
    assert store.rollup(T0 + 1800)["late_readings"] == 0  # merged once only

    with Store(tmp_path / "reference.db") as ref:  # the same readings, all in time
        ref.add_readings(on_time + late)
        ref.rollup(T0 + 1800)
        for dev, q in (("m", "p"), ("x", "new")):
            assert_same_rows(rows_1m(store, dev, q), rows_1m(ref, dev, q))
            assert_same_rows(rows_15m(store, dev, q), rows_15m(ref, dev, q))
    assert rows_1m(store)[T0 + 60] == (5, (3 + 4 + 5 + 1000 - 1000) / 5, -1000.0, 1000.0)


def test_late_reading_after_its_raw_bucket_was_pruned(db_path: Path) -> None:
    s = Store(db_path, raw_retention_days=1)
    try:
        s.add_readings([Reading("m", "p", 10.0, T0), Reading("m", "p", 20.0, T0 + 30)])
        s.rollup(T0 + 2 * DAY)
        assert s.prune(T0 + 2 * DAY)["raw"] == 2
        s.add_readings([Reading("m", "p", 60.0, T0 + 40)])  # very late: its neighbours are gone from raw
        s.rollup(T0 + 2 * DAY)
        assert rows_1m(s)[T0] == (3, 30.0, 10.0, 60.0)
        assert rows_15m(s)[T0] == (3, 30.0, 10.0, 60.0)
    finally:
        s.close()


def test_late_readings_survive_a_restart_before_rollup(db_path: Path) -> None:
    with Store(db_path) as s:
        s.add_readings([Reading("m", "p", 1.0, T0)])
        s.rollup(T0 + 60)
        s.add_readings([Reading("m", "p", 3.0, T0 + 1)])
    with Store(db_path) as s:
        assert s.rollup(T0 + 60)["late_readings"] == 1
        assert rows_1m(s)[T0] == (2, 2.0, 1.0, 3.0)


def test_series_rejects_unknown_resolution(store: Store) -> None:
    with pytest.raises(ValueError, match=r"'raw', '1m', '15m'.*'5m'"):
        store.series("m", "p", T0, T0 + 60, "5m")


# ---------------------------------------------------------------------------------------------------------
# retention


def test_prune_deletes_exactly_what_is_old_and_rolled(db_path: Path) -> None:
    s = Store(db_path, raw_retention_days=1, rollup_1m_retention_days=2)
    try:
        readings = [Reading("m", "p", float(i), T0 + i * 600) for i in range(4 * 144)]  # 4 days, every 10 min
        readings.append(Reading("m", "status", "ok", T0 + 5))  # text is pruned by age like the rest
        s.add_readings(readings)
        now = T0 + 4 * DAY
        # nothing rolled yet: nothing may go
        assert s.prune(now) == {"raw": 0, "rollup_1m": 0}
        # rolled only up to day 0.5: raw and 1-min go only below that, though older than their retention
        s.rollup(T0 + 0.5 * DAY)
        assert len(rows_1m(s)) == 72 and len(rows_15m(s)) == 48
        assert s.prune(now) == {"raw": 73, "rollup_1m": 72}  # raw: 72 numbers + the status text
        assert s.readings()[0].ts == T0 + 0.5 * DAY
        assert rows_1m(s) == {} and len(rows_15m(s)) == 48
        s.rollup(now)
        assert len(rows_1m(s)) == 4 * 144 - 72
        got = s.prune(now)
        assert got == {"raw": 3 * 144 - 72, "rollup_1m": int(1.5 * 144)}
        assert [r.ts for r in s.readings()] == [T0 + i * 600 for i in range(3 * 144, 4 * 144)]
        assert min(rows_1m(s)) == now - 2 * DAY and len(rows_1m(s)) == 2 * 144
        assert len(rows_15m(s)) == 4 * 96  # 15-min buckets are kept; every one of them has a reading
        assert s.series("m", "p", T0, T0 + 900, "15m") == [(T0, 0.5, 0.0, 1.0)]
        assert s.prune(now) == {"raw": 0, "rollup_1m": 0}
        assert s.latest()[0] == Reading("m", "p", float(4 * 144 - 1), T0 + (4 * 144 - 1) * 600)
        assert s.latest()[1] == Reading("m", "status", "ok", T0 + 5)  # latest survives pruning
    finally:
        s.close()


def test_prune_limit_deletes_in_chunks(db_path: Path) -> None:
    with Store(db_path, raw_retention_days=1) as s:
        s.add_readings([Reading("m", "p", float(i), T0 + i) for i in range(100)])
        s.rollup(T0 + 2 * DAY)
        assert s.prune(T0 + 2 * DAY, limit=40) == {"raw": 40, "rollup_1m": 0}
        assert s.readings()[0].ts == T0 + 40  # oldest first
        assert s.prune(T0 + 2 * DAY, limit=40)["raw"] == 40
        assert s.prune(T0 + 2 * DAY, limit=40)["raw"] == 20
        assert s.readings() == []


# ---------------------------------------------------------------------------------------------------------
# events and settings


def test_events_round_trip_json_and_filters(db_path: Path) -> None:
    data = {
        "level": 2,
        "limit_w": 3000.5,
        "opt_out": False,
        "targets": ["battery", "ev"],
        "note": "Grüße",
        "x": None,
    }
    with Store(db_path) as s:
        e1 = s.add_event("dr", data, ts=T0, source="openadr", ref="evt-1")
        e2 = s.add_event("fault", {"device": "inverter"}, ts=T0 + 10)
        e3 = s.add_event("dr", {"level": 1}, ts=T0 + 20, source="sep2", ref="evt-2")
        s.update_event(e1, {**data, "status": "active"})
        with pytest.raises(KeyError, match="no event with id 999"):
            s.update_event(999, {})
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            s.add_event("dr", {"when": object()}, ts=T0)
    with Store(db_path) as s:
        all_events = s.events()
        assert [e["id"] for e in all_events] == [e1, e2, e3]
        assert all_events[0] == {
            "id": e1,
            "ts": T0,
            "kind": "dr",
            "source": "openadr",
            "ref": "evt-1",
            "data": {**data, "status": "active"},
        }
        assert all_events[1]["source"] == "" and all_events[1]["ref"] is None
        assert [e["id"] for e in s.events(kind="dr")] == [e1, e3]
        assert [e["id"] for e in s.events(since=T0 + 10)] == [e2, e3]
        assert [e["id"] for e in s.events(ref="evt-2")] == [e3]
        assert [e["id"] for e in s.events(limit=2)] == [e2, e3]  # the newest two, oldest first
        assert s.events(kind="plan") == []


def test_settings_round_trip_json(db_path: Path) -> None:
    with Store(db_path) as s:
        assert s.get_setting("missing") is None
        assert s.get_setting("missing", 42) == 42
        s.set_setting("battery_reserve_pct", 20, ts=T0)
        s.set_setting("battery_reserve_pct", 30.5, ts=T0 + 1)
        s.set_setting("comfort_band_c", [20.5, 24.0], ts=T0)
        s.set_setting("ev", {"departure": "07:30", "target_pct": 80, "v2h": True}, ts=T0)
        s.set_setting("nothing", None, ts=T0)
        with pytest.raises(TypeError, match="'bad'"):
            s.set_setting("bad", {1, 2}, ts=T0)
    with Store(db_path) as s:
        assert s.settings() == {
            "battery_reserve_pct": 30.5,
            "comfort_band_c": [20.5, 24.0],
            "ev": {"departure": "07:30", "target_pct": 80, "v2h": True},
            "nothing": None,
        }
        assert s.get_setting("nothing", "default") is None  # a stored None is not "missing"
        assert (
            s.db.execute("SELECT ts FROM settings WHERE key = 'battery_reserve_pct'").fetchone()[0] == T0 + 1
        )


def test_kv_state_round_trips_and_protects_store_keys(db_path: Path) -> None:
    with Store(db_path) as s:
        s.rollup(T0 + 60)
        s.kv_set("planner.last_solve", {"ts": T0, "status": "optimal"})
        with pytest.raises(ValueError, match="reserved"):
            s.kv_set("rollup.1m.watermark", 0)
        assert s.kv_get("missing", 5) == 5
    with Store(db_path) as s:
        assert s.kv_get("planner.last_solve") == {"ts": T0, "status": "optimal"}
        assert s.kv_get("rollup.1m.watermark") == T0 + 60
        assert "planner.last_solve" not in s.settings()


# ---------------------------------------------------------------------------------------------------------
# outbox


def test_outbox_order_ack_and_types(store: Store) -> None:
    ids = [store.outbox_put("hems/t", f"msg{i}", ts=T0 + i) for i in range(5)]
    bin_id = store.outbox_put("hems/bin", b"\xff\x00", ts=T0 + 5, qos=0)
    assert ids == sorted(ids)
    peek = store.outbox_peek(3)
    assert [m["payload"] for m in peek] == ["msg0", "msg1", "msg2"]
    assert peek[0] == {"id": ids[0], "topic": "hems/t", "payload": "msg0", "ts": T0, "qos": 1}
    store.outbox_ack([ids[0], ids[2], 12345])  # unknown ids are ignored
    assert [m["payload"] for m in store.outbox_peek(10)] == ["msg1", "msg3", "msg4", b"\xff\x00"]
    assert store.outbox_peek(10)[-1]["qos"] == 0 and store.outbox_peek(10)[-1]["id"] == bin_id
    assert store.outbox_stats() == {"size": 4, "dropped_total": 0, "max_rows": 100_000}
    store.outbox_ack(m["id"] for m in store.outbox_peek(10))
    assert store.outbox_peek(10) == [] and store.outbox_stats()["size"] == 0
    assert store.outbox_put("hems/t", "again", ts=T0) > bin_id  # ids are never reused
    with pytest.raises(ValueError, match="qos"):
        store.outbox_put("hems/t", "x", ts=T0, qos=3)


def test_outbox_is_bounded_and_counts_drops_across_restarts(db_path: Path) -> None:
    with Store(db_path, outbox_max_rows=5) as s:
        for i in range(8):
            s.outbox_put("hems/t", f"m{i}", ts=T0 + i)
        assert [m["payload"] for m in s.outbox_peek(10)] == ["m3", "m4", "m5", "m6", "m7"]
        assert s.outbox_stats() == {"size": 5, "dropped_total": 3, "max_rows": 5}
    with Store(db_path, outbox_max_rows=5) as s:
        assert s.outbox_stats() == {"size": 5, "dropped_total": 3, "max_rows": 5}
        s.outbox_put("hems/t", "m8", ts=T0 + 8)
        assert s.outbox_stats()["dropped_total"] == 4
        assert s.outbox_peek(1)[0]["payload"] == "m4"
    with Store(db_path, outbox_max_rows=2) as s:  # a smaller bound drops the excess on the next put
        s.outbox_put("hems/t", "m9", ts=T0 + 9)
        assert [m["payload"] for m in s.outbox_peek(10)] == ["m8", "m9"]
        assert s.outbox_stats() == {"size": 2, "dropped_total": 8, "max_rows": 2}


# ---------------------------------------------------------------------------------------------------------
# speed (loose bound; tests/bench_store.py measures properly)


def test_a_batch_of_500_readings_is_quick(store: Store) -> None:
    quantities = [f"q{k}" for k in range(20)]
    times = []
    for b in range(20):
        batch = [Reading("dev", quantities[i % 20], float(i), T0 + b * 25 + i // 20) for i in range(500)]
        t = time.perf_counter()
        assert store.add_readings(batch) == 500
        times.append(time.perf_counter() - t)
    assert sorted(times)[len(times) // 2] < 0.05


def test_store_usable_from_another_thread(store: Store) -> None:
    import threading

    result = []
    t = threading.Thread(target=lambda: result.append(store.add_readings([Reading("m", "p", 1.0, T0)])))
    t.start()
    t.join()
    assert result == [1] and len(store.readings()) == 1


def test_sqlite_errors_become_store_errors_naming_the_file(db_path: Path) -> None:
    s = Store(db_path)
    other = sqlite3.connect(db_path, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        s.db.execute("PRAGMA busy_timeout = 50")
        with pytest.raises(StoreError, match=r"hems\.db: storing readings failed: database is locked"):
            s.add_readings([Reading("m", "p", 1.0, T0)])
    finally:
        other.rollback()
        other.close()
    assert s.add_readings([Reading("m", "p", 1.0, T0)]) == 1  # and the store still works afterwards
    s.close()
    assert os.path.exists(db_path)


def test_what_people_made_is_committed_with_a_full_sync_and_readings_are_not(store: Store) -> None:
    """Accounts, settings, commissioned devices and DR events survive a power cut once written (the image boot
    test cuts the power and finds the owner's account); readings keep the cheaper NORMAL sync."""
    mode_at_commit: list[str] = []
    mode = ["NORMAL"]

    def trace(sql: str) -> None:
        words = sql.split()
        if words[:2] == ["PRAGMA", "synchronous"]:
            mode[0] = words[-1]
        elif words[:1] == ["COMMIT"]:
            mode_at_commit.append(mode[0])

    store.db.conn.set_trace_callback(trace)

    def commit_modes(write) -> list[str]:
        mode_at_commit.clear()
        write()
        return list(mode_at_commit)

    assert commit_modes(lambda: store.kv_set("auth.users", {"owner": {"role": "owner"}})) == ["FULL"]
    assert commit_modes(lambda: store.set_setting("battery.reserve_pct", 30, ts=T0)) == ["FULL"]
    mode_at_commit.clear()
    event_id = store.add_event("dr", {"state": "pending"}, ts=T0)
    assert mode_at_commit == ["FULL"]
    assert commit_modes(lambda: store.update_event(event_id, {"state": "active"})) == ["FULL"]
    assert commit_modes(lambda: store.add_readings([Reading("m", "p", 1.0, T0)])) == ["NORMAL"]
    # what is made again anyway (the latest plan) may skip the fsync
    assert commit_modes(lambda: store.kv_set("plan.latest", {"steps": []}, durable=False)) == ["NORMAL"]
    assert commit_modes(lambda: store.add_event("plan", {}, ts=T0, durable=False)) == ["NORMAL"]
    # and the connection is back to NORMAL afterwards, also after a failed durable write
    with pytest.raises(KeyError):
        store.update_event(event_id + 99, {"state": "x"})
    store.db.conn.set_trace_callback(None)
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
