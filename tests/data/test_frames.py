"""DataFrames in and out: Interactions.from_pandas / from_polars / to_pandas, fit(df), tables by extension."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turborec.data import synthetic
from turborec.data.interactions import Interactions
from turborec.data.loaders import load_table
from turborec.data.tables import read_table, table_format, write_table
from turborec.errors import ConfigError, DataError, UnknownIdError, UnknownIdWarning
from turborec.train.estimators import EASERecommender


@pytest.fixture(scope="module")
def events() -> Interactions:
    return synthetic(n_users=120, n_items=60, n_interactions=2400, seed=5)


def test_pandas_round_trip_keeps_ids_and_columns(events: Interactions) -> None:
    df = events.to_pandas()
    assert list(df.columns) == ["user_id", "item_id", "timestamp"]
    back = Interactions.from_pandas(df)
    assert back.to_pandas().equals(df)  # same events, same external ids (index order may differ)
    assert set(back.items.ids) == set(events.items.ids)


def test_from_pandas_custom_columns_datetimes_and_string_ids() -> None:
    df = pd.DataFrame({"uid": ["a", "b", "a"], "sku": [10, 11, 12], "stars": [4.0, 5.0, 3.5],
                       "when": pd.to_datetime([0, 60, 120], unit="s")})
    x = Interactions.from_pandas(df, user="uid", item="sku", rating="stars", timestamp="when")
    assert x.users.ids == ("a", "b") and x.items.ids == (10, 11, 12)
    assert x.timestamp.tolist() == [0, 60, 120] and x.rating.tolist() == [4.0, 5.0, 3.5]


def test_from_pandas_errors_name_the_column_and_row() -> None:
    with pytest.raises(DataError, match=r"missing column\(s\) \['score'\]"):
        Interactions.from_pandas(pd.DataFrame({"user_id": [1], "item_id": [2]}), rating="score")
    with pytest.raises(DataError, match="row 2: column 'rating': 'x' is not a number"):
        Interactions.from_pandas(pd.DataFrame({"user_id": [1, 2], "item_id": [2, 3], "rating": ["1", "x"]}))


def test_from_polars_matches_from_pandas(events: Interactions) -> None:
    pl = pytest.importorskip("polars")
    df = events.to_pandas()
    a, b = Interactions.from_polars(pl.from_pandas(df)), Interactions.from_pandas(df)
    assert a.users.ids == b.users.ids and (a.item == b.item).all()
    with pytest.raises(DataError, match="polars"):
        Interactions.from_polars(df)


def test_fit_takes_a_dataframe_and_a_dataframe_valid(events: Interactions) -> None:
    df = events.to_pandas().rename(columns={"user_id": "uid"})
    model = EASERecommender().fit(df, columns={"user": "uid"})
    reference = EASERecommender().fit(events)
    EASERecommender().fit(df, df.head(50), columns={"user": "uid"})  # a DataFrame valid, mapped onto train's ids
    a, _ = model.recommend(list(events.users.ids[:5]), N=5)
    b, _ = reference.recommend(list(events.users.ids[:5]), N=5)
    assert (a == b).all()
    with pytest.raises(DataError, match="expected Interactions or a pandas"):
        EASERecommender().fit([1, 2, 3])


def test_unknown_users_follow_one_rule(events: Interactions) -> None:
    model = EASERecommender().fit(events)
    known = events.users.ids[0]
    with pytest.warns(UnknownIdWarning, match=r"1 unknown user id\(s\): 424242: served the most popular"):
        ids, scores = model.recommend([known, 424242], N=5)
    pop = np.bincount(events.item, minlength=events.n_items)
    assert ids.shape == (2, 5) and list(ids[1]) == list(events.items.decode(np.argsort(-pop, kind="stable")[:5]))
    assert scores[1] == pytest.approx(np.sort(pop)[::-1][:5] / pop.sum())  # share of training events
    with pytest.warns(UnknownIdWarning, match="left out"):
        ids, _ = model.recommend([known, 424242], N=5, unknown="skip")
    assert ids.shape == (1, 5)
    with pytest.raises(UnknownIdError, match="424242"):
        model.recommend([known, 424242], N=5, unknown="error")
    with pytest.raises(ConfigError, match="unknown="):
        model.recommend([known], unknown="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.recommend([known], N=5)  # no warning when every id is known


def test_unknown_summary_names_at_most_ten(events: Interactions) -> None:
    model = EASERecommender().fit(events)
    with pytest.warns(UnknownIdWarning, match=r"12 unknown user id\(s\): 1000, .*1009, \.\.\. \(2 more\)"):
        model.recommend(list(range(1000, 1012)), N=3)


def test_exclude_masks_items_per_row(events: Interactions) -> None:
    model = EASERecommender().fit(events)
    users = list(events.users.ids[:2])
    first, _ = model.recommend(users, N=5)
    again, _ = model.recommend(users, N=5, exclude=[list(first[0][:2]), []])
    assert not set(first[0][:2]) & set(again[0]) and list(again[1]) == list(first[1])


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_tables_by_extension_round_trip(tmp_path: Path, events: Interactions, suffix: str) -> None:
    path = write_table(events.to_pandas(), tmp_path / f"events{suffix}")
    assert table_format(path) == suffix[1:] and oct(path.stat().st_mode & 0o777) == "0o644"
    x = load_table(path)
    assert x.to_pandas().equals(events.to_pandas())
    assert len(read_table(path)) == len(events)


def test_write_table_refuses_an_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"name the file \*\.parquet, \*\.csv, \*\.jsonl"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "out.txt")
    assert not list(tmp_path.iterdir())
