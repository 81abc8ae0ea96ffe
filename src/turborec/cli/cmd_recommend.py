"""Top-k recommendations from a saved model.

``--user 42`` prints one list. ``--users FILE`` takes a file of user ids (one per line) or an
interactions file (.csv / .parquet / .jsonl with a user_id column: its unique users, in
first-seen order) and writes ``user,rank,item,score`` rows to ``--out``: Parquet for .parquet,
CSV for .csv, JSON Lines for .jsonl (anything else is refused); CSV on stdout without --out.
Items the user already interacted with are left out unless ``--include-seen``; ``--exclude FILE``
(an interactions file, e.g. a validation split) leaves out more items per user.

Users the model never saw follow ``--unknown``: popular (default: the most popular training
items), skip (left out of the output) or error (exit 2); how many there were, and up to ten
of them, is reported on stderr. The same rule and default hold in Python
(``model.recommend(..., unknown="popular")``) and over HTTP.
"""

from __future__ import annotations

import argparse
from typing import Any

from turborec.cli.common import positive_int

USER_COLUMNS = ("user_id", "user", "userid", "session_id")
ITEM_COLUMNS = ("item_id", "item", "itemid", "movieid")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="DIR",
                   help="artifact written by 'turborec train' / 'compress' / 'tune --out' (that folder itself)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="one external user id")
    who.add_argument("--users", metavar="FILE",
                     help="user ids, one per line, or an interactions file (.csv/.parquet/.jsonl with user_id)")
    p.add_argument("-k", "--k", type=positive_int, default=10, help="list length (default 10)")
    p.add_argument("--out", metavar="FILE", help="output for --users: .parquet, .csv or .jsonl (default CSV on stdout)")
    p.add_argument("--include-seen", action="store_true", help="do not filter items the user already has")
    p.add_argument("--exclude", metavar="FILE",
                   help="interactions file (user_id,item_id) whose items are left out per user, e.g. a validation split")
    p.add_argument("--unknown", choices=("popular", "skip", "error"), default="popular",
                   help="users the model never saw: most popular items (default), left out, or an error")
    p.add_argument("--batch-size", type=positive_int, default=1024, help="users scored per batch")


def _column(frame: Any, names: tuple[str, ...], what: str, source: str) -> str:
    from turborec.errors import DataError

    lower = {str(c).lower(): str(c) for c in frame.columns}
    for name in names:
        if name in lower:
            return lower[name]
    raise DataError(f"no {what} column (looked for {', '.join(names)}); columns are {list(map(str, frame.columns))}",
                    source=source)


def _read_users(path: str) -> list[Any]:
    """Unique user ids in first-seen order, from a list of ids or an interactions table."""
    import pandas as pd

    from turborec.data.tables import read_table, table_format
    from turborec.errors import DataError

    fmt = table_format(path)
    if fmt in ("parquet", "jsonl"):
        frame = read_table(path)
        values = frame[_column(frame, USER_COLUMNS, "user", path)]
    else:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        lines = [line for line in lines if line]
        sep = "\t" if fmt == "tsv" else ","
        header = [h.strip().lower() for h in lines[0].split(sep)] if lines else []
        if (header and header[0] in USER_COLUMNS) or any(h in USER_COLUMNS for h in header[1:]):
            frame = read_table(path)  # a table with a header: its user column
            values = frame[_column(frame, USER_COLUMNS, "user", path)]
        else:  # one id per line (the first field of a CSV line)
            values = pd.Series([line.split(sep)[0].strip() for line in lines], dtype=object)
    users = pd.unique(values.dropna()).tolist()
    if not users:
        raise DataError("no user ids found", source=path)
    return users


def _read_exclude(path: str) -> dict[Any, list[Any]]:
    from turborec.data.tables import read_table

    frame = read_table(path)
    u, i = _column(frame, USER_COLUMNS, "user", path), _column(frame, ITEM_COLUMNS, "item", path)
    grouped = frame.groupby(frame[u].astype(str), sort=False)[i].agg(list)
    return dict(grouped.items())


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings

    import numpy as np

    from turborec.cli.common import info
    from turborec.data.tables import check_writable
    from turborec.data.vocab import unknown_summary
    from turborec.errors import UnknownIdError, UnknownIdWarning
    from turborec.loading import RETRIEVAL_LIKE, load
    from turborec.train import LoadedRanker

    if args.out:
        if args.user is not None:
            from turborec.errors import ConfigError

            raise ConfigError("--out goes with --users (--user prints one list)")
        check_writable(args.out)  # refuse a wrong extension before any work
    exclude = _read_exclude(args.exclude) if args.exclude else None
    model = load(args.model_dir, accept=RETRIEVAL_LIKE, command="recommend")
    assert not isinstance(model, LoadedRanker) and model.users is not None
    filt = not args.include_seen
    users = [args.user] if args.user is not None else _read_users(args.users)
    unknown = [u for u in users if model.users.get(u) < 0]
    if unknown:
        summary = unknown_summary("user", unknown)
        if args.unknown == "error":
            raise UnknownIdError(f"{summary} (--unknown error)")
        action = "served the most popular items" if args.unknown == "popular" else "left out"
        print(f"turborec recommend: {summary}: {action} (--unknown {args.unknown})", file=sys.stderr)
    served = [u for u in users if args.unknown != "skip" or model.users.get(u) >= 0]

    def recommend(chunk: list[Any]) -> tuple[Any, Any]:
        ex = [exclude.get(str(u), []) for u in chunk] if exclude is not None else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnknownIdWarning)  # reported above, once
            return model.recommend(chunk, N=args.k, filter_already_liked_items=filt, unknown=args.unknown,
                                   exclude=ex)

    if args.user is not None:
        if not served:
            return 0
        ids, scores = recommend(served)
        keep = np.isfinite(scores[0])  # excluded items score -inf and fill a list only when fewer than k remain
        ids, scores = ids[0][keep], scores[0][keep]
        titles = model.item_features.titles if model.item_features is not None else None
        for rank, (item, score) in enumerate(zip(ids, scores), 1):
            title = ""
            if titles is not None and model.items is not None:
                title = "  " + titles[model.items.index(item)]
            print(f"{rank:>3}. {item}  {score:.4f}{title}")
        if len(ids) < args.k:
            print(f"only {len(ids)} of the {args.k} items asked for remain: the rest are excluded "
                  f"({'seen in training' if filt else 'unscorable'})", file=sys.stderr)
        return 0
    frame = _rows(served, recommend, args.batch_size)
    short = int((frame.groupby("user", sort=False).size() < args.k).sum()) + len(set(served) - set(frame["user"]))
    if short:
        print(f"{short} user(s) have fewer than {args.k} items left once excluded items are dropped", file=sys.stderr)
    if args.out:
        from turborec.data.tables import write_table

        write_table(frame, args.out)
        info(args, f"wrote {len(frame):,} rows for {frame['user'].nunique():,} users to {args.out}")
    else:
        frame.to_csv(sys.stdout, index=False, float_format="%.6g")
    return 0


def _rows(users: list[Any], recommend: Any, batch_size: int) -> Any:
    import numpy as np
    import pandas as pd

    parts = []
    for s in range(0, len(users), batch_size):
        chunk = users[s : s + batch_size]
        ids, scores = recommend(chunk)
        k = ids.shape[1]
        keep = np.isfinite(scores).reshape(-1)  # excluded items (-inf) never make a row
        ranks = np.cumsum(np.isfinite(scores), axis=1).astype(np.int32)
        parts.append(pd.DataFrame({
            "user": np.repeat(np.asarray(chunk, dtype=object), k)[keep],
            "rank": ranks.reshape(-1)[keep],
            "item": ids.reshape(-1)[keep],
            "score": scores.reshape(-1).astype(np.float32)[keep],
        }))  # fmt: skip
    if not parts:
        return pd.DataFrame({"user": [], "rank": [], "item": [], "score": []})
    frame = pd.concat(parts, ignore_index=True)
    frame["user"] = frame["user"].astype(str) if frame["user"].map(type).nunique() > 1 else frame["user"]
    return frame
