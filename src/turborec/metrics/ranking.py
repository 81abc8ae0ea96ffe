"""Full-ranking top-K metrics: every item is a candidate, training items excluded.

No sampled negatives: sampled metrics disagree with full ranking (Krichene &
Rendle 2020). Users are scored in chunks so memory stays bounded at 100k+ items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from turborec.errors import ConfigError

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Maps a chunk of user indices [B] to scores [B, n_items] (float, higher is better)."""


@dataclass(frozen=True)
class RankingReport:
    """Mean metrics over evaluated users (those with at least one test item)."""

    metrics: dict[str, float]
    n_users: int
    ks: tuple[int, ...]

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def to_dict(self) -> dict[str, float]:
        return {**self.metrics, "n_users": float(self.n_users)}


def top_k_from_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first (argpartition + sort of k)."""
    n = scores.shape[1]
    k = min(k, n)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def mask_rows(scores: np.ndarray, rows: np.ndarray, csr: sp.csr_matrix) -> None:
    """Set scores of the items each user has in ``csr`` to -inf, in place."""
    sub = csr[rows]
    r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
    scores[r, sub.indices] = -np.inf


def ranking_metrics_from_topk(
    topk: np.ndarray, test: sp.csr_matrix, users: np.ndarray, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-user metric arrays for precomputed top lists (``topk`` [B, max(ks)] item indices)."""
    sub = test[users]
    n_rel = np.diff(sub.indptr)
    rows = np.repeat(np.arange(len(users)), topk.shape[1])
    hits = (np.asarray(sub[rows, topk.ravel()]).reshape(topk.shape) != 0)
    out: dict[str, np.ndarray] = {}
    discounts = 1.0 / np.log2(np.arange(2, topk.shape[1] + 2))
    for k in ks:
        h = hits[:, :k]
        nh = h.sum(1)
        out[f"recall@{k}"] = nh / np.maximum(n_rel, 1)
        out[f"precision@{k}"] = nh / k
        out[f"hit@{k}"] = (nh > 0).astype(np.float64)
        dcg = (h * discounts[:k]).sum(1)
        ideal = np.cumsum(discounts[:k])[np.minimum(n_rel, k) - 1]
        out[f"ndcg@{k}"] = dcg / np.where(n_rel > 0, ideal, 1.0)
        first = np.where(h.any(1), h.argmax(1) + 1, 0)
        out[f"mrr@{k}"] = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    return out


def evaluate_ranking(
    score_fn: ScoreFn,
    test: sp.csr_matrix,
    exclude: sp.csr_matrix | None = None,
    ks: Sequence[int] = (10, 20),
    chunk_size: int = 1024,
    users: np.ndarray | None = None,
) -> RankingReport:
    """Full-ranking Recall/Precision/NDCG/Hit/MRR@K and item coverage@K.

    ``test`` and ``exclude`` are users x items matrices on the same index space;
    users without test items are skipped. Ties are broken by item index.
    """
    if not ks or min(ks) <= 0:
        raise ConfigError(f"cutoffs must be positive integers, got {list(ks)}")
    n_items = test.shape[1]
    if exclude is not None and exclude.shape != test.shape:
        raise ConfigError(f"exclude matrix shape {exclude.shape} differs from test {test.shape}")
    test = test.tocsr()
    exclude = exclude.tocsr() if exclude is not None else None
    if users is None:
        users = np.flatnonzero(np.diff(test.indptr) > 0)
    kmax = max(ks)
    sums: dict[str, float] = {}
    seen_items: dict[int, np.ndarray] = {k: np.zeros(n_items, dtype=bool) for k in ks}
    for start in range(0, len(users), chunk_size):
        chunk = users[start : start + chunk_size]
        scores = np.array(score_fn(chunk), dtype=np.float32, copy=True)
        if scores.shape != (len(chunk), n_items):
            raise ConfigError(f"score function returned shape {scores.shape}, expected {(len(chunk), n_items)}")
        if exclude is not None:
            mask_rows(scores, chunk, exclude)
        top = top_k_from_scores(scores, kmax)
        per_user = ranking_metrics_from_topk(top, test, chunk, ks)
        for name, values in per_user.items():
            sums[name] = sums.get(name, 0.0) + float(values.sum())
        for k in ks:
            seen_items[k][top[:, :k].ravel()] = True
    n = max(len(users), 1)
    metrics = {name: total / n for name, total in sorted(sums.items())}
    for k in ks:
        metrics[f"coverage@{k}"] = float(seen_items[k].mean()) if n_items else 0.0
    return RankingReport(metrics=metrics, n_users=len(users), ks=tuple(ks))
