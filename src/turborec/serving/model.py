"""The narrow interface between the service and a model: ``ServingModel``.

The service knows nothing of networks, vocabularies or indexes. It hands a model
a batch of :class:`Query` (user id or None, live recent items, k, filters) and a
:class:`~turborec.serving.tiers.Tier`, and gets back ids and scores per query.
External ids are strings at this boundary (``"42"``), whatever their type in
the training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from turborec.serving.tiers import Tier


@dataclass(frozen=True)
class Query:
    """One recommendation request as the model sees it.

    ``history``: the user's live recent items (events since serving started,
    plus items sent with the request), oldest first. ``exclude_seen`` also drops
    the items the model saw the user interact with in training.
    """

    user: str | None
    history: tuple[str, ...] = ()
    k: int = 10
    exclude: frozenset[str] = frozenset()
    exclude_seen: bool = True


@dataclass(frozen=True)
class Ranked:
    """Result for one query: item ids (best first) and their scores."""

    items: list[str]
    scores: np.ndarray  # float32, same length as items
    user_known: bool


@dataclass
class BatchOutput:
    results: list[Ranked]
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds ("features", "retrieval", "ranking")


@runtime_checkable
class ServingModel(Protocol):
    """What the service needs from a model. Implementations must be safe to call from one worker thread
    while other threads read ``version`` / ``tiers`` (they are immutable after construction)."""

    @property
    def version(self) -> str: ...

    @property
    def tiers(self) -> tuple[Tier, ...]:
        """The ladder this model implements, best first; always ends with ``Tier.POPULAR``."""
        ...

    def recommend_batch(self, queries: Sequence[Query], tier: Tier) -> BatchOutput: ...

    def similar(self, item: str, k: int) -> Ranked:
        """Items most similar to ``item`` (itself excluded); raises ``UnknownIdError`` for an unknown item."""
        ...

    def knows_item(self, item: str) -> bool: ...
