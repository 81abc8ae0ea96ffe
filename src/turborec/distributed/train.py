"""Sharded training of the two-tower model: TorchRec ``DistributedModelParallel`` over gloo (CPU) or NCCL.

Every rank builds the same net from the same seed, so the dense parts start
equal; DMP shards the embedding tables by the plan and wraps the dense parts in
DDP. Each global batch (``batch_size`` rows, drawn exactly as the single-process
estimator draws them, from RNGs seeded alike on every rank) is cut into equal
per-rank slices: the loss is the estimator's, on each rank's slice.

The embedding rows are updated inside the backward pass by FBGEMM's fused
optimizer (Adagrad on CPU: the CPU kernel has no Adam); the dense parts by
Adam with the estimator's learning rate. After each epoch the tables are
gathered on rank 0, which scores the validation split (NDCG@10, early stopping
with the estimator's patience, best weights kept) and writes the usual
two-tower artifact at the end: ``turborec serve`` and ``turborec evaluate`` read it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F

from turborec.data import apply_protocol, load_dataset
from turborec.data.interactions import Interactions
from turborec.distributed import checkpoint as ckpt
from turborec.distributed.env import DistContext
from turborec.distributed.sharding import (
    FusedOptimizer,
    ShardInfo,
    describe_plan,
    gather_full,
    make_sharder,
    plan_sharding,
    plan_shards,
    scatter_full,
    sharded_tables,
)
from turborec.distributed.spec import ShardedTrainSpec
from turborec.distributed.two_tower import (
    TorchRecTwoTower,
    TowerSizes,
    copy_dense,
    copy_tables_to_net,
    dense_modules,
    make_batch,
    table_configs,
    tables_from_net,
)
from turborec.errors import ConfigError
from turborec.metrics.ranking import evaluate_ranking
from turborec.models.base import unique_state
from turborec.models.two_tower import TwoTowerNet
from turborec.train import Histories, TrainHistory, TwoTowerRecommender, seed_everything
from turborec.train.options import make_estimator


@dataclass
class Progress:
    """What survives a restart besides tensors (JSON in the checkpoint)."""

    epoch: int = -1  # last finished epoch
    history: TrainHistory = field(default_factory=TrainHistory)
    stale: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        h = self.history
        return {"epoch": self.epoch, "stale": self.stale, "seconds": self.seconds, "losses": h.losses,
                "scores": h.scores, "best_epoch": h.best_epoch, "best_score": h.best_score}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Progress:
        h = TrainHistory(list(obj["losses"]), list(obj["scores"]), int(obj["best_epoch"]), float(obj["best_score"]))
        return cls(int(obj["epoch"]), h, int(obj["stale"]), float(obj["seconds"]))


def positive_pairs(train: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Unique (user, item) pairs sorted by user then item, as the estimator trains on them."""
    pairs = np.unique(train.user.astype(np.int64) * train.n_items + train.item.astype(np.int64))
    return pairs // train.n_items, pairs % train.n_items


class ShardedTwoTowerJob:
    """One rank's part of the job; every public method is collective (all ranks call it in step)."""

    def __init__(self, rec: TwoTowerRecommender, train: Interactions, valid: Interactions | None,
                 spec: ShardedTrainSpec, ctx: DistContext) -> None:
        from torchrec.distributed import DistributedModelParallel

        self.rec, self.spec, self.ctx = rec, spec, ctx
        cfg, tcfg = rec.config, rec.train_config
        self.cfg, self.tcfg = cfg, tcfg
        # the estimator's fit() preamble: same seed, same net, same initial weights on every rank
        seed_everything(tcfg.seed)
        rec.users, rec.items, rec.item_features = train.users, train.items, train.item_features
        rec.histories = Histories.from_interactions(train)
        net = TwoTowerNet(cfg, rec.dims())  # type: ignore[arg-type]
        if rec.item_features is not None:
            net.set_item_tokens(torch.from_numpy(rec.item_features.padded()))
        net.eval()  # the reference net only scores: gathered weights land here
        rec.net = net
        self.net = net
        rng_after_build = torch.get_rng_state()
        sizes = TowerSizes.of(net)
        module = TorchRecTwoTower(cfg, sizes, net.item_tower.item_tokens, torch.device("meta"))  # type: ignore[arg-type]
        copy_dense(dense_modules(net), dense_modules(module))
        sharder = make_sharder(FusedOptimizer(spec.embedding_optimizer, spec.embedding_lr))
        names = [t.name for t in table_configs(sizes)]
        plan = plan_sharding(module, names, spec.sharding, sharder, ctx.device, ctx.world_size)
        self.shards: list[ShardInfo] = plan_shards(plan)
        self.dmp = DistributedModelParallel(module, device=ctx.device, plan=plan, sharders=[sharder])
        full = tables_from_net(net)
        for name, sharded in sharded_tables(self.dmp.state_dict()).items():
            scatter_full(sharded, full[name])
        table_ids = {id(p) for p in self.dmp.module.ebc.parameters()}
        dense = [p for p in self.dmp.parameters() if id(p) not in table_ids]
        self.dense_opt = torch.optim.Adam(dense, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        torch.set_rng_state(rng_after_build)  # dropout draws as in the single-process estimator
        self._data(train, valid)
        self.progress = Progress()
        self.best_state: dict[str, torch.Tensor] | None = None
        self.fingerprint = self._fingerprint(sizes)

    # ------------------------------------------------------------------ data
    def _data(self, train: Interactions, valid: Interactions | None) -> None:
        assert self.rec.histories is not None
        cfg, tcfg = self.cfg, self.tcfg
        users, items = positive_pairs(train)
        self.users_t, self.items_t = torch.from_numpy(users), torch.from_numpy(items)
        self.n_items = train.n_items
        self.hist_all = torch.from_numpy(self.rec.histories.padded(np.arange(train.n_users), cfg.history_len))
        pop = np.bincount(items, minlength=self.n_items).astype(np.float64) + 1.0
        self.log_q_batch = torch.from_numpy(np.log(pop / pop.sum())).float()
        self.log_q_uniform = float(np.log(1.0 / self.n_items))
        self.gen = np.random.default_rng(tcfg.seed)
        self.hist_gen = torch.Generator().manual_seed(tcfg.seed)
        self.full_softmax = self.n_items <= cfg.full_softmax_below
        # the estimator's options, read with their defaults so a net config without them still trains
        self.seen = (self.rec.histories.to_csr()
                     if self.full_softmax and getattr(cfg, "mask_positives", False) else None)
        self.valid = valid

    def _fingerprint(self, sizes: TowerSizes) -> str:
        blob = json.dumps({"world": self.ctx.world_size, "shards": [s.__dict__ for s in self.shards],
                           "sizes": sizes.__dict__, "net": self.cfg.to_dict(), "spec": self.spec.sharding},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe_plan(self) -> str:
        return describe_plan(self.shards)

    # ----------------------------------------------------------------- steps
    def _epoch(self) -> float:
        """One pass over the positive pairs; returns the mean loss over all ranks and steps."""
        cfg, tcfg, world, rank = self.cfg, self.tcfg, self.ctx.world_size, self.ctx.rank
        dev = self.ctx.device
        self.dmp.train()
        order = torch.from_numpy(self.gen.permutation(len(self.users_t)))
        total, steps = 0.0, 0
        tokens = self.dmp.module.item_tokens if self.dmp.module.sizes.use_features else None
        all_items = torch.arange(self.n_items)
        for s in range(0, len(order), tcfg.batch_size):
            sel = order[s : s + tcfg.batch_size]
            u, i = self.users_t[sel], self.items_t[sel]
            h = self.hist_all[u].clone()
            drop = torch.rand(h.shape, generator=self.hist_gen) < cfg.history_dropout
            h[(h == i.unsqueeze(1)) | drop] = -1
            neg = torch.from_numpy(self.gen.integers(0, self.n_items, cfg.sampled_negatives))
            per_rank = len(sel) // world  # equal slices (row-wise sharding needs them); drops < world rows
            if per_rank == 0:
                continue
            lo = rank * per_rank
            u, i, h = u[lo : lo + per_rank], i[lo : lo + per_rank], h[lo : lo + per_rank]
            cand = all_items if self.full_softmax else torch.cat([i, neg])
            kjt = make_batch(u, h, cand, tokens).to(dev)
            uv, iv = self.dmp(kjt, cand.to(dev), per_rank)
            loss = self._loss(uv, iv, u, i.to(dev), cand.to(dev), neg.to(dev))
            self.dense_opt.zero_grad(set_to_none=True)
            loss.backward()  # the embedding rows are updated in here (fused optimizer)
            self.dense_opt.step()
            total += float(loss.detach())
            steps += 1
        sums = torch.tensor([total, float(steps)], dtype=torch.float64)
        dist.all_reduce(sums)
        return float(sums[0] / max(float(sums[1]), 1.0))

    def _loss(self, uv: torch.Tensor, iv: torch.Tensor, users: torch.Tensor, items: torch.Tensor,
              cand: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """The estimator's loss: full softmax over the catalog (the user's other training items masked),
        or sampled softmax with log-Q correction."""
        logits = uv @ iv.T
        if self.full_softmax:
            if self.seen is not None:
                other = torch.from_numpy(self.seen[users.numpy()].toarray() > 0).to(logits.device)
                other[torch.arange(len(items), device=logits.device), items] = False
                logits = logits.masked_fill(other, float("-inf"))
            return F.cross_entropy(logits, items)
        bsz = len(items)
        dev = logits.device
        correction = torch.cat([
            self.log_q_batch.to(dev)[items] + np.log(bsz),
            torch.full_like(neg, self.log_q_uniform, dtype=torch.float) + np.log(len(neg)),
        ])
        logits = logits - correction.unsqueeze(0)
        same = items.unsqueeze(1) == cand.unsqueeze(0)
        same[torch.arange(bsz), torch.arange(bsz)] = False
        return F.cross_entropy(logits.masked_fill(same, float("-inf")), torch.arange(bsz, device=dev))

    # ------------------------------------------------------------ evaluation
    def sync_to_net(self) -> None:
        """Gather every table on rank 0 and copy tables and dense parts into the reference net there."""
        tables = {name: gather_full(st) for name, st in sharded_tables(self.dmp.state_dict()).items()}
        if self.ctx.is_main:
            copy_tables_to_net(self.net, {k: v for k, v in tables.items() if v is not None})
            copy_dense(dense_modules(self.dmp.module), dense_modules(self.net))
            self.net.eval()

    def _validate(self) -> float:
        """Validation NDCG@10 on rank 0 (the estimator's early-stopping signal); NaN elsewhere."""
        self.sync_to_net()
        if not self.ctx.is_main or self.valid is None or len(self.valid) == 0:
            return float("nan")
        assert self.rec.histories is not None
        with torch.no_grad():
            return evaluate_ranking(self.rec.score_users, self.valid.to_csr(), exclude=self.rec.histories.to_csr(),
                                    ks=(10,))["ndcg@10"]

    # ------------------------------------------------------------------ loop
    def fit(self, log: Any = print) -> TrainHistory:
        tcfg, p = self.tcfg, self.progress
        started = time.perf_counter() - p.seconds
        for epoch in range(p.epoch + 1, tcfg.epochs):
            loss = self._epoch()
            p.history.losses.append(loss)
            stop = 0
            score = float("nan")
            if self.valid is not None and (epoch + 1) % tcfg.eval_every == 0:
                score = self._validate()
                if self.ctx.is_main:
                    p.history.scores.append(score)
                    if score > p.history.best_score:
                        p.history.best_score, p.history.best_epoch, p.stale = score, epoch, 0
                        self.best_state = {k: v.clone() for k, v in unique_state(self.net).items()}
                    else:
                        p.stale += 1
                    stop = int(p.stale >= tcfg.patience)
            p.seconds = time.perf_counter() - started
            if self.ctx.is_main and tcfg.max_seconds is not None and p.seconds > tcfg.max_seconds:
                stop = 1
            flag = torch.tensor([stop])
            dist.broadcast(flag, src=0)
            p.epoch = epoch
            if self.ctx.is_main and self.spec.progress:
                log(f"epoch {epoch + 1}: loss {loss:.4f}" + (f", valid ndcg@10 {score:.4f}" if score == score else "")
                    + f" ({p.seconds:.1f}s)")
            if self.spec.checkpoint_dir and ((epoch + 1) % self.spec.checkpoint_every == 0 or flag.item()):
                self.save_checkpoint(Path(self.spec.checkpoint_dir))
            if flag.item():
                break
        if self.valid is None:
            self.sync_to_net()
        elif self.ctx.is_main and self.best_state is not None:
            self.net.load_state_dict(self.best_state, strict=False)
        p.history.seconds = time.perf_counter() - started
        return p.history

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, root: Path) -> None:
        tensors = ckpt.flatten_tensors(self.dmp.state_dict(), "model")
        tensors.update(ckpt.flatten_tensors(self.dmp.fused_optimizer.state_dict(), "fused"))
        opt_tensors, opt_meta = ckpt.optimizer_tensors(self.dense_opt, "dense_opt")
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.history"] = self.hist_gen.get_state()
        if self.ctx.is_main and self.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        state = {"progress": self.progress.to_json(), "dense_opt": opt_meta, "numpy_rng": self.gen.bit_generator.state,
                 "fingerprint": self.fingerprint}
        ckpt.save_rank(root, self.progress.epoch, self.ctx.rank, tensors, state)
        dist.barrier()
        if self.ctx.is_main:
            ckpt.publish(root, self.progress.epoch, self.ctx.world_size, self.fingerprint)
        dist.barrier()

    def resume(self, root: Path) -> bool:
        """Load this rank's part of the latest checkpoint under ``root``; False when there is none."""
        found = ckpt.load_rank(root, self.ctx.rank, self.ctx.world_size, self.fingerprint)
        if found is None:
            return False
        t, state = found.tensors, found.state
        model_state = self.dmp.state_dict()
        ckpt.fill_tensors(model_state, "model", t)
        self.dmp.load_state_dict(model_state)
        fused = self.dmp.fused_optimizer.state_dict()
        ckpt.fill_tensors(fused, "fused", t)
        self.dmp.fused_optimizer.load_state_dict(fused)
        ckpt.load_optimizer(self.dense_opt, "dense_opt", t, state["dense_opt"])
        torch.set_rng_state(t["rng.torch"])
        self.hist_gen.set_state(t["rng.history"])
        self.gen.bit_generator.state = state["numpy_rng"]
        self.progress = Progress.from_json(state["progress"])
        best = {k[5:]: v for k, v in t.items() if k.startswith("best.")}
        self.best_state = best or None
        return True


def train_sharded(spec: ShardedTrainSpec, ctx: DistContext, log: Any = print) -> Path | None:
    """Run the job on this rank; rank 0 writes and returns the artifact (other ranks return None)."""
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
    job = ShardedTwoTowerJob(rec, train, valid, spec, ctx)
    if ctx.is_main:
        log(f"sharding plan ({ctx.world_size} processes, {ctx.backend}):\n{job.describe_plan()}")
        if getattr(rec.config, "weight_average", 0.0) > 0:
            log("note: sharded training validates and keeps the raw weights (weight_average is a single-process "
                "option); pass --param weight_average=0 to silence this")
    resumed = job.resume(Path(spec.checkpoint_dir)) if spec.checkpoint_dir else False
    if resumed and ctx.is_main:
        log(f"resumed from the checkpoint of epoch {job.progress.epoch + 1} in {spec.checkpoint_dir}")
    history = job.fit(log)
    if not ctx.is_main:
        return None
    rec.history = history
    rec.fit_seconds = history.seconds
    metrics: dict[str, Any] = {"data": spec.data or "synthetic", "model": spec.model, "seed": spec.seed}
    metrics["distributed"] = {
        "world_size": ctx.world_size, "backend": ctx.backend, "sharding": spec.sharding,
        "embedding_optimizer": spec.embedding_optimizer, "embedding_lr": spec.embedding_lr,
        "plan": [s.__dict__ for s in job.shards], "resumed": resumed, "best_epoch": history.best_epoch,
    }
    if test is not None and valid is not None:
        report = rec.evaluate(test, exclude=[valid], ks=(spec.k,))
        metrics.update({"protocol": spec.protocol, "test": report.metrics})
        log(f"test ndcg@{spec.k} {report.metrics[f'ndcg@{spec.k}']:.4f}, recall@{spec.k} "
            f"{report.metrics[f'recall@{spec.k}']:.4f} ({history.seconds:.1f}s training)")
    path = rec.save(spec.out, metrics=metrics)
    log(f"saved {path}")
    return path
