"""The simulator checked by an independent SunSpec client (pysunspec2's own), the entry points (create,
dev_peer, ``hems sim sunspec``, ``hems bench sunspec``) and the configuration's error messages."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sunspec2.modbus.client as ss2

from hems.bus import Bus
from hems.clock import ManualClock
from hems.config import Config, ConfigError
from hems.integration import DevPeerContext, IntegrationContext
from hems.model import Command, DeviceStatus, Setting
from integrations.sunspec import bench, create, dev_peer
from integrations.sunspec.client import SunSpecClient
from integrations.sunspec.sim import MODEL_IDS

from .conftest import advance

ROOT = Path(__file__).resolve().parents[3]


def _pysunspec2_session(port: int) -> dict:
    dev = ss2.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=5)
    try:
        dev.scan()
        out = {
            "models": sorted(mid for mid in dev.models if isinstance(mid, int)),
            "errors": {mid: ms[0].error_info for mid, ms in dev.models.items() if isinstance(mid, int)},
            "maker": dev.common[0].Mn.value,
            "wrtg": dev.nameplate[0].WRtg.cvalue,
            "modules_w": [m.DCW.cvalue for m in dev.mppt[0].module],
            "soc": dev.DERStorageCapacity[0].SoC.cvalue,
        }
        ctl = dev.DERCtlAC[0]
        ctl.read()
        out["before"] = (ctl.WMaxLimPctEna.value, ctl.WMaxLimPct.cvalue, ctl.PFWInj.PF.cvalue)
        ctl.WMaxLimPct.cvalue = 50.0
        ctl.WMaxLimPctRvrtTms.value = 120
        ctl.WMaxLimPctEna.value = 1
        ctl.write()
        ctl.read()
        out["after"] = (ctl.WMaxLimPctEna.value, ctl.WMaxLimPct.cvalue, ctl.WMaxLimPctRvrtRem.value)
        return out
    finally:
        dev.disconnect()


async def test_pysunspec2_scans_every_model_and_reads_and_writes_704(inverter, home, clock):
    got = await asyncio.to_thread(_pysunspec2_session, inverter.port)
    assert got["models"] == sorted(MODEL_IDS)
    assert all(err == "" for err in got["errors"].values()), got["errors"]
    assert got["maker"] == "HEMS Simulator" and got["wrtg"] == 10000
    assert sum(got["modules_w"]) == pytest.approx(home.last.pv_power_w, abs=1.0)
    assert got["soc"] == pytest.approx(home.last.battery_soc_pct, abs=0.05)
    assert got["before"] == (0, 100.0, 1.0)
    assert got["after"] == (1, 50.0, 120)
    assert home.controls.pv_limit_w == 5000.0
    advance(clock, home, 30)
    assert home.last.pv_power_w == pytest.approx(5000.0)


def _ctx(devices: list[dict], bus: Bus | None = None, clock=None, section: dict | None = None):
    clock = clock or ManualClock(0.0)
    return IntegrationContext(
        name="sunspec",
        bus=bus or Bus(clock),
        clock=clock,
        config=Config(devices=tuple(devices)),
        section=section or {},
        devices=[dict(d) for d in devices if d["type"] == "sunspec"],
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"host": "10.0.0.2", "port": "x"}, "devices[1].port = 'x': must be an integer 1-65535"),
        ({"host": "10.0.0.2", "port": 70000}, "devices[1].port = 70000: must be an integer 1-65535"),
        ({}, "devices[1].host = None: required"),
        ({"host": "h", "unit_id": 300}, "devices[1].unit_id = 300: must be an integer 0-255"),
        ({"host": "h", "poll_interval_s": True}, "devices[1].poll_interval_s = True: must be a number"),
        ({"host": "h", "revert_timeout_s": 0}, "devices[1].revert_timeout_s = 0: must be an integer 1-65535"),
        (
            {"host": "h", "revert_timeout_s": 8},
            "revert_timeout_s = 8: must be at least twice poll_interval_s (5)",
        ),
        (
            {"host": "h", "colour": "red"},
            "unknown key 'devices[1].colour'; allowed: host, id, name, poll_interval_s",
        ),
    ],
)
def test_config_errors_name_the_key(entry, message):
    devices = [{"type": "other", "x": 1}, {"type": "sunspec", **entry}]
    with pytest.raises(ConfigError) as exc:
        create(_ctx(devices))
    assert any(message in p for p in exc.value.problems), exc.value.problems


def test_config_defaults_and_duplicate_ids():
    integ = create(_ctx([{"type": "sunspec", "host": " 192.0.2.7 "}]))
    cfg = integ.devices[0].cfg
    assert (cfg.host, cfg.port, cfg.unit_id, cfg.poll_interval_s, cfg.id, cfg.revert_timeout_s) == (
        "192.0.2.7",
        502,
        1,
        5.0,
        "inverter",
        60,
    )
    with pytest.raises(ConfigError, match=r"devices\[1\].id = 'inverter': already used by devices\[0\]"):
        create(_ctx([{"type": "sunspec", "host": "a"}, {"type": "sunspec", "host": "b"}]))
    with pytest.raises(ConfigError, match=r"unknown key 'integrations.sunspec.foo'"):
        create(_ctx([], section={"foo": 1}))


async def test_dev_peer_and_the_integration_end_to_end(home, clock):
    peer = await dev_peer(DevPeerContext(sim=home, clock=clock))
    try:
        assert peer.replaces == {"inverter"} and peer.section == {}
        (entry,) = peer.devices
        assert entry["type"] == "sunspec" and entry["id"] == "inverter" and entry["poll_interval_s"] == 2
        bus = Bus(clock)
        integ = create(_ctx(peer.devices, bus=bus, clock=clock))
        assert integ.name == "sunspec"
        await integ.start()
        try:
            device = integ.devices[0]
            await _until_polled(device)
            assert bus.status("inverter")[0] is DeviceStatus.OK
            assert bus.value("inverter", "soc_pct") == pytest.approx(home.last.battery_soc_pct, abs=0.05)
            await bus.send(Command("inverter", Setting.BATTERY_CHARGE_POWER_W, 2500.0))
            assert home.controls.battery_charge_power_w == pytest.approx(2500.0, abs=1.5)
            assert bus.value("inverter", "battery_setpoint_w") == pytest.approx(2500.0, abs=1.5)
        finally:
            await integ.stop()
        assert bus.status("inverter")[0] is DeviceStatus.OFFLINE
    finally:
        await peer.stop()
    client = SunSpecClient(entry["host"], entry["port"], timeout_s=0.5)
    with pytest.raises(Exception, match="cannot connect"):
        await client.connect()  # the peer's server is gone


async def _until_polled(device) -> None:
    for _ in range(500):
        if device.polls:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the device was never polled")


def test_hems_sim_sunspec_runs_standalone_until_interrupted():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from integrations.sunspec.sim import main; sys.exit(main(sys.argv[1:]))",
         "--port", "0", "--speed", "60", "--seed", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        line = ""
        while "SunSpec simulated hybrid inverter on" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "the simulator exited early"
        port = int(line.split(" on 127.0.0.1:")[1].split(" ")[0])

        async def scan():
            client = SunSpecClient("127.0.0.1", port, timeout_s=2.0)
            await client.connect()
            try:
                return await client.discover()
            finally:
                client.close()

        dmap = asyncio.run(scan())
        assert dmap.ids == list(MODEL_IDS) and dmap.problems == []
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert "Traceback" not in out


def test_bench_prints_requests_and_milliseconds(capsys):
    assert bench.main(["--json", "--polls", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["benchmark"] == "sunspec"
    assert result["poll"]["requests"] == 5 and result["poll"]["polls"] == 5
    assert 0 < result["poll"]["ms_median"] <= result["poll"]["ms_p95"] < 1000
    assert result["discovery"]["requests"] <= 10 and result["command"]["requests"] == 2
