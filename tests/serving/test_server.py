"""The service on a real uvicorn server over loopback: events, hot reload under load, shutdown."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from turborec.bench.loadgen import LoadSpec, RequestTemplate, run_load
from turborec.serving.loading import load_serving_model
from turborec.serving.server import background_server, build_service
from turborec.serving.settings import ServeSettings

TOKEN = "reload-test-token"


def settings(artifact: Path, **options: object) -> ServeSettings:
    # generous budget: the test checks that nothing fails, not speed (a shared CI box is noisy)
    return ServeSettings(artifact=artifact, admin_token=TOKEN, slo_p99_ms=5000.0,  # type: ignore[arg-type]
                         artifacts_root=Path(tempfile.gettempdir()), **options)


@pytest.fixture(params=["lean", "asgi"])
def http(request: pytest.FixtureRequest) -> str:
    """Both front ends: our httptools server and uvicorn (with the ASGI fast path)."""
    return str(request.param)


def test_event_over_http_changes_the_next_response(artifact: Path, http: str) -> None:
    service = build_service(settings(artifact, http=http))
    with background_server(service) as srv, httpx.Client(base_url=srv.url, timeout=10) as c:
        assert srv.url.startswith("http://127.0.0.1:")
        before = c.post("/v1/recommend", json={"user": "0", "k": 10}).json()
        for item in ("250", "251", "252", "253", "254"):
            assert c.post("/v1/events", json={"user": "0", "item": item, "kind": "view"}).status_code == 200
        after = c.post("/v1/recommend", json={"user": "0", "k": 10}).json()
        assert after["items"] != before["items"]
        assert not {"250", "251", "252", "253", "254"} & {it["item"] for it in after["items"]}


def test_hot_reload_under_load_fails_no_request(artifact: Path, artifact_b: Path, http: str) -> None:
    service = build_service(settings(artifact, http=http))
    new_version = load_serving_model(artifact_b).version
    bodies = tuple(RequestTemplate("POST", "/v1/recommend", f'{{"user": "{u}", "k": 10}}'.encode()) for u in range(50))
    with background_server(service) as srv:
        reloaded: dict[str, object] = {}

        def reload_mid_load() -> None:
            time.sleep(0.8)
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                r = c.post("/admin/reload", json={"artifact": str(artifact_b)},
                           headers={"authorization": f"Bearer {TOKEN}"})
                reloaded["status"], reloaded["body"] = r.status_code, r.json()

        thread = threading.Thread(target=reload_mid_load)
        thread.start()
        result = run_load(LoadSpec(url=srv.url, rate=150, duration_s=2.5, requests=bodies, connections=32,
                                   timeout_s=10))
        thread.join(30)
        assert reloaded["status"] == 200, reloaded
        assert len(result.status) > 250
        assert np.all(result.status == 200), np.unique(result.status, return_counts=True)
        with httpx.Client(base_url=srv.url) as c:
            assert c.post("/v1/recommend", json={"user": "1"}).json()["model_version"] == new_version


def test_shutdown_answers_queued_requests(artifact: Path, http: str) -> None:
    service = build_service(settings(artifact, http=http))
    with background_server(service) as srv:
        result = run_load(LoadSpec(url=srv.url, rate=200, duration_s=0.5, connections=16,
                                   requests=(RequestTemplate("POST", "/v1/recommend", b'{"user": "2"}'),)))
        assert np.all(result.status == 200)
        assert service.ready
    assert not service.ready  # lifespan stopped it
