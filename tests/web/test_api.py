"""The dashboard's data API against a real gateway over loopback HTTP: login required, numbers that add up,
validation errors that name the problem, CSRF refused, roles, commissioning through the Zigbee integration and
DR event detail."""

from __future__ import annotations

import csv
import io
import math

import aiohttp
import pytest

from hems.dr import DREvent
from tests.conftest import login
from web.api import CSV_COLUMNS, SAVINGS_METHOD

from .conftest import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

GET_ROUTES = (
    "/api/summary",
    "/api/history",
    "/api/history.csv",
    "/api/devices",
    "/api/devices/actions",
    "/api/dr/test:none",
)


async def _json(session, method, url, **kw):
    async with session.request(method, url, **kw) as resp:
        return resp.status, await resp.json()


async def test_every_route_needs_a_session(gateway):
    async with aiohttp.ClientSession() as anon:
        for path in GET_ROUTES:
            status, body = await _json(anon, "GET", gateway.url + path)
            assert (status, body) == (401, {"error": "login required"}), path
        status, body = await _json(
            anon, "POST", gateway.url + "/api/devices/actions/zigbee/permit_join", json={}
        )
        assert (status, body) == (401, {"error": "login required"})


async def _history(owner, url, **query):
    status, body = await _json(owner, "GET", url + "/api/history", params=query)
    assert status == 200, body
    return body


async def test_summary_and_history_of_today_add_up(gateway, owner):
    url = gateway.url

    async def two_hours_metered():
        h = await _history(owner, url)
        return (
            h if h["power"]["grid_w"].count(None) <= 288 - 18 else None  # 90 metered minutes
        )

    h = await wait_until(two_hours_metered, 60, "90 simulated minutes of history")
    assert h["range"] == "day" and h["date"] == "2026-07-07" and h["timezone"] == "America/Los_Angeles"
    assert h["resolution_s"] == 60 and h["end_ts"] - h["start_ts"] == 86400
    assert len(h["periods"]["ts"]) == 24 and h["periods"]["label"][9] == "09:00"
    assert len(h["power"]["ts"]) == 288 and h["power"]["step_s"] == 300
    assert h["periods"]["import_kwh"][3] is None  # 03:00: before the gateway started, no data rather than 0
    t = h["totals"]
    for key in ("import_kwh", "export_kwh", "pv_kwh", "home_kwh", "cost", "cost_no_control", "savings"):
        bars = [v for v in h["periods"][key] if v is not None]
        assert t[key] == pytest.approx(sum(bars), abs=2e-3), key
    assert t["savings"] == pytest.approx(t["cost_no_control"] - t["cost"], abs=1e-3)
    assert t["home_kwh"] > 0.2 and t["pv_kwh"] > 1 and 0 <= t["self_sufficiency_pct"] <= 100
    assert h["savings_method"] == SAVINGS_METHOD and h["next_date"] is None
    assert h["previous_date"] == "2026-07-06"
    assert 0 < h["coverage_pct"] <= 100

    # the meter's own import/export registers agree with the energy integrated from its power readings
    store, meter = gateway.store, "grid-meter"
    lo, hi = h["start_ts"], h["now_ts"]
    for quantity, key in (("energy_import_wh", "import_kwh"), ("energy_export_wh", "export_kwh")):
        rows = store.series(meter, quantity, lo, hi, "1m")
        register_kwh = (rows[-1][1] - rows[0][1]) / 1000
        assert t[key] == pytest.approx(register_kwh, rel=0.2, abs=0.15), quantity

    status, s = await _json(owner, "GET", url + "/api/summary")
    assert status == 200 and s["date"] == "2026-07-07" and s["currency"] == "USD"
    assert s["today"]["pv_kwh"] >= t["pv_kwh"] - 1e-6
    tariff = s["tariff"]
    assert tariff["period"] == "shoulder" and tariff["import_price_per_kwh"] == 0.24
    assert tariff["next"] == {"period": "peak", "import_price_per_kwh": 0.46, "export_price_per_kwh": 0.06}
    assert tariff["until_ts"] == h["start_ts"] + 16 * 3600  # 16:00 local
    assert s["controller"]["strategy"] == "planner" and s["controller"]["reasons"]


async def test_week_and_month_use_quarter_hours_and_one_bar_per_day(gateway, owner):
    w = await _history(owner, gateway.url, range="week", date="2026-07-07")
    assert w["resolution_s"] == 900 and w["first_day"] == "2026-07-01" and w["last_day"] == "2026-07-07"
    assert len(w["periods"]["ts"]) == 7 and w["periods"]["ts"][1] - w["periods"]["ts"][0] == 86400
    assert w["periods"]["import_kwh"][:6] == [None] * 6  # nothing metered before today
    m = await _history(owner, gateway.url, range="month", date="2026-07-15")
    assert m["label"] == "July 2026" and len(m["periods"]["ts"]) == 31
    assert m["previous_date"] == "2026-06-30" and m["next_date"] is None


async def test_bad_query_parameters_are_refused_with_the_reason(gateway, owner):
    for query, message in (
        ({"range": "year"}, "range must be one of day, week, month, got 'year'"),
        ({"date": "7/7/2026"}, "date must be a local date YYYY-MM-DD, got '7/7/2026'"),
        ({"date": "2031-01-01"}, "date '2031-01-01' is out of range"),
    ):
        for path in ("/api/history", "/api/history.csv"):
            status, body = await _json(owner, "GET", gateway.url + path, params=query)
            assert status == 400 and body["error"].startswith(message), (path, body)


async def test_csv_export_has_one_priced_row_per_metered_minute(gateway, owner):
    async with owner.get(gateway.url + "/api/history.csv", params={"range": "day"}) as resp:
        assert resp.status == 200 and resp.content_type == "text/csv"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="hems-day-2026-07-07.csv"'
        text = await resp.text()
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    body = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in rows[1:]]
    assert len(body) > 60
    assert all(float(b["ts"]) % 60 == 0 for b in body)
    assert body[0]["local_time"].startswith("2026-07-07T09:") and body[0]["local_time"].endswith("-07:00")
    for b in body:
        cost = float(b["import_kwh"]) * float(b["import_price_per_kwh"]) - float(b["export_kwh"]) * float(
            b["export_price_per_kwh"]
        )
        assert float(b["cost"]) == pytest.approx(cost, abs=1e-4)
        grid = float(b["grid_w"])
        assert float(b["import_kwh"]) == pytest.approx(max(grid, 0) / 60000, abs=1e-4)


async def test_devices_with_last_seen_and_commissioning_through_zigbee(zigbee_gateway):
    gateway = zigbee_gateway
    owner = await login(gateway.url)
    try:
        await _devices_and_commissioning(gateway, owner)
    finally:
        await owner.close()


async def _devices_and_commissioning(gateway, owner):
    await wait_until(
        lambda: gateway.bus.latest("grid-meter", "grid_power_w"), 30, "the Zigbee meter's first reading"
    )
    status, d = await _json(owner, "GET", gateway.url + "/api/devices")
    assert status == 200
    by_id = {x["device_id"]: x for x in d["devices"]}
    assert {"grid-meter", "inverter", "ev-charger", "thermostat", "water-heater"} <= set(by_id)
    meter = by_id["grid-meter"]
    assert meter["status"] == "ok" and meter["integration"] == "zigbee"
    assert d["now_ts"] - 600 < meter["last_seen_ts"] <= d["now_ts"] + 1  # heard within 10 simulated minutes
    assert isinstance(meter["faults"], list)
    actions = {(a["integration"], a["action"]): a for a in d["actions"]}
    assert actions[("zigbee", "permit_join")]["params"]["duration_s"]["max"] == 254
    status, only = await _json(owner, "GET", gateway.url + "/api/devices/actions")
    assert status == 200 and {(a["integration"], a["action"]) for a in only["actions"]} == set(actions)

    url = gateway.url + "/api/devices/actions/zigbee/permit_join"
    status, body = await _json(owner, "POST", url, json={"duration_s": 999})
    assert status == 400 and "duration_s = 999: must be whole seconds 1-254" in body["error"]
    status, body = await _json(
        owner, "POST", url, data="[1, 2]", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and body["error"] == "body must be a JSON object of the action's parameters"
    status, body = await _json(owner, "POST", url, data="{nope", headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"].startswith("body must be a JSON object")
    status, body = await _json(owner, "POST", gateway.url + "/api/devices/actions/zigbee/fly", json={})
    assert status == 404 and "no commissioning action zigbee/fly; offered: " in body["error"]
    assert "zigbee/permit_join" in body["error"]

    status, body = await _json(owner, "POST", url, json={"duration_s": 5})
    assert status == 200, body
    assert body["result"]["permit_join_open"] is True and 0 < body["result"]["permit_join_remaining_s"] <= 5


async def test_state_changes_without_the_csrf_token_are_refused(gateway, owner):
    # refused by the login layer before any integration is asked: the in-process home is enough
    cookies = owner.cookie_jar
    async with aiohttp.ClientSession(cookie_jar=cookies) as no_header:  # same session cookie, no X-CSRF-Token
        status, body = await _json(
            no_header, "POST", gateway.url + "/api/devices/actions/zigbee/permit_join", json={"duration_s": 5}
        )
        assert (status, body) == (403, {"error": "CSRF token missing or wrong"})
        status, body = await _json(
            no_header,
            "POST",
            gateway.url + "/api/devices/actions/zigbee/permit_join",
            json={"duration_s": 5},
            headers={"X-CSRF-Token": "forged"},
        )
        assert status == 403


async def test_an_installer_may_pair_devices_and_read_the_rest(zigbee_gateway):
    gateway = zigbee_gateway
    owner = await login(gateway.url)
    status, body = await _json(
        owner,
        "POST",
        gateway.url + "/api/users",
        json={"username": "fitter", "password": "installer-pass-1", "role": "installer"},
    )
    assert status == 201, body
    await owner.close()
    installer = await login(gateway.url, "installer-pass-1", "fitter")
    try:
        for path in GET_ROUTES[:5]:
            async with installer.get(gateway.url + path) as resp:
                assert resp.status == 200, path
        status, body = await _json(
            installer, "POST", gateway.url + "/api/devices/actions/zigbee/permit_join", json={"duration_s": 3}
        )
        assert status == 200 and body["result"]["permit_join_open"] is True
    finally:
        await installer.close()


async def test_dr_event_detail_from_pending_to_opted_out(gateway, owner):
    now = gateway.clock.now()
    start = math.ceil(now / 900) * 900 + 900
    await gateway.dr.receive(
        DREvent(source="test", event_id="peak-1", start_ts=start, duration_s=3600, level=2)
    )
    status, body = await _json(owner, "GET", gateway.url + "/api/dr/test:peak-1")
    assert status == 200
    assert body["event"]["key"] == "test:peak-1" and body["event"]["state"] == "pending"
    assert body["summary"]["can_opt_out"] is True and body["summary"]["level"] == 2
    assert body["report"] is None and len(body["versions"]) == 1
    status, s = await _json(owner, "GET", gateway.url + "/api/summary")
    assert [e["key"] for e in s["dr_events"]] == ["test:peak-1"]

    async def active():
        _, b = await _json(owner, "GET", gateway.url + "/api/dr/test:peak-1")
        return b if b["event"]["state"] == "active" and b["report"] else None

    body = await wait_until(active, 30, "the event to start and have a provisional report")
    assert body["report_provisional"] is True and body["report"]["event"] == "test:peak-1"
    async with owner.post(gateway.url + "/api/dr/test:peak-1/opt-out", json={"reason": "guests"}) as resp:
        assert resp.status == 200
    status, body = await _json(owner, "GET", gateway.url + "/api/dr/test:peak-1")
    assert body["event"]["state"] == "opted_out" and body["summary"]["can_opt_out"] is False
    status, body = await _json(owner, "GET", gateway.url + "/api/dr/test:nothing")
    assert status == 404 and body == {"error": "no DR event 'test:nothing'"}
