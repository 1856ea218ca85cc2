"""dev_peer and create(ctx): the integration as the runtime starts it."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from hems.clock import RealClock
from hems.config import Config, ConfigError
from hems.integration import IntegrationContext
from integrations.sep2 import create
from integrations.sep2.server import dev_peer

from .conftest import home_bus, until


async def test_dev_peer_and_create():
    clock = RealClock()
    peer = await dev_peer(SimpleNamespace(clock=clock, host="127.0.0.1", log=logging.getLogger("t")))
    try:
        assert peer.replaces == set() and peer.devices == []
        assert set(peer.section) >= {"server_url", "cert_file", "key_file", "ca_file", "pin"}
        bus, _ = home_bus(clock)
        ctx = IntegrationContext(
            name="sep2", bus=bus, clock=clock, config=Config(), section=dict(peer.section)
        )
        integ = create(ctx)
        await integ.start()
        try:
            await until(lambda: integ.status()["end_device"] is not None, timeout=5, what="discovery")
            assert integ.status()["lfdi"] == peer.server.pki.device_lfdi
        finally:
            await integ.stop()
    finally:
        await peer.stop()


def test_create_refuses_bad_config():
    clock = RealClock()
    bus, _ = home_bus(clock)
    ctx = IntegrationContext(name="sep2", bus=bus, clock=clock, config=Config(), section={"server_url": "x"})
    with pytest.raises(ConfigError, match="server_url"):
        create(ctx)
