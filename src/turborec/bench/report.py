"""Load-test summaries and the sustainable-rate search (pure: numbers in, numbers out)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from turborec.bench.loadgen import LoadResult
from turborec.errors import ConfigError


@dataclass(frozen=True)
class LoadSummary:
    offered_rate: float
    achieved_rate: float  # answered (any HTTP status) per second of the window (Poisson noise included)
    sent: int
    ok: int  # HTTP 200
    shed: int  # HTTP 503
    errors: int  # other statuses, connection errors, timeouts
    p50_ms: float  # over HTTP 200 answers, from the scheduled send time
    p90_ms: float
    p99_ms: float
    max_ms: float
    shed_p99_ms: float  # how fast the 503s came back
    send_lag_p99_ms: float  # how late the generator itself was (a health check of the measurement)

    @property
    def error_fraction(self) -> float:
        return self.errors / self.sent if self.sent else 0.0

    @property
    def shed_fraction(self) -> float:
        return self.shed / self.sent if self.sent else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q, method="higher")) * 1000 if len(values) else math.nan


def summarize(result: LoadResult, offered_rate: float, window: tuple[float, float] | None = None) -> LoadSummary:
    """Summary of the requests scheduled inside ``window`` (seconds from start; default: all)."""
    sel = np.ones(len(result.scheduled), dtype=bool)
    if window is not None:
        sel = (result.scheduled >= window[0]) & (result.scheduled < window[1])
    status, lat = result.status[sel], result.latency[sel]
    sched = result.scheduled[sel]
    ok = status == 200
    shed = status == 503
    answered = status > 0
    if window is not None:
        span = window[1] - window[0]
    else:
        span = float(sched[-1] - sched[0]) if len(sched) > 1 else 0.0
    achieved = float(answered.sum()) / span if span > 0 else math.nan
    return LoadSummary(
        offered_rate=offered_rate,
        achieved_rate=achieved,
        sent=int(sel.sum()),
        ok=int(ok.sum()),
        shed=int(shed.sum()),
        errors=int((~ok & ~shed).sum()),
        p50_ms=_pct(lat[ok], 50),
        p90_ms=_pct(lat[ok], 90),
        p99_ms=_pct(lat[ok], 99),
        max_ms=_pct(lat[ok], 100),
        shed_p99_ms=_pct(lat[shed], 99),
        send_lag_p99_ms=_pct(result.send_lag[sel], 99),
    )


def meets_slo(s: LoadSummary, slo_p99_ms: float, max_error_fraction: float = 0.001,
              max_shed_fraction: float = 0.001) -> bool:
    """p99 within the SLO with (almost) nothing refused or lost.

    No separate throughput check is needed: the load is open-loop, so a server
    that falls behind shows it in the p99 (measured from the scheduled send
    time) or in requests unanswered by the timeout (errors).
    """
    return (
        s.ok > 0
        and s.p99_ms <= slo_p99_ms
        and s.error_fraction <= max_error_fraction
        and s.shed_fraction <= max_shed_fraction
    )


@dataclass(frozen=True)
class RateSearch:
    sustainable_rate: float  # highest probed rate that met the SLO (0 if none)
    probes: tuple[tuple[float, LoadSummary, bool], ...]


def find_sustainable_rate(
    probe: Callable[[float], LoadSummary],
    slo_p99_ms: float,
    start_rate: float = 200.0,
    max_rate: float = 20_000.0,
    growth: float = 2.0,
    rel_tolerance: float = 0.1,
    max_probes: int = 12,
    passes: Callable[[LoadSummary], bool] | None = None,
) -> RateSearch:
    """Highest rate with p99 <= SLO: grow geometrically until a probe fails, then bisect.

    ``probe(rate)`` runs a load at ``rate`` and summarizes it. Stops when the
    bracket is within ``rel_tolerance`` or after ``max_probes`` probes.
    """
    if start_rate <= 0 or max_rate < start_rate or growth <= 1:
        raise ConfigError(f"bad rate search bounds: start {start_rate}, max {max_rate}, growth {growth}")
    ok = passes or (lambda s: meets_slo(s, slo_p99_ms))
    probes: list[tuple[float, LoadSummary, bool]] = []

    def run(rate: float) -> bool:
        summary = probe(rate)
        good = ok(summary)
        probes.append((rate, summary, good))
        return good

    lo, hi = 0.0, None
    rate = start_rate
    while len(probes) < max_probes:
        if not run(rate):
            hi = rate
            break
        lo = rate
        if rate >= max_rate:
            break
        rate = min(rate * growth, max_rate)
    while hi is not None and len(probes) < max_probes and (hi - lo) > rel_tolerance * max(lo, 1.0):
        mid = (lo + hi) / 2 if lo > 0 else hi / growth
        if run(mid):
            lo = mid
        else:
            hi = mid
    return RateSearch(lo, tuple(probes))


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else (f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}")
        return str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(out)
