"""What the server computes per session for the device: candidates, their int8 embeddings, server vectors.

:class:`SessionFactory` quantizes the two-tower's item tables once (row-wise int8 is per row, so a
session's slice of the quantized table equals quantizing the slice) and then builds a session for any
user and pre-session history in well under a millisecond of numpy slicing plus one user-tower call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from turborec.edge.bundle import EdgeBundle
from turborec.errors import ConfigError
from turborec.metrics.ranking import top_k_from_scores
from turborec.models.compact_quant import quantize_rows
from turborec.models.two_tower import TwoTowerNet
from turborec.train.recommender import Recommender


@dataclass(frozen=True)
class EdgeModels:
    """The exported on-device models (ONNX bytes) and what the runtime needs to know about them."""

    user_model: bytes
    reranker: bytes
    model_version: str
    config: dict[str, Any]


@dataclass(frozen=True)
class _Int8Table:
    q: np.ndarray
    scale: np.ndarray
    bias: np.ndarray

    @classmethod
    def of(cls, weight: torch.Tensor) -> _Int8Table:
        q, scale, bias = quantize_rows(weight.detach().float().cpu(), 8)
        return cls(q.numpy(), scale.numpy(), bias.numpy())

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.q[rows], self.scale[rows], self.bias[rows]

    def dequantized(self, rows: np.ndarray) -> np.ndarray:
        q, s, b = self.take(rows)
        return q.astype(np.float32) * s[:, None] + b[:, None]


def two_tower_net(rec: Recommender) -> TwoTowerNet:
    """The fitted two-tower network of ``rec``, or a ConfigError saying edge export needs one."""
    net = rec.fitted_net
    if not isinstance(net, TwoTowerNet):
        raise ConfigError(
            f"edge export needs a two-tower model (its user tower runs on the device); got '{rec.name}'"
        )
    return net


class SessionFactory:
    """Builds per-session bundles from a fitted two-tower recommender and exported models."""

    def __init__(self, rec: Recommender, models: EdgeModels, n_candidates: int = 500) -> None:
        if n_candidates <= 0:
            raise ConfigError(f"n_candidates must be positive, got {n_candidates}")
        self.rec = rec
        self.net = two_tower_net(rec)
        self.models = models
        self.n_candidates = int(n_candidates)
        self.history_len = int(self.net.config.history_len)
        with torch.no_grad():
            self.item_vecs = rec.item_vectors()  # float: what the server scores with
            all_items = torch.arange(self.net.n_items)
            self.items_int8 = _Int8Table.of(torch.from_numpy(self.item_vecs))
            self.inputs_int8 = _Int8Table.of(self.net.user_tower.item_emb(all_items))
        assert rec.histories is not None
        counts = np.bincount(rec.histories.items, minlength=self.net.n_items).astype(np.float32)
        self.prior = (np.log1p(counts) / max(float(np.log1p(counts.max(initial=0.0))), 1e-6)).astype(np.float32)

    # ------------------------------------------------------------- server side
    @torch.no_grad()
    def server_lists(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Server user vectors [B, d] and top-C candidate item indices [B, C] (history items excluded)."""
        users = np.asarray(users, dtype=np.int64)
        padded = np.full((len(users), self.history_len), -1, dtype=np.int64)
        for r, h in enumerate(histories):
            tail = np.asarray(h, dtype=np.int64)[-self.history_len :]
            padded[r, : len(tail)] = tail
        vecs = self.rec.user_vectors(users, padded)
        scores = vecs @ self.item_vecs.T
        for r, h in enumerate(histories):
            scores[r, np.asarray(h, dtype=np.int64)] = -np.inf
        return vecs.astype(np.float32), top_k_from_scores(scores, self.n_candidates)

    @torch.no_grad()
    def user_part(self, user: int) -> np.ndarray:
        emb = self.net.user_tower.user_emb
        if emb is None or user < 0:
            return np.zeros(self.net.config.dim, dtype=np.float32)
        return emb(torch.tensor([int(user)])).float().numpy()[0]

    # --------------------------------------------------------------- sessions
    def session(
        self,
        user: int,
        history: np.ndarray,
        server_vec: np.ndarray | None = None,
        candidates: np.ndarray | None = None,
    ) -> EdgeBundle:
        """The bundle for ``user`` (index, -1 anonymous) whose pre-session history is ``history`` (item
        indices, oldest first). Server vector and candidates are computed unless given."""
        history = np.asarray(history, dtype=np.int64)
        if server_vec is None or candidates is None:  # every item the user has seen is left out, not only the recent
            vecs, cands = self.server_lists(np.array([user]), [history])
            server_vec, candidates = vecs[0], cands[0]
        history = history[-self.history_len :]  # what the user model reads
        candidates = np.asarray(candidates, dtype=np.int64)
        input_rows = np.concatenate([candidates, history])
        iq, iscale, ibias = self.inputs_int8.take(input_rows)
        cq, cscale, cbias = self.items_int8.take(candidates)
        tensors = {
            "item_q": cq, "item_scale": cscale, "item_bias": cbias, "prior": self.prior[candidates],
            "input_q": iq, "input_scale": iscale, "input_bias": ibias,
            "server_vec": np.asarray(server_vec, dtype=np.float32), "user_part": self.user_part(user),
        }  # fmt: skip
        items = self.rec.items
        assert items is not None
        features = self.rec.item_features
        titles = genres = None
        if features is not None:
            if features.titles is not None:
                titles = tuple(features.titles[i] for i in candidates.tolist())
            names = features.vocab.ids
            genres = tuple(
                "|".join(str(names[t]) for t in features.values[features.offsets[i] : features.offsets[i + 1]])
                for i in candidates.tolist()
            )
        user_id = self.rec.users.ids[user] if user >= 0 and self.rec.users is not None else None
        return EdgeBundle(
            model_version=self.models.model_version,
            config={**self.models.config, "n_candidates": len(candidates), "n_history": len(history)},
            user_model=self.models.user_model,
            reranker=self.models.reranker,
            item_ids=tuple(items.ids[i] for i in candidates.tolist()),
            history_ids=tuple(items.ids[i] for i in history.tolist()),
            tensors=tensors,
            user_id=user_id,
            titles=titles,
            genres=genres,
        )
