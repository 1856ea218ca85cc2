"""The gateway's HTTP server: health, JSON status, the live reading stream, and the overview page.

``/healthz`` is never behind a login: it says whether the service runs, nothing about the home. Everything
else needs a session (see :mod:`web.auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from aiohttp import WSMsgType, web

from hems.model import Reading
from web import RUNTIME, api, auth, openapi, pages, settings_api

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(runtime, accounts: auth.Accounts) -> web.Application:
    """``runtime`` is the composition root's object: it has ``health()``, ``status()`` and ``bus``."""
    app = web.Application(client_max_size=1024**2)
    app[RUNTIME] = runtime
    auth.install(app, accounts)
    settings_api.add_routes(app)
    api.add_routes(app)  # dashboard data: summary, history, CSV, devices, DR detail (web/api.py)
    pages.add_routes(app)  # the dashboard's pages, "/" included (web/pages.py)
    openapi.add_routes(app)  # /api/openapi.json (web/openapi.py)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/live", api_live)
    app.router.add_get("/api/plan", api_plan)
    app.router.add_get("/api/dr", api_dr_events)
    app.router.add_post("/api/dr/{key}/opt-out", api_dr_opt_out)
    app.router.add_static("/static/", STATIC, show_index=False)
    return app


async def healthz(request: web.Request) -> web.Response:
    health = request.app[RUNTIME].health()
    return web.json_response(health, status=200 if health["status"] == "ok" else 503)


async def api_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[RUNTIME].status())


async def api_plan(request: web.Request) -> web.Response:
    """The current plan: per-step setpoints, predicted SOC and temperatures, reasons, and the forecast used."""
    plan = request.app[RUNTIME].latest_plan
    if plan is None:
        return web.json_response(
            {"error": "no plan yet (strategy is not the planner, or it has not run)"}, status=404
        )
    return web.json_response(plan)


async def api_dr_events(request: web.Request) -> web.Response:
    """Every DR event the gateway knows, current version, newest last, with its report once made."""
    dr = request.app[RUNTIME].dr
    return web.json_response({"events": [e.to_json() for e in dr.events()] if dr else []})


async def api_dr_opt_out(request: web.Request) -> web.Response:
    """The homeowner opts out of an event; the source (utility, meter, aggregator) is told."""
    auth.require_role(request, "owner")
    dr = request.app[RUNTIME].dr
    key = request.match_info["key"]
    if dr is None or dr.get(key) is None:
        return web.json_response({"error": f"no DR event {key!r}"}, status=404)
    reason = "homeowner opted out"
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": 'body must be JSON, e.g. {"reason": "..."}'}, status=400)
        if isinstance(body, dict) and isinstance(body.get("reason"), str):
            reason = body["reason"][:200]
    try:
        event = await dr.opt_out(key, reason)
    except ValueError as exc:  # already over, or not opt-out-able
        return web.json_response({"error": str(exc)}, status=409)
    return web.json_response(event.to_json())


# The live stream sends each (device, quantity) at most this often: the latest value, never a stale one. A
# browser cannot show more, and at accelerated dev speeds the bus carries hundreds of readings a second.
LIVE_MIN_INTERVAL_S = 0.25


async def api_live(request: web.Request) -> web.WebSocketResponse:
    """First a ``snapshot`` message (the same object as /api/status), then ``reading`` messages: every
    LIVE_MIN_INTERVAL_S, one for each (device, quantity) that has a new reading, with its latest value."""
    runtime = request.app[RUNTIME]
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    sub = runtime.bus.subscribe(maxsize=2000)

    async def pump() -> None:
        await ws.send_json({"type": "snapshot", "status": runtime.status()})
        while True:
            latest: dict[tuple[str, str], Reading] = {}
            for reading in [await sub.get(), *sub.drain()]:
                latest[(reading.device_id, reading.quantity)] = reading
            for reading in latest.values():
                await ws.send_str(json.dumps({"type": "reading", **reading.to_json()}))
            await asyncio.sleep(LIVE_MIN_INTERVAL_S)

    sender = asyncio.create_task(pump())
    try:
        async for msg in ws:  # the client sends nothing we act on; this loop notices it leaving
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
            await sender
        sub.close()
    return ws
