"""Two-stage retrieve -> rank pipeline: learns to re-rank, round-trips, answers anonymous users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from turborec.data import apply_protocol, synthetic
from turborec.errors import ArtifactError, ConfigError
from turborec.loading import load as load_model
from turborec.train import TwoTowerRecommender, load
from turborec.train.pipeline import TwoStagePipeline


@pytest.fixture(scope="module")
def fitted():  # type: ignore[no-untyped-def]
    split = apply_protocol("recbole", synthetic(n_users=600, n_items=250, n_interactions=18_000, seed=5), seed=2)
    # a short pairs fit: quick and strong enough for the ranker on top (the default objective needs more epochs)
    retriever = TwoTowerRecommender(objective="pairs", epochs=6, progress=False).fit(split.train, split.valid)
    pipe = TwoStagePipeline(retriever, n_candidates=60, ranker="dlrm", ranker_epochs=4).fit(split.train, split.valid)
    return split, pipe


def test_pipeline_ranks_candidates_and_beats_random_order(fitted) -> None:  # type: ignore[no-untyped-def]
    split, pipe = fitted
    m = pipe.evaluate(split.test, exclude=[split.valid], ks=(10,), n_candidates=60)
    retrieval = pipe.retriever.evaluate(split.test, exclude=[split.valid], ks=(10,))["ndcg@10"]
    assert 0.0 < m["ndcg@10"] <= 1.0
    # a ranker that ignored its features would shuffle the candidates; it must stay near or above retrieval
    assert m["ndcg@10"] > 0.8 * retrieval, (m["ndcg@10"], retrieval)
    assert pipe.metrics["ranker_valid_auc"] > 0.6


def test_recommend_filters_seen_and_round_trips(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    split, pipe = fitted
    users = list(split.train.users.ids[:8])
    ids, scores = pipe.recommend(users, N=10)
    assert ids.shape == (8, 10) and np.all(np.diff(scores, axis=1) <= 1e-6)
    for u, row in zip(users, ids):
        seen = set(split.train.items.decode(pipe.retriever.histories.of(split.train.users.index(u))).tolist())
        assert not seen & set(row.tolist())
    path = pipe.save(tmp_path / "pipe")
    again = load_model(path)
    assert isinstance(again, TwoStagePipeline)
    ids2, scores2 = again.recommend(users, N=10)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(scores, scores2, rtol=1e-5)
    with pytest.raises(ArtifactError):
        load(path)  # a pipeline is not a plain retrieval artifact
    single, _ = again.recommend(users[0], N=3)
    assert single.tolist() == ids[0][:3].tolist()


def test_anonymous_history_and_errors(fitted) -> None:  # type: ignore[no-untyped-def]
    split, pipe = fitted
    items = list(split.train.items.ids)
    a, _ = pipe.recommend_for_history([items[:4], items[50:54]], N=5)
    assert a.shape == (2, 5) and not set(items[:4]) & set(a[0].tolist())
    with pytest.raises(ConfigError):
        pipe.recommend(list(split.train.users.ids[:1]), N=0)
    with pytest.raises(ConfigError):
        TwoStagePipeline(pipe.retriever, n_candidates=0)


def test_blend_weight_is_chosen_on_held_out_users_and_round_trips(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    split, pipe = fitted
    weights = [k for k in pipe.metrics if k.startswith("blend_ndcg@10_w")]
    assert len(weights) == len(pipe.config.blend_weights)
    best = max(pipe.metrics[k] for k in weights)
    assert pipe.metrics[f"blend_ndcg@10_w{pipe.ranker_weight:g}"] == best
    loaded = load_model(pipe.save(tmp_path / "p"))
    assert isinstance(loaded, TwoStagePipeline) and loaded.ranker_weight == pipe.ranker_weight
    users = list(split.train.users.ids[:5])
    assert (pipe.recommend(users, N=10)[0] == loaded.recommend(users, N=10)[0]).all()


def test_weight_zero_keeps_the_retrieval_order(fitted) -> None:  # type: ignore[no-untyped-def]
    _split, pipe = fitted
    users = np.arange(20)
    hist = pipe.retriever.user_histories(users)
    exclude = [pipe.retriever.histories.of(int(u)) for u in users]
    cands, scores = pipe._candidates(users, hist, 40, exclude)
    saved = pipe.ranker_weight
    try:
        pipe.ranker_weight = 0.0
        blended = pipe.rank_candidates(users, hist, cands, scores)
        pipe.ranker_weight = 1.0
        raw = pipe.rank_candidates(users, hist, cands, scores)
    finally:
        pipe.ranker_weight = saved
    finite = np.isfinite(scores)
    assert (np.isfinite(blended) == finite).all()
    for b, s, f in zip(blended, scores, finite):  # same order as the retrieval scores
        assert (np.argsort(-b[f], kind="stable") == np.argsort(-s[f], kind="stable")).all()
    assert not np.allclose(raw[finite], blended[finite])  # weight 1 is the ranker's own logits


def test_a_ranker_without_weight_is_saved_as_its_retriever(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from turborec._util.artifact import load_artifact
    from turborec.train.pipeline import save_trained

    split, pipe = fitted
    saved = pipe.ranker_weight
    try:
        pipe.ranker_weight = 0.0
        path, staged = save_trained(pipe, tmp_path / "dropped")
        assert not staged and not pipe.ranker_earns_stage
        loaded = load_model(path)
        assert not isinstance(loaded, TwoStagePipeline)  # loading (and so serving) yields the retriever alone
        users = list(split.train.users.ids[:5])
        assert (loaded.recommend(users, N=10)[0] == pipe.retriever.recommend(users, N=10)[0]).all()
        art = load_artifact(path)
        assert art.kind == "retrieval" and art.metrics["ranker_earns_stage"] is False
        assert art.metrics["ranker_dropped"]["ranker"] == "dlrm"
        kept, staged = save_trained(pipe, tmp_path / "kept", keep_ranker=True)
        assert staged and isinstance(load_model(kept), TwoStagePipeline)
    finally:
        pipe.ranker_weight = saved
    pipe.ranker_weight = max(saved, 0.25)
    try:
        assert save_trained(pipe, tmp_path / "staged")[1]
    finally:
        pipe.ranker_weight = saved
