"""UserEmbeddingCache: keyed by (user, history version), LRU-bounded, safe across threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from turborec.backends import UserEmbeddingCache
from turborec.errors import ConfigError, DataError


def _vector(user: int, version: int) -> np.ndarray:
    return np.array([user, version, user * 10 + version], dtype=np.float32)


class CountingTower:
    """Stands in for ``runner({...})``: records which batch rows it was asked to compute."""

    def __init__(self, users: np.ndarray, versions: np.ndarray) -> None:
        self.users, self.versions = users, versions
        self.calls: list[list[int]] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.calls.append(rows.tolist())
        return np.stack([_vector(int(self.users[r]), int(self.versions[r])) for r in rows])


def test_lookup_computes_only_missing_rows_in_one_call() -> None:
    cache = UserEmbeddingCache(capacity=10)
    users, versions = np.array([1, 2, 3]), np.array([0, 0, 0])
    tower = CountingTower(users, versions)
    first = cache.lookup(users, versions, tower)
    assert tower.calls == [[0, 1, 2]]
    users2, versions2 = np.array([3, 4, 1, 2]), np.array([0, 0, 0, 5])  # user 2's history moved on
    tower2 = CountingTower(users2, versions2)
    second = cache.lookup(users2, versions2, tower2)
    assert tower2.calls == [[1, 3]], "only the new user and the user with a new history version"
    np.testing.assert_array_equal(second[0], first[2])
    np.testing.assert_array_equal(second[3], _vector(2, 5))
    assert cache.stats.hits == 2 and cache.stats.misses == 5


def test_new_version_replaces_the_old_entry() -> None:
    cache = UserEmbeddingCache(capacity=10)
    cache.put(7, 1, _vector(7, 1))
    cache.put(7, 2, _vector(7, 2))
    assert len(cache) == 1
    assert cache.get(7, 1) is None
    np.testing.assert_array_equal(cache.get(7, 2), _vector(7, 2))


def test_least_recently_used_user_is_evicted() -> None:
    cache = UserEmbeddingCache(capacity=2)
    cache.put(1, 0, _vector(1, 0))
    cache.put(2, 0, _vector(2, 0))
    assert cache.get(1, 0) is not None  # 1 is now the most recent
    cache.put(3, 0, _vector(3, 0))
    assert cache.get(2, 0) is None and cache.get(1, 0) is not None and cache.get(3, 0) is not None
    assert cache.stats.evictions == 1 and len(cache) == 2


def test_anonymous_users_are_never_cached_and_entries_are_read_only() -> None:
    cache = UserEmbeddingCache(capacity=4)
    users, versions = np.array([-1, -1, 5]), np.array([0, 0, 0])
    tower = CountingTower(users, versions)
    cache.lookup(users, versions, tower)
    cache.lookup(users, versions, tower)
    assert tower.calls == [[0, 1, 2], [0, 1]]
    stored = cache.get(5, 0)
    assert stored is not None
    with pytest.raises(ValueError):
        stored[0] = 99.0
    cache.invalidate(5)
    assert cache.get(5, 0) is None


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        UserEmbeddingCache(0)
    cache = UserEmbeddingCache(2)
    with pytest.raises(DataError, match="same length"):
        cache.lookup(np.array([1, 2]), np.array([0]), lambda rows: np.zeros((len(rows), 3)))
    with pytest.raises(DataError, match="shape"):
        cache.lookup(np.array([1, 2]), np.array([0, 0]), lambda rows: np.zeros((1, 3)))


def test_concurrent_lookups_stay_consistent() -> None:
    cache = UserEmbeddingCache(capacity=50)
    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(200):
            users = rng.integers(0, 80, 8)
            versions = users % 3
            got = cache.lookup(users, versions, CountingTower(users, versions))
            expected = np.stack([_vector(int(u), int(v)) for u, v in zip(users, versions)])
            if not np.array_equal(got, expected):
                errors.append(f"seed {seed}: wrong vectors")
                return

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(cache) <= 50
    assert cache.stats.hits > 0 and cache.stats.hits + cache.stats.misses == 4 * 200 * 8
