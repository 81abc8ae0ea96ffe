"""Serving a two-stage pipeline (retrieve N -> rank with the CTR ranker -> filter -> top-k).

The retriever runs as in any :class:`~turborec.serving.net_model.NetServingModel`
(item vectors precomputed, one user-tower call and one matmul per batch); the
re-ranking step is the pipeline's own :meth:`TwoStagePipeline.rank_candidates`
(the same features -- retrieval score, rank, popularity, history length, item
co-occurrence, similarity to the history -- and the same ranker), batched over
the whole micro-batch. So a served pipeline answers what ``TwoStagePipeline.recommend``
answers, live events included in the history.

The ladder, cheapest last:

- ``FULL``: the pipeline's ``n_candidates`` over the whole catalog, ranked;
- ``FEWER_CANDIDATES``: a quarter of them, retrieved from the popular pool, ranked;
- ``CHEAP_RANKER``: a tenth of them, ranked (an int8-dynamic copy of these small
  MLPs was measured slower than fp32 on CPU, so the cheap ranker is the same net on
  fewer rows; pass ``cheap_net`` to use a student or quantized copy instead);
- ``RETRIEVAL_ONLY``: retrieval scores on the pool; ``POPULAR``: no model call.
"""

from __future__ import annotations

import numpy as np
import torch

from turborec.backends.tracing import traced_for_inference
from turborec.serving.net_model import NetServingModel, serving_model_from_view, tower_history_len
from turborec.train.pipeline import TwoStagePipeline


class PipelineRanker:
    """A :class:`~turborec.serving.net_model.CandidateRanker` over a fitted pipeline's features and ranker."""

    def __init__(self, pipeline: TwoStagePipeline, net: torch.nn.Module | None = None, rows_at_once: int = 16,
                 trace: bool = True) -> None:
        self.pipeline = pipeline
        self.net = net if net is not None else pipeline.ranker
        if self.net is not None:
            self.net.eval()
            if trace:  # the same logits without the per-module Python (checked on real features, else eager)
                first, *checks = _ranker_examples(pipeline)
                self.net = traced_for_inference(self.net, first, checks)
        self.rows_at_once = rows_at_once

    def __call__(
        self, user_vecs: torch.Tensor, users: torch.Tensor, history: torch.Tensor, candidates: torch.Tensor,
        candidate_scores: torch.Tensor,
    ) -> torch.Tensor:
        u, h, c, s = users.numpy(), history.numpy(), candidates.numpy(), candidate_scores.numpy()
        step = self.rows_at_once
        # a few users at a time: their [rows x candidates x history] intermediates stay in cache (measured
        # ~0.23 ms a user at 16 rows, ~0.43 ms at 64 on one core); per-call overhead is already amortised at 16
        parts = [self.pipeline.rank_candidates(u[i:i + step], h[i:i + step], c[i:i + step], s[i:i + step],
                                               ranker=self.net) for i in range(0, len(u), step)]
        return torch.from_numpy(parts[0] if len(parts) == 1 else np.concatenate(parts))


def _ranker_examples(pipeline: TwoStagePipeline) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ranker's (dense, sparse) inputs as the serving path builds them, for a few users (one anonymous,
    one with an empty history) and candidate counts."""
    view = pipeline.retriever.servable()
    n_users, n_items = len(view.users), len(view.items)
    rng = np.random.default_rng(0)
    out = []
    for size, n_cand in ((3, min(n_items, 20)), (1, min(n_items, 7)), (4, min(n_items, 50))):
        users = rng.integers(0, n_users, size) if n_users else np.full(size, -1)
        users[-1] = -1
        hist = view.recent_items(np.maximum(users, 0))
        hist[-1] = -1
        cands = np.stack([rng.permutation(n_items)[:n_cand] for _ in range(size)]).astype(np.int64)
        scores = np.sort(rng.standard_normal((size, n_cand)).astype(np.float32), axis=1)[:, ::-1].copy()
        dense, sparse = pipeline.feature_arrays(users, hist, cands, scores)
        out.append((torch.from_numpy(dense), torch.from_numpy(sparse)))
    return out


def serving_model_from_pipeline(
    pipeline: TwoStagePipeline,
    version: str,
    *,
    pool_size: int | None = None,
    fewer_candidates: int | None = None,
    cheap_candidates: int | None = None,
    cheap_net: torch.nn.Module | None = None,
) -> NetServingModel:
    """Adapt a fitted pipeline. The history window is the retriever's, which is what the pipeline's features
    read (``TwoStagePipeline.recommend`` pads histories to it), so served features match offline ones."""
    view = pipeline.retriever.servable()
    n = pipeline.config.n_candidates
    ranker = PipelineRanker(pipeline)
    # the retriever's own window (1 for a net that reads no history: the features read what it reads)
    return serving_model_from_view(
        view, version, history_len=tower_history_len(view, default=1), pool_size=pool_size,
        ranker=ranker, cheap_ranker=ranker if cheap_net is None else PipelineRanker(pipeline, cheap_net),
        full_candidates=n,
        pool_candidates=fewer_candidates if fewer_candidates is not None else max(1, n // 4),
        cheap_candidates=cheap_candidates if cheap_candidates is not None else max(1, n // 10),
    )
