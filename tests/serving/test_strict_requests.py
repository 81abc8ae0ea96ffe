"""Strict request types (issue 15.8): no coercion of booleans, strings or floats into k and flags; event
times finite and within a sane window; 413 and 431 counted in turborec_requests_total; /admin/reload's 400
documented."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.serving.test_app import Client, make_service, run
from turborec.serving.app import create_app, openapi_schema
from turborec.serving.net_model import NetServingModel
from turborec.serving.server import background_server


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"user": "1", "k": true}', "k"),
        (b'{"user": "1", "k": "10"}', "k"),
        (b'{"user": "1", "k": 10.5}', "k"),
        (b'{"user": "1", "exclude_seen": "no"}', "exclude_seen"),
        (b'{"user": "1", "exclude_seen": 0}', "exclude_seen"),
        (b'{"user": true}', "user"),
    ],
)
def test_recommend_types_are_strict(model: NetServingModel, front_end: str, raw: bytes, where: str) -> None:
    async def body(c: Client) -> None:
        r = await c.post("/v1/recommend", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert any(where in err["loc"] for err in r.json()["detail"]), r.text

    run(make_service(model), body, front_end)


@pytest.mark.parametrize("ts", [b"1e12", b"Infinity", b"-Infinity", b"NaN", b"1e309", b"true", b'"1700000000"',
                                b"-5", b"12345"])
def test_event_times_must_be_finite_and_sane(model: NetServingModel, front_end: str, ts: bytes) -> None:
    async def body(c: Client) -> None:
        raw = b'{"user": "1", "item": "2", "ts": ' + ts + b"}"
        r = await c.post("/v1/events", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert any("ts" in err["loc"] for err in r.json()["detail"]), r.text

    run(make_service(model), body, front_end)


def test_good_values_still_pass(model: NetServingModel, front_end: str) -> None:
    async def body(c: Client) -> None:
        r = await c.post("/v1/recommend", json={"user": 1, "k": 3, "exclude_seen": False})
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        for ts in (time.time(), int(time.time()) - 86_400 * 365, None):
            r = await c.post("/v1/events", json={"user": "1", "item": "2", "ts": ts})
            assert r.status_code == 200, r.text

    run(make_service(model), body, front_end)


def test_openapi_documents_the_reload_400(model: NetServingModel) -> None:
    schema = openapi_schema(create_app(make_service(model)))
    assert "400" in schema["paths"]["/admin/reload"]["post"]["responses"]


def _metric(text: str, endpoint: str, status: int) -> float:
    for line in text.splitlines():
        if line.startswith("turborec_requests_total{") and f'endpoint="{endpoint}"' in line and f'status="{status}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_413_is_counted_on_every_front_end(model: NetServingModel, front_end: str) -> None:
    async def body(c: Client) -> None:
        big = b'{"user": "' + b"x" * 70_000 + b'"}'
        for path in ("/v1/recommend", "/admin/reload"):
            r = await c.post(path, content=big, headers={"content-type": "application/json"})
            assert r.status_code == 413
        text = (await c.get("/metrics")).text
        assert _metric(text, "recommend", 413) == 1.0 and _metric(text, "other", 413) == 1.0, text

    run(make_service(model), body, front_end)


def test_413_and_431_are_counted_by_the_lean_server(model: NetServingModel) -> None:
    service = make_service(model)
    with background_server(service, http="lean") as srv:
        host, port = srv.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"y" * 20_000 + b"\r\n\r\n")
            assert b" 431 " in s.recv(4096).split(b"\r\n", 1)[0] + b" "
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            r = c.post("/v1/events", content=b'{"user": "' + b"x" * 70_000 + b'"}',
                       headers={"content-type": "application/json"})
            assert r.status_code == 413
            text = c.get("/metrics").text
    assert _metric(text, "other", 431) == 1.0 and _metric(text, "events", 413) == 1.0, text
