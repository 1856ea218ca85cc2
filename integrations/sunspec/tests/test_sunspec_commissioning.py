"""The installer adds an inverter at run time: discovery over real Modbus TCP on loopback, persisted in the
store so it comes back after a restart; a host that does not answer, or is not SunSpec, adds nothing."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from hems.bus import Bus
from hems.config import Config
from hems.integration import IntegrationContext
from hems.model import Capability, Quantity
from hems.store import Store
from integrations.sunspec import KV_ADDED, SunSpecIntegration
from integrations.sunspec.sim import RegisterServer, SunSpecSimInverter

Q = Quantity


async def wait_for(predicate, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "hems.db"))
    yield s
    s.close()


@pytest.fixture
async def integrations(store, clock):
    made: list[SunSpecIntegration] = []

    async def make(devices: list[dict] | None = None, bus: Bus | None = None) -> SunSpecIntegration:
        ctx = IntegrationContext(
            "sunspec", bus or Bus(clock), clock, Config(), {}, devices or [], store=store
        )
        integ = SunSpecIntegration(ctx)
        await integ.start()
        made.append(integ)
        return integ

    yield make
    for integ in reversed(made):
        await integ.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_add_inverter_discovers_polls_and_survives_a_restart(inverter, integrations, store, clock):
    first = await integrations()
    actions = {a["action"]: a for a in first.commission_actions()}
    assert set(actions) == {"add_inverter", "remove_inverter"}
    assert actions["add_inverter"]["params"]["port"]["default"] == 502
    assert actions["add_inverter"]["params"]["unit_id"]["default"] == 1
    assert actions["add_inverter"]["state"] == {"inverters": []}

    result = await first.commission("add_inverter", {"host": " 127.0.0.1 ", "port": inverter.port})
    assert result["device_id"] == "inverter" and result["unit_id"] == 1
    assert result["sunspec_base"] == 40000
    assert result["models"][0] == 1 and {103, 124, 160} <= set(result["models"])
    assert result["manufacturer"] and result["model"]
    bus = first.ctx.bus
    device = bus.device("inverter")
    assert device.info.capabilities == {Capability.PV_INVERTER, Capability.BATTERY}
    await wait_for(lambda: bus.value("inverter", Q.SOC_PCT) is not None, "a first poll")
    assert 0 <= bus.value("inverter", Q.SOC_PCT) <= 100
    assert bus.firmware("inverter").version == device.info.extra["version"] != ""
    assert store.kv_get(KV_ADDED) == [
        {
            "type": "sunspec",
            "host": "127.0.0.1",
            "port": inverter.port,
            "unit_id": 1,
            "name": "Hybrid inverter",
            "id": "inverter",
        }
    ]
    # The same inverter twice is refused
    with pytest.raises(ValueError, match=r"already in use as 'inverter'"):
        await first.commission("add_inverter", {"host": "127.0.0.1", "port": inverter.port})
    await first.stop()

    # A restart: the stored inverter comes back without any [[devices]] entry
    second = await integrations()
    await wait_for(lambda: second.ctx.bus.value("inverter", Q.SOC_PCT) is not None, "a poll after restart")
    state = {a["action"]: a for a in second.commission_actions()}["add_inverter"]["state"]
    assert state == {
        "inverters": [
            {
                "device_id": "inverter",
                "host": "127.0.0.1",
                "port": inverter.port,
                "unit_id": 1,
                "added_by": "installer",
            }
        ]
    }

    # Removing it forgets it for good
    assert await second.commission("remove_inverter", {"device_id": "inverter"}) == {
        "device_id": "inverter",
        "removed": True,
    }
    assert second.ctx.bus.devices() == [] and store.kv_get(KV_ADDED) == []


async def test_a_second_inverter_gets_its_own_id_beside_the_configured_one(
    inverter, integrations, home, clock
):
    other = SunSpecSimInverter(home, clock=clock)
    await other.start()
    try:
        integ = await integrations([{"type": "sunspec", "host": "127.0.0.1", "port": inverter.port}])
        result = await integ.commission(
            "add_inverter", {"host": "127.0.0.1", "port": other.port, "name": "Garage"}
        )
        assert result["device_id"] == "inverter-2"
        assert {d.info.device_id for d in integ.ctx.bus.devices()} == {"inverter", "inverter-2"}
        state = {a["action"]: a for a in integ.commission_actions()}["add_inverter"]["state"]["inverters"]
        assert [(i["device_id"], i["added_by"]) for i in state] == [
            ("inverter", "config"),
            ("inverter-2", "installer"),
        ]
        with pytest.raises(ValueError, match="is in the config file"):
            await integ.commission("remove_inverter", {"device_id": "inverter"})
    finally:
        await other.stop()


async def test_a_host_that_does_not_answer_adds_nothing(integrations, store):
    integ = await integrations()
    port = free_port()  # nothing listens there
    with pytest.raises(ValueError) as caught:
        await integ.commission("add_inverter", {"host": "127.0.0.1", "port": port})
    message = str(caught.value)
    assert message.startswith(f"127.0.0.1:{port} (unit 1) does not answer Modbus TCP")
    assert "check the address and port" in message
    assert integ.ctx.bus.devices() == [] and integ.devices == []
    assert store.kv_get(KV_ADDED) is None


async def test_a_modbus_device_that_is_not_sunspec_adds_nothing(integrations, store):
    server = RegisterServer([0] * 10)  # answers Modbus, but there is no 'SunS' marker
    await server.start()
    try:
        integ = await integrations()
        with pytest.raises(ValueError) as caught:
            await integ.commission("add_inverter", {"host": "127.0.0.1", "port": server.port, "unit_id": 3})
        message = str(caught.value)
        assert message.startswith(f"127.0.0.1:{server.port} (unit 3) is not a SunSpec device")
        assert "no SunSpec 'SunS' marker" in message
        assert integ.ctx.bus.devices() == [] and store.kv_get(KV_ADDED) is None
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("action", "params", "message"),
    [
        ("add_inverter", {}, "host = None: required, the inverter's IP address or host name"),
        ("add_inverter", {"host": "  "}, "host = '': required"),
        ("add_inverter", {"host": "10.0.0.9", "port": 70000}, "port = 70000: must be an integer 1-65535"),
        ("add_inverter", {"host": "10.0.0.9", "unit_id": "1"}, "unit_id = '1': must be an integer 0-255"),
        ("add_inverter", {"host": "10.0.0.9", "colour": "red"}, "unknown parameter(s) colour"),
        ("remove_inverter", {"device_id": "nope"}, "no inverter 'nope' was added here; added: none"),
        ("fly", {}, "unknown sunspec action 'fly'; available: add_inverter, remove_inverter"),
    ],
)
async def test_bad_requests_name_the_problem(integrations, store, action, params, message):
    integ = await integrations()
    with pytest.raises(ValueError) as caught:
        await integ.commission(action, params)
    assert message in str(caught.value)
    assert integ.devices == [] and store.kv_get(KV_ADDED) is None


async def test_two_adds_of_one_inverter_at_once_add_it_once(inverter, integrations, store):
    integ = await integrations()
    params = {"host": "127.0.0.1", "port": inverter.port}
    results = await asyncio.gather(
        integ.commission("add_inverter", params),
        integ.commission("add_inverter", params),
        return_exceptions=True,
    )
    added = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, ValueError)]
    assert len(added) == 1 and len(refused) == 1 and "already in use" in str(refused[0])
    assert [d.info.device_id for d in integ.ctx.bus.devices()] == ["inverter"]
    assert len(store.kv_get(KV_ADDED)) == 1
