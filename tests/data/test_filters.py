"""Filters: rating threshold, iterative k-core, dedupe; compacted vocabularies keep features aligned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from turborec.data import Interactions, Vocabulary, dedupe, filter_min_rating, kcore, load_movielens
from turborec.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def ml(ml_small_dir: Path) -> Interactions:
    return load_movielens(ml_small_dir)


def _reference_kcore(user: np.ndarray, item: np.ndarray, uk: int, ik: int) -> np.ndarray:
    """Plain loop: drop one user or item below threshold at a time until none is left (order-free result)."""
    keep = np.ones(len(user), dtype=bool)
    while True:
        uc = np.bincount(user[keep], minlength=user.max() + 1)
        ic = np.bincount(item[keep], minlength=item.max() + 1)
        bad_users = np.flatnonzero((uc > 0) & (uc < uk))
        bad_items = np.flatnonzero((ic > 0) & (ic < ik))
        if len(bad_users):
            keep &= user != bad_users[0]
        elif len(bad_items):
            keep &= item != bad_items[-1]
        else:
            return keep


def _pairs(x: Interactions) -> set[tuple]:
    return set(zip(x.users.decode(x.user).tolist(), x.items.decode(x.item).tolist()))


def test_kcore_holds_is_maximal_and_compacts(ml: Interactions) -> None:
    assert ml.rating is not None
    small = ml.select(ml.rating >= 4.5)  # a sparser subset so the reference loop stays quick
    core = kcore(small, 5, item_k=3)
    assert np.bincount(core.user).min() >= 5
    assert np.bincount(core.item).min() >= 3
    assert core.n_users == len(np.unique(core.user)) and core.n_items == len(np.unique(core.item))
    expected = _reference_kcore(small.user, small.item, 5, 3)
    assert _pairs(core) == _pairs(small.select(expected))
    assert core.meta["preprocessing"] == ["kcore(user_k=5, item_k=3)"]
    # item features follow their items through the re-indexing
    f0, f1 = small.item_features, core.item_features
    assert f0 is not None and f1 is not None and f1.n_items == core.n_items
    assert f0.titles is not None and f1.titles is not None
    for new_index, movie_id in enumerate(core.items.ids):
        old_index = small.items.index(movie_id)
        assert f1.titles[new_index] == f0.titles[old_index]
        new_tokens = f1.values[f1.offsets[new_index] : f1.offsets[new_index + 1]]
        old_tokens = f0.values[f0.offsets[old_index] : f0.offsets[old_index + 1]]
        np.testing.assert_array_equal(new_tokens, old_tokens)


def test_kcore_rejects_bad_k(ml: Interactions) -> None:
    with pytest.raises(ConfigError, match="user_k"):
        kcore(ml, 5, user_k=-1)


def test_filter_min_rating(ml: Interactions) -> None:
    assert ml.rating is not None
    kept = filter_min_rating(ml, 3)
    assert kept.rating is not None and kept.rating.min() >= 3
    assert len(kept) == int((ml.rating >= 3).sum())
    assert _pairs(kept) == _pairs(ml.select(ml.rating >= 3))
    assert kept.n_items == len(np.unique(ml.item[ml.rating >= 3]))
    with pytest.raises(DataError, match="needs ratings"):
        filter_min_rating(Interactions(kept.user, kept.item, kept.users, kept.items), 3)


def test_dedupe_keeps_latest_or_first() -> None:
    users, items = Vocabulary(("a", "b")), Vocabulary((10, 20, 30))
    x = Interactions(
        user=np.array([0, 0, 1, 0, 1], dtype=np.int32),
        item=np.array([0, 1, 2, 0, 2], dtype=np.int32),
        users=users,
        items=items,
        timestamp=np.array([5, 1, 3, 2, 9]),
    )
    last = dedupe(x)
    np.testing.assert_array_equal(last.timestamp, [5, 1, 9])
    first = dedupe(x, keep="first")
    np.testing.assert_array_equal(first.timestamp, [1, 3, 2])
    assert first.items.ids == (10, 20, 30)
    with pytest.raises(ConfigError):
        dedupe(x, keep="middle")
