"""The bus: devices by capability, latest values, bounded streams, commands routed and remembered."""

import asyncio

import pytest

from hems.bus import Bus
from hems.clock import ManualClock
from hems.model import Capability, Command, CommandError, DeviceInfo, DeviceStatus, Quantity, Reading, Setting


class FakeBattery:
    """A real implementation of the Battery capability, in memory (it is what a test device is)."""

    def __init__(self, device_id="bat", fail=False):
        self._info = DeviceInfo(device_id, "Battery", frozenset({Capability.BATTERY}), "test")
        self.setpoints = []
        self.fail = fail

    @property
    def info(self):
        return self._info

    async def set_battery_charge_power_w(self, charge_power_w):
        if self.fail:
            raise RuntimeError("modbus timeout")
        self.setpoints.append(charge_power_w)


class Meter:
    def __init__(self):
        self._info = DeviceInfo("meter", "Meter", frozenset({Capability.GRID_METER}), "test")

    @property
    def info(self):
        return self._info


def test_latest_value_per_device_and_quantity():
    bus = Bus(ManualClock(100.0))
    bus.publish(Reading("meter", Quantity.GRID_POWER_W, 1200.0, 100.0))
    bus.publish(Reading("meter", Quantity.GRID_POWER_W, -300.0, 101.0))
    bus.publish(Reading("meter", Quantity.VOLTAGE_V, 240.1, 101.0))
    assert bus.value("meter", Quantity.GRID_POWER_W) == -300.0
    assert bus.latest("meter", Quantity.VOLTAGE_V).ts == 101.0
    assert bus.value("meter", "nope", default=7) == 7
    snap = bus.snapshot()
    assert set(snap["meter"]) == {"grid_power_w", "voltage_v"}


async def test_subscription_filters_and_streams_in_order():
    bus = Bus(ManualClock())
    sub = bus.subscribe(device_id="meter")
    for i in range(5):
        bus.publish(Reading("meter", Quantity.GRID_POWER_W, float(i), float(i)))
        bus.publish(Reading("other", Quantity.GRID_POWER_W, 99.0, float(i)))
    got = [await asyncio.wait_for(sub.get(), 1) for _ in range(5)]
    assert [r.value for r in got] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert sub.get_nowait() is None
    sub.close()
    bus.publish(Reading("meter", Quantity.GRID_POWER_W, 5.0, 5.0))
    assert sub.get_nowait() is None  # closed subscriptions get nothing more


def test_slow_subscriber_drops_oldest_and_counts():
    bus = Bus(ManualClock())
    sub = bus.subscribe(maxsize=3)
    for i in range(10):
        bus.publish(Reading("m", Quantity.POWER_W, float(i), float(i)))
    assert sub.dropped == 7
    assert [r.value for r in sub.drain()] == [7.0, 8.0, 9.0]


async def test_command_routed_to_capability_and_remembered():
    bus = Bus(ManualClock(50.0))
    battery = FakeBattery()
    bus.add_device(battery)
    bus.add_device(Meter())
    assert [d.info.device_id for d in bus.devices(Capability.BATTERY)] == ["bat"]
    sent = await bus.send(Command("bat", Setting.BATTERY_CHARGE_POWER_W, -2500.0))
    assert battery.setpoints == [-2500.0]
    assert sent.ts == 50.0  # stamped with the bus clock
    assert bus.asked("bat", Setting.BATTERY_CHARGE_POWER_W).value == -2500.0


async def test_command_errors_name_the_problem_and_do_not_mark_asked():
    bus = Bus(ManualClock())
    bus.add_device(FakeBattery("bad", fail=True))
    bus.add_device(Meter())
    with pytest.raises(CommandError, match=r"bad.*modbus timeout"):
        await bus.send(Command("bad", Setting.BATTERY_CHARGE_POWER_W, 100.0))
    assert bus.asked("bad", Setting.BATTERY_CHARGE_POWER_W) is None
    with pytest.raises(CommandError, match=r"has no battery capability"):
        await bus.send(Command("meter", Setting.BATTERY_CHARGE_POWER_W, 100.0))
    with pytest.raises(CommandError, match="no device 'ghost'"):
        await bus.send(Command("ghost", Setting.SWITCH_ON, True))


def test_device_claiming_a_capability_it_lacks_is_refused():
    class Liar:
        info = DeviceInfo("liar", "Liar", frozenset({Capability.SWITCH}), "test")

    with pytest.raises(TypeError, match="claims switch"):
        Bus().add_device(Liar())


def test_status_changes_published_once():
    bus = Bus(ManualClock(10.0))
    sub = bus.subscribe(quantity=Quantity.STATUS)
    bus.add_device(Meter())
    bus.set_status("meter", DeviceStatus.FAULTY, "garbage frame")
    bus.set_status("meter", DeviceStatus.FAULTY, "garbage again")  # no repeat
    bus.set_status("meter", DeviceStatus.OK)
    assert [r.value for r in sub.drain()] == ["ok", "faulty", "ok"]
    assert bus.status("meter")[0] is DeviceStatus.OK
