"""Named protocols; 'recbole' on ml-latest-small against an independent pandas implementation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from turborec.data import PROTOCOLS, apply_protocol, load_movielens, split_counts
from turborec.errors import ConfigError


def test_recbole_protocol_on_ml_latest_small(ml_small_dir: Path) -> None:
    pd = pytest.importorskip("pandas")
    x = load_movielens(ml_small_dir)
    split = apply_protocol("recbole", x, seed=2020)
    # independent: keep rating >= 3, then drop users/items under 10 events until stable
    df = pd.read_csv(ml_small_dir / "ratings.csv")
    df = df[df.rating >= 3]
    while True:
        ok = (df.groupby("userId").userId.transform("size") >= 10) & (
            df.groupby("movieId").movieId.transform("size") >= 10
        )
        if ok.all():
            break
        df = df[ok]
    n_events = sum(len(p) for p in split)
    assert (n_events, split.train.n_users, split.train.n_items) == (len(df), df.userId.nunique(), df.movieId.nunique())
    assert set(split.train.items.ids) == set(df.movieId.tolist())
    per_user = df.groupby("userId").size().reindex(list(split.train.users.ids)).to_numpy()
    expected = split_counts(per_user, (0.8, 0.1, 0.1)).sum(axis=0)
    assert [len(p) for p in split] == expected.tolist()
    assert split.info["protocol"] == "recbole" and split.info["seed"] == 2020
    assert all(p.rating is not None and p.rating.min() >= 3 for p in split)
    same = apply_protocol("recbole", x, seed=2020)
    np.testing.assert_array_equal(same.valid.item, split.valid.item)


def test_other_protocols_and_unknown_name(ml_small_dir: Path) -> None:
    x = load_movielens(ml_small_dir)
    loo = apply_protocol("leave-last-out", x)
    assert len(loo.test) == loo.train.n_users
    assert np.bincount(np.concatenate([p.item for p in loo]), minlength=loo.train.n_items).min() >= 5
    temporal = apply_protocol("temporal", x)
    assert temporal.train.timestamp is not None and temporal.test.timestamp is not None
    assert temporal.train.timestamp.max() <= temporal.test.timestamp.min()
    with pytest.raises(
        ConfigError, match="unknown protocol 'recbol'; known protocols: leave-last-out, recbole, temporal"
    ):
        apply_protocol("recbol", x)
    assert {"recbole", "leave-last-out", "temporal"} <= set(PROTOCOLS)
