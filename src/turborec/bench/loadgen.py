"""Open-loop load generator: Poisson arrivals at a target rate over raw HTTP/1.1 keep-alive connections.

Open loop means requests are sent on a schedule fixed in advance, whatever the
server does, and each latency is measured from the request's *scheduled* send
time: when the server falls behind, the queueing shows in the numbers instead of
silently slowing the generator down (no coordinated omission). That rules out
closed-loop tools (Debian's ``wrk`` is closed-loop) and ``httpx``, which tops
out near 800 req/s on one core; this client is an ``asyncio.Protocol`` per
connection, one request in flight on each (no pipelining), driven by callbacks
(no task or future per request): one core sends 14,000 requests a second to a
null server with a p99 send lag of 0.01 ms (``turborec loadtest`` checks it each run).

Runs are bounded twice: ``duration_s`` of arrivals and ``max_requests``; then it
waits at most ``timeout_s`` for stragglers and stops by itself. Targets must be
loopback addresses (127.0.0.0/8, ::1, localhost).

``run_load_subprocess`` runs the generator in a child process pinned to given
cores (``os.sched_setaffinity``) so it does not steal the server's CPU; the
spec goes in on stdin and the samples come back in a JSON file.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from turborec._util.optional import has_module
from turborec.errors import ConfigError, TurborecError

TIER_HEADER = b"x-turborec-tier"
SPIN_S = 0.002  # closer than this to the next send, yield instead of sleeping (timer granularity is ~1 ms)
USER_ERROR_EXIT = 2  # a child that exits with this printed one line naming the user's mistake


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
    """One keep-alive connection with at most one request in flight; calls ``on_answer(conn, status, tier)``
    when a whole response has arrived and ``on_lost(conn)`` when the connection dies."""

    def __init__(self, on_answer: Any, on_lost: Any) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.request: int = -1  # index of the request in flight, -1 when idle
        self.sent_at = 0.0
        self.closed = False
        self._on_answer = on_answer
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._on_lost(self)

    def send(self, i: int, raw: bytes, now: float) -> None:
        assert self.transport is not None
        self.request, self.sent_at = i, now
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.request < 0:
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
        del self.buf[: end + 4 + length]
        self._on_answer(self, int(head[9:12]), tier)


async def _run(spec: LoadSpec, start_at: float | None = None) -> LoadResult:
    """The schedule loop sends each request on an idle connection (or queues it when all ``connections``
    are busy: client-side queueing, which counts in its latency); answers are handled in the
    connections' callbacks, without a task or future per request, so one core sends several
    thousand requests a second on time."""
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
    busy: set[_Conn] = set()
    queued: deque[int] = deque()  # requests waiting for a connection
    opening = 0
    connecting: set[asyncio.Task[None]] = set()
    clock = time.perf_counter
    start = 0.0
    finished = 0
    all_done = loop.create_future()

    def record(i: int, code: int, tier_name: bytes | None, now: float) -> None:
        nonlocal finished
        status[i] = code
        if code:
            latency[i] = now - (start + times[i])
            if tier_name is not None:
                tier[i] = tier_index.setdefault(tier_name, len(tier_index))
        finished += 1
        if finished == n and not all_done.done():
            all_done.set_result(None)

    def send(conn: _Conn, i: int, now: float) -> None:
        conn.send(i, raws[i % len(raws)], now)
        busy.add(conn)

    def dispatch(conn: _Conn, now: float) -> None:
        """Give ``conn`` the oldest queued request, or park it."""
        if queued and not conn.closed:
            send(conn, queued.popleft(), now)
        elif not conn.closed:
            idle.append(conn)

    def on_answer(conn: _Conn, code: int, tier_name: bytes | None) -> None:
        now = clock()
        i, conn.request = conn.request, -1
        busy.discard(conn)
        record(i, code, tier_name, now)
        dispatch(conn, now)

    def on_lost(conn: _Conn) -> None:
        busy.discard(conn)
        if conn.request >= 0:
            i, conn.request = conn.request, -1
            record(i, 0, None, clock())
        if queued and len(busy) + len(idle) + opening < spec.connections:
            open_connection()

    def open_connection() -> None:
        nonlocal opening
        opening += 1

        async def connect() -> None:
            nonlocal opening
            try:
                _, conn = await loop.create_connection(lambda: _Conn(on_answer, on_lost), host, port)
            except OSError:
                opening -= 1
                if queued:  # the target refuses connections: the waiting request fails
                    record(queued.popleft(), 0, None, clock())
                return
            opening -= 1
            dispatch(conn, clock())

        task = loop.create_task(connect())
        connecting.add(task)  # a strong reference until it is done
        task.add_done_callback(connecting.discard)

    def send_or_queue(i: int, now: float) -> None:
        while idle:
            conn = idle.pop()
            if not conn.closed:
                send(conn, i, now)
                return
        queued.append(i)
        if len(busy) + opening < spec.connections:
            open_connection()

    def expire(now: float) -> None:
        """Requests in flight past ``timeout_s`` fail (their connection is closed); so do queued ones."""
        deadline = now - spec.timeout_s
        for conn in [c for c in busy if c.sent_at < deadline]:
            if conn.transport is not None:
                conn.transport.close()  # on_lost records the failure
        while queued and start + times[queued[0]] < deadline:
            record(queued.popleft(), 0, None, now)

    for _ in range(min(spec.connections, spec.preopen)):  # connection setup is not part of the measurement
        try:
            _, c = await loop.create_connection(lambda: _Conn(on_answer, on_lost), host, port)
        except OSError as exc:
            raise ConfigError(f"load target {spec.url}: cannot connect ({exc})") from exc
        idle.append(c)
    start = clock() + 0.01
    if start_at is not None:  # several generator processes share one time origin (wall clock)
        start = clock() + max(start_at - time.time(), 0.0)
    next_expiry = start + 0.1
    for i in range(n):
        due = start + times[i]
        while True:
            now = clock()
            wait = due - now
            if wait <= 0:
                break
            await asyncio.sleep(wait - SPIN_S if wait > 2 * SPIN_S else 0)
        lag[i] = now - due
        send_or_queue(i, now)
        if now >= next_expiry:
            expire(now)
            next_expiry = now + 0.1
    end_by = clock() + spec.timeout_s + 1
    while finished < n and clock() < end_by:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(all_done), 0.1)
        expire(clock())
    for c in [*idle, *busy]:
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
            if proc.returncode == USER_ERROR_EXIT:
                lines = err.decode(errors="replace").strip().splitlines()
                raise ConfigError(lines[-1] if lines else "the load generator refused the spec")
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
    try:
        result = run_load(LoadSpec.from_json(obj["spec"]), obj.get("start_at"))
    except TurborecError as exc:  # the user's mistake (nothing listens there...): one line for the parent
        print(str(exc), file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    Path(obj["out"]).write_text(json.dumps(result.to_json()))
