"""Electricity tariffs: time-of-use periods, seasons, a separate export rate and dynamic price series.

Pure: nothing here does I/O except :meth:`Tariff.load`, which reads one TOML file.

Periods are LOCAL wall-clock times in the tariff's timezone. A period selects calendar days by day type
(``days = "weekdays" | "weekends" | "all"``) and optionally by month (``months``, a season), and covers
``[start, end)`` of each selected day; ``end = "24:00"`` is the end of the day, and ``end < start`` wraps past
midnight: ``23:00``–``06:00`` covers ``[23:00, 24:00)`` and ``[00:00, 06:00)`` *of each selected day* (so a
weekday off-peak period never spills into Saturday morning). Every minute of every day type (weekday,
weekend) in every month must be covered by exactly one period; a gap or an overlap is a :class:`TariffError`.

Across DST changes the periods keep their wall-clock edges: on the 23 h spring-forward day the hour that
does not exist is simply skipped, and on the 25 h fall-back day the repeated hour is priced twice by the same
wall-clock rule. Lookups take POSIX timestamps (UTC seconds).

A :class:`PriceSeries` (day-ahead prices, a utility price signal) overrides the TOU import price (and the
export price, if it has one) from its first ``start_ts`` until its ``end_ts``; outside that window the TOU
applies. While it applies, the period name is ``"dynamic"``.

TOML layout, as a table of the site config::

    [tariff]
    name = "Reference TOU"
    currency = "USD"
    timezone = "America/Los_Angeles"   # optional; defaults to the site's
    export_price_per_kwh = 0.06
    demand_charge_per_kw = 0.0         # per kW of the month's highest 15-min import average
                                       # (used by `hems simulate`)
    [[tariff.periods]]
    name = "peak"
    days = "weekdays"                  # "weekdays" | "weekends" | "all" (default "all")
    start = "16:00"                    # "HH:MM" local time
    end = "21:00"                      # "HH:MM"; "24:00" allowed; end < start wraps past midnight
    import_price_per_kwh = 0.46        # may be negative, never NaN
    # export_price_per_kwh = 0.10      # optional per-period export price (else the tariff-wide one)
    # months = [6, 7, 8, 9]            # optional season (else every month)

A standalone tariff file (``hems simulate --tariff FILE``, :meth:`Tariff.load`) holds either that same
``[tariff]`` table or the same keys at the top level (``[[periods]]`` instead of ``[[tariff.periods]]``).

An optional ``[tariff.dynamic]`` table (``start_ts``, ``import_price_per_kwh``, optional
``export_price_per_kwh`` lists and optional ``end_ts``) holds a fixed price series; it exists mainly so that
:meth:`Tariff.to_dict` round-trips a tariff with a series attached.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import numbers
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dt_time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

__all__ = ["DYNAMIC_PERIOD", "Period", "PriceSeries", "Tariff", "TariffError", "TariffPoint"]

DYNAMIC_PERIOD = "dynamic"
"""Period name reported while a dynamic price series applies."""

DAY_TYPES = ("weekdays", "weekends", "all")
_MINUTES_PER_DAY = 1440
_DAY_S = 86400.0
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAY_TYPE_NAMES = ("weekdays", "weekends")  # index 0, 1 of the lookup table
_TIME_RE = re.compile(r"^(\d{2}):(\d{2})$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")

_TARIFF_KEYS = (
    "currency",
    "demand_charge_per_kw",
    "dynamic",
    "export_price_per_kwh",
    "name",
    "periods",
    "timezone",
)
_PERIOD_KEYS = ("days", "end", "export_price_per_kwh", "import_price_per_kwh", "months", "name", "start")
_DYNAMIC_KEYS = ("end_ts", "export_price_per_kwh", "import_price_per_kwh", "start_ts")

# Offsets are sampled this often when converting many timestamps to local time; DST transitions between
# samples are located to the second by bisection. Two transitions closer together than this would be missed
# (no zone in the tz database does that in the years a home energy system cares about).
_OFFSET_SAMPLE_S = 6 * 3600.0
# next_change scans this far past the last dynamic-price boundary; a non-constant TOU changes within a year.
_NEXT_CHANGE_HORIZON_S = 370 * _DAY_S


class TariffError(ValueError):
    """A bad tariff definition. The message names the key path, the value, and what is allowed."""


# --------------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Period:
    """One time-of-use period: a price for ``[start, end)`` local time on the selected days and months."""

    name: str
    import_price_per_kwh: float
    export_price_per_kwh: float | None  # None -> the tariff-wide export price
    days: str  # "weekdays" | "weekends" | "all"
    start: str  # "HH:MM"
    end: str  # "HH:MM"; "24:00" allowed; end < start wraps past midnight
    months: tuple[int, ...] = ()  # season; () = every month

    def to_dict(self) -> dict:
        d: dict = {
            "name": self.name,
            "days": self.days,
            "start": self.start,
            "end": self.end,
            "import_price_per_kwh": self.import_price_per_kwh,
        }
        if self.export_price_per_kwh is not None:
            d["export_price_per_kwh"] = self.export_price_per_kwh
        if self.months:
            d["months"] = list(self.months)
        return d


@dataclass(frozen=True, slots=True)
class TariffPoint:
    """The tariff at one instant."""

    period: str
    import_price_per_kwh: float
    export_price_per_kwh: float


@dataclass(frozen=True, slots=True, eq=False)
class PriceSeries:
    """Dynamic prices, step-wise constant: ``import_price_per_kwh[i]`` holds from ``start_ts[i]`` until the
    next start, and the last price holds until ``end_ts``; after that (and before ``start_ts[0]``) the TOU
    applies again.

    ``export_price_per_kwh`` None: the TOU export price still applies inside the window.
    ``end_ts`` None: the last step is as long as the one before it (needs at least two steps).
    Prices may be negative, never NaN or infinite. The arrays are copied and made read-only.
    """

    start_ts: np.ndarray
    import_price_per_kwh: np.ndarray
    export_price_per_kwh: np.ndarray | None = None
    end_ts: float | None = None

    def __post_init__(self) -> None:
        _validate_series(self, "dynamic")

    @classmethod
    def from_steps(
        cls,
        start_ts: float,
        step_s: float,
        import_price_per_kwh: Sequence[float] | np.ndarray,
        export_price_per_kwh: Sequence[float] | np.ndarray | None = None,
    ) -> PriceSeries:
        """Evenly spaced prices (e.g. hourly day-ahead) from ``start_ts``, each lasting ``step_s``."""
        imp = np.asarray(import_price_per_kwh, dtype=float)
        if not (isinstance(step_s, numbers.Real) and math.isfinite(step_s) and step_s > 0):
            raise TariffError(f"dynamic.step_s = {step_s!r}: must be a finite number of seconds > 0")
        starts = float(start_ts) + np.arange(imp.size) * float(step_s)
        return cls(starts, imp, export_price_per_kwh, float(start_ts) + imp.size * float(step_s))

    def to_dict(self) -> dict:
        d: dict = {
            "start_ts": self.start_ts.tolist(),
            "import_price_per_kwh": self.import_price_per_kwh.tolist(),
            "end_ts": self.end_ts,
        }
        if self.export_price_per_kwh is not None:
            d["export_price_per_kwh"] = self.export_price_per_kwh.tolist()
        return d

    def __repr__(self) -> str:
        return (
            f"PriceSeries({self.start_ts.size} steps, {float(self.start_ts[0])!r}..{self.end_ts!r}, "
            f"export={'yes' if self.export_price_per_kwh is not None else 'TOU'})"
        )


def _validate_series(s: PriceSeries, path: str) -> None:
    def arr(name: str, value: object) -> np.ndarray:
        try:
            a = np.array(value, dtype=float)  # copy
        except (TypeError, ValueError):
            raise TariffError(f"{path}.{name} = {_short(value)}: must be a list of numbers") from None
        if a.ndim != 1 or a.size == 0:
            raise TariffError(f"{path}.{name}: must be a non-empty 1-D list of numbers, got shape {a.shape}")
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            raise TariffError(f"{path}.{name}[{bad[0]}] = {float(a[bad[0]])!r}: must be a finite number")
        a.setflags(write=False)
        return a

    start = arr("start_ts", s.start_ts)
    imp = arr("import_price_per_kwh", s.import_price_per_kwh)
    if imp.size != start.size:
        raise TariffError(
            f"{path}.import_price_per_kwh: has {imp.size} prices but start_ts has {start.size}; "
            "they must be the same length"
        )
    exp = None
    if s.export_price_per_kwh is not None:
        exp = arr("export_price_per_kwh", s.export_price_per_kwh)
        if exp.size != start.size:
            raise TariffError(
                f"{path}.export_price_per_kwh: has {exp.size} prices but start_ts has {start.size}; "
                "they must be the same length (or leave it out to keep the TOU export price)"
            )
    steps = np.diff(start)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise TariffError(
            f"{path}.start_ts[{i}] = {float(start[i])!r}: must be after start_ts[{i - 1}] = "
            f"{float(start[i - 1])!r} "
            "(strictly increasing)"
        )
    end = s.end_ts
    if end is None:
        if start.size < 2:
            raise TariffError(f"{path}.end_ts: required when the series has a single step")
        end = float(start[-1] + steps[-1])
    elif isinstance(end, bool) or not isinstance(end, numbers.Real) or not math.isfinite(end):
        raise TariffError(f"{path}.end_ts = {end!r}: must be a finite POSIX timestamp")
    elif end <= start[-1]:
        raise TariffError(f"{path}.end_ts = {end!r}: must be after the last start_ts ({float(start[-1])!r})")
    object.__setattr__(s, "start_ts", start)
    object.__setattr__(s, "import_price_per_kwh", imp)
    object.__setattr__(s, "export_price_per_kwh", exp)
    object.__setattr__(s, "end_ts", float(end))


# --------------------------------------------------------------------------------------------- tariff


class Tariff:
    """A TOU tariff (with seasons and a separate export rate), optionally overridden by dynamic prices.

    Treat instances as immutable: :meth:`with_dynamic` returns a new one.
    """

    __slots__ = (
        "_constant",
        "_exp",
        "_imp",
        "_names",
        "_table",
        "_tz",
        "currency",
        "demand_charge_per_kw",
        "dynamic",
        "export_price_per_kwh",
        "name",
        "periods",
        "timezone",
    )

    def __init__(
        self,
        periods: Iterable[Period],
        *,
        timezone: str,
        export_price_per_kwh: float,
        currency: str = "USD",
        demand_charge_per_kw: float = 0.0,
        name: str = "",
        dynamic: PriceSeries | None = None,
        _path: str = "tariff",
    ) -> None:
        p = _path
        if not isinstance(name, str):
            raise TariffError(f"{_key(p, 'name')} = {name!r}: must be a string")
        self.name = name
        if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
            raise TariffError(
                f"{_key(p, 'currency')} = {currency!r}: must be a 3-letter ISO 4217 code like 'USD'"
            )
        self.currency = currency
        self.timezone = timezone
        self._tz = _zone(timezone, _key(p, "timezone"))
        self.export_price_per_kwh = _price(export_price_per_kwh, _key(p, "export_price_per_kwh"))
        dc = _price(demand_charge_per_kw, _key(p, "demand_charge_per_kw"))
        if dc < 0:
            raise TariffError(f"{_key(p, 'demand_charge_per_kw')} = {dc!r}: must be >= 0")
        self.demand_charge_per_kw = dc
        if dynamic is not None and not isinstance(dynamic, PriceSeries):
            raise TariffError(f"{_key(p, 'dynamic')} = {_short(dynamic)}: must be a PriceSeries or None")
        self.dynamic = dynamic

        if isinstance(periods, (str, bytes, Mapping)) or not isinstance(periods, Iterable):
            raise TariffError(f"{_key(p, 'periods')} = {_short(periods)}: must be a list of periods")
        checked = tuple(_check_period(per, f"{_key(p, 'periods')}[{i}]") for i, per in enumerate(periods))
        if not checked:
            raise TariffError(f"{_key(p, 'periods')}: is empty; at least one period is needed")
        self.periods = checked
        self._table = _build_table(checked, _key(p, "periods"))
        # index len(periods) is the extra "dynamic" slot: its prices are filled in per lookup
        self._names = np.array([per.name for per in checked] + [DYNAMIC_PERIOD], dtype=object)
        self._imp = np.array([per.import_price_per_kwh for per in checked] + [math.nan])
        self._exp = np.array(
            [
                self.export_price_per_kwh if per.export_price_per_kwh is None else per.export_price_per_kwh
                for per in checked
            ]
            + [math.nan]
        )
        used = np.unique(self._table)
        self._constant = len({(self._names[i], self._imp[i], self._exp[i]) for i in used}) == 1

    # ------------------------------------------------------------------ construction

    @classmethod
    def default(cls, timezone: str = "America/Los_Angeles") -> Tariff:
        """The reference home's TOU tariff (USD):

        ============== ========== ============= ============
        period         days       local time    import $/kWh
        ============== ========== ============= ============
        off_peak       weekdays   23:00–06:00   0.14
        shoulder       weekdays   06:00–16:00   0.24
        peak           weekdays   16:00–21:00   0.46
        shoulder       weekdays   21:00–23:00   0.24
        super_off_peak weekends   all day       0.11
        ============== ========== ============= ============

        Export is credited at 0.06 $/kWh at all times; no demand charge.
        """
        periods = [
            Period("off_peak", 0.14, None, "weekdays", "23:00", "06:00"),
            Period("shoulder", 0.24, None, "weekdays", "06:00", "16:00"),
            Period("peak", 0.46, None, "weekdays", "16:00", "21:00"),
            Period("shoulder", 0.24, None, "weekdays", "21:00", "23:00"),
            Period("super_off_peak", 0.11, None, "weekends", "00:00", "24:00"),
        ]
        return cls(
            periods, timezone=timezone, export_price_per_kwh=0.06, currency="USD", name="Reference TOU"
        )

    @classmethod
    def from_dict(cls, d: Mapping, *, path: str = "tariff", timezone: str | None = None) -> Tariff:
        """Build from the ``[tariff]`` TOML table. ``timezone`` is the site's, used when the table has none.

        Errors name the key path below ``path`` (``tariff.periods[2].start``).
        """
        if not isinstance(d, Mapping):
            raise TariffError(f"{path or 'tariff'} = {_short(d)}: must be a table")
        _no_unknown_keys(d, _TARIFF_KEYS, path)
        tz = d.get("timezone", timezone)
        if tz is None:
            raise TariffError(
                f"{_key(path, 'timezone')}: missing; set it to an IANA zone name like 'America/Los_Angeles' "
                "(or give the site's timezone)"
            )
        if "export_price_per_kwh" not in d:
            raise TariffError(
                f"{_key(path, 'export_price_per_kwh')}: missing; the export credit (currency/kWh) is required"
            )
        raw_periods = d.get("periods")
        if raw_periods is None:
            raise TariffError(f"{_key(path, 'periods')}: missing; add at least one [[periods]] table")
        if isinstance(raw_periods, (str, bytes, Mapping)) or not isinstance(raw_periods, Sequence):
            raise TariffError(f"{_key(path, 'periods')} = {_short(raw_periods)}: must be an array of tables")
        periods = [_period_from_dict(pd, f"{_key(path, 'periods')}[{i}]") for i, pd in enumerate(raw_periods)]
        dynamic = None
        if "dynamic" in d:
            dynamic = _series_from_dict(d["dynamic"], _key(path, "dynamic"))
        return cls(
            periods,
            timezone=tz,
            export_price_per_kwh=d["export_price_per_kwh"],
            currency=d.get("currency", "USD"),
            demand_charge_per_kw=d.get("demand_charge_per_kw", 0.0),
            name=d.get("name", ""),
            dynamic=dynamic,
            _path=path,
        )

    @classmethod
    def load(cls, file: str | Path, *, timezone: str | None = None) -> Tariff:
        """Read a standalone TOML tariff file: either a ``[tariff]`` table or the same keys at the top level.

        ``timezone`` (the site's) is used when the file has none. Errors start with the file name.
        """
        file = Path(file)
        with file.open("rb") as f:
            try:
                doc = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise TariffError(f"{file}: invalid TOML: {e}") from None
        try:
            if "tariff" in doc:
                others = sorted(k for k in doc if k != "tariff")
                if others:
                    raise TariffError(
                        f"{others[0]}: unknown top-level key beside [tariff]; a tariff file holds either "
                        f"a [tariff] table or the tariff keys at the top level ({', '.join(_TARIFF_KEYS)})"
                    )
                return cls.from_dict(doc["tariff"], path="tariff", timezone=timezone)
            return cls.from_dict(doc, path="", timezone=timezone)
        except TariffError as e:
            raise TariffError(f"{file}: {e}") from None

    def with_dynamic(self, series: PriceSeries | None) -> Tariff:
        """The same tariff with ``series`` as its dynamic prices (None: TOU only)."""
        return Tariff(
            self.periods,
            timezone=self.timezone,
            export_price_per_kwh=self.export_price_per_kwh,
            currency=self.currency,
            demand_charge_per_kw=self.demand_charge_per_kw,
            name=self.name,
            dynamic=series,
        )

    def to_dict(self) -> dict:
        """The ``[tariff]`` table (TOML-serialisable); ``Tariff.from_dict(t.to_dict()) == t``."""
        d: dict = {
            "name": self.name,
            "currency": self.currency,
            "timezone": self.timezone,
            "export_price_per_kwh": self.export_price_per_kwh,
            "demand_charge_per_kw": self.demand_charge_per_kw,
            "periods": [p.to_dict() for p in self.periods],
        }
        if self.dynamic is not None:
            d["dynamic"] = self.dynamic.to_dict()
        return d

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tariff):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Tariff(name={self.name!r}, timezone={self.timezone!r}, {len(self.periods)} periods, "
            f"export={self.export_price_per_kwh} {self.currency}/kWh, dynamic={self.dynamic!r})"
        )

    # ------------------------------------------------------------------ lookups

    def at(self, ts: float) -> TariffPoint:
        """The period and prices in force at POSIX time ``ts``."""
        ts = _finite_ts(ts)
        dt = datetime.fromtimestamp(math.floor(ts), self._tz)
        i = int(self._table[int(dt.weekday() >= 5), dt.month - 1, dt.hour * 60 + dt.minute])
        period, imp, exp = str(self._names[i]), float(self._imp[i]), float(self._exp[i])
        s = self.dynamic
        if s is not None and s.start_ts[0] <= ts < s.end_ts:
            j = bisect.bisect_right(s.start_ts, ts) - 1
            period, imp = DYNAMIC_PERIOD, float(s.import_price_per_kwh[j])
            if s.export_price_per_kwh is not None:
                exp = float(s.export_price_per_kwh[j])
        return TariffPoint(period, imp, exp)

    def prices(
        self, start_ts: float, n_steps: int, step_s: float
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Import price, export price and period name at the START of each of ``n_steps`` steps of
        ``step_s`` seconds from ``start_ts``; vectorised (a year at 5 min takes milliseconds)."""
        if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 0:
            raise ValueError(f"n_steps = {n_steps!r}: must be an integer >= 0")
        if not (isinstance(step_s, numbers.Real) and math.isfinite(step_s) and step_s > 0):
            raise ValueError(f"step_s = {step_s!r}: must be a finite number of seconds > 0")
        ts = _finite_ts(start_ts) + np.arange(int(n_steps), dtype=float) * float(step_s)
        return self.prices_at(ts)

    def prices_at(self, ts: np.ndarray | Sequence[float]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Like :meth:`prices` for arbitrary timestamps (any order): import, export, period name each."""
        imp, exp, codes = self._lookup(np.asarray(ts, dtype=float))
        return imp, exp, self._names[codes].tolist()

    def next_change(self, ts: float) -> float:
        """The first instant after ``ts`` at which :meth:`at` gives a different period or price
        (a TOU edge, a season or day-type change, a DST jump, or a dynamic price step); ``math.inf`` if none.
        """
        ts = _finite_ts(ts)
        cur = self.at(ts)
        s = self.dynamic
        bounds = np.empty(0)
        if s is not None:
            bounds = np.append(s.start_ts, s.end_ts)
            bounds = bounds[bounds > ts]
        last_bound = float(bounds[-1]) if bounds.size else ts
        horizon = max(ts, last_bound) + _NEXT_CHANGE_HORIZON_S
        t0, chunk = ts, 2 * _DAY_S
        while t0 < horizon:
            if self._constant and t0 >= last_bound:
                return math.inf
            t1 = min(t0 + chunk, horizon)
            # TOU edges fall on local minute edges, i.e. UTC minute edges for whole-minute offsets;
            # an odd-offset edge between grid points is found by the bisection below
            grid = np.arange(math.floor(t0 / 60.0) * 60.0 + 60.0, t1 + 60.0, 60.0)
            in_chunk = bounds[(bounds > t0) & (bounds <= grid[-1])]
            if in_chunk.size:
                grid = np.union1d(grid, in_chunk)
            imp, exp, codes = self._lookup(grid)
            differs = (self._names[codes] != cur.period) | (imp != cur.import_price_per_kwh)
            differs |= exp != cur.export_price_per_kwh
            if differs.any():
                k = int(np.argmax(differs))
                hi = float(grid[k])
                lo = float(grid[k - 1]) if k > 0 else ts
                while hi - lo > 1.0:  # to the second
                    mid = float(math.floor((lo + hi) / 2.0))
                    if mid <= lo:
                        break
                    if self.at(mid) == cur:
                        lo = mid
                    else:
                        hi = mid
                return hi
            t0 = float(grid[-1])
            chunk = 31 * _DAY_S
        return math.inf

    def _lookup(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised: import, export and an index into ``self._names`` for each timestamp."""
        ts = np.asarray(ts, dtype=float)
        if ts.size and not np.isfinite(ts).all():
            raise ValueError("timestamps must be finite")
        whole = np.floor(ts)
        local = whole + _utc_offsets(self._tz, whole)
        day = np.floor(local / _DAY_S)
        minute = ((local - day * _DAY_S) // 60.0).astype(np.intp)
        np.clip(minute, 0, _MINUTES_PER_DAY - 1, out=minute)
        day_i = day.astype(np.int64)
        weekend = ((day_i + 3) % 7 >= 5).astype(np.intp)  # 1970-01-01 was a Thursday (weekday 3)
        month0 = day_i.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
        codes = self._table[weekend, month0, minute].astype(np.intp)
        imp = self._imp[codes]
        exp = self._exp[codes]
        s = self.dynamic
        if s is not None:
            j = np.searchsorted(s.start_ts, ts, side="right") - 1
            inside = (j >= 0) & (ts < s.end_ts)
            if inside.any():
                ji = j[inside]
                imp[inside] = s.import_price_per_kwh[ji]
                if s.export_price_per_kwh is not None:
                    exp[inside] = s.export_price_per_kwh[ji]
                codes[inside] = len(self.periods)
        return imp, exp, codes


# --------------------------------------------------------------------------------------------- helpers


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _short(value: object, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _no_unknown_keys(d: Mapping, allowed: Sequence[str], path: str) -> None:
    unknown = [k for k in d if k not in allowed]
    if unknown:
        where = path or "top level"
        raise TariffError(
            f"{_key(path, str(unknown[0]))}: unknown key {unknown[0]!r} in {where}; "
            f"allowed: {', '.join(allowed)}"
        )


def _finite_ts(ts: object) -> float:
    if isinstance(ts, bool) or not isinstance(ts, numbers.Real) or not math.isfinite(ts):
        raise ValueError(f"timestamp {ts!r}: must be a finite POSIX time in seconds")
    return float(ts)


def _price(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TariffError(f"{path} = {_short(value)}: must be a number (currency per kWh; negative allowed)")
    v = float(value)
    if not math.isfinite(v):
        raise TariffError(f"{path} = {value!r}: must be a finite number, not NaN or infinite")
    return v


def _zone(name: object, path: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise TariffError(f"{path} = {name!r}: must be an IANA zone name like 'America/Los_Angeles'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TariffError(
            f"{path} = {name!r}: unknown time zone; use an IANA zone name like 'America/Los_Angeles'"
        ) from None


def _minutes(value: object, path: str, *, is_end: bool) -> int:
    allowed = "'HH:MM' from 00:00 to 24:00" if is_end else "'HH:MM' from 00:00 to 23:59"
    m = _TIME_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise TariffError(f"{path} = {_short(value)}: must be a local time {allowed}")
    hh, mm = int(m.group(1)), int(m.group(2))
    total = hh * 60 + mm
    if mm > 59 or total > _MINUTES_PER_DAY or (total == _MINUTES_PER_DAY and not is_end):
        raise TariffError(f"{path} = {value!r}: not a valid time; must be {allowed}")
    return total


def _check_period(p: object, path: str) -> Period:
    """Validate one period; returns it normalised (months as a sorted tuple, prices as float)."""
    if not isinstance(p, Period):
        raise TariffError(f"{path} = {_short(p)}: must be a Period")
    if not isinstance(p.name, str) or not p.name.strip():
        raise TariffError(f"{path}.name = {p.name!r}: must be a non-empty string")
    imp = _price(p.import_price_per_kwh, f"{path}.import_price_per_kwh")
    exp = (
        None
        if p.export_price_per_kwh is None
        else _price(p.export_price_per_kwh, f"{path}.export_price_per_kwh")
    )
    if p.days not in DAY_TYPES:
        raise TariffError(f"{path}.days = {_short(p.days)}: must be one of {', '.join(map(repr, DAY_TYPES))}")
    start = _minutes(p.start, f"{path}.start", is_end=False)
    end = _minutes(p.end, f"{path}.end", is_end=True)
    if start == end:
        raise TariffError(
            f'{path}.end = {p.end!r}: equals start; a period must not be empty (use start = "00:00", '
            'end = "24:00" for the whole day)'
        )
    months = p.months
    if isinstance(months, (str, bytes)) or not isinstance(months, Iterable):
        raise TariffError(f"{path}.months = {_short(months)}: must be a list of month numbers 1-12")
    months = tuple(months)
    for k, mo in enumerate(months):
        if isinstance(mo, bool) or not isinstance(mo, numbers.Integral) or not 1 <= mo <= 12:
            raise TariffError(f"{path}.months[{k}] = {mo!r}: must be a month number from 1 to 12")
    if len(set(months)) != len(months):
        raise TariffError(f"{path}.months = {list(months)!r}: lists a month twice")
    return dataclasses.replace(
        p, import_price_per_kwh=imp, export_price_per_kwh=exp, months=tuple(sorted(int(m) for m in months))
    )


def _period_mask(p: Period) -> np.ndarray:
    """bool[2 day types, 12 months, 1440 minutes]: where the (validated) period applies."""
    mask = np.zeros((2, 12, _MINUTES_PER_DAY), dtype=bool)
    start = _minutes(p.start, "", is_end=False)
    end = _minutes(p.end, "", is_end=True)
    day_rows = {"weekdays": [0], "weekends": [1], "all": [0, 1]}[p.days]
    month_rows = [m - 1 for m in p.months] if p.months else list(range(12))
    minutes = np.zeros(_MINUTES_PER_DAY, dtype=bool)
    if end > start:
        minutes[start:end] = True
    else:  # wraps past midnight
        minutes[start:] = True
        minutes[:end] = True
    for d in day_rows:
        mask[d, month_rows, :] = minutes
    return mask


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _months_text(months: Iterable[int]) -> str:
    months = sorted(months)
    if len(months) == 12:
        return "every month"
    return ", ".join(_MONTH_ABBR[m - 1] for m in months)


def _describe(i: int, p: Period, path: str) -> str:
    return f"{path}[{i}] {p.name!r} ({p.days} {p.start}–{p.end})"


def _build_table(periods: Sequence[Period], path: str) -> np.ndarray:
    """int16[2, 12, 1440]: the index of the one period covering each (day type, month, minute)."""
    masks = np.stack([_period_mask(p) for p in periods])
    count = masks.sum(axis=0)
    rule = "every minute of weekdays and weekends, in every month, must be covered by exactly one period"
    if (count == 0).any():
        d, m, minute = (int(x) for x in np.argwhere(count == 0)[0])
        row = count[d, m]
        end = minute
        while end < _MINUTES_PER_DAY and row[end] == 0:
            end += 1
        months = np.flatnonzero((count[d, :, minute:end] == 0).all(axis=1)) + 1
        around = []
        if minute > 0:
            around += [
                f"after {_describe(i, periods[i], path)}" for i in np.flatnonzero(masks[:, d, m, minute - 1])
            ]
        if end < _MINUTES_PER_DAY:
            around += [
                f"before {_describe(i, periods[i], path)}" for i in np.flatnonzero(masks[:, d, m, end])
            ]
        ctx = f" ({'; '.join(around)})" if around else ""
        raise TariffError(
            f"{path}: gap on {_DAY_TYPE_NAMES[d]} in {_months_text(months)} from {_hhmm(minute)} to "
            f"{_hhmm(end)}: no period covers it{ctx}; {rule}"
        )
    if (count > 1).any():
        d, m, minute = (int(x) for x in np.argwhere(count > 1)[0])
        who = masks[:, d, m, minute]
        end = minute
        while end < _MINUTES_PER_DAY and (masks[:, d, m, end] == who).all():
            end += 1
        months = [mo + 1 for mo in range(12) if (masks[:, d, mo, minute:end] == who[:, None]).all()]
        involved = " and ".join(_describe(i, periods[i], path) for i in np.flatnonzero(who))
        raise TariffError(
            f"{path}: overlap on {_DAY_TYPE_NAMES[d]} in {_months_text(months)} from {_hhmm(minute)} to "
            f"{_hhmm(end)}: covered by {involved}; {rule}"
        )
    return np.argmax(masks, axis=0).astype(np.int16)


def _period_from_dict(pd: object, path: str) -> Period:
    if not isinstance(pd, Mapping):
        raise TariffError(f"{path} = {_short(pd)}: must be a table with keys {', '.join(_PERIOD_KEYS)}")
    _no_unknown_keys(pd, _PERIOD_KEYS, path)
    for req in ("name", "start", "end", "import_price_per_kwh"):
        if req not in pd:
            raise TariffError(
                f"{path}.{req}: missing (required); a period needs name, start, end, import_price_per_kwh"
            )

    def time_text(key: str) -> object:
        v = pd[key]
        if isinstance(v, dt_time):  # a TOML local time: start = 16:00:00
            if v.second or v.microsecond or v.tzinfo is not None:
                raise TariffError(f"{path}.{key} = {v.isoformat()}: must be whole minutes 'HH:MM'")
            return v.strftime("%H:%M")
        return v

    months = pd.get("months", ())
    if isinstance(months, (str, bytes)) or not isinstance(months, Sequence):
        raise TariffError(f"{path}.months = {_short(months)}: must be a list of month numbers 1-12")
    return Period(
        name=pd["name"],
        import_price_per_kwh=pd["import_price_per_kwh"],
        export_price_per_kwh=pd.get("export_price_per_kwh"),
        days=pd.get("days", "all"),
        start=time_text("start"),  # type: ignore[arg-type]
        end=time_text("end"),  # type: ignore[arg-type]
        months=tuple(months),
    )


def _series_from_dict(dd: object, path: str) -> PriceSeries:
    if not isinstance(dd, Mapping):
        raise TariffError(f"{path} = {_short(dd)}: must be a table with keys {', '.join(_DYNAMIC_KEYS)}")
    _no_unknown_keys(dd, _DYNAMIC_KEYS, path)
    for req in ("start_ts", "import_price_per_kwh"):
        if req not in dd:
            raise TariffError(f"{path}.{req}: missing (required)")
    s = object.__new__(PriceSeries)
    for f in dataclasses.fields(PriceSeries):
        object.__setattr__(s, f.name, dd.get(f.name))
    _validate_series(s, path)  # with the right key path
    return s


def _utc_offsets(tz: ZoneInfo, ts: np.ndarray) -> np.ndarray:
    """UTC offset in seconds (local = ts + offset) of each POSIX time, vectorised.

    Samples the zone's offset every few hours over [min, max] and bisects each change to the second
    (tz database transitions are at whole seconds), then maps every timestamp by binary search.
    """
    if ts.size == 0:
        return np.zeros(0)
    lo, hi = float(ts.min()), float(ts.max())

    def off(t: float) -> float:
        return datetime.fromtimestamp(t, tz).utcoffset().total_seconds()  # type: ignore[union-attr]

    samples = [*np.arange(lo, hi, _OFFSET_SAMPLE_S).tolist(), hi]
    offs = [off(t) for t in samples]
    bounds: list[float] = []
    values = [offs[0]]
    for j in range(len(samples) - 1):
        if offs[j] == offs[j + 1]:
            continue
        a, b = math.floor(samples[j]), math.ceil(samples[j + 1])
        oa = off(a)
        while b - a > 1:
            mid = (a + b) // 2
            if off(mid) == oa:
                a = mid
            else:
                b = mid
        bounds.append(float(b))
        values.append(off(b))
    if not bounds:
        return np.full(ts.shape, offs[0])
    return np.asarray(values)[np.searchsorted(np.asarray(bounds), ts, side="right")]
