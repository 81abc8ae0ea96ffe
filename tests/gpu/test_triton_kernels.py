"""Triton paths on a CUDA device against float64 references (skipped without CUDA + Triton).

Outputs are poisoned with NaN before each kernel runs, so an element the kernel never wrote fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from turborec.backends import make_runner
from turborec.backends.gpu import (
    FloatRows,
    FusedDLRM,
    GpuExactIndex,
    GraphedRanker,
    Int4Rows,
    Int8Rows,
    KernelConfig,
    TopKConfig,
    TopKStats,
    exact_topk,
)
from turborec.models.rankers.dlrm import DLRM, DLRMConfig
from turborec.retrieval.registry import make_index

pytestmark = pytest.mark.gpu


def random_layouts(num: int, dim: int, device: torch.device) -> list[tuple[object, torch.Tensor]]:
    """(table, float64 rows) for every layout, from random codes / weights drawn on the device."""
    weight = torch.randn(num, dim, device=device)
    scale = torch.rand(num, device=device) * 0.1 + 1e-3
    bias = torch.randn(num, device=device)
    q8 = torch.randint(0, 256, (num, dim), dtype=torch.uint8, device=device)
    q4 = torch.randint(0, 256, (num, (dim + 1) // 2), dtype=torch.uint8, device=device)
    levels4 = torch.stack([q4 & 15, q4 >> 4], dim=-1).flatten(-2)[:, :dim]
    return [
        (FloatRows(weight), weight.double()),
        (FloatRows(weight.half()), weight.half().double()),
        (FloatRows(weight.bfloat16()), weight.bfloat16().double()),
        (Int8Rows.from_rowwise(q8, scale, bias), q8.double() * scale.double()[:, None] + bias.double()[:, None]),
        (
            Int4Rows.from_rowwise(q4, scale, bias, dim),
            levels4.double() * scale.double()[:, None] + bias.double()[:, None],
        ),
    ]


def pooled_reference(rows64: torch.Tensor, idx: torch.Tensor, mean: bool) -> torch.Tensor:
    valid = (idx >= 0).unsqueeze(-1)
    total = (rows64[idx.clamp_min(0)] * valid).sum(1)
    return total / valid.sum(1).clamp_min(1) if mean else total


@pytest.mark.parametrize("dim", [128, 13])
@pytest.mark.parametrize("pooling", [1, 5, 32])
def test_pooled_lookup_kernel_matches_float64(cuda: torch.device, dim: int, pooling: int) -> None:
    num, bags = 5000, 333
    idx = torch.randint(0, num, (bags, pooling), device=cuda)
    idx[torch.rand(bags, pooling, device=cuda) < 0.1] = -1
    for table, rows64 in random_layouts(num, dim, cuda):
        for mean in (False, True) if pooling == 5 else (False,):
            ref = pooled_reference(rows64, idx, mean)
            for config in (None, KernelConfig(2, 4, 4), KernelConfig(16, 1, 8)):
                out = torch.full((bags, dim), float("nan"), device=cuda)
                table.pooled(idx, "mean" if mean else "sum", use_triton=True, config=config, out=out)  # type: ignore[attr-defined]
                assert not out.isnan().any(), (type(table).__name__, config)
                err = ((out.double() - ref).norm() / ref.norm()).item()
                assert err < 1e-6, (type(table).__name__, dim, pooling, mean, config, err)


def test_pooled_lookup_kernel_int32_indices_and_half_output(cuda: torch.device) -> None:
    table, rows64 = random_layouts(1000, 128, cuda)[3]
    idx = torch.randint(0, 1000, (64, 8), device=cuda, dtype=torch.int32)
    out = table.pooled(idx, out_dtype=torch.float16)  # type: ignore[attr-defined]
    assert out.dtype == torch.float16
    ref = pooled_reference(rows64, idx.long(), False)
    assert ((out.double() - ref).norm() / ref.norm()).item() < 2e-3


def assert_exact(scores: torch.Tensor, positions: torch.Tensor, ref: torch.Tensor, k: int) -> None:
    best = torch.topk(ref, k, dim=1).values
    atol = 1e-4 * ref.abs().max().item()
    assert torch.allclose(scores.double(), best, atol=atol, rtol=0)
    assert torch.allclose(torch.gather(ref, 1, positions), scores.double(), atol=atol, rtol=0)
    assert all(row.unique().numel() == k for row in positions)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("k", [1, 100])
@pytest.mark.parametrize(
    "config",
    [TopKConfig(), TopKConfig(pass1_block_m=64, pass1_num_warps=4), TopKConfig(tile_pairs=False)],
    ids=["default", "pass1-bm64", "single-tiles"],
)
def test_two_pass_topk_is_exact(cuda: torch.device, dtype: torch.dtype, k: int, config: TopKConfig) -> None:
    items = torch.randn(300_001, 64, device=cuda).to(dtype)  # odd: a pair's second tile runs past the end
    queries = torch.randn(300, 64, device=cuda).to(dtype)
    stats = TopKStats()
    scores, positions = exact_topk(queries, items, k, use_triton=True, stats=stats, config=config)
    assert stats.chunks >= 2 * k and stats.candidates_max >= k
    assert_exact(scores, positions, queries.double() @ items.double().T, k)


@pytest.mark.parametrize("pairs", [False, True])
def test_two_pass_topk_overflow_and_adversarial_order(cuda: torch.device, pairs: bool) -> None:
    # items sorted by norm: the sample sees every norm, but tiny candidate slots overflow
    items = torch.randn(200_000, 32, device=cuda)
    items = items[items.norm(dim=1).argsort()].bfloat16()
    queries = torch.randn(200, 32, device=cuda).bfloat16()
    stats = TopKStats()
    config = TopKConfig(
        block_m=64,
        block_n=64,
        num_warps=4,
        sample_stride=16,
        capacity=64,
        max_candidate_bytes=1 << 16,
        tile_pairs=pairs,
    )
    scores, positions = exact_topk(queries, items, 50, config=config, stats=stats)
    assert stats.overflow_queries > 0  # answered by the blocked fallback
    assert_exact(scores, positions, queries.double() @ items.double().T, 50)


def test_gpu_index_matches_cpu_exact_index_on_rounded_vectors(cuda: torch.device) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((100_000, 64)).astype(np.float32)
    queries = rng.standard_normal((40, 64)).astype(np.float32)
    rounded = torch.from_numpy(vectors).bfloat16().float().numpy()
    cpu = make_index("Exact", 64)
    cpu.add(rounded)
    gpu = GpuExactIndex(64, device=cuda)
    gpu.add(vectors)
    seen = [rng.choice(100_000, size=30, replace=False) for _ in range(40)]
    for exclude in (None, seen):
        want_ids, want = cpu.search(torch.from_numpy(queries).bfloat16().float().numpy(), 100, exclude=exclude)
        got_ids, got = gpu.search(queries, 100, exclude=exclude)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
        assert (got_ids == want_ids).mean() > 0.99  # equal up to the order of near-ties


def make_dlrm(device: torch.device) -> DLRM:
    torch.manual_seed(0)
    cfg = DLRMConfig(embedding_dim=64, bottom_mlp=(512, 256), top_mlp=(1024, 512, 256))
    with torch.device(device):
        return DLRM(cfg, cardinalities=[1000] * 8 + [37] * 3, n_dense=13).eval()


def test_fused_dlrm_kernel_and_graphs_match_float64(cuda: torch.device) -> None:
    model = make_dlrm(cuda)
    dense = torch.randn(700, 13, device=cuda)
    sparse = torch.stack([torch.randint(0, c, (700,), device=cuda) for c in model.cardinalities], dim=1)
    with torch.no_grad():
        ref = model.double()(dense.double(), sparse)
        fused = FusedDLRM(model.float(), use_triton=True)
        x = fused.bottom(fused.prepare_dense(dense))
        interaction = fused.interaction(x, sparse)
        fused.use_triton = False
        assert torch.allclose(interaction.float(), fused.interaction(x, sparse).float(), rtol=2e-2, atol=2e-2)
        fused.use_triton = True
        eager = fused(dense, sparse)
        graphed = GraphedRanker(fused, 13, sparse.shape[1], buckets=(64, 512))
        replayed = graphed(dense, sparse)  # 700 rows: one 512 bucket and one padded 512 bucket
    for out in (eager, replayed):
        assert not out.isnan().any()
        assert ((out.double() - ref).norm() / ref.norm()).item() < 3e-2
    assert torch.allclose(eager, replayed, rtol=1e-2, atol=1e-2 * eager.abs().max().item())


def test_runner_on_cuda_matches_cpu_runner(cuda: torch.device) -> None:
    model = make_dlrm(cuda)
    rng = np.random.default_rng(1)
    inputs = {
        "dense": rng.standard_normal((300, 13)).astype(np.float32),
        "sparse": np.stack([rng.integers(0, c, 300) for c in model.cardinalities], axis=1),
    }
    on_gpu = make_runner("gpu-dlrm", model, inputs, device=cuda)(inputs)
    on_cpu = make_runner("gpu-dlrm", model.cpu(), inputs, device="cpu", dtype=torch.float32)(inputs)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=0.05, atol=0.05 * np.abs(on_cpu).max())
