"""Who may use the dashboard: accounts, the one-time setup code, sessions, CSRF, lock-out and roles.

- No default password. While no owner account exists, the gateway keeps a one-time setup code in
  ``<data_dir>/setup-code`` (mode 0600), logs it and prints it with ``hems setup-code``; the ``/setup`` page asks
  for it and creates the owner. The code is deleted once the owner exists.
- Passwords are hashed with Argon2id (argon2-cffi's RFC 9106 defaults: 64 MiB, 3 passes), off the event loop.
- A session is a random token in an HttpOnly, SameSite=Strict cookie (Secure on https); the gateway keeps only
  its SHA-256, so a copy of the database does not log anybody in. Sessions end after ``web.session_idle_h``
  without use, on logout, and when the account's password changes.
- CSRF: every state-changing request made with a session carries ``X-CSRF-Token`` equal to the session's token
  (given by ``/api/login`` and ``/api/me``, and in the readable cookie ``hems_csrf``). Login and setup, made
  without a session, must come from the gateway's own origin when the browser says where it comes from.
- Lock-out: 5 wrong passwords (or setup codes) for one username or from one address within 15 minutes lock
  that username/address for 5 minutes, doubling on each further lock-out up to an hour. So that someone on the
  LAN cannot lock the owner out by typing wrong passwords for "owner", a browser that has logged in as a user
  before carries a device cookie (``hems_device``, 180 days, only its SHA-256 kept): its logins for that user
  count against that device alone, not against the username or the address.
- Roles: ``owner`` may do everything; ``installer`` may pair, add, configure and update devices and reads the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import argon2
from aiohttp import web

log = logging.getLogger(__name__)

ROLES = ("owner", "installer")
SESSION_COOKIE = "hems_session"
DEVICE_COOKIE = "hems_device"
CSRF_COOKIE = "hems_csrf"
CSRF_HEADER = "X-CSRF-Token"
USERNAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")
MIN_PASSWORD_LEN = 10
MAX_PASSWORD_LEN = 256
# unambiguous letters and digits (no 0/O, 1/I/L): read off a console, typed on a phone
SETUP_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

# what a browser may reach without a session
PUBLIC_PATHS = frozenset({"/healthz", "/login", "/setup", "/api/login", "/api/setup", "/api/openapi.json"})
PUBLIC_PREFIXES = ("/static/",)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_KV_USERS = "auth.users"
_KV_SESSIONS = "auth.sessions"


class AuthError(ValueError):
    """A request about accounts that cannot be done; the message says why, for the person at the screen."""

    def __init__(
        self, message: str, status: int = 400, field_name: str | None = None, retry_after_s: int = 0
    ) -> None:
        super().__init__(message)
        self.status = status
        self.field_name = field_name
        self.retry_after_s = retry_after_s


# -- the one-time setup code ---------------------------------------------------------------------------------
def new_setup_code() -> str:
    raw = "".join(secrets.choice(SETUP_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"  # 31^10 ≈ 8e14 codes; with the lock-out, not guessable


def _normal_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code).upper()


def setup_code_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "setup-code"


def ensure_setup_code(data_dir: str | Path) -> str:
    """The current setup code, made (0600) when there is none."""
    path = setup_code_path(data_dir)
    try:
        code = path.read_text().strip()
        if code:
            return code
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    code = new_setup_code()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(code + "\n")
    return code


# -- accounts -------------------------------------------------------------------------------------------------
@dataclass
class Session:
    username: str
    role: str
    csrf_token: str
    created_ts: float
    last_seen_ts: float
    password_epoch: int  # sessions made before a password change stop working


@dataclass
class _Throttle:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    lockouts: int = 0


class Accounts:
    """Users and sessions, kept in the store's key-value table (small: a home has a handful of users)."""

    max_failures = 5
    failure_window_s = 15 * 60.0
    lockout_s = 5 * 60.0
    max_lockout_s = 3600.0
    device_max_age_s = 180 * 86400.0
    max_devices_per_user = 20

    def __init__(self, store, data_dir: str | Path, *, session_idle_s: float = 12 * 3600.0) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self.session_idle_s = session_idle_s
        self.hasher = argon2.PasswordHasher()
        self._users: dict[str, dict] = dict(store.kv_get(_KV_USERS, {}) or {})
        self._sessions: dict[str, Session] = {}
        for digest, s in (store.kv_get(_KV_SESSIONS, {}) or {}).items():
            try:
                self._sessions[digest] = Session(**s)
            except TypeError:
                continue  # a session from an older layout: log in again
        self._throttles: dict[str, _Throttle] = {}
        # a dummy hash so that a wrong username costs the same time as a wrong password (made when first
        # needed, off the event loop: a hash takes a second on a Pi)
        self._dummy_hash: str | None = None

    # ---- state
    @property
    def has_owner(self) -> bool:
        return any(u["role"] == "owner" for u in self._users.values())

    def users(self) -> list[dict]:
        return [
            {"username": name, "role": u["role"], "created_ts": u["created_ts"]}
            for name, u in sorted(self._users.items())
        ]

    def setup_code(self) -> str | None:
        """The setup code while no owner exists (made if missing), else None (and any stale file removed)."""
        if self.has_owner:
            setup_code_path(self.data_dir).unlink(missing_ok=True)
            return None
        return ensure_setup_code(self.data_dir)

    def _save_users(self) -> None:
        self.store.kv_set(_KV_USERS, self._users)

    def _save_sessions(self) -> None:
        self.store.kv_set(_KV_SESSIONS, {d: s.__dict__ for d, s in self._sessions.items()})

    # ---- validation
    @staticmethod
    def check_username(username: object) -> str:
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            raise AuthError(
                "username must be 2-32 characters: lower-case letters, digits, '.', '_' or '-', "
                "starting with a letter",
                field_name="username",
            )
        return username

    @staticmethod
    def check_password(password: object, username: str = "") -> str:
        if not isinstance(password, str) or not password:
            raise AuthError("password is required", field_name="password")
        if len(password) < MIN_PASSWORD_LEN:
            raise AuthError(
                f"password must be at least {MIN_PASSWORD_LEN} characters (it has {len(password)})",
                field_name="password",
            )
        if len(password) > MAX_PASSWORD_LEN:
            raise AuthError(f"password must be at most {MAX_PASSWORD_LEN} characters", field_name="password")
        if username and password.lower() == username.lower():
            raise AuthError("password must not be the username", field_name="password")
        return password

    # ---- throttling
    def _throttle_check(self, keys: list[str], now: float) -> None:
        for key in keys:
            t = self._throttles.get(key)
            if t is not None and t.locked_until > now:
                wait = int(t.locked_until - now) + 1
                raise AuthError(
                    f"too many failed attempts; try again in {wait} s", status=429, retry_after_s=wait
                )

    def _throttle_fail(self, keys: list[str], now: float) -> None:
        for key in keys:
            t = self._throttles.setdefault(key, _Throttle())
            t.failures = [f for f in t.failures if now - f < self.failure_window_s] + [now]
            if len(t.failures) >= self.max_failures:
                t.lockouts += 1
                t.locked_until = now + min(self.lockout_s * 2 ** (t.lockouts - 1), self.max_lockout_s)
                t.failures.clear()
                log.warning("login locked for %s until %.0f after repeated failures", key, t.locked_until)

    def _throttle_ok(self, keys: list[str]) -> None:
        for key in keys:
            t = self._throttles.get(key)
            if t is not None:
                t.failures.clear()

    # ---- the operations
    async def _hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self.hasher.hash, password)

    async def _verify(self, stored_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self.hasher.verify(stored_hash, password)
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                return False

        return await asyncio.get_running_loop().run_in_executor(None, verify)

    async def create_user(self, username: str, password: str, role: str) -> dict:
        username = self.check_username(username)
        self.check_password(password, username)
        if role not in ROLES:
            raise AuthError(f"role must be one of {', '.join(ROLES)}", field_name="role")
        if username in self._users:
            raise AuthError(f"user {username!r} already exists", status=409, field_name="username")
        self._users[username] = {
            "role": role,
            "hash": await self._hash(password),
            "created_ts": time.time(),
            "password_epoch": 0,
        }
        self._save_users()
        log.info("account %r (%s) created", username, role)
        return {"username": username, "role": role}

    async def setup_owner(self, code: object, username: object, password: object, *, client: str) -> dict:
        now = time.monotonic()
        keys = [f"addr:{client}", "setup"]
        self._throttle_check(keys, now)
        if self.has_owner:
            raise AuthError("the gateway is already set up; log in instead", status=409)
        expected = self.setup_code()
        if not isinstance(code, str) or not hmac.compare_digest(
            _normal_code(code).encode(), _normal_code(expected or "").encode()
        ):
            self._throttle_fail(keys, now)
            raise AuthError(
                "setup code is wrong: use the code shown on the gateway's console or by `hems setup-code`",
                status=403,
                field_name="setup_code",
            )
        user = await self.create_user(username if username else "owner", password, "owner")
        self._throttle_ok(keys)
        setup_code_path(self.data_dir).unlink(missing_ok=True)
        return user

    async def ensure_owner(self, password: str, username: str = "owner") -> None:
        """``hems dev --owner-password``: the owner exists with this password (created or reset)."""
        self.check_password(password, username)
        user = self._users.get(username)
        if user is None:
            await self.create_user(username, password, "owner")
        else:
            user.update(role="owner", hash=await self._hash(password))
            self._save_users()
        setup_code_path(self.data_dir).unlink(missing_ok=True)

    def _known_device(self, name: str, device: str | None, now: float) -> str | None:
        """The digest of ``device`` if it is a device cookie this user was given and it has not expired."""
        user = self._users.get(name)
        if not device or user is None:
            return None
        digest = _digest(device)
        issued = user.get("devices", {}).get(digest)
        if issued is None or now - issued > self.device_max_age_s:
            return None
        return digest

    def _issue_device(self, user: dict, replaces: str | None, now: float) -> str:
        """A new device cookie for this user (a known one is replaced: each login rotates it)."""
        devices = {
            d: ts
            for d, ts in user.get("devices", {}).items()
            if d != replaces and now - ts <= self.device_max_age_s
        }
        token = secrets.token_urlsafe(32)
        devices[_digest(token)] = now
        # a bounded list: the oldest devices fall back to the username/address lock-out
        user["devices"] = dict(sorted(devices.items(), key=lambda kv: kv[1])[-self.max_devices_per_user :])
        return token

    async def login(
        self, username: object, password: object, *, client: str, device: str | None = None
    ) -> tuple[str, Session, str]:
        """(session token, session, device token). ``device`` is the browser's device cookie, if any."""
        now_mono = time.monotonic()
        now = time.time()
        name = username if isinstance(username, str) else ""
        known = self._known_device(name, device, now)
        # a device this user logged in from before is throttled on its own: others' failures do not lock it
        keys = [f"device:{known}"] if known else [f"addr:{client}", f"user:{name}"]
        self._throttle_check(keys, now_mono)
        user = self._users.get(name)
        if user is None and self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_hex(8))
        ok = await self._verify(
            user["hash"] if user else self._dummy_hash, password if isinstance(password, str) else ""
        )
        if not ok or user is None:
            self._throttle_fail(keys, now_mono)
            raise AuthError("wrong username or password", status=401)
        self._throttle_ok(keys)
        device_token = self._issue_device(user, known, now)
        self._save_users()
        token = secrets.token_urlsafe(32)
        session = Session(
            username=name,
            role=user["role"],
            csrf_token=secrets.token_urlsafe(32),
            created_ts=now,
            last_seen_ts=now,
            password_epoch=user.get("password_epoch", 0),
        )
        self._expire(now)
        self._sessions[_digest(token)] = session
        self._save_sessions()
        log.info("%r logged in from %s%s", name, client, " (known device)" if known else "")
        return token, session, device_token

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        digest = _digest(token)
        s = self._sessions.get(digest)
        if s is None:
            return None
        now = time.time()
        user = self._users.get(s.username)
        if (
            user is None
            or user.get("password_epoch", 0) != s.password_epoch
            or now - s.last_seen_ts > self.session_idle_s
        ):
            del self._sessions[digest]
            self._save_sessions()
            return None
        s.role = user["role"]
        s.last_seen_ts = now  # kept in memory; written with the next login/logout
        return s

    def logout(self, token: str | None) -> None:
        if token and self._sessions.pop(_digest(token), None) is not None:
            self._save_sessions()

    async def change_password(self, username: str, old: object, new: object) -> None:
        user = self._users.get(username)
        if user is None:
            raise AuthError(f"no user {username!r}", status=404)
        if not isinstance(old, str) or not await self._verify(user["hash"], old):
            raise AuthError("current password is wrong", status=403, field_name="current_password")
        self.check_password(new, username)
        user["hash"] = await self._hash(new)
        user["password_epoch"] = user.get("password_epoch", 0) + 1
        self._save_users()
        self._sessions = {d: s for d, s in self._sessions.items() if s.username != username}
        self._save_sessions()

    def delete_user(self, username: str) -> None:
        user = self._users.get(username)
        if user is None:
            raise AuthError(f"no user {username!r}", status=404)
        if user["role"] == "owner" and sum(u["role"] == "owner" for u in self._users.values()) == 1:
            raise AuthError("the last owner cannot be deleted", status=409)
        del self._users[username]
        self._save_users()
        self._sessions = {d: s for d, s in self._sessions.items() if s.username != username}
        self._save_sessions()

    def _expire(self, now: float) -> None:
        self._sessions = {
            d: s for d, s in self._sessions.items() if now - s.last_seen_ts <= self.session_idle_s
        }


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- aiohttp glue ---------------------------------------------------------------------------------------------
ACCOUNTS = web.AppKey("accounts", Accounts)
SESSION = web.RequestKey("session", Session)


def _json_error(message: str, status: int, **extra) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def _same_origin(request: web.Request) -> bool:
    """A browser names the page a request comes from; it must be the gateway itself. Scripts send no Origin."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return origin.split("://", 1)[-1] == request.host


def require_role(request: web.Request, *roles: str) -> Session:
    session: Session | None = request.get(SESSION)
    if session is None:
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "login required"}), content_type="application/json"
        )
    if session.role not in roles:
        raise web.HTTPForbidden(
            text=json.dumps({"error": f"this needs the {' or '.join(roles)} role; you are {session.role}"}),
            content_type="application/json",
        )
    return session


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


@web.middleware
async def security_headers(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _headers(response)
        raise
    _headers(response)
    return response


def _headers(response) -> None:
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "no-referrer")
    # scripts only from the gateway itself; styles may be set inline by the chart library
    h.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )


@web.middleware
async def auth_middleware(request: web.Request, handler):
    accounts: Accounts = request.app[ACCOUNTS]
    session = accounts.session(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        request[SESSION] = session
    path = request.path
    if _is_public(path):
        if request.method in UNSAFE_METHODS and not _same_origin(request):
            return _json_error("cross-site request refused", 403)
        return await handler(request)
    if session is None:
        if path.startswith("/api/"):
            return _json_error("login required", 401)
        if not accounts.has_owner:
            raise web.HTTPFound("/setup")
        raise web.HTTPFound("/login" if path == "/" else f"/login?next={quote(request.path_qs)}")
    if request.method in UNSAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()) or not _same_origin(request):
            return _json_error("CSRF token missing or wrong", 403)
    elif request.headers.get("Upgrade", "").lower() == "websocket" and not _same_origin(request):
        return _json_error("cross-site WebSocket refused", 403)  # cross-site WebSocket hijacking
    return await handler(request)


def _set_session_cookies(
    request: web.Request, response: web.Response, token: str, s: Session, device_token: str
) -> None:
    secure = request.secure
    accounts = request.app[ACCOUNTS]
    max_age = int(accounts.session_idle_s)
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="Strict", secure=secure, path="/", max_age=max_age
    )
    response.set_cookie(
        CSRF_COOKIE, s.csrf_token, httponly=False, samesite="Strict", secure=secure, path="/", max_age=max_age
    )
    response.set_cookie(
        DEVICE_COOKIE,
        device_token,
        httponly=True,
        samesite="Strict",
        secure=secure,
        path="/api/",
        max_age=int(accounts.device_max_age_s),
    )


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise AuthError("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise AuthError("body must be a JSON object")
    return body


def _auth_error(exc: AuthError) -> web.Response:
    extra: dict = {}
    if exc.status == 429:
        resp = _json_error(str(exc), 429, retry_after_s=exc.retry_after_s)
        resp.headers["Retry-After"] = str(exc.retry_after_s)
        return resp
    if exc.field_name:
        extra["errors"] = {exc.field_name: str(exc)}
    return _json_error(str(exc), exc.status, **extra)


def _me(s: Session) -> dict:
    return {"username": s.username, "role": s.role, "csrf_token": s.csrf_token}


async def api_login(request: web.Request) -> web.Response:
    accounts = request.app[ACCOUNTS]
    try:
        body = await _json_body(request)
        if not accounts.has_owner:
            raise AuthError("the gateway is not set up yet: open /setup", status=409)
        token, session, device = await accounts.login(
            body.get("username"),
            body.get("password"),
            client=_client(request),
            device=request.cookies.get(DEVICE_COOKIE),
        )
    except AuthError as exc:
        return _auth_error(exc)
    response = web.json_response(_me(session))
    _set_session_cookies(request, response, token, session, device)
    return response


async def api_setup(request: web.Request) -> web.Response:
    accounts = request.app[ACCOUNTS]
    try:
        body = await _json_body(request)
        user = await accounts.setup_owner(
            body.get("setup_code"), body.get("username"), body.get("password"), client=_client(request)
        )
        token, session, device = await accounts.login(
            user["username"], body["password"], client=_client(request)
        )
    except AuthError as exc:
        return _auth_error(exc)
    response = web.json_response(_me(session), status=201)
    _set_session_cookies(request, response, token, session, device)
    return response


async def api_logout(request: web.Request) -> web.Response:
    request.app[ACCOUNTS].logout(request.cookies.get(SESSION_COOKIE))
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(CSRF_COOKIE, path="/")
    return response


async def api_me(request: web.Request) -> web.Response:
    return web.json_response(_me(require_role(request, *ROLES)))


async def api_users(request: web.Request) -> web.Response:
    require_role(request, "owner")
    return web.json_response({"users": request.app[ACCOUNTS].users()})


async def api_create_user(request: web.Request) -> web.Response:
    require_role(request, "owner")
    try:
        body = await _json_body(request)
        user = await request.app[ACCOUNTS].create_user(
            body.get("username"), body.get("password"), body.get("role", "installer")
        )
    except AuthError as exc:
        return _auth_error(exc)
    return web.json_response(user, status=201)


async def api_delete_user(request: web.Request) -> web.Response:
    require_role(request, "owner")
    try:
        request.app[ACCOUNTS].delete_user(request.match_info["username"])
    except AuthError as exc:
        return _auth_error(exc)
    return web.json_response({"ok": True})


async def api_change_password(request: web.Request) -> web.Response:
    """Any user changes their own password; every session of theirs ends, this one gets a new login."""
    session = require_role(request, *ROLES)
    accounts = request.app[ACCOUNTS]
    try:
        body = await _json_body(request)
        await accounts.change_password(
            session.username, body.get("current_password"), body.get("new_password")
        )
        token, new_session, device = await accounts.login(
            session.username,
            body["new_password"],
            client=_client(request),
            device=request.cookies.get(DEVICE_COOKIE),
        )
    except AuthError as exc:
        return _auth_error(exc)
    response = web.json_response(_me(new_session))
    _set_session_cookies(request, response, token, new_session, device)
    return response


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · HEMS gateway</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/auth.js" defer></script>
</head>
<body class="auth-page">
<main class="auth-card">
<h1>{title}</h1>
{intro}
<form id="{form_id}" class="auth-form" novalidate>
{fields}
<p class="form-error" role="alert" id="form-error" hidden></p>
<button type="submit">{button}</button>
</form>
</main>
</body>
</html>
"""

_FIELD = (
    '<label for="{name}">{label}</label>'
    '<input id="{name}" name="{name}" type="{type}" autocomplete="{autocomplete}" {extra}>'
    '<p class="field-error" id="{name}-error" hidden></p>'
)


def _field(name: str, label: str, type_: str, autocomplete: str, extra: str = "") -> str:
    return _FIELD.format(name=name, label=label, type=type_, autocomplete=autocomplete, extra=extra)


def _page(title: str, intro: str, form_id: str, fields: list[str], button: str) -> web.Response:
    return web.Response(
        text=_PAGE.format(
            title=html.escape(title), intro=intro, form_id=form_id, fields="\n".join(fields), button=button
        ),
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


async def login_page(request: web.Request) -> web.StreamResponse:
    accounts = request.app[ACCOUNTS]
    if not accounts.has_owner:
        raise web.HTTPFound("/setup")
    if request.get(SESSION) is not None:
        raise web.HTTPFound("/")
    return _page(
        "Log in",
        "<p>Log in to see and control your home's energy.</p>",
        "login-form",
        [
            _field(
                "username", "Username", "text", "username", 'required value="owner" autocapitalize="none"'
            ),
            _field("password", "Password", "password", "current-password", "required"),
        ],
        "Log in",
    )


async def setup_page(request: web.Request) -> web.StreamResponse:
    accounts = request.app[ACCOUNTS]
    if accounts.has_owner:
        raise web.HTTPFound("/login")
    accounts.setup_code()  # make sure there is one to type in
    return _page(
        "Set up your gateway",
        "<p>Welcome. Create the owner account for this home.</p>"
        "<p>The <b>setup code</b> is shown on the gateway's screen or console when it starts, "
        "and by the command <code>hems setup-code</code>.</p>",
        "setup-form",
        [
            _field(
                "setup_code", "Setup code", "text", "one-time-code", 'required autocapitalize="characters"'
            ),
            _field(
                "username",
                "Owner username",
                "text",
                "username",
                'required value="owner" autocapitalize="none"',
            ),
            _field(
                "password",
                f"New password (at least {MIN_PASSWORD_LEN} characters)",
                "password",
                "new-password",
                f'required minlength="{MIN_PASSWORD_LEN}"',
            ),
        ],
        "Create owner account",
    )


def install(app: web.Application, accounts: Accounts) -> None:
    """Put the login in front of everything ``app`` serves and add the account routes."""
    app[ACCOUNTS] = accounts
    app.middlewares.append(security_headers)
    app.middlewares.append(auth_middleware)
    app.router.add_get("/login", login_page)
    app.router.add_get("/setup", setup_page)
    app.router.add_post("/api/login", api_login)
    app.router.add_post("/api/setup", api_setup)
    app.router.add_post("/api/logout", api_logout)
    app.router.add_get("/api/me", api_me)
    app.router.add_post("/api/me/password", api_change_password)
    app.router.add_get("/api/users", api_users)
    app.router.add_post("/api/users", api_create_user)
    app.router.add_delete("/api/users/{username}", api_delete_user)
