"""DLRM (Naumov et al., 2019): a bottom MLP maps dense features to an embedding-sized
vector, pairwise dot products between it and every sparse embedding form the
interaction, and a top MLP maps [dense vector, interactions] to the logit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from turborec.errors import ConfigError
from turborec.models.base import NetConfig, register_net
from turborec.models.embeddings import EmbeddingPlan
from turborec.models.rankers.common import (
    FirstOrder,
    RankerNet,
    SparseEmbeddings,
    check_dropout,
    check_positive,
    check_widths,
    mlp,
)


@dataclass(frozen=True)
class DLRMConfig(NetConfig):
    embedding_dim: int = 16
    bottom_mlp: tuple[int, ...] = (64,)  # hidden widths; a last layer projects to embedding_dim
    top_mlp: tuple[int, ...] = (64, 32)
    dropout: float = 0.0  # in the top MLP
    wide: bool = False  # add a first-order (logistic regression) term to the logit

    def __post_init__(self) -> None:
        check_positive("embedding_dim", self.embedding_dim)
        check_widths("bottom_mlp", self.bottom_mlp)
        check_widths("top_mlp", self.top_mlp)
        check_dropout(self.dropout)


@register_net("dlrm")
class DLRM(RankerNet):
    config_class = DLRMConfig
    pair_index: torch.Tensor  # flat (i < j) positions in the [m, m] dot-product matrix

    def __init__(
        self,
        config: DLRMConfig | None = None,
        *,
        cardinalities: Sequence[int],
        n_dense: int,
        embeddings: EmbeddingPlan = EmbeddingPlan(),  # noqa: B008
    ) -> None:
        cfg = config or DLRMConfig()
        super().__init__(cfg, cardinalities=cardinalities, n_dense=n_dense, embeddings=embeddings)
        d = cfg.embedding_dim
        self.embeddings = SparseEmbeddings(self.cardinalities, d, embeddings)
        self.bottom = mlp(n_dense, cfg.bottom_mlp, out_dim=d, last_activation=True) if n_dense else None
        n_vectors = len(self.cardinalities) + (1 if n_dense else 0)
        rows, cols = torch.triu_indices(n_vectors, n_vectors, offset=1)
        self.register_buffer("pair_index", rows * n_vectors + cols, persistent=False)
        top_in = len(rows) + (d if n_dense else 0)
        if top_in == 0:
            raise ConfigError("DLRM needs dense features or at least two sparse features to interact")
        self.top = mlp(top_in, cfg.top_mlp, dropout=cfg.dropout, out_dim=1)
        self.wide = FirstOrder(self.cardinalities, n_dense, embeddings) if cfg.wide else None

    def output_layer(self) -> nn.Linear:
        layer = self.top[-1]
        assert isinstance(layer, nn.Linear)
        return layer

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        vectors = self.embeddings(sparse)  # [B, F, d]
        if self.bottom is not None:
            dense_vec = self.bottom(dense)
            vectors = torch.cat([dense_vec.unsqueeze(1), vectors], dim=1)
        dots = torch.bmm(vectors, vectors.transpose(1, 2)).flatten(1)
        pairs = dots.index_select(1, self.pair_index)
        top_in = torch.cat([dense_vec, pairs], dim=1) if self.bottom is not None else pairs
        logit = self.top(top_in).squeeze(-1)
        if self.wide is not None:
            logit = logit + self.wide(dense, sparse)
        return self.calibrate(logit)
