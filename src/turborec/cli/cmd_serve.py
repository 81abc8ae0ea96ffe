"""Serve a saved model over HTTP with micro-batching, live events, metrics and SLO-holding degradation.

Binds 127.0.0.1 unless --host says otherwise. Endpoints: POST /v1/recommend (POST /v1/score for a CTR ranker),
GET /v1/similar, POST /v1/events, /healthz, /readyz, /metrics (Prometheus),
/docs (OpenAPI), POST /admin/reload (needs TURBOREC_SERVE_ADMIN_TOKEN; disabled
without it). Every option can also come from TURBOREC_SERVE_<OPTION> variables.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from turborec.cli.common import add_deprecated_alias, positive_int

if TYPE_CHECKING:  # the CLI imports its heavy parts lazily
    from turborec.serving.settings import ServeSettings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="ARTIFACT", help="artifact written by 'turborec train' / 'compress' / 'tune --out' (that folder itself)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--slo-p99-ms", type=float, default=None, help="p99 latency budget the service holds (default 10)")
    p.add_argument("--batch-size", dest="max_batch", type=positive_int, default=None,
                   help="largest micro-batch the service runs (default 64)")
    add_deprecated_alias(p, "--max-batch", "--batch-size", "max_batch", type=positive_int)
    p.add_argument("--max-wait-ms", type=float, default=None, help="longest a request waits for a batch (default 1)")
    p.add_argument("--http", choices=("lean", "asgi"), default=None,
                   help="HTTP front end: lean (default: httptools on the event loop, least CPU per request) or "
                        "asgi (the same app under uvicorn)")
    p.add_argument("--store", choices=("memory", "sqlite", "redis"), default=None, help="user-state store")
    p.add_argument("--store-path", default=None, help="SQLite file for --store sqlite")
    p.add_argument("--redis-url", default=None, help="redis://127.0.0.1:6379/0 for --store redis")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="serving processes on the one port (default 1; one per core to use). They share the "
                        "user-state store (memory becomes a temporary SQLite file) and /metrics")
    p.add_argument("--artifacts-root", default=None, metavar="DIR",
                   help="POST /admin/reload loads only artifacts inside DIR (default: ARTIFACT's parent folder)")
    p.add_argument("--no-adaptive-tiers", action="store_true", help="never degrade (always the full tier)")
    p.add_argument("--ray", action="store_true", help="deploy on Ray Serve (needs turborec[ray])")
    p.add_argument("--replicas", type=positive_int, default=1, help="Ray Serve replicas (with --ray)")
    p.add_argument("--autoscale", action="store_true", help="with --ray: autoscale on ongoing requests up to 4 replicas")


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """The service's settings: the flags, over TURBOREC_SERVE_* variables, over what 'turborec tune' recorded.

    Verifies the artifact and refuses a kind the service cannot serve before anything binds a port."""
    import os
    from pathlib import Path

    from turborec._util.artifact import load_artifact
    from turborec.loading import refusal
    from turborec.serving.loading import servable_kinds
    from turborec.serving.settings import ENV_PREFIX, ServeSettings

    art = load_artifact(args.artifact)  # a bad artifact is a one-line error
    if art.kind not in servable_kinds():
        raise refusal(args.artifact, art.kind, "serve", servable_kinds())
    # settings recorded by 'turborec tune' are defaults, below the environment and the flags
    tuned = art.config.get("serving") or {}
    keys = ("slo_p99_ms", "max_batch", "max_wait_ms", "executor", "shed_at")
    environ = {**{ENV_PREFIX + k.upper(): str(tuned[k]) for k in keys if k in tuned}, **os.environ}
    overrides = {
        "artifact": Path(args.artifact),
        "host": args.host,
        "port": args.port,
        "slo_p99_ms": args.slo_p99_ms,
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "http": args.http,
        "store": args.store,
        "store_path": args.store_path,
        "redis_url": args.redis_url,
        "adaptive_tiers": False if args.no_adaptive_tiers else None,
        "workers": args.workers,
        "artifacts_root": args.artifacts_root,
    }
    settings = ServeSettings.from_env(environ, **overrides)
    if args.ray and settings.workers > 1:
        from turborec.errors import ConfigError

        raise ConfigError("--workers and --ray do not mix: Ray Serve scales with --replicas")
    return settings


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.ray:
        from turborec.cli.common import info
        from turborec.distributed.ray_serve import RayServeOptions, run_ray_server

        options = RayServeOptions(replicas=args.replicas, autoscale=args.autoscale)
        info(args, f"deploying {args.artifact} on Ray Serve ({args.replicas} replica(s)) at http://{settings.host}:{settings.port}")
        run_ray_server(settings, options)
        return 0
    from turborec.cli.common import info
    from turborec.serving.loading import load_serving_model

    # the model's contents are validated as it loads: a damaged artifact is refused before anything is announced
    assert settings.artifact is not None
    model = load_serving_model(settings.artifact, settings.history_len)
    if settings.workers > 1:
        from turborec.serving.workers import run_workers

        del model  # each worker loads its own

        def ready(url: str) -> None:
            info(args, f"serving {args.artifact} on {url} with {settings.workers} workers "
                       f"(SLO p99 {settings.slo_p99_ms} ms each)")

        run_workers(settings, on_ready=ready)
        return 0
    from turborec.serving.server import run_server

    info(args, f"serving {args.artifact} on http://{settings.host}:{settings.port} (SLO p99 {settings.slo_p99_ms} ms)")
    run_server(settings, model)
    return 0
