"""The gateway's aiohttp dashboard and JSON API."""
