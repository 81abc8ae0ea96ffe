"""``NetServingModel``: a ``ServingModel`` over any retrieval net (two-tower, MF, ...).

Item vectors are computed once at load; per batch the user tower runs on the
users' recent items (training tail + live events), scores are dot products
against the catalog, exclusions are masked, and the top-k is decoded to ids.
Everything runs in torch with the service's thread setting (no hidden BLAS
thread pool). Catalogs past ~65k items are scored in chunks (exact top-k per
chunk, then merged), so the [batch, n_items] score matrix is never written out.

Tiers it implements (``tiers``):

- ``FULL``: every item scored; with a ranker, the ranker re-orders the best
  ``full_candidates``.
- ``FEWER_CANDIDATES``: only the ``pool_size`` most popular items are scored
  (a cheaper matmul and top-k; long-tail items drop out); with a ranker, it
  re-orders fewer candidates.
- ``CHEAP_RANKER`` / ``RETRIEVAL_ONLY``: only when a ranker is given (its cheap
  variant, on ``cheap_candidates`` / no ranker at all), on the pool.
- ``POPULAR``: no model call.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from turborec.backends.tracing import traced_for_inference
from turborec.data.vocab import Vocabulary
from turborec.errors import ConfigError, UnknownIdError
from turborec.models.base import RetrievalNet
from turborec.serving.model import BatchOutput, Query, Ranked
from turborec.serving.tiers import Tier
from turborec.train.recommender import Recommender, ServableView


class CandidateRanker(Protocol):
    """Re-scores retrieved candidates: ([B,d] user vectors, [B] users (-1 anonymous), [B,L] history (-1 padded),
    [B,C] item indices best first, [B,C] their retrieval scores (-inf: excluded)) -> [B,C] scores."""

    def __call__(
        self, user_vecs: torch.Tensor, users: torch.Tensor, history: torch.Tensor, candidates: torch.Tensor,
        candidate_scores: torch.Tensor,
    ) -> torch.Tensor: ...


class UserTowerPart(nn.Module):
    """``(users [B], history [B, L]) -> user vectors [B, d]``: the part a Runner compiles or exports."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.net.user_vectors(users, history)  # type: ignore[operator]


def _tower_examples(n_users: int, n_items: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Inputs to trace the user tower on and check it with: known and anonymous users, full, partial and
    empty histories, several batch sizes."""
    rng = np.random.default_rng(0)
    out = []
    for size in (3, 1, 7):
        users = rng.integers(0, n_users, size) if n_users else np.full(size, -1)
        users[-1] = -1
        hist = rng.integers(0, n_items, (size, length))
        hist[0, length // 2:] = -1
        hist[-1, :] = -1
        out.append((torch.from_numpy(users.astype(np.int64)), torch.from_numpy(hist.astype(np.int64))))
    return out


class NetServingModel:
    def __init__(
        self,
        net: RetrievalNet,
        users: Vocabulary,
        items: Vocabulary,
        *,
        version: str,
        seen: tuple[np.ndarray, np.ndarray] | None = None,
        popularity: np.ndarray | None = None,
        history_len: int = 50,
        pool_size: int | None = None,
        ranker: CandidateRanker | None = None,
        cheap_ranker: CandidateRanker | None = None,
        full_candidates: int = 200,
        pool_candidates: int = 50,
        cheap_candidates: int | None = None,
        trace: bool = True,
    ) -> None:
        if len(items) != net.n_items:
            raise ConfigError(f"item vocabulary has {len(items)} ids, the network {net.n_items} items")
        self._version = version
        self.net = net.eval()
        self.n_items = len(items)
        self.history_len = history_len
        tower: nn.Module = UserTowerPart(self.net)
        if trace:  # the same numbers without the per-module Python (checked, else eager)
            first, *checks = _tower_examples(len(users), self.n_items, history_len)
            tower = traced_for_inference(tower, first, checks)
        self.user_tower = tower
        self._user_index = {str(u): i for i, u in enumerate(users.ids)}
        self._item_index = {str(v): i for i, v in enumerate(items.ids)}
        self._item_ids = [str(v) for v in items.ids]
        if seen is None:
            seen = (np.zeros(len(users) + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self._seen_offsets, self._seen_items = (np.asarray(a, dtype=np.int64) for a in seen)
        if len(self._seen_offsets) != len(users) + 1:
            raise ConfigError(f"seen offsets cover {len(self._seen_offsets) - 1} users, vocabulary has {len(users)}")
        pop = np.zeros(self.n_items) if popularity is None else np.asarray(popularity, dtype=np.float64)
        self._popular_order = np.argsort(-pop, kind="stable")
        self._popular_rank = np.empty(self.n_items, dtype=np.int64)  # item -> position in that order
        self._popular_rank[self._popular_order] = np.arange(self.n_items)
        self._popular_scores = np.log1p(np.maximum(pop, 0)).astype(np.float32)
        with torch.inference_mode():
            vecs = net.item_vectors().detach().float().contiguous()
        self._item_vecs = vecs
        self._item_unit = torch.nn.functional.normalize(vecs, dim=-1)
        size = pool_size if pool_size is not None else max(self.n_items // 4, min(self.n_items, 1000))
        pool = np.sort(self._popular_order[: max(1, min(size, self.n_items))])
        self._pool = torch.from_numpy(pool)
        self._pool_vecs = vecs[self._pool].contiguous()
        self._pool_pos = np.full(self.n_items, -1, dtype=np.int64)
        self._pool_pos[pool] = np.arange(len(pool))
        self._ranker = ranker
        self._cheap_ranker = cheap_ranker
        self._candidates = {Tier.FULL: full_candidates, Tier.FEWER_CANDIDATES: pool_candidates,
                            Tier.CHEAP_RANKER: pool_candidates if cheap_candidates is None else cheap_candidates}
        ladder = [Tier.FULL, Tier.FEWER_CANDIDATES]
        if ranker is not None:
            ladder += ([Tier.CHEAP_RANKER] if cheap_ranker is not None else []) + [Tier.RETRIEVAL_ONLY]
        self._tiers = (*ladder, Tier.POPULAR)

    # ------------------------------------------------------------ protocol
    @property
    def version(self) -> str:
        return self._version

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self._tiers

    def knows_item(self, item: str) -> bool:
        return item in self._item_index

    def knows_user(self, user: str) -> bool:
        return user in self._user_index

    def recommend_batch(self, queries: Sequence[Query], tier: Tier) -> BatchOutput:
        t0 = time.perf_counter()
        if tier is Tier.POPULAR:  # the last resort under overload: no history window, no model
            return BatchOutput(self._popular(queries), {"ranking": time.perf_counter() - t0})
        users, hist, excl_rows, excl_cols = self._features(queries)
        t1 = time.perf_counter()
        ranker = {Tier.FULL: self._ranker, Tier.FEWER_CANDIDATES: self._ranker,
                  Tier.CHEAP_RANKER: self._cheap_ranker}.get(tier)
        k_max = max(q.k for q in queries)
        with torch.inference_mode():
            u = torch.from_numpy(users)
            h = torch.from_numpy(hist)
            user_vecs = self.user_tower(u, h).float()
            use_pool = tier is not Tier.FULL
            vecs = self._pool_vecs if use_pool else self._item_vecs
            rows, cols = excl_rows, excl_cols
            if len(rows) and use_pool:
                cols = self._pool_pos[cols]
                rows, cols = rows[cols >= 0], cols[cols >= 0]
            n_cand = min(max(k_max, self._candidates.get(tier, 0) if ranker else k_max), vecs.shape[0])
            cand_scores, cand = _top_scores(user_vecs, vecs, rows, cols, n_cand)
            if use_pool:
                cand = self._pool[cand]
            t2 = time.perf_counter()
            if ranker is not None:
                reranked = ranker(user_vecs, u, h, cand, cand_scores).float()
                reranked = torch.where(torch.isfinite(cand_scores), reranked, torch.full_like(reranked, -torch.inf))
                cand_scores, order = torch.sort(reranked, dim=1, descending=True, stable=True)
                cand = torch.gather(cand, 1, order)
        cand_np, scores_np = cand.numpy(), cand_scores.numpy()
        results = [self._decode(cand_np[b], scores_np[b], q.k, users[b] >= 0) for b, q in enumerate(queries)]
        t3 = time.perf_counter()
        return BatchOutput(results, {"features": t1 - t0, "retrieval": t2 - t1, "ranking": t3 - t2})

    def similar(self, item: str, k: int) -> Ranked:
        idx = self._item_index.get(item)
        if idx is None:
            raise UnknownIdError(f"unknown item id {item!r}")
        with torch.inference_mode():
            sims = self._item_unit @ self._item_unit[idx]
            sims[idx] = -torch.inf
            scores, top = torch.topk(sims, min(k, self.n_items - 1))
        return self._decode(top.numpy(), scores.numpy(), k, False)

    # ------------------------------------------------------------- helpers
    def _features(self, queries: Sequence[Query]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """User indices [B], history [B, L] (oldest first, -1 padded) and the (row, item) pairs to exclude.

        Vectorised over the batch where it can be (the training tails are one gather); per query only
        the live items and explicit exclusions are looked up.
        """
        L = self.history_len
        get_user = self._user_index.get
        user_list = [get_user(q.user, -1) if q.user is not None else -1 for q in queries]
        users = np.asarray(user_list, dtype=np.int64)
        offsets, seen = self._seen_offsets, self._seen_items
        start = np.where(users >= 0, offsets[np.maximum(users, 0)], 0)
        end = np.where(users >= 0, offsets[np.maximum(users, 0) + 1], 0)
        idx = np.maximum(end - L, start)[:, None] + np.arange(L)[None, :]
        hist = np.where(idx < end[:, None], seen[np.minimum(idx, max(len(seen) - 1, 0))] if len(seen) else -1, -1)
        parts: list[np.ndarray] = []
        counts = []
        for b, q in enumerate(queries):
            uidx = user_list[b]
            live = self._known_items(q.history)
            if len(live):
                past = seen[offsets[uidx]: offsets[uidx + 1]][-L:] if uidx >= 0 else live[:0]
                recent = np.concatenate([past, live])[-L:]
                hist[b] = -1
                hist[b, : len(recent)] = recent
            banned = self._excluded(q, uidx, live)
            parts.append(banned)
            counts.append(len(banned))
        cols = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        rows = np.repeat(np.arange(len(queries), dtype=np.int64), counts)
        return users, hist.astype(np.int64, copy=False), rows, cols

    def _known_items(self, ids: Collection[str]) -> np.ndarray:
        """Indices of the ids the model knows, in order (unknown ids are skipped)."""
        get_item = self._item_index.get
        return np.fromiter((i for i in map(get_item, ids) if i is not None), np.int64) if ids else _NO_ITEMS

    def _excluded(self, q: Query, uidx: int, live: np.ndarray) -> np.ndarray:
        """Items ``q`` must not get: the user's training items and ``live`` ones (with ``exclude_seen``),
        and its explicit exclusions."""
        parts = []
        if q.exclude_seen:
            if uidx >= 0:
                parts.append(self._seen_items[self._seen_offsets[uidx]: self._seen_offsets[uidx + 1]])
            parts.append(live)
        if q.exclude:
            parts.append(self._known_items(q.exclude))
        return np.concatenate(parts) if parts else _NO_ITEMS

    def _popular(self, queries: Sequence[Query]) -> list[Ranked]:
        """The most popular items each query may see. Built for the moment it is used -- a service past its
        capacity -- so per query it costs a few array gathers: the excluded items' positions in the
        popularity order mark the ones to skip in the head of that order (no set operations)."""
        get_user, rank = self._user_index.get, self._popular_rank
        out = []
        for q in queries:
            uidx = get_user(q.user, -1) if q.user is not None else -1
            banned = self._excluded(q, uidx, self._known_items(q.history) if q.exclude_seen else _NO_ITEMS)
            width = min(q.k + len(banned), self.n_items)
            keep = np.ones(width, dtype=bool)
            ranks = rank[banned]
            keep[ranks[ranks < width]] = False
            top = self._popular_order[:width][keep][: q.k]
            out.append(self._decode(top, self._popular_scores[top], q.k, uidx >= 0))
        return out

    def _decode(self, idx: np.ndarray, scores: np.ndarray, k: int, user_known: bool | np.bool_) -> Ranked:
        finite = np.isfinite(scores)
        if not finite.all():
            idx, scores = idx[finite], scores[finite]
        idx, scores = idx[:k], scores[:k]
        names = self._item_ids
        return Ranked([names[i] for i in idx.tolist()], scores.astype(np.float32, copy=False), bool(user_known))


_NO_ITEMS = np.zeros(0, dtype=np.int64)
SCORE_CHUNK = 1 << 15  # items scored at once: a [B, chunk] block stays in cache, and top-k runs on it there


def _top_scores(
    user_vecs: torch.Tensor, vecs: torch.Tensor, excl_rows: np.ndarray, excl_cols: np.ndarray, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``n`` (scores, item positions) of ``user_vecs @ vecs.T`` with (row, col) pairs excluded.

    Large catalogs are scored chunk by chunk, keeping each chunk's top-``n``: never materialising the whole
    [B, n_items] score matrix halves the time on a million items (it is written, then read by top-k).
    """
    n_items = vecs.shape[0]
    if n_items <= 2 * SCORE_CHUNK:
        scores = user_vecs @ vecs.T
        if len(excl_rows):
            scores[torch.from_numpy(excl_rows), torch.from_numpy(excl_cols)] = -torch.inf
        return torch.topk(scores, n, dim=1)
    best_scores, best_items = [], []
    for lo in range(0, n_items, SCORE_CHUNK):
        hi = min(lo + SCORE_CHUNK, n_items)
        scores = user_vecs @ vecs[lo:hi].T
        if len(excl_rows):
            inside = (excl_cols >= lo) & (excl_cols < hi)
            if inside.any():
                scores[torch.from_numpy(excl_rows[inside]), torch.from_numpy(excl_cols[inside] - lo)] = -torch.inf
        top_scores, top_items = torch.topk(scores, min(n, hi - lo), dim=1)
        best_scores.append(top_scores)
        best_items.append(top_items + lo)
    merged_scores, where = torch.topk(torch.cat(best_scores, dim=1), n, dim=1)
    return merged_scores, torch.gather(torch.cat(best_items, dim=1), 1, where)


def serving_model_from_view(view: ServableView, version: str, history_len: int = 50, **options: Any) -> NetServingModel:
    """The serving model of a fitted model's :class:`~turborec.train.ServableView` (vocabularies, training
    histories as seen items and user-tower input, popularity). ``options`` go to :class:`NetServingModel`
    (``pool_size``, a ``ranker``...); ``history_len`` is the window for nets that read the whole history."""
    own = view.history_len
    length = own if (own is not None and view.net.uses_history) else history_len
    return NetServingModel(
        view.net.cpu(), view.users, view.items, version=version, seen=(view.seen_offsets, view.seen_items),
        popularity=view.popularity, history_len=max(int(length), 1), **options,
    )


def serving_model_from_recommender(rec: Recommender, version: str, history_len: int = 50,
                                   **options: Any) -> NetServingModel:
    """:func:`serving_model_from_view` of a fitted estimator."""
    return serving_model_from_view(rec.servable(), version, history_len, **options)
