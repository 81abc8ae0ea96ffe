"""Confirmation over HTTP: the candidate saved as an artifact, served by a fresh server process on
127.0.0.1, loaded by the open-loop generator (``turborec.bench.loadgen``) in another process.

The server process is ``turborec serve ARTIFACT`` itself (the default lean HTTP front end, the model built
as for any artifact), with the candidate's micro-batching and admission settings and fixed tiers. Nothing of the search
process (its many models, sessions and threads) shares that process, and the artifact round trip
is checked on the way. Latency is from each request's scheduled send time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from turborec.bench.loadgen import LoadSpec, run_load_subprocess
from turborec.bench.process import start_http_server, stop_process
from turborec.bench.replay import LatencyStats, RequestMix
from turborec.serving.settings import ENV_PREFIX, ServeSettings

START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(artifact: Path, settings: ServeSettings, port: int) -> subprocess.Popen[bytes]:
    """A server process for ``artifact`` on 127.0.0.1:``port``; returns once /healthz answers."""

    args = [sys.executable, "-m", "turborec.cli.main", "serve", str(artifact), "--host", "127.0.0.1",
            "--port", str(port), "--slo-p99-ms", str(settings.slo_p99_ms), "--max-batch", str(settings.max_batch),
            "--max-wait-ms", str(settings.max_wait_ms), "--no-adaptive-tiers"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", ENV_PREFIX + "EXECUTOR": settings.executor,
           ENV_PREFIX + "SHED_AT": str(settings.shed_at), ENV_PREFIX + "HTTP": "lean"}
    return start_http_server(args, port, env=env, timeout_s=START_TIMEOUT_S, name=f"the server for {artifact}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc, grace_s=20.0)


def confirm_over_http(
    artifact: Path,
    settings: ServeSettings,
    mix: RequestMix,
    rate: float,
    *,
    seconds: float = 6.0,
    warmup_s: float = 1.0,
    seed: int = 1,
    timeout_s: float = 5.0,
    windows: int = 3,
) -> LatencyStats:
    """Serve ``artifact`` with ``settings`` in a fresh process and load it at ``rate`` req/s; statistics of
    the median of ``windows`` windows after ``warmup_s`` (non-200 answers count as failed)."""
    port = free_port()
    proc = start_server(artifact, settings, port)
    try:
        spec = LoadSpec(url=f"http://127.0.0.1:{port}", rate=rate, duration_s=warmup_s + seconds,
                        requests=mix.templates(), timeout_s=timeout_s, seed=seed, connections=256, preopen=32)
        result = run_load_subprocess(spec)
    finally:
        stop_server(proc)
    latency = np.where(result.status == 200, result.latency, np.inf)
    return LatencyStats.from_windows(latency, result.scheduled, rate, warmup_s, seconds, windows)


__all__ = ["confirm_over_http", "free_port", "start_server", "stop_server"]
