"""Argument helpers shared by commands (no heavy imports at module level)."""

from __future__ import annotations

import argparse
from typing import Any

FORMATS = ("movielens", "csv", "parquet", "diginetica", "synthetic", "criteo", "avazu", "libfm")
CTR_FORMATS = ("criteo", "avazu", "libfm")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def add_data_arguments(p: argparse.ArgumentParser, required: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="PATH", required=required, help="dataset file or folder (omit for synthetic data)")
    g.add_argument("--format", default=None, choices=FORMATS, help="dataset format (default: movielens with --data, else synthetic)")
    g.add_argument("--columns", metavar="USER,ITEM[,RATING[,TIME]]", help="column names for --format csv/parquet")
    g.add_argument("--sep", default=",", help="field separator for --format csv (default ',')")


def load_interactions(args: argparse.Namespace, path: str | None = None) -> Any:
    from turborec.data import load_dataset
    from turborec.errors import ConfigError

    data = path if path is not None else args.data
    fmt = args.format or ("movielens" if data else "synthetic")
    if fmt in CTR_FORMATS:
        raise ConfigError(f"--format {fmt} is CTR data: use --task ctr")
    options: dict[str, Any] = {}
    if fmt in ("csv", "parquet"):
        if not args.columns:
            raise ConfigError(f"--format {fmt} needs --columns USER,ITEM[,RATING[,TIME]]")
        names = [c.strip() or None for c in args.columns.split(",")]
        keys = ("user", "item", "rating", "timestamp")
        options = {k: v for k, v in zip(keys, names) if v}
        if fmt == "csv":
            options["sep"] = args.sep
    return load_dataset(data, fmt, **options)
