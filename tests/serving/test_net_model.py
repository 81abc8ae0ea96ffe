"""NetServingModel over a real trained two-tower, checked against the estimator's own recommend()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from turborec.errors import ArtifactError, UnknownIdError
from turborec.serving.loading import artifact_version, load_serving_model
from turborec.serving.model import Query, ServingModel
from turborec.serving.net_model import NetServingModel, serving_model_from_recommender
from turborec.serving.tiers import Tier
from turborec.train import TwoTowerRecommender


def test_is_a_serving_model(model: NetServingModel) -> None:
    assert isinstance(model, ServingModel)
    assert model.tiers == (Tier.FULL, Tier.FEWER_CANDIDATES, Tier.POPULAR)
    assert model.version.startswith("two-tower-")


def test_known_users_match_the_estimator(model: NetServingModel, recommender: TwoTowerRecommender) -> None:
    users = [str(u) for u in recommender.users.ids[:12]]  # type: ignore[union-attr]
    out = model.recommend_batch([Query(u, (), k=10) for u in users], Tier.FULL)
    ids, scores = recommender.recommend(list(recommender.users.ids[:12]), N=10)  # type: ignore[union-attr]
    for b, ranked in enumerate(out.results):
        assert ranked.user_known
        assert ranked.items == [str(i) for i in ids[b]]
        np.testing.assert_allclose(ranked.scores, scores[b], rtol=1e-5, atol=1e-6)
    assert set(out.timings) == {"features", "retrieval", "ranking"}


def test_anonymous_history_matches_the_estimator(model: NetServingModel, recommender: TwoTowerRecommender) -> None:
    items = recommender.items.ids  # type: ignore[union-attr]
    history = [items[3], items[17], items[42]]
    ranked = model.recommend_batch([Query(None, tuple(map(str, history)), k=8)], Tier.FULL).results[0]
    ids, scores = recommender.recommend_for_history([history], N=8)
    assert not ranked.user_known
    assert ranked.items == [str(i) for i in ids[0]]
    np.testing.assert_allclose(ranked.scores, scores[0], rtol=1e-5, atol=1e-6)


def test_live_history_changes_the_answer(model: NetServingModel) -> None:
    user = "0"
    fresh = tuple(str(i) for i in range(100, 100 + model.history_len))  # a whole window of new events
    before = model.recommend_batch([Query(user, (), k=10)], Tier.FULL).results[0]
    after = model.recommend_batch([Query(user, fresh, k=10)], Tier.FULL).results[0]
    assert before.items != after.items
    assert not set(fresh) & set(after.items)  # seen live items are excluded too


def test_filters(model: NetServingModel, recommender: TwoTowerRecommender) -> None:
    uid = recommender.users.ids[1]  # type: ignore[union-attr]
    seen = {str(recommender.items.ids[i]) for i in recommender.histories.of(1)}  # type: ignore[union-attr]
    plain = model.recommend_batch([Query(str(uid), (), k=20)], Tier.FULL).results[0]
    assert not seen & set(plain.items)
    banned = frozenset(plain.items[:5])
    filtered = model.recommend_batch([Query(str(uid), (), k=20, exclude=banned)], Tier.FULL).results[0]
    assert not banned & set(filtered.items) and filtered.items[:5] == plain.items[5:10]
    with_seen = model.recommend_batch([Query(str(uid), (), k=300, exclude_seen=False)], Tier.FULL).results[0]
    assert seen <= set(with_seen.items)


def test_k_larger_than_what_is_left_returns_only_real_items(model: NetServingModel) -> None:
    everything = frozenset(str(i) for i in range(300))
    ranked = model.recommend_batch([Query(None, (), k=50, exclude=everything - {"1", "2"})], Tier.FULL).results[0]
    assert sorted(ranked.items) == ["1", "2"] and np.all(np.isfinite(ranked.scores))


def test_cheaper_tiers(recommender: TwoTowerRecommender) -> None:
    model = serving_model_from_recommender(recommender, "v", pool_size=75)
    pop = np.bincount(recommender.histories.items, minlength=300)  # type: ignore[union-attr]
    pool = {str(recommender.items.ids[i]) for i in np.argsort(-pop, kind="stable")[:75]}  # type: ignore[union-attr]
    q = [Query(str(u), (), k=10) for u in recommender.users.ids[:20]]  # type: ignore[union-attr]
    fewer = model.recommend_batch(q, Tier.FEWER_CANDIDATES).results
    assert all(set(r.items) <= pool for r in fewer)  # only the popular pool is scored
    popular = model.recommend_batch([Query(None, (), k=5, exclude_seen=False)], Tier.POPULAR).results[0]
    top = [str(recommender.items.ids[i]) for i in np.argsort(-pop, kind="stable")[:5]]  # type: ignore[union-attr]
    assert popular.items == top
    assert "retrieval" not in model.recommend_batch(q[:1], Tier.POPULAR).timings


def test_the_popular_tier_skips_seen_live_and_excluded_items_in_popularity_order(
    recommender: TwoTowerRecommender,
) -> None:
    model = serving_model_from_recommender(recommender, "v")
    assert recommender.histories is not None and recommender.items is not None and recommender.users is not None
    pop = np.bincount(recommender.histories.items, minlength=300)
    order = [str(recommender.items.ids[i]) for i in np.argsort(-pop, kind="stable")]
    uidx = 3
    seen = {str(recommender.items.ids[i]) for i in recommender.histories.of(uidx)}
    live = tuple(order[:4:2])  # events: two of the most popular items
    banned = frozenset(order[5:7]) | {"not-an-item"}
    got = model.recommend_batch(
        [Query(str(recommender.users.ids[uidx]), live, k=12, exclude=banned)], Tier.POPULAR).results[0]
    want = [i for i in order if i not in seen and i not in live and i not in banned][:12]
    assert got.items == want and got.user_known
    # nothing excluded: the head of the order; an unknown user is anonymous
    plain = model.recommend_batch([Query("nobody", (), k=3, exclude_seen=False)], Tier.POPULAR).results[0]
    assert plain.items == order[:3] and not plain.user_known


def test_similar_matches_the_estimator(model: NetServingModel, recommender: TwoTowerRecommender) -> None:
    item = recommender.items.ids[10]  # type: ignore[union-attr]
    ranked = model.similar(str(item), 5)
    ids, scores = recommender.similar_items(item, N=5)
    assert ranked.items == [str(i) for i in ids]
    np.testing.assert_allclose(ranked.scores, scores, rtol=1e-4, atol=1e-5)
    with pytest.raises(UnknownIdError):
        model.similar("no-such-item", 5)


def test_version_changes_with_the_weights(artifact: Path, artifact_b: Path) -> None:
    from turborec._util.artifact import load_artifact

    assert artifact_version(load_artifact(artifact)) != artifact_version(load_artifact(artifact_b))


def test_unservable_artifacts_are_refused(tmp_path: Path, artifact: Path) -> None:
    from turborec._util.artifact import save_artifact

    with pytest.raises(ArtifactError, match="no artifact directory"):
        load_serving_model(tmp_path / "missing")
    odd = save_artifact(tmp_path / "odd", kind="mystery", config={})
    with pytest.raises(ArtifactError, match=r"serve takes retrieval models .*, two-stage pipelines and CTR rankers; this artifact is of kind 'mystery'"):
        load_serving_model(odd)


def test_a_ranker_reorders_the_retrieved_candidates_and_opens_the_whole_ladder(
    recommender: TwoTowerRecommender,
) -> None:
    import torch

    def by_index(user_vecs: torch.Tensor, users: torch.Tensor, hist: torch.Tensor, cand: torch.Tensor,
                 cand_scores: torch.Tensor) -> torch.Tensor:
        return -cand.float()  # a (silly but real) ranker: lowest item index first

    def by_index_desc(user_vecs: torch.Tensor, users: torch.Tensor, hist: torch.Tensor, cand: torch.Tensor,
                      cand_scores: torch.Tensor) -> torch.Tensor:
        return cand.float()

    model = serving_model_from_recommender(recommender, "v", ranker=by_index, cheap_ranker=by_index_desc,
                                           full_candidates=40, pool_candidates=20, pool_size=100)
    assert model.tiers == tuple(Tier)
    q = [Query("1", (), k=10)]
    retrieved = model.recommend_batch([Query("1", (), k=40)], Tier.RETRIEVAL_ONLY).results[0]
    full_pool = serving_model_from_recommender(recommender, "v").recommend_batch([Query("1", (), k=40)], Tier.FULL)
    top40 = full_pool.results[0].items
    index = {str(v): i for i, v in enumerate(recommender.items.ids)}  # type: ignore[union-attr]
    ranked = model.recommend_batch(q, Tier.FULL).results[0].items
    assert set(ranked) <= set(top40)
    assert ranked == sorted(top40, key=index.__getitem__)[:10]
    cheap = model.recommend_batch(q, Tier.CHEAP_RANKER).results[0].items
    assert [index[i] for i in cheap] == sorted((index[i] for i in cheap), reverse=True)
    assert retrieved.items[:10] == model.recommend_batch(q, Tier.RETRIEVAL_ONLY).results[0].items


def test_chunked_scoring_of_large_catalogs_is_exact() -> None:
    import torch

    from turborec.retrieval.exact import exact_top_k

    gen = torch.Generator().manual_seed(0)
    users, vecs = torch.randn(5, 8, generator=gen), torch.randn(1000, 8, generator=gen)
    rows, cols = np.array([0, 0, 3, 4]), np.array([5, 990, 17, 500])
    whole = exact_top_k(users, vecs, 30, rows, cols)
    chunked = exact_top_k(users, vecs, 30, rows, cols, item_chunk=64)  # 16 chunks
    torch.testing.assert_close(chunked[0], whole[0])
    assert torch.equal(chunked[1], whole[1])
    assert not set(chunked[1][0].tolist()) & {5, 990}
    brute = users @ vecs.T
    brute[torch.from_numpy(rows), torch.from_numpy(cols)] = -torch.inf
    torch.testing.assert_close(whole[0], torch.sort(brute, dim=1, descending=True).values[:, :30])


def test_the_served_model_is_a_runner_and_an_index(recommender: TwoTowerRecommender) -> None:
    """Exact search is an Index (the model's own ExactIndex); any Index can take its place."""
    from turborec.retrieval import make_index

    plain = serving_model_from_recommender(recommender, "v")
    assert plain.index is plain.exact and plain.runner is None
    other = make_index("Exact|query_batch=3", dim=plain.exact.dim)
    other.add(plain.exact.vectors())
    swapped = serving_model_from_recommender(recommender, "v", index=other)
    assert swapped.tiers == plain.tiers  # an exact index keeps the exact ladder (the pool tier)
    queries = [Query(str(u), (), k=10) for u in recommender.users.ids[:9]]  # type: ignore[union-attr]
    for a, b in zip(plain.recommend_batch(queries, Tier.FULL).results, swapped.recommend_batch(queries, Tier.FULL).results):
        assert a.items == b.items
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-7)  # other batches, other BLAS sums


def test_a_whole_history_model_serves_heavy_users_what_it_recommends() -> None:
    """EASE reads a user's whole history: a user with more training items than the service's default window
    (50) gets what ``recommend`` gives, not the answer for their last 50 items (the service once cut them)."""
    from turborec.data.synthetic import synthetic
    from turborec.train import EASERecommender

    rec = EASERecommender(progress=False).fit(synthetic(n_users=60, n_items=400, n_interactions=6000, seed=3))
    model = serving_model_from_recommender(rec, "ease-test")
    lengths = np.diff(rec.servable().seen_offsets)
    heavy = np.argsort(-lengths)[:8]
    assert lengths[heavy[0]] > 50  # otherwise a 50-item window would be exact and this test could not fail
    ids = [rec.users.ids[i] for i in heavy]  # type: ignore[union-attr]
    out = model.recommend_batch([Query(str(u), (), k=10) for u in ids], Tier.FULL)
    expected, scores = rec.recommend(list(ids), N=10)
    for b, ranked in enumerate(out.results):
        assert ranked.items == [str(i) for i in expected[b]]
        np.testing.assert_allclose(ranked.scores, scores[b], rtol=1e-5, atol=1e-5)
