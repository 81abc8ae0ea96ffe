"""/docs and /redoc work offline: their HTML references only this service's own URLs, and each returns 200."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from turborec.serving.app import create_app
from turborec.serving.loading import load_serving_model
from turborec.serving.service import RecommendService
from turborec.serving.settings import ServeSettings
from turborec.serving.stores import MemoryStore

URL_ATTR = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']|spec-url\s*=\s*["']([^"']+)["']""")


@pytest.fixture(scope="module")
def app(artifact: Path) -> Any:
    settings = ServeSettings(artifact=artifact, slo_p99_ms=5000.0)
    service = RecommendService(load_serving_model(artifact), MemoryStore(), settings, loader=load_serving_model)
    service.ready = True
    return create_app(service)


def fetch(app: Any, paths: list[str]) -> list[httpx.Response]:
    async def call() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            return [await c.get(p) for p in paths]

    return asyncio.run(call())


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(app: Any, page: str) -> None:
    (html,) = fetch(app, [page])
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    urls = [next(g for g in m.groups() if g) for m in URL_ATTR.finditer(html.text)]
    assert len(urls) >= 2, html.text  # the script (and stylesheet) and the OpenAPI document
    remote = [u for u in urls if re.match(r"^(https?:)?//", u)]
    assert not remote, f"{page} loads from elsewhere: {remote}"
    assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text
    for url, answer in zip(urls, fetch(app, urls)):
        assert answer.status_code == 200, url
        assert len(answer.content) > 1000 or url.endswith(".png"), url
