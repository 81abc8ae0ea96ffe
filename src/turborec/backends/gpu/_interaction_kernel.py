"""Triton kernel: DLRM embedding gather + pairwise dot interaction + concat, in one launch.

Imported only when a Triton path runs. For each sample it gathers the row of every sparse
feature from one concatenated table (row = index + the feature's offset), stacks them under the
bottom-MLP vector, computes all pairwise dots with one batched ``tl.dot`` and writes the top-MLP
input row ``[dense vector, dots for pairs i < j (row-major, as torch.triu_indices), zero padding]``.
The eager path needs a gather per table, a stack, a bmm, an index_select and a cat for this.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def gather_interact_kernel(
    dense_ptr,  # [B, D] bottom-MLP output (ignored without HAS_DENSE)
    table_ptr,  # [rows, D] all sparse tables concatenated
    idx_ptr,  # [B, F] int64
    offsets_ptr,  # [F] int64: first row of each feature's table
    out_ptr,  # [B, OUT_WIDTH]
    B,
    stride_dense,
    stride_idx,
    stride_out,
    F: tl.constexpr,
    HAS_DENSE: tl.constexpr,
    D: tl.constexpr,
    BLOCK_V: tl.constexpr,  # power of 2 >= number of vectors, >= 16
    OUT_WIDTH: tl.constexpr,
    BLOCK_PAD: tl.constexpr,
    BLOCK_S: tl.constexpr,  # samples per program
):
    pid = tl.program_id(0)
    samples = pid * BLOCK_S + tl.arange(0, BLOCK_S)
    s_ok = samples < B
    slots = tl.arange(0, BLOCK_V)
    dims = tl.arange(0, D)
    feature = slots - HAS_DENSE
    is_sparse = (feature >= 0) & (feature < F)
    sparse_mask = s_ok[:, None] & is_sparse[None, :]
    idx = tl.load(idx_ptr + samples[:, None].to(tl.int64) * stride_idx + feature[None, :], mask=sparse_mask, other=0)
    rows = idx + tl.load(offsets_ptr + feature, mask=is_sparse, other=0)[None, :]
    vectors = tl.load(table_ptr + rows[:, :, None] * D + dims[None, None, :], mask=sparse_mask[:, :, None], other=0.0)
    out_rows = out_ptr + samples.to(tl.int64) * stride_out
    n_vectors: tl.constexpr = F + HAS_DENSE
    first_pair: tl.constexpr = D * HAS_DENSE
    if HAS_DENSE:
        x = tl.load(
            dense_ptr + samples[:, None].to(tl.int64) * stride_dense + dims[None, :], mask=s_ok[:, None], other=0.0
        )
        vectors = tl.where((slots == 0)[None, :, None], x[:, None, :].to(vectors.dtype), vectors)
        tl.store(out_rows[:, None] + dims[None, :], x.to(out_ptr.dtype.element_ty), mask=s_ok[:, None])
    dots = tl.dot(vectors, tl.permute(vectors, (0, 2, 1)))  # [BLOCK_S, BLOCK_V, BLOCK_V]
    i = slots[:, None]
    j = slots[None, :]
    pair = (i < j) & (j < n_vectors)
    position = first_pair + i * (2 * n_vectors - i - 1) // 2 + (j - i - 1)
    tl.store(
        out_rows[:, None, None] + tl.where(pair, position, 0)[None, :, :],
        dots.to(out_ptr.dtype.element_ty),
        mask=s_ok[:, None, None] & pair[None, :, :],
    )
    pad = first_pair + n_vectors * (n_vectors - 1) // 2 + tl.arange(0, BLOCK_PAD)
    zeros = tl.zeros([BLOCK_S, BLOCK_PAD], dtype=out_ptr.dtype.element_ty)
    tl.store(out_rows[:, None] + pad[None, :], zeros, mask=s_ok[:, None] & (pad[None, :] < OUT_WIDTH))


def launch(dense, table, indices, offsets, out, *, has_dense: bool, block_s: int, num_warps: int) -> None:
    batch, n_features = indices.shape
    dim = table.shape[1]
    n_vectors = n_features + int(has_dense)
    used = dim * int(has_dense) + n_vectors * (n_vectors - 1) // 2
    gather_interact_kernel[(triton.cdiv(batch, block_s),)](
        dense, table, indices, offsets, out, batch, dense.stride(0), indices.stride(0), out.stride(0),
        F=n_features, HAS_DENSE=int(has_dense), D=dim, BLOCK_V=max(16, triton.next_power_of_2(n_vectors)),
        OUT_WIDTH=out.shape[1], BLOCK_PAD=max(2, triton.next_power_of_2(max(out.shape[1] - used, 1))),
        BLOCK_S=block_s, num_warps=num_warps,
    )  # fmt: skip
