"""A lean HTTP/1.1 server on httptools for the hot endpoints, bridging every other path to the ASGI app.

Why: behind uvicorn, each request costs a task, an ASGI scope and several
awaits before the service sees it -- most of the CPU per request once batching
has made the model cheap, and the reason a saturated server cannot even refuse
load quickly (benchmarks/serving.py compares the paths). Here a request to
``POST /v1/recommend`` or ``POST /v1/events`` goes from the parser callback
straight to :class:`~turborec.serving.routes.HotRoutes`, and its response is
written from the batch future's callback. Everything else (``/v1/similar``,
``/metrics``, ``/docs``, ``/admin/reload``...) is handed to the FastAPI app
through a minimal ASGI bridge, so there is one schema and one set of handlers.

Per connection, requests are answered one at a time in order (pipelined
requests wait their turn); bodies over ``max_body_bytes`` get 413, header blocks
over 16 KiB 431, unparsable requests 400 and a closed connection; idle
keep-alive connections close after ``KEEPALIVE_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

from turborec.serving.routes import Headers, HotRoutes, endpoint_label, header, too_large
from turborec.serving.service import RecommendService

log = logging.getLogger("turborec.serving")

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]
KEEPALIVE_S = 30.0
MAX_HEADER_BYTES = 16 * 1024
MAX_PIPELINED = 16
JSON = b"application/json"


def _status_line(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


STATUS_LINES = {code: _status_line(code) for code in (200, 400, 401, 404, 409, 413, 422, 431, 500, 503)}


def render(status: int, body: bytes, headers: Headers, keep_alive: bool, content_type: bytes = JSON) -> bytes:
    parts = [STATUS_LINES.get(status) or _status_line(status), b"content-type: ", content_type,
             b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n"]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += [b"\r\n", body]
    return b"".join(parts)


@dataclass
class _Request:
    method: bytes
    url: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    error: int = 0  # status to answer without dispatching (413, 431)
    http_version: str = "1.1"
    extra: dict[str, Any] = field(default_factory=dict)


class _Connection(asyncio.Protocol):
    def __init__(self, server: LeanHTTPServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[_Request] = deque()
        self.busy = False
        self.closed = False
        self.keep_alive = True
        self.last_active = time.monotonic()
        self.disconnected = asyncio.Event()
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.error = 0

    # ----------------------------------------------------------- transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.disconnected.set()
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b'{"detail":"protocol upgrades are not supported"}')
        except httptools.HttpParserError:
            self._fail(400, b'{"detail":"malformed HTTP request"}')

    def _fail(self, status: int, body: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(render(status, body, [], keep_alive=False))
            self.transport.close()
        self.closed = True

    # -------------------------------------------------------- parser hooks
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            self.error = 431
        elif not self.error:
            self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            self.error = self.error or 413
            self.body.clear()
        elif not self.error:
            self.body.append(body)

    def on_message_complete(self) -> None:
        req = _Request(self.parser.get_method(), self.url, self.headers, b"".join(self.body),
                       bool(self.parser.should_keep_alive()), self.error, self.parser.get_http_version())
        self.queue.append(req)
        if len(self.queue) > MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
        if not self.busy:
            self._next()

    # ----------------------------------------------------------- dispatch
    def _next(self) -> None:
        if not self.queue or self.closed:
            return
        req = self.queue.popleft()
        if len(self.queue) == MAX_PIPELINED and self.transport is not None:
            self.transport.resume_reading()
        self.busy = True
        self.keep_alive = req.keep_alive and req.error != 431
        path, _, query = req.url.partition(b"?")
        routes = self.server.routes
        if req.error:
            routes.count(endpoint_label(path.decode("latin-1")), req.error)
            if req.error == 413:
                self.respond(413, too_large(self.server.max_body), [])
            else:
                self.respond(req.error, b'{"detail":"request header fields too large"}', [])
            return
        if req.method == b"POST" and path == b"/v1/recommend":
            routes.recommend(req.body, self.respond)
        elif req.method == b"POST" and path == b"/v1/events":
            routes.event(req.body, self.respond, header(req.headers, b"authorization"))
        elif req.method == b"POST" and path == b"/v1/score":
            routes.score(req.body, self.respond)
        else:
            task = asyncio.get_running_loop().create_task(self._asgi(req, path, query))
            self.server.tasks.add(task)
            task.add_done_callback(self.server.tasks.discard)

    def respond(self, status: int, body: bytes, headers: Headers, content_type: bytes = JSON) -> None:
        self.last_active = time.monotonic()
        if self.closed or self.transport is None:
            return
        if self.server.worker_header:
            headers = [*headers, *self.server.worker_header]
        self.transport.write(render(status, body, headers, self.keep_alive, content_type))
        self.busy = False
        if not self.keep_alive:
            self.transport.close()
            self.closed = True
            return
        if self.queue:
            self._next()

    async def _asgi(self, req: _Request, path: bytes, query: bytes) -> None:
        """Run the ASGI app for one request, collecting its response (bodies here are small)."""
        transport = self.transport
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": req.http_version,
            "method": req.method.decode("latin-1"), "scheme": "http", "path": unquote(path.decode("latin-1")),
            "raw_path": path, "query_string": query, "root_path": "", "headers": req.headers,
            "client": transport.get_extra_info("peername") if transport else None,
            "server": transport.get_extra_info("sockname") if transport else None,
        }
        sent_body = False
        status = 500
        out_headers: Headers = []
        chunks: list[bytes] = []
        content_type = JSON

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": req.body, "more_body": False}
            await self.disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    low = bytes(name).lower()
                    if low == b"content-type":
                        content_type = bytes(value)
                    elif low not in (b"content-length", b"transfer-encoding", b"connection"):
                        out_headers.append((low, bytes(value)))
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        try:
            await self.server.app(scope, receive, send)
        except Exception:
            log.exception("error in the ASGI app for %s", scope["path"])
            status, chunks, out_headers, content_type = 500, [b'{"detail":"internal error"}'], [], JSON
        self.respond(status, b"".join(chunks), out_headers, content_type)


class LeanHTTPServer:
    """Serve ``service`` (hot routes) and ``app`` (everything else) on ``host:port``."""

    def __init__(self, service: RecommendService, app: ASGIApp, worker: int | None = None) -> None:
        self.service = service
        # under ``serve --workers``, every response names the worker that wrote it (x-turborec-worker)
        self.worker_header: Headers = [(b"x-turborec-worker", str(worker).encode())] if worker is not None else []
        self.app = app
        self.routes = HotRoutes(service)
        self.max_body = service.settings.max_body_bytes
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        sockets = getattr(self._server, "sockets", None)
        assert sockets
        return int(sockets[0].getsockname()[1])

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        """Listen on ``host:port`` (``reuse_port``: share the port with other workers' sockets)."""
        await self.service.start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=4096,
                                                reuse_address=True, reuse_port=reuse_port or None)
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            horizon = time.monotonic() - KEEPALIVE_S
            for conn in list(self.connections):
                if not conn.busy and not conn.queue and conn.last_active < horizon and conn.transport is not None:
                    conn.transport.close()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace_s``), close, stop the service."""
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace_s
        while any(c.busy or c.queue for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for task in list(self.tasks):
            task.cancel()
        await self.service.stop()
