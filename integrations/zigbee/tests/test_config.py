"""Configuration errors name the key; radio libraries are imported only when chosen."""

from __future__ import annotations

import importlib
import logging

import pytest

from hems.bus import Bus
from hems.clock import ManualClock
from hems.config import Config, ConfigError, GatewayConfig
from hems.integration import IntegrationContext
from integrations.zigbee import create, radio
from integrations.zigbee.client import ZigbeeIntegration, parse_settings


def ctx(tmp_path, section=None, devices=None) -> IntegrationContext:
    return IntegrationContext(
        name="zigbee",
        bus=Bus(ManualClock()),
        clock=ManualClock(),
        config=Config(gateway=GatewayConfig(data_dir=str(tmp_path))),
        section=section or {},
        devices=devices or [],
    )


def problems(tmp_path, section=None, devices=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(ctx(tmp_path, section, devices))
    return info.value.problems


def test_defaults(tmp_path):
    s = parse_settings(ctx(tmp_path))
    assert (s.radio, s.device, s.channel, s.permit_join_s) == ("simulated", "sim://default", 15, 0)
    assert s.database == str(tmp_path / "zigbee.db")
    real = parse_settings(ctx(tmp_path, {"radio": "znp", "device": "/dev/ttyUSB0", "pan_id": 0x1A62}))
    assert (real.channel, real.pan_id, real.baudrate, real.flow_control) == (None, 0x1A62, 115200, None)


def test_every_problem_is_named(tmp_path):
    found = problems(
        tmp_path,
        {"radio": "zwave", "chanel": 15, "channel": 30, "permit_join_s": 600, "baudrate": "fast"},
    )
    text = "\n".join(found)
    assert "integrations.zigbee.radio = 'zwave': must be one of simulated, znp, ezsp, deconz" in text
    assert "unknown key 'integrations.zigbee.chanel'" in text
    assert "integrations.zigbee.channel = 30: must be a channel 11-26" in text
    assert "integrations.zigbee.permit_join_s = 600: must be seconds 0-254" in text
    assert "integrations.zigbee.baudrate = 'fast'" in text
    assert len(found) == 5


def test_a_real_radio_needs_its_serial_port(tmp_path):
    (problem,) = problems(tmp_path, {"radio": "ezsp"})
    assert problem.startswith("integrations.zigbee.device is missing")


def test_device_entries_are_checked(tmp_path):
    found = problems(
        tmp_path,
        devices=[
            {"type": "zigbee", "ieee": "not an address", "id": "x"},
            {
                "type": "zigbee",
                "ieee": "00:0d:6f:00:0a:90:00:03",
                "id": "relay",
                "role": "boiler",
                "colour": "red",
            },
            {"type": "zigbee", "ieee": "00:0d:6f:00:0a:90:00:04", "id": "relay"},
        ],
    )
    text = "\n".join(found)
    assert "ieee = 'not an address': ieee must be the device's IEEE address" in text
    assert "unknown key 'colour'" in text
    assert "role = 'boiler' must be one of grid_meter, thermostat, water_heater, pool_pump, load" in text
    assert "id = 'relay' is used by another zigbee device" in text


def test_a_missing_radio_library_is_a_config_error(tmp_path, monkeypatch):
    real_import = importlib.import_module

    def fake_import(name, *args):
        if name.startswith("zigpy_deconz"):
            raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(ConfigError) as info:
        create(ctx(tmp_path, {"radio": "deconz", "device": "/dev/ttyACM0"}))
    (problem,) = info.value.problems
    assert "integrations.zigbee.radio = 'deconz'" in problem
    assert "needs the Python package zigpy-deconz" in problem
    assert "pip install zigpy-deconz" in problem


@pytest.mark.parametrize(("name", "module"), [(k, v[0]) for k, v in radio.RADIOS.items()])
def test_radio_libraries_get_the_smart_energy_mixin(name, module):
    library = pytest.importorskip(module)
    cls = radio.controller_class(name)
    assert issubclass(cls, radio.SmartEnergyMixin)
    assert issubclass(cls, library.ControllerApplication)
    assert cls.__mro__.index(radio.SmartEnergyMixin) < cls.__mro__.index(library.ControllerApplication)


async def test_an_absent_stick_does_not_stop_the_gateway(tmp_path, caplog):
    pytest.importorskip("zigpy_znp.zigbee.application")
    caplog.set_level(logging.ERROR)
    zigbee = create(ctx(tmp_path, {"radio": "znp", "device": str(tmp_path / "no-such-tty")}))
    assert isinstance(zigbee, ZigbeeIntegration)
    await zigbee.start()  # logs and keeps retrying in the background
    assert zigbee.app is None
    assert "the znp radio at" in caplog.text and "did not start" in caplog.text
    with pytest.raises(Exception, match="not connected"):
        await zigbee.permit_join(30)
    await zigbee.stop()
