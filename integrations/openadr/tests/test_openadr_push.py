"""The push model: the VEN registers with a transport address and the VTN POSTs events to it."""

from __future__ import annotations

import time

import aiohttp

from hems.dr import DRState

from .test_openadr_loopback import start, store, until  # noqa: F401  (store is a fixture)


async def test_pushed_event_arrives_without_waiting_for_a_poll(vtn, store):  # noqa: F811
    integration = await start(vtn, store, poll_interval_s=3600, push_port=0, push_host="127.0.0.1")
    try:
        ven = integration.ven
        assert ven.push_address and ven.push_address.startswith("http://127.0.0.1:")
        rec = next(iter(vtn.vens.values()))
        assert rec.push_address == ven.push_address  # registered for the push model
        vtn.add_event(start_ts=time.time() - 1, duration_s=1800, import_cap_w=2500.0, event_id="push-1")
        t0 = time.monotonic()
        assert await vtn.push() == {rec.ven_id: 200}
        event = await until(lambda: integration.dr.get("openadr:push-1"), what="the pushed event")
        assert time.monotonic() - t0 < 2.0  # not the hour-long poll interval
        assert event.import_cap_w == 2500.0
        await until(lambda: integration.dr.get("openadr:push-1").state is DRState.ACTIVE, what="active")
        await until(lambda: any(o.event_id == "push-1" for o in vtn.opts), what="the optIn answer")
        assert ven.pushes == 1
        # garbage pushed at the endpoint is refused with a 400, and the VEN keeps running
        async with aiohttp.ClientSession() as s:
            hostile = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
            async with s.post(ven.push_address + "/EiEvent", data=hostile) as resp:
                assert resp.status == 400
            async with s.post(ven.push_address + "/EiEvent", data=b"\x00\x01 not xml") as resp:
                assert resp.status == 400
        assert ven.pushes == 1
    finally:
        await integration.stop()
