"""SQLite store (WAL): user state that survives a restart on one machine."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from turborec.errors import ConfigError
from turborec.serving.stores.base import Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    item TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user_seq ON events (user, seq);
"""
# keep only each user's newest max_per_user rows: everything at or below the (max+1)-th newest goes
_TRIM = """
DELETE FROM events WHERE user = ?1 AND seq <= (
    SELECT seq FROM events WHERE user = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2
)
"""
_HISTORY = "SELECT item FROM events WHERE user = ? ORDER BY seq DESC LIMIT ?"


class SQLiteStore:
    def __init__(self, path: str | os.PathLike[str], max_per_user: int = 50) -> None:
        if max_per_user < 1:
            raise ConfigError(f"SQLiteStore: max_per_user={max_per_user} must be >= 1")
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigError(f"SQLiteStore: folder {self.path.parent} does not exist")
        self.max_per_user = max_per_user
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"SQLiteStore: cannot open {self.path}: {exc}") from exc

    def history(self, user: str, n: int) -> list[str]:
        if n <= 0:
            return []
        with self._lock:
            rows = self._db.execute(_HISTORY, (user, n)).fetchall()
        return [r[0] for r in reversed(rows)]

    def history_many(self, users: Sequence[str], n: int) -> list[list[str]]:
        return [self.history(u, n) for u in users]

    def append(self, user: str, item: str, kind: str = "view", ts: float = 0.0) -> None:
        self.append_many([Event(user, item, kind, ts)])

    def append_many(self, events: Sequence[Event]) -> None:
        if not events:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO events (user, item, kind, ts) VALUES (?, ?, ?, ?)",
                    [(e.user, e.item, e.kind, float(e.ts)) for e in events],
                )
                for user in {e.user for e in events}:
                    self._db.execute(_TRIM, (user, self.max_per_user))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def forget(self, user: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM events WHERE user = ?", (user,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
