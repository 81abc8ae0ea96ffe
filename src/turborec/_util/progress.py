"""Progress output people can read: a live bar on a terminal, plain lines in a log.

A redirected log full of carriage-return frames is unreadable, so bars are drawn only
when stderr is a terminal; elsewhere a training loop prints one line per epoch.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


def stderr_is_terminal(stream: TextIO | None = None) -> bool:
    s = stream if stream is not None else sys.stderr
    try:
        return bool(s.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def bar(enabled: bool, **kwargs: Any) -> Any:
    """A tqdm bar when ``enabled`` and stderr is a terminal, else a disabled one (same interface)."""
    from tqdm.auto import tqdm

    return tqdm(disable=not (enabled and stderr_is_terminal()), **kwargs)


def log_line(enabled: bool, text: str) -> None:
    """One progress line on stderr when ``enabled`` and no bar is drawn (a redirected log)."""
    if enabled and not stderr_is_terminal():
        print(text, file=sys.stderr, flush=True)


def describe(values: dict[str, str]) -> str:
    return " ".join(f"{k} {v}" for k, v in values.items())
