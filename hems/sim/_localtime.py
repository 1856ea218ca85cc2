"""Vectorised conversions between POSIX seconds and a time zone's local wall-clock time.

"Local seconds" are wall-clock seconds counted from 1970-01-01 00:00 *local*, so that
``local_s // 86400`` is the local civil day (days since 1970-01-01) and ``local_s % 86400``
the wall-clock time of day. On a DST day the civil day is 23 h or 25 h of real time long.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

DAY_S = 86400.0


@lru_cache(maxsize=16)
def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError for malformed keys
        raise ValueError(
            f"site.timezone: unknown time zone {tz!r} (use an IANA name like 'America/Los_Angeles')"
        ) from exc


def _to_index(ts: np.ndarray) -> pd.DatetimeIndex:
    ms = np.round(np.asarray(ts, dtype=float) * 1000.0).astype(np.int64)
    return pd.DatetimeIndex(ms.astype("datetime64[ms]")).tz_localize("UTC")


def utc_index(ts: np.ndarray) -> pd.DatetimeIndex:
    """A tz-aware (UTC) DatetimeIndex for POSIX seconds (millisecond resolution)."""
    return _to_index(ts)


def local_seconds(ts: np.ndarray, tz: str) -> np.ndarray:
    """POSIX seconds -> local wall-clock seconds (``ts`` + the zone's UTC offset at ``ts``)."""
    ts = np.asarray(ts, dtype=float)
    if ts.size == 0:
        return ts.copy()
    idx = _to_index(ts)
    local = idx.tz_convert(zone(tz)).tz_localize(None).as_unit("ms").asi8
    offset_s = (local - idx.as_unit("ms").asi8) / 1000.0
    return ts + offset_s


def local_seconds_scalar(ts: float, tz: str) -> float:
    off = datetime.fromtimestamp(ts, zone(tz)).utcoffset()
    return ts + (off.total_seconds() if off is not None else 0.0)


def to_posix(local_s: np.ndarray, tz: str) -> np.ndarray:
    """Local wall-clock seconds -> POSIX seconds.

    A wall time skipped by the spring-forward jump is shifted forward past the gap; an ambiguous
    wall time (the repeated hour in autumn) is taken at its first occurrence (daylight time).
    """
    local_s = np.asarray(local_s, dtype=float)
    if local_s.size == 0:
        return local_s.copy()
    ms = np.round(local_s * 1000.0).astype(np.int64)
    naive = pd.DatetimeIndex(ms.astype("datetime64[ms]"))
    aware = naive.tz_localize(
        zone(tz), ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward"
    )
    return aware.as_unit("ms").asi8 / 1000.0 + (local_s - ms / 1000.0)


def civil_midnights(days: np.ndarray, tz: str) -> np.ndarray:
    """POSIX seconds of local midnight starting each civil day (days since 1970-01-01 local)."""
    return to_posix(np.asarray(days, dtype=float) * DAY_S, tz)
