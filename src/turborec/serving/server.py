"""Running the service: ``run_server(settings)`` (what ``turborec serve`` calls) and a background server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from turborec._util.optional import has_module
from turborec.errors import ConfigError
from turborec.serving.app import ASGIApp, create_app
from turborec.serving.httpserver import LeanHTTPServer
from turborec.serving.loading import load_serving_model
from turborec.serving.metrics import ServiceMetrics
from turborec.serving.model import ServingModel
from turborec.serving.service import RecommendService
from turborec.serving.settings import ServeSettings
from turborec.serving.sockets import reuse_port_socket
from turborec.serving.stores.open import open_store


def build_service(settings: ServeSettings, model: ServingModel | None = None,
                  metrics: ServiceMetrics | None = None) -> RecommendService:
    """The service for ``settings``: the artifact's model (or ``model``), the configured store, a reloader."""
    import torch

    torch.set_num_threads(settings.torch_threads)
    if model is None:
        if settings.artifact is None:
            raise ConfigError("serve needs an artifact directory")
        model = load_serving_model(settings.artifact, settings.history_len)

    def loader(path: Path) -> ServingModel:
        return load_serving_model(path, settings.history_len)

    service = RecommendService(model, open_store(settings), settings, loader=loader, metrics=metrics)
    service.warm_up()
    return service


def uvicorn_config(app: ASGIApp, settings: ServeSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False,
        loop="uvloop" if has_module("uvloop") else "asyncio",
        http="httptools" if has_module("httptools") else "h11",
        lifespan="on", timeout_keep_alive=30, server_header=False, date_header=False,
    )


def _run(main: Coroutine[Any, Any, None]) -> None:
    if has_module("uvloop"):
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


async def _serve_lean(service: RecommendService, settings: ServeSettings, stop: asyncio.Event,
                      started: Callable[[], object] | None = None, box: list[int] | None = None,
                      worker: int | None = None) -> None:
    server = LeanHTTPServer(service, create_app(service), worker=worker)
    await server.start(settings.host, settings.port, reuse_port=settings.workers > 1)
    if box is not None:
        box.append(server.port)
    if started is not None:
        started()
    try:
        await stop.wait()
    finally:
        await server.stop()


def run_server(settings: ServeSettings, model: ServingModel | None = None, *, worker: int | None = None,
               metrics_dir: Path | None = None, on_ready: Callable[[], object] | None = None) -> None:
    """Serve until SIGINT/SIGTERM: then stop accepting, answer what is in flight, and return.

    ``worker``/``metrics_dir``: this process is worker ``worker`` of ``turborec serve --workers``
    (serving/workers.py); ``on_ready`` is called once the port accepts requests."""
    service = build_service(settings, model, ServiceMetrics(metrics_dir))
    # everything loaded so far (torch, the model, FastAPI) lives for the whole process: keep it out of
    # the cyclic GC's scans, whose full passes would otherwise stall requests for milliseconds
    gc.collect()
    gc.freeze()
    try:
        if settings.http == "lean":
            async def main() -> None:
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await _serve_lean(service, settings, stop, on_ready, worker=worker)

            _run(main())
        else:
            app = create_app(service)
            server = uvicorn.Server(uvicorn_config(app, settings))
            if on_ready is not None:
                _call_when_started(server, on_ready)
            if settings.workers > 1:  # the port is shared with the other workers
                server.run(sockets=[reuse_port_socket(settings.host, settings.port)])
            else:
                server.run()
    finally:
        service.store.close()


def _call_when_started(server: uvicorn.Server, callback: Callable[[], object]) -> None:
    def watch() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if server.started:
            callback()

    threading.Thread(target=watch, name="turborec-started", daemon=True).start()


@dataclass
class RunningServer:
    url: str
    service: RecommendService


@contextlib.contextmanager
def background_server(service: RecommendService, *, http: str | None = None) -> Iterator[RunningServer]:
    """Run ``service`` on 127.0.0.1 at a free port in a thread (tests, notebooks); stops on exit."""
    settings = service.settings.with_(host="127.0.0.1", port=0)
    kind = http or settings.http
    started = threading.Event()
    box: list[int] = []
    if kind == "lean":
        loop_box: list[asyncio.AbstractEventLoop] = []
        stop_box: list[asyncio.Event] = []

        async def main() -> None:
            loop_box.append(asyncio.get_running_loop())
            stop_box.append(asyncio.Event())
            await _serve_lean(service, settings, stop_box[0], started.set, box)

        thread = threading.Thread(target=_run, args=(main(),), name="turborec-server", daemon=True)

        def shutdown() -> None:
            if loop_box and stop_box:
                loop_box[0].call_soon_threadsafe(stop_box[0].set)
    else:
        server = uvicorn.Server(uvicorn_config(create_app(service), settings))
        thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="turborec-server", daemon=True)

        def shutdown() -> None:
            server.should_exit = True

    thread.start()
    try:
        for _ in range(1000):
            if kind == "lean" and started.is_set():
                break
            if kind != "lean" and server.started:
                box.append(server.servers[0].sockets[0].getsockname()[1])
                break
            if not thread.is_alive():
                break
            thread.join(0.01)
        if not box:
            raise RuntimeError("the background server did not start")
        yield RunningServer(f"http://127.0.0.1:{box[0]}", service)
    finally:
        shutdown()
        thread.join(15)
