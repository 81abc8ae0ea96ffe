"""How close an approximate index comes to exact search."""

from __future__ import annotations

import numpy as np

from turborec.errors import DataError
from turborec.retrieval._exclude import ExcludeArg
from turborec.retrieval.base import Index


def recall_at_k(
    index: Index, exact: Index | np.ndarray, queries: np.ndarray, k: int, exclude: ExcludeArg = None
) -> float:
    """Mean over queries of |top-k of ``index`` ∩ true top-k| / |true top-k|.

    ``exact`` is an exact index over the same catalog (e.g. ``make_index("Exact", dim)``) or its
    precomputed result ids [nq, >=k] (-1 slots are ignored). Queries whose true top-k is empty
    (everything excluded) do not count.
    """
    found, _ = index.search(queries, k, exclude=exclude)
    if isinstance(exact, Index):
        truth, _ = exact.search(queries, k, exclude=exclude)
    else:
        truth = np.asarray(exact)
        if truth.ndim != 2 or truth.shape[0] != found.shape[0]:
            raise DataError(f"ground-truth ids must be [{found.shape[0]}, k], got shape {truth.shape}", source="exact")
        truth = truth[:, :k]
    return recall_of_ids(found, truth)


def recall_of_ids(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of |found ∩ truth| / |truth| for result id arrays [nq, k] (-1 = empty slot).

    For scoring results that did not come from an :class:`Index` (a torch matmul + topk baseline).
    """
    found, truth = np.asarray(found), np.asarray(truth)
    if found.ndim != 2 or truth.ndim != 2 or found.shape[0] != truth.shape[0]:
        raise DataError(
            f"found {found.shape} and truth {truth.shape} must be [nq, k] with the same nq", source="recall"
        )
    hits = np.zeros(found.shape[0], dtype=np.int64)
    for r0 in range(0, found.shape[0], 256):  # [rows, k, k] comparisons stay small
        f, t = found[r0 : r0 + 256], truth[r0 : r0 + 256]
        match = (f[:, :, None] == t[:, None, :]) & (t[:, None, :] >= 0)
        hits[r0 : r0 + 256] = match.any(axis=1).sum(axis=1)
    relevant = (truth >= 0).sum(axis=1)
    counted = relevant > 0
    if not counted.any():
        return float("nan")
    return float(np.mean(hits[counted] / relevant[counted]))


__all__ = ["recall_at_k", "recall_of_ids"]
