"""Device physics: battery, EV, 1R1C house with heat pump, water heater."""

from __future__ import annotations

import math

import pytest

from hems.home import BatteryParams, EVParams, HVACParams, WaterHeaterParams
from hems.sim.devices import EV, Battery, House, WaterHeater

# -- battery -----------------------------------------------------------------------------------


def test_battery_charges_with_efficiency_and_power_limit():
    b = Battery(BatteryParams(), soc_pct=50.0)
    assert b.step(300.0, 20000.0) == 11500.0  # power limit
    assert b.soc_wh == pytest.approx(6750.0 + 11500.0 * 0.95 / 12)
    # an hour at full power would overfill: clamped so that SOC ends exactly full
    b = Battery(BatteryParams(), soc_pct=50.0)
    w = b.step(3600.0, 11500.0)
    assert b.soc_pct == pytest.approx(100.0)
    assert w == pytest.approx(6750.0 / 0.95)
    assert b.step(300.0, 5000.0) == 0.0  # full: no more charge


def test_battery_discharge_clamped_at_min_soc():
    b = Battery(BatteryParams(), soc_pct=10.0)  # 1350 Wh, floor 675 Wh
    w = b.step(3600.0, -11500.0)
    assert w == pytest.approx(-(1350.0 - 675.0) * 0.95)
    assert b.soc_pct == pytest.approx(5.0)
    assert b.step(60.0, -1000.0) == 0.0


def test_battery_round_trip_efficiency():
    p = BatteryParams()
    b = Battery(p, soc_pct=20.0)
    start_wh = b.soc_wh
    e_in = sum(b.step(300.0, 3000.0) for _ in range(24)) * 300 / 3600  # 6 kWh AC in
    assert e_in == pytest.approx(6000.0)
    assert b.soc_wh - start_wh == pytest.approx(e_in * 0.95)
    e_out = 0.0
    for _ in range(100):  # discharge at 3 kW back to the starting SOC
        request = min(3000.0, (b.soc_wh - start_wh) * 0.95 * 12)
        if request <= 1e-9:
            break
        e_out -= b.step(300.0, -request) * 300 / 3600
    assert b.soc_wh == pytest.approx(start_wh)
    assert e_out / e_in == pytest.approx(0.95 * 0.95)


def test_battery_soc_limits_never_crossed_under_random_requests():
    import random

    rnd = random.Random(4)
    p = BatteryParams(min_soc_pct=10.0, max_soc_pct=90.0)
    b = Battery(p)
    for _ in range(5000):
        b.step(rnd.choice([1.0, 60.0, 300.0, 3600.0]), rnd.uniform(-20000, 20000))
        assert 10.0 - 1e-9 <= b.soc_pct <= 90.0 + 1e-9


def test_battery_self_consumption():
    b = Battery(BatteryParams(), soc_pct=50.0)
    assert b.self_consumption(300.0, -2500.0) == 2500.0  # surplus charged
    assert b.self_consumption(300.0, 1800.0) == -1800.0  # net load covered
    assert b.self_consumption(300.0, 20000.0) == -11500.0  # at its power limit


# -- EV ----------------------------------------------------------------------------------------


def test_ev_min_current_and_limits():
    p = EVParams()
    ev = EV(p, soc_pct=50.0)
    assert ev.step(300.0, 1000.0) == 0.0  # below 6 A: cannot charge
    assert ev.soc_pct == 50.0
    assert ev.step(300.0, 0.0) == 0.0  # paused
    assert ev.step(300.0, 1440.0) == 1440.0
    assert ev.step(300.0, 7000.0) == 7000.0
    assert ev.step(300.0, 50000.0) == p.charger_max_w
    assert ev.step(300.0, None) == p.charger_max_w
    assert ev.step(300.0, -3000.0) == 0.0  # no V2H on this car
    soc0 = ev.soc_wh
    ev.step(3600.0, 7000.0)
    assert ev.soc_wh - soc0 == pytest.approx(7000.0 * 0.92)


def test_ev_stops_at_full_and_at_its_limit():
    p = EVParams()
    ev = EV(p, soc_pct=99.0)
    w = ev.step(3600.0, None)
    assert w == pytest.approx(0.01 * 75000.0 / 0.92)  # only what fits, as the step's mean
    assert ev.soc_pct == pytest.approx(100.0)
    assert ev.step(300.0, None) == 0.0
    ev = EV(p, soc_pct=75.0, soc_limit_pct=p.target_soc_pct)
    energy = sum(ev.step(300.0, None) for _ in range(100)) * 300 / 3600
    assert ev.soc_pct == pytest.approx(80.0)
    assert energy == pytest.approx(0.05 * 75000.0 / 0.92)


def test_ev_unplugged_and_driving():
    ev = EV(EVParams(), soc_pct=60.0, plugged=False)
    assert ev.step(300.0, None) == 0.0
    ev.drive(15000.0)
    assert ev.soc_wh == pytest.approx(45000.0 - 15000.0)
    ev.drive(1e9)
    assert ev.soc_wh == 0.0


def test_ev_v2h_discharge_floor():
    ev = EV(EVParams(v2h=True), soc_pct=21.0)
    w = ev.step(3600.0, -5000.0)
    assert w == pytest.approx(-0.01 * 75000.0 * 0.92)
    assert ev.soc_pct == pytest.approx(20.0)


# -- house -------------------------------------------------------------------------------------


def test_free_floating_house_decays_with_time_constant_rc():
    p = HVACParams(internal_gains_w=0.0, r_c_per_kw=3.0, c_kwh_per_c=5.0)
    h = House(p, temp_c=25.0)
    tau = p.r_c_per_kw / 1000 * p.c_kwh_per_c * 3.6e6
    assert tau == pytest.approx(15 * 3600)
    assert h.step(tau, 5.0, "off") == 0.0
    assert h.temp_c == pytest.approx(5.0 + 20.0 * math.exp(-1.0))
    # same result from many small steps (exact integration composes)
    h2 = House(p, temp_c=25.0)
    for _ in range(540):
        h2.step(tau / 540, 5.0, "off")
    assert h2.temp_c == pytest.approx(h.temp_c, abs=1e-9)
    # gains shift the equilibrium by R x Q
    h3 = House(HVACParams(internal_gains_w=1000.0, r_c_per_kw=3.0, c_kwh_per_c=5.0), temp_c=10.0)
    h3.step(100 * tau, 5.0, "off")
    assert h3.temp_c == pytest.approx(5.0 + 3.0)


def test_heat_pump_holds_setpoint_and_power_matches_losses():
    p = HVACParams()
    h = House(p, temp_c=20.0)
    for _ in range(12):
        w = h.step(300.0, 5.0, "heat", 20.0)
        assert h.temp_c == pytest.approx(20.0)
    loss_w = (20.0 - 5.0) / (p.r_c_per_kw / 1000) - p.internal_gains_w
    assert w == pytest.approx(loss_w / p.cop_heating)
    # cooling in summer
    h = House(p, temp_c=24.0)
    w = h.step(3600.0, 35.0, "cool", cool_setpoint_c=24.0)
    assert h.temp_c == pytest.approx(24.0)
    assert w == pytest.approx(((35.0 - 24.0) / (p.r_c_per_kw / 1000) + p.internal_gains_w) / p.cop_cooling)
    # auto between setpoints does nothing
    h = House(p, temp_c=22.0)
    assert h.step(300.0, 15.0, "auto") == 0.0
    assert 21.9 < h.temp_c < 22.0


def test_heat_pump_capacity_limit_and_large_steps_stable():
    p = HVACParams()
    h = House(p, temp_c=12.0)
    w = h.step(300.0, 0.0, "heat", 21.0)
    assert w == pytest.approx(p.max_power_w)
    assert 12.0 < h.temp_c < 21.0
    # one day in one step: stays bounded and ends between outdoor and setpoint
    h = House(p, temp_c=21.0)
    w = h.step(86400.0, -20.0, "heat", 21.0)
    assert w == pytest.approx(p.max_power_w)
    t_eq = -20.0 + 0.003 * (p.max_power_w * p.cop_heating + p.internal_gains_w)
    assert t_eq < h.temp_c < 21.0
    # "off" ignores setpoints; mode is validated
    assert House(p, temp_c=15.0).step(300.0, 0.0, "off", 21.0) == 0.0
    with pytest.raises(ValueError, match="hvac_mode"):
        House(p).step(300.0, 10.0, "dry")


# -- water heater ------------------------------------------------------------------------------


def test_water_heater_thermostat_hysteresis():
    p = WaterHeaterParams()
    low, high = p.setpoint_c - p.deadband_c, p.setpoint_c
    wh = WaterHeater(p, temp_c=52.0)  # inside the deadband: not calling
    assert not wh.calling
    temps, powers = [], []
    for _ in range(6 * 24 * 4):  # four days of standby loss only, 10-min steps
        temps.append(wh.temp_c)
        powers.append(wh.step(600.0))
    on = [i for i, w in enumerate(powers) if w > 0]
    assert on, "the tank never reheated"
    # it switches on only below setpoint - deadband, then keeps heating (hysteresis) up to the setpoint
    starts = [i for i in on if i == 0 or powers[i - 1] == 0]
    assert len(starts) >= 3
    for i in starts:
        assert temps[i] < low
        assert temps[i - 1] >= low  # it had been coasting through the deadband
    for i in on:
        if i not in starts:
            assert low - 0.1 < temps[i] < high
    assert max(temps) <= high + 1e-9
    assert min(temps) > low - 0.1  # switched on within a step of crossing
    # a heating cycle puts back what the tank lost: 5 K of 190 L plus standby
    cycle_j = sum(powers[starts[1] : starts[2]]) * 600.0
    assert cycle_j == pytest.approx(p.tank_l * 4186.0 * p.deadband_c, rel=0.02)
    # the last on-step of a cycle is partial: it stops at the setpoint inside the step
    ends = [i for i in on if powers[i + 1] == 0]
    assert all(0 < powers[i] < p.power_w for i in ends)


def test_water_heater_standby_loss_and_draw_mixing():
    p = WaterHeaterParams()
    wh = WaterHeater(p, temp_c=55.0)
    wh.step(3600.0)
    c = p.tank_l * 4186.0
    assert wh.temp_c == pytest.approx(20.0 + 35.0 * math.exp(-2.0 * 3600.0 / c))
    wh = WaterHeater(p, temp_c=55.0)
    wh.step(1.0, draw_l=40.0, enabled=False)
    assert wh.temp_c == pytest.approx(15.0 + 40.0 * math.exp(-40.0 / 190.0), abs=1e-3)


def test_water_heater_relay_blocks_heating():
    p = WaterHeaterParams()
    wh = WaterHeater(p, temp_c=40.0)
    for _ in range(6):
        assert wh.step(300.0, enabled=False) == 0.0
    assert wh.calling and wh.temp_c < 40.0
    w = wh.step(300.0, enabled=True)  # released: the thermostat still calls
    assert w == p.power_w
