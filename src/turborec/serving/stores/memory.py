"""In-process store: a bounded deque per user, least recently active users evicted past ``max_users``."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence

from turborec.errors import ConfigError
from turborec.serving.stores.base import Event


class MemoryStore:
    def __init__(self, max_per_user: int = 50, max_users: int = 1_000_000) -> None:
        if max_per_user < 1 or max_users < 1:
            raise ConfigError(f"MemoryStore: max_per_user={max_per_user} and max_users={max_users} must be >= 1")
        self.max_per_user = max_per_user
        self.max_users = max_users
        self._users: OrderedDict[str, deque[str]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._users)

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
            self._users.pop(user, None)

    def close(self) -> None:
        with self._lock:
            self._users.clear()

    def _append(self, user: str, item: str) -> None:
        items = self._users.get(user)
        if items is None:
            items = self._users[user] = deque(maxlen=self.max_per_user)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(user)
        items.append(item)
