"""Exact top-K by inner product over large catalogs: blocked PyTorch and a two-pass Triton path.

- :func:`topk_blocked` (any device): :func:`turborec.retrieval.exact.exact_top_k`, the package's one
  exact top-K (score a block of items, keep its top-K, merge with the running top-K; memory
  O(Q * item_chunk)); it is the CPU path and the exact fallback.
- :func:`exact_topk` on CUDA with Triton: a threshold from chunk maxima over a sample of the
  items, then one fused pass that scores every item and keeps only those at or above the
  threshold (``_topk_kernels``), then ``torch.topk`` over the candidates. The full score
  matrix is never written. Queries whose candidate slots overflow are answered by
  :func:`topk_blocked`, so the result is exact for any input.

Scores are fp32 accumulations of the stored (bf16 / fp16 / fp32) vectors, with the queries
rounded to the same precision. Both paths return
``(scores float32 [Q, k], positions int64 [Q, k])`` sorted best first, ``k <= n_items``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from turborec.backends.gpu._device import next_power_of_2, use_triton_for
from turborec.errors import ConfigError, DataError
from turborec.retrieval.exact import exact_top_k

MAX_TRITON_K = 4096  # larger k: the candidate buffers would hold much of the catalog; use topk_blocked
THRESHOLD_SLACK = 1e-4  # relative; absorbs rounding differences between the two passes' tile sums


@dataclass(frozen=True)
class TopKConfig:
    """Tiles of the Triton passes and the sample the threshold comes from."""

    block_m: int = 64
    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 3
    sample_stride: int = 2  # pass 1 scores every sample_stride-th item
    waves: int = 8  # pass 2 launches about waves * SMs programs
    max_candidate_bytes: int = 1 << 31  # candidate buffers per query batch
    capacity: int | None = None  # candidate slots per query over all programs; None = automatic
    pass1_block_m: int = 128  # pass 1 (no branch, no stores) takes taller query blocks than pass 2
    pass1_num_warps: int = 8
    tile_pairs: bool = True  # pass 2 tests two tiles at once: half the cross-warp reductions and branches


def _check(queries: torch.Tensor, items: torch.Tensor, k: int) -> int:
    if queries.dim() != 2 or items.dim() != 2 or queries.shape[1] != items.shape[1]:
        raise DataError(f"queries [Q, d] and items [N, d] must agree on d, got {tuple(queries.shape)} and "
                        f"{tuple(items.shape)}")  # fmt: skip
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return min(k, items.shape[0])


def topk_blocked(
    queries: torch.Tensor,
    items: torch.Tensor,
    k: int,
    *,
    item_chunk: int = 1 << 18,
    score_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` (scores, positions) of ``queries @ items.T``, one block of items at a time.

    ``score_dtype`` is the matmul dtype: float32 (default) is exact on bf16/fp16 vectors; bf16
    rounds the scores like a plain ``q @ items.T`` in bf16 would.
    """
    k = _check(queries, items, k)
    return exact_top_k(queries, items, k, item_chunk=item_chunk, score_dtype=score_dtype)


@dataclass
class TopKStats:
    """What the last Triton search did (for benchmarks and tuning)."""

    candidates_mean: float = 0.0
    candidates_max: int = 0
    capacity: int = 0
    overflow_queries: int = 0
    chunks: int = 0


def exact_topk(
    queries: torch.Tensor,
    items: torch.Tensor,
    k: int,
    *,
    use_triton: bool | None = None,
    config: TopKConfig | None = None,
    stats: TopKStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` (scores fp32, positions int64) of ``queries @ items.T``, best first.

    On CUDA with Triton (``use_triton`` None or True) and bf16 / fp16 items this runs the
    two-pass kernels; otherwise, or for catalogs too small to give a threshold, :func:`topk_blocked`.
    """
    k = _check(queries, items, k)
    cfg = config or TopKConfig()
    triton_ok = use_triton_for(items, use_triton) and items.dtype in (torch.bfloat16, torch.float16)
    if use_triton and not triton_ok:
        raise ConfigError(f"the Triton top-K path needs bf16 or fp16 items, got {items.dtype}")
    plan = _plan(items.shape[0], k, cfg) if triton_ok and k <= MAX_TRITON_K else None
    q = queries.to(items.dtype).contiguous()  # queries are scored in the catalog's precision on every path
    if plan is None:
        return topk_blocked(q, items, k)
    items = items.contiguous()
    layout = _slot_layout(q.shape[0], items.shape[0], k, plan, cfg, _multiprocessors(q.device))
    batch = max(cfg.block_m, cfg.max_candidate_bytes // (layout.width * 8))
    parts = [_triton_batch(q[s : s + batch], items, k, plan, cfg, stats) for s in range(0, q.shape[0], batch)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@dataclass(frozen=True)
class _Plan:
    sample_stride: int
    n_sample: int
    tiles_per_chunk: int
    chunks: int


def _plan(n_items: int, k: int, cfg: TopKConfig) -> _Plan | None:
    """Chunking of the sample so that there are >= 2k chunk maxima; None when the catalog is too small."""
    for stride in (cfg.sample_stride, 1):
        n_sample = -(-n_items // stride)
        tiles = -(-n_sample // cfg.block_n)
        if tiles >= 2 * k:
            per_chunk = max(1, min(8, tiles // (4 * k)))
            return _Plan(stride, n_sample, per_chunk, -(-tiles // per_chunk))
    return None


@dataclass(frozen=True)
class _Slots:
    splits: int  # programs along the items
    tiles_per_program: int
    slots: int  # candidate slots per (query, program)

    @property
    def width(self) -> int:
        return self.splits * self.slots


def _multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 8


def _slot_layout(n_q: int, n_items: int, k: int, plan: _Plan, cfg: TopKConfig, sms: int) -> _Slots:
    """Split the items over about ``waves * SMs`` programs; give each (query, program) room for twice
    its expected share of hit tiles (a row reserves block_n slots per tile with a hit, and about
    k * sample_stride items per query pass the threshold). A query that overflows is answered by
    :func:`topk_blocked`, so the result stays exact whatever the data."""
    tiles = -(-n_items // cfg.block_n)
    q_blocks = -(-n_q // cfg.block_m)
    per_program = -(-tiles // max(1, min(tiles, -(-cfg.waves * sms // q_blocks))))
    splits = -(-tiles // per_program)
    if cfg.capacity:
        slots = max(cfg.block_n, cfg.capacity // splits)
    else:
        slots = next_power_of_2(max(2 * cfg.block_n, -(-2 * k * plan.sample_stride * cfg.block_n // splits)))
    return _Slots(splits, per_program, max(slots, -(-k // splits)))  # torch.topk needs k columns


def _triton_batch(
    q: torch.Tensor, items: torch.Tensor, k: int, plan: _Plan, cfg: TopKConfig, stats: TopKStats | None
) -> tuple[torch.Tensor, torch.Tensor]:
    from turborec.backends.gpu import _topk_kernels

    n_q, n_items = q.shape[0], items.shape[0]
    maxima = torch.empty((n_q, plan.chunks), dtype=torch.float32, device=q.device)
    _topk_kernels.chunk_max(
        q, items, maxima, n_sample=plan.n_sample, sample_stride=plan.sample_stride,
        tiles_per_chunk=plan.tiles_per_chunk, cfg=cfg,
    )  # fmt: skip
    threshold = torch.topk(maxima, k, dim=1).values[:, -1]
    threshold = threshold - threshold.abs() * THRESHOLD_SLACK - THRESHOLD_SLACK * 1e-2
    layout = _slot_layout(n_q, n_items, k, plan, cfg, _multiprocessors(q.device))
    reserved = torch.zeros((layout.splits, n_q), dtype=torch.int32, device=q.device)
    cand_scores = torch.full((n_q, layout.width), float("-inf"), device=q.device)
    # slots left at -inf are never among the top k (at least k items reach the threshold), so the item
    # ids need no fill
    cand_items = torch.empty((n_q, layout.width), dtype=torch.int32, device=q.device)
    _topk_kernels.filter_candidates(
        q, items, threshold, reserved, cand_scores, cand_items,
        slots=layout.slots, tiles_per_program=layout.tiles_per_program, cfg=cfg,
    )  # fmt: skip
    scores, slot = torch.topk(cand_scores, k, dim=1)
    positions = torch.gather(cand_items, 1, slot).long()
    overflow = torch.nonzero((reserved > layout.slots).any(0)).flatten()
    if overflow.numel():
        scores[overflow], positions[overflow] = topk_blocked(q[overflow], items, k)
    if stats is not None:
        found = torch.isfinite(cand_scores).sum(1)
        stats.candidates_mean = float(found.float().mean())
        stats.candidates_max = int(found.max())
        stats.capacity = layout.width
        stats.overflow_queries += int(overflow.numel())
        stats.chunks = plan.chunks
    return scores, positions


__all__ = ["TopKConfig", "TopKStats", "exact_topk", "topk_blocked"]
