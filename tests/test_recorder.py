"""The recorder: bus readings reach the store, are rolled up, and survive a restart."""

from hems.bus import Bus
from hems.clock import ManualClock
from hems.model import Quantity, Reading
from hems.recorder import Recorder
from hems.store import Store


async def test_readings_recorded_rolled_up_and_kept_across_restart(tmp_path):
    path = tmp_path / "hems.sqlite"
    clock = ManualClock(1_800_000_000.0)  # on a minute boundary
    bus = Bus(clock)
    store = Store(path)
    rec = Recorder(bus, store, rollup_every_s=60)
    for i in range(120):  # two minutes at 1 s: 0..59 W then 100..159 W
        bus.publish(Reading("meter", Quantity.GRID_POWER_W, float(i if i < 60 else i + 40), clock.now()))
        clock.advance(1.0)
    assert rec.flush() == 120
    await rec.maintain()
    rows = store.series("meter", "grid_power_w", 1_800_000_000.0, 1_800_000_120.0, "1m")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (1_800_000_000.0, 29.5, 0.0, 59.0),
        (1_800_000_060.0, 129.5, 100.0, 159.0),
    ]
    bus.publish(Reading("meter", Quantity.GRID_POWER_W, 7.0, clock.now()))
    await rec.stop()  # flushes what is left
    store.close()

    reopened = Store(path)
    try:
        assert len(reopened.readings(device_id="meter")) == 121
        latest = {(r.device_id, r.quantity): r.value for r in reopened.latest()}
        assert latest[("meter", "grid_power_w")] == 7.0
    finally:
        reopened.close()
