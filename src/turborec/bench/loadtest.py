"""``turborec loadtest``: an open-loop load test of a running service, with its own capacity check.

Arrivals follow a pattern (``poisson``: a constant Poisson rate; ``burst``: the rate, three
times the rate for the middle fifth, then the rate again; ``ramp``: from a tenth of the rate up to
the rate in ten steps). Latency counts from each request's *scheduled* send time (no coordinated
omission). Percentiles come from an HdrHistogram (microsecond resolution, 3 significant
digits). Before the run, the generator measures itself against a null HTTP server on loopback
at the peak rate, so a result limited by the generator is reported as such.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from turborec.bench.loadgen import LoadResult, LoadSpec, RequestTemplate, run_load_processes
from turborec.bench.report import LoadSummary, summarize
from turborec.errors import ConfigError

PATTERNS = ("poisson", "burst", "ramp")


def pattern_phases(pattern: str, rate: float, duration_s: float) -> tuple[tuple[float, float], ...]:
    """The piecewise rates ``(start_s, rate)`` of a pattern (empty: constant ``rate``)."""
    if pattern == "poisson":
        return ()
    if pattern == "burst":
        return ((0.0, rate), (0.4 * duration_s, 3.0 * rate), (0.6 * duration_s, rate))
    if pattern == "ramp":
        return tuple((duration_s * i / 10, rate * (i + 1) / 10) for i in range(10))
    raise ConfigError(f"--pattern {pattern!r}: expected one of {', '.join(PATTERNS)}")


@dataclass(frozen=True)
class HdrSummary(LoadSummary):
    """``LoadSummary`` with the latency percentiles read from an HdrHistogram, plus p99.9."""

    p999_ms: float = math.nan


def hdr_summary(result: LoadResult, offered_rate: float) -> HdrSummary:
    """Counts, rates and generator lag as :func:`~turborec.bench.report.summarize` gives them; the HTTP 200
    answers' latency percentiles from an HdrHistogram (microseconds, 3 significant digits)."""
    from hdrh.histogram import HdrHistogram

    base = summarize(result, offered_rate)
    lat_us = np.nan_to_num(result.latency[result.status == 200] * 1e6, nan=0.0)
    if not len(lat_us):
        return HdrSummary(**base.to_dict())
    hist = HdrHistogram(1, max(int(lat_us.max()) * 2, 1_000_000), 3)
    for v in lat_us:
        hist.record_value(max(1, int(v)))
    pct = {f"{name}_ms": hist.get_value_at_percentile(q) / 1000.0 for name, q in
           (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))}  # fmt: skip
    return HdrSummary(**{**base.to_dict(), **pct, "max_ms": hist.get_max_value() / 1000.0})


@contextmanager
def null_server() -> Iterator[str]:
    """A loopback HTTP server that answers every request at once (200, empty JSON): the generator's
    own ceiling is measured against it."""
    loop = asyncio.new_event_loop()
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    marker = b" HTTP/1.1\r\n"  # the end of each request line

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.tail = b""

        def data_received(self, data: bytes) -> None:
            # one reply per request line; the last few bytes carry over so a line split across reads counts once
            assert isinstance(self.transport, asyncio.Transport)
            seen = self.tail + data
            self.transport.write(reply * seen.count(marker))
            self.tail = seen[-(len(marker) - 1) :]

    server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        server.close()
        loop.close()


def calibrate(spec: LoadSpec, cpu_sets: Sequence[Sequence[int] | None], seconds: float = 1.5) -> HdrSummary:
    """The generator against the null server at the spec's peak rate for ``seconds``."""
    peak = max([spec.rate, *(r for _, r in spec.phases)])
    with null_server() as url:
        probe = replace(spec, url=url, rate=peak, duration_s=seconds, phases=(), max_requests=10_000_000)
        return hdr_summary(run_load_processes(probe, cpu_sets), peak)


def generator_limited(check: HdrSummary) -> bool:
    """Against a server that answers at once, the generator sent late (p99 lag over 1 ms) or lost answers:
    it, not the server under test, would limit the result at this rate."""
    return check.send_lag_p99_ms > 1.0 or check.ok < 0.99 * check.sent


def requests_for(path: str, users: range | None, k: int, body: str | None) -> tuple[RequestTemplate, ...]:
    """One template per user id (``{"user": id, "k": k}``), or the given body, POSTed to ``path``."""
    if body is not None:
        try:
            json.loads(body)
        except ValueError as exc:
            raise ConfigError(f"--body is not valid JSON: {exc}") from None
        return (RequestTemplate("POST", path, body.encode()),)
    if users is None or len(users) == 0:
        raise ConfigError("--users must name at least one user id (e.g. 1:200)")
    return tuple(RequestTemplate("POST", path, json.dumps({"user": str(u), "k": k}).encode()) for u in users)


def plot_latency(result: LoadResult, path: Path, title: str, window_s: float = 0.25,
                 slo_ms: float | None = None) -> Path:
    """Latency over time: every answered request, the p99 per window, the SLO as a line, each shed (503)
    request as a red tick at the top at the time it was sent; below, the requests sent per second in each
    window split into answered, shed (503) and failed, so a burst and what it cost read at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    ok = result.status == 200
    shed_mask = result.status == 503
    ax.scatter(result.scheduled[ok], result.latency[ok] * 1000, s=1, alpha=0.3, label="HTTP 200", rasterized=True)
    edges = np.arange(0.0, float(result.scheduled.max(initial=0.0)) + window_s, window_s)
    mids, p99, answered, shed, failed = [], [], [], [], []
    for lo in edges:
        sel = (result.scheduled >= lo) & (result.scheduled < lo + window_s)
        if sel.any():
            mids.append(lo + window_s / 2)
            lat = result.latency[sel & ok]
            p99.append(float(np.percentile(lat, 99)) * 1000 if len(lat) else math.nan)
            answered.append(float((sel & ok).sum()) / window_s)
            shed.append(float((sel & shed_mask).sum()) / window_s)
            failed.append(float((sel & ~ok & ~shed_mask).sum()) / window_s)
    ax.plot(mids, p99, color="black", lw=1.2, label=f"p99 per {window_s * 1000:.0f} ms")
    if slo_ms is not None:
        ax.axhline(slo_ms, color="tab:red", ls="--", lw=1.5, label=f"SLO p99 {slo_ms:g} ms")
    shed_at = result.scheduled[shed_mask]
    if len(shed_at):
        ax.plot(shed_at, np.full(len(shed_at), 0.97), "|", color="tab:red", ms=8, alpha=0.5,
                transform=ax.get_xaxis_transform(), label=f"shed (503), when sent: {len(shed_at):,}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))  # "0.1, 1, 10", not "10^-1"
    ax.set_ylabel("latency (ms, log scale)")
    n = len(result.status)
    answered_lat = result.latency[ok] * 1000
    p99_all = f"p99 {np.percentile(answered_lat, 99):.1f} ms" if len(answered_lat) else "no answers"
    ax.set_title(f"{title}: {n:,} sent, {p99_all} of answered, {100.0 * len(shed_at) / max(n, 1):.1f}% shed",
                 fontsize=10)
    ax.grid(True, which="major", alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, markerscale=1.5)
    ax2.stackplot(mids, answered, shed, failed, colors=["tab:blue", "tab:red", "tab:gray"], alpha=0.7,
                  labels=["answered (200)", "shed (503)", "failed / timed out"])
    ax2.set_ylabel("sent (req/s)")
    ax2.set_xlabel("time since start (s)")
    ax2.grid(True, alpha=0.25)
    ax2.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = [
    "PATTERNS",
    "HdrSummary",
    "calibrate",
    "generator_limited",
    "hdr_summary",
    "null_server",
    "pattern_phases",
    "plot_latency",
    "requests_for",
]
