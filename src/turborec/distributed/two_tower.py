"""The two-tower retrieval net with its embedding tables in one TorchRec ``EmbeddingBagCollection``.

Same maths as :class:`turborec.models.two_tower.TwoTowerNet`, so weights move
both ways (:func:`tables_from_net`, :func:`copy_dense_to_net`) and the trained
model is saved as the ordinary two-tower artifact that ``turborec serve`` loads:

- table ``user`` (feature ``user_id``, sum of one row; anonymous users send no row),
- table ``item`` shared by the user's ``history`` (mean over the valid items, as
  ``pooled_lookup``) and the scored ``candidate`` items (one row each); with
  ``share_item_embeddings=False`` the history has its own table ``history_item``,
- table ``item_feature`` (feature ``candidate_tokens``, mean of a candidate's genre rows).

A step's users and candidates travel in one ``KeyedJaggedTensor`` whose rows
are ``max(users, candidates)``: row i carries user i's features (empty past the
last user) and candidate i's (empty past the last candidate), because TorchRec
wants one batch size for all features of a collection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from turborec.errors import ConfigError
from turborec.models.two_tower import TwoTowerConfig, TwoTowerNet, mlp

USER, ITEM, HISTORY, TOKENS = "user", "item", "history_item", "item_feature"
FEATURES = ("user_id", "history", "candidate", "candidate_tokens")


@dataclass(frozen=True)
class TowerSizes:
    n_users: int
    n_items: int
    n_tokens: int
    dim: int
    use_user_id: bool
    use_features: bool
    shared_history: bool = True  # the history is pooled from the candidates' item table

    @classmethod
    def of(cls, net: TwoTowerNet) -> TowerSizes:
        tokens = net.item_tower.token_emb
        n_tokens = int(_weight(tokens).shape[0]) if tokens is not None else 0
        return cls(
            net.n_users, net.n_items, n_tokens, net.config.dim,  # type: ignore[attr-defined]
            net.user_tower.user_emb is not None, tokens is not None,
            net.user_tower.item_emb is net.item_tower.item_emb,
        )


def table_configs(sizes: TowerSizes) -> list[Any]:
    from torchrec import EmbeddingBagConfig
    from torchrec.modules.embedding_configs import PoolingType

    item_features = ["history", "candidate"] if sizes.shared_history else ["candidate"]
    tables = [EmbeddingBagConfig(name=ITEM, embedding_dim=sizes.dim, num_embeddings=sizes.n_items,
                                 feature_names=item_features, pooling=PoolingType.MEAN)]
    if not sizes.shared_history:
        tables.append(EmbeddingBagConfig(name=HISTORY, embedding_dim=sizes.dim, num_embeddings=sizes.n_items,
                                         feature_names=["history"], pooling=PoolingType.MEAN))
    if sizes.use_user_id:
        tables.append(EmbeddingBagConfig(name=USER, embedding_dim=sizes.dim, num_embeddings=sizes.n_users,
                                         feature_names=["user_id"], pooling=PoolingType.SUM))
    if sizes.use_features:
        tables.append(EmbeddingBagConfig(name=TOKENS, embedding_dim=sizes.dim, num_embeddings=sizes.n_tokens,
                                         feature_names=["candidate_tokens"], pooling=PoolingType.MEAN))
    return tables


class TorchRecTwoTower(nn.Module):
    """``forward(kjt, candidates, n_users) -> (user vectors [n_users, d(+1)], item vectors [n_candidates, d(+1)])``,
    the vectors of :class:`TwoTowerNet` (temperature and item bias folded in). The one-column item-bias
    table is tiny and stays data-parallel (replicated, gradients all-reduced) with the MLPs."""

    def __init__(self, config: TwoTowerConfig, sizes: TowerSizes, item_tokens: torch.Tensor, device: torch.device):
        super().__init__()
        from torchrec import EmbeddingBagCollection

        d = config.dim
        self.sizes = sizes
        self.normalize = config.normalize
        self.ebc = EmbeddingBagCollection(tables=table_configs(sizes), device=device)
        self.user_mlp = mlp([d * (2 if sizes.use_user_id else 1), *config.hidden, d], config.dropout)
        self.item_mlp = mlp([d * (2 if sizes.use_features else 1), *config.hidden, d], config.dropout)
        self.temperature = config.temperature
        self.item_bias = nn.Embedding(sizes.n_items, 1) if config.item_bias else None
        self.register_buffer("item_tokens", item_tokens.clone(), persistent=False)

    def forward(self, kjt: Any, candidates: torch.Tensor, n_users: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_candidates = len(candidates)
        pooled = self.ebc(kjt).to_dict()
        user_parts = [pooled["history"][:n_users]]
        if self.sizes.use_user_id:
            user_parts.append(pooled["user_id"][:n_users])
        item_parts = [pooled["candidate"][:n_candidates]]
        if self.sizes.use_features:
            item_parts.append(pooled["candidate_tokens"][:n_candidates])
        users = self.user_mlp(torch.cat(user_parts, dim=1))
        items = self.item_mlp(torch.cat(item_parts, dim=1))
        if self.normalize:
            users, items = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
        users = users / self.temperature
        if self.item_bias is None:
            return users, items
        return torch.cat([users, torch.ones_like(users[:, :1])], dim=1), torch.cat([items, self.item_bias(candidates)], dim=1)


def _jagged(index: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid (>= 0) entries of a padded [n, L] index matrix as (values, lengths over ``rows`` rows)."""
    valid = index >= 0
    lengths = torch.zeros(rows, dtype=torch.int32)
    lengths[: index.shape[0]] = valid.sum(dim=1).to(torch.int32)
    return index[valid], lengths


def make_batch(
    users: torch.Tensor, history: torch.Tensor, candidates: torch.Tensor, item_tokens: torch.Tensor | None
) -> Any:
    """The KeyedJaggedTensor of one step (see the module docstring for its layout)."""
    from torchrec import KeyedJaggedTensor

    rows = max(len(users), len(candidates))
    user_values, user_lengths = _jagged(users.unsqueeze(1), rows)
    hist_values, hist_lengths = _jagged(history, rows)
    cand_values, cand_lengths = _jagged(candidates.unsqueeze(1), rows)
    parts = [(user_values, user_lengths), (hist_values, hist_lengths), (cand_values, cand_lengths)]
    if item_tokens is not None:
        parts.append(_jagged(item_tokens[candidates], rows))
    else:
        parts.append((torch.zeros(0, dtype=torch.long), torch.zeros(rows, dtype=torch.int32)))
    return KeyedJaggedTensor.from_lengths_sync(
        keys=list(FEATURES),
        values=torch.cat([v.to(torch.long) for v, _ in parts]),
        lengths=torch.cat([n for _, n in parts]),
    )


def _net_tables(net: TwoTowerNet) -> dict[str, nn.Module]:
    """The net's table modules by TorchRec table name (dense ``nn.Embedding`` tables when training)."""
    out: dict[str, nn.Module] = {ITEM: net.item_tower.item_emb}
    if net.user_tower.item_emb is not net.item_tower.item_emb:
        out[HISTORY] = net.user_tower.item_emb
    if net.user_tower.user_emb is not None:
        out[USER] = net.user_tower.user_emb
    if net.item_tower.token_emb is not None:
        out[TOKENS] = net.item_tower.token_emb
    return out


def _weight(table: nn.Module) -> torch.Tensor:
    weight = getattr(table, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ConfigError(f"sharded training needs dense embedding tables, got {type(table).__name__}")
    return weight


def tables_from_net(net: TwoTowerNet) -> dict[str, torch.Tensor]:
    """The net's embedding tables by TorchRec table name."""
    return {name: _weight(table).detach() for name, table in _net_tables(net).items()}


@torch.no_grad()
def copy_tables_to_net(net: TwoTowerNet, tables: Mapping[str, torch.Tensor]) -> None:
    for name, table in _net_tables(net).items():
        _weight(table).copy_(tables[name])


def dense_modules(model: TwoTowerNet | TorchRecTwoTower) -> dict[str, nn.Module]:
    """The dense (data-parallel) parts, by the names :class:`TorchRecTwoTower` gives them."""
    out: dict[str, nn.Module]
    bias: nn.Module | None
    if isinstance(model, TorchRecTwoTower):
        out = {"user_mlp": model.user_mlp, "item_mlp": model.item_mlp}
        bias = model.item_bias
    else:
        out = {"user_mlp": model.user_tower.mlp, "item_mlp": model.item_tower.mlp}
        bias = model.item_bias
    if bias is not None:
        out["item_bias"] = bias
    return out


@torch.no_grad()
def copy_dense(src: Mapping[str, nn.Module], dst: Mapping[str, nn.Module]) -> None:
    for name, module in dst.items():
        module.load_state_dict(src[name].state_dict())
