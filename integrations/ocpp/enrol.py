"""Enrolling a charger from the installer's page, and what happens to chargers nobody enrolled.

A charge point is enrolled by its identity (the last part of ``ws://gateway:9000/ocpp/<id>``), either in the
config file (``[[devices]] type = "ocpp"``) or at run time with the ``enrol_charger`` action, which keeps it in
the store (``ocpp.chargers``) so that it survives a restart. With security profile 1 or 2 it also gets a basic
auth password: the installer's own (16-40 characters) or one made here and shown once; only its scrypt hash
is stored.

Unknown charge points are refused at the websocket handshake (HTTP 404), in every mode: a charger nobody
enrolled must not draw unmanaged power in a home whose service limit the gateway keeps. Each refused identity
is remembered (the last ``MAX_WAITING``, with when and from where) and listed by the enrol action as "waiting
for enrolment", so that the installer points the charger at the gateway, sees its id appear and enrols it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from .config import CP_ID_RE, ChargerConfig

KV_CHARGERS = "ocpp.chargers"
MAX_WAITING = 20
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt_b64),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def new_password() -> str:
    """24 characters of URL-safe text: within OCPP's 16-40, easy to type into a charger's web page."""
    return secrets.token_urlsafe(18)


def parse_request(
    params: dict[str, Any], *, security_profile: int, taken: set[str], max_power_w: float, voltage_v: float
) -> tuple[ChargerConfig, str | None]:
    """The charger an ``enrol_charger`` request describes, and the password made for it (None if given)."""
    params = dict(params or {})
    cp_id = params.pop("charge_point_id", None)
    password = params.pop("password", None)
    name = params.pop("name", None)
    tags = params.pop("id_tags", None)
    if params:
        raise ValueError(f"ocpp enrol_charger: unknown parameter(s) {', '.join(sorted(params))}")
    if not isinstance(cp_id, str) or not CP_ID_RE.fullmatch(cp_id.strip()):
        raise ValueError(
            f"charge_point_id = {cp_id!r}: must be the charger's identity, 1-48 of A-Z a-z 0-9 * _ = + | @ . -"
        )
    cp_id = cp_id.strip()
    if cp_id in taken:
        raise ValueError(f"charge point {cp_id!r} is already enrolled")
    generated = None
    if password in (None, ""):
        password = None
        if security_profile >= 1:
            password = generated = new_password()
    elif not isinstance(password, str) or not 16 <= len(password) <= 40:
        raise ValueError("password must be 16 to 40 characters (OCPP basic auth), or left out to make one")
    if name is None or name == "":
        name = f"EV charger {cp_id}"
    if not isinstance(name, str) or len(name) > 80:
        raise ValueError("name must be text of at most 80 characters")
    if tags is None or tags == "":
        id_tags: list[str] = []
    elif isinstance(tags, str):
        id_tags = [t.strip() for t in tags.split(",") if t.strip()]
    elif isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        id_tags = [t.strip() for t in tags if t.strip()]
    else:
        raise ValueError("id_tags must be a comma-separated list of RFID tags")
    bad = [t for t in id_tags if len(t) > 36]
    if bad:
        raise ValueError(f"id tag {bad[0]!r} is longer than 36 characters")
    cfg = ChargerConfig(
        id=cp_id,
        name=name,
        password=None,
        authorized_id_tags=frozenset(id_tags),
        max_power_w=max_power_w,
        voltage_v=voltage_v,
        phases=1,
        rate_unit="auto",
        password_hash=hash_password(password) if password else "",
    )
    return cfg, generated


def to_entry(cfg: ChargerConfig) -> dict[str, Any]:
    return {
        "id": cfg.id,
        "name": cfg.name,
        "password_hash": cfg.password_hash,
        "authorized_id_tags": sorted(cfg.authorized_id_tags),
        "max_power_w": cfg.max_power_w,
        "voltage_v": cfg.voltage_v,
        "phases": cfg.phases,
        "rate_unit": cfg.rate_unit,
    }


def from_entry(entry: dict[str, Any]) -> ChargerConfig:
    """A stored charger; ValueError when the entry is not one (a damaged store)."""
    try:
        cp_id = entry["id"]
        if not isinstance(cp_id, str) or not CP_ID_RE.fullmatch(cp_id):
            raise ValueError(f"bad charge point id {cp_id!r}")
        return ChargerConfig(
            id=cp_id,
            name=str(entry.get("name") or f"EV charger {cp_id}"),
            password=None,
            authorized_id_tags=frozenset(str(t) for t in entry.get("authorized_id_tags") or []),
            max_power_w=float(entry["max_power_w"]),
            voltage_v=float(entry["voltage_v"]),
            phases=int(entry.get("phases", 1)),
            rate_unit=str(entry.get("rate_unit", "auto")),
            password_hash=str(entry.get("password_hash") or ""),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"incomplete stored charger: {exc}") from exc
