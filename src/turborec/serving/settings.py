"""Service settings: one frozen dataclass, validated once.

This module and ``turborec.cli`` are the only places allowed to read the
environment (``ServeSettings.from_env``); everything else receives a
``ServeSettings`` value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from turborec._util.options import parse_fields
from turborec.errors import ConfigError

ENV_PREFIX = "TURBOREC_SERVE_"
STORE_KINDS = ("memory", "sqlite", "redis")
EXECUTORS = ("thread", "inline")
HTTP_PATHS = ("lean", "asgi")


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``turborec serve`` can be told.

    Latencies are in milliseconds at this boundary (what an operator types);
    the service converts to seconds inside.
    """

    artifact: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    slo_p99_ms: float = 10.0
    # micro-batching
    max_batch: int = 64
    max_wait_ms: float = 1.0
    # where a batch runs: "thread" (a worker thread: the event loop keeps reading -- and refusing -- requests
    # meanwhile) or "inline" (on the event loop: no GIL hand-offs, so a little more throughput on one core, but
    # under overload requests wait unread behind each batch: benchmarks/serving.py measured 503s at p99 155 ms
    # inline against 2.4 ms with the thread, and admitted p99 59.6 against 17.6 ms on the 1M catalog)
    executor: str = "thread"
    # lean: our httptools server for the hot endpoints (+ FastAPI for the rest); asgi: uvicorn running the same
    # app (hot endpoints answered by the same HotRoutes through app.LeanRouter). benchmarks/front_ends.py: lean
    # costs 4-12% less server CPU per request than asgi; a third, plain-FastAPI-routes path cost 10-25% more
    # than lean and was removed
    http: str = "lean"
    # admission: shed when the expected time to answer exceeds this fraction of the budget
    shed_at: float = 0.8
    # degradation ladder (SLO controller)
    degrade_at: float = 0.8
    recover_at: float = 0.4
    slo_window_s: float = 1.0
    recover_hold_s: float = 0.3
    adaptive_tiers: bool = True
    # requests
    max_k: int = 100
    max_body_bytes: int = 64 * 1024
    max_recent_items: int = 200
    max_exclude: int = 1000
    max_score_rows: int = 256  # rows per POST /v1/score request
    # user state
    store: str = "memory"
    store_path: Path | None = None
    redis_url: str | None = None
    history_len: int = 50
    max_users: int = 1_000_000
    # events into a store that does I/O (sqlite, redis) are written by one thread in batches, off the event
    # loop; past this many waiting events new ones get 503 (0: write each event inline, on the loop)
    max_pending_events: int = 10_000
    # the memory store's footprint bound (least recently active users evicted past it)
    store_max_bytes: int = 256 * 1024 * 1024
    # longest user or item id a request may carry (ids are stored: long ones cost memory)
    max_id_length: int = 128
    # admin: without a token the admin endpoints are disabled
    admin_token: str | None = None
    # POST /v1/events: with a token, only callers that send it may write user state (default: open)
    events_token: str | None = None
    # /admin/reload loads only artifacts under this folder (default: the served artifact's parent folder)
    artifacts_root: Path | None = None
    torch_threads: int = 1
    # serving processes on the port (SO_REUSEPORT; serving/workers.py): one per core to use
    workers: int = 1
    log_level: str = "warning"

    def __post_init__(self) -> None:
        def need(cond: bool, option: str, value: Any, why: str) -> None:
            if not cond:
                raise ConfigError(f"serve option {option}={value!r}: {why}")

        need(0 <= self.port <= 65535, "port", self.port, "must be 0..65535")
        need(self.slo_p99_ms > 0, "slo_p99_ms", self.slo_p99_ms, "must be > 0")
        need(self.max_batch >= 1, "max_batch", self.max_batch, "must be >= 1")
        need(self.max_wait_ms >= 0, "max_wait_ms", self.max_wait_ms, "must be >= 0")
        need(self.executor in EXECUTORS, "executor", self.executor, f"must be one of {', '.join(EXECUTORS)}")
        need(self.http in HTTP_PATHS, "http", self.http, f"must be one of {', '.join(HTTP_PATHS)}")
        need(0 < self.shed_at <= 10, "shed_at", self.shed_at, "must be in (0, 10]")
        need(0 < self.recover_at < self.degrade_at, "recover_at", self.recover_at, "must be in (0, degrade_at)")
        need(self.slo_window_s > 0, "slo_window_s", self.slo_window_s, "must be > 0")
        need(self.recover_hold_s >= 0, "recover_hold_s", self.recover_hold_s, "must be >= 0")
        need(1 <= self.max_k <= 10_000, "max_k", self.max_k, "must be 1..10000")
        need(self.max_body_bytes >= 256, "max_body_bytes", self.max_body_bytes, "must be >= 256")
        need(self.max_recent_items >= 0, "max_recent_items", self.max_recent_items, "must be >= 0")
        need(self.max_exclude >= 0, "max_exclude", self.max_exclude, "must be >= 0")
        need(self.max_score_rows >= 1, "max_score_rows", self.max_score_rows, "must be >= 1")
        need(self.store in STORE_KINDS, "store", self.store, f"must be one of {', '.join(STORE_KINDS)}")
        need(self.store != "sqlite" or self.store_path is not None, "store_path", self.store_path,
             "the sqlite store needs a file path")
        need(self.store != "redis" or bool(self.redis_url), "redis_url", self.redis_url,
             "the redis store needs a URL such as redis://127.0.0.1:6379/0")
        need(self.history_len >= 1, "history_len", self.history_len, "must be >= 1")
        need(self.max_users >= 1, "max_users", self.max_users, "must be >= 1")
        need(self.max_pending_events >= 0, "max_pending_events", self.max_pending_events, "must be >= 0")
        need(self.store_max_bytes >= 64 * 1024, "store_max_bytes", self.store_max_bytes, "must be >= 65536")
        need(1 <= self.max_id_length <= 4096, "max_id_length", self.max_id_length, "must be 1..4096")
        need(self.events_token is None or len(self.events_token) >= 8, "events_token", "***",
             "must be at least 8 characters")
        need(self.admin_token is None or len(self.admin_token) >= 8, "admin_token", "***",
             "must be at least 8 characters")
        need(self.torch_threads >= 1, "torch_threads", self.torch_threads, "must be >= 1")
        need(1 <= self.workers <= 256, "workers", self.workers, "must be 1..256")

    @property
    def slo_p99_s(self) -> float:
        return self.slo_p99_ms / 1000.0

    @property
    def reload_root(self) -> Path | None:
        """The folder reloads must stay inside: ``artifacts_root``, else the served artifact's parent."""
        if self.artifacts_root is not None:
            return self.artifacts_root
        return self.artifact.parent if self.artifact is not None else None

    @property
    def admin_enabled(self) -> bool:
        return self.admin_token is not None

    def with_(self, **changes: Any) -> ServeSettings:
        return replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ServeSettings:
        """Build from option names to values (strings are converted to each field's type)."""
        return cls(**parse_fields(cls, values, what="serve option"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServeSettings:
        """Settings from ``TURBOREC_SERVE_<OPTION>`` variables, then ``overrides`` (e.g. CLI flags) on top.

        ``TURBOREC_SERVE_ADMIN_TOKEN`` is the way to give the admin token without
        putting it on a command line.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                values[f.name] = env[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values)
