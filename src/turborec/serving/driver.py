"""The asyncio driver around :class:`~turborec.serving.batching.MicroBatcher`.

It owns the futures and the timer; the state machine owns every decision.
Times are ``time.perf_counter`` (uvloop's ``loop.time()`` is cached per loop
iteration and in whole milliseconds: too coarse for sub-millisecond batching).
A batch runs in a worker thread (``executor="thread"``, the default: the event
loop keeps reading requests while torch computes with the GIL released, so the
next batch forms meanwhile) or on the loop itself (``"inline"``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter as clock
from typing import Generic, TypeVar

from turborec.errors import ConfigError
from turborec.serving.batching import BatchPolicy, Decision, MicroBatcher

Q = TypeVar("Q")
R = TypeVar("R")


class BatchDriver(Generic[Q, R]):
    """``await submit(item)`` -> that item's result from one ``run_batch(items)`` call among many."""

    def __init__(
        self,
        run_batch: Callable[[list[Q]], Sequence[R]],
        policy: BatchPolicy | None = None,
        *,
        executor: str = "thread",
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if executor not in ("thread", "inline"):
            raise ConfigError(f"executor={executor!r}: must be 'thread' or 'inline'")
        self.batcher = MicroBatcher(policy)
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._pool = (
            ThreadPoolExecutor(self.batcher.policy.max_in_flight, thread_name_prefix="turborec-batch")
            if executor == "thread"
            else None
        )
        self._ids = itertools.count()
        self._waiting: dict[int, tuple[Q, asyncio.Future[R]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._running: dict[int, tuple[float, int]] = {}  # batch number -> (start time, size)
        self._batch_no = itertools.count()
        self._closed = False
        self._flush_pending = False

    # ---------------------------------------------------------------- state
    @property
    def queue_depth(self) -> int:
        return self.batcher.queue_depth

    def running(self) -> list[tuple[float, int]]:
        """(start time on ``time.perf_counter``, size) of each batch in flight."""
        return list(self._running.values())

    # ---------------------------------------------------------------- input
    def submit_nowait(self, item: Q) -> asyncio.Future[R]:
        """Queue ``item``; the future resolves with its result (no task per request: callers may add a callback)."""
        if self._closed:
            raise RuntimeError("batch driver is closed")
        loop = asyncio.get_running_loop()
        rid = next(self._ids)
        fut: asyncio.Future[R] = loop.create_future()
        self._waiting[rid] = (item, fut)
        # record now, decide once the loop has read everything that is ready (end of this iteration):
        # requests that arrive together then leave together
        self.batcher.arrive(rid, clock(), decide=False)
        if not self._flush_pending:
            self._flush_pending = True
            loop.call_soon(self._flush, loop)
        fut.request_id = rid  # type: ignore[attr-defined]
        return fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_pending = False
        self._apply(loop, self.batcher.tick(clock()))

    async def submit(self, item: Q) -> R:
        fut = self.submit_nowait(item)
        try:
            return await fut
        except asyncio.CancelledError:  # the client went away: do not compute for nobody
            self.cancel(fut)
            raise

    def cancel(self, fut: asyncio.Future[R]) -> None:
        """Withdraw a request that has not been dispatched yet."""
        rid = getattr(fut, "request_id", None)
        if rid is not None and self._waiting.pop(rid, None) is not None:
            self.batcher.drop(rid)

    async def close(self) -> None:
        """Finish what is queued, then stop the worker thread."""
        self._closed = True
        while self._waiting or self._running:
            await asyncio.sleep(0.005)
        if self._timer is not None:
            self._timer.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    # ------------------------------------------------------------- machinery
    def _apply(self, loop: asyncio.AbstractEventLoop, decision: Decision) -> None:
        for ids in decision.batches:
            self._start(loop, ids)
        if decision.wake_at is not None and (self._timer_at is None or decision.wake_at < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = decision.wake_at
            self._timer = loop.call_later(max(decision.wake_at - clock(), 0.0), self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._timer_at = None
        self._apply(loop, self.batcher.tick(clock()))

    def _start(self, loop: asyncio.AbstractEventLoop, ids: tuple[int, ...]) -> None:
        entries = [(rid, self._waiting.pop(rid)) for rid in ids if rid in self._waiting]
        items = [item for _, (item, _f) in entries]
        futures = [f for _, (_i, f) in entries]
        number = next(self._batch_no)
        start = clock()
        self._running[number] = (start, len(items))

        def finish(results: Sequence[R] | None, error: BaseException | None) -> None:
            del self._running[number]
            for i, fut in enumerate(futures):
                if fut.done():
                    continue
                if error is not None:
                    fut.set_exception(error)
                elif results is not None:
                    fut.set_result(results[i])
            now = clock()
            if self._on_batch is not None and items:
                self._on_batch(len(items), now - start)
            self._apply(loop, self.batcher.batch_done(now))

        if self._pool is None:
            loop.call_soon(self._run_inline, items, finish)
        else:
            cf = self._pool.submit(self._run_checked, items)
            cf.add_done_callback(
                lambda f: loop.call_soon_threadsafe(
                    finish, *(f.result() if not f.cancelled() else (None, RuntimeError("batch cancelled")))
                )
            )

    def _run_checked(self, items: list[Q]) -> tuple[Sequence[R] | None, BaseException | None]:
        if not items:
            return [], None
        try:
            results = self._run_batch(items)
        except Exception as exc:
            return None, exc
        if len(results) != len(items):
            return None, RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
        return results, None

    def _run_inline(self, items: list[Q], finish: Callable[[Sequence[R] | None, BaseException | None], None]) -> None:
        finish(*self._run_checked(items))
