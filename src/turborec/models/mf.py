"""Matrix factorisation (user and item embeddings, dot product), trained with BPR by the estimator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from turborec.models.base import NetConfig, RetrievalNet, register_net
from turborec.models.embeddings import EmbeddingPlan


@dataclass(frozen=True)
class MFConfig(NetConfig):
    dim: int = 64
    regularization: float = 1e-2  # L2 on the embeddings a batch touches (used by BPR training)
    negatives: int = 1  # sampled negatives per positive pair (BPR loss averaged over them)
    embeddings: EmbeddingPlan = field(default_factory=EmbeddingPlan)


@register_net("mf")
class MFNet(RetrievalNet):
    """score(u, i) = <p_u, q_i>; an anonymous user (-1) is the mean of its history's item vectors."""

    def __init__(self, config: MFConfig, dims: Mapping[str, int], embeddings: EmbeddingPlan | None = None):
        super().__init__()
        plan = embeddings or config.embeddings
        self.config = config
        self.n_users = int(dims["n_users"])
        self.n_items = int(dims["n_items"])
        self.user_emb = plan.build("user", self.n_users, config.dim)
        self.item_emb = plan.build("item", self.n_items, config.dim)

    def user_vectors(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        known = (users >= 0).unsqueeze(1)
        vec = self.user_emb(users.clamp_min(0))
        mask = history >= 0
        hist = self.item_emb(history.clamp_min(0)) * mask.unsqueeze(-1)
        fallback = hist.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return torch.where(known, vec, fallback)

    def item_vectors(self) -> torch.Tensor:
        idx = torch.arange(self.n_items, device=_device(self))
        return self.item_emb(idx)

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_emb(users) * self.item_emb(items)).sum(-1)


def _device(module: torch.nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")
