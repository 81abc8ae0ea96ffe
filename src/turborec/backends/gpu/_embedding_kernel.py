"""Triton kernel for pooled embedding lookup with fused row-wise dequantization.

Imported only when a Triton path runs (``import turborec.backends.gpu`` never imports Triton).

One program pools ``BLOCK_B`` bags. Each step gathers one [BLOCK_B, BLOCK_D] tile of rows per pooled
index, BLOCK_L of them unrolled so that their loads are in flight together (the lookup is bound by
random-row memory traffic, not arithmetic), and adds them elementwise: the sum over L never moves
data between threads. (A [BLOCK_B, BLOCK_L, BLOCK_D] gather reduced over L was up to 2.3x slower for
int8/int4 on an H200: its reduction converted layouts through shared memory every step.)

Storage formats (``FORMAT``):
  0  float rows (fp32 / fp16 / bf16), ``table`` [N, D];
  1  int8 row-wise, packed rows of ``row_bytes``: fp32 scale at byte 0, fp32 bias at byte 4,
     the D uint8 codes from byte 16 (so the codes start 16-byte aligned);
  2  int4 row-wise, same header, then ceil(D/2) bytes: column 2j in the low nibble, 2j+1 in the high.
Scale and bias travel in the row they describe, so a lookup touches one run of sectors per row.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def pooled_lookup_kernel(
    table_ptr,  # float rows, or uint8 packed rows
    header_ptr,  # the same packed rows viewed as fp32 words (ignored for FORMAT 0)
    idx_ptr,  # [B, L] int32/int64, -1 = padding
    out_ptr,  # [B, D]
    B,
    L,
    N,  # rows in the table: indices outside [0, N) are treated as padding (never read)
    stride_row,  # elements per row of table_ptr
    stride_header,  # fp32 words per packed row
    stride_idx,
    stride_out,
    D: tl.constexpr,  # compile-time, so a full-width column mask folds away and row loads vectorize
    FORMAT: tl.constexpr,
    MEAN: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_D: tl.constexpr,  # columns (FORMAT 0, 1) or packed bytes (FORMAT 2) per row, power of 2
):
    pid = tl.program_id(0)
    bags = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    bag_ok = bags < B
    cols = tl.arange(0, BLOCK_D)
    if FORMAT == 2:
        col_ok = cols < (D + 1) // 2
    else:
        col_ok = cols < D
    acc = tl.zeros([BLOCK_B, BLOCK_D], dtype=tl.float32)
    acc_hi = tl.zeros([BLOCK_B, BLOCK_D], dtype=tl.float32)
    bias_sum = tl.zeros([BLOCK_B], dtype=tl.float32)
    count = tl.zeros([BLOCK_B], dtype=tl.float32)
    idx_rows = idx_ptr + bags.to(tl.int64) * stride_idx
    for l0 in range(0, L, BLOCK_L):
        for j in tl.static_range(BLOCK_L):
            idx = tl.load(idx_rows + l0 + j, mask=bag_ok & (l0 + j < L), other=-1).to(tl.int64)
            valid = (idx >= 0) & (idx < N)
            count += valid.to(tl.float32)
            row_mask = valid[:, None] & col_ok[None, :]
            if FORMAT == 0:
                rows = tl.load(table_ptr + (idx * stride_row)[:, None] + cols[None, :], mask=row_mask, other=0.0)
                acc += rows.to(tl.float32)
            else:
                header = header_ptr + idx * stride_header
                scale = tl.load(header, mask=valid, other=0.0)
                bias_sum += tl.load(header + 1, mask=valid, other=0.0)
                codes = tl.load(
                    table_ptr + (idx * stride_row + 16)[:, None] + cols[None, :], mask=row_mask, other=0
                ).to(tl.int32)
                if FORMAT == 1:
                    acc += codes.to(tl.float32) * scale[:, None]
                else:
                    acc += (codes & 15).to(tl.float32) * scale[:, None]
                    acc_hi += (codes >> 4).to(tl.float32) * scale[:, None]
    acc += bias_sum[:, None]
    acc_hi += bias_sum[:, None]
    if MEAN:
        denom = tl.maximum(count, 1.0)[:, None]
        acc = acc / denom
        acc_hi = acc_hi / denom
    out_rows = out_ptr + bags[:, None].to(tl.int64) * stride_out
    if FORMAT == 2:
        full = tl.reshape(tl.join(acc, acc_hi), [BLOCK_B, 2 * BLOCK_D])
        out_cols = tl.arange(0, 2 * BLOCK_D)
        tl.store(
            out_rows + out_cols[None, :],
            full.to(out_ptr.dtype.element_ty),
            mask=bag_ok[:, None] & (out_cols[None, :] < D),
        )
    else:
        tl.store(out_rows + cols[None, :], acc.to(out_ptr.dtype.element_ty), mask=bag_ok[:, None] & col_ok[None, :])


def launch(
    table,
    header,
    indices,
    out,
    *,
    dim: int,
    num_rows: int,
    row_stride: int,
    header_stride: int,
    fmt: int,
    mean: bool,
    block_b: int,
    block_l: int,
    block_d: int,
    num_warps: int,
) -> None:
    """Run the kernel over all bags of ``indices`` [B, L] into ``out`` [B, dim]."""
    bags, pooling = indices.shape
    grid = (triton.cdiv(bags, block_b),)
    pooled_lookup_kernel[grid](
        table,
        header,
        indices,
        out,
        bags,
        pooling,
        num_rows,
        row_stride,
        header_stride,
        indices.stride(0),
        out.stride(0),
        D=dim,
        FORMAT=fmt,
        MEAN=mean,
        BLOCK_B=block_b,
        BLOCK_L=block_l,
        BLOCK_D=block_d,
        num_warps=num_warps,
    )
