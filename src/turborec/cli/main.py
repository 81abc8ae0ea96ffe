"""The ``turborec`` command. Thin: parsers here, work in lazily imported modules, so
``turborec --help`` loads no torch. A user's mistake prints one line and exits 2."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command name -> module under turborec.cli that defines add_arguments(parser) and run(args)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("cmd_quickstart", "train and compare models on built-in synthetic data (or --data) in about a minute"),
    "train": ("cmd_train", "train a model on a dataset and save it as an artifact directory"),
    "evaluate": ("cmd_evaluate", "full-ranking evaluation of a saved model (protocol split or your own train/test files)"),
    "recommend": ("cmd_recommend", "top-k recommendations from a saved model for one user or a file of users"),
    "predict": ("cmd_predict", "score a file of CTR rows with a saved ranker: one click probability per row"),
    "export": ("cmd_export", "export a saved model: --edge writes an on-device re-ranking bundle (int8 ONNX + candidates)"),
    "serve": ("cmd_serve", "HTTP service with micro-batching, live events, Prometheus metrics and SLO degradation"),
    "compress": ("cmd_compress", "quantize / prune / distill a saved model, or --report what each variant costs and saves"),
    "tune": ("cmd_tune", "search compression, backend, index and batching for the best model within a p99 budget"),
    "loadtest": ("cmd_loadtest", "open-loop load test of a running service: HdrHistogram percentiles, JSON, PNG"),
}

EPILOG = """examples:
  turborec quickstart
  turborec train --data ../shared/data/ml-latest-small --format movielens --model two-tower --out runs/tt
  turborec evaluate runs/tt --data ../shared/data/ml-latest-small --format movielens --protocol recbole
  turborec recommend runs/tt --user 42 -k 10
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turborec",
        description="Real-time deep-learning recommendation within a p99 latency budget.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from turborec._version import __version__
    from turborec.cli.common import add_quiet

    parser.add_argument("--version", action="version", version=f"turborec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f"turborec.cli.{module}")
        p = sub.add_parser(name, help=help_text, description=mod.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        add_quiet(p)  # every command takes --quiet, with one meaning
        p.set_defaults(_module=mod)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from turborec.errors import TurborecError

    try:
        return int(args._module.run(args) or 0)
    except TurborecError as exc:
        print(f"turborec {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        print(f"turborec {args.command}: error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"turborec {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"turborec {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug, not the user's mistake: still one line unless asked for the traceback
        import os

        if os.environ.get("TURBOREC_TRACEBACK"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"turborec {args.command}: internal error: {type(exc).__name__}: {first} "
              "(please report it; TURBOREC_TRACEBACK=1 shows where)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
