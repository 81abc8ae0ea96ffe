"""DeepFM (Guo et al., 2017): a factorization machine (first-order weights + pairwise
latent dot products) and a deep MLP share the sparse embeddings; logits add up.
Dense features enter the first-order term and the MLP."""

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
    check_dropout,
    check_positive,
    check_widths,
    mlp,
)


@dataclass(frozen=True)
class DeepFMConfig(NetConfig):
    embedding_dim: int = 16
    deep: tuple[int, ...] = (128, 64)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_positive("embedding_dim", self.embedding_dim)
        check_widths("deep", self.deep)
        check_dropout(self.dropout)


@register_net("deepfm")
class DeepFM(RankerNet):
    config_class = DeepFMConfig

    def __init__(
        self,
        config: DeepFMConfig | None = None,
        *,
        cardinalities: Sequence[int],
        n_dense: int,
        embeddings: EmbeddingPlan = EmbeddingPlan(),  # noqa: B008
    ) -> None:
        cfg = config or DeepFMConfig()
        super().__init__(cfg, cardinalities=cardinalities, n_dense=n_dense, embeddings=embeddings)
        self.embeddings = SparseEmbeddings(self.cardinalities, cfg.embedding_dim, embeddings)
        # first-order weights are tables too (named linear_i) so the plan can compress them
        self.linear = SparseEmbeddings(self.cardinalities, 1, embeddings, prefix="linear")
        self.dense_linear = nn.Linear(n_dense, 1) if n_dense else None
        self.bias = nn.Parameter(torch.zeros(1))
        width = n_dense + len(self.cardinalities) * cfg.embedding_dim
        self.deep = mlp(width, cfg.deep, dropout=cfg.dropout, out_dim=1)

    def linear_terms(self) -> LinearTerms:
        return LinearTerms(self.linear, self.dense_linear, self.bias)

    def silence_interactions(self) -> None:
        """Zero the deep part's output layer and shrink the shared factors (:data:`FACTOR_START_SCALE`):
        the deep and pairwise terms start at ~0 while the deep layers still receive gradients."""
        with torch.no_grad():
            layer = self.deep[-1]
            assert isinstance(layer, nn.Linear)
            layer.weight.zero_()
            if layer.bias is not None:
                layer.bias.zero_()
            for p in self.embeddings.parameters():
                p.mul_(FACTOR_START_SCALE)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        vectors = self.embeddings(sparse)  # [B, F, d]
        first = self.linear(sparse).sum(dim=(1, 2)) + self.bias
        if self.dense_linear is not None:
            first = first + self.dense_linear(dense).squeeze(-1)
        summed = vectors.sum(dim=1)
        second = 0.5 * (summed.pow(2) - vectors.pow(2).sum(dim=1)).sum(dim=1)
        deep = self.deep(torch.cat([dense, vectors.flatten(1)], dim=1)).squeeze(-1)
        return self.calibrate(first + second + deep)
