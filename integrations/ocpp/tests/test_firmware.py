"""UpdateFirmware round trips over real websockets, per OCPP version: the simulated charge point downloads the
file over real HTTP (aiohttp on loopback), reports every step, reboots and boots with the new version."""

from __future__ import annotations

import base64

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hems import pki
from hems.model import Quantity
from integrations.ocpp import profiles as pf
from integrations.ocpp.firmware import make_sim_firmware

from .conftest import CP_ID, wait_for

VERSIONS = ["1.6", "2.0.1", "2.1"]
FIRMWARE = make_sim_firmware("1.1.0", 64 * 1024)


@pytest.fixture
async def files():
    """A firmware server on loopback: /fw/<name> from ``served``, 404 otherwise; it counts the requests."""
    served: dict[str, bytes] = {"simcharger-1.1.0.bin": FIRMWARE, "notes.txt": b"release notes, not firmware"}
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        hits.append(name)
        if name not in served:
            raise web.HTTPNotFound(text="no such firmware")
        return web.Response(body=served[name], content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/fw/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/fw", served, hits
    finally:
        await runner.cleanup()


def statuses_seen(bus):
    return bus.subscribe(device_id=CP_ID, quantity="firmware_status")


@pytest.mark.parametrize("version", VERSIONS)
async def test_update_firmware_downloads_installs_reboots_and_reports_the_new_version(rig, files, version):
    base, _, hits = files
    r = await rig(version)
    await r.ready()
    await r.charging()  # a session runs: the reboot ends it
    session = r.dev.active_session
    assert r.bus.firmware(CP_ID).version == "1.0.0" and r.bus.firmware(CP_ID).update_state == "idle"
    sub = statuses_seen(r.bus)
    try:
        result = await r.integ.commission(
            "update_firmware",
            {"charge_point_id": CP_ID, "location": f"{base}/simcharger-1.1.0.bin", "version": "1.1.0"},
        )
        assert result["status"] == "Accepted" and result["request_id"] == 1
        assert r.bus.firmware(CP_ID).update_state == "downloading"
        assert r.bus.firmware(CP_ID).target_version == "1.1.0"
        await wait_for(
            lambda: r.bus.firmware(CP_ID).update_state == "installed", "the update", timeout_s=15.0
        )
        received = [x.value for x in sub.drain()]
    finally:
        sub.close()
    expected = ["Downloading", "Downloaded", "Installing", "Installed"]
    if version != "1.6":
        expected = ["Downloading", "Downloaded", "Installing", "InstallRebooting", "Installed"]
    assert r.cp.firmware_statuses == expected
    assert received == expected  # every notification reached the CSMS, in order
    status = r.bus.firmware(CP_ID)
    assert status.version == "1.1.0" and status.progress_pct == 100.0 and status.message == "Installed"
    # it downloaded the file once, over HTTP, whole
    assert hits == ["simcharger-1.1.0.bin"]
    assert r.cp.firmware_downloads == [
        {"url": f"{base}/simcharger-1.1.0.bin", "status": 200, "size_bytes": len(FIRMWARE)}
    ]
    # it rebooted: a second BootNotification with the new version; the session ended for the reboot
    assert r.cp.boots == 2 and r.dev.boots == 2
    assert r.cp.firmware_version == "1.1.0" and r.dev.firmware == "1.1.0"
    assert r.bus.device(CP_ID).info.extra["firmware"] == "1.1.0"
    done = next(s for s in r.dev.finished if s.tx_id == session.tx_id)
    assert done.reason == "Reboot"
    # and after the reboot the CSMS set the charger up again (the safe default profile is back)
    await r.ready()
    assert any(p.id == pf.SAFE_PROFILE_ID for p in r.cp.profiles)
    assert r.value(Quantity.EV_POWER_LIMIT_W) is not None


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_missing_file_is_retried_then_reported_as_download_failed(rig, files, version):
    base, _, hits = files
    r = await rig(version)
    await r.ready()
    await r.integ.commission(
        "update_firmware",
        {"charge_point_id": CP_ID, "location": f"{base}/gone.bin", "retries": 1, "retry_interval_s": 2},
    )
    await wait_for(lambda: r.bus.firmware(CP_ID).update_state == "failed", "the failure", timeout_s=15.0)
    status = r.bus.firmware(CP_ID)
    assert status.message.startswith("the charger could not download the firmware")
    assert status.version == "1.0.0" and r.cp.firmware_version == "1.0.0" and r.cp.boots == 1
    assert r.cp.firmware_statuses == ["Downloading", "Downloading", "DownloadFailed"]
    assert hits == ["gone.bin", "gone.bin"]  # the first try and one retry
    assert [d["status"] for d in r.cp.firmware_downloads] == [404, 404]


@pytest.mark.parametrize(
    ("version", "last"), [("1.6", "InstallationFailed"), ("2.0.1", "InstallVerificationFailed")]
)
async def test_a_file_that_is_not_firmware_for_this_charger_is_not_installed(rig, files, version, last):
    base, _, _ = files
    r = await rig(version)
    await r.ready()
    await r.integ.commission("update_firmware", {"charge_point_id": CP_ID, "location": f"{base}/notes.txt"})
    await wait_for(lambda: r.bus.firmware(CP_ID).update_state == "failed", "the refusal", timeout_s=15.0)
    assert r.cp.firmware_statuses == ["Downloading", "Downloaded", last]
    assert r.cp.boots == 1 and r.bus.firmware(CP_ID).version == "1.0.0"


def _signer():
    key = pki.new_key()
    cert = pki.certificate("HEMS test firmware signer", key)
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


async def test_signed_firmware_2_0_1_is_verified_scheduled_and_installed(rig, files):
    base, _, _ = files
    r = await rig("2.0.1")
    await r.ready()
    key, cert_pem = _signer()
    signature = base64.b64encode(key.sign(FIRMWARE, ec.ECDSA(hashes.SHA256()))).decode()
    retrieve = r.clock.now() + 20.0  # 1 s of wall time at the test's clock speed
    result = await r.integ.commission(
        "update_firmware",
        {
            "charge_point_id": CP_ID,
            "location": f"{base}/simcharger-1.1.0.bin",
            "retrieve_at": pf.iso(retrieve),
            "signature": signature,
            "signing_certificate": cert_pem,
        },
    )
    assert result["retrieve_ts"] == pytest.approx(retrieve, abs=1.0)
    await wait_for(
        lambda: r.bus.firmware(CP_ID).update_state == "installed", "the signed update", timeout_s=15.0
    )
    assert r.cp.firmware_statuses == [
        "DownloadScheduled",
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
        "Installed",
    ]
    assert r.cp.firmware_version == "1.1.0"


async def test_a_bad_signature_is_refused_and_nothing_installed(rig, files):
    base, _, _ = files
    r = await rig("2.0.1")
    await r.ready()
    key, cert_pem = _signer()
    signature = base64.b64encode(key.sign(b"some other file", ec.ECDSA(hashes.SHA256()))).decode()
    await r.integ.commission(
        "update_firmware",
        {
            "charge_point_id": CP_ID,
            "location": f"{base}/simcharger-1.1.0.bin",
            "signature": signature,
            "signing_certificate": cert_pem,
        },
    )
    await wait_for(lambda: r.bus.firmware(CP_ID).update_state == "failed", "the refusal", timeout_s=15.0)
    assert r.cp.firmware_statuses == ["Downloading", "Downloaded", "InvalidSignature"]
    assert (
        r.bus.firmware(CP_ID).message
        == "the firmware's signature does not verify with the signing certificate"
    )
    assert r.cp.boots == 1 and r.cp.firmware_version == "1.0.0"


async def test_bad_update_requests_are_refused_with_the_reason(rig, files):
    base, _, hits = files
    r = await rig("1.6")
    await r.ready()
    for params, message in [
        ({"location": "file:///etc/passwd"}, "must be an absolute http, https, ftp, ftps URL"),
        ({"location": ""}, "location is required"),
        (
            {"location": f"{base}/x", "retrieve_at": "tomorrow"},
            "retrieve_at = 'tomorrow': must be an ISO 8601",
        ),
        ({"location": f"{base}/x", "retries": -1}, "retries = -1: must be a whole number 0-10"),
        (
            {"location": f"{base}/x", "signature": "AAAA"},
            "OCPP 1.6, whose UpdateFirmware carries no signature",
        ),
        ({"location": f"{base}/x", "colour": 1}, "unknown parameter(s) colour"),
    ]:
        with pytest.raises(ValueError) as caught:
            await r.integ.commission("update_firmware", {"charge_point_id": CP_ID, **params})
        assert message in str(caught.value), params
    assert hits == [] and r.cp.firmware_statuses == []
    await r.cp.stop()
    await wait_for(lambda: r.dev.conn is None, "the charger to go away")
    with pytest.raises(ValueError, match="is not connected"):
        await r.integ.commission("update_firmware", {"charge_point_id": CP_ID, "location": f"{base}/x"})
