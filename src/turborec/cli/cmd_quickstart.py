"""Train and compare the built-in models end to end, in about a minute on 2 cores.

Without --data it generates synthetic interactions (power-law popularity, latent
user preferences, timestamps); with --data it reads a real dataset (MovieLens by
default). It splits by the ``recbole`` protocol, trains each model with early
stopping on validation NDCG@10, prints full-ranking test metrics and fit times,
and saves the two-tower model so 'turborec recommend' / 'turborec serve' can use it.
"""

from __future__ import annotations

import argparse

from turborec.cli.common import add_data_arguments

DEFAULT_MODELS = "popularity,bpr,ease,two-tower"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated (default {DEFAULT_MODELS})")
    p.add_argument("--out", default="runs/quickstart", metavar="DIR", help="where the models are saved")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument(
        "--max-seconds", type=float, default=25.0, metavar="S",
        help="training time cap per model, so the tour stays near a minute (default 25; 0 = train to early "
        "stopping, as 'turborec train' does)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from turborec.cli.common import load_interactions
    from turborec.cli.report import print_table
    from turborec.data import apply_protocol, synthetic
    from turborec.errors import ConfigError
    from turborec.train.options import make_estimator

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.max_seconds < 0:
        raise ConfigError(f"--max-seconds must be >= 0, got {args.max_seconds}")
    cap = {"max_seconds": args.max_seconds} if args.max_seconds > 0 else {}
    models = {n: make_estimator(n, seed=args.seed, progress=not args.quiet, **cap) for n in names}
    t0 = time.perf_counter()
    if args.data or args.format:
        data = load_interactions(args)
    else:
        data = synthetic(n_users=3000, n_items=1500, n_interactions=90_000, seed=args.seed)
    split = apply_protocol("recbole", data, seed=args.seed)
    print(f"data: {data} -> recbole protocol ({time.perf_counter() - t0:.1f}s)")
    print(split.summary())
    rows = []
    for name, model in models.items():
        model.fit(split.train, split.valid)
        report = model.evaluate(split.test, exclude=[split.valid], ks=(10,))
        rows.append(
            {
                "model": name,
                "recall@10": report["recall@10"],
                "ndcg@10": report["ndcg@10"],
                "hit@10": report["hit@10"],
                "coverage@10": report["coverage@10"],
                "fit_s": model.fit_seconds,
            }
        )
        path = model.save(Path(args.out) / name, metrics={"protocol": "recbole", "test": report.metrics})
        if not args.quiet:
            print(f"  {name}: ndcg@10 {report['ndcg@10']:.4f} in {model.fit_seconds:.1f}s -> {path}")
    print()
    print_table(rows)
    print(
        f"\ntotal {time.perf_counter() - t0:.1f}s; try: turborec recommend {Path(args.out) / names[-1]} "
        f"--user {split.train.users.ids[0]} -k 10"
    )
    return 0
