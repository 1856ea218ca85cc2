"""The simulated VTN's CLI and API, the dev peer, and the ``hems bench dr`` runner."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from hems.integration import DevPeerContext
from hems.store import Store
from integrations.openadr import bench, create
from integrations.openadr.vtn import dev_peer, event_main, parse_duration, parse_start

from .conftest import context
from .test_openadr_loopback import until


def test_duration_and_start_parsing():
    assert [parse_duration(x) for x in ("90", 45, "45s", "30m", "2h", "1h30m", "PT2H", "1d")] == [
        90.0,
        45.0,
        45.0,
        1800.0,
        7200.0,
        5400.0,
        7200.0,
        86400.0,
    ]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    assert parse_start("+5m", 1000.0) == 1300.0 and parse_start("now", 1000.0) == 1000.0
    assert parse_start("2026-07-01T16:00:00+00:00", 0) == 1782921600.0 and parse_start(12.5, 0) == 12.5
    with pytest.raises(ValueError, match="not a start time"):
        parse_start("tomorrowish", 0)


async def test_event_cli_through_the_api(vtn, capsys):
    loop = asyncio.get_running_loop()

    def cli(*args: str) -> tuple[int, dict]:
        code = event_main(["--vtn", vtn.base_url, *args])
        return code, json.loads(capsys.readouterr().out)

    before = time.time()
    code, sent = await loop.run_in_executor(
        None, cli, "--level", "2", "--start", "+5m", "--duration", "2h", "--event-id", "cli-1"
    )
    assert code == 0 and sent["event_id"] == "cli-1" and sent["level"] == 2 and sent["duration_s"] == 7200.0
    assert before + 300 <= sent["start_ts"] <= time.time() + 300
    code, modified = await loop.run_in_executor(None, cli, "--modify", "cli-1", "--level", "3")
    assert code == 0 and modified["level"] == 3 and modified["modification_number"] == 1
    code, cancelled = await loop.run_in_executor(None, cli, "--cancel", "cli-1")
    assert code == 0 and cancelled["cancelled"] and cancelled["modification_number"] == 2
    code, state = await loop.run_in_executor(None, cli, "--list")
    assert code == 0 and [e["event_id"] for e in state["events"]] == ["cli-1"]
    assert state["events"][0]["status"] == "cancelled"
    code, error = await loop.run_in_executor(None, cli, "--cancel", "nope")
    assert code == 1 and "no event" in error["error"]


async def test_dev_peer_serves_the_ven(tmp_path, caplog):
    from hems.clock import RealClock

    caplog.set_level(logging.INFO)
    peer = await dev_peer(DevPeerContext(sim=None, clock=RealClock()))  # the VTN does not touch the home
    store = Store(tmp_path / "hems.sqlite")
    try:
        assert peer.replaces == set() and peer.devices == []
        assert "hems sim openadr-event --vtn" in caplog.text
        integration = create(context({**peer.section, "poll_interval_s": 0.05}, store=store))
        await integration.start()
        try:
            await until(lambda: integration.ven.registered)
            peer.vtn.add_event(start_ts=time.time() - 1, duration_s=600, level=1, event_id="dev-1")
            await until(lambda: integration.dr.get("openadr:dev-1"))
        finally:
            await integration.stop()
    finally:
        await peer.stop()
        store.close()


async def test_bench_runs_and_reports_percentiles():
    result = await bench.run(events=3, poll_s=0.02)
    assert result["events"] == 3 and result["benchmark"] == "dr"
    assert 0 < result["handling_p50_ms"] <= result["p99_ms"] and result["p50_ms"] <= result["p99_ms"]
