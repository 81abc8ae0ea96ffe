"""Per-user item histories (time-ordered CSR) and their padded tensors for the user tower."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from turborec.data.interactions import Interactions


@dataclass(frozen=True)
class Histories:
    """``items[offsets[u]:offsets[u+1]]`` are user u's items, oldest first."""

    offsets: np.ndarray  # int64 [n_users + 1]
    items: np.ndarray  # int64 [nnz]
    n_items: int

    @classmethod
    def from_interactions(cls, *parts: Interactions) -> Histories:
        base = parts[0]
        if len(parts) > 1:
            user = np.concatenate([p.user for p in parts])
            item = np.concatenate([p.item for p in parts])
            ts = None
            if all(p.timestamp is not None for p in parts):
                ts = np.concatenate([p.timestamp for p in parts])  # type: ignore[misc]
            order = np.lexsort((ts, user)) if ts is not None else np.argsort(user, kind="stable")
            user, item = user[order], item[order]
        else:
            s = base.sorted_by_time()
            user, item = s.user, s.item
        counts = np.bincount(user, minlength=base.n_users)
        offsets = np.zeros(base.n_users + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(counts)
        return cls(offsets, item.astype(np.int64), base.n_items)

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def of(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def padded(self, users: np.ndarray, max_len: int | None) -> np.ndarray:
        """[B, L] most recent ``max_len`` items per user (all when None), oldest first, -1 padded."""
        users = np.asarray(users, dtype=np.int64)
        start = self.offsets[users]
        end = self.offsets[users + 1]
        width = int((end - start).max(initial=0)) if max_len is None else int(max_len)
        width = max(width, 1)
        begin = np.maximum(end - width, start)
        idx = begin[:, None] + np.arange(width)[None, :]
        valid = idx < end[:, None]
        out = np.where(valid, self.items[np.minimum(idx, max(len(self.items) - 1, 0))] if len(self.items) else -1, -1)
        return out.astype(np.int64)

    def to_csr(self) -> sp.csr_matrix:
        data = np.ones(len(self.items), dtype=np.float32)
        m = sp.csr_matrix((data, self.items, self.offsets), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m


def pad_lists(lists: list[np.ndarray], max_len: int | None) -> np.ndarray:
    """Pad ragged index lists (oldest first) to [B, L] keeping the most recent ``max_len``."""
    width = max((len(x) for x in lists), default=1) if max_len is None else max_len
    width = max(width, 1)
    out = np.full((len(lists), width), -1, dtype=np.int64)
    for row, seq in enumerate(lists):
        tail = np.asarray(seq, dtype=np.int64)[-width:]
        out[row, : len(tail)] = tail
    return out
