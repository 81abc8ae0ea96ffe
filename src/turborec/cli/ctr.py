"""The CTR side of 'turborec train' / 'turborec evaluate' (--task ctr)."""

from __future__ import annotations

import argparse
from typing import Any

# defaults tuned on the Criteo/Avazu samples (benchmarks/ctr_accuracy.py): small data, strong regularisation
NET_DEFAULTS: dict[str, dict[str, Any]] = {
    "logreg": {},
    "dlrm": {"embedding_dim": 16, "bottom_mlp": (), "top_mlp": (32,), "dropout": 0.5, "wide": True},
    "dcnv2": {"embedding_dim": 8, "n_cross": 2, "deep": (64,), "structure": "parallel", "dropout": 0.5, "wide": True},
    "deepfm": {"embedding_dim": 8, "deep": (64, 32), "dropout": 0.5},
}


def read_raw(path: str, fmt: str) -> Any:
    from turborec.data.ctr import read_avazu, read_criteo, read_libfm
    from turborec.errors import ConfigError

    readers = {"criteo": read_criteo, "avazu": read_avazu, "libfm": read_libfm}
    if fmt not in readers:
        raise ConfigError(f"--task ctr needs --format criteo, avazu or libfm (got {fmt!r})")
    return readers[fmt](path)


def _coerce(value: str, default: Any) -> Any:
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, tuple):
        return tuple(int(v) for v in value.split(",") if v.strip())
    return value


def train_ctr(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from turborec.cli.report import print_table
    from turborec.data.ctr import CTREncoder, shuffle_split
    from turborec.errors import ConfigError
    from turborec.models.base import net_class
    from turborec.models.rankers import build_ranker
    from turborec.train.ctr import CTRTrainConfig, evaluate_ranker, fit_ranker, save_ranker

    kind = args.model or "dcnv2"
    if kind not in NET_DEFAULTS:
        raise ConfigError(f"unknown ranker '{kind}' (known: {', '.join(NET_DEFAULTS)})")
    if not args.data:
        raise ConfigError("--task ctr needs --data")
    cls = net_class(kind)
    cfg_cls = cls.config_class  # type: ignore[attr-defined]
    net_cfg: dict[str, Any] = dict(NET_DEFAULTS[kind])
    train_kw: dict[str, Any] = {"epochs": args.epochs or 40, "seed": args.seed, "progress": not args.quiet,
                                "device": args.device, "batch_size": 256, "embedding_l2": 1e-3, "weight_decay": 0.01}
    net_fields = {f.name: f.default for f in fields(cfg_cls)}
    train_fields = {f.name: f.default for f in fields(CTRTrainConfig)}
    for key, raw in args.param:
        if key in net_fields:
            net_cfg[key] = _coerce(raw, net_fields[key])
        elif key in train_fields:
            train_kw[key] = _coerce(raw, train_fields[key])
        else:
            raise ConfigError(f"{kind}: unknown option '{key}'; known: {', '.join(sorted({**net_fields, **train_fields}))}")
    train_cfg = CTRTrainConfig(**train_kw)
    net = cfg_cls.from_dict(net_cfg)
    raw = read_raw(args.data, args.format or "criteo")
    train_raw, valid_raw, test_raw = shuffle_split(raw, (0.8, 0.1, 0.1), seed=args.seed)
    encoder = CTREncoder(min_freq=10, standardize=True).fit(train_raw)
    train, valid, test = (encoder.transform(r) for r in (train_raw, valid_raw, test_raw))
    model = build_ranker(kind, net, cardinalities=train.cardinalities, n_dense=train.dense.shape[1])
    fit = fit_ranker(model, train, valid, train_cfg)
    metrics = evaluate_ranker(model, test)
    print_table([{"model": kind, **metrics, "valid_auc": fit.best_valid_auc, "fit_s": fit.seconds}])
    path = save_ranker(args.out, model, encoder=encoder, metrics={**metrics, "split_seed": args.seed},
                       train_config=train_cfg)
    print(f"saved {path}")
    return 0


def evaluate_ctr(args: argparse.Namespace) -> int:
    from turborec.cli.report import print_table
    from turborec.data.ctr import shuffle_split
    from turborec.metrics.ctr import auc, calibration, logloss
    from turborec.train.ctr import load_ranker

    ranker = load_ranker(args.model_dir)
    raw = read_raw(args.data, args.format or "criteo")
    if args.split == "protocol":  # the test part of the same shuffled 8:1:1 split used by 'train --task ctr'
        raw = shuffle_split(raw, (0.8, 0.1, 0.1), seed=args.seed)[2]
    if raw.label is None:
        from turborec.errors import DataError

        raise DataError("rows have no labels: cannot evaluate", source=args.data)
    p = ranker.predict(raw)
    print_table([{"rows": len(p), "auc": auc(raw.label, p), "logloss": logloss(raw.label, p),
                  "calibration": calibration(raw.label, p)}])
    return 0
