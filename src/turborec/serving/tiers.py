"""The degradation ladder: serving tiers from the most accurate to the cheapest."""

from __future__ import annotations

from enum import IntEnum


class Tier(IntEnum):
    """Lower is better and dearer. A model declares which of these it implements (``ServingModel.tiers``)."""

    FULL = 0  # all candidates, full ranker
    FEWER_CANDIDATES = 1  # a smaller candidate pool
    CHEAP_RANKER = 2  # int8 / student ranker on the smaller pool
    RETRIEVAL_ONLY = 3  # retrieval scores, no ranker
    POPULAR = 4  # precomputed popular items, no model call

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> Tier:
        for tier in cls:
            if tier.label == label:
                return tier
        raise ValueError(f"unknown tier {label!r} (known: {', '.join(t.label for t in cls)})")


_LABELS = {tier: tier.name.lower().replace("_", "-") for tier in Tier}
