"""Forecasts for the planner: PV, household base load, outdoor temperature and hot-water use.

Each forecaster learns from what the gateway measured (``observe``) and answers for any horizon
(``forecast(start_ts, n_steps, step_s)``: one mean value per step). Before there is history each gives a
sensible default, so the planner works from the first minute.

- PV: pvlib clear-sky AC power of the configured array, times a clearness ratio learned from the last
  day's measurements (measured energy / clear-sky energy, daylight only). The near term uses the recent
  ratio; further ahead it relaxes to the climatological ratio. A weather forecast can replace the ratio
  (``set_cloud_forecast``).
- Load: per 15-min slot of a weekday or a weekend day, exponentially smoothed over days; the default
  before history is a typical household shape scaled to ``LoadParams.daily_energy_wh``.
- Outdoor temperature: yesterday's curve at the same time of day, shifted by how much warmer or colder it
  is now than yesterday at this time (the shift fades over 12 h); before a day of history, persistence.
- Hot water: a typical morning/evening draw profile scaled to ``WaterHeaterParams.daily_draw_l``.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from .home import HomeParams
from .sim import pv as pvmodel

SLOT_S = 900.0
SLOTS_PER_DAY = 96
DEFAULT_LINKE_TURBIDITY = 3.1
CLIMATE_CLEARNESS = 0.8  # long-run measured / clear-sky energy for a sunny climate
NOWCAST_FADE_H = 6.0  # the recent clearness ratio fades into the climatological one over this time
TEMP_SHIFT_FADE_H = 12.0
LOAD_SMOOTHING = 0.3  # weight of the newest day in a slot's average


def _mid_times(start_ts: float, n: int, step_s: float) -> np.ndarray:
    return start_ts + (np.arange(n) + 0.5) * step_s


def _local_slots(ts: np.ndarray, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """15-min slot of the local day (0..95) and whether it is a weekend, per timestamp."""
    idx = pd.DatetimeIndex(pd.to_datetime(ts, unit="s", utc=True)).tz_convert(timezone)
    slot = np.asarray(idx.hour * 4 + idx.minute // 15)
    weekend = np.asarray(idx.day_of_week >= 5)
    return slot, weekend


class PVForecaster:
    def __init__(self, params: HomeParams, *, window_h: float = 24.0) -> None:
        self.params = params
        self.window_s = window_h * 3600.0
        self._obs: deque[tuple[float, float, float]] = deque()  # (ts, measured Wh, clear-sky Wh)
        self._sum_meas = 0.0
        self._sum_cs = 0.0
        self._grid: tuple[float, float, np.ndarray] | None = None  # precomputed clear-sky (start, step, W)
        self._cloud: tuple[np.ndarray, np.ndarray] | None = None

    def precompute(self, start_ts: float, n: int, step_s: float) -> None:
        """Compute clear-sky power once for a long run (simulation) so that lookups are array slices."""
        self._grid = (start_ts, step_s, self._clear_sky(_mid_times(start_ts, n, step_s)))

    def _clear_sky(self, ts: np.ndarray) -> np.ndarray:
        site, pv = self.params.site, self.params.pv
        geom = pvmodel.solar_geometry(site, ts)
        ghi, dni, dhi = pvmodel.clear_sky(site, geom, np.full(len(ts), DEFAULT_LINKE_TURBIDITY))
        return pvmodel.pv_ac_power_w(pv, geom, ghi, dni, dhi, np.full(len(ts), 20.0), np.full(len(ts), 2.0))

    def clear_sky_w(self, start_ts: float, n: int, step_s: float) -> np.ndarray:
        if self._grid is not None:
            g_start, g_step, values = self._grid
            offset = (start_ts - g_start) / g_step
            if g_step == step_s and offset == int(offset) and 0 <= offset and int(offset) + n <= len(values):
                return values[int(offset) : int(offset) + n]
        return self._clear_sky(_mid_times(start_ts, n, step_s))

    def observe(self, ts: float, pv_w: float, dt_s: float, clear_sky_w: float | None = None) -> None:
        if clear_sky_w is None:
            clear_sky_w = float(self.clear_sky_w(ts, 1, dt_s)[0])
        meas_wh, cs_wh = pv_w * dt_s / 3600.0, clear_sky_w * dt_s / 3600.0
        self._obs.append((ts, meas_wh, cs_wh))
        self._sum_meas += meas_wh
        self._sum_cs += cs_wh
        while self._obs and self._obs[0][0] < ts - self.window_s:
            _, m, c = self._obs.popleft()
            self._sum_meas -= m
            self._sum_cs -= c

    def ratio(self) -> float:
        if self._sum_cs < 0.05 * self.params.pv.capacity_w:  # under ~3 min of full sun seen: no evidence yet
            return CLIMATE_CLEARNESS
        return min(1.15, max(0.05, self._sum_meas / self._sum_cs))

    def set_cloud_forecast(self, ts: np.ndarray, clearness: np.ndarray) -> None:
        """A weather service's forecast as clearness (0..1.2) at times ``ts``; replaces the learned ratio."""
        self._cloud = (np.asarray(ts, dtype=float), np.asarray(clearness, dtype=float))

    def forecast(self, start_ts: float, n: int, step_s: float, now: float | None = None) -> np.ndarray:
        cs = self.clear_sky_w(start_ts, n, step_s)
        t = _mid_times(start_ts, n, step_s)
        if self._cloud is not None and self._cloud[0][0] <= t[0] and t[-1] <= self._cloud[0][-1]:
            return cs * np.interp(t, *self._cloud)
        lead_h = np.maximum(0.0, t - (start_ts if now is None else now)) / 3600.0
        r = CLIMATE_CLEARNESS + (self.ratio() - CLIMATE_CLEARNESS) * np.exp(-lead_h / NOWCAST_FADE_H)
        return cs * r


def default_load_shape() -> np.ndarray:
    """A typical household's base load by 15-min slot, normalised to a mean of 1."""
    h = (np.arange(SLOTS_PER_DAY) + 0.5) / 4.0
    shape = (
        0.55
        + 0.55 * np.exp(-(((h - 7.5) / 1.3) ** 2))
        + 0.35 * np.exp(-(((h - 12.5) / 2.0) ** 2))
        + 1.0 * np.exp(-(((h - 19.0) / 2.2) ** 2))
    )
    return shape / shape.mean()


class LoadForecaster:
    def __init__(self, params: HomeParams) -> None:
        self.tz = params.site.timezone
        mean_w = params.load.daily_energy_wh / 24.0
        self.profile = np.tile(default_load_shape() * mean_w, (2, 1))  # [weekday, weekend] x slot
        self.days_seen = np.zeros((2, SLOTS_PER_DAY), dtype=int)
        self._slot_key: tuple[int, int, int] | None = None  # (day ordinal, weekend, slot)
        self._acc_wh = 0.0
        self._acc_s = 0.0

    def observe(self, ts: float, load_w: float, dt_s: float) -> None:
        local = datetime.fromtimestamp(ts, ZoneInfo(self.tz))
        key = (local.toordinal(), int(local.weekday() >= 5), local.hour * 4 + local.minute // 15)
        if self._slot_key is not None and key != self._slot_key:
            self._close_slot()
        self._slot_key = key
        self._acc_wh += load_w * dt_s / 3600.0
        self._acc_s += dt_s

    def _close_slot(self) -> None:
        if self._slot_key is None or self._acc_s < SLOT_S / 2:  # a mostly-missing slot teaches nothing
            self._acc_wh = self._acc_s = 0.0
            return
        _, weekend, slot = self._slot_key
        mean_w = self._acc_wh * 3600.0 / self._acc_s
        alpha = max(LOAD_SMOOTHING, 1.0 / (1 + self.days_seen[weekend, slot]))  # first days count fully
        self.profile[weekend, slot] += alpha * (mean_w - self.profile[weekend, slot])
        self.days_seen[weekend, slot] += 1
        self._acc_wh = self._acc_s = 0.0

    def forecast(self, start_ts: float, n: int, step_s: float) -> np.ndarray:
        slot, weekend = _local_slots(_mid_times(start_ts, n, step_s), self.tz)
        return self.profile[weekend.astype(int), slot]


class TemperatureForecaster:
    def __init__(self, params: HomeParams, *, default_c: float = 20.0) -> None:
        self.history: deque[tuple[float, float]] = deque()  # (ts, temp) kept for 2 days
        self.default_c = default_c

    def observe(self, ts: float, temp_c: float) -> None:
        self.history.append((ts, temp_c))
        while self.history and self.history[0][0] < ts - 2 * 86400.0:
            self.history.popleft()

    def forecast(self, start_ts: float, n: int, step_s: float, now: float | None = None) -> np.ndarray:
        t = _mid_times(start_ts, n, step_s)
        if not self.history:
            return np.full(n, self.default_c)
        now = self.history[-1][0] if now is None else now
        current = self.history[-1][1]
        hist_ts = np.fromiter((h[0] for h in self.history), float, len(self.history))
        hist_c = np.fromiter((h[1] for h in self.history), float, len(self.history))
        if hist_ts[0] > now - 86400.0 + 1800.0:  # less than a day of history: persistence
            return np.full(n, current)
        yesterday = np.interp(t - 86400.0, hist_ts, hist_c)  # beyond history: np.interp holds the last value
        shift = current - float(np.interp(now - 86400.0, hist_ts, hist_c))
        lead_h = np.maximum(0.0, t - now) / 3600.0
        same_time_2d = np.interp(t - 2 * 86400.0, hist_ts, hist_c)
        base = np.where(t - 86400.0 <= now, yesterday, same_time_2d)
        return base + shift * np.exp(-lead_h / TEMP_SHIFT_FADE_H)


def hot_water_profile_wh(params: HomeParams, start_ts: float, n: int, step_s: float) -> np.ndarray:
    """Heat drawn from the tank per step (Wh) for a typical morning/evening routine."""
    wh = params.water_heater
    daily_wh = wh.daily_draw_l * (wh.setpoint_c - wh.cold_water_c) * 4.186 / 3.6
    h = (np.arange(SLOTS_PER_DAY) + 0.5) / 4.0
    rate = np.exp(-(((h - 7.0) / 1.0) ** 2)) + 0.8 * np.exp(-(((h - 20.0) / 1.5) ** 2))
    per_slot_wh = rate / rate.sum() * daily_wh
    slot, _ = _local_slots(_mid_times(start_ts, n, step_s), params.site.timezone)
    return per_slot_wh[slot] * step_s / SLOT_S


def ev_departure_ts(params: HomeParams, now: float, departure_time: str | None = None) -> float:
    """The next weekday departure at the homeowner's departure time (local), after ``now``."""
    tz = ZoneInfo(params.site.timezone)
    hh, mm = (int(x) for x in (departure_time or params.ev.departure_time).split(":"))
    local = datetime.fromtimestamp(now, tz)
    for days in range(8):
        day = datetime.fromordinal(local.toordinal() + days)
        candidate = datetime(day.year, day.month, day.day, hh, mm, tzinfo=tz)
        if candidate.timestamp() > now and candidate.weekday() < 5:
            return candidate.timestamp()
    return now + 86400.0  # pragma: no cover - a weekday always comes within 8 days


def step_index(ts: float, start_ts: float, step_s: float) -> int:
    return int(math.floor((ts - start_ts) / step_s + 1e-9))
