"""turborec: real-time deep-learning recommendation within a p99 latency budget.

The top-level package stays light: heavy parts (torch, FAISS, the service) load
only when used.

>>> model = turborec.load("runs/tt")   # any artifact: trained, compressed, tuned folder, pipeline, ranker
>>> model.recommend("42", N=10)        # the verbs of its kind (rankers: predict)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from turborec._version import __version__

if TYPE_CHECKING:
    from turborec.loading import Loaded


def load(path: str | Path, device: str = "cpu", **options: Any) -> Loaded:
    """Open any artifact turborec writes (:func:`turborec.loading.load`; imported on first use)."""
    from turborec.loading import load as load_any

    return load_any(path, device, **options)


__all__ = ["__version__", "load"]
