"""Splits: every event in exactly one part, no leaks, shared vocabularies, RecBole's per-user counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from turborec.data import (
    Interactions,
    Split,
    Vocabulary,
    leave_last_out,
    load_movielens,
    random_split,
    split_counts,
    synthetic,
    temporal_split,
)
from turborec.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def ml(ml_small_dir: Path) -> Interactions:
    return load_movielens(ml_small_dir)


def _recbole_counts(tot: int, ratios: list[float]) -> list[int]:
    """RecBole's Dataset._calcu_split_ids, transcribed as a per-group loop (returns part sizes)."""
    total = sum(ratios)
    ratios = [r / total for r in ratios]
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


@pytest.mark.parametrize("ratios", [[0.8, 0.1, 0.1], [8, 1, 1], [0.7, 0.2, 0.1], [0.6, 0.0, 0.4], [0.9, 0.1]])
def test_split_counts_match_recbole(ratios: list[float]) -> None:
    n = np.arange(0, 300)
    got = split_counts(n, ratios)
    assert got.tolist() == [_recbole_counts(int(t), ratios) for t in n]


def _event_ids(x: Interactions) -> np.ndarray:
    """Events are unique (user, item, timestamp) in these datasets; encode them as one int."""
    assert x.timestamp is not None
    return (x.user.astype(np.int64) * x.n_items + x.item) * 2**31 + (x.timestamp - 8 * 10**8)


def _check_partition(x: Interactions, split: Split) -> None:
    for part in split:
        assert part.users is x.users and part.items is x.items and part.item_features is x.item_features
    ids = [_event_ids(p) for p in split]
    assert sum(len(i) for i in ids) == len(x)
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.sort(_event_ids(x)))
    pairs = [set((p.user.astype(np.int64) * x.n_items + p.item).tolist()) for p in split]
    assert not (pairs[0] & pairs[1]) and not (pairs[0] & pairs[2]) and not (pairs[1] & pairs[2])


def test_random_split_per_user_recbole_semantics(ml: Interactions) -> None:
    split = random_split(ml, (0.8, 0.1, 0.1), seed=7)
    _check_partition(ml, split)
    counts = np.bincount(ml.user, minlength=ml.n_users)
    per_part = np.stack([np.bincount(p.user, minlength=ml.n_users) for p in split], axis=1)
    np.testing.assert_array_equal(per_part, split_counts(counts, (0.8, 0.1, 0.1)))
    shares = per_part.sum(axis=0) / len(ml)
    np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.015)
    assert (per_part[counts >= 3] >= 1).all()  # every part gets each user with >= 3 events
    again = random_split(ml, (0.8, 0.1, 0.1), seed=7)
    np.testing.assert_array_equal(again.test.item, split.test.item)
    other = random_split(ml, (0.8, 0.1, 0.1), seed=8)
    assert not np.array_equal(other.test.item, split.test.item)
    assert "train" in split.summary() and f"{len(split.train):,}" in split.summary()


def test_random_split_two_ratios_and_bad_ratios(ml: Interactions) -> None:
    split = random_split(ml, (0.9, 0.1), seed=0)
    assert len(split.valid) == 0 and len(split.train) + len(split.test) == len(ml)
    for bad in [(0.8,), (0.0, 0.5, 0.5), (0.8, -0.1, 0.3), (0.5, 0.2, 0.2, 0.1)]:
        with pytest.raises(ConfigError, match="ratios"):
            random_split(ml, bad)


def test_leave_last_out_takes_each_users_latest(ml: Interactions) -> None:
    split = leave_last_out(ml, n_valid=1, n_test=1)
    _check_partition(ml, split)
    assert ml.timestamp is not None
    assert len(split.test) == ml.n_users and len(split.valid) == ml.n_users  # every ML user has >= 20 events
    last_time = np.full(ml.n_users, -1)
    np.maximum.at(last_time, ml.user, ml.timestamp)
    assert split.test.timestamp is not None and split.valid.timestamp is not None
    np.testing.assert_array_equal(split.test.timestamp, last_time[split.test.user])
    assert split.train.timestamp is not None
    train_latest = np.full(ml.n_users, -1)
    np.maximum.at(train_latest, split.train.user, split.train.timestamp)
    valid_time = np.zeros(ml.n_users, dtype=np.int64)
    valid_time[split.valid.user] = split.valid.timestamp
    test_time = np.zeros(ml.n_users, dtype=np.int64)
    test_time[split.test.user] = split.test.timestamp
    assert (train_latest <= valid_time).all() and (valid_time <= test_time).all()


def test_leave_last_out_short_histories_fill_test_first() -> None:
    x = synthetic(n_users=50, n_items=40, n_interactions=500, seed=1)
    keep = np.ones(len(x), dtype=bool)
    # user 0 keeps 1 event, user 1 keeps 2: they get (train) and (train, test)
    first_of = {u: np.flatnonzero(x.user == u) for u in (0, 1)}
    keep[first_of[0][1:]] = False
    keep[first_of[1][2:]] = False
    short = x.select(keep)
    split = leave_last_out(short)
    for user, parts in ((0, (1, 0, 0)), (1, (1, 0, 1))):
        assert tuple(int((p.user == user).sum()) for p in split) == parts


def test_temporal_split_is_ordered_in_time(ml: Interactions) -> None:
    split = temporal_split(ml, (0.8, 0.1, 0.1))
    _check_partition(ml, split)
    assert [len(p) for p in split] == split_counts(len(ml), (0.8, 0.1, 0.1))[0].tolist()
    assert split.train.timestamp is not None and split.valid.timestamp is not None and split.test.timestamp is not None
    assert split.train.timestamp.max() <= split.valid.timestamp.min()
    assert split.valid.timestamp.max() <= split.test.timestamp.min()
    untimed = Interactions(ml.user, ml.item, ml.users, ml.items)
    with pytest.raises(DataError, match="needs timestamps"):
        temporal_split(untimed)


def test_split_parts_must_share_vocabularies(ml: Interactions) -> None:
    other = synthetic(n_users=50, n_items=40, n_interactions=500)
    with pytest.raises(DataError, match="share"):
        Split(ml, ml, other)


@pytest.mark.parametrize("span", [50, 2**40])  # packed single-sort path and the lexsort fallback
def test_time_order_is_a_stable_user_then_time_sort(span: int) -> None:
    rng = np.random.default_rng(0)
    user = rng.integers(0, 30, 5000).astype(np.int32)
    ts = rng.integers(-span, span, 5000)
    x = Interactions(user, np.zeros(5000, np.int32), Vocabulary.range(30), Vocabulary.range(1), timestamp=ts)
    np.testing.assert_array_equal(x.time_order(), np.lexsort((np.arange(5000), ts, user)))
