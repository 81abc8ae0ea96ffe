"""Open-loop load generator: Poisson arrivals at a target rate over raw HTTP/1.1 keep-alive connections.

Open loop means requests are sent on a schedule fixed in advance, whatever the
server does, and each latency is measured from the request's *scheduled* send
time: when the server falls behind, the queueing shows in the numbers instead of
silently slowing the generator down (no coordinated omission). That rules out
closed-loop tools (Debian's ``wrk`` is closed-loop) and ``httpx``, which tops
out near 800 req/s on one core; this client is an ``asyncio.Protocol`` per
connection, one request in flight on each (no pipelining), and reaches several
thousand requests per second on one core (benchmarks/serving.py reports it).

Runs are bounded twice: ``duration_s`` of arrivals and ``max_requests``; then it
waits at most ``timeout_s`` for stragglers and stops by itself. Targets must be
loopback addresses (127.0.0.0/8, ::1, localhost).

``run_load_subprocess`` runs the generator in a child process pinned to given
cores (``os.sched_setaffinity``) so it does not steal the server's CPU; the
spec goes in on stdin and the samples come back in a JSON file.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from turborec._util.optional import has_module
from turborec.errors import ConfigError

TIER_HEADER = b"x-turborec-tier"
SPIN_S = 0.002  # closer than this to the next send, yield instead of sleeping (timer granularity is ~1 ms)


@dataclass(frozen=True)
class RequestTemplate:
    """One request to send: method, path, optional JSON body (bytes)."""

    method: str = "GET"
    path: str = "/"
    body: bytes = b""


@dataclass(frozen=True)
class LoadSpec:
    url: str  # http://127.0.0.1:PORT (paths come from the templates)
    rate: float  # offered requests per second
    duration_s: float
    requests: tuple[RequestTemplate, ...] = (RequestTemplate(),)
    max_requests: int = 1_000_000
    connections: int = 256  # upper bound; connections open as concurrency needs them
    timeout_s: float = 5.0
    seed: int = 0
    # piecewise rates: ((start_s, rate), ...) overrides ``rate`` from each start on (overload then calm)
    phases: tuple[tuple[float, float], ...] = ()
    preopen: int = 16  # connections opened before the clock starts

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration_s <= 0 or self.max_requests <= 0:
            raise ConfigError(f"load spec needs rate, duration_s and max_requests > 0 (got {self.rate}, "
                              f"{self.duration_s}, {self.max_requests})")
        if not self.requests:
            raise ConfigError("load spec has no request templates")
        if self.connections < 1:
            raise ConfigError(f"connections={self.connections}: must be >= 1")
        host, _ = _host_port(self.url)
        if not _is_loopback(host):
            raise ConfigError(f"load target {self.url!r}: only loopback addresses may be load-tested")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["requests"] = [{"method": r.method, "path": r.path, "body": r.body.decode()} for r in self.requests]
        return d

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LoadSpec:
        obj = dict(obj)
        obj["requests"] = tuple(RequestTemplate(r["method"], r["path"], r["body"].encode()) for r in obj["requests"])
        obj["phases"] = tuple(tuple(p) for p in obj.get("phases", ()))
        return cls(**obj)


@dataclass
class LoadResult:
    """Per request, in schedule order: scheduled time (s from start), latency (s, NaN if no answer),
    HTTP status (0 = connection error or timeout), tier header (index into ``tiers``, -1 if none),
    and how late the generator sent it (s)."""

    scheduled: np.ndarray
    latency: np.ndarray
    status: np.ndarray
    tier: np.ndarray
    send_lag: np.ndarray
    tiers: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "scheduled": self.scheduled.tolist(), "latency": np.nan_to_num(self.latency, nan=-1.0).tolist(),
            "status": self.status.tolist(), "tier": self.tier.tolist(), "send_lag": self.send_lag.tolist(),
            "tiers": self.tiers, "wall_s": self.wall_s,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LoadResult:
        lat = np.asarray(obj["latency"], dtype=np.float64)
        lat[lat < 0] = np.nan
        return cls(np.asarray(obj["scheduled"], dtype=np.float64), lat, np.asarray(obj["status"], dtype=np.int32),
                   np.asarray(obj["tier"], dtype=np.int32), np.asarray(obj["send_lag"], dtype=np.float64),
                   list(obj["tiers"]), float(obj["wall_s"]))


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"load target {url!r}: expected http://HOST:PORT")
    return parts.hostname, parts.port or 80


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def arrival_times(spec: LoadSpec) -> np.ndarray:
    """Poisson arrival times (seconds from start) for the spec's rate(s), bounded by duration and count."""
    rng = np.random.default_rng(spec.seed)
    bounds = sorted(spec.phases) or [(0.0, spec.rate)]
    if bounds[0][0] > 0:
        bounds = [(0.0, spec.rate), *bounds]
    out: list[np.ndarray] = []
    for i, (start, rate) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else spec.duration_s
        end = min(end, spec.duration_s)
        if end <= start or rate <= 0:
            continue
        expected = int(rate * (end - start) * 1.2 + 50)
        t = start + np.cumsum(rng.exponential(1.0 / rate, expected))
        while t[-1] < end:  # extremely unlikely; extend
            t = np.concatenate([t, t[-1] + np.cumsum(rng.exponential(1.0 / rate, expected))])
        out.append(t[t < end])
    times = np.concatenate(out) if out else np.zeros(0)
    return times[: spec.max_requests]


def raw_request(template: RequestTemplate, host: str, port: int) -> bytes:
    head = f"{template.method} {template.path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
    if template.body or template.method in ("POST", "PUT"):
        head += f"content-type: application/json\r\ncontent-length: {len(template.body)}\r\n"
    return head.encode() + b"\r\n" + template.body


class _Conn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes | None]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((0, None))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buf[:end]).lower()
        length = 0
        tier = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == TIER_HEADER:
                tier = value.strip()
        if len(self.buf) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buf[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result((status, tier))

    async def request(self, raw: bytes) -> tuple[int, bytes | None]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def _run(spec: LoadSpec, start_at: float | None = None) -> LoadResult:
    loop = asyncio.get_running_loop()
    host, port = _host_port(spec.url)
    raws = [raw_request(t, host, port) for t in spec.requests]
    times = arrival_times(spec)
    n = len(times)
    latency = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int32)
    tier = np.full(n, -1, dtype=np.int32)
    lag = np.zeros(n)
    tier_index: dict[bytes, int] = {}
    idle: list[_Conn] = []
    n_open = 0
    slots = asyncio.Semaphore(spec.connections)
    clock = time.perf_counter
    for _ in range(min(spec.connections, spec.preopen)):  # connection setup is not part of the measurement
        try:
            _, c = await loop.create_connection(_Conn, host, port)
        except OSError as exc:
            raise ConfigError(f"load target {spec.url}: cannot connect ({exc})") from exc
        idle.append(c)
        n_open += 1
    start = clock() + 0.01
    if start_at is not None:  # several generator processes share one time origin (wall clock)
        start = clock() + max(start_at - time.time(), 0.0)

    async def one(i: int) -> None:
        nonlocal n_open
        async with slots:  # waiting here is queueing on the client side; it counts (latency from schedule)
            conn = None
            while idle:
                c = idle.pop()
                if not c.closed:
                    conn = c
                    break
            try:
                if conn is None:
                    _, conn = await loop.create_connection(_Conn, host, port)
                    n_open += 1
                code, tier_name = await asyncio.wait_for(conn.request(raws[i % len(raws)]), spec.timeout_s)
            except (OSError, asyncio.TimeoutError):
                code, tier_name = 0, None
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                conn = None
            done = clock()
            status[i] = code
            if code:
                latency[i] = done - (start + times[i])
                if tier_name is not None:
                    tier[i] = tier_index.setdefault(tier_name, len(tier_index))
            if conn is not None and not conn.closed:
                idle.append(conn)

    tasks = []
    for i in range(n):
        due = start + times[i]
        while True:
            wait = due - clock()
            if wait <= 0:
                break
            await asyncio.sleep(wait - SPIN_S if wait > 2 * SPIN_S else 0)
        lag[i] = clock() - due
        tasks.append(loop.create_task(one(i)))
    if tasks:
        await asyncio.wait(tasks, timeout=spec.timeout_s + 1)
    for task in tasks:
        task.cancel()
    for c in idle:
        if c.transport is not None:
            c.transport.close()
    names = [k.decode() for k, _ in sorted(tier_index.items(), key=lambda kv: kv[1])]
    return LoadResult(times, latency, status, tier, lag, names, clock() - start)


def run_load(spec: LoadSpec, start_at: float | None = None) -> LoadResult:
    """Run the load in this process (on uvloop when installed) and return every request's outcome.

    ``start_at``: wall-clock time (``time.time()``) at which the schedule's time 0 falls.
    """
    if has_module("uvloop"):
        import uvloop

        return uvloop.run(_run(spec, start_at))
    return asyncio.run(_run(spec, start_at))


def run_load_subprocess(spec: LoadSpec, cpus: Sequence[int] | None = None) -> LoadResult:
    """Run the generator in a child Python process pinned to ``cpus`` (its own core, away from the server)."""
    return run_load_processes(spec, [cpus] if cpus else [None])


def run_load_processes(spec: LoadSpec, cpu_sets: Sequence[Sequence[int] | None]) -> LoadResult:
    """Split the load over one child process per entry of ``cpu_sets`` (each pinned there; None: unpinned).

    Each child offers ``rate / n`` with its own seed; a sum of independent Poisson
    streams is a Poisson stream at the full rate. Results are merged in schedule order.
    """
    n = len(cpu_sets)
    if n < 1:
        raise ConfigError("run_load_processes needs at least one process")
    code = "from turborec.bench.loadgen import child_main; child_main()"
    start_at = time.time() + 1.5 + 0.2 * n  # every child imports and connects before this
    with tempfile.TemporaryDirectory(prefix="turborec-load-") as tmp:
        procs = []
        for i, cpus in enumerate(cpu_sets):
            part = replace(spec, rate=spec.rate / n, seed=spec.seed * 1000 + i,
                           max_requests=max(1, spec.max_requests // n), preopen=max(1, spec.preopen // n),
                           connections=max(1, spec.connections // n),
                           phases=tuple((start, rate / n) for start, rate in spec.phases))
            out = Path(tmp) / f"result-{i}.json"
            payload = json.dumps({"spec": part.to_json(), "cpus": list(cpus) if cpus else None, "out": str(out),
                                  "start_at": start_at})
            spec_file = Path(tmp) / f"spec-{i}.json"
            spec_file.write_text(payload)
            with open(spec_file, "rb") as stdin:
                proc = subprocess.Popen([sys.executable, "-c", code], stdin=stdin, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
            procs.append((proc, out))
        limit = spec.duration_s + spec.timeout_s + 60
        parts = []
        for proc, out in procs:
            try:
                _, err = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode != 0 or not out.is_file():
                raise RuntimeError(f"load generator failed ({proc.returncode}): {err.decode()[-2000:]}")
            parts.append(LoadResult.from_json(json.loads(out.read_text())))
    return merge_results(parts)


def merge_results(parts: Sequence[LoadResult]) -> LoadResult:
    """One result from several generators' results (tier names unified, schedule order)."""
    names: list[str] = []
    for part in parts:
        names += [t for t in part.tiers if t not in names]
    tiers = []
    for part in parts:
        remap = np.array([names.index(t) for t in part.tiers] + [-1], dtype=np.int32)
        tiers.append(remap[part.tier])  # -1 indexes the appended -1
    cat = np.concatenate
    scheduled = cat([p.scheduled for p in parts])
    order = np.argsort(scheduled, kind="stable")
    return LoadResult(
        scheduled[order], cat([p.latency for p in parts])[order], cat([p.status for p in parts])[order],
        cat(tiers)[order], cat([p.send_lag for p in parts])[order], names, max(p.wall_s for p in parts),
    )


def child_main() -> None:
    """Entry of the child process: spec on stdin; the result goes to the JSON file the parent named."""
    obj = json.loads(sys.stdin.buffer.read())
    if obj.get("cpus"):
        try:
            os.sched_setaffinity(0, set(obj["cpus"]))
        except OSError as exc:  # a sandbox without CPU affinity: generate anyway, but say so
            print(f"warning: cannot pin the load generator to {obj['cpus']}: {exc}", file=sys.stderr)
    result = run_load(LoadSpec.from_json(obj["spec"]), obj.get("start_at"))
    Path(obj["out"]).write_text(json.dumps(result.to_json()))
