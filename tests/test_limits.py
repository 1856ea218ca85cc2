"""Priority-ordered limits: safety, service limit, DR, reserve — each only tightens what the strategy asked."""

from dataclasses import replace

import pytest

from hems.bus import Bus
from hems.clock import ManualClock
from hems.controller import Controller
from hems.home import HomeParams
from hems.limits import LimitInputs, apply_limits, projected_import_w
from hems.model import Capability, DeviceInfo, Quantity, Reading, Setting
from hems.mpc import PlannerStrategy
from hems.planner import PlannerError
from hems.rules import Decision, HomeState, RulesStrategy
from hems.tariff import Tariff

P = HomeParams()


def state(**kw):
    base = dict(ts=0.0, pv_power_w=0.0, home_load_w=2000.0, battery_soc_pct=60.0, water_heater_power_w=0.0)
    return HomeState(**{**base, **kw})


def test_ground_fault_turns_pv_and_ev_off_whatever_the_plan():
    d = Decision(battery_charge_power_w=0.0, ev_power_limit_w=11000.0, water_heater_enabled=True)
    out = apply_limits(d, state(ev_plugged=True), P, LimitInputs(ground_fault=True))
    assert out.pv_limit_w == 0.0 and out.ev_power_limit_w == 0.0
    assert out.reasons[0].startswith("ground fault")


def test_dr_cap_sheds_ev_then_water_heater_then_discharges_battery():
    s = state(home_load_w=6000.0, water_heater_power_w=4500.0, ev_plugged=True)
    d = Decision(battery_charge_power_w=3000.0, ev_power_limit_w=7000.0, water_heater_enabled=True)
    out = apply_limits(d, s, P, LimitInputs(dr_import_cap_w=1000.0, dr_event="evt-9"))
    assert out.ev_power_limit_w == 0.0
    assert not out.water_heater_enabled
    # 6000 - 4500 (heater off) = 1500 W of load; the cap is 1000 W: the battery discharges 500 W
    assert out.battery_charge_power_w == pytest.approx(-500.0)
    assert projected_import_w(out, s, P) == pytest.approx(1000.0)
    assert any("evt-9" in r for r in out.reasons)


def test_dr_cap_met_already_changes_nothing():
    d = Decision(battery_charge_power_w=-1000.0, ev_power_limit_w=0.0, water_heater_enabled=True)
    out = apply_limits(d, state(), P, LimitInputs(dr_import_cap_w=5000.0))
    assert (out.battery_charge_power_w, out.water_heater_enabled) == (-1000.0, True)


def test_reserve_stops_discharge_outside_dr_but_not_during():
    d = Decision(battery_charge_power_w=-3000.0, ev_power_limit_w=0.0, water_heater_enabled=True)
    low = state(battery_soc_pct=P.battery.reserve_soc_pct - 1)
    assert apply_limits(d, low, P, LimitInputs()).battery_charge_power_w == 0.0
    assert apply_limits(d, low, P, LimitInputs(dr_import_cap_w=0.0)).battery_charge_power_w <= -2000.0


def test_service_limit_holds_for_any_strategy():
    d = Decision(
        battery_charge_power_w=P.battery.max_charge_w, ev_power_limit_w=None, water_heater_enabled=True
    )
    s = state(home_load_w=42000.0, ev_plugged=True)
    out = apply_limits(d, s, P, LimitInputs())
    assert projected_import_w(out, s, P) <= P.site.service_limit_w + 1e-6


class Dev:
    def __init__(self, device_id, caps, **extra):
        self._info = DeviceInfo(device_id, device_id, frozenset(caps), "test", extra=extra)
        self.sent = []

    @property
    def info(self):
        return self._info

    async def set_battery_charge_power_w(self, w):
        self.sent.append(("battery", w))

    async def set_pv_limit_w(self, w):
        self.sent.append(("pv", w))

    async def set_ev_power_limit_w(self, w):
        self.sent.append(("ev", w))

    async def set_switch(self, on):
        self.sent.append(("switch", on))

    async def set_hvac(self, *, mode=None, heat_setpoint_c=None, cool_setpoint_c=None):
        self.sent.append(("hvac", mode, heat_setpoint_c, cool_setpoint_c))


async def test_controller_holds_limits_when_the_planner_fails():
    clock = ManualClock(1_783_530_000.0)  # Wednesday 8 July 2026, 10:00 in Los Angeles (shoulder)
    bus = Bus(clock)
    meter = Dev("meter", {Capability.GRID_METER})
    inverter = Dev("inverter", {Capability.BATTERY, Capability.PV_INVERTER})
    charger = Dev("charger", {Capability.EV_CHARGER})
    heater = Dev("heater", {Capability.SWITCH}, load="water_heater")
    for d in (meter, inverter, charger, heater):
        bus.add_device(d)
    t = clock.now()
    bus.publish_many(
        [
            Reading("meter", Quantity.GRID_POWER_W, 9000.0, t),
            Reading("inverter", Quantity.SOC_PCT, 70.0, t),
            Reading("inverter", Quantity.BATTERY_POWER_W, 0.0, t),
            Reading("inverter", Quantity.PV_POWER_W, 0.0, t),
            Reading("charger", Quantity.EV_PLUGGED, True, t),
            Reading("charger", Quantity.POWER_W, 7000.0, t),
            Reading("heater", Quantity.POWER_W, 0.0, t),
        ]
    )

    def broken_planner(*args, **kwargs):
        raise PlannerError("HiGHS: time limit reached with no solution")

    strategy = PlannerStrategy(Tariff.default(), P, planner=broken_planner)
    controller = Controller(bus, strategy, P, dr_limit=lambda now: (1500.0, "evt-1", None))
    decision = await controller.step()
    assert strategy.stats.failures == 1
    assert any("rule table in charge" in r for r in decision.reasons)
    assert any("evt-1" in r for r in decision.reasons)
    # home load = 9000 - 7000 (EV) = 2000 W; cap 1500 W: EV paused, battery discharges >= 500 W
    assert bus.asked("charger", Setting.EV_POWER_LIMIT_W).value == 0.0
    assert bus.asked("inverter", Setting.BATTERY_CHARGE_POWER_W).value <= -500.0


async def test_dispatch_override_replaces_the_plan_but_not_the_limits():
    clock = ManualClock(1_783_530_000.0)
    bus = Bus(clock)
    meter = Dev("meter", {Capability.GRID_METER})
    inverter = Dev("inverter", {Capability.BATTERY, Capability.PV_INVERTER})
    for d in (meter, inverter):
        bus.add_device(d)
    t = clock.now()
    bus.publish_many(
        [
            Reading("meter", Quantity.GRID_POWER_W, 1000.0, t),
            Reading("inverter", Quantity.SOC_PCT, P.battery.reserve_soc_pct - 5, t),
            Reading("inverter", Quantity.BATTERY_POWER_W, 0.0, t),
            Reading("inverter", Quantity.PV_POWER_W, 0.0, t),
        ]
    )
    controller = Controller(bus, PlannerStrategy(Tariff.default(), P), P)
    controller.overrides.append(
        lambda now: {"battery_charge_power_w": -5000.0, "reasons": ["VPP dispatch d-1"]}
    )
    d = await controller.step()
    assert "VPP dispatch d-1" in d.reasons
    # below the reserve, the dispatch's discharge is refused by the reserve limit
    assert bus.asked("inverter", Setting.BATTERY_CHARGE_POWER_W).value == 0.0
    bus.publish(Reading("inverter", Quantity.SOC_PCT, 80.0, t))
    await controller.step()
    assert bus.asked("inverter", Setting.BATTERY_CHARGE_POWER_W).value == -5000.0


def test_utility_export_limit_charges_the_battery_then_curtails_pv():
    d = Decision(battery_charge_power_w=0.0, ev_power_limit_w=0.0, water_heater_enabled=True)
    s = state(pv_power_w=8000.0, home_load_w=1000.0, battery_soc_pct=50.0)
    out = apply_limits(d, s, P, LimitInputs(export_cap_w=2000.0))
    assert out.battery_charge_power_w == pytest.approx(5000.0)  # 7 kW surplus: 5 kW stored, 2 kW exported
    full = apply_limits(
        d,
        state(pv_power_w=8000.0, home_load_w=1000.0, battery_soc_pct=100.0),
        P,
        LimitInputs(export_cap_w=2000.0),
    )
    assert full.pv_limit_w == pytest.approx(3000.0)  # battery full: PV curtailed to home + 2 kW
    assert -projected_import_w(
        full, state(pv_power_w=8000.0, home_load_w=1000.0, battery_soc_pct=100.0), P
    ) == (pytest.approx(2000.0))
    stop = apply_limits(d, s, P, LimitInputs(generation_cap_w=0.0))
    assert stop.pv_limit_w == 0.0  # cease to energize


def test_planner_honours_an_export_cap_window():
    from hems.planner import DRWindow, plan
    from hems.planner.scenarios import simple_inputs

    inputs = simple_inputs(16, pv_w=7000.0, base_w=500.0, export_price=0.10, battery_soc_pct=100.0)
    inputs = replace(inputs, dr_windows=(DRWindow(4, 12, export_cap_w=1500.0, event_id="sep2:x"),))
    p = plan(P, inputs)
    assert max(p.grid_export_w[4:12]) <= 1500.0 + 1e-6
    assert max(p.grid_export_w[:4]) > 5000.0  # outside the window the surplus is sold
    assert p.pv_curtailed_w[4:12].sum() > 0  # what cannot be stored or used is curtailed


async def test_controller_takes_utility_der_limits():
    clock = ManualClock(1_783_458_000.0)
    bus = Bus(clock)
    meter = Dev("meter", {Capability.GRID_METER})
    inverter = Dev("inverter", {Capability.BATTERY, Capability.PV_INVERTER})
    for d in (meter, inverter):
        bus.add_device(d)
    t = clock.now()
    bus.publish_many(
        [
            Reading("meter", Quantity.GRID_POWER_W, -7000.0, t),
            Reading("inverter", Quantity.SOC_PCT, 100.0, t),
            Reading("inverter", Quantity.BATTERY_POWER_W, 0.0, t),
            Reading("inverter", Quantity.PV_POWER_W, 8000.0, t),
        ]
    )
    controller = Controller(bus, RulesStrategy(Tariff.default(), P), P)
    controller.der_limits.append(lambda now: {"export_cap_w": 0.0})
    await controller.step()
    assert bus.asked("inverter", Setting.PV_LIMIT_W).value == pytest.approx(1000.0)  # zero export


def test_home_load_uses_values_from_the_meters_moment():
    from hems.controller import ReadingHistory, state_from_bus

    clock = ManualClock(1_783_530_000.0)
    bus = Bus(clock)
    for d in (
        Dev("meter", {Capability.GRID_METER}),
        Dev("inverter", {Capability.BATTERY, Capability.PV_INVERTER}),
        Dev("charger", {Capability.EV_CHARGER}),
    ):
        bus.add_device(d)
    history = ReadingHistory(bus)
    t = clock.now()
    bus.publish_many(
        [
            Reading("inverter", Quantity.SOC_PCT, 60.0, t),
            Reading("inverter", Quantity.BATTERY_POWER_W, 0.0, t),
            Reading("inverter", Quantity.PV_POWER_W, 0.0, t),
            Reading("charger", Quantity.EV_PLUGGED, True, t),
            Reading("charger", Quantity.POWER_W, 11000.0, t),
            Reading("meter", Quantity.GRID_POWER_W, 12000.0, t),  # 1 kW home + 11 kW EV
        ]
    )
    # the EV was paused: the charger reports 0 W at once, the meter's next report is still to come
    bus.publish(Reading("charger", Quantity.POWER_W, 0.0, t + 3))
    naive = state_from_bus(bus)
    consistent = state_from_bus(bus, history)
    assert naive.home_load_w == pytest.approx(12000.0)  # stale meter minus fresh EV: a phantom 11 kW load
    assert consistent.home_load_w == pytest.approx(1000.0)
    history.close()


async def test_utility_load_limit_caps_battery_charging():
    clock = ManualClock(1_783_400_000.0)  # Monday 6 July 2026, 21:53 local: shoulder, then off-peak
    bus = Bus(clock)
    for d in (
        Dev("meter", {Capability.GRID_METER}),
        Dev("inverter", {Capability.BATTERY, Capability.PV_INVERTER}),
    ):
        bus.add_device(d)
    t = clock.now()
    bus.publish_many(
        [
            Reading("meter", Quantity.GRID_POWER_W, 500.0, t),
            Reading("inverter", Quantity.SOC_PCT, 30.0, t),
            Reading("inverter", Quantity.BATTERY_POWER_W, 0.0, t),
            Reading("inverter", Quantity.PV_POWER_W, 0.0, t),
        ]
    )
    controller = Controller(bus, RulesStrategy(Tariff.default(), P), P)
    controller.der_limits.append(lambda now: {"battery_max_charge_w": 2000.0})
    clock.set(1_783_404_000.0)  # 23:00: off-peak, the rule table charges at full power
    await controller.step()
    assert bus.asked("inverter", Setting.BATTERY_CHARGE_POWER_W).value == 2000.0
