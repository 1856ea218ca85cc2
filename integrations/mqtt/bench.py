"""``hems bench mqtt [--json] [--commands 200] [--points 20000] [--backlog 20000]``: the MQTT link's figures.

A Mosquitto broker on a free loopback port (``mosquitto`` must be installed; or ``--broker HOST:PORT``), the
integration on a bus with a fake battery, and a cloud peer (a second paho client) on the same broker.

- ``p50_ms`` / ``p99_ms``: command published by the peer → received by the gateway → the battery commanded on
  the bus → ``accepted`` response received by the peer. ``device_p50_ms`` / ``device_p99_ms``: to the battery.
- ``telemetry_points_per_s``: readings published on the bus as fast as the loop allows, every one through the
  store's outbox to the peer (QoS 1), ``telemetry_interval_s = 0``; measured until the peer has them all.
- ``drain_points_per_s``: a backlog of ``--backlog`` points left in the outbox while the broker was unreachable
  (the integration restarted on the same store) delivered after connecting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _broker(tmp: Path, given: str | None):
    if given:
        host, _, port = given.rpartition(":")
        yield host or "127.0.0.1", int(port)
        return
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if exe is None:
        raise SystemExit("hems bench mqtt: mosquitto is not installed (or pass --broker HOST:PORT)")
    port = _free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\nset_tcp_nodelay true\n"
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("hems bench mqtt: mosquitto did not start") from None
                time.sleep(0.02)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _until(predicate, timeout_s: float) -> None:
    for _ in range(int(timeout_s * 100)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise SystemExit("hems bench mqtt: timed out")


class _Battery:
    def __init__(self, on_set) -> None:
        from hems.model import Capability, DeviceInfo

        self._info = DeviceInfo("battery", "Battery", frozenset({Capability.BATTERY}), "bench")
        self.on_set = on_set

    @property
    def info(self):
        return self._info

    async def set_battery_charge_power_w(self, charge_power_w) -> None:
        self.on_set(charge_power_w)


async def run(
    host: str, port: int, tmp: Path, commands: int = 200, points: int = 20000, backlog: int = 20000
) -> dict:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from hems.bus import Bus
    from hems.clock import RealClock
    from hems.config import Config, GatewayConfig
    from hems.integration import IntegrationContext
    from hems.model import Capability, DeviceInfo, Quantity, Reading
    from hems.store import Store

    from .client import MqttIntegration

    loop = asyncio.get_running_loop()
    gw = "bench"
    base = f"hems/{gw}"
    cfg = dataclasses.replace(Config(), gateway=GatewayConfig(id=gw))
    device_t: dict[float, float] = {}
    bus = Bus(RealClock())
    bus.add_device(_Battery(lambda w: device_t.setdefault(w, time.perf_counter())))
    meter = type(
        "Meter", (), {"info": DeviceInfo("meter", "Meter", frozenset({Capability.GRID_METER}), "bench")}
    )()
    bus.add_device(meter)
    now = time.time()
    bus.publish_many(
        [
            Reading("meter", Quantity.GRID_POWER_W, 1000.0, now),
            Reading("battery", Quantity.SOC_PCT, 60.0, now),
            Reading("battery", Quantity.BATTERY_POWER_W, 0.0, now),
        ]
    )

    def section(p: int) -> dict:
        return {
            "links": [
                {
                    "name": "bench",
                    "host": host,
                    "port": p,
                    "telemetry_interval_s": 0,
                    "reconnect_min_s": 0.1,
                    "reconnect_max_s": 0.5,
                }
            ]
        }

    # the cloud peer
    responses: dict = {}
    received = {"n": 0, "done": None, "target": 0}

    def on_message(_c, _u, msg):
        if msg.topic == f"{base}/cmd/response":
            t = time.perf_counter()
            data = json.loads(msg.payload)
            loop.call_soon_threadsafe(_answer, data, t)
        elif msg.topic.startswith(f"{base}/meter/"):
            loop.call_soon_threadsafe(_point)

    def _answer(data, t):
        fut = responses.get(data.get("id"))
        if fut is not None and not fut.done():
            fut.set_result((data, t))

    def _point():
        received["n"] += 1
        if (
            received["done"] is not None
            and received["n"] >= received["target"]
            and not received["done"].done()
        ):
            received["done"].set_result(time.perf_counter())

    peer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-peer", protocol=mqtt.MQTTv5)
    subscribed = asyncio.Event()
    peer.on_message = on_message
    peer.on_subscribe = lambda *a: loop.call_soon_threadsafe(subscribed.set)
    peer.connect(host, port)
    peer.subscribe([(f"{base}/cmd/response", 1), (f"{base}/meter/#", 1)])
    peer.loop_start()
    peer.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await asyncio.wait_for(subscribed.wait(), 5)

    store = Store(tmp / "hems.sqlite", outbox_max_rows=max(100_000, backlog + points))
    ctx = IntegrationContext("mqtt", bus, bus.clock, cfg, section(port), store=store)
    integ = MqttIntegration(ctx)
    await integ.start()
    out: dict = {}
    try:
        deadline = time.monotonic() + 10
        while not integ.links[0].connected:
            if time.monotonic() > deadline:
                raise SystemExit("hems bench mqtt: the gateway did not connect")
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        # 1. command latency
        total, to_device = [], []
        for i in range(commands):
            value = float(-1000 - i)  # distinct values: the device callback keys on them
            cid = f"b{i}"
            fut = loop.create_future()
            responses[cid] = fut
            t0 = time.perf_counter()
            payload = {"id": cid, "type": "battery_power", "value_w": value, "duration_s": 60}
            peer.publish(f"{base}/cmd", json.dumps(payload), qos=1)
            data, t1 = await asyncio.wait_for(fut, 5)
            if data["status"] != "accepted":
                raise SystemExit(f"hems bench mqtt: command refused: {data}")
            total.append((t1 - t0) * 1000)
            to_device.append((device_t[value] - t0) * 1000)
        out.update(
            commands=commands,
            p50_ms=round(_pct(total, 0.5), 2),
            p99_ms=round(_pct(total, 0.99), 2),
            device_p50_ms=round(_pct(to_device, 0.5), 2),
            device_p99_ms=round(_pct(to_device, 0.99), 2),
            mean_ms=round(statistics.fmean(total), 2),
        )
        # 2. sustained telemetry through the outbox
        received["n"] = 0
        received["target"] = points
        received["done"] = loop.create_future()
        t0 = time.perf_counter()
        for i in range(points):
            bus.publish(Reading("meter", "grid_power_w", float(i), now + i))
            if i % 200 == 199:
                await asyncio.sleep(0)
        t_end = await asyncio.wait_for(received["done"], 120)
        out["telemetry_points"] = points
        out["telemetry_points_per_s"] = round(points / (t_end - t0))
        await _until(lambda: store.outbox_stats()["size"] == 0, 60)
    finally:
        await integ.stop()

    # 3. a backlog left while the broker was unreachable, delivered after a restart
    dead = IntegrationContext("mqtt", bus, bus.clock, cfg, section(_free_port()), store=store)
    offline = MqttIntegration(dead)
    await offline.start()
    for i in range(backlog):
        bus.publish(Reading("meter", "energy_import_wh", float(i), now + i))
        if i % 500 == 499:
            await asyncio.sleep(0)
    await _until(lambda: store.outbox_stats()["size"] >= backlog, 60)
    await offline.stop()
    received["n"] = 0
    received["target"] = backlog
    received["done"] = loop.create_future()
    again = MqttIntegration(
        IntegrationContext("mqtt", Bus(RealClock()), bus.clock, cfg, section(port), store=store)
    )
    t0 = time.perf_counter()
    await again.start()
    try:
        t_end = await asyncio.wait_for(received["done"], 120)
        out["backlog_points"] = backlog
        out["drain_points_per_s"] = round(backlog / (t_end - t0))
        out["outbox_dropped_total"] = store.outbox_stats()["dropped_total"]
    finally:
        await again.stop()
        peer.disconnect()
        peer.loop_stop()
        store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hems bench mqtt", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--commands", type=int, default=200)
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--backlog", type=int, default=20000)
    ap.add_argument(
        "--broker", help="HOST:PORT of a running broker (default: start mosquitto on a free port)"
    )
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("hems.store").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp, _broker(Path(tmp), args.broker) as (host, port):
        result = asyncio.run(run(host, port, Path(tmp), args.commands, args.points, args.backlog))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
