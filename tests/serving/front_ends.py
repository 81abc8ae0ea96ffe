"""Run a test body against the service behind either HTTP front end.

``asgi``: the app ``create_app`` returns, in process (httpx's ASGI transport: what uvicorn and Ray Serve
run); ``lean``: the default httptools server (``serving/httpserver.py``) over loopback. Both answer the
hot endpoints through the same ``HotRoutes``; the rest through FastAPI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from turborec.serving.app import create_app
from turborec.serving.server import background_server
from turborec.serving.service import RecommendService

FRONT_ENDS = ("asgi", "lean")


def call(service: RecommendService, body: Callable[[httpx.AsyncClient], Awaitable[None]], front_end: str) -> None:
    """Start ``service`` behind ``front_end``, run ``body(client)``, stop it."""
    if front_end == "lean":
        async def over_loopback(url: str) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                await body(client)

        with background_server(service, http="lean") as srv:
            asyncio.run(over_loopback(srv.url))
        return
    if front_end != "asgi":
        raise ValueError(f"unknown front end {front_end!r}")

    async def in_process() -> None:
        await service.start()
        try:
            transport = httpx.ASGITransport(app=create_app(service))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await body(client)
        finally:
            await service.stop()

    asyncio.run(in_process())
