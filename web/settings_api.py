"""``/api/settings``: the homeowner's settings (reserve, EV, comfort band, export limit, tariff, cloud link)."""

from __future__ import annotations

from aiohttp import web

from hems.settings import SettingsError
from web import RUNTIME
from web.auth import ROLES, require_role


async def get_settings(request: web.Request) -> web.Response:
    require_role(request, *ROLES)
    return web.json_response(request.app[RUNTIME].settings_json())


async def patch_settings(request: web.Request) -> web.Response:
    """Any subset of the settings; 400 names every bad field and changes nothing. A re-plan starts at once."""
    require_role(request, "owner")
    try:
        patch = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be a JSON object of settings"}, status=400)
    runtime = request.app[RUNTIME]
    try:
        settings = await runtime.update_settings(patch)
    except SettingsError as exc:
        return web.json_response({"error": f"not saved: {exc}", "errors": exc.errors}, status=400)
    except Exception as exc:  # e.g. the cloud link's new broker settings do not start
        return web.json_response({"error": f"not saved: {exc}"}, status=400)
    return web.json_response(settings)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/settings", get_settings)
    app.router.add_patch("/api/settings", patch_settings)
    app.router.add_put("/api/settings", patch_settings)
