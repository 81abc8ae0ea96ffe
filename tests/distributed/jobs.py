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


def _tiny_net(share: bool, dropout: float = 0.0) -> Any:
    from turborec.models.two_tower import TwoTowerConfig, TwoTowerNet

    torch.manual_seed(0)
    cfg = TwoTowerConfig(dim=8, hidden=(16,), dropout=dropout, share_item_embeddings=share)
    net = TwoTowerNet(cfg, {"n_users": 30, "n_items": 20, "n_tokens": 6, "token_width": 3})
    if net.item_bias is not None:
        torch.nn.init.normal_(net.item_bias.weight)
    net.set_item_tokens(torch.randint(-1, 6, (20, 3), generator=torch.Generator().manual_seed(2)))
    return net


def torchrec_shards(ctx: DistContext, args: list[str]) -> dict[str, Any]:
    """The two-tower with TorchRec-sharded tables under one sharding: per-rank shard sizes, and its vectors vs
    the unsharded net's."""
    from turborec.distributed import sharding as S
    from turborec.distributed.tables import shard_net, shardable_tables

    mode = args[0]
    net = _tiny_net("unshared" not in args).eval()
    sharded = shard_net(net, mode, S.TableOptimizer(), ctx.device, ctx.world_size)
    module = sharded.module.eval()
    gen = torch.Generator().manual_seed(10 + ctx.rank)
    users = torch.randint(-1, 30, (5,), generator=gen)
    history = torch.randint(-1, 20, (5, 6), generator=gen)
    candidates = torch.randint(0, 20, (9,), generator=gen)
    with torch.no_grad():
        user_diff = _max_diff(module.user_vectors(users, history), net.user_vectors(users, history))
        item_diff = _max_diff(module.item_vectors(candidates), net.item_vectors(candidates))
    target = _tiny_net("unshared" not in args)
    for table in shardable_tables(target).values():
        torch.nn.init.zeros_(table.weight)
    sharded.copy_to(target)
    full = {name: t.weight for name, t in shardable_tables(net).items()}
    got = shardable_tables(target)
    roundtrip = max(_max_diff(got[k].weight, full[k]) for k in full) if ctx.is_main else 0.0
    return {
        "user_diff": user_diff, "item_diff": item_diff, "roundtrip": roundtrip,
        "local": {name: [[list(off), list(t.shape)] for off, t in S.local_shards(st)]
                  for name, st in sharded.named_tables().items()},
        "full": {name: list(t.shape) for name, t in full.items()},
        "plan": [s.__dict__ for s in sharded.shards],
    }


def sharded_adam_steps(ctx: DistContext, args: list[str]) -> dict[str, Any]:
    """Three steps of a full-softmax loss on global batches: sharded tables, each rank on its half of the rows,
    through ShardedParallel's optimizer and step, vs one process on the whole batches with the estimator's Adam.

    Returns per parameter the difference of the first step's gradients (after ShardedParallel averaged and
    scaled them) and, after three steps, the cosine between the two runs' weight changes. (Adam divides by
    the gradient's running size, so a parameter whose true gradient is 0, as the item tower's last bias under
    a softmax, moves by float noise: weights are compared by direction, gradients exactly.)"""
    from turborec.distributed.spec import ShardedTrainSpec
    from turborec.distributed.train import ShardedParallel
    from turborec.train import TrainConfig
    from turborec.train.trainer import adam

    mode, kind = args[0], args[1]
    reference = _tiny_net(share=False)
    initial = {n: p.detach().clone() for n, p in reference.named_parameters()}
    net = copy.deepcopy(reference)
    spec = ShardedTrainSpec(out="unused", sharding=mode, embedding_optimizer=kind, embedding_lr=0.1)
    par = ShardedParallel(ctx, spec, log=lambda _: None)
    train_net = par.prepare(net)
    opt = par.optimizer(train_net, TrainConfig(lr=0.01))
    ref_opt = adam(reference.parameters(), TrainConfig(lr=0.01))  # the estimator's Adam, as ShardedParallel's
    ref_params = dict(reference.named_parameters())
    gen = torch.Generator().manual_seed(5)
    all_items = torch.arange(20)
    grads: dict[str, float] = {}
    for step in range(3):
        rows = 4 * ctx.world_size
        users = torch.randint(0, 30, (rows,), generator=gen)
        history = torch.randint(-1, 20, (rows, 6), generator=gen)
        items = torch.randint(0, 20, (rows,), generator=gen)
        lo, hi = par.rows(rows)
        loss = F.cross_entropy(train_net.user_vectors(users[lo:hi], history[lo:hi]) @ train_net.item_vectors(all_items).T,
                               items[lo:hi])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ref_loss = F.cross_entropy(reference.user_vectors(users, history) @ reference.item_vectors(all_items).T, items)
        ref_opt.zero_grad(set_to_none=True)
        ref_loss.backward()
        if step == 0:
            grads = _step_grads(par, train_net, ref_params)
        par.step(opt)
        ref_opt.step()
    par.finish()  # the trained weights into ``net`` on rank 0
    cosines = {}
    for name, p in net.named_parameters():
        a, b = (p.detach() - initial[name]).flatten(), (ref_params[name].detach() - initial[name]).flatten()
        cosines[name] = float(F.cosine_similarity(a, b, dim=0))
    return {"grads": grads, "cosines": cosines if ctx.is_main else {}}


def _step_grads(par: Any, train_net: Any, ref_params: dict[str, Any]) -> dict[str, float]:
    """|sharded - reference| gradient per parameter this rank holds: the dense parts averaged over the ranks
    (as par.step does, here on a copy), the table shards as TorchRec's all-to-all returns them (it divides
    by the world size in the backward pass, so they are the global batch's mean gradients already)."""
    from turborec.distributed import sharding as S

    sharded = par._sharded()
    world = par.world_size
    out: dict[str, float] = {}
    for name, p in sharded.dense_params.items():
        g = p.grad.clone()
        dist.all_reduce(g)
        out[name] = _max_diff(g / world, ref_params[name].grad)
    offsets = {name: S.local_shards(st) for name, st in sharded.named_tables().items()}
    by_table = {getattr(m, "turborec_table_name", None): n for n, m in dict(par.net.named_modules()).items()}
    for name, p in train_net.named_parameters():
        if ".embedding_bags." not in name or p.grad is None or not p.numel():
            continue
        table = name.split(".embedding_bags.")[1].rsplit(".", 1)[0]
        (r0, c0), shard = offsets[table][0]
        ref = ref_params[f"{by_table[table]}.weight"].grad[r0 : r0 + shard.shape[0], c0 : c0 + shard.shape[1]]
        out[f"table {table}"] = _max_diff(p.grad, ref)
    return out


JOBS: dict[str, Callable[[DistContext, list[str]], dict[str, Any]]] = {
    "tablewise_step": tablewise_step,
    "torchrec_shards": torchrec_shards,
    "sharded_adam_steps": sharded_adam_steps,
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
