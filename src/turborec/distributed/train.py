"""Sharded training: the single-process estimator and :func:`turborec.train.trainer.fit_loop`, with TorchRec
replacing only what has to change.

:class:`ShardedParallel` is the estimator's :class:`~turborec.train.trainer.Parallel`:

- ``prepare``: the net the estimator trains is a copy whose embedding tables are sharded by TorchRec
  (:func:`turborec.distributed.tables.shard_net`); same class, same towers, same features;
- ``rows``: every rank draws each global batch exactly as one process does (same seeds, same RNG calls)
  and trains on an equal slice of its rows (in-batch negatives still come from the whole batch);
- ``optimizer`` / ``step``: the estimator's Adam over every parameter, the tables' shards included
  (TorchRec's dense kernel), after averaging the replicated gradients over the ranks (the shards' come
  back from TorchRec's all-to-all as the global batch's mean already); or, with a fused table
  optimizer (Adagrad, SGD), the tables update inside the backward pass and Adam takes the rest;
- ``evaluate``: rank 0 gathers the tables into the estimator's own net, scores the validation split
  as one process does, and every rank gets the score, so early stopping decides alike everywhere;
- ``snapshot`` / ``restore``: the best weights kept per rank (its shards and the replicated parts);
- ``resume`` / ``epoch_end``: per-rank checkpoints (:mod:`turborec.distributed.checkpoint`) of the weights,
  both optimizers, the loop's state and the estimator's RNGs and weight average.

Loss, negatives, weight averaging, early stopping and the artifact are the estimator's own code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from turborec.data import apply_protocol, load_dataset
from turborec.distributed import checkpoint as ckpt
from turborec.distributed.env import DistContext
from turborec.distributed.sharding import TableOptimizer, describe_plan
from turborec.distributed.spec import ShardedTrainSpec
from turborec.distributed.tables import ShardedNet, shard_net
from turborec.errors import ConfigError
from turborec.train import TrainConfig, TrainHistory, TwoTowerRecommender
from turborec.train.options import make_estimator
from turborec.train.trainer import LoopState, Parallel, adam


class ShardedParallel(Parallel):
    """One rank's side of a sharded run; every hook is collective (all ranks call it in step)."""

    def __init__(self, ctx: DistContext, spec: ShardedTrainSpec, log: Callable[[str], None] = print) -> None:
        self.ctx, self.spec, self.log = ctx, spec, log
        self.rank, self.world_size = ctx.rank, ctx.world_size
        self.table_optimizer = TableOptimizer(spec.embedding_optimizer, spec.embedding_lr or 0.15)
        self.net: nn.Module | None = None
        self.sharded: ShardedNet | None = None
        self.resumed_from: int | None = None

    # ------------------------------------------------------------ estimator hooks
    def prepare(self, net: nn.Module) -> nn.Module:
        self.net = net
        self.sharded = shard_net(net, self.spec.sharding, self.table_optimizer, self.ctx.device, self.world_size)
        if self.ctx.is_main:
            self.log(f"sharding plan ({self.world_size} processes, {self.ctx.backend}, tables: "
                     f"{self.table_optimizer.kind} on the {self.table_optimizer.compute_kernel} kernel):\n"
                     f"{describe_plan(self.sharded.shards)}")
        return self.sharded.module

    def rows(self, n: int) -> tuple[int, int]:
        # equal slices: TorchRec's row-wise CPU path needs them; up to world_size - 1 rows of a batch are dropped
        per_rank = n // self.world_size
        return self.rank * per_rank, (self.rank + 1) * per_rank

    def optimizer(self, net: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
        s = self._sharded()
        params = list(s.dense_params.values())
        if not self.table_optimizer.fused:
            params += [p for p in s.table_params if p.numel()]
        return adam(params, config)  # the estimator's Adam (fused where torch has the kernel): the same steps

    def evaluate(self, score: Callable[[], float]) -> Callable[[], float]:
        def scored() -> float:
            self.finish()
            value = torch.tensor([score() if self.ctx.is_main else 0.0], dtype=torch.float64)
            dist.broadcast(value, src=0)
            return float(value.item())

        return scored

    def finish(self) -> None:
        assert self.net is not None
        self._sharded().copy_to(self.net)
        self.net.eval()  # it only scores (in one process fit_loop puts the trained net in eval mode to validate)

    # ----------------------------------------------------------------- loop hooks
    def step(self, optimizer: torch.optim.Optimizer) -> None:
        s = self._sharded()
        world = self.world_size
        dense = list(s.dense_params.values())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in dense]
        if world > 1 and grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= world
            offset = 0
            for p in dense:
                p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
                offset += p.numel()
        # the shards' gradients need nothing: TorchRec's all-to-all divides them by the world size in the
        # backward pass (its gradient division), which makes them the global batch's mean gradients
        optimizer.step()

    def mean_loss(self, total: float, count: int) -> float:
        sums = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(sums)
        return float(sums[0] / max(float(sums[1]), 1.0))

    def agree(self, stop: bool) -> bool:
        flag = torch.tensor([int(stop)])
        dist.broadcast(flag, src=0)  # rank 0's clock and scores decide
        return bool(flag.item())

    def snapshot(self, net: nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in net.parameters()]

    @torch.no_grad()
    def restore(self, net: nn.Module, snapshot: Any) -> None:
        for p, saved in zip(net.parameters(), snapshot, strict=True):
            p.copy_(saved)

    # ------------------------------------------------------------ checkpoints
    def _sharded(self) -> ShardedNet:
        if self.sharded is None:
            raise ConfigError("ShardedParallel.prepare() was not called")
        return self.sharded

    def fingerprint(self) -> str:
        assert self.net is not None
        config = getattr(self.net, "config", None)
        blob = json.dumps({"world": self.world_size, "shards": [s.__dict__ for s in self._sharded().shards],
                           "net": config.to_dict() if config is not None else None, "sharding": self.spec.sharding,
                           "tables": self.table_optimizer.kind}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def epoch_end(self, net: nn.Module, optimizer: torch.optim.Optimizer, state: LoopState) -> None:
        h = state.history
        if self.ctx.is_main and self.spec.progress:
            valid = f", valid ndcg@10 {h.scores[-1]:.4f}" if h.scores else ""
            self.log(f"epoch {state.epoch + 1}: loss {h.losses[-1]:.4f}{valid} ({state.seconds:.1f}s)")
        if self.spec.checkpoint_dir and (state.epoch + 1) % self.spec.checkpoint_every == 0:
            self.save_checkpoint(Path(self.spec.checkpoint_dir), optimizer, state)

    def save_checkpoint(self, root: Path, optimizer: torch.optim.Optimizer, state: LoopState) -> None:
        s = self._sharded()
        tensors = ckpt.flatten_tensors(s.dmp.state_dict(), "model")
        if self.table_optimizer.fused:
            tensors.update(ckpt.flatten_tensors(s.dmp.fused_optimizer.state_dict(), "fused"))
        h = state.history
        loop = {"epoch": state.epoch, "stale": state.stale, "seconds": state.seconds, "losses": h.losses,
                "scores": h.scores, "best_epoch": h.best_epoch, "best_score": h.best_score}
        parts = {"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "best": state.best_state,
                 "extras": {name: _extra_state(obj) for name, obj in state.extras.items()}}
        more, skeleton = ckpt.split_state(parts, "state")
        tensors.update(more)
        ckpt.save_rank(root, state.epoch, self.rank, tensors, {"loop": loop, "state": skeleton,
                                                               "fingerprint": self.fingerprint()})
        dist.barrier()
        if self.ctx.is_main:
            ckpt.publish(root, state.epoch, self.world_size, self.fingerprint())
        dist.barrier()

    def resume(self, net: nn.Module, optimizer: torch.optim.Optimizer, state: LoopState) -> None:
        if not self.spec.checkpoint_dir:
            return
        found = ckpt.load_rank(Path(self.spec.checkpoint_dir), self.rank, self.world_size, self.fingerprint())
        if found is None:
            return
        s, t = self._sharded(), found.tensors
        model_state = s.dmp.state_dict()
        ckpt.fill_tensors(model_state, "model", t)
        s.dmp.load_state_dict(model_state)
        if self.table_optimizer.fused:
            fused = s.dmp.fused_optimizer.state_dict()
            ckpt.fill_tensors(fused, "fused", t)
            s.dmp.fused_optimizer.load_state_dict(fused)
        parts = ckpt.join_state(found.state["state"], t)
        optimizer.load_state_dict(parts["optimizer"])
        torch.set_rng_state(parts["rng"])
        for name, obj in state.extras.items():
            _load_extra(obj, parts["extras"][name])
        loop = found.state["loop"]
        state.epoch, state.stale, state.seconds = int(loop["epoch"]), int(loop["stale"]), float(loop["seconds"])
        state.history = TrainHistory(list(loop["losses"]), list(loop["scores"]), int(loop["best_epoch"]),
                                     float(loop["best_score"]))
        state.best_state = parts["best"]
        self.resumed_from = state.epoch
        if self.ctx.is_main:
            self.log(f"resumed from the checkpoint of epoch {state.epoch + 1} in {self.spec.checkpoint_dir}")


def _extra_state(obj: Any) -> Any:
    """The state of one of the estimator's helpers (see LoopState.extras)."""
    if obj is None:
        return None
    if isinstance(obj, np.random.Generator):
        return obj.bit_generator.state
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    raise ConfigError(f"cannot checkpoint the training helper {type(obj).__name__}")


def _load_extra(obj: Any, saved: Any) -> None:
    if obj is None:
        return
    if isinstance(obj, np.random.Generator):
        obj.bit_generator.state = saved
    elif isinstance(obj, torch.Generator):
        obj.set_state(saved)
    else:
        obj.load_state_dict(saved)


def train_sharded(spec: ShardedTrainSpec, ctx: DistContext, log: Callable[[str], None] = print) -> Path | None:
    """Run the job on this rank: the estimator's fit with :class:`ShardedParallel`; rank 0 writes and returns
    the artifact (other ranks return None)."""
    typed: dict[str, Any] = {"seed": spec.seed, "device": "cpu", "progress": False}
    if spec.epochs:
        typed["epochs"] = spec.epochs
    rec = make_estimator(spec.model, dict(spec.params), **typed)
    if not isinstance(rec, TwoTowerRecommender):
        raise ConfigError(f"--nproc supports the two-tower model, not {spec.model}")
    fmt = spec.format or ("movielens" if spec.data else "synthetic")
    data = load_dataset(spec.data, fmt, **dict(spec.data_options))
    if spec.split == "none":
        train, valid, test = data, None, None
    else:
        split = apply_protocol(spec.protocol, data, seed=spec.seed)
        train, valid, test = split.train, split.valid, split.test
    par = ShardedParallel(ctx, spec, log)
    rec.parallel = par
    rec.fit(train, valid)
    if not ctx.is_main:
        return None
    history = rec.history
    metrics: dict[str, Any] = {"data": spec.data or "synthetic", "model": spec.model, "seed": spec.seed}
    metrics["distributed"] = {
        "world_size": ctx.world_size, "backend": ctx.backend, "sharding": spec.sharding,
        "embedding_optimizer": par.table_optimizer.kind,
        "embedding_lr": par.table_optimizer.lr if par.table_optimizer.fused else None,
        "plan": [s.__dict__ for s in par._sharded().shards], "resumed": par.resumed_from is not None,
        "best_epoch": history.best_epoch, "epochs": len(history.losses),
    }
    if test is not None and valid is not None:
        report = rec.evaluate(test, exclude=[valid], ks=(spec.k,))
        metrics.update({"protocol": spec.protocol, "test": report.metrics})
        log(f"test ndcg@{spec.k} {report.metrics[f'ndcg@{spec.k}']:.4f}, recall@{spec.k} "
            f"{report.metrics[f'recall@{spec.k}']:.4f} ({history.seconds:.1f}s training)")
    path = rec.save(spec.out, metrics=metrics)
    log(f"saved {path}")
    return path
