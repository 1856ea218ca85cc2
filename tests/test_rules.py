"""The reference home's rule table, decision by decision."""

import pytest

from hems.home import HomeParams
from hems.rules import HomeState, RulesStrategy, price_class, rules_decision
from hems.tariff import Tariff, TariffPoint

P = HomeParams()
OFF = TariffPoint("off_peak", 0.14, 0.06)
MID = TariffPoint("shoulder", 0.24, 0.06)
PEAK = TariffPoint("peak", 0.46, 0.06)


def decide(point, klass, weekend=False, **state):
    base = dict(ts=0.0, pv_power_w=0.0, home_load_w=800.0, battery_soc_pct=50.0)
    return rules_decision(HomeState(**{**base, **state}), point, klass=klass, weekend=weekend, params=P)


def test_price_classes_of_the_default_tariff():
    t = Tariff.default()
    prices = [p.import_price_per_kwh for p in t.periods]
    lo, hi = min(prices), max(prices)
    classes = {
        p.name: price_class(TariffPoint(p.name, p.import_price_per_kwh, 0.06), lo, hi) for p in t.periods
    }
    assert classes == {"off_peak": "cheap", "super_off_peak": "cheap", "shoulder": "mid", "peak": "peak"}


def test_off_peak_charges_battery_to_full_and_ev_to_target():
    d = decide(OFF, "cheap", ev_plugged=True, ev_soc_pct=40.0)
    assert d.battery_charge_power_w == P.battery.max_charge_w
    assert d.ev_power_limit_w == P.ev.charger_max_w
    assert d.water_heater_enabled
    full = decide(OFF, "cheap", battery_soc_pct=100.0, ev_plugged=True, ev_soc_pct=80.0)
    assert full.battery_charge_power_w == 0.0
    assert full.ev_power_limit_w == 0.0  # EV at its 80 % target: stop


def test_shoulder_charges_only_from_surplus_battery_first_then_ev():
    none = decide(MID, "mid", pv_power_w=500.0, home_load_w=900.0, ev_plugged=True, ev_soc_pct=50.0)
    assert none.battery_charge_power_w == 0.0  # no discharge in the shoulder: kept for the peak
    assert none.ev_power_limit_w == 0.0
    some = decide(MID, "mid", pv_power_w=4000.0, home_load_w=1000.0, ev_plugged=True, ev_soc_pct=50.0)
    assert some.battery_charge_power_w == pytest.approx(3000.0)
    assert some.ev_power_limit_w == 0.0
    lots = decide(MID, "mid", pv_power_w=15000.0, home_load_w=500.0, ev_plugged=True, ev_soc_pct=50.0)
    assert lots.battery_charge_power_w == P.battery.max_charge_w
    assert lots.ev_power_limit_w == pytest.approx(15000.0 - 500.0 - P.battery.max_charge_w)
    full = decide(
        MID,
        "mid",
        pv_power_w=6000.0,
        home_load_w=1000.0,
        battery_soc_pct=100.0,
        ev_plugged=True,
        ev_soc_pct=50.0,
    )
    assert full.battery_charge_power_w == 0.0
    assert full.ev_power_limit_w == pytest.approx(5000.0)


def test_peak_discharges_to_reserve_and_defers_loads():
    d = decide(
        PEAK, "peak", pv_power_w=300.0, home_load_w=2300.0, ev_plugged=True, ev_soc_pct=30.0, tank_temp_c=52
    )
    assert d.battery_charge_power_w == pytest.approx(-2000.0)  # covers the home's net load
    assert d.ev_power_limit_w == 0.0
    assert not d.water_heater_enabled
    at_reserve = decide(PEAK, "peak", home_load_w=2300.0, battery_soc_pct=20.0)
    assert at_reserve.battery_charge_power_w == 0.0
    cold_tank = decide(PEAK, "peak", tank_temp_c=P.water_heater.min_temp_c - 1)
    assert cold_tank.water_heater_enabled  # hot water is not deferred below its minimum


def test_weekend_holds_battery_and_exports():
    d = decide(
        TariffPoint("super_off_peak", 0.11, 0.06),
        "cheap",
        weekend=True,
        pv_power_w=6000.0,
        ev_plugged=True,
        ev_soc_pct=50.0,
    )
    assert d.battery_charge_power_w == 0.0
    assert d.ev_power_limit_w == P.ev.charger_max_w


def test_service_limit_cuts_ev_then_battery():
    limit = P.site.service_limit_w  # 48 kW
    d = decide(OFF, "cheap", home_load_w=40000.0, ev_plugged=True, ev_soc_pct=10.0)
    total = 40000.0 + d.ev_power_limit_w + max(0.0, d.battery_charge_power_w)
    assert total <= limit + 1e-6
    assert d.ev_power_limit_w == 0.0 or d.ev_power_limit_w >= P.ev.charger_min_w  # never below 6 A
    assert any("service limit" in r for r in d.reasons)
    worse = decide(OFF, "cheap", home_load_w=47000.0, ev_plugged=True, ev_soc_pct=10.0)
    assert worse.ev_power_limit_w == 0.0
    assert worse.battery_charge_power_w == pytest.approx(1000.0)


def test_strategy_uses_the_tariff_and_local_weekday():
    s = RulesStrategy(Tariff.default(), P)
    # Tuesday 2026-07-07 17:00 in Los Angeles (UTC-7) is weekday peak
    ts = 1783468800.0
    d = s.decide(HomeState(ts=ts, pv_power_w=0.0, home_load_w=1500.0, battery_soc_pct=80.0))
    assert d.period == "peak"
    assert d.battery_charge_power_w == pytest.approx(-1500.0)
