"""The homeowner's settings: validation (pure), and over real HTTP a change that reaches the next plan."""

from __future__ import annotations

import asyncio

import pytest

from hems.config import parse_config
from hems.home import HomeParams
from hems.runtime import Runtime
from hems.settings import SettingsError, apply_patch, from_home, from_stored, home_with
from hems.tariff import Tariff
from tests.conftest import OWNER_PASSWORD, login

HOME = HomeParams()
BASE = from_home(HOME, Tariff.default())


def test_every_bad_field_is_named_and_nothing_changes():
    with pytest.raises(SettingsError) as info:
        apply_patch(
            BASE,
            {
                "battery_reserve_pct": 101,
                "ev_departure": "7:30",
                "comfort_min_c": "cold",
                "export_limit_w": -5,
                "colour": "blue",
            },
            HOME,
        )
    errors = info.value.errors
    assert set(errors) == {"battery_reserve_pct", "ev_departure", "comfort_min_c", "export_limit_w", "colour"}
    assert "between 5 and 100 %" in errors["battery_reserve_pct"]
    assert "HH:MM" in errors["ev_departure"]
    assert "unknown setting" in errors["colour"]


def test_comfort_band_must_leave_room():
    with pytest.raises(SettingsError) as info:
        apply_patch(BASE, {"comfort_min_c": 22.0, "comfort_max_c": 22.5}, HOME)
    assert "at least 1 °C wide" in info.value.errors["comfort_max_c"]
    ok = apply_patch(BASE, {"comfort_min_c": 20.0, "comfort_max_c": 23.0}, HOME)
    assert (ok.comfort_min_c, ok.comfort_max_c) == (20.0, 23.0)


def test_tariff_edit_is_validated_by_the_tariff_itself():
    t = BASE.tariff.to_dict()
    t["periods"] = [p for p in t["periods"] if p["name"] != "peak"]  # leaves weekdays 16-21 uncovered
    with pytest.raises(SettingsError) as info:
        apply_patch(BASE, {"tariff": t}, HOME)
    assert "16:00" in info.value.errors["tariff"]
    t = BASE.tariff.to_dict()
    for p in t["periods"]:
        if p["name"] == "peak":
            p["import_price_per_kwh"] = 0.61
    new = apply_patch(BASE, {"tariff": t}, HOME)
    assert max(p.import_price_per_kwh for p in new.tariff.periods) == 0.61


def test_cloud_link_needs_a_host_and_hides_its_password():
    with pytest.raises(SettingsError, match="mqtt_host is needed"):
        apply_patch(BASE, {"cloud": {"mqtt_enabled": True}}, HOME)
    with pytest.raises(SettingsError, match="mqtt_port"):
        apply_patch(BASE, {"cloud": {"mqtt_port": 70000}}, HOME)
    new = apply_patch(BASE, {"cloud": {"mqtt_host": "vpp.example.com", "mqtt_password": "s3cret"}}, HOME)
    shown = new.to_json()["cloud"]
    assert shown["mqtt_password_set"] is True and "s3cret" not in str(new.to_json())
    assert new.stored()["cloud"]["mqtt_password"] == "s3cret"


def test_settings_map_onto_the_home_and_survive_a_stored_round_trip():
    new = apply_patch(
        BASE, {"battery_reserve_pct": 35, "ev_departure": "06:15", "ev_target_soc_pct": 90}, HOME
    )
    home = home_with(HOME, new)
    assert home.battery.reserve_soc_pct == 35 and home.ev.departure_time == "06:15"
    assert home.ev.target_soc_pct == 90 and home.battery.capacity_wh == HOME.battery.capacity_wh
    again = from_stored(new.stored(), BASE, HOME)
    assert again == new
    # a stored value that no longer fits (a new, smaller range) leaves the config's value
    assert from_stored({"battery_reserve_pct": 1}, BASE, HOME).battery_reserve_pct == BASE.battery_reserve_pct


async def test_a_reserve_change_over_http_reaches_the_next_plan_and_is_kept(tmp_path):
    cfg = parse_config(
        {
            "gateway": {"data_dir": str(tmp_path)},
            "web": {"port": 0},
            "sim": {"speed": 60, "tick_s": 0.1, "start": "2026-07-07T12:00"},
            "controller": {"interval_s": 2},
        }
    )
    rt = Runtime(config=cfg, dev=True, use_dev_peers=frozenset(), owner_password=OWNER_PASSWORD)
    await rt.start()
    try:

        async def plan_where(pred, what: str):
            for _ in range(300):
                if rt.latest_plan and pred(rt.latest_plan):
                    return rt.latest_plan
                await asyncio.sleep(0.1)
            pytest.fail(f"no plan with {what} within 30 s")

        before = await plan_where(lambda p: True, "anything")
        async with await login(rt.url) as s:
            async with s.get(rt.url + "/api/settings") as r:
                current = await r.json()
                assert r.status == 200 and current["battery_reserve_pct"] == 20.0
            async with s.patch(rt.url + "/api/settings", json={"battery_reserve_pct": 150}) as r:
                body = await r.json()
                assert r.status == 400 and "battery_reserve_pct" in body["errors"]
            async with s.patch(rt.url + "/api/settings", json={"battery_reserve_pct": 80}) as r:
                assert r.status == 200 and (await r.json())["battery_reserve_pct"] == 80.0
            # without the CSRF header the same change is refused
            async with s.patch(
                rt.url + "/api/settings", json={"battery_reserve_pct": 30}, headers={"X-CSRF-Token": ""}
            ) as r:
                assert r.status == 403
        after = await plan_where(lambda p: p["reason"].startswith("settings changed"), "the new setting")
        assert after["reason"] == "settings changed: battery reserve 20 → 80 %"
        assert after["start_ts"] >= before["start_ts"]
        # outside DR the planned SOC stays at or above the new reserve once it has been reached (soft below)
        soc = after["battery_soc_pct"]
        first_at = next((k for k, v in enumerate(soc) if v >= 80 - 0.5), None)
        assert first_at is not None, soc
        assert min(soc[first_at:]) >= 80 - 0.5
        assert rt.controller.params.battery.reserve_soc_pct == 80
    finally:
        await rt.stop()
    rt2 = Runtime(config=cfg, dev=True, use_dev_peers=frozenset())
    await rt2.start(serve_web=False)
    try:
        assert rt2.settings.battery_reserve_pct == 80 and rt2.config.home.battery.reserve_soc_pct == 80
    finally:
        await rt2.stop()


async def test_export_limit_reaches_planner_and_controller(tmp_path):
    cfg = parse_config(
        {
            "gateway": {"data_dir": str(tmp_path)},
            "sim": {"speed": 60, "tick_s": 0.1, "start": "2026-07-07T12:00"},
            "controller": {"interval_s": 2},
        }
    )
    rt = Runtime(config=cfg, dev=True, use_dev_peers=frozenset())
    await rt.start(serve_web=False)
    try:
        await rt.update_settings({"export_limit_w": 1500})
        for _ in range(300):
            p = rt.latest_plan
            if p and p["reason"].startswith("settings changed"):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("no re-plan after the export limit")
        assert p["reason"] == "settings changed: export limit none → 1500 W"
        assert max(-w for w in p["grid_w"]) <= 1500 + 1
        assert rt.controller.export_limit_w == 1500
    finally:
        await rt.stop()
