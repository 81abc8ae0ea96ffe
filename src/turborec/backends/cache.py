"""An LRU cache of user vectors keyed by (user id, history version).

A user's vector only changes when their history does, so serving can skip the user tower
for repeat requests. Each user holds one entry: a request with a newer history version
misses and replaces it, so stale vectors never pile up. Anonymous users (id < 0) are
never cached: their vector depends on a history that has no version.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from turborec.errors import ConfigError, DataError


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class UserEmbeddingCache:
    """Thread-safe LRU of ``user id -> (version, vector)`` holding at most ``capacity`` users."""

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"UserEmbeddingCache: capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self.stats = CacheStats()
        self._entries: OrderedDict[int, tuple[int, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: int, version: int) -> np.ndarray | None:
        """The cached vector if this user's cached version is ``version``, else None (counted as a miss)."""
        with self._lock:
            entry = self._entries.get(int(user_id)) if user_id >= 0 else None
            if entry is None or entry[0] != int(version):
                self.stats.misses += 1
                return None
            self._entries.move_to_end(int(user_id))
            self.stats.hits += 1
            return entry[1]

    def put(self, user_id: int, version: int, vector: np.ndarray) -> None:
        if user_id < 0:
            return
        stored = np.array(vector, dtype=np.float32, copy=True)
        stored.flags.writeable = False
        with self._lock:
            self._entries[int(user_id)] = (int(version), stored)
            self._entries.move_to_end(int(user_id))
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
                self.stats.evictions += 1

    def invalidate(self, user_id: int) -> None:
        with self._lock:
            self._entries.pop(int(user_id), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def lookup(
        self, user_ids: np.ndarray, versions: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """Vectors [B, d] for a batch: cached rows as they are, the rest from one call
        ``compute(rows)`` (``rows`` indexes the batch; it returns their vectors in that order)."""
        users = np.asarray(user_ids).ravel()
        vers = np.asarray(versions).ravel()
        if users.shape != vers.shape:
            raise DataError(
                f"user_ids {users.shape} and versions {vers.shape} must have the same length", source="cache"
            )
        found = [self.get(int(u), int(v)) for u, v in zip(users, vers)]
        missing = np.array([i for i, f in enumerate(found) if f is None], dtype=np.int64)
        if missing.size:
            computed = np.asarray(compute(missing), dtype=np.float32)
            if computed.ndim != 2 or computed.shape[0] != missing.size:
                raise DataError(f"compute returned shape {computed.shape} for {missing.size} rows", source="cache")
            for row, vector in zip(missing, computed):
                found[row] = vector
                self.put(int(users[row]), int(vers[row]), vector)
        if not found:
            return np.empty((0, 0), dtype=np.float32)
        return np.stack([np.asarray(f) for f in found])


__all__ = ["CacheStats", "UserEmbeddingCache"]
