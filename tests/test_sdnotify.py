"""sd_notify as systemd sees it: a real datagram socket standing in for the service manager.

`hems run` must say READY=1 once the dashboard answers and feed the watchdog at half of $WATCHDOG_USEC, and
only while its controller loop is healthy, so that systemd restarts a hung gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hems.config import parse_config
from hems.runtime import Runtime, run_forever
from hems.sdnotify import Notifier
from tests.conftest import free_port


class Manager:
    """The service manager's end of $NOTIFY_SOCKET: collects what the service sends."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def wait_for(self, predicate, timeout_s: float = 60.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.drain()):
                return self.messages
            time.sleep(0.02)
        raise AssertionError(f"service manager did not get what it waited for; got {self.messages!r}")

    async def async_wait_for(self, predicate, timeout_s: float = 60.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.drain()):
                return self.messages
            await asyncio.sleep(0.02)
        raise AssertionError(f"service manager did not get what it waited for; got {self.messages!r}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager(tmp_path):
    m = Manager(tmp_path / "notify.sock")
    yield m
    m.close()


def count(messages: list[str], field: str) -> int:
    return sum(field in m.split("\n") for m in messages)


def test_notifier_sends_each_message_as_one_datagram(manager):
    n = Notifier({"NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "30000000"})
    assert n.enabled and n.watchdog_interval_s == 15.0
    assert n.ready("dashboard on :8443")
    assert n.watchdog()
    assert n.status("two\nlines")
    assert manager.wait_for(lambda m: len(m) == 3) == [
        "READY=1\nSTATUS=dashboard on :8443",
        "WATCHDOG=1",
        "STATUS=two lines",  # a newline would start a new field
    ]


def test_abstract_socket_address(tmp_path):
    name = f"hems-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(100) == b"READY=1"


def test_without_systemd_nothing_is_sent():
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval_s is None
    assert n.ready() is False and n.watchdog() is False


def test_a_bad_socket_or_watchdog_value_is_ignored(tmp_path, caplog):
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled
    assert "neither a path nor an abstract socket" in caplog.text
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval_s is None
    # the watchdog was asked of another process (WATCHDOG_PID): not ours to feed
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "no-manager.sock")})
    assert gone.ready() is False and gone.watchdog() is False  # logged once, never raised


def test_hems_run_says_ready_when_the_dashboard_answers_and_feeds_the_watchdog(manager, tmp_path):
    port = free_port()
    config = tmp_path / "hems.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\n[web]\nport = {port}\n')
    hems = Path(sys.executable).with_name("hems")
    env = {**os.environ, "NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "400000"}  # ping every 0.2 s
    proc = subprocess.Popen(
        [str(hems), "run", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        manager.wait_for(lambda m: count(m, "READY=1") == 1, timeout_s=120)
        # READY means started: the dashboard answers at once, no waiting
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert resp.status == 200
        ready = next(m for m in manager.messages if "READY=1" in m)
        assert f"STATUS=running; dashboard http://127.0.0.1:{port}/" in ready.split("\n")
        manager.wait_for(lambda m: count(m, "WATCHDOG=1") >= 3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        manager.drain()
        assert count(manager.messages, "STOPPING=1") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out = proc.stdout.read() if proc.stdout else ""
    assert "running; dashboard:" in out


async def test_watchdog_is_not_fed_while_the_controller_loop_is_dead(manager, tmp_path):
    cfg = parse_config({"gateway": {"data_dir": str(tmp_path)}, "web": {"port": 0}})
    runtime = Runtime(config=cfg)
    notifier = Notifier({"NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "100000"})  # every 0.05 s
    task = asyncio.create_task(run_forever(runtime, notifier=notifier))
    try:
        await manager.async_wait_for(lambda m: count(m, "READY=1") == 1 and count(m, "WATCHDOG=1") >= 2)
        runtime.controller._task.cancel()  # the controller loop dies
        await manager.async_wait_for(lambda m: any("STATUS=unhealthy" in x for x in m))
        cut = len(manager.messages)
        await asyncio.sleep(0.5)  # ten watchdog intervals
        assert count(manager.drain()[cut:], "WATCHDOG=1") == 0
        assert runtime.health()["status"] != "ok"
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # run_forever's own handler: a clean stop
        await asyncio.wait_for(task, timeout=60)
    assert count(manager.drain(), "STOPPING=1") == 1
