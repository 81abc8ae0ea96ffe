"""``turborec serve --workers 2``: two processes on one port, one user-state store, one /metrics (loopback)."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from turborec.errors import ConfigError
from turborec.serving.settings import ServeSettings
from turborec.serving.workers import reuse_port_socket, run_workers, shared_settings

START_S = 180.0


class Workers:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)


def call(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> tuple[int, str, bytes]:
    """(status, the worker that answered, body) over a kept-alive connection."""
    payload = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=payload, headers={"content-type": "application/json"})
    r = conn.getresponse()
    return r.status, r.getheader("x-turborec-worker", ""), r.read()


def pinned(srv: Workers) -> dict[str, http.client.HTTPConnection]:
    """One kept-alive connection to each worker: new connections until both workers have answered one (the
    kernel spreads connections by a hash of the client's port; bounded tries)."""
    conns: dict[str, http.client.HTTPConnection] = {}
    for _ in range(200):
        conn = srv.connect()
        status, worker, _ = call(conn, "GET", "/healthz")
        assert status == 200 and worker in ("0", "1")
        if worker in conns:
            conn.close()
        else:
            conns[worker] = conn
        if len(conns) == 2:
            return conns
    raise AssertionError(f"200 connections all went to worker(s) {sorted(conns)}")


@pytest.fixture(scope="module")
def two_workers(artifact: Path) -> Iterator[Workers]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "turborec.cli.main", "serve", str(artifact), "--workers", "2", "--port", "0",
           "--slo-p99-ms", "5000"]  # a generous budget: a shared CI box is noisy, and speed is not tested here
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()  # the CLI says where it serves on stderr (with its log)
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr or ()], daemon=True).start()
    deadline = time.monotonic() + START_S
    port = 0
    try:
        while not port:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"the workers did not start in {START_S:.0f} s") from None
            match = re.search(r"on http://127\.0\.0\.1:(\d+) with 2 workers", line)
            port = int(match.group(1)) if match else 0
        yield Workers(proc, port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError("the supervisor did not stop on SIGTERM within 60 s") from None
    # SIGTERM stopped every worker cleanly: the supervisor exits 0 and nothing listens on the port any more
    assert code == 0
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=5).request("GET", "/healthz")


def test_both_workers_answer_on_one_port(two_workers: Workers) -> None:
    conns = pinned(two_workers)
    for worker, conn in conns.items():
        status, answered_by, body = call(conn, "POST", "/v1/recommend", {"user": "3", "k": 5})
        assert status == 200 and answered_by == worker
        assert len(json.loads(body)["items"]) == 5


def test_an_event_posted_to_one_worker_changes_the_next_answer_of_the_other(two_workers: Workers) -> None:
    conns = pinned(two_workers)
    user = f"visitor-{os.getpid()}"
    status, by, body = call(conns["1"], "POST", "/v1/recommend", {"user": user, "k": 10})
    assert status == 200 and by == "1"
    before = [it["item"] for it in json.loads(body)["items"]]
    seen = before[:3]
    for item in seen:
        status, by, body = call(conns["0"], "POST", "/v1/events", {"user": user, "item": item, "kind": "click"})
        assert status == 200 and by == "0" and json.loads(body)["stored"] is True
    status, by, body = call(conns["1"], "POST", "/v1/recommend", {"user": user, "k": 10})
    assert status == 200 and by == "1"
    after = [it["item"] for it in json.loads(body)["items"]]
    assert not set(seen) & set(after)  # worker 1 saw worker 0's events: what was seen is not recommended back
    assert after != before


def counter(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_metrics_add_up_the_workers(two_workers: Workers) -> None:
    conns = pinned(two_workers)
    _, _, text0 = call(conns["0"], "GET", "/metrics")
    base = counter(text0.decode(), "turborec_requests_total", endpoint="recommend", status="200")
    for worker in ("0", "1", "1"):  # three recommendations: one answered by worker 0, two by worker 1
        assert call(conns[worker], "POST", "/v1/recommend", {"user": "5", "k": 3})[0] == 200
    for worker in ("0", "1"):  # either worker's /metrics counts all three
        status, by, text = call(conns[worker], "GET", "/metrics")
        assert status == 200 and by == worker
        assert counter(text.decode(), "turborec_requests_total", endpoint="recommend", status="200") == base + 3
    series = [s for f in text_string_to_metric_families(text.decode()) for s in f.samples
              if s.name == "turborec_model_info" and s.value == 1]
    assert len({s.labels["pid"] for s in series}) == 2  # each worker reports the model it serves


def test_workers_share_a_store_and_a_port_by_construction(tmp_path: Path) -> None:
    memory = ServeSettings(workers=2)
    assert shared_settings(memory, tmp_path).store == "sqlite"  # a per-process memory store would split users
    assert shared_settings(memory, tmp_path).store_path == tmp_path / "events.sqlite"
    redis = ServeSettings(workers=2, store="redis", redis_url="redis://127.0.0.1:6379/0")
    assert shared_settings(redis, tmp_path) == redis
    a = reuse_port_socket("127.0.0.1", 0)
    try:
        b = reuse_port_socket("127.0.0.1", a.getsockname()[1])  # a second socket on the same port binds
        b.close()
    finally:
        a.close()
    with pytest.raises(ConfigError, match="workers"):
        run_workers(ServeSettings(workers=1))
    with pytest.raises(ConfigError, match="workers=0"):
        ServeSettings(workers=0)
