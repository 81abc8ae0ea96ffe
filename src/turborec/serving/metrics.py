"""Prometheus metrics of one service instance (its own registry: no global state, many apps per process).

Under ``turborec serve --workers N`` every worker runs with prometheus_client's
multiprocess mode on (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor before
the workers start), and ``render`` sums all workers' files: each gauge says how
(``multiprocess_mode``), and is ignored in a single process.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STAGES = ("features", "retrieval", "ranking", "total")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.stage_latency = Histogram(
            "turborec_stage_latency_seconds", "Latency per serving stage (total: arrival to response)",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.stage = {s: self.stage_latency.labels(stage=s) for s in STAGES}
        self.batch_size = Histogram(
            "turborec_batch_size", "Requests per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("turborec_queue_depth", "Requests waiting for a batch", registry=r,
                                 multiprocess_mode="livesum")
        self.loop_lag = Gauge("turborec_event_loop_lag_seconds", "How late the event loop runs timers (smoothed)",
                              registry=r, multiprocess_mode="livemax")
        self.tier = Gauge("turborec_tier", "Current serving tier (0 = full; higher = cheaper; workers: the worst)",
                          registry=r, multiprocess_mode="livemax")
        self.requests = Counter(
            "turborec_requests_total", "Requests answered, by endpoint and status code",
            ["endpoint", "status"], registry=r,
        )
        self.errors = Counter("turborec_errors_total", "Errors by kind", ["kind"], registry=r)
        self.shed = Counter("turborec_shed_total", "Requests refused with 503 by admission control", registry=r)
        self.tier_served = Counter(
            "turborec_tier_requests_total", "Recommendations answered per tier", ["tier"], registry=r
        )
        self.events = Counter("turborec_events_total", "User events stored, by kind", ["kind"], registry=r)
        self.store_evictions = Counter(
            "turborec_store_evictions_total", "Users evicted from the in-memory store (its user or byte bound)",
            registry=r,
        )
        self.reloads = Counter("turborec_reloads_total", "Model reload attempts by outcome", ["outcome"], registry=r)
        self.model_info = Gauge("turborec_model_info", "The model being served (value 1; workers: one series each)",
                                ["version"], registry=r, multiprocess_mode="liveall")
        self._version: str | None = None
        # process_cpu_seconds_total, process_resident_memory_bytes, ... (read from /proc: Linux only)
        ProcessCollector(registry=r)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, str(self.multiprocess_dir))
        ProcessCollector(registry=registry)  # the worker that answers this scrape (workers share a port)
        return generate_latest(registry)

    def set_model(self, version: str) -> None:
        if self._version is not None and self._version != version:
            self.model_info.labels(version=self._version).set(0)  # multiprocess files keep a removed series
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)
        self._version = version
