"""Operating points and their Pareto front (pure: numbers in, numbers out).

Mirrors FAISS's ``OperatingPoints`` (``faiss/AutoTune.h``): a list of measured points,
each with a performance to maximise (here accuracy, NDCG@10) and costs to minimise
(p99 latency, memory); :meth:`OperatingPoints.add` keeps every point and reports whether
the new one is Pareto-optimal, and the front answers "fastest point with at least this
accuracy" (FAISS's ``t_for_perf``) and "most accurate point within this time".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# (attribute, sense): +1 is maximised, -1 minimised
Objective = tuple[str, int]
ACCURACY_VS_P99: tuple[Objective, ...] = (("accuracy", +1), ("p99_ms", -1))
ACCURACY_VS_MEMORY: tuple[Objective, ...] = (("accuracy", +1), ("memory_mb", -1))
ALL_OBJECTIVES: tuple[Objective, ...] = (("accuracy", +1), ("p99_ms", -1), ("memory_mb", -1))


@dataclass(frozen=True)
class OperatingPoint:
    """One measured configuration. ``p99_ms`` is ``inf`` when requests were shed or lost."""

    key: str  # a readable, unique name of the configuration
    accuracy: float  # NDCG@10 on the validation split (higher is better)
    p99_ms: float
    memory_mb: float
    p50_ms: float = math.nan
    config: Mapping[str, Any] = field(default_factory=dict)
    failed_share: float = 0.0  # requests shed, failed or lost (they make p99 inf once over 1%)

    def value(self, name: str) -> float:
        return float(getattr(self, name))


def dominates(a: OperatingPoint, b: OperatingPoint, objectives: Sequence[Objective] = ACCURACY_VS_P99) -> bool:
    """``a`` is at least as good as ``b`` in every objective and strictly better in one."""
    better = False
    for name, sense in objectives:
        va, vb = sense * a.value(name), sense * b.value(name)
        if va < vb:
            return False
        if va > vb:
            better = True
    return better


def pareto_front(points: Iterable[OperatingPoint], objectives: Sequence[Objective] = ACCURACY_VS_P99) -> list[OperatingPoint]:
    """The points no other point dominates, sorted by the first cost objective (then by key)."""
    pts = list(points)
    front = [p for p in pts if not any(dominates(q, p, objectives) for q in pts if q is not p)]
    cost = next((name for name, sense in objectives if sense < 0), objectives[0][0])
    return sorted(front, key=lambda p: (p.value(cost), p.key))


class OperatingPoints:
    """All measured points and the Pareto-optimal ones among them (FAISS's ``OperatingPoints``)."""

    def __init__(self, objectives: Sequence[Objective] = ACCURACY_VS_P99) -> None:
        if not objectives or not any(s > 0 for _, s in objectives) or not any(s < 0 for _, s in objectives):
            raise ValueError("objectives need at least one maximised and one minimised quantity")
        self.objectives = tuple(objectives)
        self.all: list[OperatingPoint] = []
        self.optimal: list[OperatingPoint] = []

    def __len__(self) -> int:
        return len(self.all)

    def add(self, point: OperatingPoint) -> bool:
        """Record ``point``; True when it is on the front (it may push earlier points off)."""
        if any(p.key == point.key for p in self.all):
            raise ValueError(f"operating point {point.key!r} was already added")
        self.all.append(point)
        if any(dominates(p, point, self.objectives) for p in self.optimal):
            return False
        self.optimal = [p for p in self.optimal if not dominates(point, p, self.objectives)] + [point]
        return True

    def dominated(self, optimistic: OperatingPoint) -> bool:
        """Would a point with these (optimistic) values be dominated by one already measured? A search
        skips a candidate when even its best case cannot reach the front."""
        return any(dominates(p, optimistic, self.objectives) for p in self.optimal)

    def latency_for_accuracy(self, accuracy: float, cost: str = "p99_ms") -> float:
        """Lowest cost of a measured point with at least ``accuracy`` (inf if none): ``t_for_perf``."""
        costs = [p.value(cost) for p in self.optimal if p.accuracy >= accuracy]
        return min(costs, default=math.inf)

    def accuracy_for_latency(self, limit: float, cost: str = "p99_ms") -> float:
        """Best accuracy of a measured point whose cost is at most ``limit`` (-inf if none)."""
        accs = [p.accuracy for p in self.optimal if p.value(cost) <= limit]
        return max(accs, default=-math.inf)


__all__ = [
    "ACCURACY_VS_MEMORY",
    "ACCURACY_VS_P99",
    "ALL_OBJECTIVES",
    "Objective",
    "OperatingPoint",
    "OperatingPoints",
    "dominates",
    "pareto_front",
]
