"""Most-popular baseline as a (trivially factorized) retrieval net."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from turborec.models.base import NetConfig, RetrievalNet, register_net
from turborec.models.embeddings import EmbeddingPlan


@dataclass(frozen=True)
class PopularityConfig(NetConfig):
    """Score = log(1 + training count); identical for every user."""


@register_net("popularity")
class PopularityNet(RetrievalNet):
    counts: torch.Tensor
    def __init__(self, config: PopularityConfig, dims: Mapping[str, int], embeddings: EmbeddingPlan | None = None):
        super().__init__()
        self.config = config
        self.n_users = int(dims["n_users"])
        self.n_items = int(dims["n_items"])
        self.register_buffer("counts", torch.zeros(self.n_items))

    def set_counts(self, counts: torch.Tensor) -> None:
        self.counts.copy_(counts.to(self.counts))

    def user_vectors(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return torch.ones(users.shape[0], 1, device=self.counts.device)

    def item_vectors(self) -> torch.Tensor:
        return torch.log1p(self.counts).unsqueeze(1)
