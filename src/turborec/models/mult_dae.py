"""Mult-DAE (Liang et al. 2018) and its sum with a two-tower: neural item-space retrieval models.

Mult-DAE reads a user's whole history as a multi-hot over the catalog, L2-normalises it, encodes it
to ``hidden`` tanh units and decodes one logit per item (trained with a multinomial likelihood over
the catalog, the input dropped out). Its score is ``<tanh(enc(x)), dec.weight[i]> + dec.bias[i]``:
a factorised model, served from item vectors like a two-tower.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from turborec.errors import ConfigError
from turborec.models.base import NetConfig, RetrievalNet, register_net
from turborec.models.ease import multi_hot
from turborec.models.embeddings import EmbeddingPlan
from turborec.models.two_tower import TwoTowerConfig, TwoTowerNet


@dataclass(frozen=True)
class MultDAEConfig(NetConfig):
    hidden: int = 600
    dropout: float = 0.5  # of the input multi-hot while training (the denoising)
    # training against an EASE teacher fitted on the same split (0 = none): the loss is (1 - w) x the
    # multinomial reconstruction + w x the cross-entropy against EASE's softmax (scores / temperature) over the
    # items the dropped-out input does not show, EASE reading that same input. 0.3: the best 3-seed validation
    # median on ml-latest-small among 0.15 / 0.3 / 0.5 (docs/benchmarks.md, issue 16)
    teacher_weight: float = 0.3
    teacher_temperature: float = 0.05
    # the input and output layers are n_items wide and the teacher is n_items^2: refuse larger catalogs
    max_items: int = 20_000

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"mult-dae dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.teacher_weight <= 1.0:
            raise ConfigError(f"mult-dae teacher_weight must be in [0, 1], got {self.teacher_weight}")
        if not self.teacher_temperature > 0.0:
            raise ConfigError(f"mult-dae teacher_temperature must be positive, got {self.teacher_temperature}")


@register_net("mult-dae")
class MultDAENet(RetrievalNet):
    """user vector [tanh(enc(x / |x|)), 1], item vector [dec.weight[i], dec.bias[i]]."""

    uses_history = True
    config: MultDAEConfig

    def __init__(self, config: MultDAEConfig, dims: Mapping[str, int], embeddings: EmbeddingPlan | None = None):
        super().__init__()
        self.config = config
        self.n_users = int(dims["n_users"])
        self.n_items = int(dims["n_items"])
        self.enc = nn.Linear(self.n_items, config.hidden)
        self.dec = nn.Linear(config.hidden, self.n_items)
        for layer in (self.enc, self.dec):  # as the Mult-DAE paper's code
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)

    def encode(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """[B, hidden] from multi-hots ``x``; ``keep`` (training): the input dropout's 0/1 mask."""
        x = F.normalize(x, dim=1)
        if keep is not None:
            x = x * keep / (1.0 - self.config.dropout)
        return torch.tanh(self.enc(x))

    def user_vectors(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.vectors_of(multi_hot(history, self.n_items))

    def vectors_of(self, x: torch.Tensor) -> torch.Tensor:
        """User vectors from multi-hots ``x`` [B, n_items] (a sum of DAEs builds ``x`` once for all)."""
        h = self.encode(x)
        return torch.cat([h, torch.ones_like(h[:, :1])], dim=1)

    def item_vectors(self) -> torch.Tensor:
        return torch.cat([self.dec.weight, self.dec.bias.unsqueeze(1)], dim=1)


@dataclass(frozen=True)
class DAETwoTowerConfig(NetConfig):
    """Mult-DAEs and two-towers trained apart (each against the same EASE teacher), scores summed."""

    dae: MultDAEConfig = field(default_factory=MultDAEConfig)
    tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    # members of each kind, fitted independently (split seed, seed + 7, ...): the sum averages out each
    # fit's own noise. 2 DAEs + 1 tower had the best 3-seed validation median on ml-latest-small among
    # 1-2 of each (docs/benchmarks.md, issue 16)
    daes: int = 2
    towers: int = 1

    def __post_init__(self) -> None:
        if self.daes < 1 or self.towers < 1:
            raise ConfigError(f"dae-two-tower needs at least one member of each kind, got daes={self.daes}, "
                              f"towers={self.towers}")

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> DAETwoTowerConfig:
        # artifacts written before the member counts existed hold one member of each kind
        return super().from_dict({"daes": 1, "towers": 1, **obj})


def last_items(history: torch.Tensor, width: int) -> torch.Tensor:
    """[B, L] oldest-first, right-padded histories -> [B, min(L, width)]: each row's last ``width`` items."""
    if history.shape[1] <= width:
        return history
    n = (history >= 0).sum(1, keepdim=True)
    pos = (n - width).clamp_min(0) + torch.arange(width, device=history.device)
    out = history.gather(1, pos.clamp_max(history.shape[1] - 1))
    return torch.where(pos < n, out, torch.full_like(out, -1))


@register_net("dae-two-tower")
class DAETwoTowerNet(RetrievalNet):
    """score = the sum of the members' logits: their vectors side by side (still one dot product).

    The DAEs read the whole history; the towers their last ``tower.history_len`` items of it. Summing the
    logits ranks as summing the members' log-softmaxes does (they differ by a per-user constant). The
    first member of each kind is ``dae`` / ``tower`` (the keys of artifacts with one of each), further
    ones ``more_daes`` / ``more_towers``.
    """

    uses_history = True
    config: DAETwoTowerConfig

    def __init__(self, config: DAETwoTowerConfig, dims: Mapping[str, int], embeddings: EmbeddingPlan | None = None):
        super().__init__()
        self.config = config
        self.n_users = int(dims["n_users"])
        self.n_items = int(dims["n_items"])
        self.dae = MultDAENet(config.dae, dims)
        self.tower = TwoTowerNet(config.tower, dims)
        self.more_daes = nn.ModuleList(MultDAENet(config.dae, dims) for _ in range(config.daes - 1))
        self.more_towers = nn.ModuleList(TwoTowerNet(config.tower, dims) for _ in range(config.towers - 1))

    def daes(self) -> list[MultDAENet]:
        return [self.dae, *self.more_daes]  # type: ignore[list-item]

    def towers(self) -> list[TwoTowerNet]:
        return [self.tower, *self.more_towers]  # type: ignore[list-item]

    def set_item_tokens(self, tokens: torch.Tensor) -> None:
        for tower in self.towers():
            tower.set_item_tokens(tokens)

    def user_vectors(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        x = multi_hot(history, self.n_items)
        window = last_items(history, self.config.tower.history_len)
        return torch.cat([d.vectors_of(x) for d in self.daes()]
                         + [t.user_vectors(users, window) for t in self.towers()], dim=1)

    def item_vectors(self) -> torch.Tensor:
        return torch.cat([m.item_vectors() for m in (*self.daes(), *self.towers())], dim=1)
