"""TorchRec sharding: the sharder, the plan (table-wise / row-wise / column-wise), and moving whole tables
in and out of their shards.

TorchRec 1.8 offers row-wise sharding of an ``EmbeddingBagCollection`` only on
CUDA; its CPU kernels (FBGEMM's TBE) and gloo's collectives run it correctly when
every rank feeds the same number of rows per step (tests/distributed compare it
with an unsharded reference), so :class:`TurborecSharder` lists it on CPU too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from turborec._util.optional import require
from turborec.errors import ConfigError

SHARDINGS = ("table_wise", "row_wise", "column_wise", "auto")


def _torchrec() -> Any:
    return require("torchrec", "distributed", "torchrec (install with: pip install --no-deps torchrec==1.8.0)")


TABLE_OPTIMIZERS = ("adam", "adagrad", "rowwise_adagrad", "sgd")


@dataclass(frozen=True)
class TableOptimizer:
    """How the sharded tables learn.

    ``adam`` (the default) is the estimator's own optimizer: the shards use TorchRec's *dense* compute
    kernel, so each rank's shard is an ordinary parameter with a gradient and ``torch.optim.Adam`` updates
    it with the estimator's learning rate, exactly as one process updates the whole table. The other kinds
    are FBGEMM's *fused* kernel, which updates the touched rows inside the backward pass and never
    materialises a table's gradient (what large tables need); on CPU it offers exact Adagrad, row-wise
    Adagrad and SGD, not Adam (its CPU build refuses ``adam``), with their own learning rate ``lr``.
    """

    kind: str = "adam"
    lr: float = 0.15  # the fused kinds only; adam uses the training config's lr
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.kind not in TABLE_OPTIMIZERS:
            raise ConfigError(f"embedding optimizer {self.kind!r}: expected one of {', '.join(TABLE_OPTIMIZERS)}")
        if not self.lr > 0:
            raise ConfigError(f"embedding learning rate must be > 0, got {self.lr}")

    @property
    def fused(self) -> bool:
        return self.kind != "adam"

    @property
    def compute_kernel(self) -> str:
        return "fused" if self.fused else "dense"

    def fused_params(self) -> dict[str, Any] | None:
        if not self.fused:
            return None
        from fbgemm_gpu.split_embedding_configs import EmbOptimType

        kinds = {"adagrad": EmbOptimType.EXACT_ADAGRAD, "rowwise_adagrad": EmbOptimType.EXACT_ROWWISE_ADAGRAD,
                 "sgd": EmbOptimType.EXACT_SGD}
        return {"optimizer": kinds[self.kind], "learning_rate": self.lr, "eps": self.eps}


def make_sharder(optimizer: TableOptimizer) -> Any:
    """An EmbeddingBagCollection sharder with the table optimizer, that also offers row-wise on CPU."""
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.types import ShardingType

    class TurborecSharder(EmbeddingBagCollectionSharder):  # type: ignore[misc]
        def sharding_types(self, compute_device_type: str) -> list[str]:
            types = list(super().sharding_types(compute_device_type))
            if ShardingType.ROW_WISE.value not in types:
                types.append(ShardingType.ROW_WISE.value)
            return types

    return TurborecSharder(fused_params=optimizer.fused_params())


def plan_sharding(
    module: nn.Module, tables: Sequence[str], sharding: str, sharder: Any, device: torch.device, world_size: int,
    compute_kernel: str = "fused",
) -> Any:
    """The same sharding plan on every rank (rank 0 plans, then broadcasts it).

    TorchRec 1.8's planner accepts the dense kernel for data-parallel tables only ("TODO re-enable model
    parallel and dense" in its sharder), while its sharded lookups run it: the plan is made for the fused
    kernel and then switched to ``compute_kernel``; tests/distributed compare the result with one process.
    """
    _torchrec()
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology

    if sharding not in SHARDINGS:
        raise ConfigError(f"sharding {sharding!r}: expected one of {', '.join(SHARDINGS)}")
    constraints = None
    if sharding != "auto":
        constraints = {t: ParameterConstraints(sharding_types=[sharding], compute_kernels=["fused"]) for t in tables}
    topology = Topology(world_size=world_size, compute_device=device.type)
    planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
    plan = planner.collective_plan(module, [sharder], dist.GroupMember.WORLD)
    if compute_kernel != "fused":
        for module_plan in plan.plan.values():
            for param in module_plan.values():
                param.compute_kernel = compute_kernel
    return plan


@dataclass(frozen=True)
class ShardInfo:
    """One shard of one table: which rank holds which rows and columns."""

    table: str
    sharding: str
    rank: int
    rows: tuple[int, int]  # [start, stop)
    cols: tuple[int, int]


def plan_shards(plan: Any) -> list[ShardInfo]:
    """Every shard of every table in a TorchRec plan (the same list on every rank)."""
    out: list[ShardInfo] = []
    for module_plan in plan.plan.values():
        for table, param in module_plan.items():
            spec = param.sharding_spec
            for shard in spec.shards if spec is not None else []:
                r0, c0 = shard.shard_offsets
                nr, nc = shard.shard_sizes
                rank = int(shard.placement.rank())
                out.append(ShardInfo(table, str(param.sharding_type), rank, (r0, r0 + nr), (c0, c0 + nc)))
    return sorted(out, key=lambda s: (s.table, s.rows, s.cols))


def describe_plan(shards: Sequence[ShardInfo]) -> str:
    """A table of the plan for people: one line per shard."""
    lines = [f"{'table':<14} {'sharding':<12} {'rank':>4}  {'rows':<16} cols"]
    for s in shards:
        rows, cols = f"[{s.rows[0]}, {s.rows[1]})", f"[{s.cols[0]}, {s.cols[1]})"
        lines.append(f"{s.table:<14} {s.sharding:<12} {s.rank:>4}  {rows:<16} {cols}")
    return "\n".join(lines)


# --------------------------------------------------------------- whole tables <-> shards
def sharded_tables(state: Mapping[str, Any], suffix: str = ".weight") -> dict[str, Any]:
    """``{table name: ShardedTensor}`` from a sharded module's state_dict (keys ``...embedding_bags.<t>.weight``)."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    out = {}
    for key, value in state.items():
        if isinstance(value, ShardedTensor) and ".embedding_bags." in key and key.endswith(suffix):
            out[key.split(".embedding_bags.")[1][: -len(suffix)]] = value
    return out


def local_shards(sharded: Any) -> list[tuple[tuple[int, ...], torch.Tensor]]:
    """(offsets, tensor) of each shard this rank holds (tensors alias the live weights)."""
    return [(tuple(s.metadata.shard_offsets), s.tensor) for s in sharded.local_shards()]


@torch.no_grad()
def scatter_full(sharded: Any, full: torch.Tensor) -> None:
    """Copy a whole table (the same on every rank) into this rank's shards of it."""
    if tuple(full.shape) != tuple(sharded.size()):
        raise ConfigError(f"table of shape {tuple(full.shape)} does not fit shards of {tuple(sharded.size())}")
    for (r0, c0), shard in local_shards(sharded):
        rows, cols = shard.shape
        shard.copy_(full[r0 : r0 + rows, c0 : c0 + cols].to(shard))


@torch.no_grad()
def gather_full(sharded: Any, dst: int = 0) -> torch.Tensor | None:
    """The whole table on rank ``dst`` (None elsewhere). A collective: every rank must call it."""
    out = torch.empty(tuple(sharded.size()), dtype=sharded.dtype) if dist.get_rank() == dst else None
    sharded.gather(dst=dst, out=out)
    return out
