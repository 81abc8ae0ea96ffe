"""A saved two-stage pipeline served over HTTP answers what ``TwoStagePipeline.recommend`` answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from turborec.data.interactions import Interactions
from turborec.data.splits import random_split
from turborec.serving.loading import load_serving_model
from turborec.serving.model import Query
from turborec.serving.net_model import NetServingModel
from turborec.serving.pipeline_model import PipelineRanker
from turborec.serving.server import background_server, build_service
from turborec.serving.settings import ServeSettings
from turborec.serving.tiers import Tier
from turborec.train import TwoStagePipeline, TwoTowerRecommender


@pytest.fixture(scope="module")
def pipeline(interactions: Interactions) -> TwoStagePipeline:
    split = random_split(interactions, seed=0)
    retriever = TwoTowerRecommender(dim=16, hidden=(32,), history_len=20, epochs=2, batch_size=512, seed=0,
                                    progress=False).fit(split.train)
    pipe = TwoStagePipeline(retriever, n_candidates=40, ranker_epochs=2, cooc_neighbors=20, seed=0).fit(
        split.train, split.valid)
    # the ranker alone orders the candidates (a fit on this tiny data may blend it away), so the ranker tiers
    # differ from retrieval order; serving honours whatever weight the artifact holds
    pipe.ranker_weight = 1.0
    return pipe


@pytest.fixture(scope="module")
def pipeline_artifact(pipeline: TwoStagePipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pipeline.save(tmp_path_factory.mktemp("pipe") / "pipeline")


def assert_same_ranking(items: list[str], scores: np.ndarray, want_items: np.ndarray, want_scores: np.ndarray) -> None:
    """Same scores in the same order; item for item, except inside runs of (near-)tied scores."""
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)
    want = [str(i) for i in want_items]
    for pos, (got, exp) in enumerate(zip(items, want, strict=True)):
        if got != exp:
            tied = np.abs(np.asarray(want_scores) - want_scores[pos]) <= 1e-4
            assert got in {want[j] for j in np.flatnonzero(tied)}, (pos, items, want)


def test_the_pipeline_artifact_serves_the_whole_ladder(pipeline_artifact: Path) -> None:
    model = load_serving_model(pipeline_artifact)
    assert isinstance(model, NetServingModel)
    assert model.tiers == tuple(Tier)
    assert model.version.startswith("pipeline-")
    # the user tower and the ranker run as frozen traces (checked against eager; the HTTP test below
    # compares the served answers with TwoStagePipeline.recommend)
    assert isinstance(model.user_tower, torch.jit.ScriptModule)
    assert isinstance(model._ranker, PipelineRanker) and isinstance(model._ranker.net, torch.jit.ScriptModule)


def test_over_http_known_and_anonymous_users_get_the_pipelines_top_k(
    pipeline: TwoStagePipeline, pipeline_artifact: Path
) -> None:
    assert pipeline.users is not None and pipeline.items is not None
    users = list(pipeline.users.ids[:8])
    want_items, want_scores = pipeline.recommend(users, N=10)
    history = [pipeline.items.ids[i] for i in (3, 17, 42, 99)]
    anon_items, anon_scores = pipeline.recommend_for_history([history], N=10)
    service = build_service(ServeSettings(artifact=pipeline_artifact, slo_p99_ms=5000.0, adaptive_tiers=False))
    with background_server(service) as srv, httpx.Client(base_url=srv.url, timeout=20) as c:
        for b, user in enumerate(users):
            body = c.post("/v1/recommend", json={"user": str(user), "k": 10}).json()
            assert body["tier"] == "full" and body["user_known"]
            got = [it["item"] for it in body["items"]]
            assert_same_ranking(got, np.array([it["score"] for it in body["items"]]), want_items[b], want_scores[b])
        body = c.post("/v1/recommend", json={"recent_items": [str(i) for i in history], "k": 10}).json()
        assert not body["user_known"]
        got = [it["item"] for it in body["items"]]
        assert_same_ranking(got, np.array([it["score"] for it in body["items"]]), anon_items[0], anon_scores[0])


def test_an_event_changes_the_next_response(pipeline: TwoStagePipeline, pipeline_artifact: Path) -> None:
    assert pipeline.users is not None and pipeline.items is not None
    user = str(pipeline.users.ids[2])
    service = build_service(ServeSettings(artifact=pipeline_artifact, slo_p99_ms=5000.0, adaptive_tiers=False))
    with background_server(service) as srv, httpx.Client(base_url=srv.url, timeout=20) as c:
        before = c.post("/v1/recommend", json={"user": user, "k": 10}).json()["items"]
        clicked = [it["item"] for it in before[:3]]  # the user clicks the top three
        for item in clicked:
            assert c.post("/v1/events", json={"user": user, "item": item, "kind": "click"}).json()["known_item"]
        after = c.post("/v1/recommend", json={"user": user, "k": 10}).json()["items"]
    after_ids = [it["item"] for it in after]
    assert not set(clicked) & set(after_ids)  # seen now, so excluded
    assert after_ids != [it["item"] for it in before[3:13]]  # and the history features re-ranked the rest


def test_tiers_degrade_to_cheaper_answers(pipeline: TwoStagePipeline, pipeline_artifact: Path) -> None:
    assert pipeline.users is not None
    model = load_serving_model(pipeline_artifact)
    queries = [Query(str(u), (), k=10) for u in pipeline.users.ids[:16]]
    answers = {tier: model.recommend_batch(queries, tier) for tier in model.tiers}
    for tier, out in answers.items():
        assert len(out.results) == 16 and all(len(r.items) == 10 for r in out.results), tier
    full = [r.items for r in answers[Tier.FULL].results]
    assert [r.items for r in answers[Tier.FEWER_CANDIDATES].results] != full
    assert [r.items for r in answers[Tier.CHEAP_RANKER].results] != full
    # retrieval only: the retriever's own order (scores descending), no ranker
    for r in answers[Tier.RETRIEVAL_ONLY].results:
        assert np.all(np.diff(r.scores) <= 1e-6)
    popular = answers[Tier.POPULAR].results
    assert popular[0].items != full[0] and "ranking" in answers[Tier.POPULAR].timings
    # and the service answers from the tier the controller holds
    service = build_service(ServeSettings(artifact=pipeline_artifact, slo_p99_ms=5000.0))
    service.slo.force(0.0, Tier.RETRIEVAL_ONLY)

    async def one() -> str:
        try:
            return (await service.recommend(str(pipeline.users.ids[0]))).tier.label  # type: ignore[union-attr]
        finally:
            await service.stop()

    assert asyncio.run(one()) == "retrieval-only"


def test_batched_cooccurrence_features_equal_the_sparse_definition(pipeline: TwoStagePipeline) -> None:
    """The served (batched) co-occurrence features are, bit for bit, the per-user sparse sums and maxima."""
    retriever = pipeline.retriever
    assert pipeline.cooc is not None and retriever.histories is not None
    users = np.arange(24)
    history = retriever.user_histories(users)
    history[3] = -1  # a user with no history
    history[5, 2:] = -1  # and one with two items
    exclude = [retriever.histories.of(int(u)) for u in users]
    cands, scores = pipeline._candidates(users, history, 40, exclude)
    dense = pipeline.features(users, history, cands, scores).dense.reshape(24, 40, -1)
    for r in range(24):
        h = history[r][history[r] >= 0]
        block = pipeline.cooc[h][:, cands[r]].toarray() if len(h) else np.zeros((1, 40), np.float32)
        np.testing.assert_array_equal(dense[r, :, 4], np.log1p(block.sum(0)))
        np.testing.assert_array_equal(dense[r, :, 5], block.max(0))
    assert dense[..., 4].max() > 0  # the feature is not trivially zero here
