"""Quotient-remainder and hashed tables: shapes, the index arithmetic, and that they train."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from turborec.errors import ConfigError
from turborec.models.compact import HashedEmbedding, QREmbedding
from turborec.models.embeddings import EmbeddingPlan, EmbeddingSpec, table_nbytes


@pytest.mark.parametrize("operation", ["mult", "add"])
def test_qr_shapes_and_composition(operation: str) -> None:
    table = QREmbedding(1003, 16, collisions=32, operation=operation)
    assert table.quotient.num_embeddings == math.ceil(1003 / 32) == 32
    assert table.remainder.num_embeddings == 32
    assert table_nbytes(table) == (32 + 32) * 16 * 4  # vs 1003 * 16 * 4 dense
    idx = torch.tensor([[0, 31, 32], [1002, 500, 64]])
    out = table(idx)
    assert out.shape == (2, 3, 16)
    q, r = table.quotient.weight, table.remainder.weight
    expected = q[500 // 32] * r[500 % 32] if operation == "mult" else q[500 // 32] + r[500 % 32]
    assert torch.equal(out[1, 1], expected)


def test_qr_gives_every_id_its_own_vector_at_init() -> None:
    table = QREmbedding(400, 8, collisions=20)
    rows = table(torch.arange(400)).detach()
    assert torch.unique(rows, dim=0).shape[0] == 400


def test_hash_buckets_are_a_fixed_function_of_the_spec() -> None:
    a = HashedEmbedding(10_000, 8, buckets=97, num_hashes=2, seed=3)
    b = HashedEmbedding(10_000, 8, buckets=97, num_hashes=2, seed=3)
    c = HashedEmbedding(10_000, 8, buckets=97, num_hashes=2, seed=4)
    ids = torch.arange(10_000)
    buckets = a.bucket_of(ids)
    assert buckets.shape == (10_000, 2)
    assert int(buckets.min()) >= 0 and int(buckets.max()) < 97
    assert torch.equal(buckets, b.bucket_of(ids))
    assert not torch.equal(buckets, c.bucket_of(ids))
    # spread: every bucket is used, none holds more than twice its share
    load = torch.bincount(buckets[:, 0], minlength=97)
    assert int(load.min()) > 0 and int(load.max()) < 2 * 10_000 / 97
    # the two hashes are different functions
    assert float((buckets[:, 0] == buckets[:, 1]).float().mean()) < 0.05
    out = a(ids.view(100, 100))
    assert out.shape == (100, 100, 8)
    assert torch.equal(out[3, 4], a.table.weight[buckets[304]].sum(0))


def _fit(table: nn.Module, targets: torch.Tensor, steps: int = 300) -> tuple[float, float]:
    """Regress each id's row onto a target vector; returns (initial loss, final loss)."""
    opt = torch.optim.Adam(table.parameters(), lr=0.05)
    ids = torch.arange(len(targets))
    losses = []
    for _ in range(steps):
        loss = (table(ids) - targets).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


@pytest.mark.parametrize(
    "spec",
    [
        EmbeddingSpec("qr", {"collisions": 10, "operation": "mult"}),
        EmbeddingSpec("qr", {"collisions": 10, "operation": "add"}),
        EmbeddingSpec("hash", {"buckets": 60}),
        EmbeddingSpec("hash", {"buckets": 60, "num_hashes": 2}),
    ],
    ids=lambda s: f"{s.kind}-{dict(s.params)}",
)
def test_compositional_tables_train(spec: EmbeddingSpec) -> None:
    torch.manual_seed(0)
    plan = EmbeddingPlan(default=spec)
    table = plan.build("item", 100, 8)
    if spec.kind == "qr":  # targets a QR table can represent: those of another, random QR table
        teacher = plan.build("item", 100, 8)
        with torch.no_grad():
            for p in teacher.parameters():
                p.normal_()
            targets = teacher(torch.arange(100))
    else:  # a low-rank target that 60 buckets can approximate
        targets = torch.randn(100, 2) @ torch.randn(2, 8)
    ids = torch.arange(100)
    (table(ids) - targets).pow(2).mean().backward()
    grads = [p.grad for p in table.parameters()]
    assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads)  # every sub-table learns
    table.zero_grad()
    first, last = _fit(table, targets)
    # a QR student can match a QR teacher exactly; 60 buckets for 100 ids only approximately
    assert last < (0.01 if spec.kind == "qr" else 0.5) * first


def test_bad_params_are_config_errors() -> None:
    plan = EmbeddingPlan(default=EmbeddingSpec("qr", {"collisions": 0}))
    with pytest.raises(ConfigError, match="collisions"):
        plan.build("item", 100, 8)
    with pytest.raises(ConfigError, match="needs params"):
        EmbeddingPlan(default=EmbeddingSpec("hash")).build("item", 100, 8)
    with pytest.raises(ConfigError, match="operation"):
        QREmbedding(100, 8, collisions=4, operation="concat")
    with pytest.raises(ConfigError, match="unknown params"):
        EmbeddingPlan(default=EmbeddingSpec("hash", {"buckets": 5, "bucket": 3})).build("item", 100, 8)
    with pytest.raises(ConfigError, match="unknown embedding kind 'int3'"):
        EmbeddingPlan(default=EmbeddingSpec("int3")).build("item", 100, 8)
