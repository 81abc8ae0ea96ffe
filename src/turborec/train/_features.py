"""The two-stage pipeline's feature arithmetic: item co-occurrence, its per-batch lookup, score blending.

Private to ``turborec.train`` (an import-linter contract keeps other packages out): the pipeline's public
surface is :meth:`~turborec.train.TwoStagePipeline.feature_arrays` and ``rank_candidates``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def cooccurrence(x: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Cosine-normalised item-item co-occurrence, top ``keep`` neighbours per item."""
    xb = x.copy()
    xb.data[:] = 1.0
    c = (xb.T @ xb).tocsr().astype(np.float32)
    c.setdiag(0)
    c.eliminate_zeros()
    pop = np.asarray(xb.sum(0)).ravel().astype(np.float32)
    norm = 1.0 / np.sqrt(np.maximum(pop, 1.0))
    c = sp.diags(norm) @ c @ sp.diags(norm)
    c = c.tocsr()
    if keep > 0:
        rows, cols, vals = [], [], []
        for i in range(c.shape[0]):
            lo, hi = c.indptr[i], c.indptr[i + 1]
            if hi - lo > keep:
                sel = np.argpartition(-c.data[lo:hi], keep - 1)[:keep] + lo
            else:
                sel = np.arange(lo, hi)
            rows.append(np.full(len(sel), i))
            cols.append(c.indices[sel])
            vals.append(c.data[sel])
        c = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=c.shape, dtype=np.float32
        )
    return c


def neighbour_table(cooc: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """``cooc`` as padded rows: neighbours int64 [n + 1, K] and values float32 [n + 1, K]. Padding (and the
    extra last row, which history padding maps to) points at the sentinel column ``n``, which no candidate has."""
    n = cooc.shape[0]
    lens = np.diff(cooc.indptr)
    width = max(int(lens.max(initial=0)), 1)
    neighbours = np.full((n + 1, width), n, dtype=np.int64)
    values = np.zeros((n + 1, width), dtype=np.float32)
    rows = np.repeat(np.arange(n), lens)
    pos = np.arange(len(cooc.indices)) - np.repeat(cooc.indptr[:-1], lens)
    neighbours[rows, pos] = cooc.indices
    values[rows, pos] = cooc.data
    return neighbours, values


def cooc_features(
    table: tuple[np.ndarray, np.ndarray] | None, history: np.ndarray, hist_mask: np.ndarray, cands: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sum and max over each row's history items h of ``cooc[h, candidate]`` (0 where absent): [B, C] each.

    ``table``: :func:`neighbour_table` of the co-occurrence matrix. One gather of the history items'
    neighbour rows for the whole batch, then a lookup of each neighbour's candidate slot (no per-row
    sparse slicing); sums run in history order, as a row-wise sum of the sparse block does.
    """
    b, c = cands.shape
    cooc_sum = np.zeros((b, c), dtype=np.float32)
    cooc_max = np.zeros((b, c), dtype=np.float32)
    if table is None or c == 0 or not hist_mask.any():
        return cooc_sum, cooc_max
    neighbours, values = table
    n_slots = neighbours.shape[0]  # n_items + 1: the last column is the sentinel
    chunk = max(1, min(b, (1 << 22) // n_slots))  # bounds the [chunk, n_items + 1] slot table
    slot = np.full(chunk * n_slots, -1, dtype=np.int32)
    hist_rows = np.where(hist_mask, history, n_slots - 1)
    for lo in range(0, b, chunk):
        hi = min(lo + chunk, b)
        base = (np.arange(hi - lo, dtype=np.int64) * n_slots)[:, None]
        cand_keys = base + cands[lo:hi]
        slot[cand_keys] = np.arange(c, dtype=np.int32)
        nb = neighbours[hist_rows[lo:hi]]  # [b', L, K]
        s = slot.take(nb + base[:, :, None])
        hit = np.flatnonzero(s >= 0)  # flat order is (row, history position, neighbour)
        if len(hit):
            # flat [B, C] position of each hit; torch's scatters are several times faster than ufunc.at
            key = torch.from_numpy(hit // (nb.shape[1] * nb.shape[2]) * c + s.ravel()[hit])
            v = torch.from_numpy(values[hist_rows[lo:hi]].ravel()[hit])
            flat_sum = torch.from_numpy(cooc_sum[lo:hi]).view(-1)
            flat_sum.index_add_(0, key, v)
            flat_max = torch.from_numpy(cooc_max[lo:hi]).view(-1)
            flat_max.scatter_reduce_(0, key, v, "amax")
        slot[cand_keys] = -1
    return cooc_sum, cooc_max


def zscore(x: np.ndarray, finite: np.ndarray) -> np.ndarray:
    n = np.maximum(finite.sum(1, keepdims=True), 1)
    v = np.where(finite, x, 0.0)
    mean = v.sum(1, keepdims=True) / n
    std = np.sqrt((np.where(finite, v - mean, 0.0) ** 2).sum(1, keepdims=True) / n)
    return (v - mean) / np.maximum(std, 1e-12)


def blend(retrieval: np.ndarray, logits: np.ndarray, ranker_weight: float) -> np.ndarray:
    """``w * z(logits) + (1 - w) * z(retrieval)``, z-scored over each row's finite candidates; at w = 1 the
    logits as they are (no rescaling), and -inf where the retrieval score is not finite."""
    finite = np.isfinite(retrieval)
    if ranker_weight >= 1.0:
        out = logits.astype(np.float32, copy=False)
    else:
        out = (ranker_weight * zscore(logits, finite) + (1.0 - ranker_weight) * zscore(retrieval, finite)).astype(
            np.float32
        )
    return np.where(finite, out, -np.inf).astype(np.float32)


__all__ = ["blend", "cooc_features", "cooccurrence", "neighbour_table", "zscore"]
