"""Property-based API test: requests generated from the service's own OpenAPI schema, valid and invalid
(schemathesis positive and negative modes), never get a 5xx. Bounded: a few examples per operation."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from turborec.serving.app import create_app, openapi_schema
from turborec.serving.loading import load_serving_model
from turborec.serving.service import RecommendService
from turborec.serving.settings import ServeSettings
from turborec.serving.stores import MemoryStore

EXAMPLES = 15


@pytest.fixture(scope="module")
def app(artifact: Path) -> Any:
    s = ServeSettings(artifact=artifact, admin_token="schema-test-token", slo_p99_ms=5000.0, max_k=50)
    service = RecommendService(load_serving_model(artifact), MemoryStore(), s, loader=lambda p: load_serving_model(p))
    service.ready = True  # what start() sets; /readyz would rightly answer 503 otherwise
    return create_app(service)


def send(app: Any, kwargs: dict[str, Any]) -> httpx.Response:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return await client.request(
                kwargs["method"], kwargs["url"], params=kwargs.get("params"), headers=kwargs.get("headers"),
                content=kwargs.get("data"), json=kwargs.get("json"),
            )

    return asyncio.run(call())


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_generated_requests_never_get_a_server_error(app: Any, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_dict(openapi_schema(app))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/recommend", "/v1/events", "/v1/similar", "/admin/reload"}
    failures: list[str] = []
    tried: dict[str, int] = {}
    def checker(op: Any) -> Any:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            kwargs = case.as_transport_kwargs(base_url="http://test")
            response = send(app, kwargs)
            tried[op.path] = tried.get(op.path, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{kwargs['method']} {kwargs['url']} {kwargs.get('json')!r} -> "
                                f"{response.status_code} {response.text[:200]}")

        return check

    for op in operations:
        with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (no parameters, no body) in this mode
            checker(op)()
    assert not failures, "\n".join(failures[:10])
    assert all(tried.get(path, 0) >= 5 for path in ("/v1/recommend", "/v1/events", "/v1/similar")), tried
