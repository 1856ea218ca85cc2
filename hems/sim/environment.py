"""Exogenous inputs of the simulated home: PV availability, outdoor temperature, base load, hot-water
draws and the EV's trips.

Everything is computed vectorised over whole ranges and is deterministic given the seed. Each day's
random draws come from their own seeded stream (weather by solar day, household behaviour by local
civil day), so a day looks the same whichever window or resolution it is asked in.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from hems.home import HomeParams
from hems.sim import pv as pvmodel
from hems.sim._localtime import DAY_S, civil_midnights, local_seconds, local_seconds_scalar, to_posix
from hems.sim.weather import SACRAMENTO, Climate, SyntheticWeather, WeatherSeries, year_fraction

# Continuous quantities (PV, temperature, base-load shape) are averaged over sub-samples at most this
# far apart, so a step's value is its mean whatever the step length.
MAX_SUBSAMPLE_S = 300.0
CACHE_SLOT_S = 60.0  # resolution of the per-day cache behind Environment.at()
CACHE_DAYS = 4

_SEED_OFFSET = 1_000_000
_STREAM_LOAD = 21
_STREAM_APPLIANCES = 22
_STREAM_HOT_WATER = 23
_STREAM_EV = 24

# Base-load shape by local hour (hour-centred values), weekday and weekend. Normalised below so that
# a weekday is 0.96 and a weekend day 1.10 of the mean day (5 x 0.96 + 2 x 1.10 = 7).
_WEEKDAY_SHAPE = np.array(
    [
        *(0.55, 0.5, 0.48, 0.47, 0.48, 0.6, 0.95, 1.25, 1.1, 0.85, 0.75, 0.72),  # 00-11 h
        *(0.75, 0.72, 0.7, 0.78, 0.95, 1.35, 1.65, 1.7, 1.6, 1.4, 1.05, 0.75),  # 12-23 h
    ]
)
_WEEKEND_SHAPE = np.array(
    [
        *(0.6, 0.52, 0.48, 0.47, 0.47, 0.5, 0.6, 0.85, 1.15, 1.25, 1.15, 1.1),
        *(1.1, 1.05, 1.0, 1.0, 1.1, 1.4, 1.6, 1.65, 1.55, 1.35, 1.05, 0.78),
    ]
)
_WEEKDAY_SHAPE = _WEEKDAY_SHAPE / _WEEKDAY_SHAPE.mean() * 0.96
_WEEKEND_SHAPE = _WEEKEND_SHAPE / _WEEKEND_SHAPE.mean() * 1.10
_SEASON_AMPLITUDE = 0.12  # lighting and indoor time: +12 % mid-winter, -12 % mid-summer
_NOISE_NODE_S = 900.0
_NOISE_NODES = 101  # covers a 25 h day

# Appliance cycles on top of the smooth shape: (expected cycles per day, power W, duration min range,
# start window weekday h, start window weekend h).
_APPLIANCES = (
    (0.6, 1200.0, (60.0, 90.0), (19.0, 22.5), (13.0, 22.0)),  # dishwasher
    (0.35, 500.0, (45.0, 70.0), (17.0, 21.0), (9.0, 17.0)),  # washing machine
    (0.3, 2800.0, (40.0, 60.0), (18.0, 22.0), (10.0, 18.0)),  # dryer
    (0.5, 2200.0, (30.0, 60.0), (17.0, 19.5), (12.0, 19.0)),  # oven / cooktop
    (2.5, 1200.0, (2.0, 6.0), (6.5, 21.0), (7.5, 21.0)),  # microwave / kettle
)
_APPLIANCE_WH_PER_DAY = sum(n * p * (d[0] + d[1]) / 2 / 60 for n, p, d, _, _ in _APPLIANCES)
_APPLIANCE_MAX_SHARE = 0.3

# EV behaviour
_EV_DEPART_JITTER_S = (360.0, 1200.0)  # (sd, clip)
_EV_ARRIVE_JITTER_S = (720.0, 2700.0)
_EV_ENERGY_SPREAD = 0.3  # weekday trip energy: daily_energy_wh x U(0.7, 1.3)
_EV_WEEKEND_TRIP_P = 0.55
_EV_WEEKEND_ENERGY = (0.15, 0.6)  # x daily_energy_wh


@dataclass(frozen=True, slots=True)
class EnvSeries:
    """Exogenous inputs, one value per step; all arrays have the same length."""

    ts: np.ndarray  # POSIX seconds at the START of each step
    step_s: float
    pv_available_w: np.ndarray  # AC power the PV array could produce (after inverter clipping), >= 0
    outdoor_temp_c: np.ndarray
    base_load_w: np.ndarray  # household base load (no HVAC, EV or water heater), mean over the step
    hot_water_l: np.ndarray  # litres of hot water drawn during the step
    ev_home: np.ndarray  # bool: the EV is parked at home (plugged) during the step
    ev_trip_wh: np.ndarray  # energy used on a trip that ends (arrives home) at the start of the step

    def __len__(self) -> int:
        return len(self.ts)

    def sample(self, i: int) -> EnvSample:
        return EnvSample(
            ts=float(self.ts[i]),
            step_s=float(self.step_s),
            pv_available_w=float(self.pv_available_w[i]),
            outdoor_temp_c=float(self.outdoor_temp_c[i]),
            base_load_w=float(self.base_load_w[i]),
            hot_water_l=float(self.hot_water_l[i]),
            ev_home=bool(self.ev_home[i]),
            ev_trip_wh=float(self.ev_trip_wh[i]),
        )


@dataclass(frozen=True, slots=True)
class EnvSample:
    """The same quantities as ``EnvSeries`` for one step (or one cache slot)."""

    ts: float
    step_s: float
    pv_available_w: float
    outdoor_temp_c: float
    base_load_w: float
    hot_water_l: float
    ev_home: bool
    ev_trip_wh: float


@dataclass(frozen=True, slots=True)
class Trip:
    depart_ts: float
    arrive_ts: float
    energy_wh: float


@dataclass(frozen=True, slots=True)
class _DayPlan:
    """One civil day's household behaviour, in local wall-clock seconds of that day."""

    load_factor: float
    load_noise: np.ndarray  # multiplicative, _NOISE_NODES values every _NOISE_NODE_S of elapsed time
    appliances: np.ndarray  # (n, 3): start wall s, duration s, power W
    hot_water: np.ndarray  # (n, 3): start wall s, duration s, litres
    trips: np.ndarray  # (n, 3): depart wall s, arrive wall s (may exceed 86400), energy Wh


def _hhmm(value: str, key: str) -> float:
    try:
        hh, mm = value.split(":")
        h, m = int(hh), int(mm)
        if not (0 <= h < 24 and 0 <= m < 60):
            raise ValueError
    except ValueError:
        raise ValueError(f"{key}: expected local time 'HH:MM', got {value!r}") from None
    return h * 3600.0 + m * 60.0


def _integrate(
    starts: np.ndarray, durations: np.ndarray, amounts: np.ndarray, edges: np.ndarray
) -> np.ndarray:
    """Integral, over each [edges[k], edges[k+1]), of rectangular events spreading ``amounts``
    uniformly over [start, start + duration)."""
    out_len = len(edges) - 1
    if len(starts) == 0 or out_len <= 0:
        return np.zeros(max(out_len, 0))
    d = np.maximum(durations, 1e-9)
    rate = amounts / d
    bp = np.concatenate([starts, starts + d])
    dr = np.concatenate([rate, -rate])
    order = np.argsort(bp, kind="stable")
    bp, dr = bp[order], dr[order]
    rate_after = np.cumsum(dr)
    cum = np.concatenate([[0.0], np.cumsum(rate_after[:-1] * np.diff(bp))])
    out = np.diff(np.interp(edges, bp, cum))
    out[out < 1e-9 * max(float(cum[-1]), 1.0)] = 0.0  # rounding of the cumulative sum
    return out


class Environment:
    """The world outside the home's control, for one home and one seed."""

    def __init__(
        self,
        params: HomeParams,
        seed: int = 1,
        weather: WeatherSeries | None = None,
        climate: Climate = SACRAMENTO,
    ) -> None:
        self.params = params
        self.seed = int(seed)
        self.climate = climate
        self.weather = weather
        self._tz = params.site.timezone
        local_seconds_scalar(0.0, self._tz)  # validates the zone name early
        self._synthetic = SyntheticWeather(params.site, climate, self.seed)
        self._depart_s = _hhmm(params.ev.departure_time, "ev.departure_time")
        self._arrive_s = _hhmm(params.ev.arrival_time, "ev.arrival_time")
        e = params.load.daily_energy_wh
        self._appliance_scale = min(1.0, _APPLIANCE_MAX_SHARE * e / _APPLIANCE_WH_PER_DAY) if e > 0 else 0.0
        self._smooth_load_w = max(0.0, e - self._appliance_scale * _APPLIANCE_WH_PER_DAY) / 24.0
        self._plans: dict[int, _DayPlan] = {}
        self._days: OrderedDict[int, tuple[float, EnvSeries]] = OrderedDict()

    # -- public API ------------------------------------------------------------------------------
    def series(self, start_ts: float, n_steps: int, step_s: float) -> EnvSeries:
        """Inputs for ``n_steps`` steps of ``step_s`` seconds from ``start_ts`` (values are step means)."""
        if step_s <= 0:
            raise ValueError(f"step_s must be > 0, got {step_s}")
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        start_ts, step_s, n = float(start_ts), float(step_s), int(n_steps)
        ts = start_ts + step_s * np.arange(n, dtype=float)
        edges = start_ts + step_s * np.arange(n + 1, dtype=float)
        if n == 0:
            empty = np.zeros(0)
            return EnvSeries(ts, step_s, empty, empty, empty, empty, np.zeros(0, dtype=bool), empty)

        n_sub = max(1, math.ceil(step_s / MAX_SUBSAMPLE_S - 1e-9))
        t = (ts[:, None] + (np.arange(n_sub) + 0.5)[None, :] * (step_s / n_sub)).ravel()
        pv_w, temp_c = self._physics(t)
        ls = local_seconds(t, self._tz)
        c0 = int(math.floor(ls[0] / DAY_S)) - 1
        c1 = int(math.floor(local_seconds_scalar(edges[-1], self._tz) / DAY_S))
        days = np.arange(c0, c1 + 1)
        plans = [self._plan(int(c)) for c in days]
        midnights = civil_midnights(days, self._tz)
        base_w = self._smooth_load(t, ls, days, midnights, plans)

        def mean(a: np.ndarray) -> np.ndarray:
            return a.reshape(n, n_sub).mean(axis=1) if n_sub > 1 else a

        pv_w, temp_c, base_w = mean(pv_w), mean(temp_c), mean(base_w)

        appl, hw, trips = self._events(days, plans)
        base_w = base_w + _integrate(appl[:, 0], appl[:, 1], appl[:, 1] * appl[:, 2], edges) / step_s
        hot_l = _integrate(hw[:, 0], hw[:, 1], hw[:, 2], edges)

        # trips, with departure and arrival on the nearest step boundary
        ev_home = np.ones(n, dtype=bool)
        ev_trip = np.zeros(n)
        if len(trips):
            i_dep = np.round((trips[:, 0] - start_ts) / step_s).astype(np.int64)
            i_arr = np.round((trips[:, 1] - start_ts) / step_s).astype(np.int64)
            delta = np.zeros(n + 1, dtype=np.int64)
            np.add.at(delta, np.clip(i_dep, 0, n), 1)
            np.add.at(delta, np.clip(i_arr, 0, n), -1)
            ev_home = np.cumsum(delta[:n]) <= 0
            arriving = (i_arr >= 0) & (i_arr < n)
            np.add.at(ev_trip, i_arr[arriving], trips[arriving, 2])
        return EnvSeries(
            ts=ts,
            step_s=step_s,
            pv_available_w=pv_w,
            outdoor_temp_c=temp_c,
            base_load_w=base_w,
            hot_water_l=hot_l,
            ev_home=ev_home,
            ev_trip_wh=ev_trip,
        )

    def at(self, ts: float) -> EnvSample:
        """The 1-min slot containing ``ts`` (values are slot means; ``hot_water_l`` and ``ev_trip_wh``
        belong to the slot: do not count them twice when sampling the same slot again)."""
        midnight, s = self._day(self._civil_day(ts))
        i = min(max(int((ts - midnight) // CACHE_SLOT_S), 0), len(s) - 1)
        return s.sample(i)

    def window(self, start_ts: float, end_ts: float) -> EnvSample:
        """Means over [start_ts, end_ts) from the 1-min cache: powers and temperature time-weighted,
        hot water pro rata, trip energy of arrivals whose slot starts in the window, ``ev_home`` at the
        window's middle. Cheap for short windows; use ``series`` for long ranges."""
        if end_ts <= start_ts:
            raise ValueError(f"window end {end_ts} must be after its start {start_ts}")
        pv = temp = base = hot = trip = 0.0
        t = float(start_ts)
        while t < end_ts:
            midnight, s = self._day(self._civil_day(t))
            seg_end = min(float(end_ts), midnight + len(s) * CACHE_SLOT_S)
            if seg_end <= t:  # rounding at a day boundary
                seg_end = min(float(end_ts), t + CACHE_SLOT_S)
            i0 = min(max(int((t - midnight) // CACHE_SLOT_S), 0), len(s) - 1)
            i1 = min(max(int(math.ceil((seg_end - midnight) / CACHE_SLOT_S)), i0 + 1), len(s))
            slot0 = midnight + CACHE_SLOT_S * np.arange(i0, i1)
            w = np.minimum(slot0 + CACHE_SLOT_S, seg_end) - np.maximum(slot0, t)
            w = np.maximum(w, 0.0)
            pv += float(np.dot(s.pv_available_w[i0:i1], w))
            temp += float(np.dot(s.outdoor_temp_c[i0:i1], w))
            base += float(np.dot(s.base_load_w[i0:i1], w))
            hot += float(np.dot(s.hot_water_l[i0:i1], w)) / CACHE_SLOT_S
            starts_inside = (slot0 >= t) & (slot0 < seg_end)
            trip += float(s.ev_trip_wh[i0:i1][starts_inside].sum())
            t = seg_end
        dt = float(end_ts) - float(start_ts)
        return EnvSample(
            ts=float(start_ts),
            step_s=dt,
            pv_available_w=pv / dt,
            outdoor_temp_c=temp / dt,
            base_load_w=base / dt,
            hot_water_l=hot,
            ev_home=self.at(start_ts + dt / 2).ev_home,
            ev_trip_wh=trip,
        )

    def trips(self, start_ts: float, end_ts: float) -> list[Trip]:
        """EV trips that overlap [start_ts, end_ts), in order of departure."""
        c0 = self._civil_day(start_ts) - 1
        c1 = self._civil_day(end_ts)
        days = np.arange(c0, c1 + 1)
        _, _, trips = self._events(days, [self._plan(int(c)) for c in days])
        return [
            Trip(float(d), float(a), float(e))
            for d, a, e in trips[np.argsort(trips[:, 0], kind="stable")]
            if a > start_ts and d < end_ts
        ]

    # -- internals -------------------------------------------------------------------------------
    def _civil_day(self, ts: float) -> int:
        return int(math.floor(local_seconds_scalar(float(ts), self._tz) / DAY_S))

    def _day(self, c: int) -> tuple[float, EnvSeries]:
        hit = self._days.get(c)
        if hit is not None:
            self._days.move_to_end(c)
            return hit
        m0, m1 = civil_midnights(np.array([c, c + 1]), self._tz)
        n = round((m1 - m0) / CACHE_SLOT_S)
        entry = (float(m0), self.series(float(m0), n, CACHE_SLOT_S))
        self._days[c] = entry
        while len(self._days) > CACHE_DAYS:
            self._days.popitem(last=False)
        return entry

    def _physics(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        geom = pvmodel.solar_geometry(self.params.site, t)
        source = self.weather if self.weather is not None else self._synthetic
        ghi, dni, dhi, temp, wind = source.sample(t, geom)
        pv_w = pvmodel.pv_ac_power_w(self.params.pv, geom, ghi, dni, dhi, temp, wind)
        return pv_w, temp

    def _smooth_load(
        self, t: np.ndarray, ls: np.ndarray, days: np.ndarray, midnights: np.ndarray, plans: list[_DayPlan]
    ) -> np.ndarray:
        c = np.floor(ls / DAY_S).astype(np.int64)
        k = c - days[0]
        wall_h = (ls - c * DAY_S) / 3600.0
        weekend = np.mod(c + 3, 7) >= 5  # 1970-01-01 was a Thursday
        x = wall_h - 0.5
        i0 = np.floor(x)
        w = x - i0
        i0 = i0.astype(np.int64) % 24
        i1 = (i0 + 1) % 24
        shape = np.where(
            weekend,
            _WEEKEND_SHAPE[i0] * (1 - w) + _WEEKEND_SHAPE[i1] * w,
            _WEEKDAY_SHAPE[i0] * (1 - w) + _WEEKDAY_SHAPE[i1] * w,
        )
        season = 1.0 + _SEASON_AMPLITUDE * np.cos(2 * np.pi * (year_fraction(t) - 10 / 365))
        factor = np.array([p.load_factor for p in plans])[k]
        noise_tbl = np.stack([p.load_noise for p in plans])
        f = np.clip((t - midnights[k]) / _NOISE_NODE_S, 0.0, _NOISE_NODES - 1.0 - 1e-9)
        j = np.floor(f).astype(np.int64)
        fw = f - j
        noise = noise_tbl[k, j] * (1 - fw) + noise_tbl[k, j + 1] * fw
        return self._smooth_load_w * shape * season * factor * noise

    def _events(self, days: np.ndarray, plans: list[_DayPlan]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Appliance cycles, hot-water draws and trips of ``days`` with POSIX start/end times."""
        out = []
        for field_name in ("appliances", "hot_water", "trips"):
            rows = [getattr(p, field_name) for p in plans]
            offs = [np.full(len(r), float(c) * DAY_S) for r, c in zip(rows, days, strict=True)]
            arr = np.concatenate(rows) if rows else np.zeros((0, 3))
            off = np.concatenate(offs) if offs else np.zeros(0)
            arr = arr.reshape(-1, 3).copy()
            if len(arr):
                start = to_posix(off + arr[:, 0], self._tz)
                if field_name == "trips":
                    arr[:, 1] = to_posix(off + arr[:, 1], self._tz)
                arr[:, 0] = start
            out.append(arr)
        return out[0], out[1], out[2]

    def _rng(self, stream: int, c: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, c + _SEED_OFFSET])

    def _plan(self, c: int) -> _DayPlan:
        plan = self._plans.get(c)
        if plan is None:
            plan = self._make_plan(c)
            self._plans[c] = plan
        return plan

    def _make_plan(self, c: int) -> _DayPlan:
        p = self.params
        weekend = (c + 3) % 7 >= 5

        # smooth-load noise: a day factor and a slowly varying multiplicative AR(1) noise
        rng = self._rng(_STREAM_LOAD, c)
        sigma = p.load.noise_pct / 100.0
        sd_day = sigma / 2
        load_factor = float(np.exp(sd_day * rng.standard_normal() - sd_day**2 / 2))
        phi = math.exp(-_NOISE_NODE_S / 3600.0)
        z = rng.standard_normal(_NOISE_NODES)
        x = np.empty(_NOISE_NODES)
        x[0] = z[0]
        for i in range(1, _NOISE_NODES):
            x[i] = phi * x[i - 1] + math.sqrt(1 - phi * phi) * z[i]
        load_noise = np.exp(sigma * x - sigma * sigma / 2)

        # appliance cycles
        rng = self._rng(_STREAM_APPLIANCES, c)
        appl = []
        for n_mean, power, (d0, d1), wk, we in _APPLIANCES:
            lo, hi = we if weekend else wk
            for _ in range(rng.poisson(n_mean)):
                start = rng.uniform(lo, hi) * 3600.0
                appl.append((start, rng.uniform(d0, d1) * 60.0, power * self._appliance_scale))

        # hot water: events carry weights, the day's total is split among them
        rng = self._rng(_STREAM_HOT_WATER, c)
        total = p.water_heater.daily_draw_l * float(np.exp(0.2 * rng.standard_normal() - 0.02))
        ev = []  # (start h, duration min, weight)
        shower = (7.5, 10.5) if weekend else (6.0, 7.75)
        for _ in range(1 + int(rng.random() < 0.6)):
            ev.append((rng.uniform(*shower), rng.uniform(7.0, 11.0), 40.0))
        if rng.random() < 0.4:
            ev.append((rng.uniform(19.0, 22.5), rng.uniform(8.0, 12.0), 45.0))
        for lo, hi in ((7.0, 8.5), (12.0, 13.5), (18.0, 20.0)):
            ev.append((rng.uniform(lo, hi), rng.uniform(2.0, 5.0), 8.0))
        for _ in range(rng.poisson(5.0)):
            ev.append((rng.uniform(6.5, 22.5), 1.0, 2.5))
        wsum = sum(e[2] for e in ev)
        hot = [(h * 3600.0, m * 60.0, total * wgt / wsum) for h, m, wgt in ev]

        # EV trips
        rng = self._rng(_STREAM_EV, c)
        e_day = p.ev.daily_energy_wh
        trips = []
        if not weekend:
            sd, clip = _EV_DEPART_JITTER_S
            dep = self._depart_s + float(np.clip(sd * rng.standard_normal(), -clip, clip))
            sd, clip = _EV_ARRIVE_JITTER_S
            arr = self._arrive_s + float(np.clip(sd * rng.standard_normal(), -clip, clip))
            if arr <= dep:
                arr += DAY_S  # arrives the next day (e.g. a night shift)
            energy = e_day * rng.uniform(1 - _EV_ENERGY_SPREAD, 1 + _EV_ENERGY_SPREAD)
            trips.append((dep, arr, energy))
        elif rng.random() < _EV_WEEKEND_TRIP_P:
            dep = rng.uniform(9.0, 15.0) * 3600.0
            arr = dep + rng.uniform(1.0, 5.0) * 3600.0
            trips.append((dep, arr, e_day * rng.uniform(*_EV_WEEKEND_ENERGY)))

        def arr3(rows: list) -> np.ndarray:
            return np.array(rows, dtype=float).reshape(-1, 3)

        return _DayPlan(
            load_factor=load_factor,
            load_noise=load_noise,
            appliances=arr3(appl),
            hot_water=arr3(hot),
            trips=arr3(trips),
        )
