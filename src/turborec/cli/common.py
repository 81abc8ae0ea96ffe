"""Argument helpers shared by commands (no heavy imports at module level)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

FORMATS = ("movielens", "csv", "parquet", "jsonl", "diginetica", "synthetic", "criteo", "avazu", "libfm")
TABLE_FORMATS = ("csv", "parquet", "jsonl")
CTR_FORMATS = ("criteo", "avazu", "libfm")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


class _DeprecatedFlag(argparse.Action):
    """An old option name kept working: stores into the new option's dest and warns once per use."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"turborec: warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(p: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs: Any) -> None:
    """Accept ``old`` as a hidden alias of ``new`` (same dest and type) with a deprecation warning."""
    p.add_argument(old, dest=dest, action=_DeprecatedFlag, new=new, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS, **kwargs)


def add_quiet(p: argparse.ArgumentParser) -> None:
    """``-q/--quiet``: no progress bars or progress lines, no informational messages; results and warnings stay."""
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars or informational messages (results and warnings still print)")


def info(args: argparse.Namespace, text: str) -> None:
    """An informational line on stderr, unless --quiet."""
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr, flush=True)


def key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def add_threads_argument(p: argparse.ArgumentParser, what: str = "training") -> None:
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help=f"torch threads for {what} (default: OMP_NUM_THREADS if set, else the cores this "
                        "process may use minus the 1-minute load average, at least 1: a busy machine is "
                        "not oversubscribed)")


def apply_threads(args: argparse.Namespace) -> int:
    """Set torch's thread count from ``--threads`` (or the default rule); returns it."""
    from turborec._util.threads import set_torch_threads

    return set_torch_threads(getattr(args, "threads", None))


def add_data_arguments(p: argparse.ArgumentParser, required: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="PATH", required=required, help="dataset file or folder (omit for synthetic data)")
    g.add_argument("--format", default=None, choices=FORMATS,
                   help="dataset format (default: by extension for a .csv / .tsv / .parquet / .jsonl file, "
                        "movielens for other --data, synthetic without --data)")
    g.add_argument("--columns", metavar="USER,ITEM[,RATING[,TIME]]",
                   help="column names of a csv / parquet / jsonl file (default user_id,item_id[,rating][,timestamp])")
    g.add_argument("--sep", default=",", help="field separator for --format csv (default ',')")


def load_interactions(args: argparse.Namespace, path: str | None = None) -> Any:
    from turborec.data import load_dataset
    from turborec.data.tables import table_format
    from turborec.errors import ConfigError

    data = path if path is not None else args.data
    fmt = args.format
    if fmt is None:
        by_name = data is not None and os.path.isfile(data) and table_format(data) is not None
        fmt = "table" if by_name else ("movielens" if data else "synthetic")
    if fmt in CTR_FORMATS:
        raise ConfigError(f"--format {fmt} is CTR data: use --task ctr")
    options: dict[str, Any] = {}
    if fmt in (*TABLE_FORMATS, "table"):
        if args.columns:
            names = [c.strip() or None for c in args.columns.split(",")]
            keys = ("user", "item", "rating", "timestamp")
            options = {k: v for k, v in zip(keys, names) if v}
            if fmt != "table":  # named columns must all exist
                options = {"rating": None, "timestamp": None, **options}
        elif fmt != "table":
            fmt = "table"  # default columns, rating and timestamp when present
        if fmt in ("csv", "table") and args.sep != ",":
            options["sep"] = args.sep
    return load_dataset(data, fmt, **options)
