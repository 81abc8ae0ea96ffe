"""``NetServingModel``: the one ``ServingModel`` -- a user tower run by a Runner, an Index, and optionally
a ranker -- over any retrieval net (two-tower, MF, EASE, popularity; a pipeline's retriever and ranker).

Item vectors are computed once at load. Per batch the user tower runs on the users' recent items
(training tail + live events): a backend :class:`~turborec.backends.Runner` (ONNX Runtime,
torch.compile) when the artifact was tuned for one, else the net's frozen trace in-process. The
catalog is searched by an :class:`~turborec.retrieval.Index` with the exclusions (seen, live,
explicit) as (query, item) pairs: exact search is the :class:`~turborec.retrieval.exact.ExactIndex`
over the item vectors (the one exact top-k, :func:`~turborec.retrieval.exact.exact_top_k`), a tuned
artifact's FAISS index otherwise. A ranker, when given, re-orders the candidates; then the top-k is
decoded to ids. Everything runs with the service's thread setting (no hidden BLAS thread pool).

Tiers it implements (``tiers``), cheapest last:

- ``FULL``: the whole catalog through the index; with a ranker, it re-orders the best ``full_candidates``.
- ``FEWER_CANDIDATES``: exact search of the ``pool_size`` most popular items (long-tail items drop out;
  with a ranker, fewer candidates). With an ANN index the pool would cost *more* than the index over a
  large catalog (a quarter of a million items against a few thousand probed), so that tier is the
  index at a quarter of its tuned search effort instead, and is absent when it has no effort knob.
- ``CHEAP_RANKER`` / ``RETRIEVAL_ONLY``: only when a ranker is given (its cheap variant, on
  ``cheap_candidates`` / no ranker at all), on the pool.
- ``POPULAR``: no model call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from turborec.backends import Runner
from turborec.backends.tracing import traced_for_inference
from turborec.data.vocab import Vocabulary
from turborec.errors import ConfigError, UnknownIdError
from turborec.models.base import RetrievalNet
from turborec.retrieval import Index, make_index
from turborec.retrieval.exact import ExactIndex, exact_top_k
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
        runner: Runner | None = None,
        index: Index | None = None,
    ) -> None:
        if len(items) != net.n_items:
            raise ConfigError(f"item vocabulary has {len(items)} ids, the network {net.n_items} items")
        self._version = version
        self.net = net.eval()
        self.n_items = len(items)
        self.history_len = history_len
        tower: nn.Module = UserTowerPart(self.net)
        if trace and runner is None:  # the same numbers without the per-module Python (checked, else eager)
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
        self.runner = runner
        self.exact = _exact_index(vecs.numpy())
        self._item_vecs = torch.from_numpy(self.exact.vectors())  # the index's copy: one catalog in memory
        self._item_unit = torch.nn.functional.normalize(self._item_vecs, dim=-1)
        if index is not None and index.ntotal != self.n_items:
            raise ConfigError(f"the index holds {index.ntotal} vectors, the catalog has {self.n_items} items")
        self.index = index if index is not None else self.exact
        self._index_ids = None if np.array_equal(self.index.ids, np.arange(self.n_items)) else self.index.ids
        self._reduced = reduced_search_params(index) if index is not None else None
        self._index_lock = threading.Lock()  # the reduced tier turns the index's knobs for one search
        size = pool_size if pool_size is not None else max(self.n_items // 4, min(self.n_items, 1000))
        pool = np.sort(self._popular_order[: max(1, min(size, self.n_items))])
        self._pool = pool
        self._pool_index = _exact_index(self._item_vecs[torch.from_numpy(pool)].numpy())
        self._pool_pos = np.full(self.n_items, -1, dtype=np.int64)
        self._pool_pos[pool] = np.arange(len(pool))
        self._ranker = ranker
        self._cheap_ranker = cheap_ranker
        self._candidates = {Tier.FULL: full_candidates, Tier.FEWER_CANDIDATES: pool_candidates,
                            Tier.CHEAP_RANKER: pool_candidates if cheap_candidates is None else cheap_candidates}
        ann = index is not None and not isinstance(index, type(self.exact))
        self._ann = ann
        ladder = [Tier.FULL] + ([Tier.FEWER_CANDIDATES] if not ann or self._reduced else [])
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
        user_vecs = self._user_vectors(users, hist)
        n_cand = min(max(k_max, self._candidates.get(tier, 0) if ranker else k_max), self.n_items)
        cand, cand_scores = self._retrieve(user_vecs, tier, excl_rows, excl_cols, n_cand)
        t2 = time.perf_counter()
        if ranker is not None:
            with torch.inference_mode():
                s = torch.from_numpy(cand_scores)
                c = torch.from_numpy(np.maximum(cand, 0))  # -1 marks an empty slot, scored -inf below
                reranked = ranker(torch.from_numpy(user_vecs), torch.from_numpy(users), torch.from_numpy(hist), c,
                                  s).float()
                reranked = torch.where(torch.isfinite(s), reranked, torch.full_like(reranked, -torch.inf))
                s, order = torch.sort(reranked, dim=1, descending=True, stable=True)
                cand, cand_scores = torch.gather(c, 1, order).numpy(), s.numpy()
        results = [self._decode(cand[b], cand_scores[b], q.k, users[b] >= 0) for b, q in enumerate(queries)]
        t3 = time.perf_counter()
        return BatchOutput(results, {"features": t1 - t0, "retrieval": t2 - t1, "ranking": t3 - t2})

    def _user_vectors(self, users: np.ndarray, hist: np.ndarray) -> np.ndarray:
        """The user tower on a batch: the backend runner, or the frozen trace in-process."""
        if self.runner is not None:
            return np.ascontiguousarray(self.runner({"users": users, "history": hist}), dtype=np.float32)
        with torch.inference_mode():
            return self.user_tower(torch.from_numpy(users), torch.from_numpy(hist)).float().numpy()

    def _retrieve(self, user_vecs: np.ndarray, tier: Tier, rows: np.ndarray, cols: np.ndarray,
                  n: int) -> tuple[np.ndarray, np.ndarray]:
        """Best ``n`` (item rows, scores) per query for ``tier``, the (row, item) pairs excluded; -1 / -inf pad."""
        if tier is Tier.FULL or self._ann:
            effort = self._reduced if tier is not Tier.FULL else None
            pos, scores = self._search(self.index, user_vecs, n, rows, cols, effort)
            if self._index_ids is not None:
                pos = np.where(pos >= 0, self._index_ids[np.maximum(pos, 0)], -1)
            return pos, scores
        if len(rows):  # the pool's own positions; items outside the pool cannot come back anyway
            cols = self._pool_pos[cols]
            rows, cols = rows[cols >= 0], cols[cols >= 0]
        pos, scores = self._pool_index.search_positions(user_vecs, min(n, len(self._pool)), rows, cols)
        return np.where(pos >= 0, self._pool[np.maximum(pos, 0)], -1), scores

    def _search(self, index: Index, user_vecs: np.ndarray, n: int, rows: np.ndarray, cols: np.ndarray,
                effort: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray]:
        if effort is None:
            return index.search_positions(user_vecs, n, rows, cols)
        with self._index_lock:
            tuned = index.params
            index.set_params(**effort)
            try:
                return index.search_positions(user_vecs, n, rows, cols)
            finally:
                index.set_params(**tuned)

    def similar(self, item: str, k: int) -> Ranked:
        idx = self._item_index.get(item)
        if idx is None:
            raise UnknownIdError(f"unknown item id {item!r}")
        with torch.inference_mode():
            scores, top = exact_top_k(self._item_unit[idx : idx + 1], self._item_unit, min(k, self.n_items - 1),
                                      np.zeros(1, dtype=np.int64), np.array([idx], dtype=np.int64))
        return self._decode(top[0].numpy(), scores[0].numpy(), k, False)

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
REDUCED_EFFORT = 4  # the FEWER_CANDIDATES tier searches an ANN index with a quarter of the tuned effort


def reduced_search_params(index: Index) -> dict[str, int] | None:
    """The index's search knobs at a quarter of their tuned values (IVF nprobe, HNSW efSearch), or None
    when it has no knob to turn down (a flat or exact index, nprobe already 1)."""
    params = index.params
    if params.get("nprobe", 1) > 1:
        return {"nprobe": max(1, params["nprobe"] // REDUCED_EFFORT)}
    if params.get("efSearch", 1) > 16:
        return {"efSearch": max(16, params["efSearch"] // REDUCED_EFFORT)}  # FAISS searches max(ef, k) wide
    return None


def _exact_index(vectors: np.ndarray) -> ExactIndex:
    index = make_index("Exact", dim=vectors.shape[1], metric="ip")
    assert isinstance(index, ExactIndex)
    index.add(vectors)
    return index


def serving_model_from_view(view: ServableView, version: str, history_len: int = 50, **options: Any) -> NetServingModel:
    """The serving model of a fitted model's :class:`~turborec.train.ServableView` (vocabularies, training
    histories as seen items and user-tower input, popularity). ``options`` go to :class:`NetServingModel`
    (``pool_size``, a ``ranker``...); ``history_len`` is the window for nets that read the whole history."""
    return NetServingModel(
        view.net.cpu(), view.users, view.items, version=version, seen=(view.seen_offsets, view.seen_items),
        popularity=view.popularity, history_len=tower_history_len(view, history_len), **options,
    )


def tower_history_len(view: ServableView, default: int = 50) -> int:
    """The history window the service feeds the user tower: the net's own window; for a net that reads
    the whole history (EASE, Mult-DAE) the longest training history, at least ``default`` (a shorter
    window would serve a heavy user another answer than ``recommend`` gives: their oldest items dropped);
    ``default`` for a net that reads none."""
    own = view.history_len
    if not view.net.uses_history:
        return max(int(default), 1)
    if own is not None:
        return max(int(own), 1)
    longest = int(np.diff(view.seen_offsets).max(initial=0))
    return max(int(default), longest, 1)


def serving_model_from_recommender(rec: Recommender, version: str, history_len: int = 50,
                                   **options: Any) -> NetServingModel:
    """:func:`serving_model_from_view` of a fitted estimator."""
    return serving_model_from_view(rec.servable(), version, history_len, **options)
