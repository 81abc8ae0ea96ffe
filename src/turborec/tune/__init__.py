"""turborec.tune: SLO-driven search over compression, backend, index and serving settings.

>>> from turborec.tune import TuneOptions, AccuracyFloor, run_tune
>>> result = run_tune(teacher, split, TuneOptions(slo_p99_ms=5, rate=500, min_accuracy=AccuracyFloor.parse("0.97x")),
...                   "runs/tune")
>>> result.chosen.key, result.artifact       # the chosen configuration, saved for `turborec serve`

Pure parts (no model needed): :mod:`.pareto` (operating points, dominance, fronts) and
:mod:`.objective` (constraints, selection, skip rules). The search: :mod:`.space` (what is
searched, cheap to expensive), :mod:`.search` (the staged search), :mod:`turborec.bench.replay` /
:mod:`.confirm` (latency in-process and over HTTP), :mod:`.accuracy`, :mod:`.report`.
Everything else is imported lazily, so ``import turborec.tune`` loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from turborec.tune.objective import AccuracyFloor, Bounds, Constraints, Selection, select, skip_reason
from turborec.tune.pareto import OperatingPoint, OperatingPoints, dominates, pareto_front

if TYPE_CHECKING:
    from turborec.serving.loading import load_tuned_serving_model
    from turborec.tune.results import TuneOptions, TuneResult
    from turborec.tune.run import run_tune

_LAZY = {
    "TuneOptions": "turborec.tune.results",
    "TuneResult": "turborec.tune.results",
    "run_tune": "turborec.tune.run",
    "load_tuned_serving_model": "turborec.serving.loading",  # what `turborec serve` builds, and the knobs
}

__all__ = [
    "AccuracyFloor",
    "Bounds",
    "Constraints",
    "OperatingPoint",
    "OperatingPoints",
    "Selection",
    "TuneOptions",
    "TuneResult",
    "dominates",
    "load_tuned_serving_model",
    "pareto_front",
    "run_tune",
    "select",
    "skip_reason",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
