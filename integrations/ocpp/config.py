"""``[integrations.ocpp]`` and ``[[devices]] type = "ocpp"``: validated into settings, every problem named.

[integrations.ocpp]
host = "127.0.0.1"            # address the CSMS listens on ("0.0.0.0" for chargers on the LAN)
port = 9000
security_profile = 1          # 0 = none (lab only), 1 = HTTP basic auth, 2 = TLS + basic auth
tls_cert = "/etc/hems/ocpp.crt"   # profile 2: server certificate chain (PEM) and key
tls_key = "/etc/hems/ocpp.key"
free_vend = false             # true: every id tag is accepted
safe_limit_w = 3680           # TxDefaultProfile the charger falls back to (16 A at 230 V)
profile_validity_s = 900      # planner limits expire this long after the last refresh
heartbeat_interval_s = 300
meter_interval_s = 60         # MeterValueSampleInterval / TxUpdatedInterval set at boot
response_timeout_s = 10       # how long a command waits for the charger's answer

[[devices]]
type = "ocpp"
id = "garage"                 # the charge point identity: ws://gateway:9000/ocpp/garage
password = "16 to 40 characters"  # basic auth (profile 1 and 2)
name = "Garage charger"
authorized_id_tags = ["04A2B3C4D5"]
max_power_w = 11520           # what "no limit" means (default: ev.charger_max_w)
voltage_v = 240               # for limits in A (default: site.voltage_v)
phases = 1
rate_unit = "auto"            # auto (ask the charger) | A | W
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

from hems.config import ConfigError
from hems.integration import IntegrationContext

SECTION_KEYS = {
    "host",
    "port",
    "security_profile",
    "tls_cert",
    "tls_key",
    "free_vend",
    "safe_limit_w",
    "profile_validity_s",
    "heartbeat_interval_s",
    "meter_interval_s",
    "response_timeout_s",
}
DEVICE_KEYS = {
    "type",
    "id",
    "password",
    "name",
    "authorized_id_tags",
    "max_power_w",
    "voltage_v",
    "phases",
    "rate_unit",
}
# OCPP identifierString (2.0.1), without ':' which basic auth cannot carry in a user name.
CP_ID_RE = re.compile(r"[A-Za-z0-9*_=+|@.\-]{1,48}")
RATE_UNITS = ("auto", "A", "W")


@dataclass(frozen=True)
class ChargerConfig:
    id: str
    name: str
    password: str | None
    authorized_id_tags: frozenset[str]
    max_power_w: float
    voltage_v: float
    phases: int
    rate_unit: str
    password_hash: str = ""  # enrolled at run time: the password is kept only as a scrypt hash


@dataclass(frozen=True)
class OcppSettings:
    host: str = "127.0.0.1"
    port: int = 9000
    security_profile: int = 1
    tls_cert: str = ""
    tls_key: str = ""
    free_vend: bool = False
    safe_limit_w: float = 3680.0
    profile_validity_s: float = 900.0
    heartbeat_interval_s: int = 300
    meter_interval_s: int = 60
    response_timeout_s: float = 10.0
    chargers: dict[str, ChargerConfig] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_profile < 2:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def parse_settings(ctx: IntegrationContext) -> OcppSettings:
    """Validate the integration's table and its devices; raise one ConfigError listing every problem."""
    problems: list[str] = []
    sec = ctx.section
    p = "integrations.ocpp"
    for key in sorted(set(sec) - SECTION_KEYS):
        problems.append(f"unknown key '{p}.{key}'; allowed: {', '.join(sorted(SECTION_KEYS))}")

    def get(key: str, default: Any, ok, allowed: str) -> Any:
        value = sec.get(key, default)
        if not ok(value):
            problems.append(f"{p}.{key} = {value!r}: must be {allowed}")
            return default
        return value

    host = get("host", "127.0.0.1", lambda v: isinstance(v, str) and v != "", "an address such as 0.0.0.0")
    port = get(
        "port",
        9000,
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535,
        "a TCP port 0-65535 (0 = any free port)",
    )
    profile = get(
        "security_profile",
        1,
        lambda v: v in (0, 1, 2) and not isinstance(v, bool),
        "0 (no auth), 1 (basic auth) or 2 (TLS + basic auth)",
    )
    tls_cert = get("tls_cert", "", lambda v: isinstance(v, str), "a path to a PEM certificate chain")
    tls_key = get("tls_key", "", lambda v: isinstance(v, str), "a path to a PEM private key")
    free_vend = get("free_vend", False, lambda v: isinstance(v, bool), "true or false")
    safe = get("safe_limit_w", 3680.0, lambda v: _number(v) and 0 <= v <= 100000, "a power in W, 0-100000")
    validity = get(
        "profile_validity_s", 900.0, lambda v: _number(v) and 1 <= v <= 86400, "seconds between 1 and 86400"
    )
    heartbeat = get(
        "heartbeat_interval_s",
        300,
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 86400,
        "whole seconds between 1 and 86400",
    )
    meter = get(
        "meter_interval_s",
        60,
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 3600,
        "whole seconds between 1 and 3600",
    )
    timeout = get("response_timeout_s", 10.0, lambda v: _number(v) and 0.1 <= v <= 300, "seconds, 0.1-300")
    if profile == 2:
        for key, path in (("tls_cert", tls_cert), ("tls_key", tls_key)):
            if not path:
                problems.append(f"{p}.{key} is missing: security_profile = 2 needs a PEM file")
            elif not os.path.isfile(path):
                problems.append(f"{p}.{key} = {path!r}: no such file")
        if not problems:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls_cert, tls_key)
            except (ssl.SSLError, OSError, ValueError) as exc:
                problems.append(f"{p}.tls_cert / tls_key: cannot load the certificate and key: {exc}")
    elif tls_cert or tls_key:
        problems.append(
            f"{p}.tls_cert / tls_key are set but security_profile = {profile}: TLS needs profile 2"
        )

    home = ctx.config.home
    chargers: dict[str, ChargerConfig] = {}
    for i, dev in enumerate(ctx.devices):
        cp_id = dev.get("id")
        where = (
            f'devices (type = "ocpp", id = {cp_id!r})'
            if isinstance(cp_id, str)
            else f"devices (ocpp #{i + 1})"
        )
        for key in sorted(set(dev) - DEVICE_KEYS):
            problems.append(f"unknown key '{key}' in {where}; allowed: {', '.join(sorted(DEVICE_KEYS))}")
        if not isinstance(cp_id, str) or not CP_ID_RE.fullmatch(cp_id):
            problems.append(
                f"{where}.id = {cp_id!r}: must be the charge point identity, 1-48 of A-Z a-z 0-9 * _ = + | @ . -"
            )
            continue
        if cp_id in chargers:
            problems.append(f"{where}.id: charge point {cp_id!r} is enrolled twice")
            continue
        password = dev.get("password")
        if profile >= 1:
            if not isinstance(password, str) or not 16 <= len(password) <= 40:
                problems.append(
                    f"{where}.password: must be 16 to 40 characters (OCPP basic auth, security profile {profile})"
                )
        elif password is not None and not isinstance(password, str):
            problems.append(f"{where}.password = {password!r}: must be a string")
        name = dev.get("name", f"EV charger {cp_id}")
        if not isinstance(name, str):
            problems.append(f"{where}.name = {name!r}: must be a string")
            name = cp_id
        tags = dev.get("authorized_id_tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 36 for t in tags):
            problems.append(
                f"{where}.authorized_id_tags = {tags!r}: must be a list of id tags (1-36 characters)"
            )
            tags = []
        max_w = dev.get("max_power_w", home.ev.charger_max_w)
        if not _number(max_w) or max_w <= 0:
            problems.append(f"{where}.max_power_w = {max_w!r}: must be a power in W > 0")
            max_w = home.ev.charger_max_w
        volts = dev.get("voltage_v", home.site.voltage_v)
        if not _number(volts) or not 100 <= volts <= 480:
            problems.append(f"{where}.voltage_v = {volts!r}: must be between 100 and 480 V")
            volts = home.site.voltage_v
        phases = dev.get("phases", 1)
        if phases not in (1, 2, 3) or isinstance(phases, bool):
            problems.append(f"{where}.phases = {phases!r}: must be 1, 2 or 3")
            phases = 1
        unit = dev.get("rate_unit", "auto")
        if unit not in RATE_UNITS:
            problems.append(f"{where}.rate_unit = {unit!r}: must be one of {', '.join(RATE_UNITS)}")
            unit = "auto"
        chargers[cp_id] = ChargerConfig(
            id=cp_id,
            name=name,
            password=password if isinstance(password, str) else None,
            authorized_id_tags=frozenset(tags),
            max_power_w=float(max_w),
            voltage_v=float(volts),
            phases=int(phases),
            rate_unit=unit,
        )
    if problems:
        raise ConfigError(problems)
    return OcppSettings(
        host=host,
        port=port,
        security_profile=profile,
        tls_cert=tls_cert,
        tls_key=tls_key,
        free_vend=free_vend,
        safe_limit_w=float(safe),
        profile_validity_s=float(validity),
        heartbeat_interval_s=heartbeat,
        meter_interval_s=meter,
        response_timeout_s=float(timeout),
        chargers=chargers,
    )
