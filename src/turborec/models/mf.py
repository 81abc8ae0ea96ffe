"""Matrix factorisation (user and item embeddings, dot product), trained with BPR by the estimator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from turborec.models.base import NetConfig, RetrievalNet, register_net
from turborec.models.embeddings import EmbeddingPlan


@dataclass(frozen=True)
class MFConfig(NetConfig):
    dim: int = 128
    regularization: float = 2e-2  # L2 on the embeddings a batch touches (used by BPR training)
    negatives: int = 4  # sampled negatives per positive pair (BPR loss averaged over them)
    # dynamic negative sampling (Zhang et al. 2013): each negative is the highest-scoring of this many
    # uniform candidates the user has not interacted with; 1 = plain uniform sampling
    negative_candidates: int = 4
    item_bias: bool = True  # per-item offset (popularity prior), folded into the vectors
    embeddings: EmbeddingPlan = field(default_factory=EmbeddingPlan)


@register_net("mf")
class MFNet(RetrievalNet):
    """score(u, i) = <p_u, q_i> + b_i; an anonymous user (-1) is the mean of its history's item vectors."""

    config: MFConfig

    def __init__(self, config: MFConfig, dims: Mapping[str, int], embeddings: EmbeddingPlan | None = None):
        super().__init__()
        plan = embeddings or config.embeddings
        self.config = config
        self.n_users = int(dims["n_users"])
        self.n_items = int(dims["n_items"])
        self.user_emb = plan.build("user", self.n_users, config.dim)
        self.item_emb = plan.build("item", self.n_items, config.dim)
        self.item_bias = plan.build("item_bias", self.n_items, 1) if config.item_bias else None
        if isinstance(self.item_bias, torch.nn.Embedding):
            torch.nn.init.zeros_(self.item_bias.weight)

    def user_vectors(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        known = (users >= 0).unsqueeze(1)
        vec = self.user_emb(users.clamp_min(0))
        mask = history >= 0
        hist = self.item_emb(history.clamp_min(0)) * mask.unsqueeze(-1)
        fallback = hist.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        out = torch.where(known, vec, fallback)
        if self.item_bias is None:
            return out
        return torch.cat([out, torch.ones_like(out[:, :1])], dim=1)

    def item_vectors(self) -> torch.Tensor:
        idx = torch.arange(self.n_items, device=_device(self))
        v = self.item_emb(idx)
        if self.item_bias is None:
            return v
        return torch.cat([v, self.item_bias(idx)], dim=1)

    def bias(self, items: torch.Tensor) -> torch.Tensor:
        if self.item_bias is None:
            return torch.zeros(items.shape, device=items.device)
        return self.item_bias(items).squeeze(-1)


def _device(module: torch.nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")
