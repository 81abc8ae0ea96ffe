"""DCN-V2 (Wang et al., 2021): cross layers ``x_{l+1} = x0 * (W x_l + b) + x_l`` learn
explicit bounded-degree feature crosses; a deep MLP runs after them (stacked) or
beside them (parallel). ``low_rank > 0`` factorizes W as U V^T (the paper's DCN-Mix
without experts), cutting the cross cost from d^2 to 2 d r."""

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
    mlp_width,
)

_STRUCTURES = ("stacked", "parallel")


@dataclass(frozen=True)
class DCNv2Config(NetConfig):
    embedding_dim: int = 16
    n_cross: int = 3
    low_rank: int = 0  # 0 = full-rank cross matrices
    deep: tuple[int, ...] = (128, 64)
    structure: str = "stacked"  # "stacked": cross -> deep; "parallel": [cross, deep]
    dropout: float = 0.0  # in the deep MLP
    wide: bool = False  # add a first-order (logistic regression) term to the logit

    def __post_init__(self) -> None:
        check_positive("embedding_dim", self.embedding_dim)
        check_widths("deep", self.deep)
        check_dropout(self.dropout)
        if self.n_cross < 0 or self.low_rank < 0:
            raise ConfigError(f"n_cross and low_rank must be >= 0, got {self.n_cross}, {self.low_rank}")
        if self.structure not in _STRUCTURES:
            raise ConfigError(f"structure must be one of {_STRUCTURES}, got {self.structure!r}")


class CrossLayer(nn.Module):
    def __init__(self, width: int, low_rank: int) -> None:
        super().__init__()
        if low_rank:
            self.project: nn.Module = nn.Sequential(nn.Linear(width, low_rank, bias=False), nn.Linear(low_rank, width))
        else:
            self.project = nn.Linear(width, width)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.project(x) + x


@register_net("dcnv2")
class DCNv2(RankerNet):
    config_class = DCNv2Config

    def __init__(
        self,
        config: DCNv2Config | None = None,
        *,
        cardinalities: Sequence[int],
        n_dense: int,
        embeddings: EmbeddingPlan = EmbeddingPlan(),  # noqa: B008
    ) -> None:
        cfg = config or DCNv2Config()
        super().__init__(cfg, cardinalities=cardinalities, n_dense=n_dense, embeddings=embeddings)
        self.embeddings = SparseEmbeddings(self.cardinalities, cfg.embedding_dim, embeddings)
        width = n_dense + len(self.cardinalities) * cfg.embedding_dim
        self.cross = nn.ModuleList(CrossLayer(width, cfg.low_rank) for _ in range(cfg.n_cross))
        self.deep = mlp(width, cfg.deep, dropout=cfg.dropout)
        self.parallel = cfg.structure == "parallel"
        head_in = mlp_width(width, cfg.deep) + (width if self.parallel else 0)
        self.head = nn.Linear(head_in, 1)
        self.wide = FirstOrder(self.cardinalities, n_dense, embeddings) if cfg.wide else None

    def output_layer(self) -> nn.Linear:
        layer = self.head
        assert isinstance(layer, nn.Linear)
        return layer

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        x0 = torch.cat([dense, self.embeddings(sparse).flatten(1)], dim=1)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        out = torch.cat([x, self.deep(x0)], dim=1) if self.parallel else self.deep(x)
        logit = self.head(out).squeeze(-1)
        if self.wide is not None:
            logit = logit + self.wide(dense, sparse)
        return self.calibrate(logit)
