"""Factorization machine (Rendle, 2010): logistic regression plus a dot product between the latent
vectors of every pair of features, ``sum_{i<j} <v_i, v_j>``, computed in O(F d) as
``0.5 * (|sum v|^2 - sum |v|^2)``. Dense feature ``k`` enters the first-order term and, as
``x_k * u_k`` with its own latent vector ``u_k``, the pairwise term. The baseline between logistic
regression (main effects only) and the deep rankers (learned higher-order crosses)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from turborec.models.base import NetConfig, register_net
from turborec.models.embeddings import EmbeddingPlan
from turborec.models.rankers.common import (
    FACTOR_START_SCALE,
    LinearTerms,
    RankerNet,
    SparseEmbeddings,
    check_positive,
)


@dataclass(frozen=True)
class FMConfig(NetConfig):
    embedding_dim: int = 8

    def __post_init__(self) -> None:
        check_positive("embedding_dim", self.embedding_dim)


@register_net("fm")
class FactorizationMachine(RankerNet):
    config_class = FMConfig

    def __init__(
        self,
        config: FMConfig | None = None,
        *,
        cardinalities: Sequence[int],
        n_dense: int,
        embeddings: EmbeddingPlan = EmbeddingPlan(),  # noqa: B008  (frozen, shared default is safe)
    ) -> None:
        cfg = config or FMConfig()
        super().__init__(cfg, cardinalities=cardinalities, n_dense=n_dense, embeddings=embeddings)
        self.embeddings = SparseEmbeddings(self.cardinalities, cfg.embedding_dim, embeddings)
        self.linear = SparseEmbeddings(self.cardinalities, 1, embeddings, prefix="linear")
        self.dense_linear = nn.Linear(n_dense, 1, bias=False) if n_dense else None
        self.dense_vectors = nn.Parameter(torch.randn(n_dense, cfg.embedding_dim) * 0.01) if n_dense else None
        self.bias = nn.Parameter(torch.zeros(1))

    def linear_terms(self) -> LinearTerms:
        return LinearTerms(self.linear, self.dense_linear, self.bias)

    def silence_interactions(self) -> None:
        """Shrink the latent factors (:data:`FACTOR_START_SCALE`): the pairwise term starts at ~0."""
        with torch.no_grad():
            for p in self.embeddings.parameters():
                p.mul_(FACTOR_START_SCALE)
            if self.dense_vectors is not None:
                self.dense_vectors.mul_(FACTOR_START_SCALE)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        vectors = self.embeddings(sparse)  # [B, F, d]
        logit = self.linear(sparse).sum(dim=(1, 2)) + self.bias
        if self.dense_linear is not None and self.dense_vectors is not None:
            logit = logit + self.dense_linear(dense).squeeze(-1)
            vectors = torch.cat([vectors, dense.unsqueeze(-1) * self.dense_vectors], dim=1)
        summed = vectors.sum(dim=1)
        logit = logit + 0.5 * (summed.pow(2) - vectors.pow(2).sum(dim=1)).sum(dim=1)
        return self.calibrate(logit)
