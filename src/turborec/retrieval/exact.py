"""Exact top-k by inner product: :func:`exact_top_k`, the one implementation every exact search uses
(this index, the service's scoring of its catalog and popular pool, the GPU kernels' exact fallback).

Scores are computed a block of ``item_chunk`` items at a time and each block's top-k is merged into
the running top-k, so the whole [queries, items] score matrix is never written (on a million items
that halves the time: it would be written, then read again by the selection). Exclusions are
(query, item) pairs masked to -inf before selection, so no refill is needed. It runs in torch on
whatever device the tensors are on; :class:`ExactIndex` wraps it with the ``Index`` contract
(numpy in, numpy out, ``query_batch`` queries at a time, bounded memory).
"""

from __future__ import annotations

import numpy as np
import torch

from turborec._util.artifact import Artifact
from turborec.errors import ArtifactError
from turborec.retrieval._exclude import Exclusions
from turborec.retrieval.base import ExtraWriter, Index
from turborec.retrieval.registry import register_index
from turborec.retrieval.spec import IndexSpec

DEFAULT_QUERY_BATCH = 256
DEFAULT_ITEM_CHUNK = 1 << 15  # a [batch, chunk] block stays in cache, and top-k runs on it there
NO_PAIRS = np.zeros(0, dtype=np.int64)


def exact_top_k(
    queries: torch.Tensor,
    items: torch.Tensor,
    k: int,
    exclude_rows: np.ndarray = NO_PAIRS,
    exclude_cols: np.ndarray = NO_PAIRS,
    *,
    item_chunk: int = DEFAULT_ITEM_CHUNK,
    item_offset: torch.Tensor | None = None,
    score_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` ``(scores float32 [Q, k], positions int64 [Q, k])`` of ``queries @ items.T``, best first.

    ``exclude_rows`` / ``exclude_cols``: (query, item position) pairs scored -inf. ``item_offset`` [N] is
    added to each item's score (the L2 metric's -|x|^2). ``score_dtype`` is the matmul's dtype (default the
    items'; float32 is exact on bf16 / fp16 vectors). ``k`` is clamped to the catalog size.
    """
    n_items = items.shape[0]
    k = min(int(k), n_items)
    q = queries if score_dtype is None else queries.to(score_dtype)
    best_scores: list[torch.Tensor] = []
    best_items: list[torch.Tensor] = []
    single = n_items <= 2 * item_chunk  # one block: no merge
    step = n_items if single else item_chunk
    for lo in range(0, n_items, max(step, 1)):
        hi = min(lo + step, n_items)
        block = items[lo:hi] if score_dtype is None else items[lo:hi].to(score_dtype)
        scores = (q @ block.T).float()
        if item_offset is not None:
            scores += item_offset[lo:hi]
        if len(exclude_rows):
            inside = slice(None) if single else (exclude_cols >= lo) & (exclude_cols < hi)
            rows, cols = exclude_rows[inside], exclude_cols[inside] - lo
            if len(rows):
                scores[torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)] = -torch.inf
        top_scores, top_items = torch.topk(scores, min(k, hi - lo), dim=1)
        if single:
            return top_scores, top_items
        best_scores.append(top_scores)
        best_items.append(top_items + lo)
    if not best_scores:
        empty = torch.empty((q.shape[0], 0), device=q.device)
        return empty, empty.long()
    merged, where = torch.topk(torch.cat(best_scores, dim=1), k, dim=1)
    return merged, torch.gather(torch.cat(best_items, dim=1), 1, where)


@register_index("exact")
class ExactIndex(Index):
    """Brute-force search in numpy (no FAISS needed). Spec ``"Exact"``; knobs ``query_batch``,
    ``item_chunk`` (the score buffer is ``query_batch x item_chunk`` float32)."""

    def __init__(self, spec: IndexSpec, dim: int, metric: str = "ip") -> None:
        super().__init__(spec, dim, metric)
        self._blocks: list[np.ndarray] = []
        self._sq_norms: np.ndarray | None = None
        self._query_batch = DEFAULT_QUERY_BATCH
        self._item_chunk = DEFAULT_ITEM_CHUNK

    @property
    def params(self) -> dict[str, int]:
        return {"item_chunk": self._item_chunk, "query_batch": self._query_batch}

    def _apply_params(self, params: dict[str, int]) -> None:
        self._query_batch = params.get("query_batch", self._query_batch)
        self._item_chunk = params.get("item_chunk", self._item_chunk)

    def _add_vectors(self, vectors: np.ndarray) -> None:
        self._blocks.append(np.array(vectors, dtype=np.float32, copy=True))
        self._sq_norms = None

    def vectors(self) -> np.ndarray:
        """The stored catalog [ntotal, dim] (one contiguous array)."""
        if len(self._blocks) != 1:
            self._blocks = [np.concatenate(self._blocks) if self._blocks else np.empty((0, self.dim), np.float32)]
        return self._blocks[0]

    def _search_positions(
        self, queries: np.ndarray, fetch: int, shared: np.ndarray | None, widen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._top_k(queries, fetch, *_pairs(queries.shape[0], shared, None))

    def _search_excluding(self, queries: np.ndarray, k: int, exclusions: Exclusions) -> tuple[np.ndarray, np.ndarray]:
        return self._top_k(queries, k, *_pairs(queries.shape[0], exclusions.shared, exclusions.per_query))

    def search_positions(
        self, queries: np.ndarray, k: int, exclude_rows: np.ndarray | None = None, exclude_cols: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = NO_PAIRS if exclude_rows is None else exclude_rows
        cols = NO_PAIRS if exclude_cols is None else exclude_cols
        return self._top_k(np.ascontiguousarray(queries, dtype=np.float32), min(int(k), self.ntotal), rows, cols)

    def _top_k(self, queries: np.ndarray, k: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        catalog = torch.from_numpy(self.vectors())
        offset = None
        if self.metric == "l2":  # |q - x|^2 = |q|^2 - (2 q.x - |x|^2): rank by the bracket, then shift
            if self._sq_norms is None:
                self._sq_norms = np.einsum("ij,ij->i", self.vectors(), self.vectors())
            offset = -torch.from_numpy(self._sq_norms)
        nq = queries.shape[0]
        if nq <= self._query_batch:  # one batch (a service's): no per-batch split of the exclusions
            parts = [self._top_k_batch(queries, k, catalog, offset, rows, cols)]
        else:
            by_row = np.argsort(rows, kind="stable")
            rows, cols = rows[by_row], cols[by_row]
            parts = []
            for q0 in range(0, nq, self._query_batch):
                q1 = min(q0 + self._query_batch, nq)
                lo, hi = np.searchsorted(rows, [q0, q1])
                parts.append(self._top_k_batch(queries[q0:q1], k, catalog, offset, rows[lo:hi] - q0, cols[lo:hi]))
        out_pos = parts[0][0] if len(parts) == 1 else np.concatenate([p for p, _ in parts])
        out_scores = parts[0][1] if len(parts) == 1 else np.concatenate([s for _, s in parts])
        out_pos[~np.isfinite(out_scores)] = -1  # an excluded item can only sit in a slot scored -inf
        if offset is not None:
            out_scores -= np.einsum("ij,ij->i", queries, queries)[:, None]
        return out_pos, out_scores

    def _top_k_batch(self, queries: np.ndarray, k: int, catalog: torch.Tensor, offset: torch.Tensor | None,
                     rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = torch.from_numpy(queries)
        with torch.inference_mode():
            scores, pos = exact_top_k(2.0 * q if offset is not None else q, catalog, k, rows, cols,
                                      item_chunk=self._item_chunk, item_offset=offset)
        return pos.numpy(), scores.numpy()

    def _payload(self) -> tuple[dict[str, np.ndarray], ExtraWriter | None]:
        return {"vectors": self.vectors()}, None

    @classmethod
    def _restore(
        cls, spec: IndexSpec, dim: int, metric: str, artifact: Artifact, tensors: dict[str, np.ndarray]
    ) -> Index:
        vectors = tensors.get("vectors")
        if vectors is None or vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ArtifactError(f"{artifact.path}: exact index needs a 'vectors' tensor of width {dim}")
        if vectors.shape[0] != tensors["ids"].shape[0]:
            raise ArtifactError(f"{artifact.path}: {vectors.shape[0]} vectors but {tensors['ids'].shape[0]} ids")
        index = cls(spec, dim, metric)
        index._blocks = [np.ascontiguousarray(vectors, dtype=np.float32)]
        return index


def _pairs(nq: int, shared: np.ndarray | None, per_query: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """Exclusions as (query, position) pairs."""
    rows, cols = [NO_PAIRS], [NO_PAIRS]
    if shared is not None and len(shared):
        rows.append(np.repeat(np.arange(nq, dtype=np.int64), len(shared)))
        cols.append(np.tile(shared.astype(np.int64), nq))
    if per_query is not None:
        lengths = np.fromiter((len(p) for p in per_query), dtype=np.int64, count=len(per_query))
        rows.append(np.repeat(np.arange(len(per_query), dtype=np.int64), lengths))
        cols.append(np.concatenate([NO_PAIRS, *per_query]).astype(np.int64))
    return np.concatenate(rows), np.concatenate(cols)


__all__ = ["DEFAULT_ITEM_CHUNK", "ExactIndex", "exact_top_k"]
