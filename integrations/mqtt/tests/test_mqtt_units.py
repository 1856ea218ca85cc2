"""Pure parts: configuration, command parsing and limit checks, dispatch overrides, HA discovery payloads."""

from __future__ import annotations

import json

import pytest

from hems.config import ConfigError
from hems.home import HomeParams
from hems.model import DeviceInfo, Setting
from integrations.mqtt import discovery as ha
from integrations.mqtt.config import parse
from integrations.mqtt.dispatch import (
    Dispatch,
    HomeView,
    Override,
    ParsedCommand,
    Rejected,
    Sheddable,
    parse_command,
    plan_command,
)

PARAMS = HomeParams()


def test_config_defaults_and_errors_name_the_key(tmp_path):
    (link,) = parse({"links": [{"name": "cloud", "host": "broker.example"}]})
    assert (link.port, link.protocol, link.telemetry, link.commands, link.home_assistant) == (
        1883,
        "5",
        True,
        True,
        False,
    )
    assert link.discovery_prefix == "homeassistant"
    with pytest.raises(ConfigError) as e:
        parse(
            {
                "links": [
                    {"name": "a", "host": "h", "port": "x", "protocol": "4", "tls": "yes", "colour": 1},
                    {
                        "name": "a",
                        "host": "h",
                        "ca_file": str(tmp_path / "none.pem"),
                        "telemetry_interval_s": -1,
                    },
                ]
            }
        )
    text = "\n".join(e.value.problems)
    assert "integrations.mqtt.links[0].port = 'x': must be an integer 1-65535" in text
    assert "integrations.mqtt.links[0].protocol = '4'" in text
    assert "integrations.mqtt.links[0].tls = 'yes': must be true or false" in text
    assert "unknown key 'integrations.mqtt.links[0].colour'" in text
    assert "integrations.mqtt.links[1].ca_file" in text
    assert "integrations.mqtt.links[1].telemetry_interval_s = -1" in text
    with pytest.raises(ConfigError, match="at least one"):
        parse({})
    with pytest.raises(ConfigError, match="must be unique"):
        parse({"links": [{"name": "a", "host": "h"}, {"name": "a", "host": "h"}]})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": "ev_pause", "duration_s": 5}', "'id'"),
        (b'{"id": "1", "type": "fly", "duration_s": 5}', "'type' must be one of"),
        (b'{"id": "1", "type": "battery_power", "value_w": "lots", "duration_s": 5}', "'value_w' must be"),
        (b'{"id": "1", "type": "battery_power", "value_w": 100, "duration_s": 0}', "'duration_s' must be"),
        (b'{"id": "1", "type": "load_shed", "value_w": -5, "duration_s": 5}', "must be > 0"),
        (b'{"id": "1", "type": "ev_pause", "duration_s": 5, "extra": 1}', "unknown field"),
        (b"\xff\xfe", "not JSON"),
        (b"{" + b" " * 5000 + b"}", "too large"),
    ],
)
def test_malformed_commands_are_rejected_with_a_reason(payload, reason):
    with pytest.raises(Rejected) as e:
        parse_command(payload, None)
    assert reason in e.value.reason


def test_token_is_required_when_configured():
    ok = json.dumps({"id": 7, "type": "ev_pause", "duration_s": 60, "token": "s3cret"}).encode()
    assert parse_command(ok, "s3cret").id == 7
    with pytest.raises(Rejected, match="unauthorised: wrong") as e:
        parse_command(ok, "other")
    assert e.value.command_id == 7
    with pytest.raises(Rejected, match="unauthorised: 'token' missing"):
        parse_command(b'{"id": 1, "type": "ev_pause", "duration_s": 60}', "s3cret")


VIEW = HomeView(
    battery_id="inverter",
    soc_pct=60.0,
    battery_w=0.0,
    grid_w=1500.0,
    ev_id="ev",
    ev_plugged=True,
    ev_power_w=7000.0,
    water_heaters=(Sheddable("water-heater", 4500.0, True),),
)


def test_battery_power_checks_reserve_range_service_and_dr_limits():
    settings, commands, _ = plan_command(ParsedCommand("a", "battery_power", -3000.0, 60.0), VIEW, PARAMS)
    assert settings == {"battery_charge_power_w": -3000.0}
    assert commands == [("inverter", Setting.BATTERY_CHARGE_POWER_W, -3000.0)]
    low = _fields(VIEW, soc_pct=20.0)
    with pytest.raises(Rejected, match="reserve"):
        plan_command(ParsedCommand("b", "battery_power", -3000.0, 60.0), low, PARAMS)
    # during a DR event the reserve may be used
    plan_command(
        ParsedCommand("b", "battery_power", -3000.0, 60.0),
        _fields(VIEW, soc_pct=20.0, dr_in_force=True),
        PARAMS,
    )
    with pytest.raises(Rejected, match="range"):
        plan_command(ParsedCommand("c", "battery_power", 20000.0, 60.0), VIEW, PARAMS)
    with pytest.raises(Rejected, match="service limit"):
        plan_command(
            ParsedCommand("d", "battery_power", 10000.0, 60.0), _fields(VIEW, grid_w=40000.0), PARAMS
        )
    with pytest.raises(Rejected, match="DR cap"):
        plan_command(
            ParsedCommand("e", "battery_power", 5000.0, 60.0), _fields(VIEW, dr_import_cap_w=3000.0), PARAMS
        )


def _fields(view: HomeView, **changes) -> HomeView:
    from dataclasses import replace

    return replace(view, **changes)


def test_opted_out_event_blocks_downward_dispatch():
    view = _fields(VIEW, opted_out=(("vtn:ev-1", "ev-1", 1e12),))
    with pytest.raises(Rejected, match="opted out of DR event 'ev-1'"):
        plan_command(ParsedCommand("a", "load_shed", 2000.0, 60.0), view, PARAMS)
    with pytest.raises(Rejected, match="opted out"):
        plan_command(ParsedCommand("a", "battery_power", 100.0, 60.0, event="ev-1"), view, PARAMS)
    plan_command(
        ParsedCommand("a", "battery_power", 100.0, 60.0), view, PARAMS
    )  # charging is not a dispatch down


def test_load_shed_order_and_limits():
    s, c, _ = plan_command(ParsedCommand("a", "load_shed", 4000.0, 60.0), VIEW, PARAMS)
    assert s == {"water_heater_enabled": False} and c == [("water-heater", Setting.SWITCH_ON, False)]
    s, c, _ = plan_command(ParsedCommand("a", "load_shed", 15000.0, 60.0), VIEW, PARAMS)
    assert s == {"water_heater_enabled": False, "ev_power_limit_w": 0.0, "battery_charge_power_w": -3500.0}
    with pytest.raises(Rejected, match="can shed only"):
        plan_command(ParsedCommand("a", "load_shed", 15000.0, 60.0), _fields(VIEW, soc_pct=10.0), PARAMS)
    with pytest.raises(Rejected, match="no EV charger"):
        plan_command(ParsedCommand("a", "ev_pause", None, 60.0), _fields(VIEW, ev_id=None), PARAMS)


def test_dispatch_override_merges_replaces_and_expires():
    d = Dispatch()
    assert d.active_override(0.0) is None
    a = Override(
        "a",
        "cloud",
        "load_shed",
        {"water_heater_enabled": False, "battery_charge_power_w": -1000.0},
        [],
        0.0,
        100.0,
    )
    b = Override("b", "cloud", "battery_power", {"battery_charge_power_w": 2000.0}, [], 10.0, 50.0)
    assert d.add(a) == []
    assert d.add(b) == []
    o = d.active_override(20.0)
    assert o["battery_charge_power_w"] == 2000.0 and o["water_heater_enabled"] is False
    assert o["until_ts"] == 50.0 and o["ids"] == ["a", "b"] and len(o["reasons"]) == 2
    assert d.expire(60.0) == [b]
    assert d.active_override(60.0) == {
        "water_heater_enabled": False,
        "until_ts": 100.0,
        "ids": ["a"],
        "reasons": ["MQTT dispatch a (cloud): "],
    }
    c = Override("c", "cloud", "switch", {"water_heater_enabled": True}, [], 60.0, 70.0)
    assert d.add(c) == [a]
    assert d.clear() == [c]


def test_ha_discovery_payloads_carry_what_the_energy_dashboard_needs():
    meter = DeviceInfo("meter", "Grid meter", frozenset(), "test", "ACME", "M1")
    base = "hems/gw1"
    topic, cfg = ha.sensor_config(
        "gw1", base, "homeassistant", meter, "meter", "energy_import_wh", f"{base}/meter/energy_import_wh"
    )
    assert topic == "homeassistant/sensor/gw1/meter_energy_import_wh/config"
    assert (cfg["device_class"], cfg["state_class"], cfg["unit_of_measurement"]) == (
        "energy",
        "total_increasing",
        "Wh",
    )
    assert (
        cfg["state_topic"] == f"{base}/meter/energy_import_wh" and "value_json.value" in cfg["value_template"]
    )
    assert cfg["unique_id"] and cfg["device"]["identifiers"] == ["hems_gw1_meter"]
    assert cfg["device"]["via_device"] == "hems_gw1"
    assert cfg["availability_topic"] == f"{base}/status" and cfg["payload_available"] == "online"
    _, pv = ha.sensor_config("gw1", base, "homeassistant", None, "inverter", "pv_power_w", "t")
    assert (pv["device_class"], pv["state_class"], pv["unit_of_measurement"]) == ("power", "measurement", "W")
    _, soc = ha.sensor_config("gw1", base, "homeassistant", None, "inverter", "soc_pct", "t")
    assert (soc["device_class"], soc["unit_of_measurement"]) == ("battery", "%")
    topic, plugged = ha.sensor_config("gw1", base, "homeassistant", None, "ev", "ev_plugged", "t")
    assert topic.startswith("homeassistant/binary_sensor/") and plugged["device_class"] == "plug"
    inv = DeviceInfo("inverter", "Inverter", frozenset(), "test")
    topic, number = ha.battery_number("gw1", base, "homeassistant", inv, "t", PARAMS)
    assert topic == "homeassistant/number/gw1/inverter_battery_setpoint/config"
    assert number["command_topic"] == f"{base}/ha/inverter/battery_setpoint_w/set"
    assert number["min"] == -PARAMS.battery.max_discharge_w and number["unit_of_measurement"] == "W"
    _, select = ha.hvac_select("gw1", base, "homeassistant", inv, "t")
    assert select["options"] == ["off", "heat", "cool", "auto"]
    _, switch = ha.relay_switch("gw1", base, "homeassistant", inv, "t")
    assert switch["payload_on"] == "ON" and switch["command_topic"].endswith("/switch_on/set")
