"""The next-click protocol: per-user temporal split, replays bound to candidates, NDCG bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from turborec.data import Split
from turborec.export import (
    Replay,
    Session,
    bind_sessions,
    evaluate_next_click,
    replays,
    static_filtered_ranker,
    static_ranker,
)
from turborec.train import Histories, TwoTowerRecommender


def test_user_time_split_is_temporal_per_user(ml_split: Split) -> None:
    train, valid, test = ml_split
    assert len(train) + len(valid) + len(test) == 100_836
    assert 0.69 < len(train) / 100_836 < 0.72 and 0.18 < len(test) / 100_836 < 0.21
    assert train.timestamp is not None and valid.timestamp is not None and test.timestamp is not None
    last_train = np.full(train.n_users, -1, dtype=np.int64)
    np.maximum.at(last_train, train.user, train.timestamp)
    first_test = np.full(test.n_users, np.iinfo(np.int64).max)
    np.minimum.at(first_test, test.user, test.timestamp)
    seen = np.bincount(test.user, minlength=test.n_users) > 0
    # every user's test events are no older than any of that user's training events
    assert np.all(first_test[seen] >= last_train[seen])
    assert np.bincount(train.user, minlength=train.n_users).min() >= 1


def test_replays_keep_time_order_and_cap(ml_split: Split) -> None:
    pre = Histories.from_interactions(ml_split.train)
    items = replays(pre, ml_split.test, max_events=7)
    assert len(items) == len(np.unique(ml_split.test.user))
    assert max(len(r.events) for r in items) == 7
    r = items[0]
    test_events = ml_split.test.sorted_by_time()
    mine = test_events.item[test_events.user == r.user][:7]
    np.testing.assert_array_equal(r.events, mine)
    np.testing.assert_array_equal(r.history, pre.of(r.user))


def test_bind_sessions_maps_events_to_candidate_rows(two_tower: TwoTowerRecommender, ml_split: Split) -> None:
    from turborec.export import EdgeExportConfig, SessionFactory, export_edge_models

    factory = SessionFactory(two_tower, export_edge_models(two_tower, None, EdgeExportConfig()), 100)
    sessions = bind_sessions(factory, replays(Histories.from_interactions(ml_split.train), ml_split.test, 10)[:20])
    for s in sessions:
        assert len(s.candidates) == 100 and len(np.unique(s.candidates)) == 100
        assert not np.isin(s.candidates, s.replay.history).any()  # the server never re-sends seen items
        for event, row in zip(s.replay.events, s.event_rows):
            assert (row == -1 and event not in s.candidates) or s.candidates[row] == event


def _session(events_rows: list[int], n: int = 20) -> Session:
    rows = np.array(events_rows)
    return Session(Replay(0, np.zeros(0, dtype=np.int64), np.arange(len(rows))), np.arange(100, 100 + n), np.zeros(4), rows)


def test_ndcg_bookkeeping_by_hand() -> None:
    # targets: row 0 (rank 1), row 3 (rank 4), an item outside the candidates, row 15 (rank 16 > 10)
    session = _session([0, 3, -1, 15])
    rows = evaluate_next_click([session], {"static": static_ranker, "filtered": static_filtered_ranker}, k=10)
    static, filtered = rows
    expected = (1.0 + 1 / np.log2(5) + 0 + 0) / 4
    assert static["ndcg@10"] == pytest.approx(expected)
    assert static["hr@10"] == pytest.approx(0.5)
    assert static["ndcg@10 (target in candidates)"] == pytest.approx((1.0 + 1 / np.log2(5)) / 3)
    # with clicked rows 0 and 3 removed, row 15 moves up two places: still outside the top 10; and row 3
    # moves up one place after row 0 is clicked
    assert filtered["ndcg@10"] == pytest.approx((1.0 + 1 / np.log2(4)) / 4)
    assert static["steps"] == filtered["steps"] == 4


def test_device_style_ranker_sees_clicks() -> None:
    """A ranker that puts the row after the last click first scores 1 on a 'sequential' session."""
    session = _session([4, 5, 6, 7])

    def next_after_last(s: Session, clicked: np.ndarray) -> np.ndarray:
        order = np.arange(len(s.candidates))
        if len(clicked):
            first = int(clicked[-1]) + 1
            order = np.concatenate([[first], np.delete(order, first)])
        return order

    (row,) = evaluate_next_click([session], {"next": next_after_last}, k=10)
    assert row["ndcg@10"] == pytest.approx((1 / np.log2(6) + 3 * 1.0) / 4)
