"""Event writes off the event loop: a bounded queue and one writer thread that commits them in batches.

A store that does I/O (SQLite, Redis) costs a commit or a round trip per event. Written inline, on the
event loop, a flood of events holds the loop -- and every recommendation behind it -- for as long as
those writes take. Here ``submit`` only queues the event; the writer thread takes whatever has queued
up since its last write (up to ``max_batch``) and stores it with one ``append_many`` (one transaction),
so the cost per event falls as the flood grows. An event is acknowledged only once its batch is
stored (a crash loses no acknowledged event), and past ``max_pending`` queued events new ones are
refused at once (503, ``Retry-After``) instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable

from turborec.serving.stores.base import Event, Store


class EventsBacklogged(Exception):
    """More events are waiting to be stored than the queue holds: answer 503 with ``Retry-After``."""

    def __init__(self, pending: int, retry_after_s: float = 1.0) -> None:
        super().__init__(f"overloaded: {pending} events are waiting to be stored")
        self.retry_after_s = retry_after_s


class EventWriter:
    def __init__(self, store: Store, max_pending: int = 10_000, max_batch: int = 512,
                 on_stored: Callable[[list[Event]], None] | None = None) -> None:
        self.store = store
        self.max_pending = max_pending
        self.max_batch = max_batch
        self._on_stored = on_stored
        self._queue: deque[tuple[Event, asyncio.Future[None], asyncio.AbstractEventLoop]] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.batches = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, event: Event) -> asyncio.Future[None]:
        """Queue ``event`` (call on the event loop); the future resolves once it is stored."""
        if self._closing:
            raise RuntimeError("the event writer is closed")
        if len(self._queue) >= self.max_pending:
            raise EventsBacklogged(len(self._queue))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._wake:
            self._queue.append((event, fut, loop))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="turborec-events", daemon=True)
                self._thread.start()
            self._wake.notify()
        return fut

    def close(self, timeout_s: float = 10.0) -> None:
        """Store what is queued, then stop the writer thread."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
            events = [event for event, _, _ in batch]
            error: BaseException | None = None
            try:
                self.store.append_many(events)
                if self._on_stored is not None:
                    self._on_stored(events)
            except Exception as exc:  # answered as an error to every event of the batch
                error = exc
            self.batches += 1
            for _, fut, loop in batch:
                with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits for the answer
                    loop.call_soon_threadsafe(_settle, fut, error)


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
