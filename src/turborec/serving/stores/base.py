"""The ``Store`` protocol every user-state store implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Event:
    """One interaction as the service receives it; ``ts`` in seconds since the epoch."""

    user: str
    item: str
    kind: str = "view"
    ts: float = 0.0


@runtime_checkable
class Store(Protocol):
    """Recent items per user, most recent last; bounded per user (``max_per_user``).

    ``history`` returns at most ``n`` of the user's most recent items, oldest
    first (the order retrieval nets take); an unknown user has ``[]``.
    Implementations are safe to call from several threads.
    """

    max_per_user: int

    def history(self, user: str, n: int) -> list[str]: ...

    def history_many(self, users: Sequence[str], n: int) -> list[list[str]]: ...

    def append(self, user: str, item: str, kind: str = "view", ts: float = 0.0) -> None: ...

    def append_many(self, events: Sequence[Event]) -> None: ...

    def forget(self, user: str) -> None: ...

    def close(self) -> None: ...
