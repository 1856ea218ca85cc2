"""Config: defaults are the reference home; every bad value is refused with the key, value and what is allowed."""

import pytest

from hems.cli import main
from hems.config import Config, ConfigError, load_config, parse_config


def test_defaults_are_the_reference_home():
    cfg = Config()
    assert cfg.home.battery.capacity_wh == 13500
    assert cfg.home.pv.capacity_w == 8000
    assert cfg.home.site.service_limit_w == 48000
    assert cfg.tariff.at(1_780_000_000).period in {"off_peak", "shoulder", "peak", "super_off_peak"}
    assert cfg.web.port == 8080


def test_full_file_parses(tmp_path):
    f = tmp_path / "hems.toml"
    f.write_text(
        """
[gateway]
id = "home-42"
[web]
port = 9000
[battery]
capacity_wh = 10000
reserve_soc_pct = 30
[ev]
departure_time = "06:45"
[tariff]
export_price_per_kwh = 0.05
[[tariff.periods]]
name = "flat"
days = "all"
start = "00:00"
end = "24:00"
import_price_per_kwh = 0.30
[integrations.sim]
prefix = "x-"
"""
    )
    cfg = load_config(f)
    assert cfg.gateway.id == "home-42"
    assert cfg.web.port == 9000
    assert cfg.home.battery.capacity_wh == 10000.0  # an integer is taken as a number
    assert cfg.home.battery.reserve_soc_pct == 30.0
    assert cfg.home.ev.departure_time == "06:45"
    assert cfg.tariff.at(1_780_000_000).import_price_per_kwh == 0.30
    assert cfg.integrations == {"sim": {"prefix": "x-"}}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"battery": {"capacty_wh": 1}}, "unknown key 'battery.capacty_wh' (did you mean 'capacity_wh'?)"),
        ({"battery": {"capacity_wh": -5}}, "battery.capacity_wh = -5: must be > 0"),
        ({"battery": {"capacity_wh": "big"}}, "battery.capacity_wh = 'big': must be a number"),
        ({"battery": {"charge_efficiency": 1.2}}, "battery.charge_efficiency = 1.2: must be in (0, 1]"),
        ({"web": {"port": 70000}}, "web.port = 70000: must be a TCP port"),
        ({"web": {"port": True}}, "web.port = True: must be an integer"),
        ({"site": {"timezone": "Mars/Olympus"}}, "site.timezone = 'Mars/Olympus': must be an IANA time zone"),
        ({"ev": {"departure_time": "25:00"}}, "ev.departure_time = '25:00': must be a local time HH:MM"),
        (
            {"controller": {"strategy": "magic"}},
            "controller.strategy = 'magic': must be one of none, rules, planner",
        ),
        ({"baterry": {}}, "unknown section 'baterry' (did you mean 'battery'?)"),
        (
            {"battery": {"min_soc_pct": 50, "reserve_soc_pct": 20}},
            "battery.reserve_soc_pct = 20.0 must be between",
        ),
        (
            {"integrations": {"sim": {"enabled": "yes"}}},
            "integrations.sim.enabled = 'yes': must be true or false",
        ),
        ({"tariff": {"export_price_per_kwh": 0.05, "periods": []}}, "tariff.periods"),
    ],
)
def test_bad_values_name_key_value_and_allowed(data, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "test.toml")
    assert expected in str(err.value)
    assert "test.toml" in str(err.value)


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as err:
        parse_config({"battery": {"capacity_wh": -1, "max_charge_w": 0}, "web": {"port": -2}})
    assert len(err.value.problems) == 3


def test_disabled_integration_is_not_started():
    cfg = parse_config({"integrations": {"sim": {"enabled": False}}})
    assert cfg.integrations == {}


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[battery\ncapacity_wh = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_config_check_command(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text("[battery]\ncapacity_wh = 20000\n")
    assert main(["config", "check", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[battery]\ncapacity_wh = 0\n[integrations.zwave]\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "battery.capacity_wh = 0: must be > 0" in err
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[integrations.zwave]\n")
    assert main(["config", "check", str(unknown)]) == 2
    assert "[integrations.zwave]: no such integration; installed: " in capsys.readouterr().err


def test_devices_array_enables_its_integration():
    cfg = parse_config({"devices": [{"type": "sunspec", "host": "10.0.0.5", "port": 502}]})
    assert cfg.integration_names() == ["sim", "sunspec"]
    assert cfg.devices_of("sunspec") == [{"type": "sunspec", "host": "10.0.0.5", "port": 502}]
    with pytest.raises(ConfigError, match=r"devices\[0\].type = None: must name the integration"):
        parse_config({"devices": [{"host": "x"}]})
    with pytest.raises(ConfigError, match=r"\[integrations.sunspec\] has enabled = false"):
        parse_config({"devices": [{"type": "sunspec"}], "integrations": {"sunspec": {"enabled": False}}})
