"""Exogenous inputs of the simulated home: PV, weather, base load, hot water, EV trips, DST."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pvlib
import pytest

from hems.home import HomeParams, LoadParams, PVParams, SiteParams
from hems.sim import Environment, WeatherSeries, load_tmy3

TZ = ZoneInfo("America/Los_Angeles")
P = HomeParams()


def local_ts(*args: int) -> float:
    return datetime(*args, tzinfo=TZ).timestamp()


YEAR0 = local_ts(2026, 1, 1)


@pytest.fixture(scope="module")
def year():
    return Environment(P, seed=1).series(YEAR0, 365 * 288, 300.0)


def local_hours(ts: np.ndarray) -> np.ndarray:
    return np.array([(lambda d: d.hour + d.minute / 60)(datetime.fromtimestamp(t, TZ)) for t in ts])


def test_series_shape_and_types(year):
    n = 365 * 288
    for name in (
        "ts",
        "pv_available_w",
        "outdoor_temp_c",
        "base_load_w",
        "hot_water_l",
        "ev_home",
        "ev_trip_wh",
    ):
        assert len(getattr(year, name)) == n, name
    assert year.ev_home.dtype == bool
    assert year.step_s == 300.0
    assert np.all(np.diff(year.ts) == 300.0)
    assert year.ts[0] == YEAR0
    assert (year.pv_available_w >= 0).all() and (year.hot_water_l >= 0).all() and (year.base_load_w > 0).all()
    assert len(Environment(P).series(YEAR0, 0, 300)) == 0


def test_annual_pv_yield_is_realistic_for_sacramento(year):
    kwh_per_kwp = year.pv_available_w.sum() * 300 / 3600 / P.pv.capacity_w
    assert 1450 <= kwh_per_kwp <= 1700
    # summer days give far more than winter days
    daily = year.pv_available_w.reshape(365, 288).sum(axis=1) / 12 / 1000
    assert daily[160:200].mean() > 2.0 * daily[0:30].mean()
    # peak AC: below the 8 kW DC nameplate after losses, well above half of it
    assert 5500 < year.pv_available_w.max() < P.pv.capacity_w


def test_pv_is_zero_at_night(year):
    from hems.sim.pv import solar_geometry

    geom = solar_geometry(P.site, year.ts + 150.0)
    night = geom.zenith > 91.0
    assert night.mean() > 0.4
    assert np.all(year.pv_available_w[night] == 0.0)
    hours = ((year.ts - YEAR0) % 86400) / 3600  # PST midnight-based, fine for Jan
    assert np.all(year.pv_available_w[: 31 * 288][(hours[: 31 * 288] < 6) | (hours[: 31 * 288] > 18.5)] == 0)


def test_inverter_clipping():
    params = HomeParams(pv=PVParams(capacity_w=8000.0, inverter_ac_w=4000.0))
    s = Environment(params, seed=1).series(local_ts(2026, 6, 1), 30 * 288, 300.0)
    assert s.pv_available_w.max() == pytest.approx(4000.0)
    assert (s.pv_available_w >= 3999.0).sum() > 30 * 12  # clipped for hours on most days
    unclipped = Environment(P, seed=1).series(local_ts(2026, 6, 1), 30 * 288, 300.0)
    # away from the limit the same power, within the inverters' different part-load efficiencies
    below = (unclipped.pv_available_w > 1500) & (unclipped.pv_available_w < 3500)
    np.testing.assert_allclose(s.pv_available_w[below], unclipped.pv_available_w[below], rtol=0.03)
    above = unclipped.pv_available_w > 4000
    assert above.sum() > 30 * 12 and np.allclose(s.pv_available_w[above], 4000.0, rtol=0.01)
    lost = (unclipped.pv_available_w - s.pv_available_w)[above].sum() / unclipped.pv_available_w.sum()
    assert 0.05 < lost < 0.3


def test_outdoor_temperature_climate(year):
    t = year.outdoor_temp_c.reshape(365, 288)
    jan, jul = t[0:31], t[181:212]
    assert 5.5 < jan.mean() < 10.5
    assert 22.0 < jul.mean() < 27.0
    dtr_jul = (jul.max(axis=1) - jul.min(axis=1)).mean()
    assert 12.0 < dtr_jul < 20.0
    assert (jan.max(axis=1) - jan.min(axis=1)).mean() < dtr_jul
    # day-to-day anomalies exist
    assert t.mean(axis=1)[181:212].std() > 0.7
    # warmest hour of a summer day is in the afternoon, coldest near sunrise (local)
    hours = local_hours(year.ts[181 * 288 : 182 * 288])
    assert 13.0 <= hours[np.argmax(jul[0])] <= 17.5
    assert 3.0 <= hours[np.argmin(jul[0])] <= 8.0


def test_base_load_mean_and_shape(year):
    kwh_per_day = year.base_load_w.sum() * 300 / 3600 / 365 / 1000
    assert kwh_per_day == pytest.approx(P.load.daily_energy_wh / 1000, rel=0.03)
    # evening peak above the night minimum, weekday average profile
    hours = ((year.ts - YEAR0) % 86400 / 3600).astype(int)  # PST hours in January
    jan = slice(0, 31 * 288)
    by_hour = np.array([year.base_load_w[jan][hours[jan] == h].mean() for h in range(24)])
    assert by_hour[18:21].mean() > 2.5 * by_hour[2:5].mean()
    assert by_hour[7] > by_hour[3] * 1.5
    # winter days use more than summer days (lighting)
    daily = year.base_load_w.reshape(365, 288).mean(axis=1)
    assert daily[0:60].mean() > daily[150:240].mean()


def test_hot_water_draws(year):
    daily = year.hot_water_l.reshape(365, 288).sum(axis=1)
    assert daily.mean() == pytest.approx(P.water_heater.daily_draw_l, rel=0.08)
    assert daily.min() > 0.3 * P.water_heater.daily_draw_l
    hours = (year.ts - YEAR0) % 86400 / 3600  # PST in January
    jan = slice(0, 31 * 288)
    night = (hours[jan] > 0.5) & (hours[jan] < 5.5)
    assert year.hot_water_l[jan][night].sum() == 0.0
    morning = (hours[jan] >= 6) & (hours[jan] < 11)
    assert year.hot_water_l[jan][morning].sum() > 0.3 * year.hot_water_l[jan].sum()


def test_ev_trips_on_weekdays(year):
    home = year.ev_home
    departs = np.flatnonzero(home[:-1] & ~home[1:]) + 1
    arrives = np.flatnonzero(~home[:-1] & home[1:]) + 1
    # every weekday has exactly its commute
    dep_days = {datetime.fromtimestamp(year.ts[i], TZ).date() for i in departs}
    weekdays = {d for d in dep_days if d.weekday() < 5}
    assert len(weekdays) == 261  # weekdays of 2026
    for i in departs:
        d = datetime.fromtimestamp(year.ts[i], TZ)
        if d.weekday() < 5:
            assert 7 * 60 + 5 <= d.hour * 60 + d.minute <= 7 * 60 + 55
    trip_e = year.ev_trip_wh[arrives]
    assert np.all(year.ev_trip_wh[np.setdiff1d(np.arange(len(home)), arrives)] == 0)
    wd = np.array([datetime.fromtimestamp(year.ts[i], TZ).weekday() < 5 for i in arrives])
    for i in arrives[wd]:
        d = datetime.fromtimestamp(year.ts[i], TZ)
        assert 17 * 60 + 10 <= d.hour * 60 + d.minute <= 18 * 60 + 50
    assert trip_e[wd].min() >= 0.7 * P.ev.daily_energy_wh - 1e-6
    assert trip_e[wd].max() <= 1.3 * P.ev.daily_energy_wh + 1e-6
    assert trip_e[wd].mean() == pytest.approx(P.ev.daily_energy_wh, rel=0.05)
    # weekends: some shorter trips, not every weekend day
    assert 30 < (~wd).sum() < 90
    assert trip_e[~wd].mean() < 0.6 * P.ev.daily_energy_wh


def test_determinism_same_and_different_seed():
    a = Environment(P, seed=7).series(YEAR0, 7 * 288, 300.0)
    b = Environment(P, seed=7).series(YEAR0, 7 * 288, 300.0)
    c = Environment(P, seed=8).series(YEAR0, 7 * 288, 300.0)
    for f in dataclasses.fields(a):
        np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name))
    assert not np.array_equal(a.pv_available_w, c.pv_available_w)
    assert not np.array_equal(a.base_load_w, c.base_load_w)
    assert not np.array_equal(a.hot_water_l, c.hot_water_l)
    assert not np.array_equal(a.outdoor_temp_c, c.outdoor_temp_c)


def test_window_independence_and_resolution_consistency():
    env = Environment(P, seed=3)
    week = env.series(YEAR0, 7 * 288, 300.0)
    later = Environment(P, seed=3).series(YEAR0 + 2 * 86400, 288, 300.0)  # a day asked on its own
    day2 = slice(2 * 288, 3 * 288)
    np.testing.assert_allclose(later.pv_available_w, week.pv_available_w[day2], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(later.base_load_w, week.base_load_w[day2], rtol=1e-9)
    np.testing.assert_allclose(later.hot_water_l, week.hot_water_l[day2], rtol=1e-9, atol=1e-9)
    hourly = env.series(YEAR0, 7 * 24, 3600.0)
    five = week
    assert hourly.hot_water_l.sum() == pytest.approx(five.hot_water_l.sum(), rel=1e-9)
    assert hourly.base_load_w.sum() * 12 == pytest.approx(five.base_load_w.sum(), rel=1e-3)
    assert hourly.pv_available_w.sum() * 12 == pytest.approx(five.pv_available_w.sum(), rel=1e-6)
    np.testing.assert_allclose(
        hourly.pv_available_w, five.pv_available_w.reshape(-1, 12).mean(axis=1), atol=1e-6
    )
    assert hourly.ev_trip_wh.sum() == pytest.approx(five.ev_trip_wh.sum())


def test_at_and_window_match_series():
    env = Environment(P, seed=2)
    start = local_ts(2026, 6, 10)
    minute = env.series(start, 1440, 60.0)
    for i in (0, 500, 777, 1439):
        s = env.at(start + 60 * i + 17.0)
        assert s.ts == minute.ts[i] and s.step_s == 60.0
        assert s.pv_available_w == pytest.approx(minute.pv_available_w[i])
        assert s.base_load_w == pytest.approx(minute.base_load_w[i])
        assert s.ev_home == minute.ev_home[i]
    five = env.series(start, 288, 300.0)
    for i in (100, 150, 200):
        w = env.window(start + 300 * i, start + 300 * (i + 1))
        assert w.pv_available_w == pytest.approx(five.pv_available_w[i], rel=0.02, abs=5.0)
        assert w.base_load_w == pytest.approx(five.base_load_w[i], rel=0.02)
    day = env.window(start, start + 86400)
    assert day.hot_water_l == pytest.approx(minute.hot_water_l.sum())
    assert day.ev_trip_wh == pytest.approx(minute.ev_trip_wh.sum())
    # a window crossing midnight
    w = env.window(start + 86400 - 1800, start + 86400 + 1800)
    assert w.step_s == 3600.0 and w.outdoor_temp_c > -10


def test_dst_days_2026():
    env = Environment(P, seed=1)
    for day, hours in (((2026, 3, 8), 23), ((2026, 11, 1), 25), ((2026, 3, 7), 24)):
        m0 = local_ts(*day)
        m1 = datetime(*day, tzinfo=TZ).replace(day=day[2] + 1).timestamp()
        assert m1 - m0 == hours * 3600
        s = env.series(m0, hours, 3600.0)
        assert len(s) == hours
        # the cache behind at() holds the whole local day in 1-min slots
        assert env.at(m0).ts == m0 and env.at(m1 - 1).ts == m1 - 60
    # the repeated hour on 1 Nov: two distinct 01:30 instants, both in the same local day
    a = datetime(2026, 11, 1, 1, 30, tzinfo=TZ, fold=0).timestamp()
    b = datetime(2026, 11, 1, 1, 30, tzinfo=TZ, fold=1).timestamp()
    assert b - a == 3600 and env.at(a).ts != env.at(b).ts

    # behaviour follows the local clock across both changes: weekday commutes leave near 07:30 local,
    # i.e. an hour earlier in UTC after spring-forward and an hour later after fall-back
    def departures(first_day: tuple, n_days: int) -> list[datetime]:
        start = local_ts(*first_day)
        s = env.series(start, n_days * 288, 300.0)
        i = np.flatnonzero(s.ev_home[:-1] & ~s.ev_home[1:]) + 1
        return [datetime.fromtimestamp(s.ts[k], TZ) for k in i]

    for first in ((2026, 3, 2), (2026, 10, 26)):
        deps = [d for d in departures(first, 14) if d.weekday() < 5]
        assert len(deps) == 10
        for d in deps:
            assert 7 * 60 + 5 <= d.hour * 60 + d.minute <= 7 * 60 + 55
        offsets_h = [d.utcoffset().total_seconds() / 3600 for d in deps]
        assert sorted(set(offsets_h)) == [-8.0, -7.0]  # PST and PDT weekdays in the fortnight
        for d, off in zip(deps, offsets_h, strict=True):
            assert d.astimezone(ZoneInfo("UTC")).hour == 7 - off


def test_dst_base_load_follows_wall_clock():
    params = HomeParams(load=LoadParams(noise_pct=0.0))
    env = Environment(params, seed=5)
    # night load (no appliance cycles between 01:00 and 06:00): the same wall-clock profile on the
    # Saturday before and on the 23 h Sunday, although the Sunday's 04:00 is at a different UTC offset
    sat = env.series(local_ts(2026, 3, 7, 3), 3 * 12, 300.0).base_load_w
    sun = env.series(local_ts(2026, 3, 8, 3), 3 * 12, 300.0).base_load_w
    np.testing.assert_allclose(sat, sun, rtol=0.01)


def test_tmy3_weather(tmp_path: Path):
    path = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"
    w = load_tmy3(path)
    assert len(w.ts) == 8760 and w.typical_year and w.utc_offset_s == -5 * 3600
    assert np.all(np.diff(w.ts) == 3600.0)
    site = SiteParams(latitude=36.1, longitude=-79.95, altitude_m=273.0, timezone="America/New_York")
    params = HomeParams(site=site)
    env = Environment(params, weather=w)
    start = datetime(2026, 1, 1, tzinfo=ZoneInfo("America/New_York")).timestamp()
    s = env.series(start, 8760, 3600.0)
    assert s.outdoor_temp_c.mean() == pytest.approx(float(np.mean(w.temp_air)), abs=0.05)
    kwh_per_kwp = s.pv_available_w.sum() / params.pv.capacity_w
    assert 1200 < kwh_per_kwp < 1550  # Greensboro, NC
    # a typical year repeats: 2027 gives the same PV
    s2 = env.series(datetime(2027, 1, 1, tzinfo=ZoneInfo("America/New_York")).timestamp(), 8760, 3600.0)
    assert s2.pv_available_w.sum() == pytest.approx(s.pv_available_w.sum(), rel=0.01)
    # measured (non-typical) data refuses dates it does not cover
    measured = dataclasses.replace(w, typical_year=False)
    with pytest.raises(ValueError, match="weather data covers"):
        Environment(params, weather=measured).series(start, 24, 3600.0)
    with pytest.raises(ValueError, match="has 3 values"):
        WeatherSeries(
            ts=np.arange(4) * 3600.0, ghi=np.zeros(3), dni=np.zeros(4), dhi=np.zeros(4), temp_air=np.zeros(4)
        )
    with pytest.raises(FileNotFoundError):
        load_tmy3(tmp_path / "missing.csv")


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match=r"site\.timezone"):
        Environment(HomeParams(site=SiteParams(timezone="Mars/Olympus")))
    from hems.home import EVParams

    with pytest.raises(ValueError, match=r"ev\.departure_time"):
        Environment(HomeParams(ev=EVParams(departure_time="7.30")))
    with pytest.raises(ValueError, match="step_s"):
        Environment(P).series(YEAR0, 10, 0)
