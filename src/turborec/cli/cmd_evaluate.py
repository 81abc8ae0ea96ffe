"""Full-ranking evaluation of a saved model.

Either re-create the protocol split the model was trained with (``--data`` +
``--protocol``, same seed), or score a split you bring (``--train`` + ``--test``:
items in TRAIN are masked, users/items unknown to the model are skipped).
"""

from __future__ import annotations

import argparse
from typing import Any

from turborec.cli.common import add_data_arguments, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="DIR",
                   help="artifact written by 'turborec train' / 'compress' / 'tune --out' (that folder itself)")
    add_data_arguments(p)
    p.add_argument("--protocol", default="recbole", help="split protocol used with --data (default recbole)")
    p.add_argument("--seed", type=int, default=2020, help="protocol seed (default 2020)")
    p.add_argument("--train", metavar="FILE", help="your training file (masked items), with --test")
    p.add_argument("--test", metavar="FILE", help="your test file, with --train (a ranker: alone, all rows scored)")
    p.add_argument("-k", "--k", type=positive_int, action="append", help="cutoff(s), repeatable (default 10 and 20)")
    p.add_argument("--task", choices=("retrieval", "pipeline", "ctr"), default=None,
                   help="default: from the artifact (ctr: AUC / logloss / calibration)")
    p.add_argument("--split", choices=("protocol", "none"), default="protocol",
                   help="ctr with --data: score the test part of the split saved in the artifact (default) "
                        "or the whole file")
    p.add_argument("--fields", metavar="FILE", help="ctr, libfm rows: JSON field map, name -> [first_id, last_id]")
    p.add_argument("--allow-overlap", action="store_true",
                   help="ctr: score rows even when over 1%% of them are the model's training rows (default: refuse)")


def run(args: argparse.Namespace) -> int:
    from turborec.cli.common import load_interactions
    from turborec.cli.report import print_table
    from turborec.data import apply_protocol
    from turborec.errors import ConfigError
    from turborec.loading import RANKER, RETRIEVAL_LIKE, artifact_kind, load
    from turborec.train import LoadedRanker

    kind = artifact_kind(args.model_dir)
    if kind == RANKER or args.task == "ctr":
        from turborec.cli.ctr import evaluate_ctr

        return evaluate_ctr(args)
    ks = tuple(sorted(set(args.k or [10, 20])))
    if bool(args.train) != bool(args.test):
        raise ConfigError("--train and --test go together")
    if args.train and args.data:
        raise ConfigError("give either --data (protocol split) or --train/--test, not both")
    model = load(args.model_dir, accept=RETRIEVAL_LIKE, command="evaluate")
    assert not isinstance(model, LoadedRanker)
    if args.train:
        train = load_interactions(args, args.train)
        test = load_interactions(args, args.test)
        metrics = _metrics(model.evaluate(test, exclude=[train], ks=ks))
        source = f"{args.train} / {args.test}"
        skipped = _skipped(model, test)
    else:
        data = load_interactions(args)
        split = apply_protocol(args.protocol, data, seed=args.seed)
        metrics = _metrics(model.evaluate(split.test, exclude=[split.valid], ks=ks))
        source = f"{args.data or 'synthetic'} ({args.protocol}, seed {args.seed})"
        skipped = _skipped(model, split.test)
    n_users = int(metrics.pop("n_users", 0))
    print(f"{model.name} on {source}: {n_users:,} users evaluated{skipped}")
    print_table([{"metric": m, "value": v} for m, v in metrics.items()])
    return 0


def _skipped(model: Any, test: Any) -> str:
    """Why test users were not evaluated: unknown to the model, or none of their test items known to it."""
    import numpy as np

    from turborec.data.vocab import unknown_summary

    users = test.users.decode(np.unique(test.user)).tolist()
    unknown = [u for u in users if model.users.get(u) < 0]
    mapped = test.with_vocabularies(model.users, model.items)
    no_items = len(users) - len(unknown) - len(np.unique(mapped.user))
    if not unknown and not no_items:
        return ""
    parts = []
    if unknown:
        parts.append(f"{unknown_summary('user', unknown)} (not in the model's training data)")
    if no_items:
        parts.append(f"{no_items:,} whose test items are all unknown to the model")
    return f"; {len(unknown) + no_items:,} test user(s) skipped: " + "; ".join(parts)


def _metrics(report: object) -> dict[str, float]:
    """RankingReport (estimators) or a plain dict (pipelines) -> dict with n_users."""
    if isinstance(report, dict):
        return dict(report)
    return {**report.metrics, "n_users": float(report.n_users)}  # type: ignore[attr-defined]
