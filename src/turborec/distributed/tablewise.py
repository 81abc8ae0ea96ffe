"""Table-wise sharded embeddings on plain ``torch.distributed`` (gloo or NCCL), for machines without TorchRec.

TorchRec's GPU build needs an fbgemm-gpu wheel made for the exact torch and CUDA
in use; where there is none (the H200 machines here) this module does what
TorchRec's table-wise sharding does, with two all-to-alls:

1. every rank sends each table owner the ids its batch looks up in that owner's tables,
2. the owner looks them up and sends the rows back (autograd-aware, so the
   backward pass returns each row's gradient to the owner, summed over ranks).

:class:`TablewiseEmbeddings` is a drop-in for the rankers' ``SparseEmbeddings``
(``[B, F] ids -> [B, F, d]``); :func:`shard_ranker` swaps it into any ranker and
wraps the dense rest in DDP. Every rank must feed the same batch size each step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import _functional_collectives as funcol
from torch.nn.parallel import DistributedDataParallel

from turborec.errors import ConfigError
from turborec.models.rankers.common import RankerNet


def assign_tables(cardinalities: Sequence[int], world_size: int) -> list[int]:
    """Owner rank of each table: largest first, each to the rank with the fewest tables, then fewest rows
    (every table is looked up once per row, so table counts balance the work and rows the memory)."""
    load = [(0, 0, r) for r in range(world_size)]
    owner = [0] * len(cardinalities)
    for f in sorted(range(len(cardinalities)), key=lambda i: -int(cardinalities[i])):
        n_tables, n_rows, rank = min(load)
        owner[f] = rank
        load[rank] = (n_tables + 1, n_rows + int(cardinalities[f]), rank)
    return owner


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


class TablewiseEmbeddings(nn.Module):
    """``forward(sparse int64 [B, F]) -> [B, F, dim]`` with each table held whole by one rank."""

    def __init__(self, cardinalities: Sequence[int], dim: int, *, rank: int, world_size: int,
                 owner: Sequence[int] | None = None, sparse_grad: bool = False,
                 device: torch.device | None = None) -> None:
        super().__init__()
        self.dim, self.rank, self.world_size = dim, rank, world_size
        self.cardinalities = [int(c) for c in cardinalities]
        self.owner = list(owner) if owner is not None else assign_tables(cardinalities, world_size)
        if len(self.owner) != len(cardinalities) or any(not 0 <= o < world_size for o in self.owner):
            raise ConfigError(f"table owners {self.owner} do not fit {len(cardinalities)} tables on {world_size} ranks")
        self.features_of = [[f for f, o in enumerate(self.owner) if o == r] for r in range(world_size)]
        self.local = self.features_of[rank]
        self.tables = nn.ModuleDict({
            f"sparse_{f}": nn.Embedding(int(cardinalities[f]), dim, sparse=sparse_grad, device=device)
            for f in self.local
        })
        order = [f for r in range(world_size) for f in self.features_of[r]]
        self.restore: torch.Tensor
        self.register_buffer("restore", torch.argsort(torch.tensor(order, dtype=torch.long)), persistent=False)

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        batch = sparse.shape[0]
        n_local = len(self.local)
        if self.world_size == 1:
            return torch.stack([self.tables[f"sparse_{f}"](sparse[:, f]) for f in self.local], dim=1)
        # ids, grouped by owner: [B, F_r] for each rank r, flattened one after the other
        send_ids = torch.cat([sparse[:, feats].reshape(-1) for feats in self.features_of])
        in_splits = [batch * len(feats) for feats in self.features_of]
        out_splits = [batch * n_local] * self.world_size
        recv_ids = torch.empty(sum(out_splits), dtype=sparse.dtype, device=sparse.device)
        dist.all_to_all_single(recv_ids, send_ids, out_splits, in_splits)
        ids = recv_ids.view(self.world_size, batch, n_local)
        if n_local:
            rows = torch.stack([self.tables[f"sparse_{f}"](ids[:, :, j]) for j, f in enumerate(self.local)], dim=2)
        else:
            rows = torch.zeros(self.world_size, batch, 0, self.dim, device=sparse.device)
        # rows [world, B, F_local, d] go back to the ranks that asked; autograd returns their gradients,
        # summed over ranks: scaled by 1/world they are the gradient of the mean loss, as DDP's are
        rows = _ScaleGrad.apply(rows, 1.0 / self.world_size)
        back_in = [batch * n_local * self.dim] * self.world_size
        back_out = [batch * len(feats) * self.dim for feats in self.features_of]
        group = dist.group.WORLD
        assert group is not None
        recv_rows = funcol.all_to_all_single_autograd(rows.reshape(-1), back_out, back_in, group)
        recv_rows = funcol.wait_tensor(recv_rows)
        parts = torch.split(recv_rows, back_out)
        grouped = torch.cat([p.view(batch, len(feats), self.dim) for p, feats in zip(parts, self.features_of)], dim=1)
        return grouped.index_select(1, self.restore)

    @torch.no_grad()
    def load_full(self, tables: Sequence[torch.Tensor]) -> None:
        """Take this rank's tables from the full list (the same on every rank)."""
        for f in self.local:
            self.table(f).weight.copy_(tables[f])

    @torch.no_grad()
    def gather_full(self) -> list[torch.Tensor]:
        """Every table, on every rank (a collective; for checkpoints and tests of small models)."""
        out = []
        for f, owner in enumerate(self.owner):
            if owner == self.rank:
                t = self.table(f).weight.detach().clone()
            else:
                device = self.table(self.local[0]).weight.device if self.local else torch.device("cpu")
                t = torch.empty(self._shape(f), device=device)
            dist.broadcast(t, src=owner)
            out.append(t)
        return out

    def table(self, feature: int) -> nn.Embedding:
        """The table of ``feature`` (only for features this rank owns)."""
        table = self.tables[f"sparse_{feature}"]
        assert isinstance(table, nn.Embedding)
        return table

    def _shape(self, feature: int) -> tuple[int, int]:
        return (self.cardinalities[feature], self.dim)


def _weight(table: nn.Module) -> torch.Tensor:
    weight = getattr(table, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ConfigError(f"table-wise sharding needs dense embedding tables, got {type(table).__name__}")
    return weight.detach()


def _replace(root: nn.Module, target: nn.Module, new: nn.Module) -> str:
    for name, module in root.named_modules():
        for child_name, child in module.named_children():
            if child is target:
                setattr(module, child_name, new)
                return f"{name}.{child_name}" if name else child_name
    raise ConfigError("embedding collection not found in the model")


def shard_ranker(model: RankerNet, *, rank: int, world_size: int, device: torch.device,
                 sparse_grad: bool = False) -> tuple[nn.Module, list[nn.Parameter], list[nn.Parameter]]:
    """Shard every embedding collection of ``model`` table-wise and wrap the rest in DDP.

    Returns (the model to call, the local table parameters, the dense parameters). The tables
    start from the model's own weights, so every rank must build ``model`` from the same seed.
    """
    names: list[str] = []
    for collection in model.embedding_collections():
        full = [_weight(table) for table in collection.tables.values()]
        sharded = TablewiseEmbeddings([t.shape[0] for t in full], collection.dim, rank=rank, world_size=world_size,
                                      sparse_grad=sparse_grad)
        sharded.load_full(full)
        path = _replace(model, collection, sharded)
        names += [f"{path}.{n}" for n, _ in sharded.named_parameters()]
    model.to(device)
    tables = [p for n, p in model.named_parameters() if n in set(names)]
    dense = [p for n, p in model.named_parameters() if n not in set(names)]
    if world_size == 1:
        return model, tables, dense
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids), tables, dense


__all__ = ["TablewiseEmbeddings", "assign_tables", "shard_ranker"]
