"""Front ends of ``turborec serve``: the same service and model behind each HTTP front end, same load.

    python benchmarks/front_ends.py                          # ml-latest-small two-tower and pipeline
    python benchmarks/front_ends.py --rates 300 600 --repeats 3 --server-cores 0 --load-cores 1

Front ends (``turborec serve --http``): ``lean`` (httptools protocol on the event loop, hot routes answered
by ``serving/routes.py``, the rest handed to the FastAPI app) and ``asgi`` (uvicorn, the hot routes answered
by the same ``HotRoutes`` straight from ASGI through ``app.LeanRouter``). The floor ``naive`` (FastAPI +
uvicorn, one model call per request, no batching) runs too. A third front end, ``fastapi`` (uvicorn and
plain FastAPI routes for the hot endpoints), was measured by this script (docs/benchmarks.md) and removed.

What is measured, per front end and offered rate, each repeat a fresh window of the project's open-loop
Poisson generator (``turborec.bench``) on ``--load-cores`` against servers pinned to ``--server-cores``
(all started once and kept running; the order of front ends rotates between repeats so that drift on a
shared machine falls on each alike):

- **server CPU per request**: user + system CPU time of the server's process tree over the window,
  divided by the requests it answered. It is the cost a front end adds to the same model work, and it
  does not depend on how busy the rest of the machine is (wall-clock latencies do). Its inverse is the
  rate one core could carry at 100% busy (an upper bound: queueing sets in before that).
- p50 / p99 latency (from the scheduled send time) and the share refused (503) or failed.

Medians over ``--repeats``. Writes benchmarks/results/front_ends.json and .md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving  # benchmarks/serving.py: server start, request mix, load windows
from _common import markdown_table, write_results
from serving_measure import tree_pids

VARIANTS = {"lean": "turborec", "asgi": "turborec-asgi", "naive": "naive"}


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (threads included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def window(url: str, pid: int, rate: float, args: argparse.Namespace, requests: tuple[Any, ...],
           seed: int) -> dict[str, Any]:
    """One load window at ``rate``: latency summary of its measured part and the server's CPU per request."""
    from turborec.bench.report import summarize

    cpu0 = tree_cpu_s(pid)
    result = serving.run(url, rate, args.warmup_s + args.window_s, args, requests, seed=seed)
    cpu = tree_cpu_s(pid) - cpu0
    answered = int((result.status > 0).sum())
    s = summarize(result, rate, window=(args.warmup_s, args.warmup_s + args.window_s))
    return {"rate": rate, "cpu_ms_per_request": 1000 * cpu / max(answered, 1), "p50_ms": s.p50_ms,
            "p99_ms": s.p99_ms, "refused_or_failed": (s.shed + s.errors) / max(s.sent, 1),
            "achieved_rate": s.achieved_rate, "send_lag_p99_ms": s.send_lag_p99_ms}


def measure(name: str, artifact: Path, args: argparse.Namespace, port: int) -> list[dict[str, Any]]:
    bodies = serving.request_mix(artifact)
    servers: dict[str, tuple[Any, str, tuple[Any, ...], float]] = {}
    try:
        for i, front in enumerate(args.front_ends):
            requests = serving.request_templates(VARIANTS[front], bodies, artifact)
            proc, cold = serving.start_server(VARIANTS[front], args, artifact, port + i, requests)
            url = f"http://127.0.0.1:{port + i}"
            serving.run(url, args.rates[0], 2.0, args, requests)  # warm up: first calls, connections
            servers[front] = (proc, url, requests, cold)
        windows: dict[tuple[str, float], list[dict[str, Any]]] = {}
        for rep in range(args.repeats):
            order = args.front_ends[rep % len(args.front_ends):] + args.front_ends[:rep % len(args.front_ends)]
            for rate in args.rates:
                for front in order:
                    proc, url, requests, _ = servers[front]
                    w = window(url, proc.pid, rate, args, requests, seed=rep)
                    windows.setdefault((front, rate), []).append(w)
                    print(f"  {name} {front:8s} {rate:6.0f} req/s: {w['cpu_ms_per_request']:.3f} CPU ms/request, "
                          f"p50 {w['p50_ms']:.2f} p99 {w['p99_ms']:.2f} ms, refused/failed "
                          f"{100 * w['refused_or_failed']:.1f}%, generator lag p99 {w['send_lag_p99_ms']:.2f} ms",
                          flush=True)
    finally:
        for proc, *_ in servers.values():
            serving.stop_server(proc)
    rows = []
    for (front, rate), ws in windows.items():
        med = {k: statistics.median(w[k] for w in ws) for k in ws[0]}
        rows.append({"workload": name, "front end": front, "offered req/s": rate,
                     "server CPU ms/request": med["cpu_ms_per_request"],
                     "req/s per busy core": 1000 / med["cpu_ms_per_request"], "p50 ms": med["p50_ms"],
                     "p99 ms": med["p99_ms"], "refused+failed %": 100 * med["refused_or_failed"],
                     "cold start s": servers[front][3], "windows": len(ws)})
    rows.sort(key=lambda r: (r["offered req/s"], args.front_ends.index(r["front end"])))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--workloads", default="retrieval,pipeline",
                   help="retrieval: the pipeline's two-tower alone; pipeline: two-tower + DLRM ranker")
    p.add_argument("--pipeline", default=None, help="a saved TwoStagePipeline (default: benchmarks/serving.py's)")
    p.add_argument("--front-ends", default="lean,asgi,naive")
    p.add_argument("--rates", type=float, nargs="+", default=[300.0, 600.0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--window-s", type=float, default=4.0)
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--server-cores", default="0")
    p.add_argument("--load-cores", default="1")
    p.add_argument("--slo-ms", type=float, default=10.0)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=2020)
    args = p.parse_args()
    args.front_ends = args.front_ends.split(",")
    args.server_cores, args.load_cores = serving.cores(args.server_cores), serving.cores(args.load_cores)
    args.executor, args.peer_options = "thread", {}
    if set(args.server_cores) & set(args.load_cores):
        raise SystemExit("--server-cores and --load-cores must not overlap")
    pipeline = Path(args.pipeline) if args.pipeline else serving.build_pipeline(
        serving.CACHE / "ml-small-pipeline-full", False, args.seed)
    serving.pin(args.load_cores)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    base_port = 19000 + os.getpid() % 500
    for i, name in enumerate(filter(None, args.workloads.split(","))):
        artifact = {"retrieval": pipeline / "retriever", "pipeline": pipeline}[name]
        rows += measure(name, artifact, args, base_port + 10 * i)
    table = markdown_table(rows, floatfmt=".3f")
    head = (f"server on cores {args.server_cores}, load on {args.load_cores}; {args.repeats} windows of "
            f"{args.window_s:g} s per cell, medians; {serving.machine()['cpu']}")
    write_results("front_ends", {"args": {k: v for k, v in vars(args).items()}, "rows": rows,
                                 "seconds": time.perf_counter() - started},
                  head + "\n\n" + table)
    print(json.dumps({"seconds": round(time.perf_counter() - started)}))


if __name__ == "__main__":
    main()
