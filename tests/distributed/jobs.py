"""Multi-process jobs the distributed tests start through torchrun: ``jobs.py NAME OUT_JSON [ARGS...]``.

Each rank checks nothing itself; it writes what it measured to ``OUT_JSON.<rank>``
and the test asserts on those numbers, so a failure shows the values.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn import functional as F

from turborec.distributed.env import DistContext, process_group


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().cpu() - b.detach().cpu()).abs().max())


def tablewise_step(ctx: DistContext, args: list[str]) -> dict[str, Any]:
    """A DLRM with table-wise sharded tables vs the same DLRM in one process: forward, one SGD step."""
    from turborec.distributed.tablewise import TablewiseEmbeddings, shard_ranker
    from turborec.models.rankers import DLRM, DLRMConfig

    cards = [50, 30, 20, 10, 7]
    torch.manual_seed(0)
    reference = DLRM(DLRMConfig(embedding_dim=8, bottom_mlp=(16,), top_mlp=(16,)), cardinalities=cards, n_dense=3)
    model = copy.deepcopy(reference)
    initial = [t.weight.detach().clone() for t in reference.embeddings.tables.values()]
    gen = torch.Generator().manual_seed(1)
    rows = 8 * ctx.world_size
    dense = torch.randn(rows, 3, generator=gen)
    sparse = torch.stack([torch.randint(0, c, (rows,), generator=gen) for c in cards], dim=1)
    label = torch.randint(0, 2, (rows,), generator=gen).float()
    mine = slice(ctx.rank * 8, (ctx.rank + 1) * 8)

    wrapped, tables, dense_params = shard_ranker(model, rank=ctx.rank, world_size=ctx.world_size, device=ctx.device)
    sharded = next(m for m in model.modules() if isinstance(m, TablewiseEmbeddings))
    logits = wrapped(dense[mine], sparse[mine])
    ref_logits = reference(dense, sparse)[mine]
    forward_diff = _max_diff(logits, ref_logits)

    opt = torch.optim.SGD(tables + dense_params, lr=0.5)
    F.binary_cross_entropy_with_logits(logits, label[mine]).backward()
    opt.step()
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.5)
    F.binary_cross_entropy_with_logits(reference(dense, sparse), label).backward()
    ref_opt.step()

    gathered = sharded.gather_full()
    ref_tables = [t.weight for t in reference.embeddings.tables.values()]
    table_diff = max(_max_diff(a, b) for a, b in zip(gathered, ref_tables))
    moved = max(_max_diff(a, b) for a, b in zip(gathered, initial))
    ref_dense = dict(reference.named_parameters())
    dense_diff = max(_max_diff(p, ref_dense[n]) for n, p in model.named_parameters() if "embeddings" not in n)
    return {
        "forward_diff": forward_diff, "table_diff": table_diff, "dense_diff": dense_diff, "moved": moved,
        "local_tables": sorted(sharded.local), "owner": sharded.owner,
        "local_rows": sum(int(p.shape[0]) for p in tables), "total_rows": sum(cards),
    }


def torchrec_shards(ctx: DistContext, args: list[str]) -> dict[str, Any]:
    """The TorchRec two-tower under one sharding: per-rank shard sizes, and its vectors vs TwoTowerNet's."""
    from torchrec.distributed import DistributedModelParallel

    from turborec.distributed import sharding as S
    from turborec.distributed.two_tower import (
        TorchRecTwoTower,
        TowerSizes,
        copy_dense,
        dense_modules,
        make_batch,
        table_configs,
        tables_from_net,
    )
    from turborec.models.two_tower import TwoTowerConfig, TwoTowerNet

    mode = args[0]
    torch.manual_seed(0)
    cfg = TwoTowerConfig(dim=8, hidden=(16,), dropout=0.0, share_item_embeddings="unshared" not in args)
    net = TwoTowerNet(cfg, {"n_users": 30, "n_items": 20, "n_tokens": 6, "token_width": 3}).eval()
    if net.item_bias is not None:
        torch.nn.init.normal_(net.item_bias.weight)
    net.set_item_tokens(torch.randint(-1, 6, (20, 3), generator=torch.Generator().manual_seed(2)))
    sizes = TowerSizes.of(net)
    module = TorchRecTwoTower(cfg, sizes, net.item_tower.item_tokens, torch.device("meta"))
    copy_dense(dense_modules(net), dense_modules(module))
    sharder = S.make_sharder(S.FusedOptimizer())
    plan = S.plan_sharding(module, [t.name for t in table_configs(sizes)], mode, sharder, ctx.device, ctx.world_size)
    dmp = DistributedModelParallel(module, device=ctx.device, plan=plan, sharders=[sharder])
    tables = S.sharded_tables(dmp.state_dict())
    full = tables_from_net(net)
    for name, st in tables.items():
        S.scatter_full(st, full[name])
    gen = torch.Generator().manual_seed(10 + ctx.rank)
    users = torch.randint(-1, 30, (5,), generator=gen)
    history = torch.randint(-1, 20, (5, 6), generator=gen)
    candidates = torch.randint(0, 20, (9,), generator=gen)
    uv, iv = dmp(make_batch(users, history, candidates, dmp.module.item_tokens), candidates, 5)
    with torch.no_grad():
        user_diff = _max_diff(uv, net.user_vectors(users, history))
        item_diff = _max_diff(iv, net.item_vectors(candidates))
    gathered = {name: S.gather_full(st) for name, st in tables.items()}
    roundtrip = max(_max_diff(gathered[k], full[k]) for k in full) if ctx.is_main else 0.0
    return {
        "user_diff": user_diff, "item_diff": item_diff, "roundtrip": roundtrip,
        "local": {name: [[list(off), list(t.shape)] for off, t in S.local_shards(st)] for name, st in tables.items()},
        "full": {name: list(t.shape) for name, t in full.items()},
        "plan": [s.__dict__ for s in S.plan_shards(plan)],
    }


JOBS: dict[str, Callable[[DistContext, list[str]], dict[str, Any]]] = {
    "tablewise_step": tablewise_step,
    "torchrec_shards": torchrec_shards,
}


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    with process_group() as ctx:
        result = JOBS[name](ctx, sys.argv[3:])
        dist.barrier()
    Path(f"{out}.{ctx.rank}").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
