"""Top-k recommendations from a saved model.

``--user 42`` prints one list; ``--users FILE`` (one user id per line, or a CSV whose
first column is the user id) writes ``user,rank,item,score`` rows to ``--out`` (or stdout).
Items the user already interacted with are left out unless ``--include-seen``.
"""

from __future__ import annotations

import argparse

from turborec.cli.common import positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="DIR",
                   help="artifact written by 'turborec train' / 'compress' / 'tune --out' (that folder itself)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="one external user id")
    who.add_argument("--users", metavar="FILE", help="file of user ids (one per line or first CSV column)")
    p.add_argument("-k", "--k", type=positive_int, default=10, help="list length (default 10)")
    p.add_argument("--out", metavar="FILE", help="CSV output for --users (default stdout)")
    p.add_argument("--include-seen", action="store_true", help="do not filter items the user already has")
    p.add_argument("--batch-size", type=positive_int, default=1024, help="users scored per batch")


def _read_users(path: str) -> list[str]:
    from turborec.errors import DataError

    users: list[str] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            first = text.split(",")[0].strip()
            if n == 1 and first.lower() in ("user", "user_id", "userid"):
                continue
            users.append(first)
    if not users:
        raise DataError("no user ids found", source=path)
    return users


def run(args: argparse.Namespace) -> int:
    import csv
    import os
    import sys
    import tempfile

    import numpy as np

    from turborec.loading import RETRIEVAL_LIKE, load
    from turborec.train import LoadedRanker

    model = load(args.model_dir, accept=RETRIEVAL_LIKE, command="recommend")
    assert not isinstance(model, LoadedRanker)
    filt = not args.include_seen
    if args.user is not None:
        ids, scores = model.recommend(args.user, N=args.k, filter_already_liked_items=filt)
        # excluded items score -inf and fill a list only when fewer than k remain: never show them
        keep = np.isfinite(scores)
        ids, scores = ids[keep], scores[keep]
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
    users = _read_users(args.users)
    assert model.users is not None
    known = [u for u in users if model.users.get(u) >= 0]
    skipped = len(users) - len(known)
    out_f = sys.stdout
    tmp_path = None
    if args.out:
        fd, tmp_path = tempfile.mkstemp(prefix=".recs-", dir=os.path.dirname(os.path.abspath(args.out)))
        out_f = os.fdopen(fd, "w", newline="")
    short = rows = 0
    try:
        w = csv.writer(out_f)
        w.writerow(["user", "rank", "item", "score"])
        for s in range(0, len(known), args.batch_size):
            chunk = known[s : s + args.batch_size]
            ids, scores = model.recommend(chunk, N=args.k, filter_already_liked_items=filt)
            for u, row_ids, row_scores in zip(chunk, ids, scores):
                keep = np.isfinite(row_scores)  # excluded items (-inf) never make a row
                short += int(keep.sum() < args.k)
                rows += int(keep.sum())
                for rank, (item, score) in enumerate(zip(row_ids[keep], row_scores[keep]), 1):
                    w.writerow([u, rank, item, f"{score:.6g}"])
        if tmp_path is not None:
            out_f.close()
            os.replace(tmp_path, args.out)
            tmp_path = None
    finally:
        if tmp_path is not None:
            out_f.close()
            os.unlink(tmp_path)
    if skipped:
        print(f"skipped {skipped} unknown user id(s)", file=sys.stderr)
    if short:
        print(f"{short} user(s) have fewer than {args.k} items left once excluded items are dropped", file=sys.stderr)
    if args.out:
        print(f"wrote {rows:,} rows for {len(known):,} users to {args.out}", file=sys.stderr)
    return 0
