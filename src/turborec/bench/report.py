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
    p999_ms: float = math.nan

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
        p999_ms=_pct(lat[ok], 99.9),
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
class Probe:
    rate: float
    summary: LoadSummary
    passed: bool
    phase: str  # "climb", "descend", "refine" or "confirm"


@dataclass(frozen=True)
class RateSearch:
    sustainable_rate: float  # highest rate whose fresh repeats met the SLO (0: none within the probe budget)
    search_rate: float  # highest rate the search itself judged passing (before the confirming repeats)
    probes: tuple[Probe, ...]
    repeats: tuple[LoadSummary, ...]  # the confirming repeats at ``sustainable_rate`` (empty if none)
    capped: bool  # the answer is ``max_rate``: the server may carry more than the search offered

    def to_dict(self) -> dict[str, Any]:
        return {"sustainable_rate": self.sustainable_rate, "search_rate": self.search_rate, "capped": self.capped,
                "probes": [{**p.summary.to_dict(), "rate": p.rate, "passed": p.passed, "phase": p.phase}
                           for p in self.probes]}


def find_sustainable_rate(
    probe: Callable[[float], LoadSummary],
    slo_p99_ms: float,
    start_rate: float = 200.0,
    max_rate: float = 20_000.0,
    growth: float = 2.0,
    rel_tolerance: float = 0.1,
    max_probes: int = 24,
    repeats: int = 3,
    failed_rungs_to_stop: int = 2,
    min_rate: float | None = None,
    clear_miss: float = 2.0,
    passes: Callable[[LoadSummary], bool] | None = None,
) -> RateSearch:
    """Highest rate that holds the SLO, on a p99-vs-rate curve that is noisy (a probe can miss by chance).

    ``probe(rate)`` runs a load at ``rate`` and summarizes it; ``passes`` judges one probe (default
    :func:`meets_slo`). A *rate is judged* by probing it once; a pass stands, a miss is repeated until a
    majority of ``repeats`` probes decides (so one unlucky window does not fail a rate). A miss with p99
    above ``clear_miss`` x SLO or with more than 1% refused/failed is an overload, not noise: it fails
    the rate at once.

    1. Climb the ladder ``start_rate * growth**i`` (up to ``max_rate``). A failed rung does not end the
       climb: only ``failed_rungs_to_stop`` consecutive failed rungs above a passing one do. Before any
       rung passed, a near miss does not stop it either (a server whose p99 is noisy at low rates, as idle
       cores' wake-ups make it, is still looked at higher up), but an overload confirmed by a second probe
       does.
    2. No rung passed: descend ``start_rate / growth**i`` down to ``min_rate`` (default ``start_rate /
       growth**6``) until one does, skipping a rung below a deep overload.
    3. Refine geometrically between the highest passing rate and the lowest failed rate above it until
       they are within ``rel_tolerance``.
    4. Confirm: ``repeats`` fresh probes at the answer; a majority must pass (for an odd count, the median
       of their p99 is within the SLO). Else step down (``rel_tolerance``, or to the next lower rate that
       passed) and confirm again while probes are left.

    Every answer but ``max_rate`` has a failed probe above it. At most ``max_probes`` probes in all
    (``repeats`` of them are kept for the first confirmation, and refinement leaves room for a second).
    """
    if start_rate <= 0 or max_rate < start_rate or growth <= 1 or repeats < 1 or max_probes < repeats + 1:
        raise ConfigError(f"bad rate search bounds: start {start_rate}, max {max_rate}, growth {growth}, "
                          f"repeats {repeats}, max probes {max_probes}")
    ok = passes or (lambda s: meets_slo(s, slo_p99_ms))
    floor = min_rate if min_rate is not None else start_rate / growth**6
    majority = repeats // 2 + 1
    probes: list[Probe] = []
    verdicts: dict[float, bool] = {}  # rate -> judged passing (search phases)

    def overloaded(s: LoadSummary) -> bool:
        return s.ok == 0 or s.p99_ms > clear_miss * slo_p99_ms or s.shed_fraction + s.error_fraction > 0.01

    def budget(reserve: int) -> int:
        return max_probes - reserve - len(probes)

    def judge(rate: float, phase: str, patient: bool = False) -> bool | None:
        """The rate's verdict (None: out of probes before one was reached); ``patient``: an overload is repeated
        like any other miss (before anything passed, one stall must not send the search down)."""
        wins = losses = 0
        while budget(repeats) > 0:
            s = probe(rate)
            good = ok(s)
            probes.append(Probe(rate, s, good, phase))
            if good:
                wins += 1
            else:
                losses += 1
            if wins and not losses:  # a first pass stands
                verdicts[rate] = True
                return True
            if not good and overloaded(s) and (not patient or losses > 1):
                verdicts[rate] = False
                return False
            if wins >= majority:
                verdicts[rate] = True
                return True
            if losses > repeats - majority:
                verdicts[rate] = False
                return False
        return None

    def clear(rate: float) -> bool:
        return any(p.rate == rate and not p.passed and overloaded(p.summary) for p in probes)

    # 1. climb
    rungs = []
    rate = start_rate
    while rate < max_rate * (1 - 1e-9):
        rungs.append(rate)
        rate *= growth
    rungs.append(max_rate)
    streak = 0
    for rate in rungs:
        passed_below = any(verdicts.values())
        verdict = judge(rate, "climb", patient=not passed_below)
        if verdict is None:
            break
        if verdict:
            streak = 0
        elif not passed_below:
            if clear(rate):  # overloaded before any rung passed: the rate is below the start
                break
            # else a near miss below the knee (idle cores' wake-ups): climb on
        else:
            streak += 1
            if streak >= failed_rungs_to_stop:
                break
    # 2. descend (two rungs at a time past a deep overload: p99 over 10x the SLO or over 10% refused/failed)
    rate = start_rate / growth
    while not any(verdicts.values()) and rate >= floor * (1 - 1e-9) and budget(repeats) > 0:
        judge(rate, "descend")
        last = probes[-1].summary
        deep = last.ok == 0 or last.p99_ms > 10 * slo_p99_ms or last.shed_fraction + last.error_fraction > 0.1
        rate /= growth**2 if deep and rate / growth**2 >= floor * (1 - 1e-9) else growth

    def bracket() -> tuple[float, float | None]:
        lo = max((r for r, v in verdicts.items() if v), default=0.0)
        hi = min((r for r, v in verdicts.items() if not v and r > lo), default=None)
        return lo, hi

    # 3. refine, keeping probes for a second confirmation (the first may fail: the search's passes were single
    # probes, the luckiest of which is the answer)
    lo, hi = bracket()
    while lo > 0 and hi is not None and hi > lo * (1 + rel_tolerance) and budget(2 * repeats) > 0:
        if judge(math.sqrt(lo * hi), "refine") is None:
            break
        lo, hi = bracket()
    search_rate = lo
    # 4. confirm
    confirmed: tuple[LoadSummary, ...] = ()
    rate = lo
    while rate > 0 and budget(0) >= repeats:
        runs: list[LoadSummary] = []
        while len(runs) < repeats and len(runs) - sum(map(ok, runs)) <= repeats - majority:  # until it must fail
            s = probe(rate)
            runs.append(s)
            probes.append(Probe(rate, s, ok(s), "confirm"))
        if sum(map(ok, runs)) >= majority:
            confirmed = tuple(runs)
            break
        lower = [r for r, v in verdicts.items() if v and r < rate]
        step = rate / (1 + rel_tolerance)
        rate = max(max(lower, default=0.0), step if step >= floor else 0.0)
    answer = rate if confirmed else 0.0
    return RateSearch(answer, search_rate, tuple(probes), confirmed, bool(confirmed) and answer >= max_rate)


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else (f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}")
        return str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(out)
