"""Mult-DAE and the sum of Mult-DAEs and two-towers, all trained against an EASE teacher (issue 16 item 4).

On ml-latest-small (recbole protocol, 3 split seeds) the sum is the neural model that reaches tuned
EASE, on validation and on test (2 DAEs + 1 tower, each distilled from EASE); no member alone does
(docs/benchmarks.md, "Neural retrieval against tuned EASE"). EASE is fitted on the same split as
the teacher (its l2 chosen on validation) and is not saved: the served model is neural and
factorised (item vectors, ANN-servable)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from turborec.data.interactions import Interactions
from turborec.errors import ConfigError
from turborec.models.ease import EASENet
from turborec.models.mult_dae import DAETwoTowerConfig, DAETwoTowerNet, MultDAEConfig, MultDAENet
from turborec.train.estimators import EASERecommender, TwoTowerRecommender, check_teacher, valid_scorer
from turborec.train.recommender import Recommender, register_estimator
from turborec.train.trainer import TrainConfig, TrainHistory, fit_loop


def _fitted_ease(run: TrainConfig, train: Interactions, valid: Interactions | None) -> EASERecommender:
    """EASE fitted on ``train``, its l2 chosen on ``valid`` (the teacher when none is given)."""
    return EASERecommender(seed=run.seed, device=run.device, progress=run.progress, threads=run.threads).fit(train, valid)


def _ease_teacher(owner: Recommender, teacher: Recommender | None, train: Interactions,
                  valid: Interactions | None) -> EASENet:
    """The given EASE teacher (checked), or one fitted here on ``train`` (l2 chosen on ``valid``)."""
    if teacher is None:
        teacher = _fitted_ease(owner.train_config, train, valid)
    if teacher.net is not None and not isinstance(teacher.net, EASENet):
        raise ConfigError(f"a mult-dae teacher must be an EASE model, not {teacher.name}")
    check_teacher(owner, teacher, train)
    assert isinstance(teacher.net, EASENet)
    return teacher.net


class _TaughtByEASE(Recommender):
    """An estimator trained against an EASE teacher: ``teacher`` (a fitted EASE model on the same split) or,
    when None, one that fit() fits on the split."""

    teacher: Recommender | None = None

    def __init__(self, *args: Any, teacher: Recommender | None = None, **overrides: Any):
        super().__init__(*args, **overrides)
        if teacher is not None:
            self.teacher = teacher


@register_estimator("mult-dae")
class MultDAERecommender(_TaughtByEASE):
    """Mult-DAE: the whole history in, a softmax over the catalog out, the input dropped out while training."""

    config_class = MultDAEConfig
    config: MultDAEConfig
    # batch_size counts users a step (each one multi-hot row over the catalog)
    default_train = TrainConfig(epochs=400, batch_size=64, lr=1e-3, weight_decay=0.0, patience=30)

    def _build_net(self, dims: Mapping[str, int]) -> MultDAENet:
        return MultDAENet(self.config, dims)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        net, cfg, tcfg = self.net, self.config, self.train_config
        assert isinstance(net, MultDAENet) and self.histories is not None
        if train.n_items > cfg.max_items:
            raise ConfigError(f"mult-dae reads a multi-hot over the catalog: {train.n_items:,} items is above "
                              f"max_items={cfg.max_items:,}")
        ease = _ease_teacher(self, self.teacher, train, valid) if cfg.teacher_weight > 0 else None
        x_all = self.histories.to_csr()
        x_all.data[:] = 1.0
        active = np.flatnonzero(np.diff(x_all.indptr) > 0)
        gen = np.random.default_rng(tcfg.seed)
        dev = self.device

        def batches(epoch: int) -> Iterator[torch.Tensor]:
            order = gen.permutation(active)
            for s in range(0, len(order), tcfg.batch_size):
                yield torch.from_numpy(x_all[order[s : s + tcfg.batch_size]].toarray().astype(np.float32)).to(dev)

        def loss(x: torch.Tensor) -> torch.Tensor:
            keep = (torch.rand_like(x) >= cfg.dropout).to(x.dtype)
            log_p = F.log_softmax(net.dec(net.encode(x, keep)), dim=1)
            recon = -(log_p * x).sum(1).mean()
            if ease is None:
                return recon
            with torch.no_grad():  # EASE reads what the DAE reads; its softmax over the items not shown
                visible = x * keep
                scores = (visible @ ease.B).masked_fill(visible > 0, float("-inf"))
                targets = F.softmax(scores / cfg.teacher_temperature, dim=1)
            per_user = -(targets * log_p.clamp_min(-1e4)).sum(1)
            return (1.0 - cfg.teacher_weight) * recon + cfg.teacher_weight * (per_user * x.sum(1)).mean()

        self.history: TrainHistory = fit_loop(net, loss, batches, tcfg, valid_scorer(self, valid), desc="mult-dae",
                                              extras={"data_rng": gen})


def _member_train(base: TrainConfig, defaults: TrainConfig) -> TrainConfig:
    """A member's training defaults with the caller's run settings (seed, device, threads...); its epochs
    capped at the caller's (a short fit stays short)."""
    return replace(defaults, epochs=min(defaults.epochs, base.epochs), seed=base.seed, device=base.device,
                   progress=base.progress, threads=base.threads, max_seconds=base.max_seconds)


@register_estimator("dae-two-tower")
class DAETwoTowerRecommender(_TaughtByEASE):
    """Mult-DAEs and two-towers (``daes`` and ``towers`` of them), each trained against one EASE teacher
    fitted on the split, logits summed.

    The training options (``epochs``, ``lr``...) are the Mult-DAEs'; the two-towers train with their own
    defaults (``--param tower=...`` is not parsed: build the config in Python to change it). Member k of a
    kind trains with seed ``seed + 7k``, so the first members are what ``mult-dae`` / ``two-tower`` fit when
    handed the same teacher.
    """

    config_class = DAETwoTowerConfig
    config: DAETwoTowerConfig
    default_train = MultDAERecommender.default_train

    def _build_net(self, dims: Mapping[str, int]) -> DAETwoTowerNet:
        return DAETwoTowerNet(self.config, dims)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        net, cfg, run = self.net, self.config, self.train_config
        assert isinstance(net, DAETwoTowerNet)
        # one EASE fit teaches every member
        teacher = self.teacher if self.teacher is not None else _fitted_ease(run, train, valid)
        tower_run = _member_train(run, TwoTowerRecommender.default_train)
        scores: dict[str, float] = {}
        for k, dae_net in enumerate(net.daes()):
            dae = MultDAERecommender(cfg.dae, replace(run, seed=run.seed + 7 * k), teacher=teacher).fit(train, valid)
            dae_net.load_state_dict(dae.fitted_net.state_dict())
            scores["mult-dae" if k == 0 else f"mult-dae-{k + 1}"] = dae.history.best_score
        for k, tower_net in enumerate(net.towers()):
            tower = TwoTowerRecommender(cfg.tower, replace(tower_run, seed=run.seed + 7 * k),
                                        teacher=teacher).fit(train, valid)
            tower_net.load_state_dict(tower.fitted_net.state_dict())
            scores["two-tower" if k == 0 else f"two-tower-{k + 1}"] = tower.history.best_score
        self.metrics.update(teacher=dae.metrics.get("teacher"), members_valid_ndcg=scores)
