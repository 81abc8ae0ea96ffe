"""pruned_rows and mixed_dim tables built from real item frequencies (MovieLens latest-small)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from turborec.errors import ConfigError, DataError
from turborec.models.compact import (
    Int8RowwiseEmbedding,
    MixedDimEmbedding,
    PrunedRowEmbedding,
    frequency_order,
)
from turborec.models.embeddings import EmbeddingSpec, table_nbytes

DIM = 16


@pytest.fixture(scope="module")
def item_counts(ml_small_dir: Path) -> np.ndarray:
    """Ratings per movie, movies in dense-index order."""
    movie = pd.read_csv(ml_small_dir / "ratings.csv", usecols=["movieId"])["movieId"].to_numpy()
    _, dense = np.unique(movie, return_inverse=True)
    return np.bincount(dense).astype(np.int64)


def dense_table(num: int, seed: int = 0) -> nn.Embedding:
    torch.manual_seed(seed)
    emb = nn.Embedding(num, DIM)
    with torch.no_grad():  # low effective rank plus noise, like trained item vectors
        emb.weight.copy_(torch.randn(num, 4) @ torch.randn(4, DIM) + 0.1 * torch.randn(num, DIM))
    return emb


def test_pruned_rows_keep_the_most_frequent_ids_exactly(item_counts: np.ndarray) -> None:
    num = len(item_counts)
    dense = dense_table(num)
    kept = num // 5
    table = PrunedRowEmbedding.from_counts(dense, item_counts, kept)
    ids = torch.arange(num)
    remap = table.remap.long()
    is_kept = remap < kept
    assert int(is_kept.sum()) == kept
    # kept ids are the most frequent ones (ties aside) and keep their exact rows
    assert item_counts[is_kept.numpy()].min() >= item_counts[~is_kept.numpy()].max()
    out = table(ids).detach()
    assert torch.equal(out[is_kept], dense.weight.detach()[is_kept])
    # every other id reads one shared row: the count-weighted mean of the rows it replaces
    w = torch.as_tensor(item_counts[~is_kept.numpy()], dtype=torch.float64)
    expected = (dense.weight.detach()[~is_kept].double() * w.unsqueeze(1)).sum(0) / w.sum()
    assert torch.allclose(out[~is_kept], expected.float().expand(int((~is_kept).sum()), DIM), atol=1e-6)
    assert table_nbytes(table) == (kept + 1) * DIM * 4 + num * 4
    assert table.remap.dtype == torch.int32


def test_pruned_rows_can_hold_quantized_rows(item_counts: np.ndarray) -> None:
    num = len(item_counts)
    dense = dense_table(num)
    table = PrunedRowEmbedding.from_counts(dense, item_counts, 500, EmbeddingSpec("int8"))
    assert isinstance(table.table, Int8RowwiseEmbedding) and table.table.num_embeddings == 501
    top = frequency_order(item_counts, num)[:500]
    int8_rows = Int8RowwiseEmbedding.from_float(dense).dequantize()[top]
    assert torch.equal(table(top), int8_rows)  # same rows, same per-row quantization
    assert table_nbytes(table) == 501 * (DIM + 8) + num * 4


def test_mixed_dim_is_the_best_low_rank_fit_of_the_tail(item_counts: np.ndarray) -> None:
    num = len(item_counts)
    dense = dense_table(num)
    head = num // 10
    table = MixedDimEmbedding.from_counts(dense, item_counts, [head, num - head], [DIM, 4])
    order = frequency_order(item_counts, num)
    w = dense.weight.detach()
    out = table(torch.arange(num)).detach()
    popular, tail = order[:head], order[head:]
    assert torch.equal(out[popular], w[popular])
    assert item_counts[popular.numpy()].min() >= item_counts[tail.numpy()].max()
    # Eckart–Young: the truncated SVD leaves exactly the energy of the dropped singular values
    s = torch.linalg.svdvals(w[tail].double())
    best = float(s[4:].pow(2).sum().sqrt())
    got = float((out[tail] - w[tail]).double().norm())
    assert got == pytest.approx(best, rel=1e-3)
    assert got < 0.5 * float(w[tail].norm())  # the 4-d tail keeps most of the signal of these rows
    assert table_nbytes(table) == head * DIM * 4 + (num - head) * 4 * 4 + 4 * DIM * 4 + num * 4
    # trainable: gradients reach both tiers and the projection
    table(torch.cat([popular[:3], tail[:3]])).sum().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in table.parameters())


def test_counts_and_sizes_are_validated() -> None:
    dense = dense_table(50)
    with pytest.raises(DataError, match="one count per id"):
        PrunedRowEmbedding.from_counts(dense, np.ones(49), 10)
    with pytest.raises(DataError, match="non-negative"):
        PrunedRowEmbedding.from_counts(dense, -np.ones(50), 10)
    with pytest.raises(ConfigError, match="kept"):
        PrunedRowEmbedding.from_counts(dense, np.ones(50), 51)
    with pytest.raises(ConfigError, match="add up"):
        MixedDimEmbedding(50, DIM, [10, 30], [DIM, 4])
    with pytest.raises(ConfigError, match="at most 16"):
        MixedDimEmbedding(50, DIM, [10, 40], [32, 4])
    with pytest.raises(ConfigError, match=r"dense nn\.Embedding"):
        PrunedRowEmbedding.from_counts(Int8RowwiseEmbedding.from_float(dense), np.ones(50), 10)
