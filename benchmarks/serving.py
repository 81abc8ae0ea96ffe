"""Serving benchmark: sustainable req/s at p99 <= SLO, turborec vs a naive FastAPI endpoint, then overload.

Server and load generator run in separate processes pinned to separate cores
(``--server-cpu``, ``--load-cpus``). Each variant gets the same open-loop
Poisson load (80% known users, 20% anonymous users with 5 recent items, k=10)
from ``turborec.bench.loadgen``:

- ``turborec``: the service (lean HTTP path, micro-batching, admission), full
  tier only (adaptive tiers off), so its rate is not bought by degrading;
- ``turborec-fastapi``: the same service behind plain FastAPI routes;
- ``naive``: FastAPI + one PyTorch call per request on the same model (item
  vectors precomputed once; user tower + dot products + top-k per request).

For each: a sustainable-rate search (highest rate with p99 <= SLO, < 0.1% shed
or failed, the offered rate served), then ``--repeats`` confirmation runs at
that rate (medians quoted). Then, turborec with adaptive tiers: an overload run
(0.5x -> 3x -> 0.5x the sustainable rate; admitted p99, 503 share and speed,
time back to the full tier; plot in docs/img/serving_overload.png) and a hot
reload during load (failed requests counted).

    python benchmarks/serving.py --artifact DIR   # a trained retrieval artifact (turborec train ...)

Without --artifact it trains a two-tower on ml-latest-small (../shared/data) for
a few epochs (serving cost does not depend on how long it trained).
Writes benchmarks/results/serving.json and prints a markdown table.
"""


import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "serving.json"
PLOT = REPO / "docs" / "img" / "serving_overload.png"
DATA = REPO.parent / "shared" / "data" / "ml-latest-small"
TOKEN = "benchmark-admin-token"
HTTP_OF = {"turborec-asgi": "asgi", "turborec-fastapi": "fastapi"}  # other turborec variants: the lean server


# ----------------------------------------------------------------- servers
def naive_app(artifact: Path) -> Any:
    """What one would write first: FastAPI, pydantic in and out, one model call per request."""
    import torch
    from fastapi import FastAPI
    from pydantic import BaseModel, Field

    from turborec.train import load

    rec = load(artifact)
    net = rec._require().eval()
    assert rec.users is not None and rec.items is not None and rec.histories is not None
    histories = rec.histories
    with torch.inference_mode():
        item_vecs = net.item_vectors().float()
    user_index = {str(u): i for i, u in enumerate(rec.users.ids)}
    item_index = {str(v): i for i, v in enumerate(rec.items.ids)}
    item_ids = [str(v) for v in rec.items.ids]
    length = rec.history_len or 50

    class Req(BaseModel):
        user: str | None = None
        recent_items: list[str] = []
        k: int = Field(10, ge=1, le=100)

    class Item(BaseModel):
        item: str
        score: float

    class Resp(BaseModel):
        items: list[Item]

    app = FastAPI()

    @app.post("/v1/recommend", response_model=Resp)
    async def recommend(req: Req) -> dict[str, Any]:
        u = user_index.get(req.user, -1) if req.user is not None else -1
        if u >= 0:
            seen = histories.of(u)
        else:
            seen = np.array([item_index[i] for i in req.recent_items if i in item_index], dtype=np.int64)
        recent = seen[-length:]
        hist = torch.full((1, length), -1, dtype=torch.long)
        hist[0, : len(recent)] = torch.from_numpy(recent)
        with torch.inference_mode():
            scores = (net.user_vectors(torch.tensor([u]), hist) @ item_vecs.T)[0]
            scores[torch.from_numpy(seen)] = -torch.inf
            top = torch.topk(scores, req.k)
        return {"items": [{"item": item_ids[i], "score": s} for i, s in zip(top.indices.tolist(), top.values.tolist())]}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {args.cpu})
    import torch
    import uvicorn

    from turborec.serving import ServeSettings, run_server
    from turborec.serving.server import uvicorn_config

    torch.set_num_threads(1)
    settings = ServeSettings(
        artifact=Path(args.artifact), port=args.port, slo_p99_ms=args.slo_ms, admin_token=TOKEN,
        adaptive_tiers=args.variant == "turborec-adaptive", http=HTTP_OF.get(args.variant, "lean"),
        executor=args.executor, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
    )
    if args.variant == "naive":
        uvicorn.Server(uvicorn_config(naive_app(Path(args.artifact)), settings)).run()
    else:
        run_server(settings)


def start_server(variant: str, args: argparse.Namespace, port: int) -> subprocess.Popen[bytes]:
    import httpx

    cmd = [sys.executable, __file__, "--role", "server", "--variant", variant, "--artifact", str(args.artifact),
           "--port", str(port), "--cpu", str(args.server_cpu), "--slo-ms", str(args.slo_ms),
           "--executor", args.executor, "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    log = tempfile.NamedTemporaryFile(prefix=f"turborec-{variant}-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{variant} server exited: {Path(log.name).read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{variant} server did not come up")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# -------------------------------------------------------------------- load
def request_mix(artifact: Path, n: int = 4000, seed: int = 0) -> tuple[Any, ...]:
    from turborec._util.artifact import load_artifact
    from turborec.bench.loadgen import RequestTemplate

    art = load_artifact(artifact)
    users = [str(u) for u in art.json("vocab/users.json")["ids"]]
    items = [str(i) for i in art.json("vocab/items.json")["ids"]]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.8:
            body: dict[str, Any] = {"user": users[rng.integers(len(users))], "k": 10}
        else:
            recent = [items[i] for i in rng.integers(0, min(len(items), 2000), 5)]
            body = {"recent_items": recent, "k": 10}
        out.append(RequestTemplate("POST", "/v1/recommend", json.dumps(body).encode()))
    return tuple(out)


def run(url: str, rate: float, duration: float, args: argparse.Namespace, requests: tuple[Any, ...],
        phases: tuple[tuple[float, float], ...] = (), seed: int = 0) -> Any:
    from turborec.bench.loadgen import LoadSpec, run_load_processes

    spec = LoadSpec(url=url, rate=rate, duration_s=duration, requests=requests, connections=512, timeout_s=5.0,
                    seed=seed, phases=phases, preopen=32)
    return run_load_processes(spec, [[c] for c in args.load_cpus])


def probe(url: str, rate: float, args: argparse.Namespace, requests: tuple[Any, ...], seed: int = 0) -> Any:
    from turborec.bench.report import summarize

    result = run(url, rate, args.warmup_s + args.probe_s, args, requests, seed=seed)
    s = summarize(result, rate, window=(args.warmup_s, args.warmup_s + args.probe_s))
    print(f"    {rate:7.0f} req/s: p50 {s.p50_ms:6.2f} p99 {s.p99_ms:7.2f} ms, achieved {s.achieved_rate:7.0f}, "
          f"shed {s.shed}, errors {s.errors}, generator lag p99 {s.send_lag_p99_ms:.2f} ms", flush=True)
    return s


def measure_variant(variant: str, args: argparse.Namespace, port: int, requests: tuple[Any, ...]) -> dict[str, Any]:
    from turborec.bench.report import find_sustainable_rate

    proc = start_server(variant, args, port)
    url = f"http://127.0.0.1:{port}"
    try:
        probe(url, 200, args, requests)  # warm the server (first calls, connections)
        search = find_sustainable_rate(lambda r: probe(url, r, args, requests), args.slo_ms,
                                       start_rate=args.start_rate, max_rate=args.max_rate, growth=2.0,
                                       rel_tolerance=args.tolerance, max_probes=args.max_probes)
        rate = search.sustainable_rate
        repeats = [probe(url, rate, args, requests, seed=i + 1) for i in range(args.repeats)] if rate else []
    finally:
        stop_server(proc)
    row: dict[str, Any] = {"variant": variant, "sustainable_rate": rate,
                           "probes": [{"rate": r, "ok": ok, **s.to_dict()} for r, s, ok in search.probes],
                           "repeats": [s.to_dict() for s in repeats]}
    if repeats:
        for key in ("p50_ms", "p99_ms", "achieved_rate", "shed_fraction", "error_fraction"):
            row[f"median_{key}"] = statistics.median(getattr(s, key) for s in repeats)
    print(f"  {variant}: sustainable {rate:.0f} req/s", flush=True)
    return row


# ---------------------------------------------------------------- overload
def overload(args: argparse.Namespace, port: int, requests: tuple[Any, ...], rate: float) -> dict[str, Any]:
    from turborec.bench.report import summarize

    calm, storm = 0.5 * rate, 3.0 * rate
    t_up, t_down, t_end = 3.0, 9.0, 15.0
    proc = start_server("turborec-adaptive", args, port)
    url = f"http://127.0.0.1:{port}"
    try:
        probe(url, 200, args, requests)
        result = run(url, calm, t_end, args, requests, phases=((0.0, calm), (t_up, storm), (t_down, calm)), seed=7)
    finally:
        stop_server(proc)
    during = summarize(result, storm, window=(t_up, t_down))
    after = summarize(result, calm, window=(t_down, t_end))
    names = result.tiers
    full = names.index("full") if "full" in names else -2
    late = (result.scheduled >= t_down) & (result.status == 200)
    not_full = np.flatnonzero(late & (result.tier != full))
    back_s = 0.0 if len(not_full) == 0 else float(result.scheduled[not_full[-1]] + result.latency[not_full[-1]] - t_down)
    if late.any() and not np.any(result.tier[late] == full):
        back_s = float("inf")
    plot_overload(result, args.slo_ms, (t_up, t_down), calm, storm)
    return {"calm_rate": calm, "storm_rate": storm, "during": during.to_dict(), "after": after.to_dict(),
            "admitted_p99_ms": during.p99_ms, "shed_fraction": during.shed_fraction,
            "shed_p99_ms": during.shed_p99_ms, "back_to_full_s": back_s,
            "tiers_seen": names}


def plot_overload(result: Any, slo_ms: float, storm: tuple[float, float], calm: float, peak: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from turborec.serving.tiers import Tier

    bins = np.arange(0, result.scheduled.max() + 0.25, 0.25)
    idx = np.digitize(result.scheduled, bins) - 1
    ok = result.status == 200
    p99 = [np.percentile(result.latency[(idx == b) & ok] * 1000, 99) if np.any((idx == b) & ok) else np.nan
           for b in range(len(bins))]
    shed = [np.mean(result.status[idx == b] == 503) if np.any(idx == b) else np.nan for b in range(len(bins))]
    order = {name: Tier.from_label(name).value for name in result.tiers}
    tier_level = np.array([order.get(result.tiers[t], np.nan) if t >= 0 else np.nan for t in result.tier])
    worst = [np.nanmax(tier_level[(idx == b) & ok]) if np.any((idx == b) & ok) else np.nan for b in range(len(bins))]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True, height_ratios=[3, 1.2, 1.6])
    sample = np.flatnonzero(ok)[:: max(1, ok.sum() // 20000)]
    ax1.scatter(result.scheduled[sample], result.latency[sample] * 1000, s=1, alpha=0.15, color="tab:blue",
                label="admitted request")
    ax1.plot(bins, p99, color="black", lw=1.5, label="p99 per 250 ms")
    ax1.axhline(slo_ms, color="tab:green", ls="--", lw=1, label=f"SLO {slo_ms:g} ms")
    ax1.axhline(2 * slo_ms, color="tab:red", ls=":", lw=1, label="2x SLO")
    ax1.set_ylabel("latency (ms)")
    ax1.set_yscale("log")
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title(f"Overload: {calm:.0f} -> {peak:.0f} -> {calm:.0f} req/s offered (one server core)")
    ax2.plot(bins, np.array(shed) * 100, color="tab:red")
    ax2.set_ylabel("503 (%)")
    ax3.step(bins, worst, where="post", color="tab:purple")
    ax3.set_yticks([t.value for t in Tier], [t.label for t in Tier], fontsize=8)
    ax3.set_ylim(4.5, -0.5)
    ax3.set_ylabel("tier")
    ax3.set_xlabel("time (s)")
    for ax in (ax1, ax2, ax3):
        ax.axvspan(*storm, color="orange", alpha=0.12)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def reload_under_load(args: argparse.Namespace, port: int, requests: tuple[Any, ...], rate: float) -> dict[str, Any]:
    import httpx

    proc = start_server("turborec-adaptive", args, port)
    url = f"http://127.0.0.1:{port}"
    outcome: dict[str, Any] = {}

    def reload() -> None:
        time.sleep(3.5)  # the generator processes start ~2 s after we call them
        r = httpx.post(f"{url}/admin/reload", json={}, headers={"authorization": f"Bearer {TOKEN}"}, timeout=60)
        outcome["status"] = r.status_code

    try:
        probe(url, 200, args, requests)
        thread = threading.Thread(target=reload)
        thread.start()
        result = run(url, rate, 5.0, args, requests, seed=11)
        thread.join(60)
    finally:
        stop_server(proc)
    return {"rate": rate, "reload_status": outcome.get("status"), "sent": len(result.status),
            "failed": int(np.sum((result.status != 200) & (result.status != 503))),
            "shed": int(np.sum(result.status == 503))}


# -------------------------------------------------------------------- main
def ensure_artifact(args: argparse.Namespace) -> Path:
    if args.artifact is not None:
        return Path(args.artifact)
    path = REPO / ".cache" / "serving-bench" / "ml-small-two-tower"
    if not (path / "manifest.json").is_file():
        import torch

        from turborec.data.loaders import load_movielens
        from turborec.train import TwoTowerRecommender

        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"training a two-tower on {args.data} ({device}, {args.train_epochs} epochs) ...", flush=True)
        rec = TwoTowerRecommender(epochs=args.train_epochs, progress=False, max_seconds=240, device=device)
        rec.fit(load_movielens(args.data)).save(path)
    return path


def machine() -> dict[str, Any]:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", default="bench", choices=["bench", "server"])
    p.add_argument("--variant", default="turborec")
    p.add_argument("--variants", default="turborec,turborec-asgi,turborec-fastapi,naive")
    p.add_argument("--artifact", default=None)
    p.add_argument("--data", default=str(DATA), help="ml-latest-small folder (to train when no --artifact)")
    p.add_argument("--train-epochs", type=int, default=5)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cpu", type=int, default=0)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpus", default="1", help="comma-separated cores, one generator process each")
    p.add_argument("--slo-ms", type=float, default=10.0)
    p.add_argument("--executor", default="thread")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=1.0)
    p.add_argument("--probe-s", type=float, default=3.0)
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--start-rate", type=float, default=250.0)
    p.add_argument("--max-rate", type=float, default=12000.0)
    p.add_argument("--tolerance", type=float, default=0.1)
    p.add_argument("--max-probes", type=int, default=9)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-overload", action="store_true")
    args = p.parse_args()
    if args.role == "server":
        serve(args)
        return
    args.load_cpus = [int(c) for c in args.load_cpus.split(",")]
    os.sched_setaffinity(0, set(args.load_cpus))  # keep this orchestrator off the server's core
    args.artifact = ensure_artifact(args)
    requests = request_mix(args.artifact)
    base_port = 18000 + os.getpid() % 1000
    rows = []
    for i, variant in enumerate(args.variants.split(",")):
        print(f"measuring {variant} ...", flush=True)
        rows.append(measure_variant(variant, args, base_port + i, requests))
    by = {r["variant"]: r for r in rows}
    out: dict[str, Any] = {"machine": machine(), "slo_ms": args.slo_ms, "server_cpu": args.server_cpu,
                           "load_cpus": args.load_cpus, "artifact": str(args.artifact), "variants": rows}
    ours = by.get("turborec", {}).get("sustainable_rate", 0.0)
    naive = by.get("naive", {}).get("sustainable_rate", 0.0)
    if naive:
        out["speedup_vs_naive"] = ours / naive
    if ours and not args.skip_overload:
        print("overload run ...", flush=True)
        out["overload"] = overload(args, base_port + 10, requests, ours)
        print("hot reload under load ...", flush=True)
        out["reload"] = reload_under_load(args, base_port + 11, requests, 0.5 * ours)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1, default=float))
    print_table(out)


def print_table(out: dict[str, Any]) -> None:
    from turborec.bench.report import markdown_table

    cols = ["variant", "sustainable_rate", "median_p50_ms", "median_p99_ms", "median_achieved_rate"]
    print(f"\nSustainable rate at p99 <= {out['slo_ms']:g} ms ({out['machine']['cpu']}, server on one core; "
          f"median of {len(out['variants'][0]['repeats'])} runs)\n")
    print(markdown_table(out["variants"], cols))
    if "speedup_vs_naive" in out:
        print(f"\nturborec / naive: {out['speedup_vs_naive']:.1f}x")
    if "overload" in out:
        o = out["overload"]
        print(f"\nOverload at 3x ({o['storm_rate']:.0f} req/s): admitted p99 {o['admitted_p99_ms']:.1f} ms, "
              f"503 {100 * o['shed_fraction']:.1f}% (p99 {o['shed_p99_ms']:.1f} ms), "
              f"back to full tier {o['back_to_full_s']:.2f} s after load drops")
    if "reload" in out:
        r = out["reload"]
        print(f"Hot reload at {r['rate']:.0f} req/s: reload HTTP {r['reload_status']}, {r['failed']} failed of "
              f"{r['sent']} ({r['shed']} shed)")


if __name__ == "__main__":
    main()
