"""The dashboard's pages: static HTML shells (web/static/*.html) that load their data from the JSON API with
small scripts. ``/`` (the live overview, ``index.html``) is served by ``web.app``; ``add_routes`` adds the rest.
The login in front of them is ``web.auth``'s middleware."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"

# path -> shell; every shell carries the same header and menu (tests/web/test_pages.py checks it)
PAGES = {
    "/plan": "plan.html",
    "/history": "history.html",
    "/dr": "dr.html",
    "/devices": "devices.html",
    "/settings": "settings.html",
}


def _handler(file: Path):
    async def page(request: web.Request) -> web.FileResponse:
        # no-cache: a new release's pages and scripts are picked up at once
        return web.FileResponse(file, headers={"Cache-Control": "no-cache"})

    return page


def add_routes(app: web.Application) -> None:
    for path, name in PAGES.items():
        app.router.add_get(path, _handler(STATIC / name))
