"""``[integrations.mqtt]``: one or more ``[[integrations.mqtt.links]]``, validated into ``LinkConfig``s.

Every problem is collected and raised together as one ``ConfigError`` whose lines name the key, the value
and what is allowed, e.g. ``integrations.mqtt.links[0].port = 'x': must be an integer 1-65535``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hems.config import ConfigError

PROTOCOLS = ("5", "3.1.1")
_TOPIC_LEVEL = re.compile(r"^[^/#+\x00]+(/[^/#+\x00]+)*$")


@dataclass(frozen=True, slots=True)
class LinkConfig:
    name: str
    host: str
    port: int = 1883
    protocol: str = "5"
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    client_id: str | None = None  # default: hems-<gateway id>-<link name>
    keepalive_s: int = 60
    telemetry: bool = True
    commands: bool = True
    home_assistant: bool = False
    discovery_prefix: str = "homeassistant"
    telemetry_interval_s: float = 10.0
    command_token: str | None = None
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0

    def redacted(self) -> dict:
        """For logs and status: no password, no token."""
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "tls": self.tls,
            "telemetry": self.telemetry,
            "commands": self.commands,
            "home_assistant": self.home_assistant,
        }


LINK_KEYS = frozenset(LinkConfig.__dataclass_fields__)
SECTION_KEYS = frozenset({"enabled", "links"})


def parse(section: dict[str, Any], prefix: str = "integrations.mqtt") -> list[LinkConfig]:
    """Validate the integration's table; raise ``ConfigError`` listing every problem."""
    problems: list[str] = []
    for key in sorted(set(section) - SECTION_KEYS):
        problems.append(f"unknown key '{prefix}.{key}'; allowed: {', '.join(sorted(SECTION_KEYS))}")
    links_raw = section.get("links", [])
    if not isinstance(links_raw, list) or not all(isinstance(x, dict) for x in links_raw):
        problems.append(f"{prefix}.links = {links_raw!r}: must be an array of tables ([[{prefix}.links]])")
        raise ConfigError(problems)
    if not links_raw:
        problems.append(f"{prefix}.links: at least one [[{prefix}.links]] table is needed")
    links: list[LinkConfig] = []
    names: set[str] = set()
    for i, raw in enumerate(links_raw):
        link = _parse_link(raw, f"{prefix}.links[{i}]", problems)
        if link is None:
            continue
        if link.name in names:
            problems.append(f"{prefix}.links[{i}].name = {link.name!r}: must be unique among the links")
        names.add(link.name)
        links.append(link)
    if problems:
        raise ConfigError(problems)
    return links


def _parse_link(raw: dict, where: str, problems: list[str]) -> LinkConfig | None:
    start = len(problems)
    for key in sorted(set(raw) - LINK_KEYS):
        problems.append(f"unknown key '{where}.{key}'; allowed: {', '.join(sorted(LINK_KEYS))}")

    def bad(key: str, what: str) -> None:
        problems.append(f"{where}.{key} = {raw[key]!r}: {what}")

    out: dict[str, Any] = {}
    # strings
    for key, required in (("name", True), ("host", True)):
        v = raw.get(key)
        if v is None:
            if required:
                problems.append(f"{where}.{key}: missing; {_STRING_RULES[key][1]}")
            continue
        if not isinstance(v, str) or not _STRING_RULES[key][0](v):
            bad(key, _STRING_RULES[key][1])
        else:
            out[key] = v
    for key in ("username", "password", "client_id", "command_token"):
        if key in raw:
            v = raw[key]
            if not isinstance(v, str) or not v or len(v) > 256:
                bad(key, "must be a non-empty string (at most 256 characters)")
            else:
                out[key] = v
    if "client_id" in out and not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", out["client_id"]):
        bad("client_id", "must be 1-64 of A-Z a-z 0-9 _ . -")
        out.pop("client_id")
    if "port" in raw:
        v = raw["port"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
            bad("port", "must be an integer 1-65535")
        else:
            out["port"] = v
    if "protocol" in raw:
        v = raw["protocol"]
        v = str(v) if isinstance(v, int | float) and not isinstance(v, bool) and v == 5 else v
        if v not in PROTOCOLS:
            bad("protocol", 'must be "5" or "3.1.1"')
        else:
            out["protocol"] = v
    for key in ("tls", "telemetry", "commands", "home_assistant"):
        if key in raw:
            if not isinstance(raw[key], bool):
                bad(key, "must be true or false")
            else:
                out[key] = raw[key]
    if "keepalive_s" in raw:
        v = raw["keepalive_s"]
        if isinstance(v, bool) or not isinstance(v, int) or not 5 <= v <= 65535:
            bad("keepalive_s", "must be an integer 5-65535 (seconds)")
        else:
            out["keepalive_s"] = v
    for key, lo, hi in (
        ("telemetry_interval_s", 0.0, 86400.0),
        ("reconnect_min_s", 0.05, 3600.0),
        ("reconnect_max_s", 0.05, 3600.0),
    ):
        if key in raw:
            v = raw[key]
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not math.isfinite(v)
                or not lo <= v <= hi
            ):
                bad(key, f"must be a number of seconds {lo:g}-{hi:g}")
            else:
                out[key] = float(v)
    if out.get("reconnect_max_s", 60.0) < out.get("reconnect_min_s", 1.0):
        problems.append(f"{where}.reconnect_max_s: must be >= reconnect_min_s")
    if "discovery_prefix" in raw:
        v = raw["discovery_prefix"]
        if not isinstance(v, str) or not _TOPIC_LEVEL.match(v):
            bad("discovery_prefix", "must be an MQTT topic without wildcards, e.g. 'homeassistant'")
        else:
            out["discovery_prefix"] = v
    for key in ("ca_file", "cert_file", "key_file"):
        if key in raw:
            v = raw[key]
            if not isinstance(v, str) or not v:
                bad(key, "must be a file path")
            elif not Path(v).is_file():
                bad(key, "no such file")
            else:
                out[key] = v
    if ("cert_file" in raw) != ("key_file" in raw):
        problems.append(f"{where}: cert_file and key_file go together (client certificate and its key)")
    if not raw.get("tls", False):
        for key in ("ca_file", "cert_file", "key_file"):
            if key in raw:
                problems.append(f"{where}.{key}: only used with tls = true")
    if "password" in raw and "username" not in raw:
        problems.append(f"{where}.password: needs a username")
    if len(problems) > start:
        return None
    return LinkConfig(**out)


_STRING_RULES = {
    "name": (
        lambda v: bool(re.fullmatch(r"[A-Za-z0-9_.\-]{1,32}", v)),
        "must be 1-32 of A-Z a-z 0-9 _ . - (names the link in logs and command sources)",
    ),
    "host": (lambda v: 0 < len(v) <= 253 and " " not in v, "must be a host name or IP address"),
}
