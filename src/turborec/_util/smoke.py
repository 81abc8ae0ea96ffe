"""``TURBOREC_SMOKE=SECONDS``: cap every training run, so the documentation's snippets can be run
end to end as a test (tests/test_readme.py) in minutes. Read here, in one place, because the
snippets call the Python API directly and nothing else can reach their training loops; unset
(the default) changes nothing."""

from __future__ import annotations

import math
import os

ENV = "TURBOREC_SMOKE"


def smoke_seconds() -> float | None:
    """The cap in seconds, or None when unset / not a positive number."""
    raw = os.environ.get(ENV, "").strip()
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value > 0 and math.isfinite(value) else None


def capped(seconds: float | None) -> float | None:
    """``seconds`` lowered to the smoke cap where one is set."""
    cap = smoke_seconds()
    if cap is None:
        return seconds
    return cap if seconds is None else min(seconds, cap)
