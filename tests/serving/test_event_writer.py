"""Event writes have their own admission and batching (issue 15.11): written off the event loop by one
thread, many per transaction, acknowledged only once stored, refused with 503 past a bounded queue -- and a
recommendation never waits behind them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.serving.test_app import Client, make_service
from turborec.serving.app import create_app
from turborec.serving.net_model import NetServingModel
from turborec.serving.service import RecommendService
from turborec.serving.settings import ServeSettings
from turborec.serving.stores.base import Event
from turborec.serving.stores.sqlite_store import SQLiteStore


class GatedSQLiteStore(SQLiteStore):
    """A real SQLite store whose writes wait for ``gate`` (at most ``hold_s``): a slow disk, on purpose."""

    def __init__(self, path: Path, hold_s: float = 60.0) -> None:
        super().__init__(path, max_per_user=20)
        self.gate = threading.Event()
        self.hold_s = hold_s
        self.writer_threads: set[str] = set()
        self.transactions = 0

    def append_many(self, events: Sequence[Event]) -> None:
        self.writer_threads.add(threading.current_thread().name)
        self.gate.wait(self.hold_s)
        self.transactions += 1
        super().append_many(events)


def service_on(store: GatedSQLiteStore, model: NetServingModel, **options: object) -> RecommendService:
    settings = ServeSettings(**{"slo_p99_ms": 2000.0, "store": "sqlite", "store_path": store.path, **options})  # type: ignore[arg-type]
    service = RecommendService(model, store, settings)
    service.warm_up(rounds=2)
    return service


def run_app(service: RecommendService, body: object) -> None:
    async def main() -> None:
        await service.start()
        try:
            transport = httpx.ASGITransport(app=create_app(service))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await body(client)  # type: ignore[operator]
        finally:
            service.store.gate.set()  # type: ignore[attr-defined]
            await service.stop()

    asyncio.run(main())


def test_events_are_batched_off_the_loop_and_acknowledged_once_stored(model: NetServingModel, tmp_path: Path) -> None:
    store = GatedSQLiteStore(tmp_path / "events.db")
    service = service_on(store, model)

    async def body(c: Client) -> None:
        posts = [asyncio.ensure_future(c.post("/v1/events", json={"user": f"u{i % 5}", "item": str(i)}))
                 for i in range(60)]
        await asyncio.sleep(0.3)
        assert not any(p.done() for p in posts)  # nothing acknowledged before it is stored
        r = await c.post("/v1/recommend", json={"user": "1", "k": 5})  # answered while the writes are stuck:
        assert r.status_code == 200 and not any(p.done() for p in posts)  # it did not wait behind them
        store.gate.set()
        answers = await asyncio.gather(*posts)
        assert {a.status_code for a in answers} == {200}
        assert store.transactions < 60  # several events per transaction
        assert store.writer_threads == {"turborec-events"}
        assert len(store.history("u1", 50)) == 12

    run_app(service, body)


def test_a_full_event_queue_refuses_at_once(model: NetServingModel, tmp_path: Path) -> None:
    store = GatedSQLiteStore(tmp_path / "events.db")
    service = service_on(store, model, max_pending_events=8)

    async def body(c: Client) -> None:
        posts = [asyncio.ensure_future(c.post("/v1/events", json={"user": "u", "item": str(i)})) for i in range(40)]
        await asyncio.sleep(0.3)
        refused = [p.result() for p in posts if p.done()]
        assert len(refused) >= 40 - 8 - 1 - 8  # the queue, the batch in the writer's hands
        assert {r.status_code for r in refused} == {503}
        assert all(r.headers["retry-after"] == "1" and "events" in r.json()["detail"] for r in refused)
        store.gate.set()
        answers = await asyncio.gather(*posts)
        assert sum(a.status_code == 200 for a in answers) == 40 - len(refused)

    run_app(service, body)


def test_the_memory_store_stays_inline(model: NetServingModel) -> None:
    assert make_service(model).event_writer is None
