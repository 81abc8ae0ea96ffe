"""User-state stores: recent items per user, behind one small protocol.

- :class:`MemoryStore`: the default, one process, bounded per user and in users.
- :class:`SQLiteStore`: persists on one box (WAL), survives restarts.
- :class:`RedisStore`: state shared by several replicas (redis-py).

All three pass the same contract tests (tests/serving/test_store_contract.py).
"""

from __future__ import annotations

from turborec.serving.stores.base import Event, Store
from turborec.serving.stores.memory import MemoryStore
from turborec.serving.stores.open import open_store
from turborec.serving.stores.redis_store import RedisStore
from turborec.serving.stores.sqlite_store import SQLiteStore

__all__ = ["Event", "MemoryStore", "RedisStore", "SQLiteStore", "Store", "open_store"]
