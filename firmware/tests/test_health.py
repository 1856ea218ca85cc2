"""The post-boot health check: against scripted real HTTP servers, loopback https, and a real `hems dev` gateway."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware import health, slots
from hems import pki

from .conftest import Disk, healthz, hems_update, loader_boot


def test_waits_through_start_up_until_devices_are_back(gateway):
    gw = gateway(
        [healthz("starting", ok=0), healthz("starting", ok=0), healthz(ok=2, offline=3), healthz(ok=5)]
    )
    report = health.check_health(gw.url, service=None, min_devices_ok=5, timeout_s=60, interval_s=0.05)
    assert report.ok, report.to_json()
    assert report.rounds == 4
    by_name = {c.name: c for c in report.checks}
    assert by_name["healthz"].detail == "ok, version 0.2.0"
    assert by_name["dashboard"].detail == "HTTP 200 text/html"  # / redirects to the setup page
    assert by_name["devices"].detail == "5 ok of 5, 5 needed"


def test_fewer_devices_than_before_is_not_healthy(gateway):
    gw = gateway([healthz(ok=3, offline=2)])
    report = health.check_health(gw.url, service=None, min_devices_ok=5, timeout_s=0.5, interval_s=0.1)
    assert not report.ok
    assert report.failures() == "devices: 3 ok of 5, 5 needed"
    assert report.rounds >= 2


def test_nothing_listening_is_not_healthy():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    report = health.check_health(f"http://127.0.0.1:{port}", service=None, timeout_s=0.2, interval_s=0.1)
    assert not report.ok
    assert "healthz: http://127.0.0.1:" in report.failures() and "does not answer" in report.failures()
    assert {c.name for c in report.checks if not c.ok} == {"healthz", "dashboard"}


def test_loopback_https_with_a_self_signed_certificate(gateway, tmp_path):
    gw = gateway([healthz(ok=1)])
    key = pki.new_key()
    crt, pem = pki.write_pem(tmp_path / "gw", pki.certificate("gateway", key, server=True), key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, pem)
    gw.socket = ctx.wrap_socket(gw.socket, server_side=True)
    report = health.check_health(
        f"https://127.0.0.1:{gw.server_address[1]}",
        service=None,
        min_devices_ok=1,
        timeout_s=10,
        interval_s=0.1,
    )
    assert report.ok, report.to_json()


def test_url_comes_from_the_gateway_config(tmp_path):
    cfg = tmp_path / "hems.toml"
    cfg.write_text(
        '[web]\nhost = "0.0.0.0"\nport = 8443\ntls_cert = "/var/lib/hems/tls.crt"\ntls_key = "/k"\n'
    )
    assert health.url_from_config(cfg) == "https://127.0.0.1:8443"
    cfg.write_text("[web]\nport = 9000\n")
    assert health.url_from_config(cfg) == "http://127.0.0.1:9000"
    assert health.url_from_config(tmp_path / "missing.toml") == "http://127.0.0.1:8080"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def real_gateway(tmp_path):
    """`hems dev` (the real gateway with its simulated home behind real protocols), until /healthz says ok."""
    port = _free_port()
    log = open(tmp_path / "hems-dev.log", "wb")  # closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "hems.cli", "dev", "--port", str(port), "--data-dir", str(tmp_path / "var"),
         "--strategy", "rules"],
        stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while health.devices_ok_now(url) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"hems dev did not come up: {(tmp_path / 'hems-dev.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_trial_against_the_real_gateway_commits_and_a_dead_one_fails(disk: Disk, bundles, keys, real_gateway):
    proc, url = real_gateway
    # wait until the simulated home's devices are up, as they would be on a gateway in use
    deadline = time.monotonic() + 60
    while (health.devices_ok_now(url) or 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    r = hems_update(
        "install", bundles["0.2.0"], "--disk", disk.path, "--pubkey", keys.pub, "--health-url", url
    )
    assert r.returncode == 0, r.stderr
    before = json.loads(hems_update("status", "--disk", disk.path).stdout)["devices_ok_before"]
    assert before >= 1
    slots.arm_trial(disk.boot())  # `hems-update reboot`, then the boot loader starts slot b once
    assert loader_boot(disk.boot()).slot == "b"
    r = hems_update("boot-check", "--disk", disk.path, "--booted-slot", "b", "--trial")
    assert r.returncode == 0 and "trial boot 1 of slot b" in r.stdout
    r = hems_update(
        "health-check", "--disk", disk.path, "--booted-slot", "b", "--url", url, "--service", "", "--timeout", "90",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{before} needed" in r.stdout and "dashboard: HTTP 200 text/html" in r.stdout
    assert hems_update("commit", "--disk", disk.path, "--booted-slot", "b").returncode == 0
    env = slots.read_boot_env(disk.boot())
    assert (env.slot, env.try_slot, env.try_left) == ("b", None, 0)

    proc.terminate()
    proc.wait(timeout=20)
    r = hems_update(
        "health-check", "--disk", disk.path, "--booted-slot", "b", "--url", url, "--service", "", "--timeout", "1",
        "--interval", "0.2", "--always",
    )  # fmt: skip
    assert r.returncode == 4
    assert "does not answer" in r.stdout
