"""Load summaries and the sustainable-rate search, on synthetic results."""

from __future__ import annotations

import math

import numpy as np
import pytest

from turborec.bench.loadgen import LoadResult
from turborec.bench.report import LoadSummary, find_sustainable_rate, markdown_table, meets_slo, summarize
from turborec.errors import ConfigError


def synthetic_result(n: int = 1000, rate: float = 1000.0) -> LoadResult:
    sched = np.arange(n) / rate
    latency = np.linspace(0.001, 0.010, n)  # 1..10 ms
    status = np.full(n, 200, dtype=np.int32)
    status[::10] = 503  # every tenth shed
    status[5] = 0  # one lost
    latency[5] = np.nan
    return LoadResult(sched, latency, status, np.zeros(n, dtype=np.int32), np.zeros(n), ["full"], n / rate)


def test_summary_counts_and_percentiles() -> None:
    s = summarize(synthetic_result(), 1000.0)
    assert (s.sent, s.shed, s.errors) == (1000, 100, 1)
    assert s.ok == 899
    assert 9.5 < s.p99_ms <= 10.0 and 5.0 < s.p50_ms < 6.0 and s.max_ms == pytest.approx(10.0)
    assert s.achieved_rate == pytest.approx(999 / 0.999, rel=0.01)
    assert summarize(synthetic_result(), 1000.0, window=(0.0, 2.0)).achieved_rate == pytest.approx(999 / 2)
    assert s.shed_fraction == pytest.approx(0.1)


def test_summary_window() -> None:
    s = summarize(synthetic_result(), 1000.0, window=(0.5, 1.0))
    assert s.sent == 500 and s.p50_ms > 7


def summary(rate: float, p99_ms: float, shed: int = 0) -> LoadSummary:
    return LoadSummary(rate, rate, 1000, 1000 - shed, shed, 0,
                       p99_ms / 2, p99_ms * 0.8, p99_ms, p99_ms * 1.5, math.nan, 0.0)


def test_meets_slo() -> None:
    assert meets_slo(summary(1000, 9.0), 10.0)
    assert not meets_slo(summary(1000, 11.0), 10.0)
    assert not meets_slo(summary(1000, 5.0, shed=100), 10.0)  # fast because it refused work
    lost = LoadSummary(1000, 990, 1000, 990, 0, 10, 2.0, 3.0, 4.0, 5.0, math.nan, 0.0)
    assert not meets_slo(lost, 10.0)  # fast because unanswered requests are not in the percentiles


def test_search_finds_the_knee() -> None:
    knee = 2345.0

    def probe(rate: float) -> LoadSummary:  # p99 grows sharply past the knee, like a queue
        return summary(rate, 3.0 + (0 if rate <= knee else (rate - knee) / 10))

    found = find_sustainable_rate(probe, slo_p99_ms=10.0, start_rate=250, rel_tolerance=0.05, max_probes=20)
    assert knee * 0.95 <= found.sustainable_rate <= knee + 70
    assert all(ok == (rate <= knee + 70) for rate, _, ok in found.probes)


def test_search_when_nothing_passes_or_everything_does() -> None:
    assert find_sustainable_rate(lambda r: summary(r, 50.0), 10.0, start_rate=100, max_probes=5).sustainable_rate == 0
    easy = find_sustainable_rate(lambda r: summary(r, 1.0), 10.0, start_rate=100, max_rate=800)
    assert easy.sustainable_rate == 800


def test_bad_bounds() -> None:
    with pytest.raises(ConfigError):
        find_sustainable_rate(lambda r: summary(r, 1.0), 10.0, start_rate=0)


def test_markdown_table() -> None:
    text = markdown_table([{"a": 1.23456, "b": "x"}, {"a": 1234.5, "b": "y"}], ["a", "b"])
    assert text.splitlines()[0] == "| a | b |" and "| 1.23 | x |" in text and "| 1234 | y |" in text
