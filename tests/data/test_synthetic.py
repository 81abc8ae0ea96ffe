"""Synthetic generator: exact shapes, power-law popularity, determinism, structure a model can learn."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from turborec.data import Interactions, SyntheticConfig, random_split, synthetic
from turborec.errors import ConfigError


def _check_invariants(x: Interactions, n_users: int, n_items: int, n_interactions: int, min_events: int) -> None:
    assert (len(x), x.n_users, x.n_items) == (n_interactions, n_users, n_items)
    assert x.user.dtype == np.int32 and x.item.dtype == np.int32
    assert np.bincount(x.user, minlength=n_users).min() >= min_events
    keys = x.user.astype(np.int64) * n_items + x.item
    assert len(np.unique(keys)) == len(x), "(user, item) pairs must be unique"
    assert x.timestamp is not None
    order = np.lexsort((x.timestamp, x.user))
    same_user = np.diff(x.user[order]) == 0
    assert (np.diff(x.timestamp[order])[same_user] > 0).all(), "timestamps strictly increase per user"
    f = x.item_features
    assert f is not None and f.n_items == n_items
    lengths = np.diff(f.offsets)
    assert lengths.min() >= 1 and lengths.max() <= 3


def test_shapes_and_invariants_across_chunks() -> None:
    x = synthetic(n_users=3_000, n_items=800, n_interactions=60_000, seed=4, chunk_size=7_000)
    _check_invariants(x, 3_000, 800, 60_000, 5)
    assert x.meta["config"]["chunk_size"] == 7_000
    assert x.meta["ground_truth"]["item_topic"].shape == (800,)


def test_one_million_interactions() -> None:
    x = synthetic(n_users=50_000, n_items=20_000, n_interactions=1_000_000, seed=1)
    _check_invariants(x, 50_000, 20_000, 1_000_000, 5)


def test_popularity_is_heavy_tailed() -> None:
    x = synthetic(n_users=20_000, n_items=10_000, n_interactions=400_000, seed=2)
    pop = np.sort(x.item_popularity())[::-1]
    top1 = pop[: len(pop) // 100].sum() / pop.sum()
    assert top1 > 0.10, f"top 1% of items hold only {top1:.1%}"  # uniform would be 1%
    # log-log slope of popularity vs rank over the head is clearly negative (power law, not exponential)
    ranks = np.arange(1, 1001)
    slope = np.polyfit(np.log(ranks[9:]), np.log(pop[9:1000]), 1)[0]
    assert -1.6 < slope < -0.4


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = synthetic(n_users=500, n_items=300, n_interactions=10_000, seed=11, ratings=True)
    b = synthetic(n_users=500, n_items=300, n_interactions=10_000, seed=11, ratings=True)
    c = synthetic(n_users=500, n_items=300, n_interactions=10_000, seed=12, ratings=True)
    for name in ("user", "item", "timestamp", "rating"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.item_features.values, b.item_features.values)  # type: ignore[union-attr]
    assert not np.array_equal(a.item, c.item)


def _recall_at(scores: np.ndarray, train: sp.csr_matrix, test: sp.csr_matrix, k: int = 20) -> float:
    scores = np.array(scores, dtype=np.float64)
    scores[train.nonzero()] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    hits = np.take_along_axis(test.toarray() > 0, top, axis=1).sum(axis=1)
    n = np.asarray(test.sum(axis=1)).ravel()
    has = n > 0
    return float((hits[has] / np.minimum(n[has], k)).mean())


def test_a_simple_model_beats_popularity_and_random() -> None:
    x = synthetic(n_users=2_000, n_items=800, n_interactions=40_000, seed=5)
    split = random_split(x, (0.8, 0.2), seed=0)
    train, test = split.train.to_csr(), split.test.to_csr()
    popularity = np.broadcast_to(np.asarray(train.sum(axis=0)), (x.n_users, x.n_items))
    norms = np.sqrt(np.asarray(train.sum(axis=0)).ravel()) + 1e-9
    cosine = (train.T @ train).toarray() / norms[:, None] / norms[None, :]
    np.fill_diagonal(cosine, 0.0)
    item_knn = np.asarray(train @ cosine)
    rand = np.random.default_rng(0).random((x.n_users, x.n_items))
    knn, pop, rnd = (_recall_at(s, train, test) for s in (item_knn, popularity, rand))
    assert knn > 1.5 * pop and pop > 2 * rnd, (knn, pop, rnd)


def test_genres_and_ratings_follow_the_latent_topics() -> None:
    x = synthetic(n_users=2_000, n_items=1_000, n_interactions=40_000, seed=6, ratings=True)
    f = x.item_features
    assert f is not None and x.rating is not None
    topic = x.meta["ground_truth"]["item_topic"]
    first_genre = f.values[f.offsets[:-1]]

    def purity(labels: np.ndarray) -> float:  # share of items carrying their topic's most common first genre
        return sum(np.bincount(first_genre[labels == t]).max() for t in np.unique(labels)) / len(labels)

    shuffled = np.random.default_rng(0).permutation(topic)
    assert purity(topic) > purity(shuffled) + 0.2
    assert set(np.unique(x.rating).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    user_topic = x.meta["ground_truth"]["user_topic"]
    on_topic = topic[x.item] == user_topic[x.user]
    assert x.rating[on_topic].mean() > x.rating[~on_topic].mean() + 0.5


def test_topic_stickiness_makes_sequences_ordered() -> None:
    def repeat_rate(stickiness: float) -> float:
        x = synthetic(n_users=1_000, n_items=600, n_interactions=30_000, seed=3, topic_stickiness=stickiness)
        topic = x.meta["ground_truth"]["item_topic"]
        offsets, items = x.user_histories()
        same = topic[items[1:]] == topic[items[:-1]]
        boundary = np.zeros(len(items) - 1, dtype=bool)
        boundary[offsets[1:-1] - 1] = True  # pairs that cross from one user to the next
        return float(same[~boundary].mean())

    assert repeat_rate(0.8) > repeat_rate(0.0) + 0.1


def test_bad_configs_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="fewer than n_users x min_user_interactions"):
        synthetic(n_users=1_000, n_items=100, n_interactions=1_000)
    with pytest.raises(ConfigError, match="exceeds"):
        synthetic(n_users=10, n_items=20, n_interactions=1_000)
    with pytest.raises(ConfigError, match="unknown option"):
        synthetic(n_users=10, n_items=20, n_interactions=100, topics=3)
    with pytest.raises(ConfigError, match="noise"):
        SyntheticConfig(noise=1.5)
    with pytest.raises(ConfigError, match="dim"):
        SyntheticConfig(dim=0)
    with pytest.raises(ConfigError, match="seed"):
        SyntheticConfig(seed=-1)
