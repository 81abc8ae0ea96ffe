"""The hot endpoints as plain callbacks: bytes in, (status, body, headers) out through ``respond``.

Both HTTP front ends use them -- the ASGI ``LeanRouter`` (under uvicorn) and the
httptools server in ``httpserver.py`` -- so validation, errors and rendering are
one code path. A recommendation that waits for a batch answers from the batch
future's done-callback: no task per request.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from turborec.errors import TurborecError
from turborec.serving.events import EventsBacklogged
from turborec.serving.schemas import build_schemas
from turborec.serving.service import Answer, Overloaded, RecommendService, Scored

log = logging.getLogger("turborec.serving")

Headers = list[tuple[bytes, bytes]]
Respond = Callable[[int, bytes, Headers], None]
TIER_HEADER = b"x-turborec-tier"


def answer_body(answer: Answer) -> bytes:
    ranked = answer.ranked
    return orjson.dumps({
        "items": [{"item": i, "score": s} for i, s in zip(ranked.items, ranked.scores.tolist())],
        "model_version": answer.version,
        "tier": answer.tier.label,
        "user_known": ranked.user_known,
    })


def scored_body(scored: Scored) -> bytes:
    return orjson.dumps({"probabilities": scored.probabilities.tolist(), "model_version": scored.version,
                         "tier": scored.tier.label})  # fmt: skip


def overloaded_response(exc: Overloaded | EventsBacklogged) -> tuple[bytes, Headers]:
    body = orjson.dumps({"detail": str(exc), "retry_after_s": exc.retry_after_s})
    return body, [(b"retry-after", str(max(1, round(exc.retry_after_s))).encode())]


def validation_detail(exc: ValidationError, where: str = "body") -> list[dict[str, Any]]:
    """Pydantic errors in FastAPI's 422 layout (``loc`` starts with where the value was)."""
    return [{"type": e["type"], "loc": [where, *e["loc"]], "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)]


HOT_ENDPOINTS = {"/v1/recommend": "recommend", "/v1/events": "events"}


def endpoint_label(path: str) -> str:
    """The ``endpoint`` label of ``turborec_requests_total`` for a request path (a bounded set of values)."""
    return HOT_ENDPOINTS.get(path, "other")


def header(headers: Any, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case) in ASGI-style ``[(name, value), ...]`` pairs."""
    for key, value in headers:
        if key == name:
            return bytes(value)
    return None


def too_large(limit: int) -> bytes:
    return orjson.dumps({"detail": f"request body over {limit} bytes"})


class HotRoutes:
    """``POST /v1/recommend``, ``POST /v1/score`` and ``POST /v1/events`` for a service."""

    def __init__(self, service: RecommendService) -> None:
        self.service = service
        schemas = build_schemas(service.settings)
        self._recommend_model = schemas.recommend
        self._event_model = schemas.event
        token = service.settings.events_token
        self._events_token = token.encode() if token is not None else None
        self._score_model = schemas.score
        self._counters: dict[tuple[str, int], Any] = {}

    def count(self, endpoint: str, status: int) -> None:
        key = (endpoint, status)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self.service.metrics.requests.labels(endpoint=endpoint, status=str(status))
        child.inc()

    def recommend(self, body: bytes, respond: Respond) -> None:
        service = self.service
        try:
            req: Any = self._recommend_model.model_validate_json(body)
            t0, pending = service.begin(req.user, req.recent_items, req.k, req.exclude, req.exclude_seen)
        except Exception as exc:
            self._fail("recommend", exc, respond)
            return
        if not isinstance(pending, asyncio.Future):
            self._answer(t0, pending, respond)
            return

        def done(fut: asyncio.Future[Answer]) -> None:
            if fut.cancelled():
                return
            error = fut.exception()
            if error is not None:
                self._fail("recommend", error, respond)
            else:
                self._answer(t0, fut.result(), respond)

        pending.add_done_callback(done)

    def score(self, body: bytes, respond: Respond) -> None:
        """Rows of raw feature values -> click probabilities (a CTR ranker), through the same batches."""
        service = self.service
        try:
            req: Any = self._score_model.model_validate_json(body)
            t0, pending = service.begin_score(req.rows)
        except Exception as exc:
            self._fail("score", exc, respond)
            return

        def send(scored: Scored) -> None:
            service.complete(t0, scored)
            self.count("score", 200)
            respond(200, scored_body(scored), [(TIER_HEADER, scored.tier.label.encode())])

        if not isinstance(pending, asyncio.Future):
            send(pending)
            return

        def done(fut: asyncio.Future[Scored]) -> None:
            if fut.cancelled():
                return
            error = fut.exception()
            if error is not None:
                self._fail("score", error, respond)
            else:
                send(fut.result())

        pending.add_done_callback(done)

    def _answer(self, t0: float, answer: Answer, respond: Respond) -> None:
        self.service.complete(t0, answer)
        self.count("recommend", 200)
        respond(200, answer_body(answer), [(TIER_HEADER, answer.tier.label.encode())])

    def events_allowed(self, authorization: bytes | None) -> bool:
        """Without an events token anyone may post events; with one, ``Authorization: Bearer <token>``."""
        if self._events_token is None:
            return True
        scheme, _, value = (authorization or b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self._events_token)

    def event(self, body: bytes, respond: Respond, authorization: bytes | None = None) -> None:
        if not self.events_allowed(authorization):
            self.count("events", 401)
            respond(401, b'{"detail":"events token missing or wrong"}', [(b"www-authenticate", b"Bearer")])
            return
        try:
            ev: Any = self._event_model.model_validate_json(body)
            known = self.service.record_event(ev.user, ev.item, ev.kind, ev.ts)
        except Exception as exc:
            self._fail("events", exc, respond)
            return
        if not isinstance(known, asyncio.Future):
            self._stored(known, respond)
            return

        def done(fut: asyncio.Future[bool]) -> None:
            if fut.cancelled():
                return
            error = fut.exception()
            if error is not None:
                self._fail("events", error, respond)
            else:
                self._stored(fut.result(), respond)

        known.add_done_callback(done)

    def _stored(self, known: bool, respond: Respond) -> None:
        self.count("events", 200)
        respond(200, b'{"stored":true,"known_item":true}' if known else b'{"stored":true,"known_item":false}', [])

    def _fail(self, endpoint: str, exc: BaseException, respond: Respond) -> None:
        headers: Headers = []
        if isinstance(exc, ValidationError):
            status, body = 422, orjson.dumps({"detail": validation_detail(exc)})
        elif isinstance(exc, (Overloaded, EventsBacklogged)):
            status = 503
            body, headers = overloaded_response(exc)
        elif isinstance(exc, TurborecError):
            status, body = 400, orjson.dumps({"detail": str(exc)})
        else:
            log.error("error serving %s", endpoint, exc_info=exc)
            self.service.metrics.errors.labels(kind="internal").inc()
            status, body = 500, orjson.dumps({"detail": "internal error"})
        self.count(endpoint, status)
        respond(status, body, headers)
