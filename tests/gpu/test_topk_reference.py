"""Exact top-K (blocked PyTorch path) and GpuExactIndex on CPU, against float64 / the numpy ExactIndex."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from turborec.backends.gpu import GpuExactIndex, exact_topk, topk_blocked
from turborec.errors import ConfigError, DataError
from turborec.retrieval.registry import make_index


def assert_exact_topk(scores: torch.Tensor, positions: torch.Tensor, ref: torch.Tensor, k: int, atol: float) -> None:
    """Returned scores are the k best of ``ref`` (float64 [Q, N]) and each is the score of its position."""
    best = torch.topk(ref, k, dim=1).values
    assert scores.shape == positions.shape == (ref.shape[0], k)
    assert torch.allclose(scores.double(), best, atol=atol, rtol=0)
    assert torch.allclose(torch.gather(ref, 1, positions), scores.double(), atol=atol, rtol=0)
    assert all(row.unique().numel() == k for row in positions)


@pytest.mark.parametrize("chunk", [64, 1000, 1 << 18])
def test_blocked_topk_matches_float64(gen: torch.Generator, chunk: int) -> None:
    items = torch.randn(3000, 24, generator=gen)
    queries = torch.randn(17, 24, generator=gen)
    scores, positions = topk_blocked(queries, items, 50, item_chunk=chunk)
    assert_exact_topk(scores, positions, queries.double() @ items.double().T, 50, 1e-4)


def test_exact_topk_on_cpu_takes_the_blocked_path_and_clamps_k(gen: torch.Generator) -> None:
    items = torch.randn(30, 8, generator=gen).bfloat16()
    queries = torch.randn(4, 8, generator=gen)
    scores, positions = exact_topk(queries, items, 100)
    ref = queries.bfloat16().double() @ items.double().T
    assert_exact_topk(scores, positions, ref, 30, 1e-4)
    with pytest.raises(ConfigError, match="k must be"):
        exact_topk(queries, items, 0)
    with pytest.raises(DataError, match="agree on d"):
        exact_topk(torch.randn(2, 7), items, 3)


def test_gpu_index_on_cpu_matches_numpy_exact_index(gen: torch.Generator) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((2000, 16)).astype(np.float32)
    ids = rng.permutation(10_000)[:2000].astype(np.int64)
    queries = rng.standard_normal((25, 16)).astype(np.float32)
    cpu = make_index("Exact", 16)
    cpu.add(vectors, ids)
    gpu = GpuExactIndex(16, device="cpu", dtype=torch.float32)
    gpu.add(vectors, ids)
    seen = [ids[rng.choice(2000, size=int(rng.integers(0, 40)), replace=False)] for _ in range(25)]
    for exclude in (None, ids[:30], seen):
        want_ids, want_scores = cpu.search(queries, 20, exclude=exclude)
        got_ids, got_scores = gpu.search(queries, 20, exclude=exclude)
        assert got_ids.dtype == np.int64 and got_scores.dtype == np.float32
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(got_ids, want_ids)


def test_gpu_index_bf16_storage_scores_the_rounded_vectors(gen: torch.Generator) -> None:
    vectors = torch.randn(500, 32, generator=gen)
    queries = torch.randn(6, 32, generator=gen)
    index = GpuExactIndex(32, device="cpu")
    index.add(vectors.numpy())
    _, scores = index.search(queries.numpy(), 10)
    rounded = queries.bfloat16().double() @ vectors.bfloat16().double().T
    np.testing.assert_allclose(scores, torch.topk(rounded, 10).values.numpy(), rtol=0, atol=1e-4)


def test_gpu_index_rejects_l2_and_bad_dtype() -> None:
    with pytest.raises(ConfigError, match="metric 'ip'"):
        GpuExactIndex.from_index(make_index("Exact", 4, metric="l2"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dtype"):
        GpuExactIndex(4, dtype=torch.int8)
