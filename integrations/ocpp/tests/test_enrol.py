"""Enrolling chargers at run time over real websockets: unknown ones are refused and listed as waiting, an
enrolled one connects with basic auth (its password kept only as a hash) and is still enrolled after a restart."""

from __future__ import annotations

import json

import pytest

from hems.bus import Bus
from hems.clock import SimClock
from hems.config import Config
from hems.integration import IntegrationContext
from hems.model import DeviceStatus
from hems.store import Store
from integrations.ocpp.csms import OcppIntegration
from integrations.ocpp.enrol import KV_CHARGERS, verify_password
from integrations.ocpp.sim import SimChargePoint, ToyEV

from .conftest import PASSWORD, SPEED, wait_for

CP = "driveway"


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "hems.db"))
    yield s
    s.close()


@pytest.fixture
async def world(store):
    """Make CSMSs (sharing one store, as restarts do) and charge points; stop everything afterwards."""
    clock = SimClock(speed=SPEED)
    ev = ToyEV(clock, tick_s=0.02)
    ev.start()
    made: list = []

    async def csms(**section) -> OcppIntegration:
        bus = Bus(clock)
        ctx = IntegrationContext(
            "ocpp", bus, clock, Config(), {"port": 0, "heartbeat_interval_s": 30, **section}, [], store=store
        )
        integ = OcppIntegration(ctx)
        await integ.start()
        made.append(integ)
        return integ

    async def charger(
        integ: OcppIntegration, cp_id: str = CP, password: str | None = PASSWORD
    ) -> SimChargePoint:
        cp = SimChargePoint(
            f"{integ.url}/{cp_id}",
            "2.0.1",
            ev=ev,
            clock=clock,
            password=password,
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        )
        await cp.start()
        made.append(cp)
        return cp

    yield csms, charger
    for thing in reversed(made):
        await thing.stop()
    await ev.stop()


async def test_an_unknown_charger_waits_is_enrolled_connects_and_stays_enrolled(world, store):
    csms, charger = world
    integ = await csms()
    cp = await charger(integ)
    # Unknown: refused at the handshake, listed for the installer
    await wait_for(lambda: CP in integ.waiting and integ.waiting[CP]["attempts"] >= 2, "the refused attempts")
    assert cp.boots == 0 and integ.ctx.bus.devices() == []
    state = {a["action"]: a for a in integ.commission_actions()}["enrol_charger"]["state"]
    assert state["waiting"][0]["charge_point_id"] == CP and state["waiting"][0]["remote"] == "127.0.0.1"
    assert state["enrolled"] == [] and state["security_profile"] == 1
    assert {a["action"]: a for a in integ.commission_actions()}["enrol_charger"]["params"]["charge_point_id"][
        "choices"
    ] == [CP]

    result = await integ.commission(
        "enrol_charger",
        {"charge_point_id": CP, "password": PASSWORD, "name": "Driveway", "id_tags": "SIMTAG01"},
    )
    assert result == {
        "charge_point_id": CP,
        "url": f"{integ.url}/{CP}",
        "security_profile": 1,
        "password_generated": False,
    }
    assert "password" not in result
    # It connects on its next retry, boots, and is a charger on the bus
    await wait_for(lambda: cp.boots == 1 and integ.devices[CP].ready.is_set(), "the enrolled charger's boot")
    assert integ.ctx.bus.status(CP)[0] is DeviceStatus.OK
    assert integ.ctx.bus.device(CP).info.name == "Driveway"
    assert CP not in integ.waiting
    assert integ.ctx.bus.firmware(CP).version == "1.0.0"
    # Only a hash of the password is kept
    stored = store.kv_get(KV_CHARGERS)
    assert [e["id"] for e in stored] == [CP] and PASSWORD not in json.dumps(stored)
    assert verify_password(PASSWORD, stored[0]["password_hash"])
    assert stored[0]["authorized_id_tags"] == ["SIMTAG01"]
    await cp.stop()
    await integ.stop()

    # A restart: the CSMS knows it again and it connects with the same password
    again = await csms(port=integ.port)
    assert CP in again.devices and again.enrolled[CP].password is None
    cp2 = await charger(again)
    await wait_for(lambda: cp2.boots == 1 and again.devices[CP].ready.is_set(), "the boot after the restart")

    # Removed: refused again, and forgotten in the store
    assert await again.commission("remove_charger", {"charge_point_id": CP}) == {
        "charge_point_id": CP,
        "removed": True,
    }
    assert store.kv_get(KV_CHARGERS) == [] and again.ctx.bus.devices() == []
    await wait_for(lambda: CP in again.waiting, "the removed charger to be refused again")


async def test_a_made_password_is_shown_once_and_a_wrong_one_is_refused(world):
    csms, charger = world
    integ = await csms()
    result = await integ.commission("enrol_charger", {"charge_point_id": "carport"})
    assert result["password_generated"] is True and 16 <= len(result["password"]) <= 40
    assert integ.ctx.bus.status("carport") == (DeviceStatus.OFFLINE, "enrolled; not connected yet")

    wrong = await charger(integ, "carport", password="not-the-right-password")
    await wait_for(lambda: integ._refused.get("carport", 0) >= 2, "the wrong password to be refused")
    assert wrong.boots == 0
    await wrong.stop()
    right = await charger(integ, "carport", password=result["password"])
    await wait_for(lambda: right.boots == 1, "the charger with the made password to boot")
    assert integ.ctx.bus.status("carport")[0] is DeviceStatus.OK
    # The password is not shown again
    state = {a["action"]: a for a in integ.commission_actions()}["enrol_charger"]["state"]
    assert result["password"] not in json.dumps(state)


async def test_without_security_no_password_is_made(world):
    csms, charger = world
    integ = await csms(security_profile=0)
    result = await integ.commission("enrol_charger", {"charge_point_id": "lab"})
    assert result["password_generated"] is False and result["security_profile"] == 0
    cp = await charger(integ, "lab", password=None)
    await wait_for(lambda: cp.boots == 1, "the lab charger to boot")


@pytest.mark.parametrize(
    ("action", "params", "message"),
    [
        ("enrol_charger", {}, "charge_point_id = None: must be the charger's identity"),
        ("enrol_charger", {"charge_point_id": "bad id!"}, "charge_point_id = 'bad id!'"),
        ("enrol_charger", {"charge_point_id": "x" * 49}, "1-48 of A-Z"),
        (
            "enrol_charger",
            {"charge_point_id": "ok", "password": "short"},
            "password must be 16 to 40 characters",
        ),
        (
            "enrol_charger",
            {"charge_point_id": "ok", "password": "p" * 41},
            "password must be 16 to 40 characters",
        ),
        ("enrol_charger", {"charge_point_id": "ok", "id_tags": ["T" * 37]}, "longer than 36 characters"),
        ("enrol_charger", {"charge_point_id": "ok", "pin": "1234"}, "unknown parameter(s) pin"),
        (
            "remove_charger",
            {"charge_point_id": "ghost"},
            "no charger 'ghost' was enrolled here; enrolled: none",
        ),
        ("update_firmware", {"charge_point_id": "ghost"}, "charge_point_id = 'ghost': no such charger"),
        (
            "reboot",
            {},
            "unknown ocpp action 'reboot'; available: enrol_charger, remove_charger, update_firmware",
        ),
    ],
)
async def test_bad_requests_name_the_problem_and_change_nothing(world, store, action, params, message):
    csms, _ = world
    integ = await csms()
    with pytest.raises(ValueError) as caught:
        await integ.commission(action, params)
    assert message in str(caught.value)
    assert integ.devices == {} and store.kv_get(KV_CHARGERS) is None


async def test_enrolling_twice_is_refused(world):
    csms, _ = world
    integ = await csms()
    await integ.commission("enrol_charger", {"charge_point_id": "garage"})
    with pytest.raises(ValueError, match="charge point 'garage' is already enrolled"):
        await integ.commission("enrol_charger", {"charge_point_id": "garage"})
