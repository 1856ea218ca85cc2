"""Weather for the simulated home: a seeded synthetic climate, or measured/typical-year data (TMY3).

The synthetic weather is indexed by *solar* day (local mean solar time, no DST), so every day's random
draws come from their own seeded stream: the same day has the same weather whatever window is asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pvlib
from scipy.signal import lfilter
from scipy.special import ndtr

from hems.home import SiteParams
from hems.sim import pv as pvmodel

DAY_S = 86400.0
_SEED_OFFSET = 1_000_000  # keeps day numbers non-negative for SeedSequence
_STREAM_DAILY = 11
_STREAM_INTRADAY = 12
CLEAR_DAY_K = 0.95  # days at least this clear have no cloud passages
CLOUD_K = 0.25  # clear-sky index under a cloud


@dataclass(frozen=True, slots=True)
class Climate:
    """Monthly climatology of a site (index 0 = January; values are taken at mid-month and
    interpolated cyclically)."""

    name: str
    mean_temp_c: tuple[float, ...]
    diurnal_range_c: tuple[float, ...]  # daily max - min
    temp_anomaly_sd_c: tuple[float, ...]  # day-to-day anomaly of the daily mean
    p_overcast: tuple[float, ...]  # probability of an overcast day
    p_partly: tuple[float, ...]  # probability of a partly cloudy day (the rest is clear)
    linke_turbidity: tuple[float, ...]
    wind_speed_m_s: float = 2.0
    cloud_persistence: float = 0.6  # lag-1 day autocorrelation of cloudiness
    temp_persistence: float = 0.75  # lag-1 day autocorrelation of the temperature anomaly

    def __post_init__(self) -> None:
        for name in (
            "mean_temp_c",
            "diurnal_range_c",
            "temp_anomaly_sd_c",
            "p_overcast",
            "p_partly",
            "linke_turbidity",
        ):
            if len(getattr(self, name)) != 12:
                raise ValueError(f"Climate.{name} needs 12 monthly values, got {len(getattr(self, name))}")
        for m in range(12):
            if not 0.0 <= self.p_overcast[m] + self.p_partly[m] <= 1.0:
                raise ValueError(f"Climate month {m + 1}: p_overcast + p_partly must be within [0, 1]")


# Sacramento, CA: NOAA 1991-2020 normals (Jan mean 8 °C, Jul 24.5 °C, summer diurnal range ~18 K),
# sunny dry summers, wet/foggy winters. Linke turbidity: pvlib's monthly climatology for the site
# (Remund 2003) less 10 %, and cloud-day probabilities, calibrated so that the annual PV yield
# lands near PVWatts/TMY figures for Sacramento (~1,550-1,600 kWh/kWp AC).
SACRAMENTO = Climate(
    name="Sacramento, CA",
    mean_temp_c=(8.2, 10.6, 13.0, 15.4, 19.3, 22.6, 24.4, 24.0, 22.4, 18.0, 11.9, 7.8),
    diurnal_range_c=(8.5, 10.5, 12.0, 14.0, 16.0, 17.5, 18.5, 18.5, 18.0, 16.0, 11.5, 8.5),
    temp_anomaly_sd_c=(2.3, 2.2, 2.0, 2.2, 2.4, 2.6, 2.4, 2.3, 2.5, 2.3, 2.2, 2.3),
    p_overcast=(0.28, 0.25, 0.18, 0.1, 0.04, 0.01, 0.0, 0.0, 0.01, 0.06, 0.18, 0.28),
    p_partly=(0.3, 0.3, 0.32, 0.3, 0.22, 0.1, 0.05, 0.06, 0.12, 0.2, 0.3, 0.3),
    linke_turbidity=(2.92, 2.84, 3.2, 3.38, 3.42, 3.42, 3.38, 3.24, 3.15, 2.79, 2.66, 2.92),
)


def monthly(values: tuple[float, ...] | np.ndarray, year_frac: np.ndarray) -> np.ndarray:
    """Cyclic linear interpolation of 12 mid-month values at a fraction of the year in [0, 1)."""
    tbl = np.asarray(values, dtype=float)
    x = np.asarray(year_frac, dtype=float) * 12.0 - 0.5
    i0 = np.floor(x)
    w = x - i0
    i0 = i0.astype(np.int64) % 12
    return tbl[i0] * (1.0 - w) + tbl[(i0 + 1) % 12] * w


def year_fraction(ts: np.ndarray) -> np.ndarray:
    """Fraction of the (mean Gregorian) year elapsed since 1 January, from POSIX seconds."""
    return np.mod(np.asarray(ts, dtype=float) / DAY_S, 365.2425) / 365.2425


class SyntheticWeather:
    """Seeded daily clearness and temperature with persistence, and intra-day cloud passages."""

    def __init__(self, site: SiteParams, climate: Climate, seed: int) -> None:
        self.site = site
        self.climate = climate
        self.seed = int(seed)
        self._lon_s = site.longitude * 240.0  # solar time = UTC + longitude * 4 min/deg

    # -- day level -------------------------------------------------------------------------------
    def _innovations(self, days: np.ndarray) -> np.ndarray:
        return np.array(
            [
                np.random.default_rng([self.seed, _STREAM_DAILY, int(d) + _SEED_OFFSET]).standard_normal(2)
                for d in days
            ]
        ).reshape(len(days), 2)

    def daily(self, days: np.ndarray) -> dict[str, np.ndarray]:
        """Per solar day: clearness index K (daily irradiation / clear-sky), temperature anomaly (K),
        diurnal range (K), and the solar-noon POSIX time the values are attached to."""
        c = self.climate
        nlag = 40
        all_days = np.arange(days[0] - nlag, days[-1] + 1)
        e = self._innovations(all_days)

        def ar(col: int, phi: float) -> np.ndarray:
            w = np.sqrt(1.0 - phi**2) * phi ** np.arange(nlag + 1)
            return np.convolve(e[:, col], w, mode="valid")

        z_cloud = ar(0, c.cloud_persistence)
        z_temp = ar(1, c.temp_persistence)
        noon = days * DAY_S + DAY_S / 2 - self._lon_s
        yf = year_fraction(noon)
        u = ndtr(z_cloud)
        p_o = monthly(c.p_overcast, yf)
        p_p = monthly(c.p_partly, yf)
        k_over = 0.2 + 0.3 * u / np.maximum(p_o, 1e-9)
        k_part = 0.5 + (CLEAR_DAY_K - 0.5) * (u - p_o) / np.maximum(p_p, 1e-9)
        k_clear = CLEAR_DAY_K + (1 - CLEAR_DAY_K) * (u - p_o - p_p) / np.maximum(1.0 - p_o - p_p, 1e-9)
        k = np.where(u < p_o, k_over, np.where(u < p_o + p_p, k_part, k_clear))
        k = np.clip(k, 0.2, 1.0)
        summer = 0.5 * (1.0 - np.cos(2 * np.pi * (yf - 15 / 365)))  # 0 mid-January, 1 mid-July
        rho = 0.5 * summer  # clear summer days are hotter
        anomaly = monthly(c.temp_anomaly_sd_c, yf) * (rho * z_cloud + np.sqrt(1 - rho**2) * z_temp)
        dtr = monthly(c.diurnal_range_c, yf) * (0.4 + 0.65 * k)  # cloudy days swing less
        return {"k": k, "anomaly": anomaly, "dtr": dtr, "noon": noon}

    # -- sampling ---------------------------------------------------------------------------------
    def sample(
        self, t: np.ndarray, geom: pvmodel.SolarGeometry
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ghi, dni, dhi, temp_air, wind) at POSIX times ``t``."""
        c = self.climate
        t = np.asarray(t, dtype=float)
        solar_day = np.floor((t + self._lon_s) / DAY_S).astype(np.int64)
        d0, d1 = int(solar_day.min()), int(solar_day.max())
        days = np.arange(d0 - 1, d1 + 2)
        dd = self.daily(days)

        # intra-day cloud passages: 5-min nodes of an AR(1) with a ~40 min memory, thresholded so that
        # the expected fraction of sunny nodes gives the day's clearness. The sun is either out (clear-sky
        # beam and diffuse) or behind a cloud (no beam, diffuse = k_low x clear-sky GHI); clear days
        # have no passages, only a uniform haze.
        inner = days[1:-1]
        n_nodes = 288
        phi = np.exp(-300.0 / 2400.0)
        e = np.array(
            [
                np.random.default_rng([self.seed, _STREAM_INTRADAY, int(d) + _SEED_OFFSET]).standard_normal(
                    n_nodes
                )
                for d in inner
            ]
        ).reshape(len(inner), n_nodes)
        e[:, 0] /= np.sqrt(1.0 - phi**2)
        x = lfilter([np.sqrt(1.0 - phi**2)], [1.0, -phi], e, axis=1)
        k = dd["k"][1:-1]
        clear = k >= CLEAR_DAY_K
        k_low = np.where(clear, 0.0, np.minimum(CLOUD_K, k))
        sunny_frac = np.where(clear, 1.0, np.clip((k - k_low) / np.maximum(1.0 - k_low, 1e-9), 0.0, 1.0))
        sun = (ndtr(x) < sunny_frac[:, None]).astype(float)
        node_t = (inner[:, None] * DAY_S - self._lon_s) + (np.arange(n_nodes)[None, :] + 0.5) * 300.0
        sun_t = np.interp(t, node_t.ravel(), sun.ravel())
        day_idx = np.clip(
            np.floor((t + self._lon_s) / DAY_S).astype(np.int64) - int(inner[0]), 0, len(inner) - 1
        )
        haze_t = np.where(clear, k, 1.0)[day_idx]
        k_low_t = k_low[day_idx]

        yf = year_fraction(t)
        cs_ghi, cs_dni, cs_dhi = pvmodel.clear_sky(self.site, geom, monthly(c.linke_turbidity, yf))
        dni = sun_t * haze_t * cs_dni
        dhi = sun_t * haze_t * cs_dhi + (1.0 - sun_t) * k_low_t * cs_ghi
        cosz = np.maximum(np.cos(np.radians(geom.zenith)), 0.0)
        ghi = dni * cosz + dhi

        solar_hour = np.mod(t + self._lon_s, DAY_S) / 3600.0
        temp = (
            monthly(c.mean_temp_c, yf)
            + np.interp(t, dd["noon"], dd["anomaly"])
            + np.interp(t, dd["noon"], dd["dtr"]) * diurnal_shape(solar_hour)
        )
        wind = np.full_like(t, c.wind_speed_m_s)
        return ghi, dni, dhi, temp, wind


def diurnal_shape(solar_hour: np.ndarray, h_min: float = 6.0, h_max: float = 15.0) -> np.ndarray:
    """Zero-mean daily temperature shape in [-0.5, 0.5]: minimum near sunrise, maximum mid-afternoon."""
    h = np.asarray(solar_hour, dtype=float)
    rise = h_max - h_min
    fall = 24.0 - rise
    up = (h >= h_min) & (h < h_max)
    since_max = np.mod(h - h_max, 24.0)
    return np.where(up, -0.5 * np.cos(np.pi * (h - h_min) / rise), 0.5 * np.cos(np.pi * since_max / fall))


@dataclass(frozen=True, slots=True)
class WeatherSeries:
    """Measured or typical-year weather at a regular interval; replaces the synthetic weather.

    ``ts`` are POSIX seconds at the START of each interval; irradiances are means over the interval
    (W/m²), ``temp_air`` (°C) and ``wind_speed`` (m/s) are taken at the interval's middle and
    interpolated. ``typical_year``: the data is one typical year (TMY) and is repeated for any date by
    matching the time since 1 January (in the data's fixed UTC offset ``utc_offset_s``).
    """

    ts: np.ndarray
    ghi: np.ndarray
    dni: np.ndarray
    dhi: np.ndarray
    temp_air: np.ndarray
    wind_speed: np.ndarray | None = None
    interval_s: float = 3600.0
    typical_year: bool = False
    utc_offset_s: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.ts)
        if n < 2:
            raise ValueError("WeatherSeries needs at least two intervals")
        for name in ("ghi", "dni", "dhi", "temp_air", "wind_speed"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"WeatherSeries.{name} has {len(arr)} values, ts has {n}")
        steps = np.diff(np.asarray(self.ts, dtype=float))
        if not np.allclose(steps, self.interval_s):
            raise ValueError(f"WeatherSeries.ts must be regular at interval_s={self.interval_s} s")

    @property
    def start_ts(self) -> float:
        return float(self.ts[0])

    @property
    def end_ts(self) -> float:
        return float(self.ts[-1]) + self.interval_s

    def _map(self, t: np.ndarray) -> np.ndarray:
        if not self.typical_year:
            if t.min() < self.start_ts or t.max() > self.end_ts:
                raise ValueError(
                    f"weather data covers POSIX {self.start_ts:.0f}..{self.end_ts:.0f}, "
                    f"asked {t.min():.0f}..{t.max():.0f}"
                )
            return t
        # same time since 1 January (in the data's standard time) in the data's year
        off = self.utc_offset_s
        local = np.floor(t + off).astype(np.int64).astype("datetime64[s]")
        since_jan1 = t + off - local.astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)
        span = self.end_ts - self.start_ts
        since_jan1 = np.where(since_jan1 >= span, since_jan1 - DAY_S, since_jan1)  # 31 Dec of a leap year
        data_jan1 = float(
            np.datetime64(int(self.start_ts + off), "s")
            .astype("datetime64[Y]")
            .astype("datetime64[s]")
            .astype(np.int64)
        )
        return data_jan1 - off + since_jan1

    def sample(
        self, t: np.ndarray, geom: pvmodel.SolarGeometry
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ghi, dni, dhi, temp_air, wind) at POSIX times ``t``."""
        tm = self._map(np.asarray(t, dtype=float))
        ts = np.asarray(self.ts, dtype=float)
        i = np.clip(((tm - ts[0]) // self.interval_s).astype(np.int64), 0, len(ts) - 1)
        ghi = np.maximum(np.asarray(self.ghi, dtype=float)[i], 0.0)
        dni = np.maximum(np.asarray(self.dni, dtype=float)[i], 0.0)
        dhi = np.maximum(np.asarray(self.dhi, dtype=float)[i], 0.0)
        night = geom.zenith >= 90.0
        ghi, dni, dhi = (np.where(night, 0.0, a) for a in (ghi, dni, dhi))
        mid = ts + self.interval_s / 2
        temp = np.interp(tm, mid, np.asarray(self.temp_air, dtype=float))
        if self.wind_speed is None:
            wind = np.full_like(tm, 2.0)
        else:
            wind = np.interp(tm, mid, np.asarray(self.wind_speed, dtype=float))
        return ghi, dni, dhi, temp, wind


def load_tmy3(path: str | Path) -> WeatherSeries:
    """Read a TMY3 file (NSRDB format) into a typical-year WeatherSeries.

    TMY3 rows are labelled at the END of each hour in local standard time; they become intervals
    starting one hour earlier. The file's site (latitude/longitude) should match ``SiteParams``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TMY3 file not found: {path}")
    data, meta = pvlib.iotools.read_tmy3(str(path), coerce_year=1990, map_variables=True)
    end_ms = data.index.tz_convert("UTC").as_unit("ms").asi8
    ts = end_ms / 1000.0 - 3600.0
    order = np.argsort(ts, kind="stable")
    return WeatherSeries(
        ts=ts[order],
        ghi=data["ghi"].to_numpy(dtype=float)[order],
        dni=data["dni"].to_numpy(dtype=float)[order],
        dhi=data["dhi"].to_numpy(dtype=float)[order],
        temp_air=data["temp_air"].to_numpy(dtype=float)[order],
        wind_speed=data["wind_speed"].to_numpy(dtype=float)[order],
        interval_s=3600.0,
        typical_year=True,
        utc_offset_s=float(meta["TZ"]) * 3600.0,
    )
