"""A small retrieval network in the lead's pattern (config with an EmbeddingPlan, tables from the plan)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import torch
from torch import nn

from turborec.compress import TABLE_NAME_ATTR
from turborec.models.base import NetConfig, RetrievalNet
from turborec.models.embeddings import EmbeddingPlan, pooled_lookup


@dataclass(frozen=True)
class TinyConfig(NetConfig):
    dim: int = 8
    hidden: tuple[int, ...] = (32, 16)
    batchnorm: bool = False
    embeddings: EmbeddingPlan = field(default_factory=EmbeddingPlan)


def build_table(plan: EmbeddingPlan, name: str, num: int, dim: int) -> nn.Module:
    """``plan.build`` plus the table-name tag (what EmbeddingPlan.build itself should set)."""
    table = plan.build(name, num, dim)
    if getattr(table, TABLE_NAME_ATTR, None) is None:
        setattr(table, TABLE_NAME_ATTR, name)
    return table


class TinyNet(RetrievalNet):
    """user vector = MLP([user row, mean of history item rows]); item vector = item row."""

    uses_history = True

    def __init__(self, config: TinyConfig, n_users: int, n_items: int) -> None:
        super().__init__()
        self.config = config
        self.n_users, self.n_items = n_users, n_items
        plan = config.embeddings
        self.user_emb = build_table(plan, "user", n_users, config.dim)
        self.item_emb = build_table(plan, "item", n_items, config.dim)
        sizes = [2 * config.dim, *config.hidden, config.dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                if config.batchnorm:
                    layers.append(nn.BatchNorm1d(b))
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def user_vectors(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        parts = [self.user_emb(users.clamp_min(0)), pooled_lookup(self.item_emb, history)]
        return self.mlp(torch.cat(parts, dim=1))

    def item_vectors(self) -> torch.Tensor:
        return self.item_emb(torch.arange(self.n_items))


def tiny_net(seed: int = 0, n_users: int = 40, n_items: int = 60, **config: object) -> TinyNet:
    torch.manual_seed(seed)
    net = TinyNet(TinyConfig(**config), n_users, n_items)  # type: ignore[arg-type]
    # trained-looking weights: rows of different scales, so per-row quantization matters
    with torch.no_grad():
        for table in (net.user_emb, net.item_emb):
            assert isinstance(table, nn.Embedding)
            table.weight.mul_(torch.rand(table.num_embeddings, 1) * 20 + 0.5)
    return net.eval()


def batch(seed: int = 1, n_users: int = 40, n_items: int = 60, b: int = 12, hist: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(0, n_users, (b,), generator=g)
    history = torch.randint(0, n_items, (b, hist), generator=g)
    history[:, -2:] = -1  # right padding
    return users, history


def rebuild(net: TinyNet) -> TinyNet:
    """A fresh TinyNet from ``net``'s config as the manifest stores it (JSON): what a loader does."""
    import json

    config = TinyConfig.from_dict(json.loads(json.dumps(net.config.to_dict())))
    return TinyNet(config, net.n_users, net.n_items)


def through_artifact(state: dict[str, torch.Tensor], path: object) -> dict[str, torch.Tensor]:
    """Write ``state`` as an artifact's safetensors and read it back (checksums verified)."""
    from pathlib import Path

    from turborec._util.artifact import load_artifact, save_artifact

    dest = Path(str(path))
    save_artifact(dest, kind="test", config={}, tensors=state)
    return load_artifact(dest).torch_tensors()
