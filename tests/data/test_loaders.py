"""Loaders on the real files in ../shared/data and on small files of every supported layout."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from turborec.data import Interactions, load_csv, load_dataset, load_diginetica, load_movielens, load_parquet
from turborec.errors import ConfigError, DataError


def _events(x: Interactions) -> list[tuple]:
    """(user id, item id, rating, timestamp) per event, decoded through the vocabularies."""
    users = x.users.decode(x.user).tolist()
    items = x.items.decode(x.item).tolist()
    ratings = x.rating.tolist() if x.rating is not None else [None] * len(x)
    times = x.timestamp.tolist() if x.timestamp is not None else [None] * len(x)
    return list(zip(users, items, ratings, times))


def _tokens(x: Interactions, item_id: object) -> list[str]:
    f = x.item_features
    assert f is not None
    i = x.items.index(item_id)
    return [f.vocab.ids[t] for t in f.values[f.offsets[i] : f.offsets[i + 1]]]


# ------------------------------------------------------------ real data
def test_ml_latest_small_matches_an_independent_parse(ml_small_dir: Path) -> None:
    x = load_movielens(ml_small_dir)
    assert (len(x), x.n_users, x.n_items) == (100_836, 610, 9_724)
    with open(ml_small_dir / "ratings.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    expected = [(int(r["userId"]), int(r["movieId"]), float(r["rating"]), int(r["timestamp"])) for r in rows]
    assert _events(x) == expected
    assert x.user.dtype == np.int32 and x.timestamp is not None and x.timestamp.dtype == np.int64

    with open(ml_small_dir / "movies.csv", newline="", encoding="utf-8") as fh:
        movies = {int(r["movieId"]): r for r in csv.DictReader(fh)}
    f = x.item_features
    assert f is not None and f.n_items == x.n_items and f.titles is not None
    for item_index, movie_id in enumerate(x.items.ids):
        genres = movies[movie_id]["genres"]
        want = [] if genres == "(no genres listed)" else genres.split("|")
        assert _tokens(x, movie_id) == want
        assert f.titles[item_index] == movies[movie_id]["title"]
    # a title with commas inside quotes stays whole
    assert f.titles[x.items.index(11)] == "American President, The (1995)"
    assert {"Drama", "Comedy", "Sci-Fi", "IMAX"} <= set(f.vocab.ids)


def test_ml_latest_small_from_the_ratings_file_itself(ml_small_dir: Path) -> None:
    x = load_movielens(ml_small_dir / "ratings.csv")
    assert len(x) == 100_836 and x.item_features is not None


def test_crlf_line_endings_as_in_the_grouplens_original(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\r\n1,11,4.5,100\r\n2,11,3.0,101\r\n")
    (tmp_path / "movies.csv").write_bytes(
        b'movieId,title,genres\r\n11,"American President, The (1995)",Comedy|Drama\r\n'
    )
    x = load_movielens(tmp_path)
    assert _events(x) == [(1, 11, 4.5, 100), (2, 11, 3.0, 101)]
    assert _tokens(x, 11) == ["Comedy", "Drama"]
    assert x.item_features is not None and x.item_features.titles == ("American President, The (1995)",)


def test_diginetica_sample_sessions_and_click_order(shared_data: Path) -> None:
    path = shared_data / "diginetica-sample" / "sample_train-item-views.csv"
    if not path.is_file():
        pytest.skip("diginetica sample not available")
    x = load_diginetica(path)
    assert (len(x), x.n_users, x.n_items) == (12_391, 2_986, 7_139)
    assert x.users.name == "session" and x.rating is None and x.timestamp is not None
    # independent parse: each session's items ordered by (date, timeframe)
    sessions: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh, delimiter=";"):
            sessions[int(r["session_id"])].append((r["eventdate"], int(r["timeframe"]), int(r["item_id"])))
    offsets, items = x.user_histories()
    for user_index, session_id in enumerate(x.users.ids):
        got = x.items.decode(items[offsets[user_index] : offsets[user_index + 1]]).tolist()
        want = [item for _, _, item in sorted(sessions[session_id], key=lambda e: (e[0], e[1]))]
        assert got == want, session_id
    # timestamp = eventdate 00:00 UTC + timeframe in whole seconds (2016-05-09 = 1462752000)
    first = x.timestamp[x.user == x.users.index(1)]
    assert first.min() == 1462752000 + 75848 // 1000
    assert x.timestamp.min() >= 1451779200 and x.timestamp.max() < 1464825600  # 2016-01-03 .. 2016-06-02


# ------------------------------------------------- other MovieLens layouts
def test_ml100k_layout(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t999\t1\t881250950\n")
    flags = ["0"] * 19
    comedy = flags.copy()
    comedy[5] = "1"
    crime_thriller = flags.copy()
    crime_thriller[6] = crime_thriller[16] = "1"
    lines = [
        "242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)|" + "|".join(comedy),
        '302|L.A. Confidential "noir" (1997)|01-Jan-1997||http://x|' + "|".join(crime_thriller),
        "303|Caf\xe9 (1997)|01-Jan-1997||http://x|" + "|".join(["1"] + ["0"] * 18),
    ]
    (tmp_path / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    x = load_movielens(tmp_path)
    assert _events(x) == [(196, 242, 3.0, 881250949), (186, 302, 3.0, 891717742), (196, 999, 1.0, 881250950)]
    assert x.meta["format"] == "movielens-100k"
    assert _tokens(x, 242) == ["Comedy"]
    assert _tokens(x, 302) == ["Crime", "Thriller"]
    assert _tokens(x, 999) == []  # rated but not in u.item
    f = x.item_features
    assert f is not None and f.titles == ("Kolya (1996)", 'L.A. Confidential "noir" (1997)', "")


def test_ml1m_layout_latin1_titles(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    movies = "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
    (tmp_path / "movies.dat").write_bytes(
        (movies + "17::Am\xe9lie: the film (2001)::Comedy|Romance\n").encode("latin-1")
    )
    x = load_movielens(tmp_path)
    assert _events(x) == [(1, 1193, 5.0, 978300760), (1, 661, 3.0, 978302109), (2, 1193, 4.0, 978298413)]
    assert _tokens(x, 661) == ["Animation", "Children's", "Musical"]
    assert x.item_features is not None and x.item_features.titles == (
        "One Flew Over the Cuckoo's Nest (1975)",
        "James and the Giant Peach (1996)",
    )


def test_ml1m_style_without_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("10::20::4\n10::21::2.5\n11::20::5\n")
    x = load_movielens(path)
    assert x.timestamp is None
    assert _events(x) == [(10, 20, 4.0, None), (10, 21, 2.5, None), (11, 20, 5.0, None)]
    assert x.item_features is None  # no movies.dat beside it


# --------------------------------------------------------- malformed files
@pytest.mark.parametrize(
    ("name", "content", "line", "fragment"),
    [
        ("ratings.csv", "userId,itemId,rating,timestamp\n1,2,3.0,4\n", 1, "missing column(s) ['movieId']"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.0,4\n1,abc,4.0,5\n", 3, "'abc' is not a number"),
        (
            "ratings.csv",
            "userId,movieId,rating,timestamp\n1,2,3.0,4\n1,3,4.0,5\n2,4,1.0,6,7\n",
            4,
            "expected 4 fields, saw 5",
        ),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.0,4\n\n1,3\n", 4, "missing value in column 'rating'"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,good,4\n", 2, "'good' is not a number"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1.5,2,3.0,4\n", 2, "1.5 is not an integer"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.0,4\n1,2,inf,4\n", 3, "inf is not a finite number"),
        ("u.data", "1\t2\t3\t4\n5\tx\t3\t4\n", 2, "'x' is not a number"),
        ("ratings.dat", "1::2::3::4\n1::2::3::4::5\n", 2, "expected 4 fields, saw 5"),
        ("ratings.dat", "1::2::3::4\n1::2::3\n", 2, "missing value in column 'timestamp'"),
    ],
)
def test_malformed_movielens_names_file_and_line(
    tmp_path: Path, name: str, content: str, line: int, fragment: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as info:
        load_movielens(tmp_path)
    assert f"{path}:{line}: " in str(info.value)
    assert fragment in str(info.value)
    assert info.value.source == str(path) and info.value.line == line


def test_empty_missing_and_header_only_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=f"{empty}: file is empty"):
        load_csv(empty, user="u", item="i")
    with pytest.raises(DataError, match="file not found"):
        load_movielens(tmp_path / "nope" / "ratings.csv")
    with pytest.raises(DataError, match="no MovieLens ratings file"):
        load_movielens(tmp_path)
    header_only = tmp_path / "ratings.csv"
    header_only.write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(DataError, match="no data rows"):
        load_movielens(tmp_path)


def test_malformed_movies_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.0,4\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n2,Heat (1995),Action\nx,Bad,Drama\n")
    with pytest.raises(DataError, match=r"movies\.csv:3: .*'x' is not a number"):
        load_movielens(tmp_path)


def test_diginetica_bad_date_and_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "views.csv"
    path.write_text("session_id;user_id;item_id;timeframe;eventdate\n1;NA;5;100;2016-05-09\n1;NA;6;200;09/05/2016\n")
    with pytest.raises(DataError, match=rf"{path}:3: eventdate '09/05/2016' is not YYYY-MM-DD"):
        load_diginetica(path)
    path.write_text("session_id;user_id;timeframe;eventdate\n1;NA;100;2016-05-09\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['item_id'\]"):
        load_diginetica(path)


# ------------------------------------------------------------ generic tables
def test_load_csv_string_ids_and_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "events.tsv"
    path.write_text("ts\twho\twhat\tscore\n10\tu1\tNA\t1.5\n11\tu2\tb\t2\n12\tu1\tb\t0.5\n")
    x = load_csv(path, user="who", item="what", rating="score", timestamp="ts", sep="\t")
    assert _events(x) == [("u1", "NA", 1.5, 10), ("u2", "b", 2.0, 11), ("u1", "b", 0.5, 12)]  # 'NA' is an id here
    y = load_csv(path, user=1, item=2, sep="\t")  # positions work with a header too
    assert x.users == y.users and y.rating is None and y.timestamp is None


def test_load_csv_without_header_uses_positions(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("7,100,4\n8,100,5\n7,101,1\n")
    x = load_csv(path, user=0, item=1, rating=2, header=False)
    assert _events(x) == [(7, 100, 4.0, None), (8, 100, 5.0, None), (7, 101, 1.0, None)]
    with pytest.raises(DataError, match="0-based positions < 3"):
        load_csv(path, user=0, item=5, header=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['user', 'item'\]"):
        load_csv(path, user="user", item="item")


def test_load_parquet_round_trip(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "events.parquet"
    pd.DataFrame({"u": ["a", "b", "a"], "i": [3, 4, 4], "r": [1.0, 2.0, 3.0], "t": [5, 6, 7]}).to_parquet(path)
    x = load_csv(path, user="u", item="i", rating="r", timestamp="t")
    assert _events(x) == [("a", 3, 1.0, 5), ("b", 4, 2.0, 6), ("a", 4, 3.0, 7)]
    with pytest.raises(DataError, match=r"missing column\(s\) \['rating'\]"):
        load_parquet(path, user="u", item="i", rating="rating")
    pd.DataFrame({"u": ["a", None], "i": [1, 2]}).to_parquet(path)
    with pytest.raises(DataError, match="row 2: missing value in column 'u'"):
        load_parquet(path, user="u", item="i")
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_parquet(tmp_path / "fake.parquet", user="u", item="i")


def test_load_dataset_registry(tmp_path: Path, ml_small_dir: Path) -> None:
    assert len(load_dataset(ml_small_dir, "movielens")) == 100_836
    with pytest.raises(
        ConfigError, match="unknown dataset format 'movielen'; known formats: csv, diginetica, jsonl, movielens"
    ):
        load_dataset(ml_small_dir, "movielen")
    with pytest.raises(ConfigError, match="'csv'"):
        load_dataset(ml_small_dir / "ratings.csv", "csv", usr="userId")
    x = load_dataset(None, "synthetic", n_users=200, n_items=100, n_interactions=3000, seed=3)
    assert (len(x), x.n_users, x.n_items) == (3000, 200, 100)
    config = tmp_path / "syn.json"
    config.write_text('{"n_users": 200, "n_items": 100, "n_interactions": 3000, "seed": 3}')
    y = load_dataset(config, "synthetic")
    np.testing.assert_array_equal(x.item, y.item)
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset(None, "synthetic", n_user=5)


@pytest.mark.parametrize(
    ("name", "content", "line", "fragment"),
    [
        ("u.data", "1\t2\t3\t4\t5\n1\t2\t3\t4\t5\n", 1, "expected 4 fields, saw 5"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4,5\n", 2, "more fields than the header"),
    ],
)
def test_extra_fields_on_every_line_are_not_silently_dropped(
    tmp_path: Path, name: str, content: str, line: int, fragment: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{name}:{line}: .*{fragment}"):
        load_movielens(path)
