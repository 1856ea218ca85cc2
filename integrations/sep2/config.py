"""``[integrations.sep2]``: validated into a ``Sep2Config``; every problem names its key.

```toml
[integrations.sep2]
server_url = "https://2030-5.utility.example/dcap"   # required: the server's DeviceCapability URL
cert_file = "/data/sep2/device.crt"   # required: the device certificate (PEM) the utility enrolled (LFDI)
key_file = "/data/sep2/device.key"    # required: its private key (PEM)
ca_file = "/data/sep2/ca.crt"         # required: the CA chain that signed the server's certificate
pin = 111115                          # optional: the registration PIN the utility gave; checked against Registration
poll_default_s = 900                  # optional: poll interval when a resource gives no pollRate (seconds)
post_rate_s = 300                     # optional: how often DER status and meter readings are sent (1-86400)
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from hems.config import ConfigError

KEYS = {"server_url", "cert_file", "key_file", "ca_file", "pin", "poll_default_s", "post_rate_s"}


@dataclass(frozen=True, slots=True)
class Sep2Config:
    server_url: str
    cert_file: str
    key_file: str
    ca_file: str
    pin: int | None = None
    poll_default_s: float = 900.0
    post_rate_s: float = 300.0

    @property
    def base_url(self) -> str:
        u = urlparse(self.server_url)
        return f"{u.scheme}://{u.netloc}"


def parse(section: dict[str, Any], *, name: str = "sep2") -> Sep2Config:
    problems: list[str] = []

    def bad(key: str, value: Any, what: str) -> None:
        problems.append(f"integrations.{name}.{key} = {value!r}: {what}")

    allowed = KEYS | {"enabled"}
    for k in sorted(set(section) - allowed):
        problems.append(f"unknown key 'integrations.{name}.{k}'; allowed: {', '.join(sorted(KEYS))}")

    url = section.get("server_url")
    if url is None:
        problems.append(
            f"integrations.{name}.server_url is required: the server's DeviceCapability URL, "
            "e.g. https://2030-5.utility.example/dcap"
        )
    elif not isinstance(url, str) or urlparse(url).scheme != "https" or not urlparse(url).netloc:
        bad("server_url", url, "must be an https:// URL (IEEE 2030.5 needs TLS), e.g. https://host/dcap")

    paths: dict[str, str] = {}
    for key in ("cert_file", "key_file", "ca_file"):
        value = section.get(key)
        if value in (None, ""):
            problems.append(f"integrations.{name}.{key} is required: the path of a PEM file")
        elif not isinstance(value, str):
            bad(key, value, "must be the path of a PEM file")
        elif not os.path.isfile(value) or not os.access(value, os.R_OK):
            bad(key, value, "no such readable file")
        else:
            paths[key] = value

    pin = section.get("pin")
    if pin in (None, ""):
        pin = None
    elif isinstance(pin, str) and pin.isdigit():
        pin = int(pin)
    if pin is not None and (isinstance(pin, bool) or not isinstance(pin, int) or not 0 <= pin <= 0xFFFFFFFF):
        bad("pin", pin, "must be the registration PIN the utility gave (digits), or left out")
        pin = None

    def number(key: str, default: float, lo: float, hi: float) -> float:
        value = section.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            bad(key, value, f"must be a number of seconds between {lo:g} and {hi:g}")
            return default
        return float(value)

    poll = number("poll_default_s", 900.0, 0.1, 86400)
    post = number("post_rate_s", 300.0, 0.1, 86400)

    if problems:
        raise ConfigError(problems)
    return Sep2Config(
        server_url=str(url),
        cert_file=paths["cert_file"],
        key_file=paths["key_file"],
        ca_file=paths["ca_file"],
        pin=pin,
        poll_default_s=poll,
        post_rate_s=post,
    )
