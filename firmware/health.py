"""Post-boot health check of a trial slot: is the gateway really up on the new version?

Checks, repeated until all pass or the timeout ends (a gateway takes a while to start, devices to reconnect):

- service: ``systemctl is-active hems.service`` (skipped where systemd is not running, e.g. in tests);
- healthz: ``GET /healthz`` answers 200 with ``"status": "ok"`` (503 while starting);
- dashboard: ``GET /`` answers an HTML page after redirects (the login or setup page is fine);
- devices: ``/healthz``'s ``devices.ok`` reaches the count that was ok before the update (recorded by the
  install as ``devices_ok_before``), so a version that loses the inverter or the charger is rolled back.

Loopback https with the gateway's self-signed certificate is accepted: this talks to itself.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = "/etc/hems/hems.toml"
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_SERVICE = "hems.service"


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(slots=True)
class HealthReport:
    ok: bool
    checks: list[Check] = field(default_factory=list)
    elapsed_s: float = 0.0
    rounds: int = 0

    def failures(self) -> str:
        return "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.ok)

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "elapsed_s": round(self.elapsed_s, 1),
            "rounds": self.rounds,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


def url_from_config(path: str | Path = DEFAULT_CONFIG) -> str:
    """The dashboard's loopback URL from the gateway config's [web] table (http://127.0.0.1:8080 without one)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return DEFAULT_URL
    web = data.get("web", {}) if isinstance(data.get("web"), dict) else {}
    host = str(web.get("host", "127.0.0.1"))
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if web.get("tls_cert") and web.get("tls_key") else "http"
    return f"{scheme}://{host}:{int(web.get('port', 8080))}"


def _get(url: str, timeout_s: float) -> tuple[int, str, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # loopback to the gateway itself, whose certificate is self-signed
    req = urllib.request.Request(url, headers={"Accept": "text/html,application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, context=ctx) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", "") if exc.headers else "", exc.read(1 << 20)


def _service_check(service: str | None) -> Check:
    if not service:
        return Check("service", True, "not checked")
    if shutil.which("systemctl") is None or not Path("/run/systemd/system").exists():
        return Check("service", True, "systemd is not running here; not checked")
    proc = subprocess.run(["systemctl", "is-active", service], capture_output=True, text=True, check=False)
    state = proc.stdout.strip() or proc.stderr.strip()
    return Check("service", state == "active", f"{service} is {state}")


def probe(url: str, service: str | None, min_devices_ok: int, request_timeout_s: float = 5.0) -> list[Check]:
    """One round of every check."""
    checks = [_service_check(service)]
    health: dict | None = None
    try:
        status, _ctype, body = _get(url.rstrip("/") + "/healthz", request_timeout_s)
        try:
            health = json.loads(body)
        except ValueError:
            health = None
        if status == 200 and isinstance(health, dict) and health.get("status") == "ok":
            checks.append(Check("healthz", True, f"ok, version {health.get('version')}"))
        else:
            said = health.get("status") if isinstance(health, dict) else body[:80].decode(errors="replace")
            checks.append(Check("healthz", False, f"HTTP {status}, status {said!r}"))
    except (OSError, urllib.error.URLError) as exc:
        checks.append(
            Check("healthz", False, f"{url}/healthz does not answer: {getattr(exc, 'reason', exc)}")
        )
    try:
        status, ctype, _body = _get(url.rstrip("/") + "/", request_timeout_s)
        ok = status == 200 and "text/html" in ctype
        checks.append(Check("dashboard", ok, f"HTTP {status} {ctype.split(';')[0] or 'no content type'}"))
    except (OSError, urllib.error.URLError) as exc:
        checks.append(Check("dashboard", False, f"{url}/ does not answer: {getattr(exc, 'reason', exc)}"))
    if isinstance(health, dict) and isinstance(health.get("devices"), dict):
        ok_count = int(health["devices"].get("ok", 0))
        checks.append(
            Check(
                "devices",
                ok_count >= min_devices_ok,
                f"{ok_count} ok of {sum(int(v) for v in health['devices'].values())}, "
                f"{min_devices_ok} needed",
            )
        )
    else:
        checks.append(Check("devices", min_devices_ok <= 0, "no device counts from /healthz"))
    return checks


def check_health(
    url: str = DEFAULT_URL,
    *,
    service: str | None = DEFAULT_SERVICE,
    min_devices_ok: int = 0,
    timeout_s: float = 300.0,
    interval_s: float = 2.0,
    log=lambda _msg: None,
) -> HealthReport:
    """Repeat :func:`probe` until every check passes (ok) or timeout_s ends (not ok, with the last failures)."""
    start = time.monotonic()
    rounds = 0
    last_failures = ""
    while True:
        rounds += 1
        checks = probe(url, service, min_devices_ok)
        elapsed = time.monotonic() - start
        if all(c.ok for c in checks):
            return HealthReport(True, checks, elapsed, rounds)
        report = HealthReport(False, checks, elapsed, rounds)
        if report.failures() != last_failures:
            last_failures = report.failures()
            log(f"not healthy yet ({elapsed:.0f} s): {last_failures}")
        if elapsed + interval_s > timeout_s:
            return report
        time.sleep(interval_s)


def devices_ok_now(url: str, request_timeout_s: float = 3.0) -> int | None:
    """How many devices /healthz says are ok right now, or None when the gateway does not answer."""
    try:
        status, _ctype, body = _get(url.rstrip("/") + "/healthz", request_timeout_s)
        health = json.loads(body)
        return int(health["devices"]["ok"]) if status == 200 else None
    except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError):
        return None
