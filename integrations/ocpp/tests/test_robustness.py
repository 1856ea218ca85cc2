"""Bad input never crashes the CSMS: raw websocket clients send garbage, wrong credentials, unknown ids."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hems.bus import Bus
from hems.clock import RealClock
from hems.model import DeviceStatus
from integrations.ocpp.csms import OcppIntegration
from integrations.ocpp.rpc import basic_auth_header
from integrations.ocpp.sim import SimChargePoint, ToyEV

from .conftest import CP_ID, PASSWORD, make_context, wait_for


@pytest.fixture
async def csms(request):
    """A CSMS with one enrolled charger; ``request.param`` may carry extra [integrations.ocpp] keys."""
    bus = Bus(RealClock())
    section = {"port": 0, **getattr(request, "param", {})}
    integ = OcppIntegration(make_context(bus, section, [{"type": "ocpp", "id": CP_ID, "password": PASSWORD}]))
    await integ.start()
    yield integ
    await integ.stop()


def auth(login: str = CP_ID, password: str = PASSWORD) -> dict:
    return {"Authorization": basic_auth_header(login, password)}


async def exchange(ws, frame: str) -> list:
    await ws.send_str(frame)
    msg = await ws.receive(timeout=3)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def _answer_skipping_calls(ws, frame: str) -> list:
    """Send ``frame`` and return the answer to it; the CSMS's own calls meanwhile get a CALLERROR."""
    await ws.send_str(frame)
    while True:
        msg = await ws.receive(timeout=3)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        answer = json.loads(msg.data)
        if answer[0] != 2:
            return answer
        await ws.send_str(json.dumps([4, answer[1], "NotImplemented", "", {}]))


BOOT = {
    "1.6": {"chargePointVendor": "Raw", "chargePointModel": "Socket"},
    "2.0.1": {"chargingStation": {"vendorName": "Raw", "model": "Socket"}, "reason": "PowerUp"},
}
# (frame, expected error code per version; None = the frame is answered with a CALLRESULT)
GARBAGE = [
    ("this is {not json", {"1.6": ("-1", "FormationViolation"), "2.0.1": ("-1", "RpcFrameworkError")}),
    (
        '[2,"g1","Heartbeat",{"oops":1',
        {"1.6": ("g1", "FormationViolation"), "2.0.1": ("g1", "FormatViolation")},
    ),
    ('{"not":"a list"}', {"1.6": ("-1", "ProtocolError"), "2.0.1": ("-1", "RpcFrameworkError")}),
    ('[2,"g2","Heartbeat"]', {"1.6": ("g2", "ProtocolError"), "2.0.1": ("g2", "ProtocolError")}),
    ('[2,"g3","Heartbeat",[]]', {"1.6": ("g3", "FormationViolation"), "2.0.1": ("g3", "FormatViolation")}),
    (
        '[2,"g4","Heartbeat",{"extra":1}]',
        {"1.6": ("g4", "FormationViolation"), "2.0.1": ("g4", "FormatViolation")},
    ),
    ('[2,"g5","FooBar",{}]', {"1.6": ("g5", "NotImplemented"), "2.0.1": ("g5", "NotImplemented")}),
    ('[2,"g6","GetConfiguration",{}]', {"1.6": ("g6", "NotSupported"), "2.0.1": ("g6", "NotImplemented")}),
    ('[9,"g7"]', {"1.6": ("g7", "ProtocolError"), "2.0.1": ("g7", "MessageTypeNotSupported")}),
]
MISSING = {  # a required field left out: ProtocolError (the library's mapping of the schema's "required")
    "1.6": '[2,"m1","BootNotification",{"chargePointVendor":"Raw"}]',
    "2.0.1": '[2,"m1","BootNotification",{"reason":"PowerUp"}]',
}
WRONG_TYPE = {
    "1.6": '[2,"t1","StatusNotification",{"connectorId":"one","errorCode":"NoError","status":"Available"}]',
    "2.0.1": '[2,"t1","StatusNotification",{"timestamp":"2026-01-01T00:00:00Z","connectorStatus":"Available",'
    '"evseId":"one","connectorId":1}]',
}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_garbage_gets_the_right_callerror_and_the_connection_stays_usable(csms, version):
    bus = csms.ctx.bus
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            f"{csms.url}/{CP_ID}", protocols=(f"ocpp{version}",), headers=auth()
        ) as ws:
            assert ws.protocol == f"ocpp{version}"
            boot = await _answer_skipping_calls(ws, json.dumps([2, "b1", "BootNotification", BOOT[version]]))
            assert boot[:2] == [3, "b1"] and boot[2]["status"] == "Accepted"
            for frame, codes in GARBAGE:
                uid, code = codes[version]
                answer = await _answer_skipping_calls(ws, frame)
                assert answer[0] == 4 and (answer[1], answer[2]) == (uid, code), (frame, answer)
                assert isinstance(answer[3], str) and isinstance(answer[4], dict)
            assert bus.status(CP_ID)[0] is DeviceStatus.FAULTY
            for frame, code in (
                (MISSING[version], "ProtocolError"),
                (WRONG_TYPE[version], "TypeConstraintViolation"),
            ):
                answer = await _answer_skipping_calls(ws, frame)
                assert answer[0] == 4 and answer[2] == code, answer
            # still usable: a valid heartbeat gets its answer and the charger is ok again
            answer = await _answer_skipping_calls(ws, '[2,"ok","Heartbeat",{}]')
            assert answer[:2] == [3, "ok"] and "currentTime" in answer[2]
            assert bus.status(CP_ID)[0] is DeviceStatus.OK
            # a response nobody asked for, and a broken one, are dropped without an answer
            await ws.send_str('[3,"nobody-asked",{}]')
            await ws.send_str('[3,"x"]')
            answer = await _answer_skipping_calls(ws, '[2,"ok2","Heartbeat",{}]')
            assert answer[:2] == [3, "ok2"]
    assert csms.devices[CP_ID].bad_frames >= len(GARBAGE) + 2


async def test_refusals_unknown_id_bad_credentials_and_no_subprotocol(csms):
    url = csms.url
    async with aiohttp.ClientSession() as session:
        for path, headers, status in (
            ("/intruder", auth("intruder"), 404),
            (f"/{CP_ID}", None, 401),
            (f"/{CP_ID}", auth(password="wrong-password-123"), 401),
            (f"/{CP_ID}", auth(login="other"), 401),
            (f"/{CP_ID}", {"Authorization": "Basic !!!"}, 401),
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await session.ws_connect(url + path, protocols=("ocpp1.6",), headers=headers)
            assert err.value.status == status, path
        # enrolled and authenticated, but no version the CSMS speaks: handshake completes, then it closes
        async with session.ws_connect(f"{url}/{CP_ID}", protocols=("ocpp1.5",), headers=auth()) as ws:
            assert ws.protocol is None
            msg = await ws.receive(timeout=3)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1002
    assert csms.ctx.bus.status(CP_ID)[0] is DeviceStatus.OFFLINE


@pytest.mark.parametrize("csms", [{"security_profile": 0}], indirect=True)
async def test_security_profile_0_needs_no_password(csms):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{csms.url}/{CP_ID}", protocols=("ocpp2.0.1", "ocpp1.6")) as ws:
            assert ws.protocol == "ocpp2.0.1"  # the charger's first choice
            answer = await exchange(ws, json.dumps([2, "b", "BootNotification", BOOT["2.0.1"]]))
            assert answer[2]["status"] == "Accepted"


def self_signed(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hems-gateway")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "csms.crt", tmp_path / "csms.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


async def test_security_profile_2_tls_and_basic_auth(tmp_path):
    cert, key = self_signed(tmp_path)
    clock = RealClock()
    bus = Bus(clock)
    section = {"port": 0, "security_profile": 2, "tls_cert": cert, "tls_key": key}
    integ = OcppIntegration(make_context(bus, section, [{"type": "ocpp", "id": CP_ID, "password": PASSWORD}]))
    await integ.start()
    ev = ToyEV(clock)
    trust = ssl.create_default_context(cafile=cert)
    cp = SimChargePoint(f"{integ.url}/{CP_ID}", "1.6", ev=ev, clock=clock, password=PASSWORD, ssl=trust)
    try:
        assert integ.url.startswith("wss://")
        await cp.start()
        await wait_for(lambda: integ.devices[CP_ID].ready.is_set(), "a boot over TLS")
        assert integ.devices[CP_ID].vendor == "HEMS"
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:  # TLS alone is not enough
                await session.ws_connect(
                    f"{integ.url}/{CP_ID}", protocols=("ocpp1.6",), ssl=trust, headers=auth(password="x" * 16)
                )
            assert err.value.status == 401
            with pytest.raises(aiohttp.ClientError):  # plain ws to the TLS port: no
                await session.ws_connect(
                    f"ws://127.0.0.1:{integ.port}/ocpp/{CP_ID}", protocols=("ocpp1.6",), headers=auth()
                )
            with pytest.raises(aiohttp.ClientError):  # a client that does not trust the certificate: no
                await session.ws_connect(f"{integ.url}/{CP_ID}", protocols=("ocpp1.6",), headers=auth())
    finally:
        await cp.stop()
        await integ.stop()


NOTIFICATIONS = {
    "1.6": [
        ('[2,"a1","Authorize",{"idTag":"UNKNOWN"}]', {"idTagInfo": {"status": "Invalid"}}),
        (
            '[2,"d1","DataTransfer",{"vendorId":"com.example","messageId":"hello","data":"{\\"x\\":1}"}]',
            {"status": "Accepted"},
        ),
        ('[2,"f1","FirmwareStatusNotification",{"status":"Downloading"}]', {}),
        (
            '[2,"s1","StatusNotification",{"connectorId":1,"errorCode":"GroundFailure","status":"Faulted"}]',
            {},
        ),
    ],
    "2.0.1": [
        (
            '[2,"a1","Authorize",{"idToken":{"idToken":"UNKNOWN","type":"ISO14443"}}]',
            {"idTokenInfo": {"status": "Invalid"}},
        ),
        ('[2,"d1","DataTransfer",{"vendorId":"com.example","data":{"x":1}}]', {"status": "Accepted"}),
        ('[2,"f1","FirmwareStatusNotification",{"status":"Downloading","requestId":7}]', {}),
        (
            '[2,"s1","StatusNotification",{"timestamp":"2026-01-01T00:00:00Z","connectorStatus":"Faulted",'
            '"evseId":1,"connectorId":1}]',
            {},
        ),
    ],
}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_notifications_are_answered_and_published(csms, version):
    bus = csms.ctx.bus
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            f"{csms.url}/{CP_ID}", protocols=(f"ocpp{version}",), headers=auth()
        ) as ws:
            await _answer_skipping_calls(ws, json.dumps([2, "b1", "BootNotification", BOOT[version]]))
            for frame, payload in NOTIFICATIONS[version]:
                answer = await _answer_skipping_calls(ws, frame)
                assert answer == [3, json.loads(frame)[1], payload], answer
    assert bus.value(CP_ID, "firmware_status") == "Downloading"
    assert bus.value(CP_ID, "connector_status") == "Faulted"
    assert csms.devices[CP_ID].bad_frames == 0


@pytest.mark.parametrize("csms", [{"free_vend": True}], indirect=True)
async def test_free_vend_accepts_any_id_tag(csms):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{csms.url}/{CP_ID}", protocols=("ocpp1.6",), headers=auth()) as ws:
            answer = await _answer_skipping_calls(ws, '[2,"a1","Authorize",{"idTag":"ANYONE"}]')
            assert answer == [3, "a1", {"idTagInfo": {"status": "Accepted"}}]
