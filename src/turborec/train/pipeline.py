"""Two-stage recommendation: retrieve N candidates, rank them with a CTR ranker, filter, cut to K.

The ranker is trained *on the validation part* (stacking): for each user, the
retriever's top-N candidates (training items excluded) are labelled 1 when they
are in the user's validation items and 0 otherwise, so it learns to re-order what
the retriever actually returns. Features are computed from (user, recent history,
candidates) only, so the same code serves live users whose history changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from turborec._util.artifact import WEIGHTS, load_artifact, save_artifact
from turborec.data.ctr import CTRData
from turborec.data.interactions import Interactions
from turborec.errors import ArtifactError, ConfigError, DataError
from turborec.metrics.ranking import evaluate_ranking, top_k_from_scores
from turborec.models.embeddings import EmbeddingPlan
from turborec.models.rankers import RankerNet, build_ranker
from turborec.train._features import blend, cooc_features, cooccurrence, neighbour_table
from turborec.train.ctr import CTRTrainConfig, fit_ranker
from turborec.train.history import pad_lists
from turborec.train.recommender import DEFAULT_UNKNOWN, LoadHooks, Recommender, fill_unknown, known_rows, load
from turborec.train.validate import check_csr, check_declared_sizes, check_length

DENSE_FEATURES = (
    "retrieval_score",
    "log_rank",
    "log_item_pop",
    "log_history_len",
    "cooc_score",
    "cooc_max",
    "sim_max",
    "sim_mean",
)


@dataclass(frozen=True)
class PipelineConfig:
    # NDCG@10 on ml-latest-small is flat from N = 20 to 500 (benchmarks/pipeline.py); re-ranking cost grows
    # with N, so the default keeps a margin above the flat start at a third of the cost of N = 200
    n_candidates: int = 100
    ranker: str = "dlrm"  # best validation AUC of logreg / dlrm / dcnv2 on ml-latest-small (benchmarks/pipeline.py)
    ranker_config: Mapping[str, Any] = field(default_factory=dict)
    item_dim: int = 8
    cooc_neighbors: int = 100  # item-item co-occurrence kept per item (0 disables the feature)
    ranker_epochs: int = 20
    ranker_lr: float = 2e-3
    seed: int = 0
    # weights of the ranker in the final score, (1 - w) going to the retrieval score, both z-scored per user;
    # the one with the best NDCG@10 on the validation users held out from ranker training is kept, so a
    # ranker that cannot improve on the retriever's order falls back to it (w = 0)
    blend_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

    def __post_init__(self) -> None:
        if self.n_candidates <= 0:
            raise ConfigError(f"n_candidates must be positive, got {self.n_candidates}")
        if not self.blend_weights or any(not 0.0 <= w <= 1.0 for w in self.blend_weights):
            raise ConfigError(f"blend_weights must be non-empty weights in [0, 1], got {self.blend_weights}")


class TwoStagePipeline:
    """Retriever (any fitted :class:`Recommender`) -> ranker -> filters -> top-K."""

    def __init__(self, retriever: Recommender, config: PipelineConfig | None = None, **overrides: Any):
        cfg = config or PipelineConfig()
        self.config = PipelineConfig(**{**asdict(cfg), **overrides})
        self.retriever = retriever
        self.ranker: RankerNet | None = None
        self.cooc: sp.csr_matrix | None = None
        self.item_pop: np.ndarray | None = None
        self.metrics: dict[str, Any] = {}
        self.ranker_weight = 1.0  # fitted: the blend weight chosen on held-out validation users

    name = "pipeline"

    @property
    def ranker_earns_stage(self) -> bool:
        """False when the blend chosen on held-out validation users gives the ranker weight 0: the
        pipeline then ranks exactly as its retriever does, at the cost of a second stage."""
        return self.ranker_weight > 0.0

    @property
    def users(self) -> Any:
        return self.retriever.users

    @property
    def items(self) -> Any:
        return self.retriever.items

    @property
    def item_features(self) -> Any:
        return self.retriever.item_features

    # ----------------------------------------------------------------- features
    def _candidates(self, users: np.ndarray, history: np.ndarray, n: int, exclude: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        scores = self.retriever.score_users(users, history)
        for r, ex in enumerate(exclude):
            if len(ex):
                scores[r, ex] = -np.inf
        top = top_k_from_scores(scores, n)
        return top, np.take_along_axis(scores, top, axis=1)

    def features(self, users: np.ndarray, history: np.ndarray, cands: np.ndarray, cand_scores: np.ndarray) -> CTRData:
        """Rows for every (user, candidate): dense signals + sparse ids. ``history`` [B, L] -1 padded."""
        assert self.item_pop is not None
        dense, sparse = self.feature_arrays(users, history, cands, cand_scores)
        return CTRData(
            dense=dense,
            sparse=sparse,
            label=None,
            cardinalities=(len(self.item_pop) + 1, 17, 17),
            dense_names=DENSE_FEATURES,
            sparse_names=("item", "item_pop_bucket", "history_len_bucket"),
        )

    def feature_arrays(
        self, users: np.ndarray, history: np.ndarray, cands: np.ndarray, cand_scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`features` as bare arrays (dense float32 [B*C, 8], sparse int64 [B*C, 3]), unvalidated: the
        ranker's input as a service builds it per batch (ids it made itself need no range check)."""
        assert self.item_pop is not None
        b, c = cands.shape
        item_vecs = self._item_unit()
        hist_mask = history >= 0
        hist_len = hist_mask.sum(1)
        # similarity of each candidate to each history item, in the retriever's item space
        hv = item_vecs[np.maximum(history, 0)] * hist_mask[..., None]  # [B, L, d]
        cv = item_vecs[cands]  # [B, C, d]
        # [B, L, C]: one BLAS call, 0 at padded history positions; reducing over L (not the innermost axis)
        # is an elementwise max/sum of C-long rows, several times faster than a reduction along the last axis
        sims = np.matmul(hv, cv.transpose(0, 2, 1))
        padded = np.where(hist_mask, np.float32(0), np.float32(-np.inf))
        sim_max = np.where(hist_len[:, None] > 0, (sims + padded[:, :, None]).max(1), 0.0)
        sim_mean = sims.sum(1) / np.maximum(hist_len[:, None], 1)
        cooc_sum, cooc_max = cooc_features(self._cooc_table(), history, hist_mask, cands)
        rank = np.broadcast_to(np.log1p(np.arange(c, dtype=np.float32)), (b, c))
        finite = np.where(np.isfinite(cand_scores), cand_scores, 0.0)
        dense = np.stack(
            [
                finite,
                rank,
                np.log1p(self.item_pop[cands]),
                np.broadcast_to(np.log1p(hist_len)[:, None], (b, c)),
                np.log1p(cooc_sum),
                cooc_max,
                sim_max,
                sim_mean,
            ],
            axis=-1,
        ).astype(np.float32)
        pop_bucket = np.minimum(np.log2(1 + self.item_pop[cands]).astype(np.int64), 15) + 1
        len_bucket = np.broadcast_to(np.minimum(np.log2(1 + hist_len).astype(np.int64), 15)[:, None] + 1, (b, c))
        sparse = np.stack([cands + 1, pop_bucket, len_bucket], axis=-1).astype(np.int64)
        return dense.reshape(b * c, -1), sparse.reshape(b * c, -1)

    def _cooc_table(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.cooc is None:
            return None
        table = self.__dict__.get("_cooc_rows")
        if table is None or table[0] is not self.cooc:
            table = (self.cooc, neighbour_table(self.cooc))
            self.__dict__["_cooc_rows"] = table
        return table[1]

    def _item_unit(self) -> np.ndarray:
        vecs = self.__dict__.get("_unit")
        if vecs is None:
            v = self.retriever._similarity_vectors()
            vecs = (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)
            self.__dict__["_unit"] = vecs
        return vecs

    # ------------------------------------------------------------------ fitting
    def fit(self, train: Interactions, valid: Interactions) -> TwoStagePipeline:
        """Fit the retriever on ``train`` if it is not fitted, then the ranker on ``valid``."""
        if self.retriever.net is None:
            self.retriever.fit(train, valid)
        if len(valid) == 0:
            raise DataError("the ranker is trained on the validation part, which is empty")
        cfg = self.config
        x = train.to_csr()
        self.item_pop = np.asarray((x > 0).sum(0)).ravel().astype(np.float32)
        self.cooc = cooccurrence(x, cfg.cooc_neighbors) if cfg.cooc_neighbors > 0 else None
        valid_csr = valid.to_csr()
        users = np.flatnonzero(np.diff(valid_csr.indptr) > 0)
        rng = np.random.default_rng(cfg.seed)
        rng.shuffle(users)
        cut = max(1, int(0.85 * len(users)))
        labelled = [self._labelled(u, valid_csr) for u in (users[:cut], users[cut:])]
        parts = [data for data, _ in labelled]
        cards = parts[0].cardinalities
        self.ranker = build_ranker(
            cfg.ranker, dict(cfg.ranker_config), cardinalities=cards, n_dense=len(DENSE_FEATURES),
            embeddings=EmbeddingPlan(),
        )
        tcfg = CTRTrainConfig(epochs=cfg.ranker_epochs, lr=cfg.ranker_lr, batch_size=1024, seed=cfg.seed,
                              progress=False, patience=3)
        result = fit_ranker(self.ranker, parts[0], parts[1] if len(parts[1]) else None, tcfg)
        self.metrics["ranker_valid_auc"] = result.best_valid_auc
        if cut < len(users):
            self._chooseblend(parts[1], labelled[1][1], np.diff(valid_csr.indptr)[users[cut:]])
        return self

    @torch.no_grad()
    def _chooseblend(self, held_out: CTRData, scores: np.ndarray, n_positives: np.ndarray) -> None:
        """Pick ``ranker_weight`` from ``config.blend_weights`` by NDCG@10 of the held-out users' validation
        items (items outside the candidates count as missed); ties go to the smaller weight.

        ``held_out``: their labelled candidate rows (as ``_labelled`` built them), ``scores`` [U, C] the
        candidates' retrieval scores, ``n_positives`` [U] each user's validation item count."""
        assert self.ranker is not None and held_out.label is not None
        raw = self.ranker(torch.from_numpy(held_out.dense), torch.from_numpy(held_out.sparse)).float().numpy()
        logits = blend(scores, raw.reshape(scores.shape), 1.0)  # the ranker alone, as rank_candidates scores it
        labels = held_out.label.reshape(scores.shape).astype(np.float64)
        k = min(10, scores.shape[1])
        discount = 1.0 / np.log2(np.arange(2, k + 2))
        ideal = np.cumsum(discount)[np.minimum(n_positives, k) - 1]
        best = (-1.0, 0.0)
        for w in sorted(self.config.blend_weights):
            order = np.argsort(-blend(scores, logits, w), axis=1, kind="stable")[:, :k]
            ndcg = float((np.take_along_axis(labels, order, axis=1) @ discount / ideal).mean())
            self.metrics[f"blend_ndcg@10_w{w:g}"] = ndcg
            if ndcg > best[0] + 1e-12:
                best = (ndcg, w)
        self.ranker_weight = best[1]
        self.metrics["ranker_weight"] = best[1]
        self.metrics["ranker_earns_stage"] = self.ranker_earns_stage

    def _labelled(self, users: np.ndarray, positives: sp.csr_matrix) -> tuple[CTRData, np.ndarray]:
        """The users' retrieved candidates as labelled ranker rows, and their retrieval scores [U, C]."""
        hist = self.retriever.user_histories(users)
        assert self.retriever.histories is not None
        exclude = [self.retriever.histories.of(int(u)) for u in users]
        cands, scores = self._candidates(users, hist, self.config.n_candidates, exclude)
        data = self.features(users, hist, cands, scores)
        sub = positives[users]
        rows = np.repeat(np.arange(len(users)), cands.shape[1])
        label = (np.asarray(sub[rows, cands.ravel()]).ravel() != 0).astype(np.float32)
        return CTRData(data.dense, data.sparse, label, data.cardinalities, data.dense_names, data.sparse_names), scores

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def rank(self, users: np.ndarray, history: np.ndarray, exclude: list[np.ndarray], n_candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Candidates re-ordered by the ranker: (item indices [B, N], ranker logits [B, N])."""
        if self.ranker is None:
            raise ConfigError("pipeline is not fitted")
        n = n_candidates or self.config.n_candidates
        cands, scores = self._candidates(users, history, n, exclude)
        logits = self.rank_candidates(users, history, cands, scores)
        order = np.argsort(-logits, axis=1, kind="stable")
        return np.take_along_axis(cands, order, axis=1), np.take_along_axis(logits, order, axis=1)

    @torch.no_grad()
    def rank_candidates(self, users: np.ndarray, history: np.ndarray, cands: np.ndarray, cand_scores: np.ndarray,
                        ranker: torch.nn.Module | None = None) -> np.ndarray:
        """Ranker logits [B, C] for retrieved candidates; -inf where the retrieval score is not finite.

        ``cands`` [B, C] item indices ordered by retrieval score (best first, as :meth:`rank` retrieves
        them), ``cand_scores`` their retrieval scores, ``history`` [B, L] -1 padded. The batched
        re-ranking step on its own, so a server that retrieves by itself ranks exactly as the pipeline
        does. ``ranker``: another net over the same features (a compressed copy); default the fitted one.
        """
        net = ranker if ranker is not None else self.ranker
        if net is None:
            raise ConfigError("pipeline is not fitted")
        if self.item_pop is None:
            raise ConfigError("pipeline is not fitted")
        dense, sparse = self.feature_arrays(users, history, cands, cand_scores)
        logits = net(torch.from_numpy(dense), torch.from_numpy(sparse)).float().numpy()
        logits = logits.reshape(cands.shape)
        return blend(cand_scores, logits, self.ranker_weight)

    def recommend(self, user_ids: Sequence[Any] | Any, N: int = 10, filter_already_liked_items: bool = True,
                  n_candidates: int | None = None, *, unknown: str = DEFAULT_UNKNOWN,
                  exclude: Sequence[Sequence[Any]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-N external ids and ranker scores for external user ids (one id or a batch).

        ``unknown`` and ``exclude`` as in :meth:`Recommender.recommend` (unknown users get the most
        popular training items under the default rule).
        """
        r = self.retriever
        assert r.users is not None and r.items is not None and r.histories is not None
        if N <= 0:
            raise ConfigError(f"N must be a positive integer, got {N}")
        single = np.isscalar(user_ids) or isinstance(user_ids, str)
        ids = [user_ids] if single else list(user_ids)  # type: ignore[arg-type]
        idx, rows_ex = known_rows(r.users, r.items, ids, unknown, exclude, np.zeros(0, dtype=np.int64))
        histories = r.histories

        def known(users: np.ndarray, ex: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            seen = [np.union1d(histories.of(int(u)), e) for u, e in zip(users, ex)] if filter_already_liked_items else ex
            items, scores = self.rank(users, r.user_histories(users), seen, n_candidates)
            return items[:, :N], scores[:, :N]

        top, sc = fill_unknown(idx, rows_ex, known, r.popular_items, N)
        out = r.items.decode(top)
        if single:
            return (out.reshape(-1)[:0], sc.reshape(-1)[:0]) if len(idx) == 0 else (out[0], sc[0])
        return out, sc

    def recommend_for_history(self, histories: Sequence[Sequence[Any]], N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        r = self.retriever
        assert r.items is not None
        lists = [r.items.encode(list(h), unknown="minus1") for h in histories]
        lists = [x[x >= 0] for x in lists]
        hist = pad_lists(lists, r.history_len)
        items, scores = self.rank(np.full(len(lists), -1), hist, lists)
        return r.items.decode(items[:, :N]), scores[:, :N]

    def evaluate(self, test: Interactions, exclude: Sequence[Interactions] = (), ks: Sequence[int] = (10,),
                 n_candidates: int | None = None) -> dict[str, float]:
        """Full-ranking metrics: items outside the top-N candidates rank below every candidate."""
        r = self.retriever
        assert r.histories is not None and r.users is not None and r.items is not None

        def ours(part: Interactions) -> Interactions:  # files read on their own have their own vocabularies
            same = part.users == r.users and part.items == r.items
            return part if same else part.with_vocabularies(r.users, r.items)  # type: ignore[arg-type]

        test = ours(test)
        mask = r.histories.to_csr()
        for part in exclude:
            mask = mask + ours(part).to_csr()
        mask = mask.tocsr()
        n_items = mask.shape[1]

        def score_fn(users: np.ndarray) -> np.ndarray:
            hist = r.user_histories(users)
            ex = [mask.indices[mask.indptr[u] : mask.indptr[u + 1]] for u in users]
            items, logits = self.rank(users, hist, ex, n_candidates)
            out = np.full((len(users), n_items), -1e30, dtype=np.float32)
            ranks = np.broadcast_to(-np.arange(items.shape[1], dtype=np.float32), items.shape)
            np.put_along_axis(out, items, np.where(np.isfinite(logits), ranks, -1e30), axis=1)
            return out

        rep = evaluate_ranking(score_fn, test.to_csr(), exclude=mask, ks=ks, chunk_size=256)
        return {**rep.metrics, "n_users": float(rep.n_users)}

    # -------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        if self.ranker is None or (self.cooc is None and self.config.cooc_neighbors > 0):
            raise ConfigError("pipeline is not fitted")
        assert self.item_pop is not None
        ranker = self.ranker

        def write_retriever(tmp: Path) -> None:
            self.retriever.save(tmp / "retriever")

        tensors: dict[str, Any] = {f"ranker.{k}": v.detach().cpu() for k, v in ranker.state_dict().items()}
        tensors["item_pop"] = torch.from_numpy(self.item_pop)
        if self.cooc is not None:
            c = self.cooc.tocsr()
            tensors["cooc.indptr"] = torch.from_numpy(c.indptr.astype(np.int64))
            tensors["cooc.indices"] = torch.from_numpy(c.indices.astype(np.int64))
            tensors["cooc.data"] = torch.from_numpy(c.data.astype(np.float32))
        config = {
            "pipeline": {**asdict(self.config), "ranker_config": dict(self.config.ranker_config)},
            "ranker_net": ranker.kind,
            "ranker_net_config": ranker.config.to_dict(),
            "cardinalities": list(ranker.cardinalities),
            "n_dense": ranker.n_dense,
            "ranker_weight": self.ranker_weight,
        }
        return save_artifact(path, kind="pipeline", config=config, tensors=tensors, extra=write_retriever,
                             metrics=self.metrics)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", hooks: LoadHooks | None = None) -> TwoStagePipeline:
        """Rebuild a saved pipeline; ``hooks`` replay a compressed retriever's transforms (``turborec.load``)."""
        art = load_artifact(path, kinds=("pipeline",))
        cfg = art.config
        try:
            retriever = load(art.path / "retriever", device=device, hooks=hooks)
            pipe = cls(retriever, PipelineConfig(**cfg["pipeline"]))
            tensors = art.torch_tensors()
            stored = sum(int(v.numel()) for k, v in tensors.items() if k.startswith("ranker."))
            check_declared_sizes(art.path / "manifest.json", "cardinalities", cfg["cardinalities"], stored)
            pipe.ranker = build_ranker(cfg["ranker_net"], cfg["ranker_net_config"], cardinalities=cfg["cardinalities"],
                                       n_dense=int(cfg["n_dense"]))
            pipe.ranker.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("ranker.")}, strict=True)
            pipe.ranker.eval()
            pipe.ranker_weight = float(cfg.get("ranker_weight", 1.0))  # artifacts before the blend: ranker only
            assert retriever.items is not None
            n = len(retriever.items)
            item_pop = tensors["item_pop"].numpy()
            check_length(art.file(WEIGHTS), "item_pop", item_pop, n)
            pipe.item_pop = item_pop
            if "cooc.indptr" in tensors:
                indptr, indices, data = (tensors[f"cooc.{k}"].numpy() for k in ("indptr", "indices", "data"))
                check_csr(art.file(WEIGHTS), "cooc", indptr, indices, data, (n, n))
                pipe.cooc = sp.csr_matrix((data, indices, indptr), shape=(n, n))
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ArtifactError(f"{path}: cannot rebuild the pipeline ({exc})") from exc
        pipe.metrics = art.metrics
        return pipe


def save_trained(pipe: TwoStagePipeline, path: str | Path, keep_ranker: bool = False) -> tuple[Path, bool]:
    """Save what is worth serving: the pipeline, or its retriever alone (with the pipeline's metrics and
    ``ranker_earns_stage: false`` in the manifest) when the ranker does not earn its stage, so every
    loader, ``turborec serve`` included, serves the cheaper retrieval-only path. Returns (path, pipeline?)."""
    if keep_ranker or pipe.ranker_earns_stage:
        return pipe.save(path), True
    metrics = {**pipe.retriever.metrics, **pipe.metrics, "ranker_earns_stage": False,
               "ranker_dropped": {"ranker": pipe.config.ranker, "reason": "blend weight 0 on held-out validation users"}}
    return pipe.retriever.save(path, metrics=metrics), False
