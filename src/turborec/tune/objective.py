"""What the search optimises and which points it may skip (pure: numbers in, decisions out).

The user gives a p99 budget and optionally an accuracy floor and a memory cap. Objective
``accuracy`` (the default) picks the most accurate point meeting every constraint (ties on
accuracy go to the lower p99); objective ``latency`` picks the lowest p99 among them (ties go
to the higher accuracy). A candidate is skipped without measuring it when even its optimistic
bounds (accuracy at most ..., p99 at least ..., from monotonicity assumptions such as
"int4 is no more accurate than int8" or "a larger efSearch is no faster") show it cannot meet
the constraints, cannot beat the best feasible point found so far, or is dominated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from turborec.errors import ConfigError
from turborec.tune.pareto import OperatingPoint, OperatingPoints, dominates

OBJECTIVES = ("accuracy", "latency")
_FLOOR = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([xX]?)\s*$")


@dataclass(frozen=True)
class AccuracyFloor:
    """``0.97x``: 97% of the reference (the uncompressed model's) accuracy; ``0.25``: NDCG@10 >= 0.25."""

    value: float
    relative: bool

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or self.value <= 0:
            raise ConfigError(f"--min-accuracy {self}: must be positive")
        if self.relative and self.value > 1.0:
            raise ConfigError(
                f"--min-accuracy {self}: a relative floor above 1.0x asks for more than the uncompressed model "
                "reaches; use at most 1.0x"
            )
        if not self.relative and self.value > 1.0:
            raise ConfigError(f"--min-accuracy {self}: NDCG@10 is at most 1; use e.g. 0.25 or a relative 0.97x")

    @classmethod
    def parse(cls, text: str) -> AccuracyFloor:
        match = _FLOOR.match(str(text))
        if match is None:
            raise ConfigError(f"--min-accuracy {text!r}: expected a number (NDCG@10, e.g. 0.25) or a ratio like 0.97x")
        return cls(float(match.group(1)), bool(match.group(2)))

    def resolve(self, reference: float) -> float:
        """The absolute NDCG@10 floor, given the reference model's accuracy."""
        return self.value * reference if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}x" if self.relative else f"{self.value:g}"


@dataclass(frozen=True)
class Constraints:
    slo_p99_ms: float
    min_accuracy: float | None = None  # absolute NDCG@10
    memory_mb: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.slo_p99_ms) or self.slo_p99_ms <= 0:
            raise ConfigError(f"--slo-p99-ms {self.slo_p99_ms}: must be a positive number of milliseconds")
        if self.memory_mb is not None and (not math.isfinite(self.memory_mb) or self.memory_mb <= 0):
            raise ConfigError(f"--memory-mb {self.memory_mb}: must be a positive number of megabytes")

    def violations(self, point: OperatingPoint) -> list[str]:
        """What keeps ``point`` from being feasible, in words (empty when it is feasible)."""
        out = []
        if not point.p99_ms <= self.slo_p99_ms:
            shown = f"{point.p99_ms:.2f} ms" if math.isfinite(point.p99_ms) else (
                f"inf ({point.failed_share:.0%} of requests shed or lost)" if point.failed_share
                else "inf (requests shed or lost)")
            out.append(f"p99 {shown} > SLO {self.slo_p99_ms:g} ms")
        if self.min_accuracy is not None and point.accuracy < self.min_accuracy:
            out.append(f"NDCG@10 {point.accuracy:.4f} < floor {self.min_accuracy:.4f}")
        if self.memory_mb is not None and point.memory_mb > self.memory_mb:
            out.append(f"memory {point.memory_mb:.2f} MB > cap {self.memory_mb:g} MB")
        return out

    def feasible(self, point: OperatingPoint) -> bool:
        return not self.violations(point)

    def shortfall(self, point: OperatingPoint) -> float:
        """How far ``point`` is from feasible: the sum of its relative excesses (0 when feasible)."""
        if math.isfinite(point.p99_ms):
            total = max(point.p99_ms / self.slo_p99_ms - 1.0, 0.0)
        else:  # shedding: rank by how much was lost, then by the median
            median = point.p50_ms / self.slo_p99_ms if math.isfinite(point.p50_ms) else 1e3
            total = 1e3 + 1e3 * point.failed_share + median
        if self.min_accuracy is not None and self.min_accuracy > 0:
            total += max(1.0 - point.accuracy / self.min_accuracy, 0.0)
        if self.memory_mb is not None:
            total += max(point.memory_mb / self.memory_mb - 1.0, 0.0)
        return total


def better(a: OperatingPoint, b: OperatingPoint, objective: str = "accuracy") -> bool:
    """Is ``a`` a better choice than ``b`` under ``objective`` (both assumed feasible)?"""
    if objective == "accuracy":
        return (a.accuracy, -a.p99_ms, -a.memory_mb) > (b.accuracy, -b.p99_ms, -b.memory_mb)
    if objective == "latency":
        return (-a.p99_ms, a.accuracy, -a.memory_mb) > (-b.p99_ms, b.accuracy, -b.memory_mb)
    raise ConfigError(f"unknown objective {objective!r} (known: {', '.join(OBJECTIVES)})")


@dataclass(frozen=True)
class Selection:
    chosen: OperatingPoint | None
    feasible: tuple[OperatingPoint, ...]
    # when nothing is feasible (or for context): the nearest points and what limits each
    closest: tuple[tuple[OperatingPoint, tuple[str, ...]], ...]

    @property
    def ok(self) -> bool:
        return self.chosen is not None


def select(
    points: Iterable[OperatingPoint], constraints: Constraints, objective: str = "accuracy", n_closest: int = 3
) -> Selection:
    """The best feasible point under ``objective`` (None if none), every feasible point, and the
    ``n_closest`` infeasible points ranked by how little they miss the constraints."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r} (known: {', '.join(OBJECTIVES)})")
    pts = list(points)
    feasible = [p for p in pts if constraints.feasible(p)]
    chosen: OperatingPoint | None = None
    for p in feasible:
        if chosen is None or better(p, chosen, objective):
            chosen = p
    misses = sorted((p for p in pts if p not in feasible), key=lambda p: (constraints.shortfall(p), -p.accuracy, p.key))
    closest = tuple((p, tuple(constraints.violations(p))) for p in misses[:n_closest])
    return Selection(chosen, tuple(feasible), closest)


@dataclass(frozen=True)
class Bounds:
    """Optimistic values for a candidate not measured yet: it is at most this accurate, at least
    this slow, at least this large. Each bound says where it came from (for the report)."""

    accuracy_max: float = math.inf
    p99_min_ms: float = 0.0
    memory_min_mb: float = 0.0
    accuracy_from: str = ""
    p99_from: str = ""

    def optimistic_point(self, key: str) -> OperatingPoint:
        return OperatingPoint(key, self.accuracy_max, self.p99_min_ms, self.memory_min_mb)


def skip_reason(
    bounds: Bounds,
    constraints: Constraints,
    incumbent: OperatingPoint | None,
    front: OperatingPoints | None = None,
    objective: str = "accuracy",
    tie: float = 0.0,
) -> str | None:
    """Why a candidate with these optimistic ``bounds`` need not be measured (None: measure it).

    ``incumbent`` is the best feasible point so far. ``tie`` (relative) keeps near-ties with it
    worth measuring under objective ``accuracy``: they cannot be chosen unless more accurate,
    but they map the front where it matters.
    """
    if constraints.memory_mb is not None and bounds.memory_min_mb > constraints.memory_mb:
        return f"memory {bounds.memory_min_mb:.2f} MB > cap {constraints.memory_mb:g} MB"
    if constraints.min_accuracy is not None and bounds.accuracy_max < constraints.min_accuracy:
        return f"NDCG@10 <= {bounds.accuracy_max:.4f}{_src(bounds.accuracy_from)} < floor {constraints.min_accuracy:.4f}"
    if bounds.p99_min_ms > constraints.slo_p99_ms:
        return f"p99 >= {bounds.p99_min_ms:.2f} ms{_src(bounds.p99_from)} > SLO {constraints.slo_p99_ms:g} ms"
    if incumbent is not None:
        if objective == "accuracy" and bounds.accuracy_max < incumbent.accuracy * (1.0 - tie):
            return (f"cannot beat {incumbent.key}: NDCG@10 <= {bounds.accuracy_max:.4f}{_src(bounds.accuracy_from)} "
                    f"< {incumbent.accuracy:.4f}")
        if objective == "latency" and bounds.p99_min_ms > incumbent.p99_ms:
            return f"cannot beat {incumbent.key}: p99 >= {bounds.p99_min_ms:.2f} ms > {incumbent.p99_ms:.2f} ms"
    if front is not None:
        optimistic = bounds.optimistic_point("candidate")
        for p in front.optimal:
            if dominates(p, optimistic, front.objectives):
                return f"dominated by {p.key}"
    return None


def _src(origin: str) -> str:
    return f" ({origin})" if origin else ""


__all__ = [
    "OBJECTIVES",
    "AccuracyFloor",
    "Bounds",
    "Constraints",
    "Selection",
    "better",
    "select",
    "skip_reason",
]
