"""Loaders: data files -> :class:`Interactions` with vocabularies of the external ids.

pandas' C parser does the reading; every column is then validated so a bad
file raises :class:`DataError` naming the file and line (a 1-based line number
of the file, header included) instead of a traceback or silently wrong data.
pandas is imported on first use so ``import turborec.data`` stays light.
"""

from __future__ import annotations

import csv
import gzip
import inspect
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from turborec._util.optional import has_module
from turborec.data.interactions import Interactions, ItemFeatures
from turborec.data.synthetic import SyntheticConfig, generate_synthetic
from turborec.data.vocab import Vocabulary
from turborec.errors import ConfigError, DataError, DependencyError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_COLUMNS",
    "LOADERS",
    "data_provenance",
    "frame_to_interactions",
    "load_csv",
    "load_dataset",
    "load_diginetica",
    "load_jsonl",
    "load_movielens",
    "load_parquet",
    "load_table",
]

PathLike = str | os.PathLike[str]
Column = str | int  # a header name, or a 0-based position

# MovieLens 100K's u.item genre flags, in file order (used when u.genre is absent)
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
NO_GENRE = frozenset({"(no genres listed)", "unknown"})  # placeholders, not genres
# column names a DataFrame or table file is read with unless told otherwise; rating and timestamp
# are used when present (naming another column that is absent is an error)
DEFAULT_COLUMNS = {"user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp"}


# ------------------------------------------------------------------ reading
@dataclass(frozen=True)
class _Table:
    """A parsed file and how to point at its rows: row label + first_line = line number."""

    frame: pd.DataFrame
    source: str
    first_line: int | None  # None: not a text file (Parquet); errors then name the row

    def fail(self, message: str, label: Any = None) -> DataError:
        if label is None:
            return DataError(message, source=self.source)
        if self.first_line is None:
            return DataError(f"row {int(label) + 1}: {message}", source=self.source)
        return DataError(message, source=self.source, line=int(label) + self.first_line)


def _existing_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", source=str(p))
    if not p.is_file():
        raise DataError("not a regular file", source=str(p))
    if p.stat().st_size == 0:
        raise DataError("file is empty", source=str(p))
    return p


def _read_text(
    path: Path,
    *,
    sep: str,
    header: bool,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    quoting: int = csv.QUOTE_MINIMAL,
) -> _Table:
    # All columns are read, even unused ones: with usecols pandas silently ignores extra fields on a line.
    import pandas as pd

    source: Any = path
    if len(sep) > 1:  # e.g. MovieLens-1M '::': swap for one byte so the fast C parser can read it
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            source = io.BytesIO(fh.read().replace(sep.encode(encoding), b"\x1f"))
        sep = "\x1f"
    try:
        frame = pd.read_csv(
            source, sep=sep, header=0 if header else None, encoding=encoding,
            quoting=quoting, skip_blank_lines=False, keep_default_na=False, na_values=[""], engine="c",
        )  # fmt: skip
    except pd.errors.EmptyDataError:
        raise DataError("file is empty (no header, no data)", source=str(path)) from None
    except pd.errors.ParserError as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match:
            want, line, saw = (int(g) for g in match.groups())
            raise DataError(f"expected {want} fields, saw {saw}", source=str(path), line=line) from None
        raise DataError(f"cannot parse: {str(exc).strip()}", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid {encoding} text ({exc.reason} at byte {exc.start})", source=str(path)) from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas takes extra leading fields as an index
        raise DataError(f"data rows have more fields than the header ({len(frame.columns)})", source=str(path), line=2)
    if names is not None:  # headerless: the first line fixed the field count, later lines were checked against it
        if len(frame.columns) != len(names):
            raise DataError(f"expected {len(names)} fields, saw {len(frame.columns)}", source=str(path), line=1)
        frame.columns = list(names)
    frame = frame.dropna(how="all")  # blank lines; the index still counts them, so line numbers stay right
    if frame.empty:
        raise DataError("no data rows", source=str(path))
    return _Table(frame, str(path), 2 if header else 1)


def _first_line(path: Path, encoding: str = "utf-8") -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding=encoding, errors="replace", newline="") as fh:
        return fh.readline().rstrip("\r\n")


def _header(path: Path, sep: str, encoding: str = "utf-8") -> list[str]:
    """The fields of the first line (the header, or the first record of a headerless file)."""
    first = _first_line(path, encoding)
    if not first.strip():
        raise DataError("file is empty or starts with a blank line", source=str(path), line=1)
    return next(csv.reader([first], delimiter=sep)) if len(sep) == 1 else first.split(sep)


def _require_columns(path: Path, present: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; the header has {list(present)}",
            source=str(path),
            line=1 if present else None,
        )


# --------------------------------------------------------------- validation
def _column(table: _Table, col: Column) -> pd.Series:
    series = table.frame[col]
    missing = series.isna().to_numpy()
    if missing.any():
        raise table.fail(f"missing value in column {_name(col)}", series.index[int(np.argmax(missing))])
    return series


def _numbers(table: _Table, col: Column) -> np.ndarray:
    """float64 values of a column that must be all numbers."""
    import pandas as pd

    series = _column(table, col)
    if pd.api.types.is_bool_dtype(series):  # pandas reads a column of True/False as booleans
        raise table.fail(f"column {_name(col)}: {series.iloc[0]!r} is not a number", series.index[0])
    if not pd.api.types.is_numeric_dtype(series):
        parsed = pd.to_numeric(series, errors="coerce")
        bad = parsed.isna().to_numpy()
        if bad.any():
            at = int(np.argmax(bad))
            raise table.fail(f"column {_name(col)}: {series.iloc[at]!r} is not a number", series.index[at])
        series = parsed
    values = series.to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        at = int(np.argmin(finite))
        raise table.fail(f"column {_name(col)}: {values[at].item()!r} is not a finite number", series.index[at])
    return values


def _integers(table: _Table, col: Column) -> np.ndarray:
    """int64 values of a column that must be all integers (ids, epoch seconds)."""
    import pandas as pd

    series = table.frame[col]
    if pd.api.types.is_integer_dtype(series) and not series.isna().any():
        return series.to_numpy(dtype=np.int64)
    values = _numbers(table, col)
    whole = (values == np.floor(values)) & (np.abs(values) < 2.0**53)
    if not whole.all():
        at = int(np.argmin(whole))
        raise table.fail(f"column {_name(col)}: {values[at].item()!r} is not an integer", series.index[at])
    return values.astype(np.int64)


def _ids(table: _Table, col: Column) -> np.ndarray:
    """Ids kept as given: int64 when every value is an integer, else the strings."""
    import pandas as pd

    series = _column(table, col)
    if pd.api.types.is_integer_dtype(series):
        return series.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(series):
        return _integers(table, col)  # '1.5' as an id is almost surely a wrong column mapping
    return series.astype(str).to_numpy(dtype=object)


def _name(col: Column) -> str:
    return f"{col!r}" if isinstance(col, str) else f"#{col} (0-based)"


def _build(
    user: np.ndarray,
    item: np.ndarray,
    *,
    rating: np.ndarray | None = None,
    timestamp: np.ndarray | None = None,
    user_name: str = "user",
    item_name: str = "item",
    meta: dict[str, Any] | None = None,
) -> Interactions:
    import pandas as pd

    user_codes, user_ids = pd.factorize(user)  # order of first appearance, like Vocabulary.from_values
    item_codes, item_ids = pd.factorize(item)
    return Interactions(
        user=user_codes.astype(np.int32),
        item=item_codes.astype(np.int32),
        users=Vocabulary._from_unique(tuple(np.asarray(user_ids).tolist()), user_name),
        items=Vocabulary._from_unique(tuple(np.asarray(item_ids).tolist()), item_name),
        rating=None if rating is None else rating.astype(np.float32),
        timestamp=None if timestamp is None else timestamp.astype(np.int64),
        meta=dict(meta or {}),
    )


# ---------------------------------------------------------------- MovieLens
def load_movielens(path: PathLike) -> Interactions:
    """MovieLens from a directory or a ratings file; the layout is detected.

    - latest / latest-small: ``ratings.csv`` (``userId,movieId,rating[,timestamp]``) + ``movies.csv``
    - 100K: ``u.data`` (tab-separated user item rating timestamp) + ``u.item`` (latin-1, 19 genre flags)
    - 1M: ``ratings.dat`` (``::``-separated, with or without the timestamp field) + ``movies.dat`` (latin-1)

    Genres become ``item_features`` tokens aligned with the item vocabulary
    (placeholders such as "(no genres listed)" are dropped); rated movies absent
    from the movies file get no tokens and an empty title. Without a movies file
    there are no item features.
    """
    ratings_path, layout = _find_movielens(Path(path))
    if layout == "latest":
        present = _header(ratings_path, ",")
        _require_columns(ratings_path, present, ["userId", "movieId", "rating"])
        table = _read_text(ratings_path, sep=",", header=True)
    elif layout == "100k":
        names = ["userId", "movieId", "rating", "timestamp"]
        table = _read_text(ratings_path, sep="\t", header=False, names=names, encoding="latin-1")
    else:
        n_fields = len(_header(ratings_path, "::", "latin-1"))
        if n_fields not in (3, 4):
            raise DataError(f"expected 3 or 4 '::'-separated fields, saw {n_fields}", source=str(ratings_path), line=1)
        names = ["userId", "movieId", "rating", "timestamp"][:n_fields]
        table = _read_text(ratings_path, sep="::", header=False, names=names, encoding="latin-1")
    has_time = "timestamp" in table.frame.columns  # optional in the latest layout
    x = _build(
        _integers(table, "userId"),
        _integers(table, "movieId"),
        rating=_numbers(table, "rating"),
        timestamp=_integers(table, "timestamp") if has_time else None,
        meta={"format": f"movielens-{layout}", "source": str(ratings_path)},
    )
    movies_path = ratings_path.parent / {"latest": "movies.csv", "100k": "u.item", "1m": "movies.dat"}[layout]
    if not movies_path.is_file():
        return x
    movie_ids, titles, genres = _read_movies(movies_path, layout)
    row_of = {m: r for r, m in enumerate(movie_ids.tolist())}
    rows = [row_of.get(m, -1) for m in x.items.ids]
    features = ItemFeatures.from_token_lists(
        [genres[r] if r >= 0 else [] for r in rows], titles=[titles[r] if r >= 0 else "" for r in rows]
    )
    return Interactions(
        x.user, x.item, x.users, x.items, x.rating, x.timestamp, item_features=features,
        meta={**x.meta, "movies": str(movies_path)},
    )  # fmt: skip


def _find_movielens(path: Path) -> tuple[Path, str]:
    if path.is_dir():
        for name, layout in (("ratings.csv", "latest"), ("u.data", "100k"), ("ratings.dat", "1m")):
            if (path / name).is_file():
                return _existing_file(path / name), layout
        raise DataError(
            "no MovieLens ratings file here (looked for ratings.csv, u.data, ratings.dat)", source=str(path)
        )
    path = _existing_file(path)
    if path.name == "u.data":
        return path, "100k"
    if path.suffix == ".dat":
        return path, "1m"
    line = _first_line(path, "latin-1")
    if "::" in line:
        return path, "1m"
    if "\t" in line:
        return path, "100k"
    return path, "latest"


def _read_movies(path: Path, layout: str) -> tuple[np.ndarray, list[str], list[list[str]]]:
    """(movie ids, titles, genre lists) from movies.csv / u.item / movies.dat."""
    if layout == "100k":
        genre_names = _ml100k_genres(path.parent / "u.genre")
        names = ["movieId", "title", "release", "video_release", "imdb", *genre_names]
        table = _read_text(path, sep="|", header=False, names=names, encoding="latin-1", quoting=csv.QUOTE_NONE)
        flags = np.stack([_integers(table, g) for g in genre_names], axis=1) > 0
        genres = [[g for g, on in zip(genre_names, row) if on and g not in NO_GENRE] for row in flags.tolist()]
    else:
        if layout == "latest":
            _require_columns(path, _header(path, ","), ["movieId", "title", "genres"])
            table = _read_text(path, sep=",", header=True)
        else:
            names = ["movieId", "title", "genres"]
            table = _read_text(path, sep="::", header=False, names=names, encoding="latin-1", quoting=csv.QUOTE_NONE)
        lists = table.frame["genres"].fillna("").astype(str).tolist()
        genres = [[g for g in s.split("|") if g and g not in NO_GENRE] for s in lists]
    titles = table.frame["title"].fillna("").astype(str).tolist()
    return _integers(table, "movieId"), titles, genres


def _ml100k_genres(path: Path) -> list[str]:
    if not path.is_file():
        return list(ML100K_GENRES)
    rows = [line.split("|") for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]
    try:
        return [name for name, _ in sorted(((r[0], int(r[1])) for r in rows), key=lambda p: p[1])]
    except (IndexError, ValueError):
        raise DataError("expected 'name|index' lines", source=str(path)) from None


# ---------------------------------------------------------- generic tables
def load_csv(
    path: PathLike,
    *,
    user: Column,
    item: Column,
    rating: Column | None = None,
    timestamp: Column | None = None,
    sep: str = ",",
    header: bool = True,
) -> Interactions:
    """A delimited file (or ``.parquet``) with a column mapping; columns are names or 0-based positions.

    Ids are kept as given (integers when every id is one, else strings);
    ``rating`` must be numeric and ``timestamp`` integer epoch seconds.
    """
    p = _existing_file(path)
    if p.name.endswith(".parquet"):
        return load_parquet(p, user=user, item=item, rating=rating, timestamp=timestamp)
    wanted = [user, item] + [c for c in (rating, timestamp) if c is not None]
    if header:
        present = _header(p, sep)
        cols = [present[c] if isinstance(c, int) and 0 <= c < len(present) else c for c in wanted]
        _require_columns(p, present, [str(c) for c in cols])
    else:
        n_fields = len(_header(p, sep))
        bad = [c for c in wanted if not isinstance(c, int) or not 0 <= c < n_fields]
        if bad:
            raise DataError(f"without a header, columns are 0-based positions < {n_fields}; got {bad}", source=str(p))
        cols = list(wanted)
    table = _read_text(p, sep=sep, header=header)
    return _from_table(table, *cols, has_rating=rating is not None, has_time=timestamp is not None, fmt="csv")


def load_parquet(
    path: PathLike, *, user: Column, item: Column, rating: Column | None = None, timestamp: Column | None = None
) -> Interactions:
    """A Parquet file with a column mapping (needs ``pyarrow``: ``pip install 'turborec[parquet]'``)."""
    if not has_module("pyarrow"):
        raise DependencyError("pyarrow", "parquet")
    import pandas as pd
    import pyarrow.parquet as pq

    p = _existing_file(path)
    try:
        present = list(pq.read_schema(p).names)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"not a readable Parquet file ({exc})", source=str(p)) from None
    wanted = [user, item] + [c for c in (rating, timestamp) if c is not None]
    cols = [present[c] if isinstance(c, int) and 0 <= c < len(present) else c for c in wanted]
    _require_columns(p, present, [str(c) for c in cols])
    frame = pd.read_parquet(p, columns=list(dict.fromkeys(str(c) for c in cols)))
    if frame.empty:
        raise DataError("no data rows", source=str(p))
    table = _Table(frame.reset_index(drop=True), str(p), None)
    return _from_table(table, *cols, has_rating=rating is not None, has_time=timestamp is not None, fmt="parquet")


def _from_table(table: _Table, *cols: Column, has_rating: bool, has_time: bool, fmt: str) -> Interactions:
    user_col, item_col, *rest = cols
    rating_col = rest.pop(0) if has_rating else None
    time_col = rest.pop(0) if has_time else None
    return _build(
        _ids(table, user_col),
        _ids(table, item_col),
        rating=_numbers(table, rating_col) if rating_col is not None else None,
        timestamp=_integers(table, time_col) if time_col is not None else None,
        meta={"format": fmt, "source": table.source},
    )


def _optional(present: Sequence[Any], col: Column | None, default: str) -> Column | None:
    """An optional column: used when present; the default name may be absent, any other name may not."""
    if col is None:
        return None
    if isinstance(col, int) or col in present or col != default:
        return col
    return None


def frame_to_interactions(
    frame: pd.DataFrame,
    *,
    user: Column = DEFAULT_COLUMNS["user"],
    item: Column = DEFAULT_COLUMNS["item"],
    rating: Column | None = DEFAULT_COLUMNS["rating"],
    timestamp: Column | None = DEFAULT_COLUMNS["timestamp"],
    source: str = "DataFrame",
) -> Interactions:
    """A pandas DataFrame -> Interactions, validated like a file (errors name the row).

    ``rating`` and ``timestamp`` are used when those columns exist (pass None to ignore them);
    datetime timestamps become epoch seconds. Ids are kept as given.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(frame).__name__}", source=source)
    present = [str(c) for c in frame.columns]
    rating = _optional(present, rating, DEFAULT_COLUMNS["rating"])
    timestamp = _optional(present, timestamp, DEFAULT_COLUMNS["timestamp"])
    wanted = [user, item] + [c for c in (rating, timestamp) if c is not None]
    cols = [present[c] if isinstance(c, int) and 0 <= c < len(present) else c for c in wanted]
    missing = [c for c in cols if c not in present]
    if missing:
        raise DataError(f"missing column(s) {missing}; the frame has {present}", source=source)
    if frame.empty:
        raise DataError("no rows", source=source)
    data = frame.reset_index(drop=True)
    data.columns = present
    if timestamp is not None:
        tcol = str(cols[-1])
        if pd.api.types.is_datetime64_any_dtype(data[tcol]):
            stamps = data[tcol]
            if getattr(stamps.dt, "tz", None) is None:
                stamps = stamps.dt.tz_localize("UTC")
            seconds = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
            data = data.assign(**{tcol: seconds})
    table = _Table(data, source, None)
    return _from_table(table, *cols, has_rating=rating is not None, has_time=timestamp is not None, fmt="dataframe")


def load_jsonl(
    path: PathLike,
    *,
    user: Column = DEFAULT_COLUMNS["user"],
    item: Column = DEFAULT_COLUMNS["item"],
    rating: Column | None = DEFAULT_COLUMNS["rating"],
    timestamp: Column | None = DEFAULT_COLUMNS["timestamp"],
) -> Interactions:
    """A JSON Lines file (one object per line) with a column mapping, as :func:`frame_to_interactions`."""
    from turborec.data.tables import read_table

    p = _existing_file(path)
    frame = read_table(p, fmt="jsonl")
    x = frame_to_interactions(frame, user=user, item=item, rating=rating, timestamp=timestamp, source=str(p))
    return replace(x, meta={"format": "jsonl", "source": str(p)})


def load_table(
    path: PathLike,
    *,
    user: Column = DEFAULT_COLUMNS["user"],
    item: Column = DEFAULT_COLUMNS["item"],
    rating: Column | None = DEFAULT_COLUMNS["rating"],
    timestamp: Column | None = DEFAULT_COLUMNS["timestamp"],
    sep: str | None = None,
) -> Interactions:
    """A CSV / TSV / Parquet / JSON Lines file chosen by its extension (other names: CSV).

    Columns default to ``user_id,item_id[,rating][,timestamp]``; rating and timestamp are
    used when the file has them.
    """
    from turborec.data.tables import table_format

    p = _existing_file(path)
    fmt = table_format(p) or "csv"
    if fmt == "jsonl":
        return load_jsonl(p, user=user, item=item, rating=rating, timestamp=timestamp)
    if fmt == "parquet":
        if not has_module("pyarrow"):
            raise DependencyError("pyarrow", "parquet")
        import pyarrow.parquet as pq

        try:
            present = list(pq.read_schema(p).names)
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise DataError(f"not a readable Parquet file ({exc})", source=str(p)) from None
        return load_parquet(p, user=user, item=item, rating=_optional(present, rating, DEFAULT_COLUMNS["rating"]),
                            timestamp=_optional(present, timestamp, DEFAULT_COLUMNS["timestamp"]))
    delimiter = sep or ("\t" if fmt == "tsv" else ",")
    present = _header(p, delimiter)
    return load_csv(p, user=user, item=item, rating=_optional(present, rating, DEFAULT_COLUMNS["rating"]),
                    timestamp=_optional(present, timestamp, DEFAULT_COLUMNS["timestamp"]), sep=delimiter)


# --------------------------------------------------------------- Diginetica
def load_diginetica(path: PathLike) -> Interactions:
    """DIGINETICA ``train-item-views``: ``session_id;user_id;item_id;timeframe;eventdate``.

    Sessions are the "users" (most ``user_id`` are NA). ``timestamp`` = the
    eventdate (YYYY-MM-DD at 00:00 UTC, or epoch seconds) + ``timeframe`` ms,
    in whole seconds. Events are ordered by session (first appearance) and, inside
    a session, by eventdate + timeframe at ms precision (ties keep file order), so
    the array order is each session's click sequence even within one second.
    """
    import pandas as pd

    p = _existing_file(path)
    _require_columns(p, _header(p, ";"), ["session_id", "item_id", "timeframe", "eventdate"])
    table = _read_text(p, sep=";", header=True)
    session = _integers(table, "session_id")
    item = _integers(table, "item_id")
    timeframe_ms = _integers(table, "timeframe")
    dates = _column(table, "eventdate")
    if pd.api.types.is_numeric_dtype(dates):
        day_s = _integers(table, "eventdate")
    else:
        parsed = pd.to_datetime(dates, format="%Y-%m-%d", errors="coerce", utc=True)
        bad = parsed.isna().to_numpy()
        if bad.any():
            at = int(np.argmax(bad))
            raise table.fail(f"eventdate {dates.iloc[at]!r} is not YYYY-MM-DD", dates.index[at])
        day_s = ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
    session_rank, _ = pd.factorize(session)
    order = np.lexsort((day_s * 1000 + timeframe_ms, session_rank))
    return _build(
        session[order],
        item[order],
        timestamp=(day_s + timeframe_ms // 1000)[order],
        user_name="session",
        meta={"format": "diginetica", "source": str(p), "user_field": "session_id"},
    )


# --------------------------------------------------------------- provenance
def data_provenance(data: Interactions) -> dict[str, Any]:
    """What a model was trained on, without any path: the format and each file read (name, bytes, sha256).

    A path recorded in an artifact is relative to wherever training ran (or names a private
    folder); the name, size and hash identify the data anywhere. Synthetic data records its config.
    """
    from turborec._util.artifact import sha256_file

    files = [data.meta[k] for k in ("source", "movies") if isinstance(data.meta.get(k), str)]
    described = [
        {"file": Path(f).name, "bytes": Path(f).stat().st_size, "sha256": sha256_file(Path(f))}
        for f in files
        if Path(f).is_file()
    ]
    if data.meta.get("format") == "synthetic":
        return {"format": "synthetic", "config": data.meta.get("config")}
    if not described:
        return {"format": str(data.meta.get("format", "unknown"))}
    return {"format": str(data.meta.get("format", "")), "files": described}


# ----------------------------------------------------------------- registry
def _load_synthetic(path: PathLike | None = None, **options: Any) -> Interactions:
    """Synthetic data; ``path`` may name a JSON file of :class:`SyntheticConfig` fields (options override)."""
    fields: dict[str, Any] = {}
    if path is not None:
        p = _existing_file(path)
        try:
            fields = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not a JSON synthetic config ({exc})", source=str(p)) from None
        if not isinstance(fields, dict):
            raise DataError("a synthetic config must be a JSON object", source=str(p))
    return generate_synthetic(SyntheticConfig.from_dict({**fields, **options}))


LOADERS: dict[str, Callable[..., Interactions]] = {
    "movielens": load_movielens,
    "csv": load_csv,
    "parquet": load_parquet,
    "jsonl": load_jsonl,
    "table": load_table,
    "diginetica": load_diginetica,
    "synthetic": _load_synthetic,
}


def load_dataset(path: PathLike | None, format: str, **options: Any) -> Interactions:
    """Load ``path`` with the loader registered as ``format`` (see ``LOADERS``); ``options`` go to it."""
    loader = LOADERS.get(format)
    if loader is None:
        raise ConfigError(f"unknown dataset format {format!r}; known formats: {', '.join(sorted(LOADERS))}")
    if path is None and format != "synthetic":
        raise ConfigError(f"dataset format {format!r} needs a path")
    try:
        inspect.signature(loader).bind(path, **options)
    except TypeError as exc:
        raise ConfigError(f"dataset format {format!r}: {exc}") from None
    return loader(path, **options)
