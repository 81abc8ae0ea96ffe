"""``turborec train --nproc N``: the flags and the hand-off to sharded training (used by cmd_train).

``cmd_train.add_arguments`` calls :func:`add_train_arguments`; ``cmd_train.run``
starts with ``if (code := run_sharded(args)) is not None: return code``.
"""

from __future__ import annotations

import argparse
from typing import Any

from turborec.cli.common import positive_int


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sharded training (two-tower; needs turborec[distributed] + torchrec)")
    g.add_argument("--nproc", type=positive_int, default=1,
                   help="train in N local processes (torchrun) with TorchRec-sharded embedding tables")
    g.add_argument("--sharding", choices=("table_wise", "row_wise", "column_wise", "auto"), default="table_wise",
                   help="how tables are split over the processes (default table_wise)")
    g.add_argument("--checkpoint-dir", metavar="DIR", help="write a checkpoint every epoch; resume from it if present")
    g.add_argument("--max-restarts", type=int, default=0,
                   help="restart all processes this many times when one dies (resumes from --checkpoint-dir)")
    g.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                   help="torch.distributed backend (auto: nccl with --device cuda, else gloo)")
    g.add_argument("--embedding-optimizer", choices=("adam", "adagrad", "rowwise_adagrad", "sgd"), default="adam",
                   help="how the sharded tables learn: adam (default) is the single-process optimizer and "
                        "learning rate, exact; adagrad, rowwise_adagrad, sgd update rows inside the backward "
                        "pass (FBGEMM fused kernel: no table gradient in memory, for tables too large for adam)")
    g.add_argument("--embedding-lr", type=float, default=None,
                   help="learning rate of a fused table optimizer (default 0.15; adam uses the model's lr)")


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    from turborec.errors import ConfigError

    fmt = args.format or ("movielens" if args.data else "synthetic")
    if fmt not in ("csv", "parquet"):
        return {}
    if not args.columns:
        raise ConfigError(f"--format {fmt} needs --columns USER,ITEM[,RATING[,TIME]]")
    names = [c.strip() or None for c in args.columns.split(",")]
    options: dict[str, Any] = {k: v for k, v in zip(("user", "item", "rating", "timestamp"), names) if v}
    if fmt == "csv":
        options["sep"] = args.sep
    return options


def run_sharded(args: argparse.Namespace) -> int | None:
    """None when ``--nproc`` is 1 (the ordinary single-process path); else the sharded job's exit code."""
    if getattr(args, "nproc", 1) <= 1 and not getattr(args, "checkpoint_dir", None):
        return None
    from pathlib import Path

    from turborec._util.optional import require
    from turborec.errors import ConfigError

    if getattr(args, "task", "retrieval") != "retrieval":
        # the CTR rankers' table-wise sharding (turborec.distributed.tablewise) is a library API for GPU hosts,
        # measured by benchmarks/distributed.py gpu; the CLI shards only what it can train the same as one process
        raise ConfigError(f"--nproc trains retrieval models (two-tower); --task {args.task} trains in one process")
    from turborec.distributed.launch import launch_training
    from turborec.distributed.spec import ShardedTrainSpec

    require("torchrec", "distributed", "torchrec (pip install --no-deps torchrec==1.8.0)")
    spec = ShardedTrainSpec(
        out=str(Path(args.out)), data=args.data, format=args.format, data_options=_data_options(args),
        protocol=args.protocol, split=args.split, model=args.model or "two-tower", params=dict(args.param), epochs=args.epochs,
        seed=args.seed, sharding=args.sharding, embedding_optimizer=args.embedding_optimizer,
        embedding_lr=args.embedding_lr, checkpoint_dir=args.checkpoint_dir,
        device=args.device, backend=args.backend, k=args.k, progress=not args.quiet,
    )
    return launch_training(spec, args.nproc, max_restarts=args.max_restarts)
