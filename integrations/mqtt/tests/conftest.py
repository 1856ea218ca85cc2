"""Fixtures: Mosquitto brokers on free ports (plain, restartable with persistence; TLS with client certificates
made by ``cryptography``), fake devices on a bus, a test subscriber, and a factory for the integration."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

import hems.pki as pki_mod
from hems.bus import Bus
from hems.clock import RealClock
from hems.config import Config, GatewayConfig
from hems.integration import IntegrationContext
from hems.model import Capability, DeviceInfo, Quantity, Reading
from hems.store import Store
from integrations.mqtt.client import MqttIntegration

GW = "gw1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if exe is None:
        pytest.fail("mosquitto is not installed: run `make test`, or `sudo apt-get install mosquitto`")
    return exe


class Broker:
    """A Mosquitto process on a fixed free port that can be stopped and started again (state persisted)."""

    def __init__(self, workdir: Path, tls: dict | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.dir = workdir
        self.proc: subprocess.Popen | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {workdir}/",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:  # mosquitto would drop to its own user and not read the test's files
            lines.append("user root")
        if tls:
            lines += [
                f"cafile {tls['ca_file']}",
                f"certfile {tls['server_cert']}",
                f"keyfile {tls['server_key']}",
                "require_certificate true",
            ]
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [_mosquitto_exe(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}); config {self.conf}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def _name(cn: str) -> x509.Name:
    return pki_mod.name(cn)


def _cert(subject: str, key, issuer, issuer_key, *, ca: bool = False, server: bool = False):
    return pki_mod.certificate(subject, key, issuer, issuer_key, ca=ca, server=server)


def _write(path: Path, cert, key) -> tuple[str, str]:
    return pki_mod.write_pem(path, cert, key)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("mqtt-pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("HEMS MQTT test CA", ca_key, _name("HEMS MQTT test CA"), ca_key, ca=True)
    out = {}
    out["ca_file"], _ = _write(d / "ca", ca, ca_key)
    for role, server in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        out[f"{role}_cert"], out[f"{role}_key"] = _write(
            d / role, _cert(f"{role}.test", key, ca.subject, ca_key, server=server), key
        )
    return out


@pytest.fixture
def tls_broker(tmp_path, pki):
    b = Broker(tmp_path, tls=pki)
    b.start()
    yield b
    b.stop()


# ---- fake devices -------------------------------------------------------------------------------------------
class _Dev:
    def __init__(self, device_id: str, caps: set, **extra) -> None:
        self._info = DeviceInfo(
            device_id, device_id.replace("-", " ").title(), frozenset(caps), "test", "ACME", "T1", extra
        )
        self.calls: list[tuple[str, Any]] = []

    @property
    def info(self) -> DeviceInfo:
        return self._info


class FakeMeter(_Dev):
    pass


class FakeInverter(_Dev):
    async def set_pv_limit_w(self, limit_w):
        self.calls.append(("pv_limit_w", limit_w))

    async def set_battery_charge_power_w(self, charge_power_w):
        self.calls.append(("battery_charge_power_w", charge_power_w))


class FakeCharger(_Dev):
    async def set_ev_power_limit_w(self, limit_w):
        self.calls.append(("ev_power_limit_w", limit_w))


class FakeRelay(_Dev):
    async def set_switch(self, on):
        self.calls.append(("switch_on", on))


class FakeThermostat(_Dev):
    async def set_hvac(self, *, mode=None, heat_setpoint_c=None, cool_setpoint_c=None):
        self.calls.append(("hvac", mode))


def home_bus(soc_pct: float = 60.0, grid_w: float = 1500.0) -> tuple[Bus, dict]:
    bus = Bus(RealClock())
    devs = {
        "meter": FakeMeter("meter", {Capability.GRID_METER}),
        "inverter": FakeInverter("inverter", {Capability.PV_INVERTER, Capability.BATTERY}),
        "ev": FakeCharger("ev", {Capability.EV_CHARGER}),
        "water-heater": FakeRelay("water-heater", {Capability.SWITCH, Capability.METER}, load="water_heater"),
        "thermostat": FakeThermostat("thermostat", {Capability.THERMOSTAT}),
    }
    for d in devs.values():
        bus.add_device(d)
    now = time.time()
    bus.publish_many(
        [
            Reading("meter", Quantity.GRID_POWER_W, grid_w, now),
            Reading("meter", Quantity.ENERGY_IMPORT_WH, 1000.0, now),
            Reading("meter", Quantity.ENERGY_EXPORT_WH, 10.0, now),
            Reading("inverter", Quantity.PV_POWER_W, 3000.0, now),
            Reading("inverter", Quantity.SOC_PCT, soc_pct, now),
            Reading("inverter", Quantity.BATTERY_POWER_W, 0.0, now),
            Reading("inverter", Quantity.BATTERY_SETPOINT_W, "auto", now),
            Reading("ev", Quantity.EV_PLUGGED, True, now),
            Reading("ev", Quantity.POWER_W, 7000.0, now),
            Reading("water-heater", Quantity.SWITCH_ON, True, now),
            Reading("water-heater", Quantity.POWER_W, 4500.0, now),
            Reading("thermostat", Quantity.HVAC_MODE, "cool", now),
        ]
    )
    return bus, devs


def link_section(broker, **kw) -> dict:
    link = {
        "name": "cloud",
        "host": broker.host,
        "port": broker.port,
        "telemetry_interval_s": 0,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "keepalive_s": 10,
    }
    link.update(kw)
    return {"links": [link]}


def make_integration(
    bus: Bus, store: Store | None, section: dict, *, dr=None, gateway_id: str = GW
) -> MqttIntegration:
    cfg = dataclasses.replace(Config(), gateway=GatewayConfig(id=gateway_id))
    ctx = IntegrationContext("mqtt", bus, bus.clock, cfg, section, store=store, dr=dr)
    return MqttIntegration(ctx)


# ---- a test subscriber (its own paho thread; tests may use threads) -------------------------------------------
class Listener:
    def __init__(
        self, broker, topic: str = f"hems/{GW}/#", client_id: str = "test-listener", tls: dict | None = None
    ):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False
        )
        if tls:
            c.tls_set(ca_certs=tls["ca_file"], certfile=tls["client_cert"], keyfile=tls["client_key"])
        c.reconnect_delay_set(0.1, 0.3)  # type: ignore[arg-type]

        def on_connect(client, userdata, flags, rc, props):
            client.subscribe(topic, qos=1)

        c.on_connect = on_connect
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = self._on_message
        self.client = c
        c.connect(broker.host, broker.port, 10)
        c.loop_start()
        if not self.ready.wait(5):
            raise TimeoutError("test listener did not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def json_on(self, topic: str) -> list[Any]:
        return [json.loads(p) for p in self.on(topic)]

    def publish(self, topic: str, payload: Any) -> None:
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        self.client.publish(topic, data, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)
