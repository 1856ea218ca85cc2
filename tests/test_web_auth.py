"""The dashboard's front door over real HTTP: setup with the one-time code, login, sessions, CSRF, lock-out, roles,
and the `hems setup-code` / `hems run` commands."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from hems.config import parse_config
from hems.runtime import Runtime
from tests.conftest import OWNER_PASSWORD, free_port, login
from web.auth import SETUP_ALPHABET, Accounts, setup_code_path


def _config(tmp_path: Path, **web):
    return parse_config(
        {
            "gateway": {"data_dir": str(tmp_path)},
            "web": {"port": 0, **web},
            "sim": {"speed": 60, "tick_s": 0.1, "start": "2026-07-07T12:00"},
        }
    )


@pytest.fixture
async def fresh(tmp_path):
    """A gateway with no owner yet (only the built-in simulated devices: quick to start)."""
    rt = Runtime(config=_config(tmp_path), dev=True, use_dev_peers=frozenset())
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def owned(tmp_path):
    rt = Runtime(config=_config(tmp_path), dev=True, use_dev_peers=frozenset(), owner_password=OWNER_PASSWORD)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


def _jar_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_first_start_asks_for_setup_with_the_code_from_the_console(fresh, tmp_path):
    code = setup_code_path(tmp_path).read_text().strip()
    assert len(code) == 11 and code[5] == "-" and set(code.replace("-", "")) <= set(SETUP_ALPHABET)
    assert oct(setup_code_path(tmp_path).stat().st_mode & 0o777) == "0o600"
    async with _jar_session() as s:
        async with s.get(fresh.url + "/healthz") as resp:
            assert resp.status in (200, 503)  # never behind the login
        async with s.get(fresh.url + "/api/status") as resp:
            assert resp.status == 401 and await resp.json() == {"error": "login required"}
        async with s.get(fresh.url + "/", allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"] == "/setup"
        async with s.get(fresh.url + "/login", allow_redirects=False) as resp:
            assert resp.headers["Location"] == "/setup"
        async with s.get(fresh.url + "/setup") as resp:
            page = await resp.text()
            assert resp.status == 200 and "Set up your gateway" in page and 'id="setup_code"' in page
            assert code not in page  # the page asks for the code, it never shows it
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        # a login before setup says what to do
        async with s.post(fresh.url + "/api/login", json={"username": "owner", "password": "x" * 12}) as resp:
            assert resp.status == 409 and "/setup" in (await resp.json())["error"]
        # wrong code, short password, bad username: each named
        bad = {"setup_code": "AAAAA-AAAAA", "username": "owner", "password": "long enough pw"}
        async with s.post(fresh.url + "/api/setup", json=bad) as resp:
            body = await resp.json()
            assert resp.status == 403 and "setup_code" in body["errors"]
        async with s.post(
            fresh.url + "/api/setup", json={"setup_code": code, "username": "owner", "password": "short"}
        ) as resp:
            body = await resp.json()
            assert resp.status == 400 and "at least 10" in body["errors"]["password"]
        async with s.post(
            fresh.url + "/api/setup", json={"setup_code": code, "username": "Bad Name", "password": "x" * 12}
        ) as resp:
            assert resp.status == 400 and "username" in (await resp.json())["errors"]
        async with s.post(fresh.url + "/api/setup", data=b"not json") as resp:
            assert resp.status == 400 and "JSON" in (await resp.json())["error"]
        # the code typed in lower case, without its dash, on a phone
        typed = code.replace("-", "").lower()
        async with s.post(
            fresh.url + "/api/setup",
            json={"setup_code": typed, "username": "owner", "password": OWNER_PASSWORD},
        ) as resp:
            body = await resp.json()
            assert resp.status == 201 and body["role"] == "owner" and body["csrf_token"]
            cookie = resp.headers.getall("Set-Cookie")
        session_cookie = next(c for c in cookie if c.startswith("hems_session="))
        assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie
        assert not setup_code_path(tmp_path).exists()  # one-time
        async with s.get(fresh.url + "/api/status") as resp:
            assert resp.status == 200  # logged in by the setup itself
        async with s.post(
            fresh.url + "/api/setup",
            json={"setup_code": code, "password": OWNER_PASSWORD},
            headers={"X-CSRF-Token": body["csrf_token"]},
        ) as resp:
            assert resp.status == 409
        async with s.get(fresh.url + "/setup", allow_redirects=False) as resp:
            assert resp.headers["Location"] == "/login"


async def test_login_session_csrf_and_logout(owned):
    async with _jar_session() as s:
        async with s.post(
            owned.url + "/api/login", json={"username": "owner", "password": "wrong-password"}
        ) as r:
            assert r.status == 401 and (await r.json())["error"] == "wrong username or password"
        async with s.post(
            owned.url + "/api/login", json={"username": "owner", "password": OWNER_PASSWORD}
        ) as r:
            me = await r.json()
            assert r.status == 200 and me["username"] == "owner" and me["role"] == "owner"
        async with s.get(owned.url + "/api/me") as r:
            assert (await r.json())["csrf_token"] == me["csrf_token"]
        csrf = next(c.value for c in s.cookie_jar if c.key == "hems_csrf")
        assert csrf == me["csrf_token"]
        # a state-changing call without the token is refused, with it it goes through
        async with s.post(owned.url + "/api/dr/openadr:none/opt-out") as r:
            assert r.status == 403 and "CSRF" in (await r.json())["error"]
        async with s.post(owned.url + "/api/dr/openadr:none/opt-out", headers={"X-CSRF-Token": "nope"}) as r:
            assert r.status == 403
        headers = {"X-CSRF-Token": me["csrf_token"]}
        async with s.post(owned.url + "/api/dr/openadr:none/opt-out", headers=headers) as r:
            assert r.status == 404  # past the guard: there is no such event
        # another site's page cannot use the session even with a stolen token
        evil = {**headers, "Origin": "http://evil.example"}
        async with s.post(owned.url + "/api/dr/openadr:none/opt-out", headers=evil) as r:
            assert r.status == 403
        async with s.post(owned.url + "/api/logout", headers=headers) as r:
            assert r.status == 200
        async with s.get(owned.url + "/api/status") as r:
            assert r.status == 401
        async with s.get(owned.url + "/plan", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/login?next=/plan"


async def test_cross_site_websocket_is_refused(owned):
    async with await login(owned.url) as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(owned.url + "/api/live", headers={"Origin": "http://evil.example"})
        assert info.value.status == 403
        async with s.ws_connect(owned.url + "/api/live") as ws:
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "snapshot"


async def test_lock_out_after_repeated_failures(owned):
    async with _jar_session() as s:
        statuses = []
        for _ in range(6):
            async with s.post(
                owned.url + "/api/login", json={"username": "owner", "password": "guess-guess"}
            ) as r:
                statuses.append(r.status)
                last = await r.json()
        assert statuses == [401, 401, 401, 401, 401, 429]
        assert 1 <= last["retry_after_s"] <= 300
        # even the right password waits out the lock-out
        async with s.post(
            owned.url + "/api/login", json={"username": "owner", "password": OWNER_PASSWORD}
        ) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1


async def test_a_known_device_is_not_locked_out_by_someone_elses_guesses(owned):
    async def post_login(s: aiohttp.ClientSession, password: str) -> tuple[int, dict]:
        async with s.post(owned.url + "/api/login", json={"username": "owner", "password": password}) as r:
            return r.status, await r.json()

    async with _jar_session() as phone, _jar_session() as stranger:
        # the owner's phone has logged in before: it holds a device cookie (HttpOnly, for /api/ only)
        assert (await post_login(phone, OWNER_PASSWORD))[0] == 200
        device = next(c for c in phone.cookie_jar if c.key == "hems_device")
        assert device["httponly"] and device["path"] == "/api/" and int(device["max-age"]) == 180 * 86400
        first_device = device.value

        # someone else on the LAN (same address here) types wrong passwords for "owner" until it locks
        statuses = [(await post_login(stranger, "guess-guess"))[0] for _ in range(6)]
        assert statuses == [401, 401, 401, 401, 401, 429]
        assert (await post_login(stranger, OWNER_PASSWORD))[0] == 429  # the username and address are locked

        # the phone still gets in, and its device cookie is replaced by a new one on each login
        status, me = await post_login(phone, OWNER_PASSWORD)
        assert status == 200 and me["username"] == "owner"
        second_device = next(c for c in phone.cookie_jar if c.key == "hems_device").value
        assert second_device != first_device

        # the old device cookie is spent: a copy of it is treated as a stranger (still locked)
        async with _jar_session() as copy:
            copy.cookie_jar.update_cookies({"hems_device": first_device})
            assert (await post_login(copy, OWNER_PASSWORD))[0] == 429

        # a known device guessing is throttled on its own: 5 failures lock the device, not only the user
        statuses = [(await post_login(phone, "guess-guess"))[0] for _ in range(6)]
        assert statuses == [401, 401, 401, 401, 401, 429]
        assert (await post_login(phone, OWNER_PASSWORD))[0] == 429

    # only the device cookies' SHA-256 is kept, with the user
    kept = json.dumps(owned.store.kv_get("auth.users"))
    assert second_device not in kept and hashlib.sha256(second_device.encode()).hexdigest() in kept


async def test_roles_users_and_password_change(owned):
    async with await login(owned.url) as owner:
        async with owner.post(
            owned.url + "/api/users",
            json={"username": "installer", "password": "wiring-1234", "role": "installer"},
        ) as r:
            assert r.status == 201
        async with owner.post(
            owned.url + "/api/users", json={"username": "x2", "password": "wiring-1234", "role": "admin"}
        ) as r:
            assert r.status == 400 and "role" in (await r.json())["errors"]
        async with owner.get(owned.url + "/api/users") as r:
            assert [u["username"] for u in (await r.json())["users"]] == ["installer", "owner"]
        async with await login(owned.url, "wiring-1234", "installer") as inst:
            async with inst.get(owned.url + "/api/status") as r:
                assert r.status == 200  # reads everything
            async with inst.post(owned.url + "/api/dr/openadr:x/opt-out") as r:
                assert r.status == 403 and "owner" in (await r.json())["error"]
            async with inst.get(owned.url + "/api/users") as r:
                assert r.status == 403
            # the installer changes their password: their other sessions end
            async with await login(owned.url, "wiring-1234", "installer") as other:
                async with inst.post(
                    owned.url + "/api/me/password",
                    json={"current_password": "wiring-1234", "new_password": "new-wiring-5678"},
                ) as r:
                    assert r.status == 200
                    inst.headers["X-CSRF-Token"] = (await r.json())["csrf_token"]
                async with other.get(owned.url + "/api/status") as r:
                    assert r.status == 401
            async with inst.get(owned.url + "/api/status") as r:
                assert r.status == 200  # this one was renewed
        async with owner.delete(owned.url + "/api/users/owner") as r:
            assert r.status == 409 and "last owner" in (await r.json())["error"]
        async with owner.delete(owned.url + "/api/users/installer") as r:
            assert r.status == 200


async def test_sessions_are_kept_as_hashes_and_survive_a_restart(tmp_path):
    cfg = _config(tmp_path)
    rt = Runtime(config=cfg, dev=True, use_dev_peers=frozenset(), owner_password=OWNER_PASSWORD)
    await rt.start()
    s = await login(rt.url)
    token = next(c.value for c in s.cookie_jar if c.key == "hems_session")
    await rt.stop()
    db = sqlite3.connect(cfg.store_path)
    stored = db.execute("SELECT value FROM kv WHERE key IN ('auth.sessions', 'auth.users')").fetchall()
    db.close()
    text = " ".join(v for (v,) in stored)
    assert token not in text and OWNER_PASSWORD not in text and "$argon2id$" in text
    rt2 = Runtime(config=_config(tmp_path), dev=True, use_dev_peers=frozenset())
    await rt2.start()
    try:
        url = rt2.url
        async with s.get(url + "/api/me") as r:  # the cookie from before the restart still works
            assert r.status == 200 and (await r.json())["username"] == "owner"
    finally:
        await s.close()
        await rt2.stop()


async def test_accounts_refuse_weak_passwords_and_unknown_users(tmp_path):
    from hems.store import Store

    with Store(tmp_path / "db.sqlite") as store:
        acc = Accounts(store, tmp_path)
        assert acc.setup_code() is not None
        with pytest.raises(ValueError, match="must not be the username"):
            await acc.create_user("sunshine12", "sunshine12", "owner")
        await acc.create_user("owner", OWNER_PASSWORD, "owner")
        assert acc.setup_code() is None
        with pytest.raises(ValueError, match="wrong username or password"):
            await acc.login("nobody", OWNER_PASSWORD, client="t")
        with pytest.raises(ValueError, match="already exists"):
            await acc.create_user("owner", OWNER_PASSWORD, "owner")


def test_setup_code_command(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "hems.cli", "setup-code", "--data-dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    first = run()
    assert first.returncode == 0, first.stderr
    code = first.stdout.strip()
    assert code == setup_code_path(tmp_path).read_text().strip()
    assert run().stdout.strip() == code  # the same code until it is used

    async def make_owner():
        from hems.store import Store

        with Store(tmp_path / "hems.sqlite") as store:
            await Accounts(store, tmp_path).create_user("owner", OWNER_PASSWORD, "owner")

    asyncio.run(make_owner())
    done = run()
    assert done.returncode == 1 and "already set up" in done.stderr
    assert not setup_code_path(tmp_path).exists()


def test_hems_run_serves_https_with_the_setup_page(tmp_path):
    """`hems run` (what the image's systemd unit starts): real clock, no simulation, https from the config."""
    from hems import pki

    key = pki.new_key()
    crt, pem = pki.write_pem(tmp_path / "gw", pki.certificate("gw", key, server=True), key)
    port = free_port()
    cfg = tmp_path / "hems.toml"
    cfg.write_text(
        f'[gateway]\ndata_dir = "{tmp_path}/data"\n[web]\nport = {port}\ntls_cert = "{crt}"\ntls_key = "{pem}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hems.cli", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "dashboard: https://" in line or not line:
                break
        out = "".join(lines)
        assert f"dashboard: https://127.0.0.1:{port}/" in out, out
        assert "setup code" in out  # logged for the console and the journal

        async def check():
            ctx = ssl.create_default_context(cafile=crt)
            async with aiohttp.ClientSession() as s:
                async with s.get(f"https://127.0.0.1:{port}/setup", ssl=ctx) as r:
                    assert r.status == 200 and "Set up your gateway" in await r.text()
                async with s.get(f"https://127.0.0.1:{port}/healthz", ssl=ctx) as r:
                    health = await r.json()
                    assert health["devices"] == {k: 0 for k in health["devices"]}  # nothing simulated

        asyncio.run(check())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in out, out


def test_bad_tls_config_is_named(tmp_path):
    from hems.config import ConfigError

    with pytest.raises(ConfigError, match=r"tls_cert and web\.tls_key"):
        parse_config({"web": {"tls_cert": "/x.crt"}})
