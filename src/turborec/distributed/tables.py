"""A turborec net with its embedding tables sharded by TorchRec, and nothing else changed.

Every net in ``turborec.models`` builds its tables through an ``EmbeddingPlan``
(``forward(indices [...]) -> rows [..., dim]``). :func:`shard_net` copies the net,
swaps each such table for a :class:`ShardedTable` (a one-table TorchRec
``EmbeddingBagCollection`` in which each index is a bag of one row), and lets
``DistributedModelParallel`` shard those collections by the plan. The copy is
still the same class, with the same towers, pooling, feature encoders and
forward code: the estimator trains it as it trains the net itself. Each lookup
is TorchRec's all-to-all (ids to the rows' owners, rows back, gradients back in
the backward pass). Tables whose width FBGEMM cannot take (the one-column item
bias) and every other parameter stay replicated on every rank.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from turborec.distributed.sharding import (
    ShardInfo,
    TableOptimizer,
    gather_full,
    make_sharder,
    plan_sharding,
    plan_shards,
    scatter_full,
    sharded_tables,
)
from turborec.errors import ConfigError


class ShardedTable(nn.Module):
    """An embedding table held in a one-table TorchRec ``EmbeddingBagCollection`` (sharded by DMP).

    Meets the table contract of ``turborec.models.embeddings``: ``forward(indices int64 [...]) -> [..., dim]``,
    indices >= 0, and ``num_embeddings`` / ``embedding_dim``.
    """

    def __init__(self, name: str, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
        from torchrec.modules.embedding_configs import PoolingType

        self.name, self.num_embeddings, self.embedding_dim = name, num_embeddings, embedding_dim
        self.turborec_table_name = name
        config = EmbeddingBagConfig(name=name, embedding_dim=embedding_dim, num_embeddings=num_embeddings,
                                    feature_names=[name], pooling=PoolingType.SUM)
        self.ebc = EmbeddingBagCollection(tables=[config], device=torch.device("meta"))  # DMP materialises the shards

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        from torchrec import KeyedJaggedTensor

        flat = indices.reshape(-1).to(torch.long)
        kjt = KeyedJaggedTensor.from_lengths_sync(keys=[self.name], values=flat,
                                                  lengths=torch.ones(len(flat), dtype=torch.int32))
        rows = self.ebc(kjt).to_dict()[self.name]
        return rows.reshape(*indices.shape, self.embedding_dim)


def _table_name(module: nn.Module) -> str | None:
    name = getattr(module, "turborec_table_name", None)
    return name if isinstance(name, str) else None


def shardable_tables(net: nn.Module) -> dict[str, nn.Embedding]:
    """The net's dense tables that FBGEMM can shard (width a multiple of 4), by their plan name."""
    out: dict[str, nn.Embedding] = {}
    for module in net.modules():
        name = _table_name(module)
        if name is None:
            continue
        if not isinstance(module, nn.Embedding):
            raise ConfigError(f"sharded training needs dense embedding tables; table '{name}' is "
                              f"{type(module).__name__}")
        if module.embedding_dim % 4 == 0:
            out[name] = module
    if not out:
        raise ConfigError("the net has no embedding table that can be sharded")
    return out


def _swap(root: nn.Module, replace: Mapping[int, nn.Module]) -> None:
    """Replace every reference to the modules keyed by id (a table shared by two towers stays shared)."""
    for module in list(root.modules()):
        for child_name, child in list(module.named_children()):
            if id(child) in replace:
                setattr(module, child_name, replace[id(child)])


class _NoDataParallel:
    """DMP's data-parallel wrapper slot left empty: :class:`turborec.distributed.train.ShardedParallel`
    averages the replicated gradients itself, so the net is called directly, tower by tower."""

    def wrap(self, dmp: Any, env: Any, device: torch.device) -> None:
        return None


@dataclass
class ShardedNet:
    """A net's sharded copy: ``module`` (the same class as the net) inside ``dmp``, and which parameters
    are shards of tables."""

    dmp: Any
    module: nn.Module
    shards: list[ShardInfo]
    table_names: list[str]
    table_params: list[nn.Parameter]
    dense_params: dict[str, nn.Parameter]  # replicated, by their name in the net

    def named_tables(self) -> dict[str, Any]:
        """``{table: ShardedTensor}`` (aliasing the live shards)."""
        return sharded_tables(self.dmp.state_dict())

    @torch.no_grad()
    def load_from(self, net: nn.Module) -> None:
        """Every rank: take the tables (this rank's shards of them) and the replicated parts from ``net``."""
        full = {name: table.weight.detach() for name, table in shardable_tables(net).items()}
        for name, sharded in self.named_tables().items():
            scatter_full(sharded, full[name])
        own = dict(net.named_parameters())
        for name, param in self.dense_params.items():
            param.copy_(own[name])

    @torch.no_grad()
    def copy_to(self, net: nn.Module, dst: int = 0) -> None:
        """A collective: gather every table on rank ``dst`` and write tables and replicated parts into ``net`` there."""
        tables = {name: gather_full(sharded, dst) for name, sharded in self.named_tables().items()}
        if torch.distributed.get_rank() != dst:
            return
        for name, table in shardable_tables(net).items():
            full = tables[name]
            assert full is not None
            table.weight.copy_(full)
        own = dict(net.named_parameters())
        for name, param in self.dense_params.items():
            own[name].copy_(param)


def shard_net(net: nn.Module, sharding: str, optimizer: TableOptimizer, device: torch.device,
              world_size: int) -> ShardedNet:
    """A collective: the sharded copy of ``net`` (which every rank built alike), holding ``net``'s weights."""
    from torchrec.distributed import DistributedModelParallel

    rng = torch.get_rng_state()  # building and sharding draws at random; the caller's next draws stay as they were
    tables = shardable_tables(net)
    train_net = copy.deepcopy(net)
    own = shardable_tables(train_net)
    _swap(train_net, {id(own[name]): ShardedTable(name, t.num_embeddings, t.embedding_dim)
                      for name, t in tables.items()})
    sharder = make_sharder(optimizer)
    plan = plan_sharding(train_net, sorted(tables), sharding, sharder, device, world_size, optimizer.compute_kernel)
    dmp = DistributedModelParallel(train_net, device=device, plan=plan, sharders=[sharder],
                                   data_parallel_wrapper=_NoDataParallel())
    torch.set_rng_state(rng)
    module = dmp.module
    table_ids = {id(p) for m in module.modules() if isinstance(m, ShardedTable) for p in m.parameters()}
    sharded = ShardedNet(
        dmp=dmp, module=module, shards=plan_shards(plan), table_names=sorted(tables),
        table_params=[p for p in module.parameters() if id(p) in table_ids],
        dense_params={n: p for n, p in module.named_parameters() if id(p) not in table_ids},
    )
    sharded.load_from(net)
    return sharded
