"""Named evaluation protocols: preprocessing + split, reproducible by name and seed.

A protocol is a small frozen record in a registry; adding one is
``register_protocol(Protocol(...))``. Names are user-facing (CLI, configs,
reports), so they stay stable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from turborec.data.filters import filter_min_rating, kcore
from turborec.data.interactions import Interactions
from turborec.data.splits import Split, leave_last_out, random_split, temporal_split
from turborec.errors import ConfigError

__all__ = ["PROTOCOLS", "Protocol", "apply_protocol", "get_protocol", "register_protocol"]


@dataclass(frozen=True)
class Protocol:
    """Drop low ratings (when the data has ratings), k-core filter, then split."""

    name: str
    description: str
    split: Callable[[Interactions, int], Split]
    min_rating: float | None = None
    user_k: int = 0
    item_k: int = 0

    def prepare(self, interactions: Interactions) -> Interactions:
        x = interactions
        if self.min_rating is not None and x.rating is not None:
            x = filter_min_rating(x, self.min_rating)
        if self.user_k > 1 or self.item_k > 1:
            x = kcore(x, max(self.user_k, self.item_k), user_k=self.user_k, item_k=self.item_k)
        return x

    def apply(self, interactions: Interactions, seed: int = 2020) -> Split:
        split = self.split(self.prepare(interactions), seed)
        return Split(split.train, split.valid, split.test, {"protocol": self.name, "seed": seed, **split.info})


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    if protocol.name in PROTOCOLS:
        raise ConfigError(f"protocol {protocol.name!r} is already registered")
    PROTOCOLS[protocol.name] = protocol
    return protocol


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; known protocols: {', '.join(sorted(PROTOCOLS))}") from None


def apply_protocol(name: str, interactions: Interactions, seed: int = 2020) -> Split:
    """Run the protocol ``name`` on ``interactions``; the same name, data and seed give the same split."""
    return get_protocol(name).apply(interactions, seed)


register_protocol(
    Protocol(
        name="recbole",
        description="RecBole general-recommendation defaults: ratings >= 3 kept (when rated), "
        "iterative 10-core on users and items, random 8:1:1 per user",
        split=lambda x, seed: random_split(x, (0.8, 0.1, 0.1), seed=seed),
        min_rating=3.0,
        user_k=10,
        item_k=10,
    )
)
register_protocol(
    Protocol(
        name="leave-last-out",
        description="sequential-recommendation style: iterative 5-core, each user's last event to test "
        "and the one before to validation (all ratings count as interactions)",
        split=lambda x, seed: leave_last_out(x, n_valid=1, n_test=1),
        user_k=5,
        item_k=5,
    )
)
register_protocol(
    Protocol(
        name="temporal",
        description="iterative 5-core, then a global time split 8:1:1 (oldest to train, newest to test)",
        split=lambda x, seed: temporal_split(x, (0.8, 0.1, 0.1)),
        user_k=5,
        item_k=5,
    )
)
