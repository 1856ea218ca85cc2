"""Fixtures: certificates made with ``cryptography``, a simulated VTN on a free loopback port, and the VEN."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from openleadr.utils import certificate_fingerprint

import hems.pki as pki_mod
from hems.bus import Bus
from hems.clock import RealClock
from hems.config import Config
from hems.dr import DRManager
from hems.integration import IntegrationContext
from hems.model import Capability, DeviceInfo, Quantity, Reading
from hems.store import Store
from integrations.openadr.vtn import SimVTN


def _name(cn: str) -> x509.Name:
    return pki_mod.name(cn)


def _cert(subject: str, key, issuer, issuer_key, *, ca: bool = False, server: bool = False):
    return pki_mod.certificate(subject, key, issuer, issuer_key, ca=ca, server=server)


def _write(path: Path, cert, key) -> tuple[str, str]:
    return pki_mod.write_pem(path, cert, key)


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
