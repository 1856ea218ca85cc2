"""The gateway's SQLite store: raw readings, rollups, events, settings, an MQTT outbox.

One file, WAL mode, one writer (this process). Every write is one short ``BEGIN IMMEDIATE`` transaction, so
whatever a method call committed is on disk when it returns and survives a crash of the process. Readings,
rollups and the outbox are written with ``synchronous=NORMAL``: a power cut may lose the last few seconds of
them, never corrupt the file. What a person or the utility made — accounts, settings, commissioned devices, DR
events (``kv_set``, ``set_setting``, ``add_event``, ``update_event``) — is written with ``synchronous=FULL``:
once the call returns it survives a power cut too (a gateway's power is cut without warning; setting it up
again, or losing a DR event's record, is not a fair price for saving one fsync).

Layout (schema version 1, see ``_V1``):

- ``series``: one row per (device_id, quantity) with its id and its last value (``latest()`` reads this,
  so the last value of a series survives pruning of the raw readings).
- ``readings``: raw readings by series id. ``kind`` says what the value was: 0 number (``num``), 1 bool
  (``num`` 0/1), 2 text (``txt``). A NaN number is stored as NULL and read back as NaN.
- ``rollup_1m`` / ``rollup_15m``: per series and bucket (start aligned to multiples of 60 s / 900 s since the
  UTC epoch): count ``n``, ``total``, ``vmin``, ``vmax``; avg = total / n. Numbers and bools (0/1: the avg
  is the share of samples that were on) are rolled up, text is not.
- ``rollup_late``: numeric readings that arrived for a bucket already rolled up; the next ``rollup()``
  merges them into their 1-min (and, if already rolled, 15-min) buckets, so the buckets come out as if the
  readings had arrived in time, even when the raw data around them is already pruned.
- ``events``, ``settings`` (JSON values), ``kv`` (internal state: rollup watermarks, outbox drop counter),
  ``outbox`` (bounded; oldest dropped first).

Time ranges are half-open: ``start <= ts < end``. Timestamps are POSIX seconds, as everywhere in the core.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import sqlite_utils

from hems.model import Reading

log = logging.getLogger(__name__)

__all__ = ["MIGRATIONS", "RESOLUTIONS", "Store", "StoreError"]

RESOLUTIONS = ("raw", "1m", "15m")
_DAY = 86400.0
_KIND_NUM, _KIND_BOOL, _KIND_TEXT = 0, 1, 2
_NO_WATERMARK = -(2**62)  # below every bucket: "nothing rolled yet"

_KV_WM_1M = "rollup.1m.watermark"
_KV_WM_15M = "rollup.15m.watermark"
_KV_OUTBOX_DROPPED = "outbox.dropped_total"


class StoreError(Exception):
    """The store cannot do what was asked; the message names the database file and what failed."""


# --------------------------------------------------------------------------------------------------------
# migrations: (version, description, function(db)). Append only; never edit one that has shipped.

_V1 = (
    """CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        quantity TEXT NOT NULL,
        last_ts REAL,
        last_kind INTEGER,
        last_num REAL,
        last_txt TEXT,
        UNIQUE (device_id, quantity)
    )""",
    """CREATE TABLE readings (
        id INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL,
        ts REAL NOT NULL,
        kind INTEGER NOT NULL,
        num REAL,
        txt TEXT
    )""",
    "CREATE INDEX readings_series_ts ON readings (series_id, ts)",
    "CREATE INDEX readings_ts ON readings (ts)",
    """CREATE TABLE rollup_1m (
        series_id INTEGER NOT NULL,
        bucket_ts INTEGER NOT NULL,
        n INTEGER NOT NULL,
        total REAL NOT NULL,
        vmin REAL NOT NULL,
        vmax REAL NOT NULL,
        PRIMARY KEY (series_id, bucket_ts)
    ) WITHOUT ROWID""",
    "CREATE INDEX rollup_1m_bucket ON rollup_1m (bucket_ts)",
    """CREATE TABLE rollup_15m (
        series_id INTEGER NOT NULL,
        bucket_ts INTEGER NOT NULL,
        n INTEGER NOT NULL,
        total REAL NOT NULL,
        vmin REAL NOT NULL,
        vmax REAL NOT NULL,
        PRIMARY KEY (series_id, bucket_ts)
    ) WITHOUT ROWID""",
    "CREATE TABLE rollup_late (series_id INTEGER NOT NULL, ts REAL NOT NULL, num REAL NOT NULL)",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        ref TEXT,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX events_ts ON events (ts)",
    "CREATE INDEX events_kind_ts ON events (kind, ts)",
    "CREATE INDEX events_ref ON events (ref)",
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL, ts REAL NOT NULL)",
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        ts REAL NOT NULL,
        qos INTEGER NOT NULL
    )""",
)


def _m1_initial(db: sqlite_utils.Database) -> None:
    for statement in _V1:
        db.execute(statement)


Migration = tuple[int, str, Callable[[sqlite_utils.Database], None]]

MIGRATIONS: tuple[Migration, ...] = (
    (1, "initial schema: series, readings, rollups, events, settings, kv, outbox", _m1_initial),
)


# --------------------------------------------------------------------------------------------------------
# buckets: the same truncating arithmetic in Python and SQL (CAST truncates like int()), so that a reading
# is put in the same bucket whichever side computes it.


def _b1(ts: float) -> int:
    return int(ts / 60) * 60


def _b15(ts: float) -> int:
    return _b1(ts) // 900 * 900


_SQL_B1 = "(CAST(ts / 60 AS INTEGER) * 60)"
_SQL_B15 = f"({_SQL_B1} / 900 * 900)"


def _encode(value: Any) -> tuple[int, float | None, str | None] | None:
    if isinstance(value, bool):
        return _KIND_BOOL, 1.0 if value else 0.0, None
    if isinstance(value, int | float):
        num = float(value)
        if math.isinf(num):
            return None  # garbage; NaN ("no value") is kept, stored as NULL and read back as NaN
        return _KIND_NUM, num, None
    if isinstance(value, str):
        return _KIND_TEXT, None, value
    return None


def _decode(kind: int, num: float | None, txt: str | None) -> float | bool | str:
    if kind == _KIND_TEXT:
        return txt if txt is not None else ""
    if kind == _KIND_BOOL:
        return bool(num)
    return math.nan if num is None else num


def _dumps(what: str, value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what}: value is not JSON-serialisable ({e})") from e


class Store:
    """SQLite persistence for the gateway. Synchronous and quick; safe to call from one thread at a time
    (a lock serialises calls, and the connection allows use from a worker thread, e.g. ``asyncio.to_thread``).
    Assumes it is the only writer of its file; other processes may read it."""

    MIGRATIONS: ClassVar[tuple[Migration, ...]] = MIGRATIONS  # a subclass may extend them (tests do)
    SCHEMA_VERSION: ClassVar[int] = MIGRATIONS[-1][0]

    def __init__(
        self,
        path: str | Path,
        *,
        raw_retention_days: float = 7,
        rollup_1m_retention_days: float = 90,
        outbox_max_rows: int = 100_000,
        busy_timeout_s: float = 5.0,
    ):
        if outbox_max_rows < 1:
            raise ValueError(f"outbox_max_rows must be >= 1, got {outbox_max_rows}")
        if raw_retention_days <= 0 or rollup_1m_retention_days <= 0:
            raise ValueError(
                "raw_retention_days and rollup_1m_retention_days must be > 0, got "
                f"{raw_retention_days} and {rollup_1m_retention_days}"
            )
        self.path = str(path)
        self.raw_retention_days = float(raw_retention_days)
        self.rollup_1m_retention_days = float(rollup_1m_retention_days)
        self.outbox_max_rows = int(outbox_max_rows)
        self._lock = threading.RLock()
        self._closed = False
        memory = self.path == ":memory:"
        try:
            if not memory:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; every write below opens its own BEGIN IMMEDIATE
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open database {self.path}: {e} (is the directory writable?)") from e
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if not memory:
                self.db.enable_wal()
                self.db.execute("PRAGMA journal_size_limit = 67108864")  # WAL shrinks back to <= 64 MiB
            self.db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
            self._load_state()
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(f"cannot open database {self.path}: {e}") from e

    # ---------------------------------------------------------------------------------------------------
    # plumbing

    def _migrate(self) -> None:
        versions = [m[0] for m in self.MIGRATIONS]
        if versions != sorted(set(versions)) or not versions:
            raise StoreError(f"migrations must have strictly increasing versions, got {versions}")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_ts REAL NOT NULL)"
        )
        current = self.schema_version()
        if current > self.SCHEMA_VERSION:
            raise StoreError(
                f"database {self.path} has schema version {current}, newer than the version this software "
                f"supports ({self.SCHEMA_VERSION}): it was written by a newer HEMS release. Install that "
                "release (or newer), or move the file aside to start with an empty database."
            )
        for version, description, migrate in self.MIGRATIONS:
            if version <= current:
                continue
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                # another process may have migrated while we waited for the write lock
                if self.schema_version() >= version:
                    conn.execute("ROLLBACK")
                    continue
                migrate(self.db)
                self.db.execute(
                    "INSERT INTO schema_migrations (version, description, applied_ts) VALUES (?, ?, ?)",
                    (version, description, time.time()),
                )
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise StoreError(
                        f"database {self.path}: migration {version} ({description}) failed: {e}; "
                        "the database was left at the previous version"
                    ) from e
                raise
            log.info("%s: applied migration %d (%s)", self.path, version, description)

    def schema_version(self) -> int:
        """The highest migration applied to this database (0 for an empty file)."""
        row = self.db.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def applied_migrations(self) -> list[dict]:
        """The rows of ``schema_migrations``: version, description, applied_ts."""
        with self._read("list migrations"):
            return list(self.db.query("SELECT * FROM schema_migrations ORDER BY version"))

    def _load_state(self) -> None:
        self._series: dict[tuple[str, str], int] = {
            (d, q): i for i, d, q in self.db.execute("SELECT id, device_id, quantity FROM series")
        }
        wm1 = self._kv_get(_KV_WM_1M)
        wm15 = self._kv_get(_KV_WM_15M)
        self._wm1: int = _NO_WATERMARK if wm1 is None else int(wm1)
        self._wm15: int = _NO_WATERMARK if wm15 is None else int(wm15)
        self._outbox_size: int = self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        self._outbox_dropped: int = int(self._kv_get(_KV_OUTBOX_DROPPED) or 0)

    @contextlib.contextmanager
    def _write(self, what: str, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; sqlite errors become StoreError naming the file and the operation.
        ``durable``: the commit is synced to the disk (WAL fsynced) before this returns."""
        with self._lock:
            conn = self.db.conn
            try:
                if durable:
                    conn.execute("PRAGMA synchronous = FULL")  # only outside a transaction
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"database {self.path}: {what} failed: {e}") from e
            finally:
                if durable:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("PRAGMA synchronous = NORMAL")

    @contextlib.contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self.db.conn
            except sqlite3.Error as e:
                raise StoreError(f"database {self.path}: {what} failed: {e}") from e

    def _kv_get(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    @staticmethod
    def _kv_set(conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close; the -wal/-shm files are removed. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self.path != ":memory:":
                    self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as e:  # still close; the WAL is replayed on the next open
                log.warning("%s: WAL checkpoint on close failed: %s", self.path, e)
            finally:
                self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------------------
    # readings

    def add_readings(self, readings: Iterable[Reading]) -> int:
        """Store readings in one transaction; returns how many were stored. A reading whose value is not a
        number, bool or str, is infinite, or whose ts is not finite, is skipped with a warning (the rest are
        stored)."""
        # encode outside the transaction: the write lock is held only for the SQL
        encoded: list[tuple[tuple[str, str], float, int, float | None, str | None]] = []
        for r in readings:
            enc = _encode(r.value)
            try:
                ts = float(r.ts)
            except (TypeError, ValueError):
                ts = math.nan
            if enc is None or not math.isfinite(ts):
                log.warning(
                    "skipping reading %s/%s: value %r at ts %r", r.device_id, r.quantity, r.value, r.ts
                )
                continue
            encoded.append(((r.device_id, r.quantity), ts, *enc))
        if not encoded:
            return 0
        rows: list[tuple[int, float, int, float | None, str | None]] = []
        late: list[tuple[int, float, float]] = []
        last: dict[int, tuple[float, int, float | None, str | None]] = {}
        new_series: dict[tuple[str, str], int] = {}
        wm1 = self._wm1
        with self._write("storing readings") as conn:
            ids = self._series
            for key, ts, kind, num, txt in encoded:
                sid = ids.get(key) or new_series.get(key)
                if sid is None:
                    conn.execute("INSERT OR IGNORE INTO series (device_id, quantity) VALUES (?, ?)", key)
                    sid = conn.execute(
                        "SELECT id FROM series WHERE device_id = ? AND quantity = ?", key
                    ).fetchone()[0]
                    new_series[key] = sid
                rows.append((sid, ts, kind, num, txt))
                if num is not None and num == num and _b1(ts) < wm1:  # num == num: NaN is not rolled up
                    late.append((sid, ts, num))
                prev = last.get(sid)
                if prev is None or ts >= prev[0]:
                    last[sid] = (ts, kind, num, txt)
            conn.executemany(
                "INSERT INTO readings (series_id, ts, kind, num, txt) VALUES (?, ?, ?, ?, ?)", rows
            )
            if late:
                conn.executemany("INSERT INTO rollup_late (series_id, ts, num) VALUES (?, ?, ?)", late)
            conn.executemany(
                "UPDATE series SET last_ts = ?, last_kind = ?, last_num = ?, last_txt = ? "
                "WHERE id = ? AND (last_ts IS NULL OR last_ts <= ?)",
                [(ts, kind, num, txt, sid, ts) for sid, (ts, kind, num, txt) in last.items()],
            )
        self._series.update(new_series)
        return len(rows)

    def readings(
        self,
        *,
        device_id: str | None = None,
        quantity: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
    ) -> list[Reading]:
        """Raw readings with ``start <= ts < end``, oldest first; ``limit`` keeps the first ``limit``."""
        where, params = self._series_filter(device_id, quantity)
        if start is not None:
            where.append("r.ts >= ?")
            params.append(start)
        if end is not None:
            where.append("r.ts < ?")
            params.append(end)
        sql = (
            "SELECT s.device_id, s.quantity, r.ts, r.kind, r.num, r.txt "
            "FROM readings r JOIN series s ON s.id = r.series_id"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.ts, r.id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._read("reading readings") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [Reading(d, q, _decode(k, n, t), ts) for d, q, ts, k, n, t in rows]

    @staticmethod
    def _series_filter(device_id: str | None, quantity: str | None) -> tuple[list[str], list[Any]]:
        cond, params = [], []
        if device_id is not None:
            cond.append("device_id = ?")
            params.append(device_id)
        if quantity is not None:
            cond.append("quantity = ?")
            params.append(quantity)
        if not cond:
            return [], []
        return [f"r.series_id IN (SELECT id FROM series WHERE {' AND '.join(cond)})"], params

    def latest(self) -> list[Reading]:
        """The last reading (by ts) of every (device_id, quantity) ever stored, even if pruned from raw."""
        with self._read("reading latest values") as conn:
            rows = conn.execute(
                "SELECT device_id, quantity, last_ts, last_kind, last_num, last_txt FROM series "
                "WHERE last_ts IS NOT NULL ORDER BY device_id, quantity"
            ).fetchall()
        return [Reading(d, q, _decode(k, n, t), ts) for d, q, ts, k, n, t in rows]

    # ---------------------------------------------------------------------------------------------------
    # rollups

    def rollup(self, now: float) -> dict:
        """Roll up every bucket that ended at or before ``now`` and was not rolled yet, and merge late
        readings into buckets already rolled. Idempotent; cheap when there is nothing new.

        Returns ``{"buckets_1m", "buckets_15m"}`` (buckets written by this call, re-rolled ones included),
        ``"late_readings"`` (late readings merged) and the new watermarks ``"watermark_1m"``,
        ``"watermark_15m"`` (every bucket starting before them is rolled; None before the first roll)."""
        close1 = _b1(now)
        close15 = _b15(now)
        wm1, wm15 = self._wm1, self._wm15
        buckets_1m = buckets_15m = late_n = 0
        merge = (
            "ON CONFLICT (series_id, bucket_ts) DO UPDATE SET n = n + excluded.n, "
            "total = total + excluded.total, vmin = min(vmin, excluded.vmin), vmax = max(vmax, excluded.vmax)"
        )
        with self._write("rolling up readings") as conn:
            late_n = conn.execute("SELECT count(*) FROM rollup_late").fetchone()[0]
            if late_n:
                # all late readings are in buckets < wm1 (that is what made them late)
                buckets_1m += conn.execute(
                    "INSERT INTO rollup_1m (series_id, bucket_ts, n, total, vmin, vmax) "
                    f"SELECT series_id, {_SQL_B1} AS b, count(*), sum(num), min(num), max(num) "
                    f"FROM rollup_late WHERE true GROUP BY series_id, b {merge}"
                ).rowcount
                # those whose 15-min bucket is rolled already; the others are rolled from 1-min below
                buckets_15m += conn.execute(
                    "INSERT INTO rollup_15m (series_id, bucket_ts, n, total, vmin, vmax) "
                    f"SELECT series_id, {_SQL_B15} AS b, count(*), sum(num), min(num), max(num) "
                    f"FROM rollup_late WHERE {_SQL_B15} < ? GROUP BY series_id, b {merge}",
                    (wm15,),
                ).rowcount
                conn.execute("DELETE FROM rollup_late")
            if close1 > wm1:
                # the ts range is widened by 1 s so the index does the work; the bucket test is the exact one
                lo = wm1 - 1 if wm1 != _NO_WATERMARK else -math.inf
                buckets_1m += conn.execute(
                    "INSERT OR REPLACE INTO rollup_1m (series_id, bucket_ts, n, total, vmin, vmax) "
                    f"SELECT series_id, {_SQL_B1} AS b, count(*), sum(num), min(num), max(num) "
                    f"FROM readings WHERE ts >= ? AND ts < ? AND num IS NOT NULL AND {_SQL_B1} >= ? "
                    f"AND {_SQL_B1} < ? GROUP BY series_id, b",
                    (lo, close1 + 1, wm1, close1),
                ).rowcount
                self._kv_set(conn, _KV_WM_1M, close1)
            if close15 > wm15:
                buckets_15m += conn.execute(
                    "INSERT OR REPLACE INTO rollup_15m (series_id, bucket_ts, n, total, vmin, vmax) "
                    "SELECT series_id, bucket_ts / 900 * 900 AS b, sum(n), sum(total), min(vmin), max(vmax) "
                    "FROM rollup_1m WHERE bucket_ts >= ? AND bucket_ts < ? GROUP BY series_id, b",
                    (wm15, close15),
                ).rowcount
                self._kv_set(conn, _KV_WM_15M, close15)
        self._wm1 = max(wm1, close1)
        self._wm15 = max(wm15, close15)
        return {
            "buckets_1m": buckets_1m,
            "buckets_15m": buckets_15m,
            "late_readings": late_n,
            "watermark_1m": None if self._wm1 == _NO_WATERMARK else self._wm1,
            "watermark_15m": None if self._wm15 == _NO_WATERMARK else self._wm15,
        }

    def series(
        self, device_id: str, quantity: str, start: float, end: float, resolution: str = "1m"
    ) -> list[tuple[float, float, float, float]]:
        """``(bucket_ts, avg, min, max)`` for buckets starting in ``[start, end)``, oldest first.

        ``"raw"`` gives ``(ts, value, value, value)`` per numeric reading (bools as 0/1, text left out);
        ``"1m"``/``"15m"`` only hold buckets already closed by ``rollup()``."""
        if resolution not in RESOLUTIONS:
            raise ValueError(
                f"resolution must be one of {', '.join(map(repr, RESOLUTIONS))}, got {resolution!r}"
            )
        sid_sql = "(SELECT id FROM series WHERE device_id = ? AND quantity = ?)"
        if resolution == "raw":
            sql = (
                f"SELECT ts, num FROM readings WHERE series_id = {sid_sql} AND ts >= ? AND ts < ? "
                "AND num IS NOT NULL ORDER BY ts, id"
            )
        else:
            table = "rollup_1m" if resolution == "1m" else "rollup_15m"
            sql = (
                f"SELECT bucket_ts, total / n, vmin, vmax FROM {table} WHERE series_id = {sid_sql} "
                "AND bucket_ts >= ? AND bucket_ts < ? ORDER BY bucket_ts"
            )
        with self._read(f"reading {resolution} series") as conn:
            rows = conn.execute(sql, (device_id, quantity, start, end)).fetchall()
        if resolution == "raw":
            return [(ts, v, v, v) for ts, v in rows]
        return [(float(b), avg, lo, hi) for b, avg, lo, hi in rows]

    def prune(self, now: float, *, limit: int | None = None) -> dict:
        """Delete raw readings older than ``raw_retention_days`` and 1-min buckets older than
        ``rollup_1m_retention_days`` (by bucket start), each only once rolled up into the next level.
        15-min buckets are kept. ``limit`` bounds the rows deleted per table in this call (call again while
        the counts equal it). Returns ``{"raw": n, "rollup_1m": n}``."""
        raw_cutoff = now - self.raw_retention_days * _DAY
        m1_cutoff = now - self.rollup_1m_retention_days * _DAY
        lim = -1 if limit is None else int(limit)  # LIMIT -1: no limit
        with self._write("pruning old data") as conn:
            # a raw reading is rolled up when its 1-min bucket is below the 1-min watermark
            raw = conn.execute(
                "DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE ts < ? "
                f"AND {_SQL_B1} < ? ORDER BY ts LIMIT ?)",
                (min(raw_cutoff, self._wm1), self._wm1, lim),
            ).rowcount
            # 1-min buckets < wm15 are rolled into 15-min ones
            m1 = conn.execute(
                "DELETE FROM rollup_1m WHERE (series_id, bucket_ts) IN (SELECT series_id, bucket_ts "
                "FROM rollup_1m WHERE bucket_ts < ? ORDER BY bucket_ts LIMIT ?)",
                (min(m1_cutoff, self._wm15), lim),
            ).rowcount
        return {"raw": raw, "rollup_1m": m1}

    # ---------------------------------------------------------------------------------------------------
    # events

    def add_event(
        self,
        kind: str,
        data: dict,
        *,
        ts: float,
        source: str = "",
        ref: str | None = None,
        durable: bool = True,
    ) -> int:
        """Store an event (DR event, fault, plan change, user action); returns its id. ``durable=False`` for
        what is made again anyway (a plan's summary): no fsync."""
        payload = _dumps(f"event {kind!r} data", data)
        with self._write(f"storing event {kind!r}", durable=durable) as conn:
            cur = conn.execute(
                "INSERT INTO events (ts, kind, source, ref, data) VALUES (?, ?, ?, ?, ?)",
                (ts, kind, source, ref, payload),
            )
            return int(cur.lastrowid)

    def update_event(self, event_id: int, data: dict) -> None:
        """Replace the data of an event. Raises KeyError if there is no such event."""
        payload = _dumps(f"event {event_id} data", data)
        with self._write(f"updating event {event_id}", durable=True) as conn:
            if conn.execute("UPDATE events SET data = ? WHERE id = ?", (payload, event_id)).rowcount == 0:
                raise KeyError(f"no event with id {event_id} in {self.path}")

    def events(
        self,
        *,
        kind: str | None = None,
        since: float | None = None,
        ref: str | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        """Events oldest first (by ts, then id), filtered; ``limit`` keeps the newest ``limit`` of them.
        Each: ``{"id", "ts", "kind", "source", "ref", "data"}``."""
        where, params = [], []
        for cond, value in (("kind = ?", kind), ("ts >= ?", since), ("ref = ?", ref)):
            if value is not None:
                where.append(cond)
                params.append(value)
        sql = "SELECT id, ts, kind, source, ref, data FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._read("reading events") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            {"id": i, "ts": ts, "kind": k, "source": s, "ref": r, "data": json.loads(d)}
            for i, ts, k, s, r, d in reversed(rows)
        ]

    # ---------------------------------------------------------------------------------------------------
    # settings

    def get_setting(self, key: str, default: Any = None) -> Any:
        with self._read(f"reading setting {key!r}") as conn:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: Any, *, ts: float) -> None:
        payload = _dumps(f"setting {key!r}", value)
        with self._write(f"saving setting {key!r}", durable=True) as conn:
            conn.execute(
                "INSERT INTO settings (key, value, ts) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, ts = excluded.ts",
                (key, payload, ts),
            )

    def settings(self) -> dict:
        with self._read("reading settings") as conn:
            rows = conn.execute("SELECT key, value FROM settings ORDER BY key").fetchall()
        return {k: json.loads(v) for k, v in rows}

    # ---------------------------------------------------------------------------------------------------
    # kv: small internal state (watermarks, counters), JSON values; not shown as user settings.
    # Keys starting with "rollup." and "outbox." belong to the store itself.

    def kv_get(self, key: str, default: Any = None) -> Any:
        with self._read(f"reading state {key!r}"):
            value = self._kv_get(key)
        return default if value is None else value

    def kv_set(self, key: str, value: Any, *, durable: bool = True) -> None:
        """``durable=False`` for state that is made again anyway (the latest plan): no fsync."""
        if key.startswith(("rollup.", "outbox.")):
            raise ValueError(f"kv key {key!r} is reserved for the store (prefixes 'rollup.', 'outbox.')")
        _dumps(f"state {key!r}", value)
        with self._write(f"saving state {key!r}", durable=durable) as conn:
            self._kv_set(conn, key, value)

    # ---------------------------------------------------------------------------------------------------
    # outbox

    def outbox_put(self, topic: str, payload: bytes | str, *, ts: float, qos: int = 1) -> int:
        """Queue a message; returns its id. When the outbox is full the oldest messages are dropped
        (and counted in ``dropped_total``). ``payload`` comes back as the type it was given."""
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        if not isinstance(payload, bytes | str):
            raise TypeError(f"outbox payload must be bytes or str, got {type(payload).__name__}")
        dropped = 0
        with self._write(f"queueing a message for {topic!r}") as conn:
            excess = self._outbox_size + 1 - self.outbox_max_rows
            if excess > 0:
                dropped = conn.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
                ).rowcount
                self._kv_set(conn, _KV_OUTBOX_DROPPED, self._outbox_dropped + dropped)
            cur = conn.execute(
                "INSERT INTO outbox (topic, payload, ts, qos) VALUES (?, ?, ?, ?)", (topic, payload, ts, qos)
            )
            msg_id = int(cur.lastrowid)
        if dropped:
            log.warning(
                "%s: outbox full (%d rows), dropped the %d oldest", self.path, self.outbox_max_rows, dropped
            )
        self._outbox_size += 1 - dropped
        self._outbox_dropped += dropped
        return msg_id

    def outbox_peek(self, n: int) -> list[dict]:
        """Up to ``n`` queued messages, oldest first: ``{"id", "topic", "payload", "ts", "qos"}``."""
        with self._read("reading the outbox") as conn:
            rows = conn.execute(
                "SELECT id, topic, payload, ts, qos FROM outbox ORDER BY id LIMIT ?", (int(n),)
            ).fetchall()
        return [{"id": i, "topic": t, "payload": p, "ts": ts, "qos": q} for i, t, p, ts, q in rows]

    def outbox_ack(self, ids: Iterable[int]) -> None:
        """Remove delivered messages; unknown ids (already acked or dropped) are ignored."""
        params = [(int(i),) for i in ids]
        if not params:
            return
        with self._write("acknowledging outbox messages") as conn:
            removed = 0
            for p in params:
                removed += conn.execute("DELETE FROM outbox WHERE id = ?", p).rowcount
        self._outbox_size -= removed

    def outbox_stats(self) -> dict:
        return {
            "size": self._outbox_size,
            "dropped_total": self._outbox_dropped,
            "max_rows": self.outbox_max_rows,
        }
