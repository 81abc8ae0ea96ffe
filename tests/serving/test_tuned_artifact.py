"""``turborec serve`` on a tuned artifact runs the backend and index ``turborec tune`` recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from turborec.data import apply_protocol, load_dataset
from turborec.serving.accelerated import build_index, reduced_search_params
from turborec.serving.knobs import ServingKnobs
from turborec.serving.loading import load_serving_model
from turborec.serving.model import Query
from turborec.serving.net_model import NetServingModel
from turborec.serving.tiers import Tier
from turborec.train import TwoTowerRecommender
from turborec.train.recommender import Recommender
from turborec.tune.artifact import save_tuned


@pytest.fixture(scope="module")
def rec() -> Recommender:
    data = load_dataset(None, "synthetic", n_users=300, n_items=400, n_interactions=9000, seed=4)
    split = apply_protocol("recbole", data, seed=1)
    return TwoTowerRecommender(dim=16, hidden=(32,), epochs=2, progress=False, seed=1).fit(split.train, split.valid)


def test_tuned_index_is_served_and_plain_artifacts_stay_exact(rec: Recommender, tmp_path: Path) -> None:
    assert rec.users is not None
    plain = load_serving_model(rec.save(tmp_path / "plain"))
    assert isinstance(plain, NetServingModel)
    knobs = ServingKnobs(index="Flat", max_batch=8)
    # an index over the negated catalog: if the service answers through the saved index it returns the
    # catalog's worst items for every user, which no exact scoring would
    vectors = plain.exact.vectors()
    index = build_index(knobs.index, -vectors)
    tuned = load_serving_model(save_tuned(tmp_path / "tuned", rec, knobs, index=index))
    assert isinstance(tuned, NetServingModel) and tuned.index is not tuned.exact
    queries = [Query(str(u), k=10) for u in list(rec.users.ids)[:30]]
    exact = plain.recommend_batch(queries, Tier.FULL).results
    served = tuned.recommend_batch(queries, Tier.FULL).results
    assert all(len(r.items) == 10 for r in served)
    assert all(not set(a.items) & set(b.items) for a, b in zip(exact, served))
    # a correct index (exact inner product) reproduces exact scoring
    good = load_serving_model(save_tuned(tmp_path / "good", rec, knobs, index=build_index("Flat", vectors)))
    for a, b in zip(exact, good.recommend_batch(queries, Tier.FULL).results):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5)
    # a flat index has no search effort to turn down: no tier between it and the popular fallback (the
    # base's pool scan could cost more than the index)
    assert tuned.tiers == (Tier.FULL, Tier.POPULAR)


def test_an_ivf_index_steps_down_to_a_quarter_of_its_probes_not_to_an_exact_pool_scan(
    rec: Recommender, tmp_path: Path
) -> None:
    assert rec.users is not None
    knobs = ServingKnobs(index="IVF16,Flat|nprobe=8", max_batch=8)
    plain = load_serving_model(rec.save(tmp_path / "plain"))
    assert isinstance(plain, NetServingModel)
    index = build_index(knobs.index, plain.exact.vectors())
    tuned = load_serving_model(save_tuned(tmp_path / "ivf", rec, knobs, index=index))
    assert isinstance(tuned, NetServingModel) and tuned.index is not tuned.exact
    assert tuned.tiers == (Tier.FULL, Tier.FEWER_CANDIDATES, Tier.POPULAR)
    assert reduced_search_params(tuned.index) == {"nprobe": 2}
    # the reduced tier answers what the same index tuned to 2 probes answers in its full tier
    queries = [Query(str(u), k=10) for u in list(rec.users.ids)[:40]]
    fewer = tuned.recommend_batch(queries, Tier.FEWER_CANDIDATES).results
    two = load_serving_model(save_tuned(tmp_path / "ivf2", rec, knobs.with_(index="IVF16,Flat|nprobe=2"),
                                        index=build_index("IVF16,Flat|nprobe=2", plain.exact.vectors())))
    assert [r.items for r in fewer] == [r.items for r in two.recommend_batch(queries, Tier.FULL).results]
    assert all(len(r.items) == 10 and np.all(np.isfinite(r.scores)) for r in fewer)
    assert tuned.index.params == {"nprobe": 8}  # the tuned effort is restored after the search
    # fewer probes can only miss items: every reduced answer scores at most the full one, rank by rank
    full = tuned.recommend_batch(queries, Tier.FULL).results
    for a, b in zip(full, fewer):
        assert np.all(b.scores <= a.scores + 1e-6)
