"""Offline accuracy of a served configuration: NDCG@10 on the validation split, through the same
user-tower backend and retrieval index the service would use (training items excluded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from turborec.backends import Runner
from turborec.data.interactions import Interactions
from turborec.retrieval import Index
from turborec.retrieval.exact import exact_top_k
from turborec.serving.net_model import tower_history_len
from turborec.train.recommender import Recommender


@dataclass(frozen=True)
class EvalSet:
    """Validation users (those with at least one validation item) and what to look up for them."""

    users: np.ndarray  # user indices
    truth: sp.csr_matrix  # users x items, validation positives

    @classmethod
    def from_interactions(cls, rec: Recommender, valid: Interactions, max_users: int | None = None, seed: int = 0) -> EvalSet:
        if valid.users != rec.users or valid.items != rec.items:
            valid = valid.with_vocabularies(rec.users, rec.items)  # type: ignore[arg-type]
        truth = valid.to_csr().tocsr()
        users = np.flatnonzero(np.diff(truth.indptr) > 0)
        if max_users is not None and len(users) > max_users:
            users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
        return cls(users.astype(np.int64), truth)


def ndcg_at_k(top: np.ndarray, truth: sp.csr_matrix, users: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k of ranked item lists ``top`` [B, >=k] (-1 = empty slot) against ``truth`` rows."""
    top = top[:, :k]
    sub = truth[users]
    n_rel = np.diff(sub.indptr)
    hits = np.zeros(top.shape, dtype=bool)
    for r in range(len(users)):
        rel = sub.indices[sub.indptr[r] : sub.indptr[r + 1]]
        hits[r] = np.isin(top[r], rel) & (top[r] >= 0)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts[: top.shape[1]]).sum(1)
    ideal = np.cumsum(discounts)[np.minimum(np.maximum(n_rel, 1), k) - 1]
    return float(np.mean(np.where(n_rel > 0, dcg / ideal, 0.0))) if len(users) else 0.0


def served_ndcg(
    rec: Recommender,
    eval_set: EvalSet,
    *,
    runner: Runner | None = None,
    index: Index | None = None,
    history_len: int | None = None,
    k: int = 10,
    chunk: int = 256,
) -> float:
    """NDCG@k of what the service would return to the validation users (their training history as
    the user tower's input, their training items excluded)."""
    assert rec.histories is not None
    net = rec.fitted_net
    hist_len = history_len or tower_history_len(rec.servable())  # the window the service feeds the tower
    with torch.inference_mode():
        item_vecs = net.item_vectors().float()
    tops = []
    for start in range(0, len(eval_set.users), chunk):
        users = eval_set.users[start : start + chunk]
        hist = rec.histories.padded(users, hist_len)
        if runner is not None:
            uv = runner({"users": users, "history": hist})
        else:
            with torch.inference_mode():
                uv = net.user_vectors(torch.from_numpy(users), torch.from_numpy(hist)).float().numpy()
        seen = [rec.histories.of(int(u)) for u in users]
        if index is not None:
            ids, _ = index.search(uv, k, exclude=seen)
        else:
            rows = np.repeat(np.arange(len(users)), [len(s) for s in seen])
            cols = np.concatenate(seen) if seen else np.zeros(0, dtype=np.int64)
            with torch.inference_mode():
                _, best = exact_top_k(torch.from_numpy(np.ascontiguousarray(uv, dtype=np.float32)), item_vecs, k,
                                      rows, cols)
            ids = best.numpy()
        tops.append(ids)
    top = np.concatenate(tops) if tops else np.zeros((0, k), dtype=np.int64)
    return ndcg_at_k(top, eval_set.truth, eval_set.users, k)


__all__ = ["EvalSet", "ndcg_at_k", "served_ndcg"]
