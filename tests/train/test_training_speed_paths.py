"""The two-tower's faster training paths compute what the plain ones do; its defaults follow the objective."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from turborec.data import apply_protocol, synthetic
from turborec.models.embeddings import EmbeddingPlan, EmbeddingSpec, all_rows, pooled_lookup
from turborec.models.two_tower import FastDropout
from turborec.train import TwoTowerRecommender
from turborec.train.trainer import TrainConfig, adam


def _gather_pool(table: nn.Module, idx: torch.Tensor, mode: str) -> torch.Tensor:
    """The reference: gather, zero the padding, sum (and divide by the count)."""
    mask = (idx >= 0).unsqueeze(-1).float()
    total = (table(idx.clamp_min(0)) * mask).sum(-2)
    if mode == "sum":
        return total
    count = mask.sum(-2).clamp_min(1)
    return total / (count.sqrt() if mode == "sqrt" else count)


@pytest.mark.parametrize("mode", ["mean", "sum", "sqrt"])
def test_bag_pooling_equals_the_gather_and_its_gradient(mode: str) -> None:
    torch.manual_seed(0)
    table = nn.Embedding(30, 8)
    idx = torch.randint(-1, 30, (2, 5, 7))
    idx[0, 1] = -1  # a row of padding only: pools to zeros
    fast = pooled_lookup(table, idx, mode)
    (grad_fast,) = torch.autograd.grad(fast.square().sum(), table.weight)
    slow = _gather_pool(table, idx, mode)
    (grad_slow,) = torch.autograd.grad(slow.square().sum(), table.weight)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(grad_fast, grad_slow)
    assert fast.shape == (2, 5, 8) and not fast[0, 1].any()


def test_all_rows_is_every_row_of_any_table() -> None:
    dense = nn.Embedding(12, 4)
    assert all_rows(dense) is dense.weight  # no copy: the gradient lands in the table directly
    quantized = EmbeddingPlan(EmbeddingSpec("int8")).build("item", 12, 4)
    torch.testing.assert_close(all_rows(quantized), quantized(torch.arange(12)))


def test_fast_dropout_drops_its_share_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    drop = FastDropout(0.3)
    x = torch.ones(200_000)
    y = drop(x)
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.01
    assert abs(float(y.mean()) - 1.0) < 0.01  # inverted dropout: survivors scaled by 1 / (1 - p)
    assert isinstance(drop, nn.Dropout)  # what compression and the GPU backend recognise
    drop.eval()
    assert drop(x) is x
    assert FastDropout(0.0).train()(x) is x


def test_adam_uses_the_fused_kernel_on_cpu() -> None:
    opt = adam(nn.Linear(3, 2).parameters(), TrainConfig(lr=0.01))
    assert opt.defaults["fused"] is True and opt.defaults["lr"] == 0.01


def test_training_defaults_follow_the_objective() -> None:
    users, pairs = TwoTowerRecommender(), TwoTowerRecommender(objective="pairs")
    assert users.config.objective == "users" and users.train_config == TwoTowerRecommender.default_train
    assert pairs.train_config == TwoTowerRecommender.pairs_train
    chosen = TwoTowerRecommender(objective="pairs", batch_size=64, seed=5)
    assert (chosen.train_config.batch_size, chosen.train_config.seed) == (64, 5)
    assert chosen.train_config.epochs == TwoTowerRecommender.pairs_train.epochs
    given = TwoTowerRecommender(train=TrainConfig(batch_size=4096), objective="pairs")
    assert given.train_config.batch_size == 4096  # a whole TrainConfig is kept as given


def test_a_catalog_too_large_for_the_user_objective_trains_pairs_with_their_defaults() -> None:
    split = apply_protocol("recbole", synthetic(n_users=200, n_items=80, n_interactions=3_000, seed=1), seed=1)
    rec = TwoTowerRecommender(full_softmax_below=10, epochs=1, dim=8, hidden=(16,), progress=False)
    rec.fit(split.train, split.valid)
    assert rec.train_config.batch_size == TwoTowerRecommender.pairs_train.batch_size
    assert rec.train_config.epochs == 1  # what the caller chose stays
