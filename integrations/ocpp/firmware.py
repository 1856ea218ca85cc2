"""Charger firmware over OCPP: UpdateFirmware and the FirmwareStatusNotifications that follow it.

OCPP 1.6J: ``UpdateFirmware(location, retrieveDate, retries, retryInterval)`` (no answer but the CALLRESULT),
then FirmwareStatusNotification Downloading, Downloaded (or DownloadFailed), Installing, Installed (or
InstallationFailed). OCPP 2.0.1/2.1: ``UpdateFirmware(requestId, firmware{location, retrieveDateTime,
installDateTime?, signingCertificate?, signature?})`` answered Accepted/Rejected/AcceptedCanceled/...; the
notifications carry the ``requestId`` and add DownloadScheduled, SignatureVerified, InvalidSignature,
InstallRebooting, InstallVerificationFailed. A charger that installs reboots and sends a BootNotification with
its new ``firmwareVersion``.

The notifications map onto the protocol-free ``FirmwareStatus`` states (idle, downloading, installing,
installed, failed) with a coarse progress: OCPP reports steps, not bytes.

The simulated charge point's firmware file is ``SIMCHARGER-FW <version>\\n`` followed by the image bytes
(``make_sim_firmware``): the version it boots with after installing comes from that first line.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

# OCPP status -> (FirmwareStatus update state, progress %)
STATES: dict[str, tuple[str, float | None]] = {
    "Idle": ("idle", None),
    "DownloadScheduled": ("downloading", 0.0),
    "Downloading": ("downloading", 10.0),
    "DownloadPaused": ("downloading", 10.0),
    "Downloaded": ("downloading", 50.0),
    "SignatureVerified": ("downloading", 60.0),
    "InstallScheduled": ("installing", 60.0),
    "Installing": ("installing", 70.0),
    "InstallRebooting": ("installing", 90.0),
    "Installed": ("installed", 100.0),
    "DownloadFailed": ("failed", None),
    "InvalidSignature": ("failed", None),
    "InstallationFailed": ("failed", None),
    "InstallVerificationFailed": ("failed", None),
}
FAILURE_MESSAGES = {
    "DownloadFailed": "the charger could not download the firmware (check the URL and that it can reach it)",
    "InvalidSignature": "the firmware's signature does not verify with the signing certificate",
    "InstallationFailed": "the charger could not install the firmware",
    "InstallVerificationFailed": "the charger rejected the firmware when it checked it before installing",
}
URL_SCHEMES = ("http", "https", "ftp", "ftps")
MAX_LOCATION_CHARS = 512  # 2.0.1 FirmwareType.location

SIM_MAGIC = b"SIMCHARGER-FW "


def check_location(location: object) -> str:
    """The firmware URL, or ValueError naming what is wrong with it."""
    if not isinstance(location, str) or not location.strip():
        raise ValueError("location is required: the URL the charger downloads the firmware from")
    location = location.strip()
    if len(location) > MAX_LOCATION_CHARS:
        raise ValueError(f"location is {len(location)} characters; OCPP allows {MAX_LOCATION_CHARS}")
    parts = urlsplit(location)
    if parts.scheme not in URL_SCHEMES or not parts.netloc:
        raise ValueError(
            f"location = {location!r}: must be an absolute {', '.join(URL_SCHEMES)} URL the charger can reach"
        )
    return location


def state_of(status: str) -> tuple[str, float | None, str]:
    """(update state, progress %, message) for an OCPP firmware status."""
    state, pct = STATES.get(status, ("idle", None))
    return state, pct, FAILURE_MESSAGES.get(status, status)


# -- the simulated charge point's firmware files ------------------------------------------------------------


def make_sim_firmware(version: str, size_bytes: int = 64 * 1024) -> bytes:
    header = SIM_MAGIC + version.encode() + b"\n"
    body = hashlib.shake_256(version.encode()).digest(max(size_bytes - len(header), 0))
    return header + body


def sim_firmware_version(data: bytes) -> str:
    """The version a simulated charger firmware file installs; ValueError if it is not one."""
    if not data.startswith(SIM_MAGIC) or b"\n" not in data[:80]:
        raise ValueError("not a firmware image for this charger (no SIMCHARGER-FW header)")
    version = data[len(SIM_MAGIC) : data.index(b"\n")].decode("ascii", "replace").strip()
    if not version:
        raise ValueError("the firmware header names no version")
    return version


def verify_signature(data: bytes, signature_b64: str, certificate_pem: str) -> bool:
    """2.0.1 signed firmware: ``signature`` (base64) over the file with the signing certificate's key (SHA-256)."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
