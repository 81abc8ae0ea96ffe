"""One contract, three stores: in-memory, SQLite (WAL) and Redis (a real redis-server on loopback)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from turborec.errors import ConfigError
from turborec.serving.settings import ServeSettings
from turborec.serving.stores import Event, MemoryStore, RedisStore, SQLiteStore, Store, open_store

MAX = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.02)
        else:
            pytest.fail("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


StoreFactory = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    made: list[Store] = []
    prefix = f"test:{request.node.name}:"

    def factory() -> Store:
        if request.param == "memory":
            store: Store = MemoryStore(max_per_user=MAX) if not made else made[0]
        elif request.param == "sqlite":
            store = SQLiteStore(tmp_path / "state.db", max_per_user=MAX)
        else:
            store = RedisStore(request.getfixturevalue("redis_url"), max_per_user=MAX, prefix=prefix)
        made.append(store)
        return store

    yield factory
    if request.param == "redis" and made:
        for user in ("u1", "u2", "u3", "gone"):
            made[0].forget(user)
    for store in {id(s): s for s in made}.values():
        store.close()


def test_unknown_user_has_no_history(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.history("nobody", 10) == []
    assert store.history_many(["nobody", "else"], 3) == [[], []]


def test_history_is_oldest_first_and_cut_to_n(make_store: StoreFactory) -> None:
    store = make_store()
    for i, item in enumerate(["a", "b", "c", "d"]):
        store.append("u1", item, "view", float(i))
    assert store.history("u1", 10) == ["a", "b", "c", "d"]
    assert store.history("u1", 2) == ["c", "d"]
    assert store.history("u1", 0) == []


def test_each_user_is_bounded(make_store: StoreFactory) -> None:
    store = make_store()
    for i in range(3 * MAX):
        store.append("u1", f"i{i}", "click", float(i))
    assert store.history("u1", 100) == [f"i{i}" for i in range(2 * MAX, 3 * MAX)]


def test_users_are_independent_and_batched_reads_match(make_store: StoreFactory) -> None:
    store = make_store()
    store.append_many([Event("u1", "x", "view", 1.0), Event("u2", "y", "purchase", 2.0), Event("u1", "z", "click", 3.0)])
    assert store.history("u1", 10) == ["x", "z"]
    assert store.history("u2", 10) == ["y"]
    assert store.history_many(["u2", "u3", "u1"], 1) == [["y"], [], ["z"]]
    store.append_many([])  # nothing to do is fine


def test_repeated_items_are_kept_in_order(make_store: StoreFactory) -> None:
    store = make_store()
    for item in ["a", "b", "a"]:
        store.append("u1", item)
    assert store.history("u1", 10) == ["a", "b", "a"]


def test_forget_removes_a_user(make_store: StoreFactory) -> None:
    store = make_store()
    store.append("gone", "a")
    store.append("u1", "b")
    store.forget("gone")
    assert store.history("gone", 10) == []
    assert store.history("u1", 10) == ["b"]


def test_a_second_handle_sees_the_same_state(make_store: StoreFactory) -> None:
    """Same process for memory; a reopened file for SQLite (a restart); another client for Redis (a replica)."""
    first = make_store()
    first.append("u1", "persisted")
    second = make_store()
    assert second.history("u1", 10) == ["persisted"]


def test_concurrent_appends_lose_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    users = [f"c{t}" for t in range(4)]

    def writer(user: str) -> None:
        for i in range(MAX):
            store.append(user, f"{user}-{i}")

    threads = [threading.Thread(target=writer, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for u in users:
        assert store.history(u, MAX) == [f"{u}-{i}" for i in range(MAX)]
        store.forget(u)


def test_memory_store_evicts_the_least_recently_active_user() -> None:
    store = MemoryStore(max_per_user=3, max_users=2)
    store.append("old", "a")
    store.append("mid", "b")
    store.append("old", "c")  # "old" is active again; "mid" is now the least recent
    store.append("new", "d")
    assert len(store) == 2
    assert store.history("mid", 5) == []
    assert store.history("old", 5) == ["a", "c"]


def test_open_store_follows_settings(tmp_path: Path) -> None:
    assert isinstance(open_store(ServeSettings()), MemoryStore)
    sqlite = open_store(ServeSettings(store="sqlite", store_path=tmp_path / "s.db", history_len=7))
    assert isinstance(sqlite, SQLiteStore) and sqlite.max_per_user == 7
    sqlite.close()
    with pytest.raises(ConfigError, match="store_path"):
        ServeSettings(store="sqlite")
    with pytest.raises(ConfigError, match="redis_url"):
        ServeSettings(store="redis")


def test_unreachable_redis_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot reach"):
        RedisStore(f"redis://127.0.0.1:{free_port()}/0")


def test_sqlite_in_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        SQLiteStore(tmp_path / "no" / "such" / "state.db")
