"""``turborec serve --workers N``: N serving processes on one port, one user-state store, one /metrics.

One Python process serves on one core (the GIL); a machine's other cores need
more processes. A supervisor (this module, in the process that ``turborec serve``
started) reserves the port, then spawns N workers. Each worker is the whole
single-process service (``run_server``) and binds the same address with
``SO_REUSEPORT``: the kernel spreads *connections* over the workers' listening
sockets (by a hash of the 4-tuple), so no process sits in the request path.

Shared across workers:

- **user state**: the store must be one the processes share. ``sqlite`` (WAL: a
  committed event is seen by every other connection's next read) or ``redis``.
  With the default ``memory`` store and several workers, the supervisor opens a
  SQLite file in a private temporary folder instead (and says so); it is
  removed when the supervisor stops.
- **metrics**: ``prometheus_client``'s multiprocess mode. Each worker writes its
  samples to memory-mapped files in one folder, and ``/metrics`` on any worker
  renders all workers' counters and histograms summed; gauges are aggregated
  per meaning (queue depth: sum over live workers; tier and loop lag: the worst
  live worker; the served model version: one series per worker). A worker that
  exits has its live gauges dropped.
- **the SLO**: each worker runs its own admission control and SLO controller
  over its own queue, which is exact: a request can only wait behind the
  requests of the worker that accepted its connection, so the budget check
  (expected time to answer) needs no shared state, and each worker's tier
  follows the load it actually sees. With the kernel's even spread each worker
  sees 1/N of the rate; the aggregated ``turborec_tier`` shows the worst.

Not shared: ``POST /admin/reload`` reloads the worker that answers it. To reload
every worker, restart the service (the supervisor starts each worker afresh) or
send the supervisor ``SIGHUP``, which restarts the workers one at a time while
the others keep serving.

A worker that dies is restarted (after a 1 s pause; a worker that keeps dying
within 10 s of its start 5 times stops the service with an error).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

from turborec.errors import ConfigError
from turborec.serving.settings import ServeSettings
from turborec.serving.sockets import reuse_port_socket

log = logging.getLogger("turborec.serving")

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when a worker imports it
START_TIMEOUT_S = 300.0
QUICK_DEATH_S = 10.0
MAX_QUICK_DEATHS = 5


def _worker_main(settings: ServeSettings, index: int, metrics_dir: Path, ready: Any) -> None:
    """A worker process: the single-process service on the shared port."""
    from turborec.serving.server import run_server

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops workers with SIGTERM
    run_server(settings, worker=index, metrics_dir=metrics_dir, on_ready=ready.set)


@dataclass
class _Worker:
    index: int
    process: SpawnProcess
    ready: Any
    started: float = field(default_factory=time.monotonic)


class WorkerPool:
    """Start, watch and stop the workers (the supervisor's state)."""

    def __init__(self, settings: ServeSettings, metrics_dir: Path) -> None:
        self.settings = settings
        self.metrics_dir = metrics_dir
        self.ctx = mp.get_context("spawn")  # a fresh interpreter each: no forked torch threads or locks
        self.workers: dict[int, _Worker] = {}
        self.quick_deaths = 0

    def start(self, index: int) -> _Worker:
        ready = self.ctx.Event()
        proc = self.ctx.Process(target=_worker_main, args=(self.settings, index, self.metrics_dir, ready),
                                name=f"turborec-worker-{index}", daemon=False)
        proc.start()
        worker = _Worker(index, proc, ready)
        self.workers[index] = worker
        return worker

    def wait_ready(self, workers: list[_Worker], timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        for w in workers:
            while not w.ready.wait(0.1):
                if not w.process.is_alive():
                    raise ConfigError(f"worker {w.index} exited during start-up (exit code {w.process.exitcode})")
                if time.monotonic() > deadline:
                    raise ConfigError(f"worker {w.index} did not start within {timeout_s:.0f} s")

    def reap(self) -> None:
        """Restart workers that died (a worker that keeps dying right after its start stops the service)."""
        for index, w in list(self.workers.items()):
            if w.process.is_alive():
                continue
            self._forget(w)
            if time.monotonic() - w.started < QUICK_DEATH_S:
                self.quick_deaths += 1
                if self.quick_deaths >= MAX_QUICK_DEATHS:
                    raise ConfigError(f"worker {index} keeps exiting (exit code {w.process.exitcode})")
            log.warning("worker %d (pid %s) exited with code %s; restarting it", index, w.process.pid,
                        w.process.exitcode)
            time.sleep(1.0)
            self.start(index)

    def restart_all(self) -> None:
        """One worker at a time, each replaced only once its successor serves (SIGHUP)."""
        for index in sorted(self.workers):
            old = self.workers[index]
            new = self.start(index)
            self.wait_ready([new])
            self._stop(old)

    def _forget(self, w: _Worker) -> None:
        if w.process.pid is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(w.process.pid, str(self.metrics_dir))

    def _stop(self, w: _Worker, grace_s: float = 15.0) -> None:
        if w.process.is_alive():
            w.process.terminate()
        w.process.join(grace_s)
        if w.process.is_alive():
            w.process.kill()
            w.process.join(5)
        self._forget(w)

    def stop(self) -> None:
        for w in self.workers.values():  # all at once: each finishes its in-flight requests in parallel
            if w.process.is_alive():
                w.process.terminate()
        for w in self.workers.values():
            self._stop(w)


def shared_settings(settings: ServeSettings, state_dir: Path) -> ServeSettings:
    """The settings each worker gets: a store the processes share (SQLite in ``state_dir`` for 'memory')."""
    if settings.store == "memory":
        return settings.with_(store="sqlite", store_path=state_dir / "events.sqlite")
    return settings


def run_workers(settings: ServeSettings, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve with ``settings.workers`` processes until SIGINT/SIGTERM (then stop them, answering in-flight
    requests). ``on_ready(url)`` is called once every worker serves."""
    if settings.workers < 2:
        raise ConfigError("run_workers needs settings.workers >= 2 (one worker: run_server)")
    state_dir = Path(tempfile.mkdtemp(prefix="turborec-serve-"))
    metrics_dir = state_dir / "metrics"
    metrics_dir.mkdir()
    reserved = reuse_port_socket(settings.host, settings.port)  # holds the port (port 0: picks one)
    port = reserved.getsockname()[1]
    worker_settings = shared_settings(settings, state_dir).with_(port=port)
    if worker_settings.store != settings.store:
        log.warning("--workers %d: the memory store is per process; sharing user state through SQLite at %s",
                    settings.workers, worker_settings.store_path)
    previous = os.environ.get(METRICS_ENV)
    os.environ[METRICS_ENV] = str(metrics_dir)  # inherited by the spawned workers
    pool = WorkerPool(worker_settings, metrics_dir)
    stopping = False
    reload_asked = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    def restart(*_: Any) -> None:
        nonlocal reload_asked
        reload_asked = True

    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, restart)
    try:
        pool.wait_ready([pool.start(i) for i in range(settings.workers)])
        reserved.close()  # every worker listens now: the port stays taken
        if on_ready is not None:
            on_ready(f"http://{settings.host}:{port}")
        while not stopping:
            time.sleep(0.2)
            if reload_asked:
                reload_asked = False
                pool.restart_all()
            pool.reap()
    finally:
        with contextlib.suppress(OSError):
            reserved.close()
        pool.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if previous is None:
            os.environ.pop(METRICS_ENV, None)
        else:
            os.environ[METRICS_ENV] = previous
        shutil.rmtree(state_dir, ignore_errors=True)


__all__ = ["WorkerPool", "reuse_port_socket", "run_workers", "shared_settings"]
