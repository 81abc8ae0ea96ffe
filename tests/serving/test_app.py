"""The HTTP API in-process (httpx.ASGITransport), on both the lean fast path and plain FastAPI routes."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.front_ends import call
from turborec.serving.app import create_app, openapi_schema
from turborec.serving.loading import load_serving_model
from turborec.serving.model import Query
from turborec.serving.net_model import NetServingModel
from turborec.serving.service import RecommendService
from turborec.serving.settings import ServeSettings
from turborec.serving.stores import MemoryStore
from turborec.serving.tiers import Tier

TOKEN = "test-admin-token"
Client = httpx.AsyncClient


def make_service(model: NetServingModel, artifact: Path | None = None, **options: Any) -> RecommendService:
    # a generous budget: these tests check behaviour, and a busy CI machine must not turn them into 503s
    # reloads may load any test artifact: every pytest temporary folder is under the system's
    settings = ServeSettings(artifact=artifact, **{"admin_token": TOKEN, "max_k": 50, "slo_p99_ms": 2000.0,
                                                   "artifacts_root": Path(tempfile.gettempdir()), **options})
    service = RecommendService(model, MemoryStore(max_per_user=settings.history_len), settings,
                               loader=lambda p: load_serving_model(p, settings.history_len))
    service.warm_up(rounds=2)
    return service


def run(service: RecommendService, body: Callable[[Client], Awaitable[None]], front_end: str = "asgi") -> None:
    call(service, body, front_end)


def test_recommend_known_user(model: NetServingModel, front_end: str) -> None:
    async def body(c: Client) -> None:
        r = await c.post("/v1/recommend", json={"user": "3", "k": 7})
        assert r.status_code == 200, r.text
        data = r.json()
        assert len(data["items"]) == 7 and data["user_known"] is True
        assert data["model_version"] == model.version and data["tier"] == "full"
        assert r.headers["x-turborec-tier"] == "full"
        scores = [it["score"] for it in data["items"]]
        assert scores == sorted(scores, reverse=True)
        direct = model.recommend_batch([Query("3", (), 7)], Tier.FULL).results[0]
        assert [it["item"] for it in data["items"]] == direct.items

    run(make_service(model), body, front_end)


def test_integer_ids_are_accepted(model: NetServingModel, front_end: str) -> None:
    async def body(c: Client) -> None:
        a = (await c.post("/v1/recommend", json={"user": 3, "k": 5})).json()
        b = (await c.post("/v1/recommend", json={"user": "3", "k": 5})).json()
        assert a["items"] == b["items"]

    run(make_service(model), body, front_end)


def test_unknown_user_is_served_anonymously_from_recent_items(model: NetServingModel, front_end: str) -> None:
    async def body(c: Client) -> None:
        r = await c.post("/v1/recommend", json={"user": "stranger", "recent_items": ["1", "2"], "k": 5,
                                                "exclude": ["10"]})
        assert r.status_code == 200
        data = r.json()
        assert data["user_known"] is False
        got = {it["item"] for it in data["items"]}
        assert not got & {"1", "2", "10"}
        anon = (await c.post("/v1/recommend", json={"recent_items": ["1", "2"], "k": 5, "exclude": ["10"]})).json()
        assert anon["items"] == data["items"]

    run(make_service(model), body, front_end)


def test_an_event_changes_the_next_recommendation(model: NetServingModel, front_end: str) -> None:
    async def body(c: Client) -> None:
        before = (await c.post("/v1/recommend", json={"user": "new-user", "k": 10})).json()["items"]
        clicked = [str(i) for i in range(200, 210)]
        for item in clicked:
            r = await c.post("/v1/events", json={"user": "new-user", "item": item, "kind": "click"})
            assert r.status_code == 200 and r.json() == {"stored": True, "known_item": True}
        after = (await c.post("/v1/recommend", json={"user": "new-user", "k": 10})).json()["items"]
        assert after != before
        assert not {it["item"] for it in after} & set(clicked)  # what was just seen is not recommended back
        other = (await c.post("/v1/recommend", json={"user": "someone-else", "k": 10})).json()["items"]
        assert other == before  # only that user's history moved
        r = await c.post("/v1/events", json={"user": "new-user", "item": "brand-new-item", "kind": "purchase"})
        assert r.json() == {"stored": True, "known_item": False}

    run(make_service(model), body, front_end)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"user": "1", "k": 0}, "k"),
        ({"user": "1", "k": 51}, "k"),
        ({"user": "1", "k": "many"}, "k"),
        ({"user": "1", "colour": "red"}, "colour"),
        ({"user": "1", "recent_items": "abc"}, "recent_items"),
        ({"user": ""}, "user"),
    ],
)
def test_bad_requests_get_422_with_the_field(model: NetServingModel, front_end: str, payload: dict[str, Any],
                                             where: str) -> None:
    async def body(c: Client) -> None:
        r = await c.post("/v1/recommend", json=payload)
        assert r.status_code == 422
        assert any(where in err["loc"] for err in r.json()["detail"]), r.text

    run(make_service(model), body, front_end)


def test_malformed_json_and_oversized_bodies(model: NetServingModel, front_end: str) -> None:
    async def body(c: Client) -> None:
        r = await c.post("/v1/recommend", content=b'{"user": ', headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"]
        r = await c.post("/v1/events", content=b"[1, 2", headers={"content-type": "application/json"})
        assert r.status_code == 422
        big = b'{"user": "1", "exclude": [' + b'"x",' * 300 + b'"y"]}'
        r = await c.post("/v1/recommend", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "1024" in r.json()["detail"]

        async def stream() -> Any:  # no content-length: the limit applies while reading
            for _ in range(20):
                yield b" " * 100

        r = await c.post("/v1/events", content=stream(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = await c.post("/v1/events", json={"user": "u", "item": "i", "kind": "like"})
        assert r.status_code == 422

    run(make_service(model, max_body_bytes=1024), body, front_end)


def test_similar(model: NetServingModel) -> None:
    async def body(c: Client) -> None:
        r = await c.get("/v1/similar", params={"item": "10", "k": 4})
        assert r.status_code == 200
        data = r.json()
        assert data["item"] == "10" and len(data["items"]) == 4
        assert data["items"][0]["item"] == model.similar("10", 1).items[0]
        assert (await c.get("/v1/similar", params={"item": "nope"})).status_code == 404
        assert (await c.get("/v1/similar", params={"item": "10", "k": 0})).status_code == 422
        assert (await c.get("/v1/similar")).status_code == 422

    run(make_service(model), body)


def test_ops_endpoints_and_metrics(model: NetServingModel) -> None:
    async def body(c: Client) -> None:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        ready = (await c.get("/readyz")).json()
        assert ready["status"] == "ready" and ready["model_version"] == model.version
        for i in range(5):
            await c.post("/v1/recommend", json={"user": str(i)})
        await c.post("/v1/recommend", json={"user": "1", "k": 0})
        text = (await c.get("/metrics")).text
        for stage in ("features", "retrieval", "ranking", "total"):
            assert f'turborec_stage_latency_seconds_count{{stage="{stage}"}}' in text
        assert 'turborec_stage_latency_seconds_count{stage="total"} 5.0' in text
        assert 'turborec_requests_total{endpoint="recommend",status="200"} 5.0' in text
        assert 'turborec_requests_total{endpoint="recommend",status="422"} 1.0' in text
        assert "turborec_batch_size_count" in text and "turborec_queue_depth" in text and "turborec_tier 0.0" in text
        assert f'turborec_model_info{{version="{model.version}"}} 1.0' in text
        names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
        # ours carry the turborec_ prefix; process_* are prometheus_client's standard process metrics
        assert names and all(n.startswith(("turborec_", "process_")) for n in names)
        assert "process_resident_memory_bytes" in names
        docs = await c.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()

    run(make_service(model), body)


def test_openapi_documents_every_endpoint_and_limit(model: NetServingModel) -> None:
    schema = openapi_schema(create_app(make_service(model)))
    assert {"/v1/recommend", "/v1/similar", "/v1/events", "/healthz", "/readyz", "/metrics", "/admin/reload"} <= set(
        schema["paths"]
    )
    req = next(v for k, v in schema["components"]["schemas"].items() if k.startswith("RecommendRequest"))
    assert req["properties"]["k"]["maximum"] == 50 and req["additionalProperties"] is False


def test_overload_answers_503_with_retry_after_fast(model: NetServingModel, front_end: str) -> None:
    # a 0.05 ms budget no model call can meet: admission must refuse at once instead of queueing -- all but
    # the request that found the service idle (refusing that one would save no one any time)
    service = make_service(model, slo_p99_ms=0.05, adaptive_tiers=False)

    async def body(c: Client) -> None:
        responses = await asyncio.gather(*(c.post("/v1/recommend", json={"user": str(i)}) for i in range(20)))
        codes = [r.status_code for r in responses]
        assert codes.count(200) >= 1 and codes.count(503) >= 15, codes
        shed = [r for r in responses if r.status_code == 503]
        assert all(r.headers["retry-after"] == "1" for r in shed)
        assert "overloaded" in shed[0].json()["detail"]
        metrics = (await c.get("/metrics")).text
        assert f"turborec_shed_total {float(len(shed))}" in metrics

    run(service, body, front_end)


def test_popular_tier_answers_without_the_model(model: NetServingModel) -> None:
    service = make_service(model, adaptive_tiers=False)
    service.slo.force(0.0, Tier.POPULAR)

    async def body(c: Client) -> None:
        r = await c.post("/v1/recommend", json={"user": "3", "k": 5})
        assert r.status_code == 200 and r.json()["tier"] == "popular" and r.headers["x-turborec-tier"] == "popular"
        assert "turborec_batch_size_count 0.0" in (await c.get("/metrics")).text  # no model call was batched

    run(service, body)


def test_admin_reload(model: NetServingModel, artifact: Path, artifact_b: Path, tmp_path: Path) -> None:
    service = make_service(model, artifact=artifact)
    other_version = load_serving_model(artifact_b).version

    async def body(c: Client) -> None:
        assert (await c.post("/admin/reload", json={})).status_code == 401
        wrong = await c.post("/admin/reload", json={}, headers={"authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        auth = {"authorization": f"Bearer {TOKEN}"}
        bad = tmp_path / "broken"
        bad.mkdir()
        (bad / "manifest.json").write_text("{not json")
        r = await c.post("/admin/reload", json={"artifact": str(bad)}, headers=auth)
        assert r.status_code == 409 and "corrupted manifest" in r.json()["detail"]
        assert (await c.post("/v1/recommend", json={"user": "1"})).json()["model_version"] == model.version
        r = await c.post("/admin/reload", json={"artifact": str(artifact_b)}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {"model_version": other_version, "previous_version": model.version}
        assert (await c.post("/v1/recommend", json={"user": "1"})).json()["model_version"] == other_version
        r = await c.post("/admin/reload", json={"artifact": str(artifact), "extra": 1}, headers=auth)
        assert r.status_code == 422
        r = await c.post("/admin/reload", headers=auth)  # no body: reload the artifact being served
        assert r.status_code == 200 and r.json()["model_version"] == other_version

    run(service, body)


def test_admin_is_disabled_without_a_token(model: NetServingModel, artifact: Path) -> None:
    async def body(c: Client) -> None:
        r = await c.post("/admin/reload", json={}, headers={"authorization": "Bearer anything-at-all"})
        assert r.status_code == 404 and "disabled" in r.json()["detail"]

    run(make_service(model, artifact=artifact, admin_token=None), body)


def test_corrupted_weights_are_refused(model: NetServingModel, artifact_b: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "flipped"
    shutil.copytree(artifact_b, broken)
    weights = broken / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    service = make_service(model)

    async def body(c: Client) -> None:
        r = await c.post("/admin/reload", json={"artifact": str(broken)}, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 409 and "checksum mismatch" in r.json()["detail"]
        assert service.model is model

    run(service, body)
