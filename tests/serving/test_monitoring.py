"""deploy/: the Grafana dashboard and the Prometheus alerting rules query only metrics that a running
`turborec serve` exports (a real server on 127.0.0.1, /metrics scraped after some traffic)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "turborec-serving.json"
RULES = REPO / "deploy" / "prometheus" / "turborec-alerts.yml"
# identifiers in PromQL that are not metric names
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "irate", "histogram_quantile",
    "clamp_min", "clamp_max", "and", "or", "unless", "on", "ignoring", "le", "offset", "bool", "humanize",
}
COVERED = {  # what the issue asks the dashboard to show -> a metric that shows it
    "request rate": "turborec_requests_total", "latency": "turborec_stage_latency_seconds_bucket",
    "503 share": "turborec_requests_total", "tier": "turborec_tier", "batch size": "turborec_batch_size_bucket",
    "queue depth": "turborec_queue_depth", "cpu": "process_cpu_seconds_total", "rss": "process_resident_memory_bytes",
    "events": "turborec_events_total", "reloads": "turborec_reloads_total",
}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label matchers, strings and ranges stripped)."""
    bare = re.sub(r"\{[^}]*\}", "", re.sub(r'"[^"]*"', "", expr))
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare))
    return {w for w in words if w not in PROMQL_WORDS and ("_" in w)}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["panels"], "the dashboard has no panels"
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def rule_exprs() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def exported(text: str) -> set[str]:
    """Sample names and metric families of a /metrics page (a family counts even before its first sample)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            family = line.split()[2]
            names |= {family, *(family + s for s in ("_total", "_bucket", "_sum", "_count", "_created"))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_dashboard_and_rules_parse_and_cover_the_service() -> None:
    dash_metrics = set().union(*map(metric_names, dashboard_exprs()))
    for what, metric in COVERED.items():
        assert metric in dash_metrics, f"the dashboard shows no {what} ({metric})"
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"]


def test_every_queried_metric_is_exported_by_turborec_serve(artifact: Path) -> None:
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "turborec.cli.main", "serve", str(artifact), "--port", str(port),
                             "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server exited"
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "turborec serve did not get ready"
                time.sleep(0.3)
            for user in range(5):  # traffic, so that labelled series exist
                client.post("/v1/recommend", json={"user": user, "k": 5})
            client.post("/v1/events", json={"user": 1, "item": 1, "kind": "click"})
            page = client.get("/metrics")
            assert page.status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    names = exported(page.text)
    queried = set().union(*map(metric_names, dashboard_exprs() + rule_exprs()))
    missing = sorted(queried - names)
    assert not missing, f"queried but not exported by turborec serve: {missing}"
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names
