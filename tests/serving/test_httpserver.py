"""The lean httptools server over real sockets: keep-alive, pipelining, limits, the ASGI bridge, shutdown."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from turborec.serving.loading import load_serving_model
from turborec.serving.model import Query
from turborec.serving.net_model import NetServingModel
from turborec.serving.server import RunningServer, background_server
from turborec.serving.service import RecommendService
from turborec.serving.settings import ServeSettings
from turborec.serving.stores import MemoryStore
from turborec.serving.tiers import Tier

TOKEN = "lean-server-token"


@pytest.fixture
def server(model: NetServingModel, artifact: Path) -> Iterator[RunningServer]:
    settings = ServeSettings(artifact=artifact, admin_token=TOKEN, slo_p99_ms=5000.0, max_body_bytes=2048,
                             max_k=50, http="lean")
    service = RecommendService(model, MemoryStore(), settings, loader=load_serving_model)
    service.warm_up()
    with background_server(service) as srv:
        yield srv


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    del buf[: len(head) + 4 + length]
    return int(lines[0].split()[1]), headers, rest[:length]


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra}\r\n").encode() + body


def test_keep_alive_and_pipelined_requests_answer_in_order(server: RunningServer, model: NetServingModel) -> None:
    sock = connect(server.url)
    buf = bytearray()
    users = ["1", "2", "3", "4", "5"]
    sock.sendall(b"".join(post("/v1/recommend", json.dumps({"user": u, "k": 3}).encode()) for u in users))
    for u in users:
        status, headers, body = read_response(sock, buf)
        assert status == 200 and headers["x-turborec-tier"] == "full"
        assert [it["item"] for it in json.loads(body)["items"]] == model.recommend_batch(
            [Query(u, (), 3)], Tier.FULL).results[0].items
    sock.sendall(post("/v1/events", b'{"user": "1", "item": "7"}'))
    assert read_response(sock, buf)[:1] == (200,)
    sock.close()


def test_limits_and_malformed_requests(server: RunningServer) -> None:
    sock = connect(server.url)
    buf = bytearray()
    sock.sendall(post("/v1/recommend", b"[" + b"1," * 1500 + b"1]"))
    status, _, body = read_response(sock, buf)
    assert status == 413 and b"2048" in body
    sock.sendall(post("/v1/recommend", b'{"user": "1", "k": 0}'))  # the connection is still usable
    status, _, body = read_response(sock, buf)
    assert status == 422 and json.loads(body)["detail"][0]["loc"] == ["body", "k"]
    sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 20000 + b"\r\n\r\n")
    status, headers, _ = read_response(sock, buf)
    assert status == 431 and headers["connection"] == "close"
    sock.close()
    sock = connect(server.url)
    sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
    status, headers, _ = read_response(sock, bytearray())
    assert status == 400 and headers["connection"] == "close"
    assert sock.recv(10) == b""  # closed
    sock.close()


def test_connection_close_is_honoured(server: RunningServer) -> None:
    sock = connect(server.url)
    sock.sendall(post("/v1/recommend", b'{"user": "1"}', extra="connection: close\r\n"))
    status, headers, _ = read_response(sock, bytearray())
    assert status == 200 and headers["connection"] == "close"
    assert sock.recv(10) == b""
    sock.close()


def test_other_paths_go_through_the_asgi_app(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        sim = c.get("/v1/similar", params={"item": "10", "k": 3})
        assert sim.status_code == 200 and len(sim.json()["items"]) == 3
        assert c.get("/v1/similar", params={"item": "no such"}).status_code == 404
        assert c.get("/nowhere").status_code == 404
        c.post("/v1/recommend", json={"user": "1"})
        metrics = c.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'turborec_requests_total{endpoint="recommend",status="200"} 1.0' in metrics.text
        assert "openapi" in c.get("/openapi.json").json()
        assert c.post("/admin/reload", json={}).status_code == 401
        r = c.post("/admin/reload", json={}, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["model_version"].startswith("two-tower-")
