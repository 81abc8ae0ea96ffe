"""The open-loop load generator against small real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from turborec.bench.loadgen import LoadSpec, RequestTemplate, arrival_times, run_load, run_load_subprocess
from turborec.bench.report import summarize
from turborec.errors import ConfigError


@contextmanager
def http_server(delay_s: float = 0.0, answer: bool = True) -> Iterator[str]:
    """A keep-alive HTTP/1.1 server in a thread: each request takes ``delay_s`` (one at a time per connection)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port_box: list[int] = []
    stop = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if not answer:
                    await stop.wait()
                    return
                await asyncio.sleep(delay_s)
                body = b'{"ok": true}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Turborec-Tier: full\r\n\r\n%s"
                             % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_box.append(server.sockets[0].getsockname()[1])
        ready.set()
        await stop.wait()
        server.close()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield f"http://127.0.0.1:{port_box[0]}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)


def test_arrivals_are_poisson_at_the_rate_and_bounded() -> None:
    spec = LoadSpec(url="http://127.0.0.1:1", rate=2000, duration_s=5.0)
    t = arrival_times(spec)
    assert np.all(np.diff(t) > 0) and t[-1] < 5.0
    assert abs(len(t) - 10_000) < 5 * np.sqrt(10_000)
    gaps = np.diff(t)
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05  # exponential gaps: coefficient of variation 1
    capped = arrival_times(LoadSpec(url="http://127.0.0.1:1", rate=2000, duration_s=5.0, max_requests=123))
    assert len(capped) == 123


def test_phases_change_the_rate() -> None:
    spec = LoadSpec(url="http://127.0.0.1:1", rate=100, duration_s=6.0, phases=((0.0, 100.0), (2.0, 1000.0),
                                                                                    (4.0, 100.0)))
    t = arrival_times(spec)
    counts = np.histogram(t, bins=[0, 2, 4, 6])[0]
    assert abs(counts[0] - 200) < 60 and abs(counts[1] - 2000) < 200 and abs(counts[2] - 200) < 60


def test_only_loopback_targets() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        LoadSpec(url="http://10.0.0.1:80", rate=10, duration_s=1)
    with pytest.raises(ConfigError, match="expected http"):
        LoadSpec(url="https://127.0.0.1:80", rate=10, duration_s=1)
    LoadSpec(url="http://localhost:80", rate=10, duration_s=1)


def test_counts_statuses_and_tier_headers() -> None:
    with http_server() as url:
        result = run_load(LoadSpec(url=url, rate=400, duration_s=1.0, requests=(
            RequestTemplate("GET", "/a"), RequestTemplate("POST", "/b", b'{"x": 1}'))))
    s = summarize(result, 400)
    assert s.sent == len(result.status) and abs(s.sent - 400) < 100
    assert s.ok == s.sent and s.errors == 0
    assert result.tiers == ["full"] and np.all(result.tier == 0)
    assert np.all(np.isfinite(result.latency)) and np.all(result.latency > 0)


def test_latency_counts_queueing_from_the_scheduled_time() -> None:
    """One connection to a server that takes 20 ms: at 100 req/s (twice its capacity) the queue grows, and
    an open-loop measurement must show it (a closed loop would report about 20 ms)."""
    with http_server(delay_s=0.020) as url:
        result = run_load(LoadSpec(url=url, rate=100, duration_s=1.0, connections=1, preopen=1, timeout_s=10))
    s = summarize(result, 100)
    assert s.ok == s.sent
    assert s.p50_ms > 100 and s.p99_ms > 400
    late = result.latency[result.scheduled > 0.5]
    early = result.latency[result.scheduled < 0.2]
    assert np.median(late) > 3 * np.median(early)


def test_unanswered_requests_time_out_and_the_run_stops_by_itself() -> None:
    with http_server(answer=False) as url:
        start = time.perf_counter()
        result = run_load(LoadSpec(url=url, rate=50, duration_s=0.5, timeout_s=0.5))
        took = time.perf_counter() - start
    assert took < 30  # it stops by itself (0.5 s of arrivals + 0.5 s timeout); the bound only catches a hang
    assert np.all(result.status == 0) and np.all(np.isnan(result.latency))
    assert summarize(result, 50).errors == len(result.status)


def test_refused_connection_is_a_config_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match="cannot connect"):
        run_load(LoadSpec(url=f"http://127.0.0.1:{port}", rate=10, duration_s=0.2))


def test_separate_process_pinned_to_a_core() -> None:
    with http_server() as url:
        result = run_load_subprocess(LoadSpec(url=url, rate=200, duration_s=0.5), cpus=[0])
    assert len(result.status) > 50 and np.all(result.status == 200)
    assert result.latency.shape == result.scheduled.shape == result.send_lag.shape
