"""``RecommendService``: store -> admission -> micro-batches -> model -> answer, with tiers and hot reload.

The HTTP layer (``app.py``) only parses and renders; everything a request goes
through lives here, so it can be driven in-process by tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from turborec.errors import ArtifactError, ConfigError, TurborecError
from turborec.serving.admission import AdmissionController, AdmissionPolicy
from turborec.serving.batching import BatchPolicy
from turborec.serving.driver import BatchDriver
from turborec.serving.events import EventWriter
from turborec.serving.metrics import ServiceMetrics
from turborec.serving.model import Query, Ranked, ServingModel
from turborec.serving.settings import ServeSettings
from turborec.serving.slo import SLOController, SLOPolicy
from turborec.serving.stores.base import Event, Store
from turborec.serving.stores.memory import MemoryStore
from turborec.serving.tiers import Tier

log = logging.getLogger("turborec.serving")

ModelLoader = Callable[[Path], ServingModel]
CONTROL_PERIOD_S = 0.05


class Overloaded(Exception):
    """Admission control refused the request; answer 503 with ``Retry-After``."""

    def __init__(self, expected_s: float, retry_after_s: float) -> None:
        super().__init__(f"overloaded: expected {expected_s * 1000:.1f} ms exceeds the latency budget")
        self.expected_s = expected_s
        self.retry_after_s = retry_after_s


class ReloadRefused(TurborecError):
    """The new artifact could not be loaded or failed its smoke test; the old model keeps serving."""


class ReloadBusy(TurborecError):
    """Another reload is in progress."""


class ReloadOutsideRoot(TurborecError):
    """The artifact path given to a reload is outside the artifacts root (answered 400)."""


@dataclass(frozen=True)
class Answer:
    ranked: Ranked
    tier: Tier
    version: str


@dataclass(frozen=True)
class Scored:
    """Click probabilities for one ``/v1/score`` request's rows."""

    probabilities: np.ndarray
    tier: Tier
    version: str


@dataclass(frozen=True)
class _ScoreRequest:
    rows: Any  # what the model's ``to_raw`` made of the request's rows


def _scores_rows(model: object) -> bool:
    """A model that scores rows (a CTR ranker: ``to_raw`` + ``score_batch``) rather than recommending."""
    return hasattr(model, "score_batch") and hasattr(model, "to_raw")


def _probe(model: Any, size: int, tier: Tier, k: int = 10) -> list[Any]:
    """One batch of ``size`` neutral requests through ``model`` (warm-up, reload smoke test)."""
    if _scores_rows(model):
        return list(model.score_batch(model.probe_rows(size), tier))
    return list(model.recommend_batch([Query(None, (), k=k, exclude_seen=False)] * size, tier).results)


@dataclass(frozen=True)
class _Request:
    user: str | None
    recent: tuple[str, ...]
    k: int
    exclude: frozenset[str]
    exclude_seen: bool


class RecommendService:
    def __init__(
        self,
        model: ServingModel,
        store: Store,
        settings: ServeSettings,
        *,
        loader: ModelLoader | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics or ServiceMetrics()
        self._model = model
        self._loader = loader
        self._artifact = settings.artifact
        budget = settings.slo_p99_s
        self.slo = SLOController(
            SLOPolicy(budget_s=budget, degrade_at=settings.degrade_at, recover_at=settings.recover_at,
                      window_s=settings.slo_window_s, recover_hold_s=settings.recover_hold_s),
            model.tiers, enabled=settings.adaptive_tiers,
        )
        self.admission = AdmissionController(
            AdmissionPolicy(budget_s=budget, shed_at=settings.shed_at, max_batch=settings.max_batch)
        )
        self.driver: BatchDriver[_Request | _ScoreRequest, Answer | Scored] = BatchDriver(
            self._run_batch, BatchPolicy(max_batch=settings.max_batch, max_wait_s=settings.max_wait_ms / 1000),
            executor=settings.executor, on_batch=self._on_batch,
        )
        self._reloading = False
        self.loop_lag_s = 0.0
        self._lags: deque[float] = deque(maxlen=5)
        self._control: asyncio.Task[None] | None = None
        self.ready = False
        self.metrics.set_model(model.version)
        self.metrics.tier.set(int(self.slo.tier))
        self._served = {tier: self.metrics.tier_served.labels(tier=tier.label) for tier in Tier}
        if isinstance(store, MemoryStore):
            store.on_evict = self.metrics.store_evictions.inc
        # a store that does I/O gets its writes batched on a thread (an in-memory append is cheaper inline)
        self.event_writer = (
            EventWriter(store, max_pending=settings.max_pending_events, on_stored=self._count_events)
            if settings.max_pending_events > 0 and not isinstance(store, MemoryStore) else None
        )
        self.tier_cost_s: dict[Tier, float] = {}  # one request's time per tier, measured by warm_up

    @property
    def model(self) -> ServingModel:
        return self._model

    # ------------------------------------------------------------ lifecycle
    def warm_up(self, rounds: int = 3) -> None:
        """Run the model on a few batch sizes before serving: the first calls pay one-off costs
        (allocations, lazy init) that would otherwise land on real requests and on the
        admission controller's service-time estimate, which is then seeded from the last round."""
        model = self._model
        sizes = sorted({1, max(1, self.settings.max_batch // 4), self.settings.max_batch})
        rounds = max(rounds, 2)
        for r in range(rounds):
            for size in sizes:
                t0 = time.perf_counter()
                _probe(model, size, model.tiers[0])
                if r == rounds - 1:
                    self.admission.service_time.observe(size, time.perf_counter() - t0)
        for tier in model.tiers:
            runs = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                _probe(model, 1, tier)
                runs.append(time.perf_counter() - t0)
            self.tier_cost_s[tier] = sorted(runs)[len(runs) // 2]
        warning = self.budget_warning()
        if warning is not None:
            log.warning("%s", warning)

    def budget_warning(self) -> str | None:
        """A line for operators when even the cheapest tier measured slower than the budget (else None).

        The service still answers every request that finds it idle (late rather than never); this
        says why those answers will miss the SLO.
        """
        if not self.tier_cost_s:
            return None
        tier, cost = min(self.tier_cost_s.items(), key=lambda kv: kv[1])
        budget = self.settings.slo_p99_s
        if cost <= budget:
            return None
        return (f"even the cheapest tier ({tier.label}) took {cost * 1000:.1f} ms for one request at warm-up, "
                f"over the {budget * 1000:.1f} ms p99 budget: requests will be answered late")

    async def start(self) -> None:
        if self._control is None:
            self._control = asyncio.get_running_loop().create_task(self._control_loop())
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._control is not None:
            self._control.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._control
            self._control = None
        await self.driver.close()
        if self.event_writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.event_writer.close)

    async def _control_loop(self) -> None:
        clock = time.perf_counter
        while True:
            tier = self.slo.update(clock())
            self.metrics.tier.set(int(tier))
            self.metrics.queue_depth.set(self.driver.queue_depth)
            self.metrics.loop_lag.set(self.loop_lag_s)
            before = clock()
            await asyncio.sleep(CONTROL_PERIOD_S)
            self._observe_loop_lag(clock() - before - CONTROL_PERIOD_S)

    def _observe_loop_lag(self, lag: float) -> None:
        """How late the loop ran a timer: roughly how long a new request waits before it is even read (the
        kernel queue the service cannot see). The median of the last few periods: a sustained backlog
        counts, a single stall (a GC pause, a noisy neighbour) does not."""
        self._lags.append(max(lag, 0.0))
        self.loop_lag_s = sorted(self._lags)[len(self._lags) // 2]

    # ------------------------------------------------------------ requests
    def begin(
        self,
        user: str | None,
        recent: Sequence[str] = (),
        k: int = 10,
        exclude: Sequence[str] = (),
        exclude_seen: bool = True,
    ) -> tuple[float, Answer | asyncio.Future[Answer]]:
        """Admit and dispatch a recommendation: (start time, the answer or a future of it).

        Raises :class:`Overloaded` when it cannot be answered within the budget. Pass
        the answer to :meth:`complete`. (Split in two so an HTTP server can answer from a
        future's callback without a task per request; :meth:`recommend` does both.)
        """
        if _scores_rows(self._model):
            raise ConfigError("this model is a CTR ranker: it scores rows (POST /v1/score), it does not recommend")
        t0 = time.perf_counter()
        request = _Request(user, tuple(recent), k, frozenset(exclude), exclude_seen)
        return t0, self._dispatch(t0, request)  # type: ignore[return-value]

    def begin_score(self, rows: Sequence[Mapping[str, Any]]) -> tuple[float, Scored | asyncio.Future[Scored]]:
        """Admit and dispatch the scoring of ``rows`` (raw feature values) by a CTR ranker; as :meth:`begin`."""
        model: Any = self._model
        if not _scores_rows(model):
            raise ConfigError("this model recommends (POST /v1/recommend); only a CTR ranker scores rows")
        request = _ScoreRequest(model.to_raw(rows))  # a bad row is the caller's 400, before any queueing
        t0 = time.perf_counter()
        return t0, self._dispatch(t0, request)  # type: ignore[return-value]

    async def score(self, rows: Sequence[Mapping[str, Any]]) -> Scored:
        t0, pending = self.begin_score(rows)
        if isinstance(pending, asyncio.Future):
            try:
                scored = await pending
            except asyncio.CancelledError:
                self.driver.cancel(pending)  # type: ignore[arg-type]
                raise
        else:
            scored = pending
        self.complete(t0, scored)
        return scored

    def _dispatch(
        self, t0: float, request: _Request | _ScoreRequest
    ) -> Answer | Scored | asyncio.Future[Answer | Scored]:
        """Admission control, then the answer on the spot (popular tier) or a future of the batch's answer."""
        policy = self.admission.policy
        if self.slo.tier is Tier.POPULAR:  # no model call: answer on the spot, nothing to queue
            # even reading requests is behind: only refusing is cheaper -- but only while requests pile up
            # unread (Little's law: rate x lag of them wait); a slow loop on a busy machine at a trickle
            # of traffic has no backlog to protect, and refusing there would refuse everything
            lag = self.loop_lag_s
            if lag > policy.shed_at * policy.budget_s and self.slo.request_rate(t0) * lag >= 1.0:
                self._shed(t0, lag)
            return self._run_batch([request], Tier.POPULAR)[0]  # type: ignore[no-any-return]
        driver = self.driver
        if driver.queue_depth == 0 and not driver.running():
            # idle: nothing is ahead of this request, so refusing it saves no one any time. Serve it
            # (late if the model is slower than the budget: the SLO controller then steps down to a tier
            # that fits), and its batch keeps the service-time estimate learning -- an estimate learned
            # only from admitted batches would otherwise never come down once it passed the budget
            return driver.submit_nowait(request)
        busy = self._busy_for(t0) + self.loop_lag_s
        decision = self.admission.admit(driver.queue_depth, busy, driver.batcher.wait_window())
        if not decision.admitted:
            self._shed(t0, decision.expected_s)
        return driver.submit_nowait(request)

    def complete(self, t0: float, answer: Answer | Scored) -> None:
        """Account for an answered request (latency metrics and the SLO controller's window)."""
        now = time.perf_counter()
        latency = now - t0
        self.slo.observe(now, latency + self.loop_lag_s)
        self.metrics.stage["total"].observe(latency)
        self._served[answer.tier].inc()

    async def recommend(
        self,
        user: str | None,
        recent: Sequence[str] = (),
        k: int = 10,
        exclude: Sequence[str] = (),
        exclude_seen: bool = True,
    ) -> Answer:
        t0, pending = self.begin(user, recent, k, exclude, exclude_seen)
        if isinstance(pending, asyncio.Future):
            try:
                answer = await pending
            except asyncio.CancelledError:
                self.driver.cancel(pending)  # type: ignore[arg-type]
                raise
        else:
            answer = pending
        self.complete(t0, answer)
        return answer

    def _shed(self, t: float, expected_s: float) -> None:
        self.slo.observe_shed(t)
        self.metrics.shed.inc()
        raise Overloaded(expected_s, self.admission.policy.retry_after_s)

    def similar(self, item: str, k: int) -> tuple[Ranked, str]:
        model = self._model
        return model.similar(item, k), model.version

    def record_event(self, user: str, item: str, kind: str, ts: float | None) -> bool | asyncio.Future[bool]:
        """Store the event (the next recommendation sees it): whether the model knows the item, or a future of
        it that resolves once the event is stored (with an event writer). Raises :class:`EventsBacklogged`
        when the writer's queue is full."""
        known = self._model.knows_item(item)
        event = Event(user, item, kind, time.time() if ts is None else ts)
        if self.event_writer is None:
            self.store.append(event.user, event.item, event.kind, event.ts)
            self.metrics.events.labels(kind=kind).inc()
            return known
        stored = self.event_writer.submit(event)
        answer: asyncio.Future[bool] = stored.get_loop().create_future()

        def done(f: asyncio.Future[None]) -> None:
            if answer.done():
                return
            if f.cancelled():
                answer.cancel()
            elif f.exception() is not None:
                answer.set_exception(f.exception())  # type: ignore[arg-type]
            else:
                answer.set_result(known)

        stored.add_done_callback(done)
        return answer

    def _count_events(self, events: list[Event]) -> None:
        for event in events:
            self.metrics.events.labels(kind=event.kind).inc()

    def _busy_for(self, now: float) -> float:
        running = self.driver.running()
        if not running:
            return 0.0
        st = self.admission.service_time
        return max(start + st.predict(size) - now for start, size in running)

    def _on_batch(self, size: int, duration_s: float) -> None:
        self.admission.service_time.observe(size, duration_s)
        self.metrics.batch_size.observe(size)

    def _run_batch(self, requests: Sequence[_Request | _ScoreRequest], tier: Tier | None = None) -> list[Any]:
        """Runs in the batch worker: live histories from the store, then one model call."""
        model: Any = self._model  # one model per batch, even if a reload swaps it meanwhile
        tier = _supported(self.slo.tier if tier is None else tier, model.tiers)
        if requests and isinstance(requests[0], _ScoreRequest):
            if not _scores_rows(model):  # a reload swapped a ranker for a recommender meanwhile
                raise ConfigError("the model being served no longer scores rows")
            t0 = time.perf_counter()
            probs = model.score_batch([r.rows for r in requests if isinstance(r, _ScoreRequest)], tier)
            self.metrics.stage["ranking"].observe(time.perf_counter() - t0)
            return [Scored(p, tier, model.version) for p in probs]
        t0 = time.perf_counter()
        n = self.settings.history_len
        known = [r.user for r in requests if isinstance(r, _Request) and r.user is not None]
        stored = iter(self.store.history_many(known, n) if known else [])
        queries = []
        for r in requests:
            assert isinstance(r, _Request)
            live = next(stored) if r.user is not None else []
            history = (*live, *r.recent)[-n:] if r.recent else tuple(live)
            queries.append(Query(r.user, history, r.k, r.exclude, r.exclude_seen))
        store_s = time.perf_counter() - t0
        out = model.recommend_batch(queries, tier)
        timings = dict(out.timings)
        timings["features"] = timings.get("features", 0.0) + store_s
        for stage, seconds in timings.items():
            hist = self.metrics.stage.get(stage)
            if hist is not None:
                hist.observe(seconds)
        return [Answer(ranked, tier, model.version) for ranked in out.results]

    # ------------------------------------------------------------- reload
    async def reload(self, artifact: Path | None = None) -> tuple[str, str]:
        """Load ``artifact`` (default: the one served), smoke-test it, swap it in; (new, old) versions."""
        if self._loader is None:
            raise ReloadRefused("this service was started without an artifact loader; reload is unavailable")
        path = self._confined(artifact) if artifact is not None else self._artifact
        if path is None:
            raise ReloadRefused("no artifact path given and none is being served")
        if self._reloading:
            raise ReloadBusy("a reload is already in progress")
        self._reloading = True
        try:
            new = await asyncio.get_running_loop().run_in_executor(None, self._load_checked, path)
        except ReloadRefused:
            self.metrics.reloads.labels(outcome="refused").inc()
            raise
        finally:
            self._reloading = False
        old = self._model
        self._model = new
        self._artifact = path
        self.slo.set_ladder(time.perf_counter(), new.tiers)
        self.metrics.set_model(new.version)
        self.metrics.reloads.labels(outcome="ok").inc()
        log.warning("reloaded model %s -> %s from %s", old.version, new.version, path)
        return new.version, old.version

    def _confined(self, artifact: Path) -> Path:
        """``artifact`` resolved (links followed), if it lies inside the artifacts root.

        Refused with the same words whether or not the path exists (links are followed, so a link inside
        the root that points out of it is outside too): the endpoint is no oracle for what is on the disk.
        """
        root = self.settings.reload_root
        outside = ReloadOutsideRoot("the artifact path is outside the artifacts root")
        if root is None:
            raise outside
        resolved = Path(os.path.realpath(artifact))
        if not resolved.is_relative_to(os.path.realpath(root)):
            raise outside
        return resolved

    def _load_checked(self, path: Path) -> ServingModel:
        assert self._loader is not None
        try:
            model = self._loader(path)
            for size in (1, self.settings.max_batch, 1):  # smoke test, and warms the new model up
                for tier in model.tiers:
                    _smoke_test(path, model, tier, size)
        except TurborecError as exc:
            raise ReloadRefused(f"refused artifact {path}: {exc}") from exc
        except Exception as exc:  # a broken artifact must never take the service down
            raise ReloadRefused(f"refused artifact {path}: {type(exc).__name__}: {exc}") from exc
        return model


def _smoke_test(path: Path, model: ServingModel, tier: Tier, size: int, k: int = 5) -> None:
    """One batch of anonymous queries must come back whole: a result per query, each with k items (a model
    knows more than k) and every score finite. Non-finite scores are exactly what a damaged model gives, and
    checking only the finite ones would pass a model that answers every request with an empty list."""
    if _scores_rows(model):  # a CTR ranker: one finite probability per probe row
        probs = _probe(model, size, tier)
        if len(probs) != size or not all(len(p) == 1 and np.all(np.isfinite(p)) for p in probs):
            raise ArtifactError(f"{path}: smoke test ({tier.label}) gave missing or non-finite probabilities")
        return
    out = model.recommend_batch([Query(None, (), k=k)] * size, tier)
    if len(out.results) != size:
        raise ArtifactError(f"{path}: smoke test ({tier.label}) gave {len(out.results)} answers for {size} queries")
    for ranked in out.results:
        if len(ranked.items) != k or len(ranked.scores) != k:
            raise ArtifactError(f"{path}: smoke test ({tier.label}) gave {len(ranked.items)} items where {k} were asked")
        if not np.all(np.isfinite(ranked.scores)):
            raise ArtifactError(f"{path}: smoke test ({tier.label}) gave non-finite scores")


def _supported(tier: Tier, ladder: Sequence[Tier]) -> Tier:
    """The given tier if the model has it, else the next cheaper one it has (POPULAR always exists)."""
    for candidate in sorted(ladder):
        if candidate >= tier:
            return candidate
    return max(ladder)
