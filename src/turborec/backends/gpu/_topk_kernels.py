"""Triton kernels for exact top-K by inner product without materialising the score matrix.

Imported only when a Triton path runs. Two passes over tiles of (queries x items), each tile
scored with one ``tl.dot`` (bf16/fp16 operands, fp32 accumulation) and never written out:

1. ``chunk_max_kernel`` over a strided sample of the items writes, for each query, the maximum
   score of each chunk of sampled items. Any k of those maxima are scores of k distinct items, so
   the k-th largest of them is a lower bound of the query's true k-th best score: a threshold.
2. ``filter_kernel`` scores every item again and keeps the scores at or above each query's
   threshold. A tile first gets a row-max test (warp shuffles plus one [BLOCK_M] reduction across
   warps); only tiles with a hit store anything. Each program owns a private run of slots per
   query and counts them in registers, so the kernel has no atomics (atomic counters whose
   returned slot feeds the store, and a detect + emit split, both measured slower on an H200).

The caller takes the exact top-K of the candidates left (``torch.topk`` on [Q, slots]).
Program ids run fastest over query blocks, so programs resident together read the same item
tiles and the catalog streams from memory about once per wave instead of once per query block.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def chunk_max_kernel(
    q_ptr,
    items_ptr,
    out_ptr,
    Q,
    N_SAMPLE,  # sampled items (every sample_stride-th row of the catalog)
    stride_q,
    stride_item,  # elements between consecutive sampled rows
    stride_out,
    TILES_PER_CHUNK,
    D: tl.constexpr,  # compile-time, so the dimension mask folds away and tile loads vectorize
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    chunk = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    q = tl.load(
        q_ptr + rows[:, None] * stride_q + dims[None, :], mask=(rows[:, None] < Q) & (dims[None, :] < D), other=0.0
    )
    best = tl.full([BLOCK_M, BLOCK_N], float("-inf"), tl.float32)
    first = chunk * TILES_PER_CHUNK * BLOCK_N
    for t in range(TILES_PER_CHUNK):
        items = first + t * BLOCK_N + tl.arange(0, BLOCK_N)
        item_ok = items < N_SAMPLE
        scores = tl.dot(q, tl.trans(_tile(items_ptr, items, item_ok, dims, stride_item, D)))
        best = tl.maximum(best, tl.where(item_ok[None, :], scores, float("-inf")))
    tl.store(out_ptr + rows.to(tl.int64) * stride_out + chunk, tl.max(best, axis=1), mask=rows < Q)


@triton.jit
def _tile(items_ptr, items, item_ok, dims, stride_item, D: tl.constexpr):
    return tl.load(
        items_ptr + items[:, None].to(tl.int64) * stride_item + dims[None, :],
        mask=item_ok[:, None] & (dims[None, :] < D),
        other=0.0,
    )


@triton.jit
def _append(scores, items, item_ok, threshold, row_best, count, out_base, cand_score_ptr, cand_item_ptr, SLOTS):
    """Append this tile's hits to the program's own slots: a row with a hit reserves one slot per column
    of the tile (position = row count + column), so no prefix sum and no atomics; unused slots stay -inf."""
    hit = (scores >= threshold[:, None]) & item_ok[None, :]
    position = count[:, None] + tl.arange(0, scores.shape[1])[None, :]
    keep = hit & (position < SLOTS)
    where = out_base[:, None] + position
    tl.store(cand_score_ptr + where, scores, mask=keep)
    tl.store(cand_item_ptr + where, tl.broadcast_to(items[None, :], scores.shape), mask=keep)
    return count + tl.where(row_best >= threshold, scores.shape[1], 0)


@triton.jit
def filter_kernel(
    q_ptr,
    items_ptr,
    threshold_ptr,  # [Q] fp32
    count_ptr,  # [splits, Q] int32: slots each program reserved per row (> SLOTS = overflow)
    cand_score_ptr,  # [Q, WIDTH] fp32, -inf filled; WIDTH = splits * SLOTS
    cand_item_ptr,  # [Q, WIDTH] int32
    Q,
    N,
    stride_q,
    stride_item,
    WIDTH,
    SLOTS,
    TILES_PER_PROGRAM,
    D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PAIRS: tl.constexpr,  # test two tiles at once: half the cross-warp reductions and branches
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < Q
    dims = tl.arange(0, BLOCK_D)
    q = tl.load(q_ptr + rows[:, None] * stride_q + dims[None, :], mask=row_ok[:, None] & (dims[None, :] < D), other=0.0)
    threshold = tl.load(threshold_ptr + rows, mask=row_ok, other=float("inf"))
    out_base = rows.to(tl.int64) * WIDTH + pid_n * SLOTS
    count = tl.zeros([BLOCK_M], dtype=tl.int32)
    first = pid_n * TILES_PER_PROGRAM * BLOCK_N
    for t in range(0, TILES_PER_PROGRAM, 2 if PAIRS else 1):
        items = first + t * BLOCK_N + tl.arange(0, BLOCK_N)
        item_ok = items < N
        scores = tl.dot(q, tl.trans(_tile(items_ptr, items, item_ok, dims, stride_item, D)))
        # row maxima reduce within warps (the mma layout keeps a row in one warp) and only a [BLOCK_M]
        # vector crosses warps; padded items (score 0) can only raise a false alarm, which _append filters
        row_best = tl.max(scores, axis=1)
        if PAIRS:
            # the pair's second tile must stay inside this program's run (the next program owns what follows)
            items2 = items + BLOCK_N
            item2_ok = (items2 < N) & (t + 1 < TILES_PER_PROGRAM)
            scores2 = tl.dot(q, tl.trans(_tile(items_ptr, items2, item2_ok, dims, stride_item, D)))
            row_best2 = tl.max(scores2, axis=1)
            if tl.max(tl.maximum(row_best, row_best2) - threshold, axis=0) >= 0:
                count = _append(
                    scores, items, item_ok, threshold, row_best, count, out_base, cand_score_ptr, cand_item_ptr, SLOTS
                )
                count = _append(
                    scores2, items2, item2_ok, threshold, row_best2, count, out_base, cand_score_ptr, cand_item_ptr,
                    SLOTS,
                )  # fmt: skip
        elif tl.max(row_best - threshold, axis=0) >= 0:
            count = _append(
                scores, items, item_ok, threshold, row_best, count, out_base, cand_score_ptr, cand_item_ptr, SLOTS
            )
    tl.store(count_ptr + pid_n * Q + rows, count, mask=row_ok)


def chunk_max(queries, items, out, *, n_sample: int, sample_stride: int, tiles_per_chunk: int, cfg) -> None:
    n_q, dim = queries.shape
    grid = (triton.cdiv(n_q, cfg.pass1_block_m), out.shape[1])
    chunk_max_kernel[grid](
        queries, items, out, n_q, n_sample, queries.stride(0), items.stride(0) * sample_stride, out.stride(0),
        tiles_per_chunk, D=dim,
        BLOCK_M=cfg.pass1_block_m, BLOCK_N=cfg.block_n, BLOCK_D=max(16, triton.next_power_of_2(dim)),
        num_warps=cfg.pass1_num_warps, num_stages=cfg.num_stages,
    )  # fmt: skip


def filter_candidates(
    queries, items, threshold, counts, cand_scores, cand_items, *, slots: int, tiles_per_program: int, cfg
) -> None:
    n_q, dim = queries.shape
    n_splits = counts.shape[0]
    filter_kernel[(triton.cdiv(n_q, cfg.block_m), n_splits)](
        queries, items, threshold, counts, cand_scores, cand_items, n_q, items.shape[0], queries.stride(0),
        items.stride(0), cand_scores.shape[1], slots, tiles_per_program, D=dim, BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n, BLOCK_D=max(16, triton.next_power_of_2(dim)), PAIRS=cfg.tile_pairs,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )  # fmt: skip
