"""``[integrations.openadr]``: validated into a ``VenConfig``; every problem names its key.

```toml
[integrations.openadr]
vtn_url = "https://vtn.utility.example/OpenADR2/Simple/2.0b"   # required: the VTN's base URL
ven_name = "hems-gateway-0042"     # required by the VTN's enrolment; default: gateway.id
ven_id = ""                        # optional: the venID the utility assigned (else the VTN assigns one)
poll_interval_s = 10               # optional: overrides the VTN's oadrRequestedOadrPollFreq
report_interval_s = 60             # shortest telemetry sampling the VEN offers (seconds)
cert = "/data/openadr/ven.crt"     # client certificate (PEM): TLS client auth and XML signatures
key = "/data/openadr/ven.key"      # its private key (PEM)
ca_file = "/data/openadr/ca.crt"   # CA bundle that signed the VTN's server certificate
vtn_fingerprint = "AB:CD:..."      # the VTN's signing certificate (OpenADR fingerprint: last 10 bytes of SHA-256)
```
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from hems.config import ConfigError

KEYS = {
    "vtn_url",
    "push_port",
    "push_host",
    "push_address",
    "ven_name",
    "ven_id",
    "poll_interval_s",
    "report_interval_s",
    "cert",
    "key",
    "ca_file",
    "vtn_fingerprint",
}
_FINGERPRINT = re.compile(r"^([0-9A-F]{2}:){9}[0-9A-F]{2}$")
_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


@dataclass(frozen=True, slots=True)
class VenConfig:
    vtn_url: str
    ven_name: str
    ven_id: str | None = None
    poll_interval_s: float | None = None
    report_interval_s: float = 60.0
    cert: str | None = None
    key: str | None = None
    ca_file: str | None = None
    vtn_fingerprint: str | None = None
    # push (OpenADR 2.0b simpleHttp push model): the VEN listens here and the VTN POSTs events to push_address
    push_port: int | None = None
    push_host: str = "0.0.0.0"
    push_address: str | None = (
        None  # what the VTN is told; default http://<push_host>:<push_port>/OpenADR2/...
    )

    @property
    def tls(self) -> bool:
        return self.vtn_url.startswith("https://")

    @property
    def signs(self) -> bool:
        """Outgoing messages are signed (XML signature) with the client certificate."""
        return self.cert is not None and self.key is not None


def parse(
    section: dict[str, Any], *, default_ven_name: str = "hems-gateway", name: str = "openadr"
) -> VenConfig:
    """Validate the table; raise ``ConfigError`` listing every problem."""
    problems: list[str] = []

    def bad(key: str, value: Any, what: str) -> None:
        problems.append(f"integrations.{name}.{key} = {value!r}: {what}")

    unknown = sorted(set(section) - KEYS)
    for k in unknown:
        problems.append(f"unknown key 'integrations.{name}.{k}'; allowed: {', '.join(sorted(KEYS))}")

    url = section.get("vtn_url")
    if url is None:
        problems.append(
            f"integrations.{name}.vtn_url is required: the VTN's base URL, e.g. https://vtn.example/OpenADR2/Simple/2.0b"
        )
    elif (
        not isinstance(url, str) or urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc
    ):
        bad("vtn_url", url, "must be an http:// or https:// URL")

    ven_name = section.get("ven_name", default_ven_name)
    if not isinstance(ven_name, str) or not _NAME.match(ven_name):
        bad("ven_name", ven_name, "must be 1-128 of A-Z a-z 0-9 _ . : @ -")
    ven_id = section.get("ven_id")
    if ven_id == "":
        ven_id = None
    if ven_id is not None and (not isinstance(ven_id, str) or not _NAME.match(ven_id)):
        bad(
            "ven_id",
            ven_id,
            "must be the venID the utility assigned (1-128 of A-Z a-z 0-9 _ . : @ -), or left out",
        )

    def number(key: str, default: float | None, lo: float, hi: float) -> float | None:
        value = section.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            bad(key, value, f"must be a number of seconds between {lo:g} and {hi:g}")
            return default
        return float(value)

    poll = number("poll_interval_s", None, 0.01, 86400)
    report = number("report_interval_s", 60.0, 1, 86400)

    paths: dict[str, str | None] = {}
    for key in ("cert", "key", "ca_file"):
        value = section.get(key)
        if value in (None, ""):
            paths[key] = None
            continue
        if not isinstance(value, str):
            bad(key, value, "must be the path of a PEM file")
        elif not os.path.isfile(value) or not os.access(value, os.R_OK):
            bad(key, value, "no such readable file")
        paths[key] = value if isinstance(value, str) else None
    if (paths["cert"] is None) != (paths["key"] is None):
        missing = "key" if paths["key"] is None else "cert"
        problems.append(
            f"integrations.{name}.{missing} is required when integrations.{name}.{'cert' if missing == 'key' else 'key'} is set"
        )
    tls = isinstance(url, str) and url.startswith("https://")
    if not tls and (paths["ca_file"] or paths["cert"]) and isinstance(url, str) and url.startswith("http://"):
        problems.append(
            f"integrations.{name}.vtn_url = {url!r}: cert/ca_file are set but the URL is not https://; "
            "OpenADR 2.0b needs TLS when certificates are used"
        )

    fp = section.get("vtn_fingerprint")
    if fp in (None, ""):
        fp = None
    elif not isinstance(fp, str) or not _FINGERPRINT.match(fp.upper()):
        bad("vtn_fingerprint", fp, "must be 10 colon-separated hex bytes, e.g. 3A:7F:00:12:9C:4B:E1:02:AA:5D")
        fp = None
    else:
        fp = fp.upper()

    push_port = section.get("push_port")
    if push_port is not None and (
        isinstance(push_port, bool) or not isinstance(push_port, int) or not 0 <= push_port <= 65535
    ):
        bad(
            "push_port",
            push_port,
            "must be a TCP port 0-65535 (0 = any free port), or left out for polling only",
        )
        push_port = None
    push_host = section.get("push_host", "0.0.0.0")
    if not isinstance(push_host, str) or not push_host:
        bad("push_host", push_host, "must be the address to listen on, e.g. 0.0.0.0")
        push_host = "0.0.0.0"
    push_address = section.get("push_address")
    if push_address is not None and (
        not isinstance(push_address, str) or urlparse(push_address).scheme not in ("http", "https")
    ):
        bad("push_address", push_address, "must be the http(s) URL the VTN can reach this gateway at")
        push_address = None

    if problems:
        raise ConfigError(problems)
    return VenConfig(
        push_port=push_port,
        push_host=push_host,
        push_address=push_address,
        vtn_url=str(url).rstrip("/"),
        ven_name=ven_name,
        ven_id=ven_id,
        poll_interval_s=poll,
        report_interval_s=report or 60.0,
        cert=paths["cert"],
        key=paths["key"],
        ca_file=paths["ca_file"],
        vtn_fingerprint=fp,
    )
