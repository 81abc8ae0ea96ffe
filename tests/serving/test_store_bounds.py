"""The in-memory store is bounded in bytes, not only in users; ids are capped; events can need a token
(issue 15.9)."""

from __future__ import annotations

import tracemalloc

import httpx

from tests.serving.test_app import Client, make_service, run
from turborec.serving.net_model import NetServingModel
from turborec.serving.server import background_server
from turborec.serving.service import RecommendService
from turborec.serving.settings import ServeSettings
from turborec.serving.stores import MemoryStore
from turborec.serving.stores.open import open_store

EVENTS_TOKEN = "events-token-123"


def test_new_users_with_long_ids_stay_within_the_byte_bound() -> None:
    limit = 1 << 20
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = MemoryStore(max_per_user=50, max_users=1_000_000, max_bytes=limit)
        for i in range(20_000):  # ~1.2 KB per new user: 24 MB unbounded
            store.append(f"user-{i:06d}-".ljust(128, "x"), f"item-{i % 300}")
        real = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.bytes_used <= limit
    assert real <= 1.5 * limit, real  # the estimate follows what CPython really holds
    assert store.evictions > 15_000 and len(store) == 20_000 - store.evictions
    newest = f"user-{19_999:06d}-".ljust(128, "x")
    assert store.history(newest, 5) == ["item-199"]
    assert store.history(f"user-{0:06d}-".ljust(128, "x"), 5) == []  # least recently active: gone


def test_the_bound_counts_a_users_items_and_forgets_evicted_bytes() -> None:
    store = MemoryStore(max_per_user=3, max_bytes=64 * 1024)
    for i in range(100):
        store.append("u", f"item-{i}")
    one_user = store.bytes_used
    assert store.history("u", 10) == ["item-97", "item-98", "item-99"]
    store.forget("u")
    assert store.bytes_used == 0 and one_user > 0


def test_evictions_are_a_metric_and_long_ids_are_refused(model: NetServingModel, front_end: str) -> None:
    settings = ServeSettings(slo_p99_ms=2000.0, max_id_length=64, store_max_bytes=64 * 1024)
    service = RecommendService(model, open_store(settings), settings)

    async def body(c: Client) -> None:
        for i in range(200):
            r = await c.post("/v1/events", json={"user": f"u{i}".ljust(64, "z"), "item": "1"})
            assert r.status_code == 200, r.text
        r = await c.post("/v1/events", json={"user": "x" * 65, "item": "1"})
        assert r.status_code == 422
        text = (await c.get("/metrics")).text
        evicted = next(float(line.split()[1]) for line in text.splitlines()
                       if line.startswith("turborec_store_evictions_total "))
        assert isinstance(service.store, MemoryStore)
        assert evicted > 0 and evicted == service.store.evictions

    run(service, body, front_end)


def test_an_events_token_guards_events(model: NetServingModel, front_end: str) -> None:
    service = make_service(model, events_token=EVENTS_TOKEN)

    async def body(c: Client) -> None:
        ev = {"user": "1", "item": "2"}
        assert (await c.post("/v1/events", json=ev)).status_code == 401
        wrong = await c.post("/v1/events", json=ev, headers={"authorization": "Bearer nope-nope-nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        r = await c.post("/v1/events", json=ev, headers={"authorization": f"Bearer {EVENTS_TOKEN}"})
        assert r.status_code == 200
        assert (await c.post("/v1/recommend", json={"user": "1"})).status_code == 200  # reads stay open

    run(service, body, front_end)


def test_the_lean_server_checks_the_events_token(model: NetServingModel) -> None:
    service = make_service(model, events_token=EVENTS_TOKEN)
    with background_server(service, http="lean") as srv, httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.post("/v1/events", json={"user": "1", "item": "2"}).status_code == 401
        ok = c.post("/v1/events", json={"user": "1", "item": "2"},
                    headers={"authorization": f"Bearer {EVENTS_TOKEN}"})
        assert ok.status_code == 200
