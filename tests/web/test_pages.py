"""The pages and the OpenAPI document, served by a real gateway: every page behind the login, one header and
menu on every page, every asset served by the gateway itself, and every route the app serves described."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest

from web import pages

on_module_loop = pytest.mark.asyncio(loop_scope="module")

STATIC = Path(pages.__file__).parent / "static"
SHELLS = {path: pages.render(page) for path, page in pages.PAGES.items()}


@on_module_loop
async def test_pages_need_a_session_and_are_served_with_one(gateway, owner):
    async with aiohttp.ClientSession() as anon:
        for path in SHELLS:
            async with anon.get(gateway.url + path, allow_redirects=False) as resp:
                assert resp.status == 302, path
                assert resp.headers["Location"].startswith("/login"), path
        async with anon.get(gateway.url + "/static/style.css") as resp:  # assets are public: no home data
            assert resp.status == 200 and ".auth-card" in await resp.text()
    for path, shell in SHELLS.items():
        async with owner.get(gateway.url + path) as resp:
            assert resp.status == 200 and resp.content_type == "text/html", path
            text = await resp.text()
            assert text == shell
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]


def _header(html: str) -> str:
    return re.search(r"<header class=\"top\">.*?</header>", html, re.S).group(0)


def test_every_page_has_the_same_menu_and_only_local_assets():
    headers = {path: _header(html) for path, html in SHELLS.items()}
    assert len(set(headers.values())) == 1, "the header differs between pages"
    menu = re.findall(r'<a href="([^"]+)"', next(iter(headers.values())))
    assert menu == list(SHELLS), menu  # one link per page, in order
    for name, html in SHELLS.items():
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
        # the CSP allows no inline script: every script is a file under /static/
        assert "<script>" not in html
        assert not re.search(r"\son[a-z]+=\"", html), f"{name}: inline event handler"
        for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not ref.startswith(("http:", "https:", "//")), (
                f"{name}: {ref} is not served by the gateway"
            )
            if ref.startswith("/static/"):
                assert (STATIC / ref.removeprefix("/static/")).is_file(), f"{name}: {ref} missing"
    for js in STATIC.glob("*.js"):
        assert not re.search(r"https?://", js.read_text()), f"{js.name} reaches outside the gateway"


def test_the_chart_library_is_vendored_with_its_licence():
    pkg = json.loads((STATIC.parent / "package.json").read_text())
    version = pkg["devDependencies"]["uplot"]
    vendor = STATIC / "vendor"
    assert f"uPlot {version} (MIT)" in (vendor / "VERSIONS.txt").read_text()
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text()
    assert (vendor / "uPlot.iife.min.js").stat().st_size > 30_000
    lock = json.loads((STATIC.parent / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/uplot"]["version"] == version


@on_module_loop
async def test_openapi_describes_every_route_and_is_public(gateway):
    async with aiohttp.ClientSession() as anon:
        async with anon.get(gateway.url + "/api/openapi.json") as resp:
            assert resp.status == 200
            doc = await resp.json()
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"]
    app = gateway.web_runner.app
    served = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method == "HEAD" or path is None:  # HEAD mirrors GET; the static directory has a prefix
            continue
        served.add((path, route.method.lower()))
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert served - documented == set(), "routes without documentation"
    assert documented - served == set(), "documented routes the app does not serve"
    schemas = doc["components"]["schemas"]
    for ref in re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(doc)):
        assert ref in schemas, ref
    public = {"/healthz", "/api/openapi.json", "/api/login", "/api/setup", "/login", "/setup"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"] and op["summary"], (path, method)
            if path.startswith("/api/") and path not in public and path != "/api/openapi.json":
                assert "401" in op["responses"], (path, method)
                if method in ("post", "put", "patch", "delete"):
                    assert "403" in op["responses"] and {"session": [], "csrf": []} in op["security"]
            if path in public:
                assert op["security"] == []
