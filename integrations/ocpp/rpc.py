"""OCPP-J over aiohttp websockets, shared by the CSMS and the simulated charge point.

- ``WSConnection`` adapts an aiohttp websocket (server or client side) to what the ``ocpp`` library's
  ``ChargePoint`` expects: ``async send(str)`` and ``async recv() -> str``.
- ``RpcMixin`` replaces the library's message routing so that bad input never ends a connection and
  always gets the CALLERROR the version defines: the library drops unparsable frames without an answer,
  answers unknown actions with NotSupported (the spec says NotImplemented: "not known by receiver") and
  spells 1.6's FormationViolation the 2.0.1 way.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from typing import Any

import aiohttp
import ocpp.messages
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, MessageType
from ocpp.v16.enums import Action as Action16
from ocpp.v21.enums import Action as Action21
from ocpp.v201.enums import Action as Action201

# The library validates payloads in a thread pool by default; validators are cached and fast, so the
# event loop does it (no threads, one fewer hop per message).
ocpp.messages.ASYNC_VALIDATION = False

SUBPROTOCOLS = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1", "ocpp2.1": "2.1"}
VERSION_SUBPROTOCOL = {v: k for k, v in SUBPROTOCOLS.items()}
KNOWN_ACTIONS = {
    "1.6": {a.value for a in Action16},
    "2.0.1": {a.value for a in Action201},
    "2.1": {a.value for a in Action21},
}
MAX_MESSAGE_BYTES = 256 * 1024
_ID_RE = re.compile(r'^\s*\[\s*\d+\s*,\s*"([^"\\]{1,36})"')


class ConnectionClosed(Exception):
    """The websocket closed (by either side)."""


class WSConnection:
    """An aiohttp websocket as the ocpp library's connection object."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse | Any) -> None:
        self.ws = ws

    async def send(self, message: str) -> None:
        if self.ws.closed:
            raise ConnectionClosed("websocket is closed")
        try:
            await self.ws.send_str(message)
        except (ConnectionError, RuntimeError) as exc:
            raise ConnectionClosed(str(exc)) from exc

    async def recv(self) -> str:
        while True:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                return msg.data
            if msg.type == aiohttp.WSMsgType.BINARY:  # OCPP-J is text only: treat it as (likely bad) text
                return bytes(msg.data).decode("utf-8", errors="replace")
            if msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                continue
            raise ConnectionClosed(f"websocket {msg.type.name.lower()}: {msg.extra or ''}".strip())

    async def close(self, code: int = 1000, message: str = "") -> None:
        if not self.ws.closed:
            await self.ws.close(code=code, message=message.encode()[:120])


def basic_auth_header(login: str, password: str) -> str:
    """The HTTP basic auth header value (OCPP security profiles 1 and 2: user = charge point id)."""
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


async def call_until_closed(cp: Any, payload: Any, closed: asyncio.Event) -> Any:
    """``cp.call(payload)`` that gives up as soon as the connection closes (the library would wait for its
    full response timeout). Raises ConnectionClosed, TimeoutError or the OCPPError of a CALLERROR."""
    call = asyncio.ensure_future(cp.call(payload, suppress=False))
    lost = asyncio.ensure_future(closed.wait())
    try:
        await asyncio.wait({call, lost}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()
        answered = call.done()
        if not answered:
            call.cancel()
    if not answered or call.cancelled():
        raise ConnectionClosed(f"connection closed before {type(payload).__name__} was answered")
    return call.result()


def error_code(code: str, version: str) -> str:
    """The CALLERROR code as each version spells it."""
    if version == "1.6":
        return {
            "FormatViolation": "FormationViolation",
            "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
            "RpcFrameworkError": "ProtocolError",
            "MessageTypeNotSupported": "ProtocolError",
        }.get(code, code)
    if version == "2.0.1":
        return {
            "FormationViolation": "FormatViolation",
            "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
        }.get(code, code)
    return {
        "FormationViolation": "FormatViolation",
        "OccurenceConstraintViolation": "OccurrenceConstraintViolation",
    }.get(code, code)


class RpcMixin:
    """Message routing for ``ocpp.ChargePoint`` subclasses (put it first in the bases)."""

    _ocpp_version: str
    id: str
    logger: logging.Logger

    def on_bad_frame(self, raw: str, problem: str) -> None:
        """Called for every frame that got a CALLERROR or was dropped (override to count or mark faulty)."""

    def after_call(self, action: str) -> None:
        """Called after a CALL was answered successfully (override to start work that needs the answer sent)."""

    async def send_call_error(self, unique_id: str, code: str, description: str, cause: str = "") -> None:
        details = {"cause": cause[:200]} if cause else {}
        frame = CallError(unique_id, error_code(code, self._ocpp_version), description[:255], details)
        await self._send(frame.to_json())  # type: ignore[attr-defined]

    async def route_message(self, raw_msg: str) -> None:
        version = self._ocpp_version
        try:
            data = json.loads(raw_msg)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            found = _ID_RE.match(raw_msg) if isinstance(raw_msg, str) else None
            uid = found.group(1) if found else "-1"
            code = "FormationViolation" if version == "1.6" or found else "RpcFrameworkError"
            self.on_bad_frame(raw_msg, "not valid JSON")
            await self.send_call_error(uid, code, "Message is not valid JSON", "not valid JSON")
            return
        if (
            not isinstance(data, list)
            or not data
            or not isinstance(data[0], int)
            or isinstance(data[0], bool)
        ):
            self.on_bad_frame(raw_msg, "not an OCPP-J frame")
            uid = data[1] if isinstance(data, list) and len(data) > 1 and isinstance(data[1], str) else "-1"
            await self.send_call_error(
                uid[:36], "RpcFrameworkError", "Not an OCPP-J frame: expected [MessageTypeId, MessageId, ...]"
            )
            return
        kind = data[0]
        uid = data[1] if len(data) > 1 and isinstance(data[1], str) and 0 < len(data[1]) <= 36 else None
        if kind == MessageType.Call:
            if uid is None or len(data) != 4 or not isinstance(data[2], str):
                self.on_bad_frame(raw_msg, "malformed CALL")
                await self.send_call_error(
                    uid or "-1",
                    "RpcFrameworkError" if uid is None else "ProtocolError",
                    "A CALL is [2, MessageId, Action, {payload}]",
                )
                return
            if not isinstance(data[3], dict):
                self.on_bad_frame(raw_msg, "payload is not an object")
                await self.send_call_error(uid, "FormationViolation", "The payload must be a JSON object")
                return
            await self._route_call(Call(uid, data[2], data[3]), raw_msg)
        elif kind == MessageType.CallResult:
            if uid is None or len(data) != 3 or not isinstance(data[2], dict):
                self.on_bad_frame(raw_msg, "malformed CALLRESULT")
                return  # never answer a response with an error (OCPP-J: no CALLERROR for a CALLRESULT)
            self._response_queue.put_nowait(CallResult(uid, data[2]))  # type: ignore[attr-defined]
        elif kind == MessageType.CallError:
            if uid is None or len(data) != 5:
                self.on_bad_frame(raw_msg, "malformed CALLERROR")
                return
            self._response_queue.put_nowait(CallError(*data[1:]))  # type: ignore[attr-defined]
        else:
            self.on_bad_frame(raw_msg, f"unknown MessageTypeId {kind}")
            await self.send_call_error(
                uid or "-1", "MessageTypeNotSupported", f"MessageTypeId {kind} is not supported"
            )

    async def _route_call(self, msg: Call, raw: str) -> None:
        handlers = self.route_map.get(msg.action, {})  # type: ignore[attr-defined]
        if "_on_action" not in handlers:
            known = msg.action in KNOWN_ACTIONS.get(self._ocpp_version, set())
            self.on_bad_frame(raw, f"no handler for {msg.action}")
            if known:
                await self.send_call_error(
                    msg.unique_id, "NotSupported", f"{msg.action} is recognized but not supported here"
                )
            else:
                await self.send_call_error(
                    msg.unique_id,
                    "NotImplemented",
                    f"{msg.action} is not an OCPP {self._ocpp_version} action",
                )
            return
        try:
            await self._handle_call(msg)  # type: ignore[attr-defined]
        except OCPPError as exc:
            self.on_bad_frame(raw, f"{exc.code}: {exc.description}")
            cause = exc.details.get("cause", "") if isinstance(exc.details, dict) else ""
            await self.send_call_error(msg.unique_id, exc.code, exc.description or exc.code, str(cause))
            return
        self.after_call(msg.action)
