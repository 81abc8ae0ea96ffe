"""EASE (Steck 2019): a closed-form item-item linear model, the strong non-deep baseline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from turborec.models.base import NetConfig, RetrievalNet, register_net
from turborec.models.embeddings import EmbeddingPlan


def multi_hot(history: torch.Tensor, n_items: int) -> torch.Tensor:
    """[B, L] item indices (-1 padded) -> [B, n_items] 0/1 floats."""
    x = torch.zeros(history.shape[0], n_items + 1, device=history.device)
    x.scatter_(1, torch.where(history >= 0, history, n_items), 1.0)
    return x[:, :n_items]


@dataclass(frozen=True)
class EASEConfig(NetConfig):
    l2: float = 500.0
    # with validation data, fit() tries each of these l2 values and keeps the best validation NDCG@10
    # (the chosen one replaces ``l2`` in the saved config); empty = always use ``l2``
    l2_grid: tuple[int, ...] = (50, 100, 200, 300, 500, 800, 1200, 2000, 4000)


@register_net("ease")
class EASENet(RetrievalNet):
    """score(u) = x_u B, where x_u is the multi-hot of the user's history (all of it, not a window)."""

    factorized = False
    uses_history = True
    config: EASEConfig
    B: torch.Tensor

    def __init__(self, config: EASEConfig, dims: Mapping[str, int], embeddings: EmbeddingPlan | None = None):
        super().__init__()
        self.config = config
        self.n_users = int(dims["n_users"])
        self.n_items = int(dims["n_items"])
        self.register_buffer("B", torch.zeros(self.n_items, self.n_items))

    def fit_closed_form(self, gram: np.ndarray, l2: float | None = None) -> None:
        """B = I - P diag(1/diag(P)), P = (X^T X + l2 I)^-1, with a zero diagonal (l2 from the config by default)."""
        g = np.array(gram, dtype=np.float64, copy=True)
        g[np.diag_indices_from(g)] += self.config.l2 if l2 is None else l2
        # torch's inverse, not numpy's: it runs on torch's thread count (``--threads``), where numpy's BLAS
        # takes every core of the machine whatever else runs on it (the oversubscription of issue 16)
        p = torch.linalg.inv(torch.from_numpy(g)).numpy()
        b = p / (-np.diag(p))
        b[np.diag_indices_from(b)] = 0.0
        self.B.copy_(torch.from_numpy(b.astype(np.float32)))

    def user_vectors(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return multi_hot(history.to(self.B.device), self.n_items)

    def item_vectors(self) -> torch.Tensor:
        return self.B.T  # scores = x @ B = x @ (B^T)^T

    def forward(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(users, history) @ self.B
