"""The simulated home as a whole: energy balance, controls, EV trips, determinism, stepping modes."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from hems.home import BatteryParams, HomeParams
from hems.sim import NO_CONTROL, Controls, Environment, RunResult, SimHome, StepResult, simulate

TZ = ZoneInfo("America/Los_Angeles")
P = HomeParams()
START = datetime(2026, 7, 6, tzinfo=TZ).timestamp()  # a Monday
WEEK = 7 * 288


def varied_controls(home: SimHome, i: int) -> Controls:
    """A deliberately erratic gateway: every kind of control, including requests the devices must clamp."""
    k = (i // 6) % 12
    bat = [None, 11500.0, -11500.0, 2000.0, -500.0, 0.0, 50000.0, -50000.0, None, 3000.0, None, -3000.0][k]
    pv_limit = [None, 0.0, 1500.0, None, 4000.0, None][(i // 10) % 6]
    ev_limit = [None, 0.0, 1000.0, 3000.0, 20000.0][(i // 7) % 5]
    mode = ["auto", "heat", "cool", "off"][(i // 50) % 4]
    return Controls(
        battery_charge_power_w=bat,
        pv_limit_w=pv_limit,
        ev_power_limit_w=ev_limit,
        water_heater_enabled=(i // 20) % 3 != 0,
        hvac_mode=mode,
        heat_setpoint_c=[None, 18.0, 21.0][(i // 30) % 3],
        cool_setpoint_c=[None, 23.0, 26.0][(i // 40) % 3],
    )


@pytest.fixture(scope="module")
def week():
    env = Environment(P, seed=11)
    series = env.series(START, WEEK, 300.0)
    home = SimHome(P, env, START)
    controls = []

    def fn(h: SimHome, i: int) -> Controls:
        c = varied_controls(h, i)
        controls.append(c)
        return c

    return series, home.run(series, fn), controls, home


def test_energy_balance_every_step(week):
    series, r, _, _ = week
    assert isinstance(r, RunResult) and len(r) == WEEK
    charge = np.maximum(r.battery_power_w, 0)
    discharge = np.maximum(-r.battery_power_w, 0)
    supply = r.pv_power_w + r.import_w + discharge
    demand = r.home_load_w + r.ev_power_w + r.export_w + charge
    np.testing.assert_allclose(supply, demand, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        r.grid_power_w, r.home_load_w + r.ev_power_w + r.battery_power_w - r.pv_power_w
    )
    assert np.all(r.import_w >= 0) and np.all(r.export_w >= 0)
    assert np.all(np.minimum(r.import_w, r.export_w) == 0)
    np.testing.assert_allclose(r.home_load_w, r.base_load_w + r.hvac_power_w + r.water_heater_power_w)
    np.testing.assert_array_equal(r.ts, series.ts)
    np.testing.assert_array_equal(r.pv_available_w, series.pv_available_w)


def test_controls_are_obeyed_within_device_limits(week):
    series, r, controls, _ = week
    b = P.battery
    assert r.battery_soc_pct.min() >= b.min_soc_pct - 1e-9 and r.battery_soc_pct.max() <= b.max_soc_pct + 1e-9
    assert r.battery_soc_pct.min() == pytest.approx(b.min_soc_pct)  # the erratic requests hit both ends
    assert r.battery_soc_pct.max() >= b.max_soc_pct - 1.0  # and come close to the top
    soc_wh = np.concatenate([[b.initial_soc_pct], r.battery_soc_pct]) * b.capacity_wh / 100
    expected = np.where(r.battery_power_w > 0, r.battery_power_w * 0.95, r.battery_power_w / 0.95) / 12
    np.testing.assert_allclose(np.diff(soc_wh), expected, atol=1e-6)
    exact_bat = exact_ev = 0
    for i, c in enumerate(controls):
        avail = series.pv_available_w[i]
        want_pv = avail if c.pv_limit_w is None else min(avail, c.pv_limit_w)
        assert r.pv_power_w[i] == pytest.approx(want_pv)
        if c.battery_charge_power_w is not None:
            req = c.battery_charge_power_w
            assert abs(r.battery_power_w[i]) <= abs(req) + 1e-9
            assert abs(r.battery_power_w[i]) <= 11500.0 + 1e-9
            if 0 < abs(req) <= 11500.0 and 10.0 < r.battery_soc_pct[i] < 95.0:
                assert r.battery_power_w[i] == pytest.approx(req)
                exact_bat += 1
        ev = r.ev_power_w[i]
        if not r.ev_plugged[i] or c.ev_power_limit_w in (0.0, 1000.0):
            assert ev == 0.0
        elif c.ev_power_limit_w is not None and r.ev_soc_pct[i] < 99.9:
            assert ev == pytest.approx(min(c.ev_power_limit_w, P.ev.charger_max_w))
            exact_ev += 1
        if c.hvac_mode == "off":
            assert r.hvac_power_w[i] == 0.0
        if not c.water_heater_enabled:
            assert r.water_heater_power_w[i] == 0.0
    assert exact_bat > 200 and exact_ev > 50
    assert r.pv_power_w.sum() < series.pv_available_w.sum()  # some curtailment happened
    assert (r.water_heater_power_w > 0).any() and (r.hvac_power_w > 0).any() and (r.ev_power_w > 0).any()


def test_ev_trips_unplug_and_reduce_soc(week):
    series, r, _, _ = week
    arrivals = np.flatnonzero(series.ev_trip_wh > 0)
    assert len(arrivals) >= 5
    assert not r.ev_plugged[arrivals - 1].any() and r.ev_plugged[arrivals].all()
    soc_wh = r.ev_soc_pct * P.ev.capacity_wh / 100
    for i in arrivals:
        charged = r.ev_power_w[i] * 0.92 / 12
        assert soc_wh[i] == pytest.approx(max(soc_wh[i - 1] - series.ev_trip_wh[i], 0) + charged)
    away = ~series.ev_home
    assert away.sum() > 5 * 100 and np.all(r.ev_power_w[away] == 0) and not r.ev_plugged[away].any()
    # SOC only changes by charging while home
    same = ~np.isin(np.arange(len(r)), arrivals)
    d = np.diff(soc_wh)[same[1:]]
    np.testing.assert_allclose(d, (r.ev_power_w[1:] * 0.92 / 12)[same[1:]], atol=1e-6)


def test_state_accessors_track_the_last_step(week):
    _, r, _, home = week
    assert home.now == START + WEEK * 300
    assert home.battery_soc_pct == r.battery_soc_pct[-1]
    assert home.ev_soc_pct == r.ev_soc_pct[-1]
    assert home.indoor_temp_c == r.indoor_temp_c[-1]
    assert home.tank_temp_c == r.tank_temp_c[-1]
    assert home.ev_plugged == bool(r.ev_plugged[-1])
    s = r[100]
    assert isinstance(s, StepResult) and s.ts == r.ts[100] and isinstance(s.ev_plugged, bool)


def test_step_by_step_matches_run_and_is_deterministic():
    env = Environment(P, seed=5)
    series = env.series(START, 288, 300.0)
    a = SimHome(P, env, START).run(series, varied_controls)
    home = SimHome(P, env, START)
    rows = []
    for i in range(len(series)):
        rows.append(home.step(300.0, varied_controls(home, i), series.sample(i)))
    for f in dataclasses.fields(StepResult):
        np.testing.assert_allclose(
            np.array([getattr(x, f.name) for x in rows], dtype=float), getattr(a, f.name).astype(float)
        )
    b = SimHome(P, Environment(P, seed=5), START).run(
        Environment(P, seed=5).series(START, 288, 300.0), varied_controls
    )
    for f in dataclasses.fields(RunResult):
        np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name))
    c = simulate(P, START, 288, 300.0, seed=6, controls_fn=varied_controls)
    assert not np.array_equal(a.grid_power_w, c.grid_power_w)


def test_real_time_stepping_uses_the_minute_cache():
    env = Environment(P, seed=2)
    t0 = datetime(2026, 7, 7, 17, 0, tzinfo=TZ).timestamp()  # spans the evening arrival
    n = 3 * 3600 // 20
    home = SimHome(P, env, t0)
    soc0 = home.ev_soc_pct
    results = [home.step(20.0, Controls(ev_power_limit_w=0.0)) for _ in range(n)]
    assert home.now == pytest.approx(t0 + 3 * 3600)
    ref = env.series(t0, 3 * 60, 60.0)
    pv_rt = np.array([x.pv_power_w for x in results]).reshape(-1, 3).mean(axis=1)
    np.testing.assert_allclose(pv_rt, ref.pv_available_w, rtol=1e-9, atol=1e-9)
    assert sum(x.import_w - x.export_w for x in results) == pytest.approx(
        sum(x.grid_power_w for x in results)
    )
    # the trip energy is applied exactly once on arrival, whatever the step length
    assert soc0 - home.ev_soc_pct == pytest.approx(ref.ev_trip_wh.sum() / P.ev.capacity_wh * 100)
    assert ref.ev_trip_wh.sum() > 0
    assert not results[0].ev_plugged and results[-1].ev_plugged


def test_no_gateway_self_consumption_and_hourly_resolution():
    start = datetime(2026, 6, 1, tzinfo=TZ).timestamp()
    env = Environment(P, seed=3)
    five = simulate(P, start, 14 * 288, 300.0, env=env)
    hourly = simulate(P, start, 14 * 24, 3600.0, env=env)
    # the battery's own mode keeps the grid at zero unless full, empty or at its power limit
    b = P.battery
    busy = (
        (five.battery_soc_pct > b.min_soc_pct + 0.01)
        & (five.battery_soc_pct < b.max_soc_pct - 0.01)
        & (np.abs(five.battery_power_w) < b.max_charge_w - 1)
    )
    assert busy.sum() > 1000
    np.testing.assert_allclose(five.grid_power_w[busy], 0.0, atol=1e-6)
    # the EV charges at full power whenever plugged and not full
    charging = five.ev_plugged & (five.ev_soc_pct < 99.99)
    assert np.all(five.ev_power_w[charging] == P.ev.charger_max_w)
    # HVAC and the water heater are on their own thermostats
    assert five.indoor_temp_c.max() <= P.hvac.cool_setpoint_c + 1e-6
    # the same home at hourly steps: the same energy within a few percent
    for name in ("pv_power_w", "base_load_w", "ev_power_w"):
        assert hourly.energy_kwh(name) == pytest.approx(five.energy_kwh(name), rel=0.01)
    for name in ("hvac_power_w", "water_heater_power_w", "import_w", "export_w"):
        assert hourly.energy_kwh(name) == pytest.approx(five.energy_kwh(name), rel=0.06)


def test_battery_limits_from_params_and_bad_controls():
    params = HomeParams(battery=BatteryParams(min_soc_pct=10.0, max_soc_pct=90.0, initial_soc_pct=50.0))
    env = Environment(params, seed=1)
    r = SimHome(params, env, START).run(
        env.series(START, 288, 300.0), lambda h, i: Controls(-20000.0 if i < 144 else 20000.0)
    )
    assert r.battery_soc_pct[:144].min() == pytest.approx(10.0)
    assert r.battery_soc_pct[144:].max() == pytest.approx(90.0)
    with pytest.raises(ValueError, match="hvac_mode"):
        Controls(hvac_mode="dehumidify")
    with pytest.raises(ValueError, match="dt_s"):
        SimHome(P, env, START).step(0.0, NO_CONTROL)
    with pytest.raises(ValueError, match="series starts"):
        SimHome(P, env, START + 60).run(env.series(START, 10, 300.0))
