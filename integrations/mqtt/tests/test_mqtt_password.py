"""Username/password login against a Mosquitto that requires it (password file made with mosquitto_passwd)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from hems.store import Store
from integrations.mqtt.tests.conftest import Broker, home_bus, link_section, make_integration, wait_for


@pytest.fixture
def password_broker(tmp_path):
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    passwords = tmp_path / "passwd"
    subprocess.run(
        [tool, "-b", "-c", str(passwords), "gateway", "s3cret-pass"], check=True, capture_output=True
    )
    b = Broker(tmp_path)
    text = b.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
    b.conf.write_text(text + f"password_file {passwords}\n")
    b.start()
    yield b
    b.stop()


async def test_username_and_password(password_broker, tmp_path):
    bus, _ = home_bus()
    good = make_integration(
        bus,
        Store(tmp_path / "good.sqlite"),
        link_section(password_broker, username="gateway", password="s3cret-pass"),
    )
    bad = make_integration(
        bus,
        Store(tmp_path / "bad.sqlite"),
        link_section(password_broker, username="gateway", password="wrong"),
    )
    await good.start()
    await bad.start()
    try:
        await wait_for(lambda: good.links[0].connected, "login with the right password")
        await asyncio.sleep(0.5)
        assert not bad.links[0].connected  # refused, retried with backoff, the gateway runs on
        bus.publish(bus.latest("inverter", "soc_pct"))
        await asyncio.sleep(0.2)
        assert bad.ctx.store.outbox_stats()["size"] >= 1  # its telemetry waits for a good login
    finally:
        await good.stop()
        await bad.stop()
