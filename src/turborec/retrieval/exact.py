"""Exact search in numpy: blocked matmul and a running top-k, memory bounded by the block size.

Each block of ``query_batch`` queries meets the catalog ``item_chunk`` rows at a time, so the
score buffer never exceeds ``query_batch * item_chunk`` floats (4 MiB per million cells)
whatever the catalog size. The first chunk is reduced with ``np.argpartition``; later chunks
only compare against each query's current k-th best score and merge the few rows that beat
it, which is what keeps the partial sort off the critical path for large catalogs.
Exclusions are applied exactly (masked to -inf before selection), so no refill is needed.
"""

from __future__ import annotations

import numpy as np

from turborec._util.artifact import Artifact
from turborec.errors import ArtifactError
from turborec.retrieval._exclude import Exclusions
from turborec.retrieval.base import ExtraWriter, Index
from turborec.retrieval.registry import register_index
from turborec.retrieval.spec import IndexSpec

DEFAULT_QUERY_BATCH = 256
DEFAULT_ITEM_CHUNK = 16384


def _merge_chunk(best_scores: np.ndarray, best_pos: np.ndarray, chunk: np.ndarray, offset: int) -> None:
    """Fold one [b, c] score chunk into the running (unsorted) top-k arrays, in place."""
    b, k = best_scores.shape
    threshold = best_scores.min(axis=1)
    beats = chunk > threshold[:, None]
    n_candidates = int(np.count_nonzero(beats))
    if n_candidates == 0:
        return
    if n_candidates > 2 * b * k:  # dense: partial sort the chunk, then the 2k union
        c = chunk.shape[1]
        if c > k:
            top = np.argpartition(chunk, c - k, axis=1)[:, c - k :]
        else:
            top = np.broadcast_to(np.arange(c), (b, c))
        scores = np.concatenate([best_scores, np.take_along_axis(chunk, top, axis=1)], axis=1)
        positions = np.concatenate([best_pos, top + offset], axis=1)
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_scores[:] = np.take_along_axis(scores, keep, axis=1)
        best_pos[:] = np.take_along_axis(positions, keep, axis=1)
        return
    # sparse: sort (row, -score) over the current best plus the few candidates, keep k per row
    rows, cols = np.nonzero(beats)
    all_rows = np.concatenate([np.repeat(np.arange(b), k), rows])
    all_scores = np.concatenate([best_scores.ravel(), chunk[rows, cols]])
    all_pos = np.concatenate([best_pos.ravel(), cols.astype(np.int64) + offset])
    order = np.lexsort((-all_scores, all_rows))
    sorted_rows = all_rows[order]
    starts = np.searchsorted(sorted_rows, np.arange(b))
    keep = order[(np.arange(order.size) - starts[sorted_rows]) < k]
    best_scores[:] = all_scores[keep].reshape(b, k)
    best_pos[:] = all_pos[keep].reshape(b, k)


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
        return self._top_k(queries, fetch, shared, None)

    def _search_excluding(self, queries: np.ndarray, k: int, exclusions: Exclusions) -> tuple[np.ndarray, np.ndarray]:
        return self._top_k(queries, k, exclusions.shared, exclusions.per_query)

    def _top_k(
        self, queries: np.ndarray, k: int, shared: np.ndarray | None, per_query: list[np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        catalog = self.vectors()
        if self.metric == "l2" and self._sq_norms is None:
            self._sq_norms = np.einsum("ij,ij->i", catalog, catalog)
        nq = queries.shape[0]
        out_pos = np.empty((nq, k), dtype=np.int64)
        out_scores = np.empty((nq, k), dtype=np.float32)
        for q0 in range(0, nq, self._query_batch):
            q = queries[q0 : q0 + self._query_batch]
            own = None if per_query is None else per_query[q0 : q0 + q.shape[0]]
            pos, scores = self._top_k_batch(catalog, q, k, shared, own)
            out_pos[q0 : q0 + q.shape[0]], out_scores[q0 : q0 + q.shape[0]] = pos, scores
        return out_pos, out_scores

    def _top_k_batch(
        self, catalog: np.ndarray, q: np.ndarray, k: int, shared: np.ndarray | None, own: list[np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        b = q.shape[0]
        best_scores = np.full((b, k), -np.inf, dtype=np.float32)
        best_pos = np.full((b, k), -1, dtype=np.int64)
        own_rows = own_cols = None
        if own is not None:
            lengths = np.fromiter((p.size for p in own), dtype=np.int64, count=b)
            own_rows, own_cols = np.repeat(np.arange(b), lengths), np.concatenate(own)
            by_col = np.argsort(own_cols, kind="stable")
            own_rows, own_cols = own_rows[by_col], own_cols[by_col]
        for c0 in range(0, catalog.shape[0], self._item_chunk):
            c1 = min(c0 + self._item_chunk, catalog.shape[0])
            chunk = q @ catalog[c0:c1].T
            if self.metric == "l2":
                assert self._sq_norms is not None
                chunk *= 2.0
                chunk -= self._sq_norms[c0:c1]
            if shared is not None:
                lo, hi = np.searchsorted(shared, [c0, c1])
                chunk[:, shared[lo:hi] - c0] = -np.inf
            if own_cols is not None and own_rows is not None:
                lo, hi = np.searchsorted(own_cols, [c0, c1])
                chunk[own_rows[lo:hi], own_cols[lo:hi] - c0] = -np.inf
            _merge_chunk(best_scores, best_pos, chunk, c0)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        best_scores = np.take_along_axis(best_scores, order, axis=1)
        best_pos = np.take_along_axis(best_pos, order, axis=1)
        best_pos[~np.isfinite(best_scores)] = -1  # an excluded item can only sit in a slot scored -inf
        if self.metric == "l2":
            best_scores -= np.einsum("ij,ij->i", q, q)[:, None]
        return best_pos, best_scores

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


__all__ = ["ExactIndex"]
