"""The CTR side of 'turborec train' / 'turborec evaluate' (--task ctr): argument glue only; the
recipe is :mod:`turborec.train.ctr_recipe`, evaluation :mod:`turborec.train.ctr_eval`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

CTR_TRAIN_FORMATS = ("criteo", "avazu", "libfm")


def read_raw(path: str, fmt: str, fields: str | None = None) -> Any:
    from turborec.data.ctr import LibfmFields, read_avazu, read_criteo, read_libfm
    from turborec.errors import ConfigError

    if fmt not in CTR_TRAIN_FORMATS:
        raise ConfigError(f"--task ctr reads --format criteo, avazu or libfm (got {fmt!r})")
    if fields and fmt != "libfm":
        raise ConfigError("--fields maps libfm feature ids to fields: it goes with --format libfm")
    if fmt == "libfm":
        return read_libfm(path, fields=LibfmFields.from_file(fields) if fields else None)
    return read_criteo(path) if fmt == "criteo" else read_avazu(path)


def train_ctr(args: argparse.Namespace) -> int:
    from turborec.cli.report import print_table
    from turborec.errors import ConfigError
    from turborec.train.ctr_recipe import FORMAT_PRESETS, ctr_recipe, save_ctr_run
    from turborec.train.ctr_recipe import train_ctr as run_recipe

    if not args.data:
        raise ConfigError("--task ctr needs --data")
    fmt = args.format or "criteo"
    recipe = ctr_recipe(
        args.model or "dcnv2", FORMAT_PRESETS.get(fmt, "criteo"), dict(args.param), seed=args.seed,
        epochs=args.epochs, progress=not args.quiet, device=args.device, threads=getattr(args, "threads", None),
    )  # fmt: skip  (options are checked before the data is read)
    run = run_recipe(read_raw(args.data, fmt, getattr(args, "fields", None)), recipe)
    m = run.metrics
    print_table([{"model": recipe.kind, "auc": m["auc"], "logloss": m["logloss"], "calibration": m["calibration"],
                  "valid_auc": m["valid_auc"], "valid_logloss": m["valid_logloss"], "fit_s": m["fit_seconds"]}])  # fmt: skip
    if m.get("valid_logloss_below_logreg") is False:
        print(f"note: validation logloss {m['valid_logloss']:.4f} is above logistic regression's "
              f"{m['logreg_valid_logloss']:.4f} even after calibration", file=sys.stderr)  # fmt: skip
    print(f"saved {save_ctr_run(args.out, run)}")
    return 0


def evaluate_ctr(args: argparse.Namespace) -> int:
    from turborec.cli.report import print_table
    from turborec.errors import ConfigError
    from turborec.loading import RANKER, load
    from turborec.train.ctr import LoadedRanker
    from turborec.train.ctr_eval import evaluate_rows

    if bool(args.data) == bool(args.test):
        raise ConfigError("a ranker is evaluated on --test FILE (all its rows) or --data FILE (the test part of "
                          "the split saved in the artifact): give one of them")  # fmt: skip
    ranker = load(args.model_dir, accept=(RANKER,), command="evaluate --task ctr")
    assert isinstance(ranker, LoadedRanker)
    fmt = args.format or "criteo"
    path = args.test or args.data
    raw = read_raw(path, fmt, getattr(args, "fields", None)) if fmt in CTR_TRAIN_FORMATS else None
    if raw is None:
        from turborec.train.ctr_predict import read_table

        raw = read_table(ranker, path, fmt)
    use_split = bool(args.data) and args.split != "none"
    result = evaluate_rows(ranker, raw, use_split=use_split, allow_overlap=getattr(args, "allow_overlap", False))
    for line in result.notes:
        print(f"turborec evaluate: warning: {line}", file=sys.stderr)
    print(f"{ranker.path} on {result.source}")
    print_table([result.metrics])
    return 0
