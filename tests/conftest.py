"""Shared fixtures: a real Mosquitto broker on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory) -> dict:
    """Start Mosquitto for the test session; yields {'host', 'port'}. `make test` installs it."""
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if exe is None:
        pytest.fail("mosquitto is not installed: run `make test`, or `sudo apt-get install mosquitto`")
    port = free_port()
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        yield {"host": "127.0.0.1", "port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


OWNER_PASSWORD = (
    "kitchen-tablet-42"  # what tests give `Runtime(owner_password=...)` / `hems dev --owner-password`
)


async def login(url: str, password: str = OWNER_PASSWORD, username: str = "owner"):
    """An aiohttp session logged in to the dashboard at ``url``, sending the CSRF header on every request."""
    import aiohttp

    session = aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # unsafe: cookies for 127.0.0.1
        timeout=aiohttp.ClientTimeout(total=60),  # a request that hangs fails in a minute, not aiohttp's five
    )
    async with session.post(url + "/api/login", json={"username": username, "password": password}) as resp:
        body = await resp.json()
        if resp.status != 200:
            await session.close()
            raise AssertionError(f"login failed: {resp.status} {body}")
    session.headers["X-CSRF-Token"] = body["csrf_token"]
    return session
