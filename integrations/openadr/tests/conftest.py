"""Fixtures: certificates made with ``cryptography``, a simulated VTN on a free loopback port, and the VEN."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from openleadr.utils import certificate_fingerprint

from hems.bus import Bus
from hems.clock import RealClock
from hems.config import Config
from hems.dr import DRManager
from hems.integration import IntegrationContext
from hems.model import Capability, DeviceInfo, Quantity, Reading
from hems.store import Store
from integrations.openadr.vtn import SimVTN


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool = False, server: bool = False):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert, key) -> tuple[str, str]:
    crt = path.with_suffix(".crt")
    pem = path.with_suffix(".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(crt), str(pem)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> dict:
    """A CA, the VTN's server/signing certificate and the VEN's client/signing certificate (EC P-256), plus a
    second CA that nobody trusts."""
    d = tmp_path_factory.mktemp("pki")
    out: dict = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("HEMS test CA", ca_key, _name("HEMS test CA"), ca_key, ca=True)
    out["ca_file"], _ = _write(d / "ca", ca, ca_key)
    for role, server in (("vtn", True), ("ven", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"{role}.test", key, ca.subject, ca_key, server=server)
        out[f"{role}_cert"], out[f"{role}_key"] = _write(d / role, cert, key)
        out[f"{role}_fingerprint"] = certificate_fingerprint(cert.public_bytes(serialization.Encoding.PEM))
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = _cert("rogue CA", rogue_key, _name("rogue CA"), rogue_key, ca=True)
    out["rogue_ca_file"], _ = _write(d / "rogue", rogue, rogue_key)
    return out


@pytest.fixture
async def vtn():
    v = SimVTN(host="127.0.0.1", port=0, poll_freq_s=1, report_sampling_s=1.0)
    await v.start()
    yield v
    await v.stop()


class FakeMeter:
    def __init__(self, device_id: str = "grid-meter") -> None:
        self._info = DeviceInfo(device_id, "Grid meter", frozenset({Capability.GRID_METER}), "test")

    @property
    def info(self) -> DeviceInfo:
        return self._info


def meter_bus(clock, grid_w: float = 1234.5, import_wh: float = 5000.0) -> Bus:
    bus = Bus(clock)
    bus.add_device(FakeMeter())
    bus.publish(Reading("grid-meter", Quantity.GRID_POWER_W, grid_w, clock.now()))
    bus.publish(Reading("grid-meter", Quantity.ENERGY_IMPORT_WH, import_wh, clock.now()))
    return bus


def context(section: dict, *, store: Store | None, bus: Bus | None = None, dr: DRManager | None = None):
    clock = RealClock()
    ctx = IntegrationContext(
        name="openadr",
        bus=bus or meter_bus(clock),
        clock=clock,
        config=Config(),
        section=dict(section),
        store=store,
    )
    if dr is not None:
        ctx.dr = dr  # what the runtime will provide (IntegrationContext.dr)
    return ctx
