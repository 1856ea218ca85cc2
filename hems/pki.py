"""Certificates made on the spot with ``cryptography``: a CA and the certificates it signs (EC P-256).

Used by the simulated utility servers and brokers in dev mode and tests, and the basis of the gateway's own
identity at first boot.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def certificate(
    subject: str,
    key,
    issuer: x509.Name | None = None,
    issuer_key=None,
    *,
    ca: bool = False,
    server: bool = False,
    days: float = 2.0,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
) -> x509.Certificate:
    """A certificate for ``subject`` signed by ``issuer_key`` (self-signed when no issuer is given).

    A CA certificate may sign certificates; otherwise it is a TLS server or client certificate for ``hosts``."""
    issuer = issuer or name(subject)
    issuer_key = issuer_key or key
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        alt: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt.append(x509.DNSName(host))
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def write_pem(path: Path, cert: x509.Certificate, key) -> tuple[str, str]:
    """Write ``path.crt`` and ``path.key`` (PKCS#8, unencrypted); return their paths."""
    crt, pem = path.with_suffix(".crt"), path.with_suffix(".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(pem, 0o600)  # a private key is its owner's alone
    return str(crt), str(pem)
