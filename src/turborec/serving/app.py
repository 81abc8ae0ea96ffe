"""The HTTP layer: FastAPI (schema, docs, ops and admin routes) plus the hot endpoints answered from ASGI.

``create_app`` returns an ASGI app. The three hot endpoints, ``POST /v1/recommend``,
``/v1/score`` and ``/v1/events``, are answered by :class:`LeanRouter` straight from
ASGI through ``serving/routes.py``'s ``HotRoutes`` -- the same code the lean httptools
server (``httpserver.py``) calls -- so each is written once. FastAPI declares them for
the OpenAPI schema only; every other path is FastAPI's. (A third front end that
answered them through FastAPI's own routes cost 10-25% more server CPU per request
than the lean server and was removed: benchmarks/front_ends.py, docs/benchmarks.md.)

Unknown user ids are served as anonymous users: their live history (events
posted under that id) and ``recent_items`` drive the user tower, and the
response says ``"user_known": false``. Nothing answers 404 for a user.
"""

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from turborec.errors import TurborecError, UnknownIdError
from turborec.serving.docs import add_offline_docs
from turborec.serving.metrics import CONTENT_TYPE
from turborec.serving.routes import (
    Headers,
    HotRoutes,
    Respond,
    endpoint_label,
    header,
    too_large,
)
from turborec.serving.schemas import (
    ErrorResponse,
    EventResponse,
    RecommendResponse,
    ReloadRequest,
    ReloadResponse,
    ScoreResponse,
    SimilarResponse,
    build_schemas,
)
from turborec.serving.service import RecommendService, ReloadBusy, ReloadRefused

log = logging.getLogger("turborec.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = b"application/json"


class TooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


# ------------------------------------------------------------ ASGI helpers
async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    hdrs = [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
    if headers:
        hdrs += headers
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether declared or streamed (``count(path, 413)``
    is told of each, so refusals show in ``turborec_requests_total`` like every other answer)."""

    def __init__(self, app: ASGIApp, limit: int, count: Callable[[str, int], None] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.count = count

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if self.count is not None:
            self.count(scope.get("path", ""), 413)
        await send_bytes(send, 413, too_large(self.limit))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, send)
            return
        seen = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            # past the limit: answer 413 ourselves and tell the app the client left, so whatever
            # the app makes of it (FastAPI would say 400) is dropped below
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                refused = True
                if not started:
                    await self._refuse(scope, send)
                return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, tracking_send)


class LeanRouter:
    """Answers the hot endpoints from ASGI directly; everything else goes to ``fallback`` (FastAPI)."""

    def __init__(self, service: RecommendService, fallback: ASGIApp) -> None:
        self.service = service
        self.fallback = fallback
        self.routes = HotRoutes(service)
        self.limit = service.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == "/v1/recommend":
                await self._handle(scope, receive, send, "recommend", self.routes.recommend)
                return
            if path == "/v1/events":
                auth = header(scope.get("headers", ()), b"authorization")
                await self._handle(scope, receive, send, "events",
                                   lambda body, respond: self.routes.event(body, respond, auth))
                return
            if path == "/v1/score":
                await self._handle(scope, receive, send, "score", self.routes.score)
                return
        await self.fallback(scope, receive, send)

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, endpoint: str, handler: Callable[[bytes, Respond], None]
    ) -> None:
        try:
            declared = declared_length(scope)
            if declared is not None and declared > self.limit:
                raise TooLarge
            body = await read_body(receive, self.limit)
        except ClientGone:  # the client left, or BodyLimit already answered 413
            return
        except TooLarge:
            self.routes.count(endpoint, 413)
            await send_bytes(send, 413, too_large(self.limit))
            return
        done: asyncio.Future[tuple[int, bytes, Headers]] = asyncio.get_running_loop().create_future()
        handler(body, lambda status, payload, headers: done.set_result((status, payload, headers)))
        status, payload, headers = await done
        await send_bytes(send, status, payload, headers)


# -------------------------------------------------------------------- FastAPI
def create_app(service: RecommendService) -> ASGIApp:
    """The service's ASGI app (lifespan starts and stops ``service``)."""
    settings = service.settings
    schemas = build_schemas(settings)
    RecommendRequest = schemas.recommend
    EventRequest = schemas.event
    ScoreRequest = schemas.score

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="turborec", version=service.model.version, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Real-time recommendations within a p99 latency budget. Unknown user ids follow turborec's "
        "cold-start rule unknown=\"popular\" (as in Python and the CLI): never refused, they are served as "
        "anonymous users from their live history (events) and recent_items; no endpoint answers 404 for a user.",
    )
    add_offline_docs(app)  # /docs and /redoc from packaged assets, no CDN
    errors: dict[int | str, dict[str, Any]] = {
        413: {"model": ErrorResponse, "description": "body too large"},
        503: {"model": ErrorResponse, "description": "overloaded: retry after the Retry-After header"},
    }

    @app.exception_handler(UnknownIdError)
    async def _unknown(_: Request, exc: UnknownIdError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ReloadRefused)
    @app.exception_handler(ReloadBusy)
    async def _reload_failed(_: Request, exc: TurborecError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(TurborecError)
    async def _user_error(_: Request, exc: TurborecError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        detail = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    # POST /v1/recommend, /v1/score and /v1/events are answered by HotRoutes (LeanRouter below, or the lean
    # server) before FastAPI sees them: these three declarations give the OpenAPI schema their request and
    # response models and errors; their bodies never run
    @app.post("/v1/recommend", response_model=RecommendResponse, responses=errors, tags=["recommend"])
    async def recommend(body: RecommendRequest) -> Response:  # type: ignore[valid-type]
        raise _answered_by_hot_routes()

    @app.post("/v1/score", response_model=ScoreResponse, responses=errors, tags=["score"],
              summary="click probabilities of rows of raw feature values (CTR rankers)")
    async def score(body: ScoreRequest) -> Response:  # type: ignore[valid-type]
        raise _answered_by_hot_routes()

    @app.get("/v1/similar", response_model=SimilarResponse, responses={404: {"model": ErrorResponse}},
             tags=["recommend"])
    async def similar(
        item: str = Query(..., min_length=1, max_length=settings.max_id_length), k: int = Query(10, ge=1, le=settings.max_k)
    ) -> Response:
        ranked, version = service.similar(item, k)
        items = [{"item": i, "score": s} for i, s in zip(ranked.items, ranked.scores.tolist())]
        return Response(orjson.dumps({"item": item, "items": items, "model_version": version}),
                        media_type="application/json")

    event_errors = {**errors, 401: {"model": ErrorResponse, "description": "events token missing or wrong "
                                    "(only when the service has one: TURBOREC_SERVE_EVENTS_TOKEN)"}}

    @app.post("/v1/events", response_model=EventResponse, responses=event_errors, tags=["events"])
    async def events(body: EventRequest) -> Response:  # type: ignore[valid-type]
        raise _answered_by_hot_routes()

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"model": ErrorResponse}})
    async def readyz() -> Response:
        if not service.ready:
            return JSONResponse({"detail": "not ready"}, status_code=503)
        body: dict[str, Any] = {"status": "ready", "model_version": service.model.version,
                                "tier": service.slo.tier.label}
        warning = service.budget_warning()
        if warning is not None:  # still ready (idle requests are served, late): say why answers will be slow
            body["warning"] = warning
        return JSONResponse(body)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        service.metrics.queue_depth.set(service.driver.queue_depth)
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/admin/reload", response_model=ReloadResponse, tags=["admin"],
              responses={400: {"model": ErrorResponse, "description": "the artifact path is outside the artifacts root"},
                         401: {"model": ErrorResponse, "description": "admin token missing or wrong"},
                         404: {"model": ErrorResponse, "description": "admin endpoints disabled (no token)"},
                         409: {"model": ErrorResponse, "description": "reload refused (the old model keeps serving) "
                                                                     "or another reload in progress"},
                         413: {"model": ErrorResponse, "description": "body too large"}})
    async def reload(request: Request, body: ReloadRequest | None = None) -> Response:
        denied = _check_admin(request, settings.admin_token)
        if denied is not None:
            return denied
        artifact = Path(body.artifact) if body is not None and body.artifact else None
        new, old = await service.reload(artifact)
        return JSONResponse({"model_version": new, "previous_version": old})

    inner: ASGIApp = LeanRouter(service, app)

    def count(path: str, status: int) -> None:
        service.metrics.requests.labels(endpoint=endpoint_label(path), status=str(status)).inc()

    return BodyLimit(inner, settings.max_body_bytes, count)


def _answered_by_hot_routes() -> RuntimeError:
    return RuntimeError("POST /v1/recommend, /v1/score and /v1/events are answered by HotRoutes (LeanRouter)")


def _check_admin(request: Request, token: str | None) -> Response | None:
    if token is None:
        return JSONResponse({"detail": "admin endpoints are disabled: no admin token configured"}, status_code=404)
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        return JSONResponse({"detail": "admin token missing or wrong"}, status_code=401,
                            headers={"www-authenticate": "Bearer"})
    return None


def openapi_schema(app: ASGIApp) -> dict[str, Any]:
    """The OpenAPI document of an app made by :func:`create_app` (through its wrappers)."""
    inner: Any = app
    while not isinstance(inner, FastAPI):
        inner = getattr(inner, "fallback", None) or getattr(inner, "app", None)
        if inner is None:
            raise TypeError("not an app made by create_app")
    return inner.openapi()


__all__ = ["create_app", "openapi_schema"]
