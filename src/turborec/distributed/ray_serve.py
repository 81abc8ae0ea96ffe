"""``turborec serve ARTIFACT --ray --replicas N``: the same service, scaled out over Ray Serve replicas.

Each replica is the single-process service of ``turborec.serving`` -- the same
ASGI app (routes, validation, limits, metrics, admin), the same ``ServingModel``
loaded from the same artifact -- with two changes:

- batching is Ray Serve's ``@serve.batch`` (a replica's requests are grouped up
  to ``max_batch`` within ``max_wait_ms``, then run in one model call on the
  replica's worker thread), and Ray routes requests to the replica with the
  fewest ongoing ones; overload shows as Ray's 503 once ``max_queued_requests``
  are waiting;
- user state lives in the Redis store, so an event posted through one replica
  is seen by a recommendation answered by another.

Replicas are fixed (``replicas``) or autoscaled between 1 and ``max_replicas``
on ongoing requests per replica (``target_ongoing``). Ray's own traffic stays on
127.0.0.1 (see :func:`start_ray`) and the HTTP proxy binds ``settings.host``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from turborec._util.optional import require
from turborec.errors import ConfigError
from turborec.serving.app import ASGIApp, create_app
from turborec.serving.loading import load_serving_model
from turborec.serving.service import Answer, RecommendService, _Request
from turborec.serving.settings import ServeSettings
from turborec.serving.stores.open import open_store
from turborec.serving.tiers import Tier

APP_NAME = "turborec"
DEPLOYMENT = "TurborecReplica"
# Ray's listeners default to the machine's interface; with this they bind 127.0.0.1 (platform notes)
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass(frozen=True)
class RayServeOptions:
    replicas: int = 2
    autoscale: bool = False
    max_replicas: int = 4
    target_ongoing: float = 8.0  # autoscaling target: ongoing requests per replica
    max_ongoing: int = 64  # a replica takes at most this many requests at once (>= max_batch)
    max_queued: int = 256  # beyond this many waiting at the proxy, Ray answers 503
    cpus_per_replica: float = 1.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"--replicas must be >= 1, got {self.replicas}")
        if self.autoscale and self.max_replicas < self.replicas:
            raise ConfigError(f"max_replicas={self.max_replicas} must be >= --replicas {self.replicas}")
        if self.target_ongoing <= 0 or self.max_ongoing < 1 or self.max_queued < 1:
            raise ConfigError("target_ongoing must be > 0, max_ongoing and max_queued >= 1")
        if self.cpus_per_replica <= 0:
            raise ConfigError(f"cpus_per_replica must be > 0, got {self.cpus_per_replica}")

    def scaling(self) -> dict[str, Any]:
        if not self.autoscale:
            return {"num_replicas": self.replicas}
        return {"autoscaling_config": {
            "min_replicas": 1, "initial_replicas": self.replicas, "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing, "upscale_delay_s": 2.0, "downscale_delay_s": 30.0,
        }}


class ServeBatchedService(RecommendService):
    """The service with Ray Serve's batcher in place of its own micro-batching driver.

    ``begin`` hands each admitted request to ``batch`` (a ``@serve.batch`` method of the
    replica), which calls :meth:`run_requests` once per batch; the rest -- store, tiers,
    SLO controller, metrics, reload -- is the parent's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch: Any = None  # set by the replica: async (request) -> Answer, batched by Ray
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="turborec-batch")

    def begin(self, user: str | None, recent: Sequence[str] = (), k: int = 10, exclude: Sequence[str] = (),
              exclude_seen: bool = True) -> tuple[float, Answer | asyncio.Future[Answer]]:
        t0 = time.perf_counter()
        request = _Request(user, tuple(recent), k, frozenset(exclude), exclude_seen)
        if self.slo.tier is Tier.POPULAR or self.batch is None:  # no model call: answer on the spot
            return t0, self._run_batch([request], Tier.POPULAR if self.batch is not None else None)[0]
        return t0, asyncio.ensure_future(self.batch(request))

    async def run_requests(self, requests: list[_Request]) -> list[Answer]:
        """One batch on the worker thread (torch work must not block the replica's event loop)."""
        started = time.perf_counter()
        answers = await asyncio.get_running_loop().run_in_executor(self._pool, self._run_batch, requests)
        self._on_batch(len(requests), time.perf_counter() - started)
        return answers

    async def stop(self) -> None:
        await super().stop()
        self._pool.shutdown(wait=True)


def build_replica_service(settings: ServeSettings) -> ServeBatchedService:
    """What one replica serves: the artifact's model, the shared store, a reloader."""
    import torch

    torch.set_num_threads(settings.torch_threads)
    if settings.artifact is None:
        raise ConfigError("serve --ray needs an artifact directory")
    model = load_serving_model(settings.artifact, settings.history_len)
    service = ServeBatchedService(model, open_store(settings), settings,
                                  loader=lambda path: load_serving_model(path, settings.history_len))
    service.warm_up()
    return service


def build_application(settings: ServeSettings, options: RayServeOptions) -> Any:
    """The Ray Serve application (not yet running): one deployment whose replicas each run the service."""
    serve = require("ray.serve", "ray", "ray[serve]")
    if (options.replicas > 1 or options.autoscale) and settings.store != "redis":
        raise ConfigError(
            "several replicas need a user-state store they share: --store redis --redis-url redis://HOST:PORT/DB "
            f"(got store={settings.store})"
        )
    max_batch, wait_s = settings.max_batch, settings.max_wait_ms / 1000.0

    @serve.deployment(  # type: ignore[misc]
        name=DEPLOYMENT, max_ongoing_requests=max(options.max_ongoing, max_batch),
        max_queued_requests=options.max_queued, ray_actor_options={"num_cpus": options.cpus_per_replica},
        health_check_period_s=2.0, health_check_timeout_s=10.0, **options.scaling(),
    )
    @serve.ingress()  # type: ignore[misc]
    class TurborecReplica:
        def __init__(self, replica_settings: ServeSettings) -> None:
            self.service = build_replica_service(replica_settings)
            self.service.batch = self.recommend_one

        def __serve_build_asgi_app__(self) -> ASGIApp:
            return create_app(self.service)

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=wait_s)  # type: ignore[misc]
        async def recommend_one(self, requests: list[_Request]) -> list[Answer]:
            return await self.service.run_requests(requests)

    return TurborecReplica.bind(settings)  # type: ignore[attr-defined]


def start_ray(num_cpus: float | None = None) -> None:
    """A local Ray cluster whose processes listen on 127.0.0.1 only (reuses one already started here).

    Ray reads the loopback switch when it is imported: this sets it first, so import Ray
    through here (or set :data:`LOOPBACK_ENV` yourself before importing it).
    """
    for key, value in LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)
    ray = require("ray", "ray", "ray[serve]")
    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)


@dataclass(frozen=True)
class RayDeployment:
    url: str
    replicas: int


def deploy(settings: ServeSettings, options: RayServeOptions, num_cpus: float | None = None) -> RayDeployment:
    """Start Ray (if needed), the Serve HTTP proxy on ``settings.host:settings.port``, and the replicas."""
    start_ray(num_cpus)
    serve = require("ray.serve", "ray", "ray[serve]")
    serve.start(http_options={"host": settings.host, "port": settings.port}, detached=False)
    serve.run(build_application(settings, options), name=APP_NAME, route_prefix="/", blocking=False)
    _wait_running(serve, timeout_s=180.0)
    return RayDeployment(f"http://{settings.host}:{settings.port}", options.replicas)


def _wait_running(serve: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = serve.status().applications.get(APP_NAME)
        if status is not None and str(status.status).endswith("RUNNING"):
            return
        if status is not None and str(status.status).endswith("DEPLOY_FAILED"):
            raise ConfigError(f"the Ray Serve deployment failed: {status.message}")
        time.sleep(0.5)
    raise ConfigError(f"the Ray Serve deployment did not become ready in {timeout_s:.0f}s")


def shutdown() -> None:
    """Stop Serve and Ray started by :func:`deploy`."""
    ray = require("ray", "ray", "ray[serve]")
    serve = require("ray.serve", "ray", "ray[serve]")
    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()


def run_ray_server(settings: ServeSettings, options: RayServeOptions) -> None:
    """``turborec serve ARTIFACT --ray``: deploy, then serve until interrupted."""
    deployment = deploy(settings, options)
    print(f"serving {settings.artifact} on {deployment.url} with Ray Serve "
          f"({'autoscaled 1..' + str(options.max_replicas) if options.autoscale else options.replicas} replicas)",
          flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        shutdown()
