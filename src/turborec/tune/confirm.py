"""Confirmation over HTTP: the configuration served by a real server on 127.0.0.1, loaded by the
open-loop generator (``turborec.bench.loadgen``) running in its own process.

The server is the one ``turborec serve`` runs (``serving.server.background_server`` with the
settings' HTTP front end), in a thread of this process; the generator is a child process so the
two do not share an interpreter lock. Latency is from each request's scheduled send time.
"""

from __future__ import annotations

import gc

import numpy as np

from turborec.bench.loadgen import LoadSpec, run_load_subprocess
from turborec.serving.model import ServingModel
from turborec.serving.server import background_server
from turborec.serving.service import RecommendService
from turborec.serving.settings import ServeSettings
from turborec.serving.stores.open import open_store
from turborec.tune.replay import LatencyStats, RequestMix


def confirm_over_http(
    model: ServingModel,
    settings: ServeSettings,
    mix: RequestMix,
    rate: float,
    *,
    seconds: float = 4.0,
    warmup_s: float = 1.0,
    seed: int = 1,
    timeout_s: float = 5.0,
    windows: int = 3,
) -> LatencyStats:
    """Serve ``model`` with ``settings`` on a free loopback port and load it at ``rate`` req/s; statistics
    of the median of ``windows`` windows after ``warmup_s`` (non-200 answers count as failed)."""
    service = RecommendService(model, open_store(settings), settings)
    service.warm_up()
    gc.collect()
    gc.freeze()  # as `turborec serve` does: long-lived objects stay out of the collector's full passes
    try:
        with background_server(service) as server:
            spec = LoadSpec(url=server.url, rate=rate, duration_s=warmup_s + seconds, requests=mix.templates(),
                            timeout_s=timeout_s, seed=seed, connections=256, preopen=32)
            result = run_load_subprocess(spec)
    finally:
        gc.unfreeze()
        service.store.close()
    latency = np.where(result.status == 200, result.latency, np.inf)
    return LatencyStats.from_windows(latency, result.scheduled, rate, warmup_s, seconds, windows)


__all__ = ["confirm_over_http"]
