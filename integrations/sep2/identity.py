"""Device identity as IEEE 2030.5 defines it: the LFDI and SFDI are derived from the device certificate.

- LFDI (long-form device identifier): the first 160 bits of the SHA-256 hash of the certificate (DER encoding),
  written as 40 hexadecimal digits.
- SFDI (short-form device identifier): the first 36 bits of that hash as a decimal number, followed by a check
  digit chosen so that the sum of all the digits is a multiple of 10.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def _der(cert: bytes | x509.Certificate) -> bytes:
    if isinstance(cert, x509.Certificate):
        return cert.public_bytes(serialization.Encoding.DER)
    data = bytes(cert)
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return data


def lfdi(cert: bytes | x509.Certificate) -> str:
    """40 upper-case hex digits: the first 160 bits of SHA-256(certificate DER). PEM or DER bytes accepted."""
    return hashlib.sha256(_der(cert)).digest()[:20].hex().upper()


def check_digit(digits: str) -> int:
    """The digit that, appended, makes the sum of all digits a multiple of 10."""
    return (10 - sum(int(c) for c in digits) % 10) % 10


def sfdi_from_lfdi(lfdi_hex: str) -> int:
    """The SFDI of an LFDI: its first 36 bits (9 hex digits) in decimal, followed by the check digit."""
    value = int(lfdi_hex[:9], 16)
    digits = str(value)
    return int(digits + str(check_digit(digits)))


def sfdi(cert: bytes | x509.Certificate) -> int:
    return sfdi_from_lfdi(lfdi(cert))


def sfdi_valid(value: int) -> bool:
    return value >= 0 and sum(int(c) for c in str(value)) % 10 == 0


def lfdi_of_file(path: str) -> str:
    with open(path, "rb") as f:
        return lfdi(f.read())
