"""Redis store: user state shared by every replica (one list per user, newest at the head)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from turborec._util.optional import require
from turborec.errors import ConfigError
from turborec.serving.stores.base import Event


class RedisStore:
    def __init__(self, url: str, max_per_user: int = 50, prefix: str = "turborec:hist:", client: Any = None) -> None:
        if max_per_user < 1:
            raise ConfigError(f"RedisStore: max_per_user={max_per_user} must be >= 1")
        self.max_per_user = max_per_user
        self.prefix = prefix
        if client is None:
            redis = require("redis", "serve")
            try:
                client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2.0)
                client.ping()
            except (ValueError, redis.RedisError) as exc:
                raise ConfigError(f"RedisStore: cannot reach {url}: {exc}") from exc
        self._r = client

    def _key(self, user: str) -> str:
        return self.prefix + user

    def history(self, user: str, n: int) -> list[str]:
        if n <= 0:
            return []
        return list(reversed(self._r.lrange(self._key(user), 0, n - 1)))

    def history_many(self, users: Sequence[str], n: int) -> list[list[str]]:
        if n <= 0:
            return [[] for _ in users]
        pipe = self._r.pipeline(transaction=False)
        for user in users:
            pipe.lrange(self._key(user), 0, n - 1)
        return [list(reversed(items)) for items in pipe.execute()]

    def append(self, user: str, item: str, kind: str = "view", ts: float = 0.0) -> None:
        self.append_many([Event(user, item, kind, ts)])

    def append_many(self, events: Sequence[Event]) -> None:
        if not events:
            return
        pipe = self._r.pipeline(transaction=True)
        for ev in events:
            pipe.lpush(self._key(ev.user), ev.item)
        for user in {ev.user for ev in events}:
            pipe.ltrim(self._key(user), 0, self.max_per_user - 1)
        pipe.execute()

    def forget(self, user: str) -> None:
        self._r.delete(self._key(user))

    def close(self) -> None:
        self._r.close()
