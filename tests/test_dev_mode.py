"""Dev mode end to end: the real `hems dev` command, its HTTP API and the live WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hems.config import Config, parse_config
from hems.runtime import Runtime
from tests.conftest import OWNER_PASSWORD, free_port, login


async def _get_json(session, url):
    async with session.get(url) as resp:
        return resp.status, await resp.json()


def _readings(status: dict) -> dict:
    return {(d["device_id"], q): r["value"] for d in status["devices"] for q, r in d["readings"].items()}


def test_hems_dev_command_serves_changing_status(tmp_path):
    """What `make run` does: start `hems dev`, see the URL, and /api/status values change within 10 s."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hems.cli",
            "dev",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            "--speed",
            "60",
            "--owner-password",
            OWNER_PASSWORD,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        url_line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "Dashboard: http://" in line:
                url_line = line
                break
            assert line or proc.poll() is None, "hems dev exited early"
        assert f"http://127.0.0.1:{port}" in url_line

        async def check():
            async with await login(f"http://127.0.0.1:{port}") as s:
                for _ in range(100):  # simulated devices behind real protocols connect within seconds
                    code, health = await _get_json(s, f"http://127.0.0.1:{port}/healthz")
                    if health["devices"]["ok"] >= 5:
                        break
                    await asyncio.sleep(0.1)
                assert code == 200 and health["status"] == "ok"
                assert health["devices"]["ok"] >= 5, health
                _, first = await _get_json(s, f"http://127.0.0.1:{port}/api/status")
                t0 = time.monotonic()
                while time.monotonic() - t0 < 10:
                    await asyncio.sleep(1.0)
                    _, later = await _get_json(s, f"http://127.0.0.1:{port}/api/status")
                    changed = {k for k, v in _readings(later).items() if _readings(first).get(k) != v}
                    if ("inverter", "soc_pct") in changed or ("grid-meter", "energy_import_wh") in changed:
                        return first, later
                pytest.fail("no reading changed within 10 s")

        first, later = asyncio.run(check())
        assert later["gateway"]["time"] > first["gateway"]["time"]
        caps = {d["device_id"]: set(d["capabilities"]) for d in later["devices"]}
        served_by = {d["device_id"]: d["integration"] for d in later["devices"]}
        assert served_by["ev-charger"] == "ocpp"  # dev mode drives the simulated charger over real OCPP
        assert caps["inverter"] == {"pv_inverter", "battery"}
        assert later["controller"]["strategy"] == "planner"
        assert later["controller"]["reasons"]  # the plan says why
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, out
    assert "Traceback" not in out


async def test_runtime_api_and_live_stream(tmp_path):
    cfg = parse_config(
        {
            "gateway": {"data_dir": str(tmp_path)},
            "web": {"port": 0},
            "sim": {"speed": 600, "tick_s": 0.05, "start": "2026-07-07T12:00"},
            "controller": {"interval_s": 60},
        }
    )
    rt = Runtime.for_dev(cfg)
    rt.owner_password = OWNER_PASSWORD
    await rt.start()
    try:
        async with await login(rt.url) as s:
            for _ in range(100):  # the Zigbee meter joins the simulated network within a second
                code, status = await _get_json(s, rt.url + "/api/status")
                meters = [d for d in status["devices"] if "grid_meter" in d["capabilities"] and d["readings"]]
                if meters:
                    break
                await asyncio.sleep(0.1)
            assert code == 200
            meter = meters[0]
            assert meter["readings"]["grid_power_w"]["unit"] == "W"
            assert status["tariff"]["period"] == "shoulder"  # Tuesday noon, local time
            ws = await s.ws_connect(rt.url + "/api/live")
            try:
                first = json.loads((await ws.receive(timeout=5)).data)
                assert first["type"] == "snapshot"
                seen = set()
                t0 = time.monotonic()
                while time.monotonic() - t0 < 5 and len(seen) < 3:
                    msg = json.loads((await ws.receive(timeout=5)).data)
                    assert msg["type"] == "reading"
                    seen.add(msg["device_id"])
                assert len(seen) >= 3
            finally:
                # at 600x the stream never pauses, and aiohttp's client reads it until the server's close
                # frame with a per-message timeout: bound the polite close, then drop the connection
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        await ws.close()
            async with s.get(rt.url + "/") as resp:
                assert resp.status == 200
                assert "HEMS gateway" in await resp.text()
    finally:
        await rt.stop()
    # readings reached the store and survive the restart
    from hems.store import Store

    store = Store(cfg.store_path)
    try:
        assert len(store.readings(device_id="grid-meter", quantity="grid_power_w")) > 0
    finally:
        store.close()


async def test_a_broken_integration_is_refused_with_its_name(tmp_path):
    cfg = parse_config({"gateway": {"data_dir": str(tmp_path)}, "integrations": {"sim": {"bogus": 1}}})
    rt = Runtime(config=cfg, dev=True, use_dev_peers=frozenset())
    with pytest.raises(Exception, match=r"integrations\.sim\.bogus"):
        await rt.start(serve_web=False)
    await rt.stop()


def test_default_config_is_valid():
    assert Config().integrations == {"sim": {}}


async def test_plan_api_and_stored_plan(tmp_path):
    cfg = parse_config(
        {
            "gateway": {"data_dir": str(tmp_path)},
            "web": {"port": 0},
            "sim": {"speed": 60, "tick_s": 0.05, "start": "2026-07-07T12:00"},
            "controller": {"interval_s": 5},
        }
    )
    rt = Runtime.for_dev(cfg)
    rt.owner_password = OWNER_PASSWORD
    await rt.start()
    try:
        async with await login(rt.url) as s:
            for _ in range(300):  # generous: a loaded CI machine may take seconds to start every peer
                async with s.get(rt.url + "/api/plan") as resp:
                    if resp.status == 200:
                        plan = await resp.json()
                        break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("no plan within 30 s")
        assert len(plan["grid_w"]) == 96 and len(plan["reasons"]) == 96
        assert plan["status"] in ("optimal", "feasible", "time_limit")
        assert len(plan["forecast"]["pv_w"]) == 96 and plan["forecast"]["period"][0] == "shoulder"
        assert all(0 <= v <= 100 for v in plan["battery_soc_pct"])
    finally:
        await rt.stop()
    from hems.store import Store

    store = Store(cfg.store_path)
    try:
        assert store.kv_get("plan.latest")["start_ts"] == plan["start_ts"] or store.events(kind="plan")
        assert store.events(kind="plan")[0]["data"]["reason"] == "start"
    finally:
        store.close()
