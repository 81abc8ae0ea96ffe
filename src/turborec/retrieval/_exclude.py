"""Exclusion lists (seen items, blocklists) as positions, and the filtering of raw results.

``exclude`` arrives as external ids: one array applied to every query ("shared"), or one
array per query. Ids that are not in the catalog are ignored (they cannot be returned anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from turborec.errors import DataError

ExcludeArg = np.ndarray | Sequence[int] | Sequence[np.ndarray] | Sequence[Sequence[int]] | None


@dataclass
class Exclusions:
    """Catalog positions to leave out: ``shared`` for every query, ``per_query[i]`` for query i
    (each sorted and unique; None when there is nothing of that kind)."""

    shared: np.ndarray | None
    per_query: list[np.ndarray] | None

    def subset(self, rows: np.ndarray) -> Exclusions:
        per_query = None if self.per_query is None else [self.per_query[i] for i in rows]
        return Exclusions(self.shared, per_query)

    def excluded_counts(self, nq: int) -> np.ndarray:
        """How many distinct catalog positions each query loses (shared and own together)."""
        counts = np.zeros(nq, dtype=np.int64)
        if self.shared is not None:
            counts += self.shared.size
        if self.per_query is not None:
            for i, own in enumerate(self.per_query):
                if own.size:
                    overlap = int(np.isin(own, self.shared, assume_unique=True).sum()) if self.shared is not None else 0
                    counts[i] += own.size - overlap
        return counts


def _as_id_array(value: object, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise DataError(f"{what} must hold integer ids, got dtype {arr.dtype}", source="exclude")
    return arr.astype(np.int64, copy=False).ravel()


def _is_scalar_id(item: object) -> bool:
    return isinstance(item, (int, np.integer)) and not isinstance(item, bool)


def normalize_exclude(exclude: ExcludeArg, nq: int, to_positions: Callable[[np.ndarray], np.ndarray]) -> Exclusions:
    """Turn the ``exclude`` argument of :meth:`Index.search` into sorted unique positions.

    A 1-D array (or a flat sequence of ints) applies to every query; a 2-D array or a sequence
    of arrays holds one row per query (rows may be padded with -1, which matches no item).
    """
    if exclude is None:
        return Exclusions(None, None)
    if isinstance(exclude, np.ndarray) and exclude.ndim <= 1:
        shared = to_positions(_as_id_array(exclude, "exclude"))
        return Exclusions(shared if shared.size else None, None)
    if isinstance(exclude, np.ndarray) and exclude.ndim > 2:
        raise DataError(f"exclude must be 1-D (shared) or 2-D (per query), got shape {exclude.shape}", source="exclude")
    rows = list(exclude)
    if not isinstance(exclude, np.ndarray) and all(_is_scalar_id(r) for r in rows):
        shared = to_positions(_as_id_array(rows, "exclude"))
        return Exclusions(shared if shared.size else None, None)
    if len(rows) != nq:
        raise DataError(
            f"exclude has {len(rows)} rows but there are {nq} queries (give one row per query)", source="exclude"
        )
    per_query = [to_positions(_as_id_array(r, f"exclude[{i}]")) for i, r in enumerate(rows)]
    if not any(p.size for p in per_query):
        return Exclusions(None, None)
    return Exclusions(None, per_query)


def drop_excluded(
    positions: np.ndarray, scores: np.ndarray, per_query: list[np.ndarray] | None, k: int, ntotal: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own excluded positions from raw results (sorted best first, -1 = empty)
    and keep the first ``k`` that remain; emptied slots become -1 / -inf."""
    if per_query is None:
        return positions[:, :k].copy(), scores[:, :k].copy()
    nq = positions.shape[0]
    lengths = np.fromiter((p.size for p in per_query), dtype=np.int64, count=nq)
    # one integer key per (query, position) pair lets a single isin test the whole batch
    excluded_keys = np.repeat(np.arange(nq, dtype=np.int64), lengths) * ntotal + np.concatenate(per_query)
    result_keys = np.where(positions >= 0, np.arange(nq, dtype=np.int64)[:, None] * ntotal + positions, -1)
    valid = (positions >= 0) & ~np.isin(result_keys, excluded_keys)
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
    kept_pos = np.take_along_axis(positions, order, axis=1)
    kept_scores = np.take_along_axis(scores, order, axis=1)
    kept_valid = np.take_along_axis(valid, order, axis=1)
    kept_pos[~kept_valid] = -1
    kept_scores[~kept_valid] = -np.inf
    return kept_pos, kept_scores


__all__ = ["ExcludeArg", "Exclusions", "drop_excluded", "normalize_exclude"]
