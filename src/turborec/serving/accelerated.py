"""Serving with a tuned backend and index: :class:`AcceleratedServingModel`.

:class:`~turborec.serving.net_model.NetServingModel` runs the user tower in eager PyTorch and
scores every item with one matmul. A tuned configuration (``ServingKnobs``) may instead name a
backend (ONNX Runtime, torch.compile) and a retrieval index (FAISS HNSW / IVF):
:class:`AcceleratedServingModel` wraps a ``NetServingModel`` (features, exclusions, cheaper
tiers and decoding stay its own) and replaces the full tier's two steps. ``turborec tune``
measures exactly this path, and ``turborec serve`` builds it from a tuned artifact.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from turborec.backends import Runner, make_runner
from turborec.retrieval import Index, make_index
from turborec.serving.knobs import SERVICE_EXACT, ServingKnobs
from turborec.serving.model import BatchOutput, Query, Ranked, ServingModel
from turborec.serving.net_model import NetServingModel, UserTowerPart, serving_model_from_recommender
from turborec.serving.tiers import Tier
from turborec.train.recommender import Recommender

REDUCED_EFFORT = 4  # the FEWER_CANDIDATES tier searches the index with a quarter of the tuned effort


def reduced_search_params(index: Index) -> dict[str, int] | None:
    """The index's search knobs at a quarter of their tuned values (IVF nprobe, HNSW efSearch), or None
    when it has no knob to turn down (a flat index, nprobe already 1)."""
    params = index.params
    if params.get("nprobe", 1) > 1:
        return {"nprobe": max(1, params["nprobe"] // REDUCED_EFFORT)}
    if params.get("efSearch", 1) > 16:
        return {"efSearch": max(16, params["efSearch"] // REDUCED_EFFORT)}  # FAISS searches max(ef, k) wide
    return None


class AcceleratedServingModel:
    """A ``ServingModel``: ``base``'s features and decoding; the user tower on ``runner`` (None: eager)
    and the top-k from ``index`` (None: the base's matmul over every item) in the full tier.

    With an index the ladder changes: the base's ``FEWER_CANDIDATES`` scans a popular pool exactly,
    which over a large catalog costs *more* than the index (a quarter of a million items against a
    few thousand probed), so a service stepping down under load would make things worse and never
    recover. Here that tier is the index searched with a quarter of its tuned effort; an index with
    no effort knob has no such tier (full -> popular).
    """

    def __init__(self, base: NetServingModel, runner: Runner | None, index: Index | None, version: str) -> None:
        self.base = base
        self.runner = runner
        self.index = index
        self._version = version
        self._reduced = reduced_search_params(index) if index is not None else None
        self._index_lock = threading.Lock()  # the reduced tier turns the index's knobs for one search

    @property
    def version(self) -> str:
        return self._version

    @property
    def tiers(self) -> tuple[Tier, ...]:
        if self.index is None:
            return self.base.tiers
        return (Tier.FULL, Tier.FEWER_CANDIDATES, Tier.POPULAR) if self._reduced else (Tier.FULL, Tier.POPULAR)

    def knows_item(self, item: str) -> bool:
        return self.base.knows_item(item)

    def similar(self, item: str, k: int) -> Ranked:
        return self.base.similar(item, k)

    def recommend_batch(self, queries: Sequence[Query], tier: Tier) -> BatchOutput:
        reduced = tier is Tier.FEWER_CANDIDATES and self.index is not None and self._reduced is not None
        if tier is not Tier.FULL and not reduced:
            return self.base.recommend_batch(queries, tier)
        base = self.base
        t0 = time.perf_counter()
        users, hist, rows, cols = base._features(queries)
        t1 = time.perf_counter()
        k_max = max(q.k for q in queries)
        if self.runner is not None:
            user_vecs = self.runner({"users": users, "history": hist})
        else:
            with torch.inference_mode():
                user_vecs = base.user_tower(torch.from_numpy(users), torch.from_numpy(hist)).float().numpy()
        if self.index is not None:
            per_query = np.split(cols, np.cumsum(np.bincount(rows, minlength=len(queries)))[:-1]) if len(rows) else None
            ids, scores = self._search(user_vecs, k_max, per_query, self._reduced if reduced else None)
        else:
            with torch.inference_mode():
                s = torch.from_numpy(np.ascontiguousarray(user_vecs, dtype=np.float32)) @ base._item_vecs.T
                if len(rows):
                    s[torch.from_numpy(rows), torch.from_numpy(cols)] = -torch.inf
                top_scores, top = torch.topk(s, min(k_max, s.shape[1]), dim=1)
            ids, scores = top.numpy(), top_scores.numpy()
        t2 = time.perf_counter()
        results = []
        for b, q in enumerate(queries):
            keep = ids[b] >= 0
            results.append(base._decode(ids[b][keep], scores[b][keep], q.k, users[b] >= 0))
        return BatchOutput(results, {"features": t1 - t0, "retrieval": t2 - t1, "ranking": time.perf_counter() - t2})

    def _search(self, user_vecs: np.ndarray, k: int, exclude: list[np.ndarray] | None,
                params: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray]:
        assert self.index is not None
        with self._index_lock:
            if params is None:
                return self.index.search(user_vecs, k, exclude=exclude)
            tuned = self.index.params
            self.index.set_params(**params)
            try:
                return self.index.search(user_vecs, k, exclude=exclude)
            finally:
                self.index.set_params(**tuned)


def user_tower_runner(rec: Recommender, backend: str, history_len: int) -> Runner | None:
    """The user tower of ``rec`` as a ``backend`` runner (None for eager PyTorch: the net is called as is)."""
    if backend == "torch-eager":
        return None
    net = rec.fitted_net
    example = {"users": np.array([0, -1], dtype=np.int64), "history": np.full((2, history_len), -1, dtype=np.int64)}
    example["history"][0, : min(3, history_len)] = np.arange(min(3, history_len))
    with _quiet_native_output():  # a failed ONNX export dumps the whole TorchScript graph from C++
        return make_runner(backend, UserTowerPart(net).eval(), example, threads=1, warmup=True)


@contextlib.contextmanager
def _quiet_native_output() -> Iterator[None]:
    """Send what native code writes to stdout / stderr to a scratch file for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def build_index(spec: str, item_vectors: np.ndarray) -> Index | None:
    """An index over the catalog for ``spec`` (None for the service's own exact matmul)."""
    if spec == SERVICE_EXACT:
        return None
    vecs = np.ascontiguousarray(item_vectors, dtype=np.float32)
    index = make_index(spec, dim=vecs.shape[1], metric="ip")
    index.add(vecs)
    return index


def build_serving_model(
    rec: Recommender,
    knobs: ServingKnobs,
    version: str,
    *,
    index: Index | None = None,
    runner: Runner | None = None,
    history_len: int = 50,
) -> ServingModel:
    """The model the service runs for ``knobs``. Eager + exact is the serving package's own
    ``NetServingModel``, exactly what ``turborec serve`` builds from a plain artifact."""
    base = serving_model_from_recommender(rec, version, history_len)
    if knobs.backend == "torch-eager" and knobs.index == SERVICE_EXACT:
        return base
    if runner is None:
        runner = user_tower_runner(rec, knobs.backend, base.history_len)
    if index is None and knobs.index != SERVICE_EXACT:
        index = build_index(knobs.index, base._item_vecs.numpy())
    return AcceleratedServingModel(base, runner, index, version)


__all__ = [
    "AcceleratedServingModel",
    "UserTowerPart",
    "build_index",
    "build_serving_model",
    "reduced_search_params",
    "user_tower_runner",
]
