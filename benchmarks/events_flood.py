"""Events flood vs recommendations: does a stream of events into SQLite starve a concurrent recommend stream?

``turborec serve --store sqlite`` takes two open-loop Poisson streams at once from two generator
processes: ``--event-rate`` events/s (POST /v1/events, 2,000 users) and ``--rate`` recommend
req/s (POST /v1/recommend, k=10). Two variants, same model, same loads:

- ``inline``: every event written on the event loop as it arrives (``TURBOREC_SERVE_MAX_PENDING_EVENTS=0``,
  how the service wrote events before issue 15.11);
- ``batched``: events queued and written by one thread, many per transaction (the default).

Reported per variant (medians over ``--repeats``): the recommend stream's p50/p99, the share of
its answers from a tier below full, 503s; the event stream's p99 and how many events were
refused (503). Loopback only; runs stop by themselves.

    python benchmarks/events_flood.py                 # ~2 min
    python benchmarks/events_flood.py --quick         # one short repeat

Writes benchmarks/results/events_flood.json + .md.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from _common import markdown_table, median, write_results
from turborec.bench.loadgen import LoadResult, LoadSpec, RequestTemplate, run_load_processes
from turborec.bench.process import start_http_server, stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_artifact(folder: Path) -> Path:
    from turborec.data.synthetic import synthetic
    from turborec.train import TwoTowerRecommender

    data = synthetic(n_users=2000, n_items=3000, n_interactions=60_000, seed=0)
    rec = TwoTowerRecommender(dim=32, hidden=(64,), history_len=20, epochs=1, batch_size=1024, seed=0, progress=False)
    return rec.fit(data).save(folder / "tt")


def one_run(artifact: Path, variant: str, rate: float, event_rate: float, seconds: float) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="turborec-flood-") as tmp:
        env = {**os.environ, "TURBOREC_SERVE_MAX_PENDING_EVENTS": "0" if variant == "inline" else "10000"}
        cmd = [sys.executable, "-m", "turborec.cli.main", "serve", str(artifact), "--port", str(port),
               "--store", "sqlite", "--store-path", str(Path(tmp) / "events.db"), "--slo-p99-ms", "10"]
        proc = start_http_server(cmd, port, env=env, name=f"turborec serve ({variant})")
        try:
            url = f"http://127.0.0.1:{port}"
            recs = tuple(RequestTemplate("POST", "/v1/recommend", f'{{"user": "{u}", "k": 10}}'.encode())
                         for u in range(1, 500))
            events = tuple(RequestTemplate("POST", "/v1/events",
                                           f'{{"user": "{u}", "item": "{(u * 7) % 3000}"}}'.encode())
                           for u in range(2000))
            out: dict[str, LoadResult] = {}

            def go(name: str, spec: LoadSpec) -> None:
                out[name] = run_load_processes(spec, [None])

            threads = [
                threading.Thread(target=go, args=("recommend", LoadSpec(url, rate, seconds, requests=recs,
                                                                        connections=16, seed=1))),
                threading.Thread(target=go, args=("events", LoadSpec(url, event_rate, seconds, requests=events,
                                                                     connections=32, seed=2))),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            stop_process(proc)
    rec, ev = out["recommend"], out["events"]
    ok = rec.status == 200
    full = rec.tiers.index("full") if "full" in rec.tiers else -2
    ev_ok = ev.status == 200
    return {
        "recommend_p50_ms": float(np.percentile(rec.latency[ok], 50) * 1000) if ok.any() else float("nan"),
        "recommend_p99_ms": float(np.percentile(rec.latency[ok], 99) * 1000) if ok.any() else float("nan"),
        "recommend_lower_tier_share": float(np.mean(rec.tier[ok] != full)) if ok.any() else float("nan"),
        "recommend_503": int(np.sum(rec.status == 503)),
        "recommend_sent": len(rec.status),
        "events_p99_ms": float(np.percentile(ev.latency[ev_ok], 99) * 1000) if ev_ok.any() else float("nan"),
        "events_stored": int(ev_ok.sum()),
        "events_503": int(np.sum(ev.status == 503)),
        "events_sent": len(ev.status),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="recommend req/s (default 200)")
    ap.add_argument("--event-rate", type=float, default=1500.0, help="events/s (default 1500)")
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each run (default 6)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per variant, interleaved (default 3)")
    ap.add_argument("--quick", action="store_true", help="one 3-second repeat")
    ap.add_argument("--artifact", type=Path, default=None, help="a retrieval artifact (default: trained here)")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.seconds = 1, 3.0
    with tempfile.TemporaryDirectory(prefix="turborec-flood-art-") as tmp:
        artifact = args.artifact or build_artifact(Path(tmp))
        runs: dict[str, list[dict[str, Any]]] = {"inline": [], "batched": []}
        for _ in range(args.repeats):
            for variant in runs:  # interleaved: a change in the machine's load hits both alike
                runs[variant].append(one_run(artifact, variant, args.rate, args.event_rate, args.seconds))
    rows = []
    for variant, results in runs.items():
        row: dict[str, Any] = {"variant": variant}
        for key in results[0]:
            row[key] = median([r[key] for r in results])
        rows.append(row)
    table = markdown_table(rows, floatfmt=".3f")
    header = (f"recommend {args.rate:g} req/s + events {args.event_rate:g}/s into SQLite, {args.seconds:g} s, "
              f"medians of {args.repeats}")
    write_results("events_flood", {"rate": args.rate, "event_rate": args.event_rate, "seconds": args.seconds,
                                   "repeats": args.repeats, "runs": runs, "medians": rows}, header + "\n\n" + table)


if __name__ == "__main__":
    main()
