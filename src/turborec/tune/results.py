"""What a tuning run produces: one record per candidate considered, and the run's outcome."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from turborec.bench.replay import LatencyStats
from turborec.errors import ConfigError
from turborec.tune.objective import AccuracyFloor, Constraints, Selection
from turborec.tune.pareto import OperatingPoint
from turborec.tune.space import Candidate

MEASURED, SKIPPED, UNSUPPORTED = "measured", "skipped", "unsupported"
EXIT_INFEASIBLE = 3


@dataclass(frozen=True)
class TuneOptions:
    """The user's request and how hard to look. Checked on construction, before any work."""

    slo_p99_ms: float
    rate: float
    min_accuracy: AccuracyFloor | None = None
    memory_mb: float | None = None
    objective: str = "accuracy"
    budget_s: float = 900.0
    measure_s: float = 6.0  # replay per point (after warmup_s), judged by the median of `windows` windows
    warmup_s: float = 0.5
    confirm_top: int = 5  # feasible points confirmed over HTTP, best first
    confirm_s: float = 6.0
    windows: int = 3
    tie: float = 0.01  # relative accuracy band of near-ties still measured (maps the front)
    student_seconds: float = 60.0  # training time cap of each distilled student
    seed: int = 0
    n_requests: int = 2000  # size of the recorded request mix

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(math.isfinite(self.rate) and self.rate > 0, f"--rate {self.rate}: must be a positive number of requests a second")
        need(self.rate <= 100_000, f"--rate {self.rate}: at most 100000 req/s can be replayed in-process")
        need(math.isfinite(self.budget_s) and self.budget_s > 0, f"--budget-minutes {self.budget_s / 60:g}: must be positive")
        need(self.objective in ("accuracy", "latency"), f"--objective {self.objective!r}: choose accuracy or latency")
        need(self.objective != "latency" or self.min_accuracy is not None,
             "--objective latency minimises p99 at an accuracy floor: give --min-accuracy too")
        need(self.measure_s > 0 and self.warmup_s >= 0 and self.confirm_s > 0, "measurement windows must be positive")
        need(1 <= self.windows <= 20, f"windows={self.windows}: must be 1..20")
        need(self.confirm_top >= 0, f"--confirm {self.confirm_top}: must be >= 0")
        need(0 <= self.tie < 1, f"tie band {self.tie}: must be in [0, 1)")
        need(self.rate * self.measure_s / self.windows >= 100,
             f"--rate {self.rate:g} for {self.measure_s:g} s in {self.windows} window(s) gives under 100 requests "
             "a window: too few for a p99 (measure longer)")
        Constraints(self.slo_p99_ms, None, self.memory_mb)  # validates both


@dataclass
class Record:
    candidate: Candidate
    status: str
    reason: str = ""
    accuracy: float | None = None
    memory_mb: float | None = None
    stats: LatencyStats | None = None
    http: LatencyStats | None = None
    seconds: float = 0.0  # time spent on this candidate (build + accuracy + replay)

    @property
    def key(self) -> str:
        return self.candidate.key

    @property
    def p99_ms(self) -> float:
        """The confirmed (HTTP) p99 where there is one, else the in-process replay's."""
        if self.http is not None:
            return self.http.p99_ms
        return self.stats.p99_ms if self.stats is not None else math.inf

    def point(self) -> OperatingPoint | None:
        if self.status != MEASURED or self.stats is None or self.accuracy is None or self.memory_mb is None:
            return None
        latency = self.http if self.http is not None else self.stats
        config: dict[str, Any] = {"stage": self.candidate.stage, "model": self.candidate.model.to_dict(),
                                  "serving": self.candidate.knobs.to_dict()}
        if self.http is not None:  # drawn at its HTTP p99; the plot joins it to the in-process one
            config["in_process_p99_ms"] = self.stats.p99_ms
        return OperatingPoint(self.key, self.accuracy, self.p99_ms, self.memory_mb, latency.p50_ms, config,
                              latency.failed / max(latency.sent, 1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "stage": self.candidate.stage, "status": self.status, "reason": self.reason,
            "model": self.candidate.model.to_dict(), "serving": self.candidate.knobs.to_dict(),
            "ndcg@10": self.accuracy, "memory_mb": self.memory_mb,
            "in_process": self.stats.to_dict() if self.stats is not None else None,
            "http": self.http.to_dict() if self.http is not None else None, "seconds": round(self.seconds, 2),
        }


@dataclass
class TuneResult:
    options: TuneOptions
    constraints: Constraints  # the floor resolved against the reference accuracy
    reference_accuracy: float
    records: list[Record]
    selection: Selection
    elapsed_s: float
    artifact: str | None = None
    notes: list[str] = field(default_factory=list)
    finished_at: float = field(default_factory=time.time)

    @property
    def chosen(self) -> Record | None:
        if self.selection.chosen is None:
            return None
        return next(r for r in self.records if r.key == self.selection.chosen.key)

    @property
    def exit_code(self) -> int:
        return 0 if self.selection.ok else EXIT_INFEASIBLE

    def measured(self) -> list[Record]:
        return [r for r in self.records if r.status == MEASURED]

    def points(self) -> list[OperatingPoint]:
        return [p for r in self.records if (p := r.point()) is not None]


__all__ = ["EXIT_INFEASIBLE", "MEASURED", "SKIPPED", "UNSUPPORTED", "Record", "TuneOptions", "TuneResult"]
