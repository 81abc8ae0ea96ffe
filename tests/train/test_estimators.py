"""Estimators: learning on synthetic structure, the implicit-style API, artifact round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from turborec.data import Interactions, apply_protocol, synthetic
from turborec.errors import ArtifactError, ConfigError, NotFittedError, UnknownIdError
from turborec.train import (
    BPRRecommender,
    EASERecommender,
    PopularityRecommender,
    TwoTowerRecommender,
    load,
)
from turborec.train.options import make_estimator


@pytest.fixture(scope="module")
def small_split():  # type: ignore[no-untyped-def]
    data = synthetic(n_users=800, n_items=300, n_interactions=24_000, seed=3)
    return apply_protocol("recbole", data, seed=1)


@pytest.fixture(scope="module")
def fitted_two_tower(small_split):  # type: ignore[no-untyped-def]
    # the default fit (early-stopped): the per-user objective needs more epochs than a pairs epoch count
    return TwoTowerRecommender(progress=False, seed=0).fit(small_split.train, small_split.valid)


def _random_ndcg(split, k: int = 10) -> float:  # type: ignore[no-untyped-def]
    class _Random(PopularityRecommender):
        def score_users(self, user_idx, history=None):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng(len(user_idx))
            return rng.random((len(user_idx), len(self.items or ()))).astype(np.float32)

    return _Random(progress=False).fit(split.train).evaluate(split.test, exclude=[split.valid])[f"ndcg@{k}"]


def test_two_tower_learns_synthetic_structure(small_split, fitted_two_tower) -> None:  # type: ignore[no-untyped-def]
    ndcg = fitted_two_tower.evaluate(small_split.test, exclude=[small_split.valid])["ndcg@10"]
    random = _random_ndcg(small_split)
    pop = PopularityRecommender().fit(small_split.train).evaluate(small_split.test, exclude=[small_split.valid])["ndcg@10"]
    assert ndcg > 4 * random, (ndcg, random)
    assert ndcg > 1.2 * pop, (ndcg, pop)


@pytest.mark.parametrize("cls", [BPRRecommender, EASERecommender])
def test_other_models_beat_popularity(small_split, cls) -> None:  # type: ignore[no-untyped-def]
    pop = PopularityRecommender().fit(small_split.train).evaluate(small_split.test, exclude=[small_split.valid])["ndcg@10"]
    model = cls(progress=False, epochs=40).fit(small_split.train, small_split.valid) if cls is BPRRecommender else cls().fit(small_split.train)
    assert model.evaluate(small_split.test, exclude=[small_split.valid])["ndcg@10"] > pop


def test_recommend_filters_seen_items_and_returns_external_ids(small_split, fitted_two_tower) -> None:  # type: ignore[no-untyped-def]
    model = fitted_two_tower
    users = list(small_split.train.users.ids[:5])
    ids, scores = model.recommend(users, N=10)
    assert ids.shape == (5, 10) and scores.shape == (5, 10)
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "scores must be sorted descending"
    for u, row in zip(users, ids):
        seen = set(small_split.train.items.decode(model.histories.of(small_split.train.users.index(u))).tolist())
        assert not seen & set(row.tolist())
        assert set(row.tolist()) <= set(small_split.train.items.ids)
    unfiltered, _ = model.recommend(users[0], N=len(model.items or ()), filter_already_liked_items=False)
    assert len(set(unfiltered.tolist())) == len(model.items)
    one, _ = model.recommend(users[0], N=3, filter_items=[ids[0][0]])
    assert ids[0][0] not in one.tolist()


def test_history_changes_anonymous_recommendations(fitted_two_tower) -> None:  # type: ignore[no-untyped-def]
    model = fitted_two_tower
    items = list(model.items.ids)
    a, _ = model.recommend_for_history([items[:3]], N=10)
    b, _ = model.recommend_for_history([items[100:103]], N=10)
    assert a.tolist() != b.tolist()
    assert not set(items[:3]) & set(a[0].tolist())


def test_similar_items(fitted_two_tower) -> None:  # type: ignore[no-untyped-def]
    item = fitted_two_tower.items.ids[0]
    ids, scores = fitted_two_tower.similar_items(item, N=5)
    assert len(ids) == 5 and item not in ids.tolist()
    assert scores[0] <= 1.0 + 1e-5


@pytest.mark.parametrize("name", ["popularity", "bpr", "two-tower", "ease"])
def test_artifact_round_trip_gives_identical_recommendations(small_split, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    model = make_estimator(name, epochs=2, progress=False).fit(small_split.train)
    users = list(small_split.train.users.ids[:20])
    before = model.recommend(users, N=10)
    path = model.save(tmp_path / name)
    again = load(path)
    after = again.recommend(users, N=10)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1], rtol=1e-6)
    assert again.name == name


def test_corrupted_artifact_is_refused(fitted_two_tower, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = fitted_two_tower.save(tmp_path / "tt")
    w = path / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ArtifactError):
        load(path)


def test_user_errors_are_clear(small_split) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFittedError):
        TwoTowerRecommender().recommend([1])
    with pytest.raises(ConfigError, match="unknown option"):
        TwoTowerRecommender(dimension=3)
    with pytest.raises(ConfigError, match="unknown model"):
        make_estimator("deep-magic")
    with pytest.raises(ConfigError, match="expected"):
        make_estimator("two-tower", {"dim": "sixty"})
    model = PopularityRecommender().fit(small_split.train)
    with pytest.raises(UnknownIdError):
        model.recommend(["no-such-user"], unknown="error")
    with pytest.raises(ConfigError):
        model.recommend([small_split.train.users.ids[0]], N=0)


def test_empty_training_set_is_refused(small_split) -> None:  # type: ignore[no-untyped-def]
    empty: Interactions = small_split.train.select(np.zeros(len(small_split.train), dtype=bool))
    from turborec.errors import DataError

    with pytest.raises(DataError):
        PopularityRecommender().fit(empty)


def test_narrow_ints_picks_the_narrowest_signed_type_that_holds_the_values() -> None:
    import torch

    from turborec.train.recommender import narrow_ints

    assert narrow_ints(torch.tensor([-1, 127])).dtype == torch.int8
    assert narrow_ints(torch.tensor([-129, 0])).dtype == torch.int16
    assert narrow_ints(torch.tensor([0, 32_767])).dtype == torch.int16
    assert narrow_ints(torch.tensor([0, 32_768])).dtype == torch.int32
    assert narrow_ints(torch.tensor([0, 2**31])).dtype == torch.int64
    wide = torch.tensor([5, -3, 300])
    assert narrow_ints(wide).tolist() == [5, -3, 300]
    floats = torch.tensor([1e9, -1.0])
    assert narrow_ints(floats) is floats
    assert narrow_ints(torch.zeros(0, dtype=torch.int64)).dtype == torch.int64


def test_artifact_stores_index_data_narrow_and_loads_it_as_int64(ml_small_dir: Path, tmp_path: Path) -> None:
    """Histories and genre tokens of ml-latest-small as int64 would outweigh a compressed model; stored narrow."""
    import torch
    from safetensors.numpy import load_file

    from turborec.data import load_movielens

    split = apply_protocol("recbole", load_movielens(ml_small_dir), seed=2020)
    model = TwoTowerRecommender(dim=8, hidden=(16,), epochs=1, progress=False, seed=0).fit(split.train)
    path = model.save(tmp_path / "tt")
    stored = load_file(str(path / "weights.safetensors"))
    assert stored["history.items"].dtype == np.int16  # 1,862 items
    assert stored["history.offsets"].dtype == np.int32  # 52,334 training interactions
    assert stored["net.item_tower.item_tokens"].dtype == np.int8  # 19 genres, -1 = padding
    again = load(path)
    assert again.histories is not None and model.histories is not None
    assert again.histories.items.dtype == np.int64 and again.histories.offsets.dtype == np.int64
    np.testing.assert_array_equal(again.histories.items, model.histories.items)
    tokens = again.net.item_tower.item_tokens  # type: ignore[union-attr]
    assert tokens.dtype == torch.int64
    assert torch.equal(tokens, model.net.item_tower.item_tokens)  # type: ignore[union-attr]
    users = list(split.train.users.ids[:50])
    before, after = model.recommend(users, N=10), again.recommend(users, N=10)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1], rtol=1e-6)


def test_a_user_batch_split_by_rows_keeps_each_users_targets_and_seen_items() -> None:
    """A sharded run trains each process on its users of the global per-user batch: the two halves hold
    every target and visible item of the whole batch once, re-indexed to their own rows."""
    import torch

    from turborec.train.estimators import _user_batch

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, 12)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = rng.integers(0, 40, int(offsets[-1]))
    whole = _user_batch(np.arange(12), offsets, items, 0.5, 5, np.random.default_rng(1), torch.device("cpu"))
    halves = [whole.rows(0, 6), whole.rows(6, 12)]

    def pairs(rows: torch.Tensor, its: torch.Tensor, users: torch.Tensor) -> set[tuple[int, int]]:
        return {(int(users[r]), int(i)) for r, i in zip(rows, its)}

    for kind in ("target", "seen"):
        want = pairs(getattr(whole, f"{kind}_rows"), getattr(whole, f"{kind}_items"), whole.users)
        got = [pairs(getattr(h, f"{kind}_rows"), getattr(h, f"{kind}_items"), h.users) for h in halves]
        assert got[0] | got[1] == want and not got[0] & got[1]
        assert sum(len(getattr(h, f"{kind}_rows")) for h in halves) == len(getattr(whole, f"{kind}_rows"))
    assert torch.equal(torch.cat([h.history for h in halves]), whole.history)
    assert all(int(h.target_rows.max()) < 6 for h in halves)
