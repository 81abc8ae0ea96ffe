"""Latency of a configuration: a recorded request mix replayed open-loop through the real service.

The mix is a sample of real users: known users (their training history is the user tower's
input), some of them sending a few fresh items with the request (their validation items: what
they did next), and some anonymous visitors described only by recent items. It is replayed
in-process through :class:`~turborec.serving.service.RecommendService` (admission, micro-batching,
the batch worker, the model) at the target rate on a Poisson schedule fixed in advance (a clock thread hands each request to the service's event loop
at its time, as a socket would wake it); each
latency runs from the request's *scheduled* time to its answer, so a service falling behind shows
as queueing (no coordinated omission). Shed or unanswered requests count as infinitely slow.
Runs are bounded: a fixed schedule, then at most ``timeout_s`` for stragglers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from turborec._util.optional import has_module
from turborec.bench.loadgen import RequestTemplate
from turborec.data.interactions import Interactions
from turborec.serving.model import ServingModel
from turborec.serving.service import Answer, Overloaded, RecommendService
from turborec.serving.settings import ServeSettings
from turborec.serving.stores.open import open_store
from turborec.train.recommender import Recommender


@dataclass(frozen=True)
class Request:
    user: str | None
    recent: tuple[str, ...] = ()
    k: int = 10


@dataclass(frozen=True)
class RequestMix:
    requests: tuple[Request, ...]

    @classmethod
    def sample(
        cls,
        rec: Recommender,
        valid: Interactions,
        n: int = 2000,
        *,
        seed: int = 0,
        fresh_share: float = 0.2,
        anonymous_share: float = 0.1,
        k: int = 10,
    ) -> RequestMix:
        """``n`` requests drawn from the validation users; ``fresh_share`` of them send up to 3 of their
        validation items as fresh clicks, ``anonymous_share`` are visitors with only such items."""
        assert rec.users is not None and rec.items is not None
        if valid.users != rec.users or valid.items != rec.items:
            valid = valid.with_vocabularies(rec.users, rec.items)  # type: ignore[arg-type]
        csr = valid.to_csr().tocsr()
        users = np.flatnonzero(np.diff(csr.indptr) > 0)
        if len(users) == 0:
            users = np.arange(len(rec.users))
        rng = np.random.default_rng(seed)
        user_ids = [str(u) for u in rec.users.ids]
        item_ids = [str(i) for i in rec.items.ids]
        out = []
        for _ in range(n):
            u = int(users[rng.integers(len(users))])
            own = csr.indices[csr.indptr[u] : csr.indptr[u + 1]]
            roll = rng.random()
            recent: tuple[str, ...] = ()
            if roll < fresh_share + anonymous_share and len(own):
                picks = rng.choice(own, size=min(3, len(own)), replace=False)
                recent = tuple(item_ids[i] for i in picks)
            user = None if roll < anonymous_share and recent else user_ids[u]
            out.append(Request(user, recent, k))
        return cls(tuple(out))

    def templates(self) -> tuple[RequestTemplate, ...]:
        """The same requests as HTTP bodies for the load generator."""
        out = []
        for r in self.requests:
            body: dict[str, Any] = {"k": r.k}
            if r.user is not None:
                body["user"] = r.user
            if r.recent:
                body["recent_items"] = list(r.recent)
            out.append(RequestTemplate("POST", "/v1/recommend", json.dumps(body).encode()))
        return tuple(out)

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.requests]


@dataclass(frozen=True)
class LatencyStats:
    """Latencies of the requests scheduled in the measurement window (ms; failures are inf)."""

    offered_rate: float
    sent: int
    ok: int
    failed: int  # shed (503 / Overloaded), errors, timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    seconds: float
    p99_windows_ms: tuple[float, ...] = ()  # p99 of each window when measured in several

    @classmethod
    def from_latencies(cls, latency_s: np.ndarray, offered_rate: float, seconds: float) -> LatencyStats:
        lat = np.where(np.isfinite(latency_s), latency_s, math.inf) * 1000.0
        ok = int(np.isfinite(lat).sum())

        def pct(q: float) -> float:
            return float(np.percentile(lat, q, method="higher")) if len(lat) else math.inf

        return cls(offered_rate, len(lat), ok, len(lat) - ok, pct(50), pct(90), pct(99),
                   float(lat.max()) if len(lat) else math.inf, seconds)

    @classmethod
    def from_windows(cls, latency_s: np.ndarray, scheduled_s: np.ndarray, offered_rate: float, start_s: float,
                     seconds: float, windows: int) -> LatencyStats:
        """Statistics of the median window (by p99, then share lost) of ``windows`` equal windows after
        ``start_s``, with the totals of all: one burst of a noisy neighbour moves one window, not the verdict."""
        edges = start_s + seconds * np.arange(windows + 1) / windows
        parts = [cls.from_latencies(latency_s[(scheduled_s >= a) & (scheduled_s < b)], offered_rate, seconds / windows)
                 for a, b in itertools.pairwise(edges)]
        ranked = sorted(parts, key=lambda s: (s.p99_ms, s.failed / max(s.sent, 1), s.p50_ms))
        mid = ranked[(len(ranked) - 1) // 2]
        return replace(mid, sent=sum(s.sent for s in parts), ok=sum(s.ok for s in parts),
                       failed=sum(s.failed for s in parts), max_ms=max(s.max_ms for s in parts), seconds=seconds,
                       p99_windows_ms=tuple(s.p99_ms for s in parts))

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, tuple):
                return [clean(x) for x in v]
            return None if isinstance(v, float) and math.isinf(v) else v

        return {k: clean(v) for k, v in asdict(self).items()}


def poisson_schedule(rate: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(rate * seconds * 1.3 + 50)
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    return t[t < seconds]


async def _replay(service: RecommendService, mix: RequestMix, times: np.ndarray, timeout_s: float) -> np.ndarray:
    await service.start()
    n = len(times)
    latency = np.full(n, np.nan)
    clock = time.perf_counter
    pending = [n]
    finished = asyncio.Event()
    requests = mix.requests

    def settle() -> None:
        pending[0] -= 1
        if pending[0] == 0:
            finished.set()

    start = clock() + 0.01

    def fire(i: int) -> None:
        r = requests[i % len(requests)]
        try:
            t0, answer = service.begin(r.user, r.recent, r.k)
        except Overloaded:
            settle()
            return
        if not isinstance(answer, asyncio.Future):
            service.complete(t0, answer)
            latency[i] = clock() - (start + times[i])
            settle()
            return

        def done(fut: asyncio.Future[Answer], i: int = i, t0: float = t0) -> None:
            if not fut.cancelled() and fut.exception() is None:
                service.complete(t0, fut.result())
                latency[i] = clock() - (start + times[i])
            settle()

        answer.add_done_callback(done)

    stop = threading.Event()
    loop = asyncio.get_running_loop()
    ticker = threading.Thread(target=_arrivals, args=(loop, fire, start + times, stop), name="turborec-replay-clock",
                              daemon=True)
    ticker.start()
    try:
        if n:
            with contextlib.suppress(asyncio.TimeoutError):  # stragglers stay NaN: counted as failed
                await asyncio.wait_for(finished.wait(), float(times[-1]) + 0.01 + timeout_s)
    finally:
        stop.set()
        ticker.join(timeout_s)
        await service.stop()
    return latency


def _arrivals(loop: asyncio.AbstractEventLoop, fire: Callable[[int], None], due: np.ndarray,
              stop: threading.Event) -> None:
    """The clock: sleeps (precisely, GIL released) until each request's time and hands it to the loop, which
    wakes at once as it would for a socket. Nothing spins on the service's loop, so the batch worker thread
    never waits for the interpreter lock behind a busy-waiting generator."""
    clock = time.perf_counter
    for i, t in enumerate(due.tolist()):
        wait = t - clock()
        if wait > 0:
            time.sleep(wait)
        if stop.is_set() or loop.is_closed():
            return
        loop.call_soon_threadsafe(fire, i)


def replay(
    model: ServingModel,
    settings: ServeSettings,
    mix: RequestMix,
    rate: float,
    *,
    seconds: float = 3.0,
    warmup_s: float = 0.5,
    seed: int = 0,
    timeout_s: float = 5.0,
    windows: int = 3,
) -> LatencyStats:
    """Replay ``mix`` at ``rate`` req/s for ``warmup_s + seconds`` through a fresh service; statistics of
    the median of ``windows`` windows over the requests scheduled after the warm-up."""
    service = RecommendService(model, open_store(settings), settings)
    service.warm_up()
    times = poisson_schedule(rate, warmup_s + seconds, seed)
    runner = _event_loop_runner()
    gc.collect()
    gc.freeze()  # as `turborec serve` does: long-lived objects stay out of the collector's full passes
    try:
        latency = runner(_replay(service, mix, times, timeout_s))
    finally:
        gc.unfreeze()
        service.store.close()
    return LatencyStats.from_windows(latency, times, rate, warmup_s, seconds, windows)


def _event_loop_runner() -> Any:
    """uvloop when installed (what ``turborec serve`` runs on), else asyncio."""
    if has_module("uvloop"):
        import uvloop

        return uvloop.run
    return asyncio.run


__all__ = ["LatencyStats", "Request", "RequestMix", "poisson_schedule", "replay"]
