"""Dev mode: the simulated home's EV behind the simulated charge point, and ``hems sim ocpp`` standalone."""

from __future__ import annotations

import asyncio
import sys

import pytest

from hems.bus import Bus
from hems.clock import RealClock, SimClock
from hems.config import Config
from hems.home import HomeParams
from hems.integration import DevPeerContext, IntegrationContext
from hems.livesim import LiveSimHome, parse_sim_start
from hems.model import Command, DeviceStatus, Quantity, Setting
from integrations.ocpp import dev_peer
from integrations.ocpp.csms import OcppIntegration

from .conftest import PASSWORD, wait_for

Q = Quantity


async def test_dev_peer_drives_the_simulated_home_over_ocpp():
    params = HomeParams()
    probe = LiveSimHome(params, RealClock())
    t0 = parse_sim_start("2026-07-01T05:00", params.site.timezone)
    departure = next(t.depart_ts for t in probe.env.trips(t0, t0 + 3 * 86400) if t.depart_ts > t0)
    clock = SimClock(start=departure - 150.0, speed=60.0)  # 2.5 wall seconds before the EV leaves
    sim = LiveSimHome(params, clock, tick_s=0.05)
    assert sim.last.ev_plugged

    peer = await dev_peer(DevPeerContext(sim=sim, clock=clock))
    bus = Bus(clock)
    integ = None
    try:
        assert peer.replaces == {"ev-charger"}
        (device,) = peer.devices
        assert (
            device["type"] == "ocpp"
            and device["id"] == "ev-charger"
            and peer.section["security_profile"] == 1
        )
        integ = OcppIntegration(
            IntegrationContext("ocpp", bus, clock, Config(), peer.section, peer.devices, sim=sim)
        )
        await integ.start()  # after the peer: it connects by itself once the CSMS is up
        sim.start()
        dev = integ.devices["ev-charger"]
        await wait_for(
            lambda: dev.active_session is not None and peer.charge_point.tx is not None, "a session"
        )
        await wait_for(
            lambda: sim.last.ev_power_w == pytest.approx(3680.0), "the physics at the safe default"
        )
        await bus.send(Command("ev-charger", Setting.EV_POWER_LIMIT_W, 5000.0))
        assert sim.controls.ev_power_limit_w == 5000.0
        await wait_for(lambda: sim.last.ev_power_w == pytest.approx(5000.0), "the physics at 5000 W")
        await wait_for(lambda: bus.value("ev-charger", Q.EV_SOC_PCT) is not None, "the EV's SoC")
        assert bus.value("ev-charger", Q.EV_SOC_PCT) == pytest.approx(sim.last.ev_soc_pct, abs=0.5)
        # departure: the physics unplugs the EV, the charge point ends the transaction
        cp = peer.charge_point
        await wait_for(lambda: dev.active_session is None and cp.tx is None, "the EV to leave", timeout_s=6.0)
        done = dev.finished[-1]
        assert done.reason == "EVDisconnected" and done.energy_wh > 50.0
        tx = peer.charge_point.finished[-1]
        assert done.energy_wh == pytest.approx(peer.charge_point.energy_wh - tx.meter_start_wh, abs=0.5)
        assert not sim.last.ev_plugged and bus.value("ev-charger", Q.EV_PLUGGED) is False
        assert bus.status("ev-charger")[0] is DeviceStatus.OK
    finally:
        await sim.stop()
        await peer.stop()
        if integ is not None:
            await integ.stop()


async def test_hems_sim_ocpp_standalone(rig):
    r = await rig(start_cp=False, section={"security_profile": 1})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from integrations.ocpp.sim import main; sys.exit(main(sys.argv[1:]))",
        "--url",
        f"{r.integ.url}/garage",
        "--version",
        "1.6",
        "--password",
        PASSWORD,
        "--duration",
        "20",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for(lambda: r.dev.ready.is_set(), "the standalone charge point to boot", timeout_s=15.0)
        assert r.dev.version == "1.6" and r.bus.status("garage")[0] is DeviceStatus.OK
    finally:
        proc.terminate()
        out, err = await proc.communicate()
    assert b"simulated OCPP 1.6 charge point garage" in out, err[-500:]
