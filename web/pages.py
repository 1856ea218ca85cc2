"""The dashboard's pages: one shared shell (head, header and menu) around each page's body in
``web/templates/<name>.html``; each page loads its data from the JSON API with a small script of its own
(``web/static/<name>.js``). The login in front of them is ``web.auth``'s middleware."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Page:
    name: str  # templates/<name>.html and static/<script>.js
    title: str  # the menu label and the window title
    script: str
    charts: bool = False  # loads the vendored chart library


# path -> page, in menu order
PAGES: dict[str, Page] = {
    "/": Page("index", "Now", "overview"),
    "/plan": Page("plan", "Plan", "plan", charts=True),
    "/history": Page("history", "History", "history", charts=True),
    "/dr": Page("dr", "Utility events", "dr", charts=True),
    "/devices": Page("devices", "Devices", "devices"),
    "/settings": Page("settings", "Settings", "settings"),
}

_SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · HEMS gateway</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css">
{head}<script src="/static/common.js" defer></script>
<script src="/static/{script}.js" defer></script>
</head>
<body data-page="{name}">
<header class="top">
  <a class="brand" href="/">Home energy</a>
  <span id="conn" class="badge" hidden></span>
  <button class="menu-btn" type="button" aria-expanded="false" aria-controls="nav">Menu</button>
  <nav id="nav" aria-label="Main">
{menu}
    <button type="button" id="logout">Log out</button>
  </nav>
</header>
{body}</body>
</html>
"""
_CHARTS = (
    '<link rel="stylesheet" href="/static/vendor/uPlot.min.css">\n'
    '<script src="/static/vendor/uPlot.iife.min.js" defer></script>\n'
)


def render(page: Page) -> str:
    menu = "\n".join(f'    <a href="{path}">{html.escape(p.title)}</a>' for path, p in PAGES.items())
    return _SHELL.format(
        title=html.escape(page.title),
        head=_CHARTS if page.charts else "",
        script=page.script,
        name=page.name,
        menu=menu,
        body=(TEMPLATES / f"{page.name}.html").read_text(),
    )


def _handler(text: str):
    async def page(request: web.Request) -> web.Response:
        # no-cache: a new release's pages and scripts are picked up at once
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-cache"})

    return page


def add_routes(app: web.Application) -> None:
    for path, page in PAGES.items():
        app.router.add_get(path, _handler(render(page)))  # rendered once, at start
