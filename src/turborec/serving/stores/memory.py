"""In-process store: a bounded deque per user; least recently active users evicted past ``max_users`` users
or ``max_bytes`` bytes.

The byte bound is what protects the process: ids are client-chosen, so a count of users alone lets a
stream of new-user events with long ids grow memory by a kilobyte each. Sizes are counted as CPython
holds them (``sys.getsizeof`` of each id string, plus the deque and the dictionary entry of a user),
so the bound is close to the real footprint, not a count of characters.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from turborec.errors import ConfigError
from turborec.serving.stores.base import Event

USER_ENTRY_BYTES = sys.getsizeof(deque(maxlen=1)) + 100  # the user's deque + its OrderedDict entry and links


class MemoryStore:
    def __init__(self, max_per_user: int = 50, max_users: int = 1_000_000, max_bytes: int | None = None,
                 on_evict: Callable[[], None] | None = None) -> None:
        if max_per_user < 1 or max_users < 1:
            raise ConfigError(f"MemoryStore: max_per_user={max_per_user} and max_users={max_users} must be >= 1")
        if max_bytes is not None and max_bytes < 64 * 1024:
            raise ConfigError(f"MemoryStore: max_bytes={max_bytes} must be at least 64 KiB")
        self.max_per_user = max_per_user
        self.max_users = max_users
        self.max_bytes = max_bytes
        self.on_evict = on_evict  # called once per evicted user (the service counts them in a metric)
        self.evictions = 0
        self._bytes = 0
        self._users: OrderedDict[str, deque[str]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._users)

    @property
    def bytes_used(self) -> int:
        """The store's estimated footprint in bytes (what ``max_bytes`` bounds)."""
        return self._bytes

    def history(self, user: str, n: int) -> list[str]:
        with self._lock:
            items = self._users.get(user)
            if not items or n <= 0:
                return []
            return list(items)[-n:]

    def history_many(self, users: Sequence[str], n: int) -> list[list[str]]:
        with self._lock:
            out: list[list[str]] = []
            for user in users:
                items = self._users.get(user)
                out.append(list(items)[-n:] if items and n > 0 else [])
            return out

    def append(self, user: str, item: str, kind: str = "view", ts: float = 0.0) -> None:
        with self._lock:
            self._append(user, item)

    def append_many(self, events: Sequence[Event]) -> None:
        with self._lock:
            for ev in events:
                self._append(ev.user, ev.item)

    def forget(self, user: str) -> None:
        with self._lock:
            items = self._users.pop(user, None)
            if items is not None:
                self._bytes -= _user_bytes(user, items)

    def close(self) -> None:
        with self._lock:
            self._users.clear()
            self._bytes = 0

    def _append(self, user: str, item: str) -> None:
        items = self._users.get(user)
        if items is None:
            items = self._users[user] = deque(maxlen=self.max_per_user)
            self._bytes += sys.getsizeof(user) + USER_ENTRY_BYTES
        else:
            self._users.move_to_end(user)
            if len(items) == items.maxlen:
                self._bytes -= sys.getsizeof(items[0])  # the append below pushes the oldest out
        items.append(item)
        self._bytes += sys.getsizeof(item)
        while len(self._users) > 1 and (
            len(self._users) > self.max_users or (self.max_bytes is not None and self._bytes > self.max_bytes)
        ):
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        user, items = self._users.popitem(last=False)
        self._bytes -= _user_bytes(user, items)
        self.evictions += 1
        if self.on_evict is not None:
            self.on_evict()


def _user_bytes(user: str, items: deque[str]) -> int:
    return sys.getsizeof(user) + USER_ENTRY_BYTES + sum(sys.getsizeof(i) for i in items)
