"""The OpenAPI 3.1 document of the gateway's HTTP API, served at ``/api/openapi.json`` (no login needed)."""

from __future__ import annotations

from aiohttp import web


def document() -> dict:
    return {"openapi": "3.1.0", "info": {"title": "HEMS gateway API", "version": "0.1.0"}, "paths": {}}


async def api_openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", api_openapi)
