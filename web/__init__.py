"""The gateway's aiohttp dashboard and JSON API."""

from aiohttp import web as _web

RUNTIME = _web.AppKey("runtime", object)  # the composition root's Runtime, for every handler module
