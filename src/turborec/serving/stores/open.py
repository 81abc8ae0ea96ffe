"""Build the store a ``ServeSettings`` asks for (a registry, not a chain of name checks)."""

from __future__ import annotations

from collections.abc import Callable

from turborec.serving.settings import ServeSettings
from turborec.serving.stores.base import Store
from turborec.serving.stores.memory import MemoryStore
from turborec.serving.stores.redis_store import RedisStore
from turborec.serving.stores.sqlite_store import SQLiteStore

_OPENERS: dict[str, Callable[[ServeSettings], Store]] = {
    "memory": lambda s: MemoryStore(max_per_user=s.history_len, max_users=s.max_users, max_bytes=s.store_max_bytes),
    "sqlite": lambda s: SQLiteStore(s.store_path or "", max_per_user=s.history_len),
    "redis": lambda s: RedisStore(s.redis_url or "", max_per_user=s.history_len),
}


def open_store(settings: ServeSettings) -> Store:
    return _OPENERS[settings.store](settings)
