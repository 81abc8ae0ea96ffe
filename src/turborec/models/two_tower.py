"""Two-tower retrieval: a user tower (id + pooled recent history) and an item tower (id + features).

The user tower reads the user's *recent items*, so a fresh click changes the
user's vector at once, without retraining: the basis of real-time serving.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from turborec.errors import ConfigError
from turborec.models.base import NetConfig, RetrievalNet, register_net
from turborec.models.embeddings import EmbeddingPlan, all_rows, pooled_lookup


@dataclass(frozen=True)
class TwoTowerConfig(NetConfig):
    dim: int = 128
    hidden: tuple[int, ...] = (256,)
    use_user_id: bool = True
    history_len: int = 50
    # how the history's item vectors are pooled: "mean", or "sqrt" (their sum over sqrt(count), the
    # L2-normalised multi-hot of Mult-DAE / FISM); "sqrt" validated 0.009 lower on ml-latest-small (issue 16)
    pooling: str = "mean"
    use_item_features: bool = True
    normalize: bool = False  # True: cosine towers (scores = cos / temperature); validated worse here
    temperature: float = 1.0
    dropout: float = 0.3
    share_item_embeddings: bool = False  # history items and candidates use two tables (as in FISM); True: one
    item_bias: bool = True  # a learned per-item score offset (popularity prior), folded into the vectors
    # training objective (default "users": it reached the pairs objective's validation NDCG at a fraction of
    # its CPU time on ml-latest-small, issue 16; docs/benchmarks.md). "users": one example per user and epoch: a random ``holdout`` share of the
    # user's items is hidden from the history input and predicted with a softmax over the whole catalog
    # (the user's visible items masked), as denoising autoencoders for CF do (Mult-DAE, Liang et al. 2018);
    # a step holds whole users up to ``batch_size`` interactions: an epoch is n_interactions/batch_size
    # steps either way, but a "users" step costs one catalog softmax per user, not one per interaction.
    # "pairs": one example per (user, item) pair, the item left out of its own history input.
    # Catalogs above ``full_softmax_below`` always train on pairs with sampled softmax.
    objective: str = "users"
    holdout: float = 0.5
    # training: catalogs up to this size use the full softmax over all items (exact, no sampling bias);
    # larger ones use in-batch negatives with log-Q correction plus ``sampled_negatives`` uniform ones
    full_softmax_below: int = 20_000
    mask_positives: bool = False  # full softmax: drop the user's other training items from the negatives
    sampled_negatives: int = 512
    history_dropout: float = 0.2
    # training: validate (and keep) an exponential moving average of the weights with this per-step
    # decay instead of the raw weights; 0 = off
    weight_average: float = 0.99
    # training with a teacher (``TwoTowerRecommender(teacher=...)``, objective "users"): the loss is
    # (1 - teacher_weight) x the hidden items' cross-entropy + teacher_weight x the cross-entropy against the
    # teacher's softmax (its scores / teacher_temperature) over the items not visible, the teacher reading
    # the same visible items. The temperature is on the teacher's scale (EASE scores are ~0-0.5). Without
    # a teacher both are unused. 0.15 / 0.05: the best 3-seed validation median with an EASE teacher on
    # ml-latest-small among weights 0.08-0.5 and temperatures 0.03-0.1 (docs/benchmarks.md, issue 16).
    teacher_weight: float = 0.15
    teacher_temperature: float = 0.05
    embeddings: EmbeddingPlan = field(default_factory=EmbeddingPlan)

    def __post_init__(self) -> None:
        if self.objective not in ("users", "pairs"):
            raise ConfigError(f"two-tower objective must be 'users' or 'pairs', got {self.objective!r}")
        if self.pooling not in ("mean", "sqrt"):
            raise ConfigError(f"two-tower pooling must be 'mean' or 'sqrt', got {self.pooling!r}")
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"two-tower holdout must be in (0, 1), got {self.holdout}")
        if not 0.0 < self.teacher_weight <= 1.0:
            raise ConfigError(f"two-tower teacher_weight must be in (0, 1], got {self.teacher_weight}")
        if not self.teacher_temperature > 0.0:
            raise ConfigError(f"two-tower teacher_temperature must be positive, got {self.teacher_temperature}")


class FastDropout(nn.Dropout):
    """Inverted dropout whose mask comes from 16 random bits per unit, four units per 64-bit draw.

    ``nn.Dropout`` on CPU draws one Bernoulli sample per unit; over the item tower's catalog-wide
    hidden layer that cost more than the layer's matmul (~6 of ~40 ms a two-tower step, issue 16).
    The keep probability is ``p`` rounded to 1/65536; in eval mode it is the identity, as nn.Dropout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.numel() == 0:
            return x
        if self.p >= 1.0:
            return x * 0.0
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), 2**63 - 1)
        draws = bits.view(torch.int16)[:n].view(x.shape)  # uniform over [-32768, 32767]
        drop = round(self.p * 65536)
        keep = draws >= drop - 32768
        return x * (keep.to(x.dtype) * (65536 / (65536 - drop)))


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers with ReLU (and dropout) between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(FastDropout(dropout))
    return nn.Sequential(*layers)


class UserTower(nn.Module):
    """(users [B], history [B, L]) -> [B, dim]. Exportable: gathers, masked sums and an MLP."""

    def __init__(self, config: TwoTowerConfig, n_users: int, item_table: nn.Module, plan: EmbeddingPlan):
        super().__init__()
        d = config.dim
        self.use_user_id = config.use_user_id
        self.normalize = config.normalize
        self.pooling = config.pooling
        self.user_emb = plan.build("user", n_users, d) if config.use_user_id else None
        self.item_emb = item_table  # shared with the item tower
        in_dim = d * (2 if config.use_user_id else 1)
        self.mlp = mlp([in_dim, *config.hidden, d], config.dropout)

    def forward(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        parts = [pooled_lookup(self.item_emb, history, self.pooling)]
        if self.user_emb is not None:
            known = (users >= 0).unsqueeze(1).to(parts[0].dtype)
            parts.append(self.user_emb(users.clamp_min(0)) * known)
        out = self.mlp(torch.cat(parts, dim=1))
        return F.normalize(out, dim=-1) if self.normalize else out


class ItemTower(nn.Module):
    """item indices [N] -> [N, dim] from the id embedding plus pooled feature tokens."""

    item_tokens: torch.Tensor

    def __init__(self, config: TwoTowerConfig, item_table: nn.Module, n_tokens: int, token_width: int, plan: EmbeddingPlan):
        super().__init__()
        d = config.dim
        self.normalize = config.normalize
        self.item_emb = item_table
        self.use_features = config.use_item_features and n_tokens > 0 and token_width > 0
        self.token_emb = plan.build("item_feature", n_tokens, d) if self.use_features else None
        n_rows = int(item_table.num_embeddings)  # type: ignore[arg-type]
        self.register_buffer("item_tokens", torch.full((n_rows, max(token_width, 1)), -1, dtype=torch.long))
        in_dim = d * (2 if self.use_features else 1)
        self.mlp = mlp([in_dim, *config.hidden, d], config.dropout)

    def forward(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """``items`` None: the whole catalog, read straight from dense tables (no gather, no scatter back)."""
        parts = [self.item_emb(items) if items is not None else all_rows(self.item_emb)]
        if self.token_emb is not None:
            tokens = self.item_tokens if items is None else self.item_tokens[items]
            parts.append(pooled_lookup(self.token_emb, tokens, "mean"))
        out = self.mlp(torch.cat(parts, dim=1))
        return F.normalize(out, dim=-1) if self.normalize else out


@register_net("two-tower")
class TwoTowerNet(RetrievalNet):
    uses_history = True
    config: TwoTowerConfig
    log_q: torch.Tensor

    def __init__(self, config: TwoTowerConfig, dims: Mapping[str, int], embeddings: EmbeddingPlan | None = None):
        super().__init__()
        plan = embeddings or config.embeddings
        self.config = config
        self.n_users = int(dims["n_users"])
        self.n_items = int(dims["n_items"])
        item_table = plan.build("item", self.n_items, config.dim)
        history_table = item_table if config.share_item_embeddings else plan.build("history_item", self.n_items, config.dim)
        self.user_tower = UserTower(config, self.n_users, history_table, plan)
        self.item_tower = ItemTower(
            config, item_table, int(dims.get("n_tokens", 0)), int(dims.get("token_width", 0)), plan
        )
        self.item_bias = plan.build("item_bias", self.n_items, 1) if config.item_bias else None
        if self.item_bias is not None and isinstance(self.item_bias, nn.Embedding):
            nn.init.zeros_(self.item_bias.weight)
        self.register_buffer("log_q", torch.zeros(self.n_items))

    def set_item_tokens(self, tokens: torch.Tensor) -> None:
        buf = self.item_tower.item_tokens
        buf.copy_(tokens[:, : buf.shape[1]].to(buf))

    def user_vectors(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """[B, d (+1)]: the tower output over the temperature, with a trailing 1 that meets the item bias."""
        u = self.user_tower(users, history) / self.config.temperature
        if self.item_bias is None:
            return u
        return torch.cat([u, torch.ones_like(u[:, :1])], dim=1)

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[N, d (+1)]: the tower output and the item's bias, so <user, item> = cos / T + bias."""
        v = self.item_tower(items)
        if self.item_bias is None:
            return v
        return torch.cat([v, self.item_bias(items) if items is not None else all_rows(self.item_bias)], dim=1)
