"""The client against the simulated server over real mutual-TLS HTTPS on loopback."""

from __future__ import annotations

import logging

from hems.dr import DRState
from integrations.sep2 import events as rules
from integrations.sep2.server import SimServer

from .conftest import make_rig, until

HOSTILE = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    b'<DERControlList xmlns="urn:ieee:std:2030.5:ns" all="0" results="0">&lol2;</DERControlList>'
)


async def test_discovery_from_device_capability_alone(rig):
    c = rig.client
    await until(
        lambda: c.end_device is not None and len(c.programs) == 2 and c.der is not None, what="discovery"
    )
    assert c.end_device.href == "/edev/0" and c.registration.pin == rig.server.pin
    assert [p["primacy"] for p in c.status()["programs"]] == [1, 10]
    assert ("GET", "/dcap") in rig.server.requests and ("GET", "/tm") in rig.server.requests


async def test_export_limit_applied_within_one_poll_and_responses(rig):
    s, inv = rig.server, rig.inverter
    await until(lambda: rig.client.cycles > 0 and rig.client.end_device is not None)
    mrid = s.add_control(export_limit_w=1500, duration_s=2)
    await until(lambda: 1500.0 in inv.pv_limits, timeout=1.8, what="PV limit 1500 W")
    ev = rig.dr.get(f"sep2:derc-{mrid}")
    assert ev.source_ref["export_limit_w"] == 1500.0
    # the control ends: DefaultDERControl (none set) -> limit removed; responses received, started, completed
    await until(lambda: inv.pv_limits[-1] is None, timeout=4, what="limit removed")
    await until(lambda: s.responses_for(mrid) == [1, 2, 3], timeout=3, what="responses 1, 2, 3")
    assert s.der_resources.keys() >= {"DERCapability", "DERSettings", "DERStatus", "DERAvailability"}


async def test_default_control_holds_without_active_control(rig):
    rig.server.set_default(1, opModExpLimW=4000)
    await until(lambda: rig.inverter.pv_limits[-1:] == [4000.0], timeout=3, what="default 4000 W")
    mrid = rig.server.add_control(export_limit_w=0, duration_s=3, program=0)
    await until(lambda: 0.0 in rig.inverter.pv_limits, timeout=2, what="control 0 W")
    await until(lambda: rig.inverter.pv_limits[-1] == 4000.0, timeout=6, what="default back")
    await until(
        lambda: rig.dr.get(f"sep2:derc-{mrid}").state is DRState.COMPLETED, timeout=2, what="completed"
    )


async def test_supersession_and_cancellation(rig):
    s = rig.server
    await until(lambda: rig.client.end_device is not None)
    old = s.add_control(export_limit_w=3000, duration_s=60, creation_time=s.now() - 10)
    await until(lambda: 3000.0 in rig.inverter.pv_limits, timeout=2)
    new = s.add_control(export_limit_w=1000, duration_s=60)  # same program, newer: supersedes
    await until(lambda: rig.inverter.pv_limits[-1] == 1000.0, timeout=2, what="newer control")
    await until(lambda: rules.SUPERSEDED in s.responses_for(old), timeout=2, what="superseded response")
    assert rig.dr.get(f"sep2:derc-{old}").state is DRState.SUPERSEDED
    assert "superseded" in rig.dr.get(f"sep2:derc-{old}").reason
    s.cancel(new)
    await until(lambda: rules.CANCELLED in s.responses_for(new), timeout=2, what="cancelled response")
    assert rig.dr.get(f"sep2:derc-{new}").state is DRState.CANCELLED
    # the superseded control is still within its window: it is back (see test_sep2_features)
    await until(lambda: rig.inverter.pv_limits[-1] == 3000.0, timeout=2, what="superseded control back")
    s.cancel(old)
    await until(lambda: rig.inverter.pv_limits[-1] is None, timeout=2, what="cancelled control lifted")


async def test_randomised_start_inside_window(rig):
    s = rig.server
    await until(lambda: rig.client.end_device is not None)
    start = s.now() + 1
    mrid = s.add_control(import_limit_w=2500, start=start, duration_s=30, randomize_start_s=2)
    ev = await until(lambda: rig.dr.get(f"sep2:derc-{mrid}"), timeout=2)
    assert ev.randomization_s == 2 and 0 <= ev.offset_s <= 2
    assert start <= ev.effective_start_ts <= start + 2 and ev.import_cap_w == 2500.0
    await until(lambda: rig.dr.get(ev.key).state is DRState.ACTIVE, timeout=5, what="active")
    assert rig.dr.get(ev.key).actuated_ts >= ev.effective_start_ts - 0.01


async def test_mirror_readings_posted_and_parsed(rig):
    s = rig.server
    await until(lambda: s.latest_reading("Site real power") is not None, timeout=4, what="mirror readings")
    assert s.latest_reading("Site real power") == -2345.0
    assert s.latest_reading("Energy delivered") == 120000.0
    assert s.latest_reading("Energy received") == 45000.0
    assert s.latest_reading("Battery state of charge") == 61.5
    assert len(s.mups) == 1


async def test_clock_offset_applied(pki):
    s = SimServer(pki, port=0, poll_rate_s=1, time_offset_s=3600)
    await s.start()
    rig = await make_rig(s, pki)
    try:
        await until(lambda: rig.client.time_known, timeout=3)
        assert abs(rig.client.offset_s - 3600) < 2
        mrid = s.add_control(export_limit_w=700, start=s.now(), duration_s=30)
        await until(lambda: 700.0 in rig.inverter.pv_limits, timeout=2, what="offset control applied")
        ev = rig.dr.get(f"sep2:derc-{mrid}")
        assert abs(ev.start_ts - rig.client.clock.now()) < 3
    finally:
        await rig.stop()
        await s.stop()


async def test_hostile_xml_refused_and_last_controls_kept(rig, caplog):
    s = rig.server
    await until(lambda: rig.client.end_device is not None)
    s.add_control(export_limit_w=1200, duration_s=60)
    await until(lambda: 1200.0 in rig.inverter.pv_limits, timeout=2)
    caplog.set_level(logging.WARNING, logger="integrations.sep2")
    s.hostile["/derp/1/derc"] = HOSTILE
    await until(lambda: rig.client.refused > 0, timeout=4, what="refusal")
    assert "DTD" in rig.client.last_refusal
    assert any("refused GET /derp/1/derc" in m for m in caplog.messages)
    assert rig.inverter.pv_limits[-1] == 1200.0  # still in force
    del s.hostile["/derp/1/derc"]
    failures = rig.client.failures
    await until(lambda: rig.client.failures == 0, timeout=4, what="recovered")
    assert failures > 0 and rig.inverter.pv_limits[-1] == 1200.0


async def test_server_restart(rig):
    s = rig.server
    await until(lambda: rig.client.end_device is not None)
    s.add_control(export_limit_w=900, duration_s=60)
    await until(lambda: 900.0 in rig.inverter.pv_limits, timeout=2)
    port = s.port
    await s.stop()
    await until(lambda: rig.client.failures > 0, timeout=4, what="failure noticed")
    assert rig.inverter.pv_limits[-1] == 900.0
    s.port = port
    await s.start()
    mrid = s.add_control(export_limit_w=400, duration_s=60, program=0)
    await until(lambda: rig.inverter.pv_limits[-1] == 400.0, timeout=5, what="control after restart")
    # the control is applied inside the poll cycle; the failure count resets when the cycle ends
    await until(lambda: rig.client.failures == 0, timeout=2, what="failure count reset")
    assert rig.dr.get(f"sep2:derc-{mrid}") is not None


async def test_end_device_control_through_dr_lifecycle(rig):
    s = rig.server
    await until(lambda: rig.client.end_device is not None)
    mrid = s.add_end_device_control(target_reduction_kw=2, duration_s=30)
    ev = await until(lambda: rig.dr.get(f"sep2:edc-{mrid}"), timeout=2)
    assert ev.shed_w == 2000.0 and ev.level == 1
    await until(lambda: s.responses_for(mrid)[:2] == [1, 2], timeout=3, what="DrResponse received/started")


async def test_wrong_pin_refuses_server(server, pki):
    rig = await make_rig(server, pki, pin=999990)
    try:
        server.add_control(export_limit_w=100, duration_s=60)
        await until(lambda: rig.client.refused > 0, timeout=3)
        assert "PIN" in rig.client.last_refusal and not rig.inverter.pv_limits
        assert rig.dr.events() == []
    finally:
        await rig.stop()


async def test_registers_by_post_when_unknown(pki):
    s = SimServer(pki, port=0, poll_rate_s=1, preregister=False)
    await s.start()
    rig = await make_rig(s, pki)
    try:
        await until(lambda: rig.client.end_device is not None, timeout=3, what="registered")
        assert ("POST", "/edev") in s.requests and s.end_devices[0]["lfdi"] == pki.device_lfdi
        assert s.end_devices[0]["sfdi"] == pki.device_sfdi
    finally:
        await rig.stop()
        await s.stop()


async def test_homeowner_opt_out_answered(rig):
    s = rig.server
    await until(lambda: rig.client.end_device is not None)
    mrid = s.add_control(import_limit_w=3000, duration_s=60)
    ev = await until(lambda: rig.dr.get(f"sep2:derc-{mrid}"), timeout=2)
    await rig.dr.opt_out(ev.key, reason="homeowner")
    await until(lambda: rules.OPTED_OUT in s.responses_for(mrid), timeout=3, what="opt-out response")


async def test_tls12_ccm8_as_the_standard_mandates(pki):
    s = SimServer(pki, port=0, poll_rate_s=1, strict_tls12=True)
    await s.start()
    rig = await make_rig(s, pki)
    try:
        await until(lambda: rig.client.end_device is not None, timeout=3, what="discovery over TLS 1.2 CCM-8")
    finally:
        await rig.stop()
        await s.stop()


async def test_untrusted_server_refused(pki, other_pki):
    s = SimServer(other_pki, port=0, poll_rate_s=1)  # a server whose certificate our CA did not sign
    await s.start()
    rig = await make_rig(s, pki)
    try:
        await until(lambda: rig.client.failures > 0, timeout=3)
        assert "CERTIFICATE_VERIFY_FAILED" in rig.client.last_error or "certificate" in rig.client.last_error
        assert rig.client.end_device is None
    finally:
        await rig.stop()
        await s.stop()
