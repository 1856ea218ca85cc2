"""Pricing, DER curves, paged lists and reinstatement: the client against the simulated server over real
mutual-TLS HTTPS on loopback."""

from __future__ import annotations

import logging
import math
import ssl

import aiohttp

from hems.dr import DRState
from integrations.sep2.server import SimServer

from .conftest import make_rig, until


async def _api(server: SimServer, pki, method: str, path: str, json=None) -> dict:
    """The simulated server's JSON API, over the same mutual TLS as the client."""
    ctx = ssl.create_default_context(cafile=pki.ca_file)
    ctx.load_cert_chain(pki.device_cert, pki.device_key)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        async with http.request(method, f"https://{server.host}:{server.port}{path}", json=json) as resp:
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()


def _steps(prices, t0: float, step: float, window: tuple[float, float]):
    """Steps wholly inside ``window`` and wholly outside it (edge steps, partly covered, are left out)."""
    s, e = window
    inside, outside = [], []
    for k, value in enumerate(prices):
        a, b = t0 + k * step, t0 + (k + 1) * step
        if a >= s + 1 and b <= e - 1:
            inside.append(value)
        elif b <= s - 1 or a >= e + 1:
            outside.append((k, value))
    return inside, outside


async def test_prices_from_tariff_profile_to_dr_prices(server, pki):
    rig = await make_rig(server, pki)
    try:
        await until(lambda: rig.client.end_device is not None, what="discovery")
        now = server.now()
        a = (await _api(server, pki, "POST", "/api/prices", {"price_per_kwh": 0.25, "start": "+60",
                                                             "duration_s": 300}))["mrid"]  # fmt: skip
        b = (await _api(server, pki, "POST", "/api/prices", {"price_per_kwh": 0.1, "start": now + 600,
                                                             "duration_s": 300, "tou_tier": 2}))["mrid"]  # fmt: skip
        assert server.price(a).blocks == [(0, 2500)]  # sent as 2500 x 10^-4 USD per kWh
        ev_a = await until(lambda: rig.dr.get(f"sep2:price-{a}"), timeout=3, what="price A")
        ev_b = await until(lambda: rig.dr.get(f"sep2:price-{b}"), timeout=3, what="price B")
        assert ev_a.price_per_kwh == 0.25 and ev_b.price_per_kwh == 0.1
        assert ev_a.source == "sep2" and ev_a.event_id == f"price-{a}"
        assert ev_a.source_ref["currency"] == 840 and ev_a.source_ref["price_power_of_ten_multiplier"] == -4
        assert ev_b.source_ref["tou_tier"] == 2
        assert ev_a.shed_w is None and ev_a.import_cap_w is None and ev_a.level is None
        assert abs(ev_a.start_ts - (rig.client.clock.now() + 60)) < 3 and ev_a.duration_s == 300
        t0, step = ev_a.start_ts - 120, 10.0
        prices = rig.dr.prices(t0, step, 120)  # 20 minutes
        a_in, a_out = _steps(prices, t0, step, (ev_a.effective_start_ts, ev_a.end_ts))
        b_in, _ = _steps(prices, t0, step, (ev_b.effective_start_ts, ev_b.end_ts))
        assert a_in and all(v == 0.25 for v in a_in)
        assert b_in and all(v == 0.1 for v in b_in)
        gaps = [v for k, v in a_out if not (ev_b.effective_start_ts - 1 <= t0 + k * step < ev_b.end_ts + 1)]
        assert gaps and all(math.isnan(v) for v in gaps)  # before A, between A and B, after B
        st = rig.client.status()["prices"]
        assert {p["mrid"]: p["price_per_kwh"] for p in st} == {a: 0.25, b: 0.1}
        # cancelled by its EventStatus, and withdrawn from the list: both cancelled in the DR manager
        await _api(server, pki, "POST", f"/api/prices/{a}/cancel")
        await until(lambda: rig.dr.get(ev_a.key).state is DRState.CANCELLED, timeout=3, what="A cancelled")
        await _api(server, pki, "DELETE", f"/api/prices/{b}")
        await until(lambda: rig.dr.get(ev_b.key).state is DRState.CANCELLED, timeout=3, what="B withdrawn")
        assert "withdrawn" in rig.dr.get(ev_b.key).reason
        assert rig.dr.prices(t0, step, 120) is None
        assert any(p.startswith("/tp/0/rc/0/tti") for _, p in server.requests)
    finally:
        await rig.stop()


async def test_price_change_is_a_new_version(rig):
    s = rig.server
    await until(lambda: rig.client.end_device is not None)
    mrid = s.add_price(price_per_kwh=0.3, start=s.now() + 30, duration_s=600)
    ev = await until(lambda: rig.dr.get(f"sep2:price-{mrid}"), timeout=3)
    assert ev.price_per_kwh == 0.3 and ev.modification_number == 0
    s.price(mrid).blocks = [(1, 4200), (2, 5000)]  # consumption blocks: block 1 is the price planned on
    ev = await until(
        lambda: (e := rig.dr.get(f"sep2:price-{mrid}")).modification_number == 1 and e, timeout=3
    )
    assert ev.price_per_kwh == 0.42 and [b["price_per_kwh"] for b in ev.source_ref["blocks"]] == [0.42, 0.5]


async def test_volt_var_curve_decoded_and_reported(rig, caplog):
    s = rig.server
    caplog.set_level(logging.INFO, logger="integrations.sep2")
    await until(lambda: rig.client.end_device is not None)
    curve = s.add_curve(
        [(9200, 3000), (9670, 0), (10300, 0), (10700, -3000)],
        curve_type=11,
        x_multiplier=-2,
        y_multiplier=-2,
        v_ref=10000,
        ramp_tms={"openLoopTms": 500, "rampDecTms": 100, "rampIncTms": 100},
        description="volt-var",
    )
    mrid = s.add_control(curves={"opModVoltVar": curve}, duration_s=120, export_limit_w=5000)
    ev = await until(lambda: rig.dr.get(f"sep2:derc-{mrid}"), timeout=3, what="control with a curve")
    vv = ev.source_ref["curves"]["opModVoltVar"]
    assert vv["mode"] == "opModVoltVar" and vv["curve_type"] == 11
    assert [(p["x"], p["y"]) for p in vv["points"]] == [
        (92.0, 30.0),
        (96.7, 0.0),
        (103.0, 0.0),
        (107.0, -30.0),
    ]
    assert vv["v_ref_pct"] == 100.0 and vv["open_loop_tms"] == 500 and vv["ramp_inc_tms"] == 100
    assert vv["href"] == "/derp/1/dc/0"
    tracked = rig.client.tracked[mrid]
    assert tracked.curves["opModVoltVar"].points[0].x == 92.0
    status = rig.client.status()
    assert status["curves"][mrid]["opModVoltVar"]["points"][-1] == {"x": 107.0, "y": -30.0}
    assert ev.export_cap_w == 5000.0  # the control's other modes are still taken
    # said once: the curve is recorded, not actuated
    cycles = rig.client.cycles
    await until(lambda: rig.client.cycles >= cycles + 3, timeout=5)
    said = [m for m in caplog.messages if "does not actuate opModVoltVar" in m]
    assert len(said) == 1
    # a changed curve is a new version of the control
    s.curves[curve].points[0] = (9000, 4400)
    ev = await until(
        lambda: (e := rig.dr.get(f"sep2:derc-{mrid}")).modification_number >= 1 and e, timeout=4, what="v2"
    )
    assert ev.source_ref["curves"]["opModVoltVar"]["points"][0] == {"x": 90.0, "y": 44.0}


async def test_long_list_paged_and_withdrawal_detected(pki):
    s = SimServer(pki, port=0, poll_rate_s=1, page_size=3)
    await s.start()
    rig = await make_rig(s, pki)
    try:
        await until(lambda: rig.client.end_device is not None)
        t = s.now()
        mrids = [
            s.add_control(import_limit_w=1000 + i, start=t + 60 + 100 * i, duration_s=50) for i in range(8)
        ]
        await until(lambda: all(rig.dr.get(f"sep2:derc-{m}") for m in mrids), timeout=4, what="8 controls")
        assert rig.dr.get(f"sep2:derc-{mrids[7]}").import_cap_w == 1007.0
        pages = [q for _, q in s.queries if q.startswith("/derp/1/derc?")]
        assert {"/derp/1/derc?s=0&l=255", "/derp/1/derc?s=3&l=255", "/derp/1/derc?s=6&l=255"} <= set(pages)
        s.withdraw(mrids[7])  # on the last page
        await until(
            lambda: rig.dr.get(f"sep2:derc-{mrids[7]}").state is DRState.CANCELLED,
            timeout=4,
            what="withdrawn",
        )
        assert "withdrawn" in rig.dr.get(f"sep2:derc-{mrids[7]}").reason
        assert all(rig.dr.get(f"sep2:derc-{m}").state is DRState.PENDING for m in mrids[:7])
        assert mrids[7] not in rig.client.status()["controls"]
    finally:
        await rig.stop()
        await s.stop()


async def test_superseded_event_reinstated_when_superseding_one_cancelled(rig):
    s = rig.server
    await until(lambda: rig.client.end_device is not None)
    first = s.add_control(export_limit_w=3000, duration_s=60, creation_time=s.now() - 10)
    await until(lambda: 3000.0 in rig.inverter.pv_limits, timeout=2)
    key = f"sep2:derc-{first}"
    first_start = rig.dr.get(key).actuated_ts
    urgent = s.add_control(export_limit_w=500, duration_s=30, program=0)  # higher primacy: supersedes
    await until(lambda: rig.dr.get(key).state is DRState.SUPERSEDED, timeout=2, what="superseded")
    await until(lambda: rig.inverter.pv_limits[-1] == 500.0, timeout=2)
    s.cancel(urgent)
    ev = await until(
        lambda: (e := rig.dr.get(key)).state is DRState.ACTIVE and e, timeout=3, what="reinstated"
    )
    assert ev.modification_number == 1 and ev.actuated_ts == first_start
    assert [v.modification_number for v in rig.dr.history(key)] == [0, 1]
    await until(lambda: rig.inverter.pv_limits[-1] == 3000.0, timeout=2, what="limit back")
    assert rig.dr.get(f"sep2:derc-{urgent}").state is DRState.CANCELLED
    # stable: the next polls leave the reinstated version alone
    cycles = rig.client.cycles
    await until(lambda: rig.client.cycles >= cycles + 2, timeout=4)
    assert rig.dr.get(key).modification_number == 1 and rig.dr.get(key).state is DRState.ACTIVE


async def test_superseded_event_past_its_window_not_reinstated(rig):
    s = rig.server
    await until(lambda: rig.client.end_device is not None)
    # long enough to still be running when the newer control supersedes it, on a loaded machine too
    short = s.add_control(export_limit_w=3000, duration_s=5, creation_time=s.now() - 10)
    await until(lambda: rig.dr.get(f"sep2:derc-{short}"), timeout=2)
    long_ = s.add_control(export_limit_w=800, duration_s=60)
    key = f"sep2:derc-{short}"
    await until(lambda: rig.dr.get(key).state is DRState.SUPERSEDED, timeout=2)
    await until(lambda: rig.client.clock.now() > rig.dr.get(key).end_ts + 0.5, timeout=8)
    s.cancel(long_)
    await until(lambda: rig.dr.get(f"sep2:derc-{long_}").state is DRState.CANCELLED, timeout=3)
    cycles = rig.client.cycles
    await until(lambda: rig.client.cycles >= cycles + 2, timeout=4)
    assert rig.dr.get(key).state is DRState.SUPERSEDED and rig.dr.get(key).modification_number == 0
