"""Serving benchmark: sustainable req/s at p99 <= SLO, turborec vs a naive FastAPI endpoint, then overload.

Two workloads, each served from its own artifact (built here unless given):

- ``pipeline``: the two-stage pipeline on ml-latest-small (recbole split; two-tower
  retrieval of 200 candidates -> DLRM ranker over co-occurrence/similarity features);
- ``catalog-1m``: a two-tower over a 1,000,000-item synthetic catalog (retrieval only).
  turborec serves it as ``turborec tune`` would: a tuned artifact of the same model with a
  FAISS IVF index (``--catalog-index``); the naive endpoint scores all million items per
  request. The index's recall@10 against exact scoring, on the benchmark's own request
  mix, is measured and reported beside the rates.

Server and load generator run in separate processes pinned to separate cores
(``--server-cores``, ``--load-cores``). Each variant gets the same open-loop
Poisson load (80% known users, 20% anonymous users with 5 recent items, k=10):

- ``turborec``: ``turborec serve`` (lean HTTP path, micro-batching, admission),
  full tier only (adaptive tiers off), so its rate is not bought by degrading;
- ``naive``: FastAPI + uvicorn, one PyTorch call per request under torch.no_grad on
  the same model through the same library functions (item vectors precomputed once;
  user tower, scores, top-N and, for the pipeline, ``TwoStagePipeline.rank_candidates``
  per request). With several server cores it runs one uvicorn worker per core.

For each: a sustainable-rate search (highest rate with p99 <= SLO, < 0.1% shed or
failed), then ``--repeats`` runs at that rate; the rate is quoted only if the repeats'
medians meet the SLO too, else it steps down 10% and repeats (medians quoted). Then, turborec with
adaptive tiers: an overload run (0.5x -> 3x -> 0.5x the sustainable rate: admitted
p99, 503 share and speed, time back to the full tier; plot) and a hot reload
during load (failed requests counted).

    python benchmarks/serving.py                      # full run (the 16-core machine: ~8 min)
    python benchmarks/serving.py --quick              # smoke run, small catalog, short probes
    python benchmarks/serving.py --server-cores 0 --load-cores 2,3,4,5

Writes benchmarks/results/serving.json + .md and docs/img/serving_overload*.png (``--out STEM``:
STEM.json + .md and docs/img/<name of STEM>_overload*.png)
(``--quick``: everything under .cache/serving-bench/, so a smoke run leaves the repo as it was).
"""


import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from turborec.bench.process import start_http_server, stop_process

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TURBOREC_SHARED_DATA", REPO.parent / "shared" / "data")) / "ml-latest-small"
CACHE = REPO / ".cache" / "serving-bench"
TOKEN = "benchmark-admin-token"


def cores(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c.strip()]


def pin(cpus: list[int]) -> None:
    try:
        os.sched_setaffinity(0, set(cpus))
    except OSError as exc:  # a sandbox without CPU affinity: measure anyway, but say so
        print(f"warning: cannot pin to cores {cpus}: {exc}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- artifacts
def build_pipeline(path: Path, quick: bool, seed: int) -> Path:
    """The ml-latest-small two-stage pipeline (recbole split), trained as benchmarks/pipeline.py trains it."""
    if (path / "manifest.json").is_file():
        return path
    from turborec.data import apply_protocol, load_movielens
    from turborec.train import TwoStagePipeline, TwoTowerRecommender

    t0 = time.perf_counter()
    split = apply_protocol("recbole", load_movielens(DATA), seed=seed)
    retriever = TwoTowerRecommender(seed=seed, progress=False, epochs=3 if quick else 30,
                                    max_seconds=60 if quick else 120).fit(split.train, split.valid)
    pipe = TwoStagePipeline(retriever, ranker="dlrm", seed=seed, ranker_epochs=3 if quick else 20)
    pipe.fit(split.train, split.valid).save(path)
    print(f"  trained the pipeline in {time.perf_counter() - t0:.0f} s (ranker AUC "
          f"{pipe.metrics.get('ranker_valid_auc', float('nan')):.3f})", flush=True)
    return path


def build_catalog(path: Path, n_items: int, seed: int) -> Path:
    """A two-tower over a synthetic catalog of ``n_items`` items (small dim: serving cost is the point)."""
    if (path / "manifest.json").is_file():
        return path
    from turborec.data.synthetic import synthetic
    from turborec.train import TwoTowerRecommender

    t0 = time.perf_counter()
    data = synthetic(n_users=20_000, n_items=n_items, n_interactions=300_000, seed=seed)
    # cosine towers without the item bias: with a popularity bias folded into the vectors, one epoch over a
    # mostly cold million-item catalog ranks the same few high-norm items first for everyone (measured: 17
    # distinct items in 256 users' top-10), which would make any ANN index look perfect
    rec = TwoTowerRecommender(dim=16, hidden=(), history_len=20, epochs=2, batch_size=4096, seed=seed,
                              progress=False, use_item_features=False, normalize=True, temperature=0.05,
                              item_bias=False, weight_average=0.0)
    rec.fit(data).save(path)
    print(f"  trained the {n_items:,}-item two-tower in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def build_indexed(plain: Path, spec: str) -> Path:
    """``plain`` as a tuned artifact serving through the index ``spec`` (what ``turborec tune`` writes)."""
    from turborec.serving.accelerated import build_index
    from turborec.train import load
    from turborec.tune.artifact import save_tuned
    from turborec.tune.space import ServingKnobs

    dest = plain.with_name(f"{plain.name}-{spec.replace(',', '_').replace('|', '_').replace('=', '')}")
    if (dest / "manifest.json").is_file():
        return dest
    rec = load(plain)
    net = rec.fitted_net.eval()
    import torch

    with torch.no_grad():
        vecs = net.item_vectors().float().numpy()
    t0 = time.perf_counter()
    index = build_index(spec, vecs)
    save_tuned(dest, rec, ServingKnobs(index=spec), index=index)
    print(f"  built {spec} over {len(vecs):,} items in {time.perf_counter() - t0:.1f} s", flush=True)
    return dest


def index_recall(plain: Path, indexed: Path, requests: tuple[Any, ...], n: int = 512, k: int = 10) -> dict[str, Any]:
    """Recall@k of the indexed model's answers against exact scoring, on ``n`` requests of the mix."""
    from turborec.serving.loading import load_serving_model
    from turborec.serving.model import Query
    from turborec.serving.tiers import Tier

    exact, fast = load_serving_model(plain), load_serving_model(indexed)
    queries = []
    for tpl in requests[:n]:
        body = json.loads(tpl.body)
        queries.append(Query(body.get("user"), tuple(body.get("recent_items", ())), k))
    hits, distinct = [], set()
    for lo in range(0, len(queries), 64):
        a = exact.recommend_batch(queries[lo:lo + 64], Tier.FULL).results
        b = fast.recommend_batch(queries[lo:lo + 64], Tier.FULL).results
        for x, y in zip(a, b):
            hits.append(len(set(x.items) & set(y.items)) / max(len(x.items), 1))
            distinct.update(x.items)
    # the distinct count says how varied the exact answers are: a model that recommends the same few items
    # to everyone would make any index look perfect
    return {"recall_at_10": float(np.mean(hits)), "requests": len(queries), "distinct_items_exact": len(distinct)}


# ----------------------------------------------------------------- servers
def naive_app(artifact: Path) -> Any:
    """What one would write first: FastAPI, pydantic in and out, the model called once per request."""
    import torch
    from fastapi import FastAPI
    from pydantic import BaseModel, Field

    import turborec
    from turborec.train import Recommender, TwoStagePipeline

    model = turborec.load(artifact)
    pipe = model if isinstance(model, TwoStagePipeline) else None
    rec = pipe.retriever if pipe is not None else model
    assert isinstance(rec, Recommender)
    net = rec.fitted_net.eval()
    assert rec.users is not None and rec.items is not None and rec.histories is not None
    histories = rec.histories
    with torch.no_grad():
        item_vecs = net.item_vectors().float()
    user_index = {str(u): i for i, u in enumerate(rec.users.ids)}
    item_index = {str(v): i for i, v in enumerate(rec.items.ids)}
    item_ids = [str(v) for v in rec.items.ids]
    length = rec.history_len or 50
    n_candidates = pipe.config.n_candidates if pipe is not None else 0

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
        recent = np.array([item_index[i] for i in req.recent_items if i in item_index], dtype=np.int64)
        seen = histories.of(u) if u >= 0 else recent
        tail = (np.concatenate([seen, recent]) if u >= 0 and len(recent) else seen)[-length:]
        hist = np.full((1, length), -1, dtype=np.int64)
        hist[0, : len(tail)] = tail
        with torch.no_grad():
            scores = (net.user_vectors(torch.tensor([u]), torch.from_numpy(hist)) @ item_vecs.T)[0]
            scores[torch.from_numpy(seen)] = -torch.inf
            top = torch.topk(scores, max(req.k, n_candidates))
            items, values = top.indices.numpy(), top.values.numpy()
            if pipe is not None:  # the second stage: the pipeline's features and ranker on these candidates
                logits = pipe.rank_candidates(np.array([u]), hist, items[None], values[None])[0]
                order = np.argsort(-logits, kind="stable")
                items, values = items[order], logits[order]
        return {"items": [{"item": item_ids[i], "score": float(s)} for i, s in zip(items[: req.k], values[: req.k])]}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(args: argparse.Namespace) -> None:
    server_cores = cores(args.cores)
    pin(server_cores)
    import torch
    import uvicorn

    from turborec.serving import ServeSettings, run_server
    from turborec.serving.server import uvicorn_config

    settings = ServeSettings(
        artifact=Path(args.artifact), port=args.port, slo_p99_ms=args.slo_ms, admin_token=TOKEN,
        adaptive_tiers=args.variant == "turborec-adaptive", torch_threads=len(server_cores),
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, executor=args.executor,
    )
    if args.variant == "naive":
        torch.set_num_threads(1)
        if len(server_cores) == 1:
            uvicorn.Server(uvicorn_config(naive_app(Path(args.artifact)), settings)).run()
        else:  # one worker process per core, as one scales a FastAPI app
            os.environ["TURBOREC_NAIVE_ARTIFACT"] = str(args.artifact)
            uvicorn.run("serving:naive_factory", factory=True, host="127.0.0.1", port=args.port,
                        workers=len(server_cores), log_level="warning", access_log=False,
                        app_dir=str(Path(__file__).parent))
    else:
        run_server(settings)


def naive_factory() -> Any:
    import torch

    torch.set_num_threads(1)
    return naive_app(Path(os.environ["TURBOREC_NAIVE_ARTIFACT"]))


def start_server(variant: str, args: argparse.Namespace, artifact: Path, port: int) -> subprocess.Popen[bytes]:
    if variant != "naive" and getattr(args, "turborec_artifact", None) is not None:
        artifact = args.turborec_artifact  # the same model, served the way turborec would serve it
    cmd = [sys.executable, __file__, "--role", "server", "--variant", variant, "--artifact", str(artifact),
           "--port", str(port), "--cores", ",".join(map(str, args.server_cores)), "--slo-ms", str(args.slo_ms),
           "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--executor", args.executor]
    env = {**os.environ, "OMP_NUM_THREADS": str(len(args.server_cores)), "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    return start_http_server(cmd, port, env=env, timeout_s=300, name=f"{variant} server")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc)


# -------------------------------------------------------------------- load
def request_mix(artifact: Path, n: int = 4000, seed: int = 0) -> tuple[Any, ...]:
    from turborec._util.artifact import load_artifact
    from turborec.bench.loadgen import RequestTemplate

    art = load_artifact(artifact)
    vocab = "retriever/vocab" if art.kind == "pipeline" else "vocab"
    users = [str(u) for u in art.json(f"{vocab}/users.json")["ids"]]
    items = [str(i) for i in art.json(f"{vocab}/items.json")["ids"]]
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
    return run_load_processes(spec, [[c] for c in args.load_cores])


def probe(url: str, rate: float, args: argparse.Namespace, requests: tuple[Any, ...], seed: int = 0) -> Any:
    from turborec.bench.report import summarize

    result = run(url, rate, args.warmup_s + args.probe_s, args, requests, seed=seed)
    s = summarize(result, rate, window=(args.warmup_s, args.warmup_s + args.probe_s))
    print(f"    {rate:7.0f} req/s: p50 {s.p50_ms:6.2f} p99 {s.p99_ms:7.2f} ms, achieved {s.achieved_rate:7.0f}, "
          f"shed {s.shed}, errors {s.errors}, generator lag p99 {s.send_lag_p99_ms:.2f} ms", flush=True)
    return s


def measure_variant(variant: str, args: argparse.Namespace, artifact: Path, port: int,
                    requests: tuple[Any, ...]) -> dict[str, Any]:
    from turborec.bench.report import find_sustainable_rate

    proc = start_server(variant, args, artifact, port)
    url = f"http://127.0.0.1:{port}"
    try:
        probe(url, 100, args, requests)  # warm the server (first calls, connections)
        search = find_sustainable_rate(lambda r: probe(url, r, args, requests), args.slo_ms,
                                       start_rate=args.start_rate, max_rate=args.max_rate, growth=2.0,
                                       rel_tolerance=args.tolerance, max_probes=args.max_probes)
        rate = search.sustainable_rate
        # confirm: the repeats at the rate must meet the SLO too (median p99 and median shed/error share);
        # a search probe that passed by luck on a noisy machine would otherwise be quoted. Else step down 10%.
        repeats: list[Any] = []
        rejected: list[dict[str, Any]] = []
        for _ in range(4):
            if not rate:
                break
            repeats = [probe(url, rate, args, requests, seed=i + 1) for i in range(args.repeats)]
            if confirmed(repeats, args.slo_ms):
                break
            rejected.append({"rate": rate, "repeats": [s.to_dict() for s in repeats]})
            rate, repeats = round(rate * 0.9, 1), []
    finally:
        stop_server(proc)
    row: dict[str, Any] = {"variant": variant, "sustainable_rate": rate if repeats else 0.0,
                           "search_rate": search.sustainable_rate,
                           "probes": [{"rate": r, "ok": ok, **s.to_dict()} for r, s, ok in search.probes],
                           "repeats": [s.to_dict() for s in repeats], "rejected": rejected}
    if repeats:
        for key in ("p50_ms", "p99_ms", "achieved_rate", "shed_fraction", "error_fraction"):
            row[f"median_{key}"] = statistics.median(getattr(s, key) for s in repeats)
    print(f"  {variant}: sustainable {row['sustainable_rate']:.0f} req/s", flush=True)
    return row


def confirmed(repeats: list[Any], slo_ms: float) -> bool:
    """The repeats' medians meet the SLO: p99 within it, (almost) nothing shed or failed."""
    med = statistics.median
    return (med(s.p99_ms for s in repeats) <= slo_ms and med(s.shed_fraction for s in repeats) <= 0.001
            and med(s.error_fraction for s in repeats) <= 0.001)


# ---------------------------------------------------------------- overload
def overload(args: argparse.Namespace, artifact: Path, port: int, requests: tuple[Any, ...], rate: float,
             plot: Path, title: str) -> dict[str, Any]:
    from turborec.bench.report import summarize

    calm, storm = 0.5 * rate, 3.0 * rate
    t_up, t_down, t_end = args.overload_phases
    proc = start_server("turborec-adaptive", args, artifact, port)
    url = f"http://127.0.0.1:{port}"
    try:
        probe(url, 100, args, requests)
        result = run(url, calm, t_end, args, requests, phases=((0.0, calm), (t_up, storm), (t_down, calm)), seed=7)
    finally:
        stop_server(proc)
    during = summarize(result, storm, window=(t_up, t_down))
    after = summarize(result, calm, window=(t_down, t_end))
    names = result.tiers
    full = names.index("full") if "full" in names else -2
    late = (result.scheduled >= t_down) & (result.status == 200)
    not_full = np.flatnonzero(late & (result.tier != full))
    # back at the full tier: after the last answer from a cheaper tier (all answers full: 0)
    back_s = 0.0 if len(not_full) == 0 else float(result.scheduled[not_full[-1]] + result.latency[not_full[-1]] - t_down)
    if late.any() and not np.any(result.tier[late] == full):
        back_s = float("inf")
    plot_overload(result, args.slo_ms, (t_up, t_down), calm, storm, plot, title)
    counts = {name: int(np.sum(result.tier[(result.scheduled >= t_up) & (result.scheduled < t_down)] == i))
              for i, name in enumerate(names)}
    return {"calm_rate": calm, "storm_rate": storm, "phases_s": [t_up, t_down, t_end], "during": during.to_dict(),
            "after": after.to_dict(), "admitted_p99_ms": during.p99_ms, "shed_fraction": during.shed_fraction,
            "shed_p99_ms": during.shed_p99_ms, "back_to_full_s": back_s, "tiers_during_storm": counts,
            "plot": str(plot.relative_to(REPO)) if plot.is_relative_to(REPO) else str(plot)}


def plot_overload(result: Any, slo_ms: float, storm: tuple[float, float], calm: float, peak: float, path: Path,
                  title: str) -> None:
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
    ax1.set_title(f"{title}: {calm:.0f} -> {peak:.0f} -> {calm:.0f} req/s offered")
    ax2.plot(bins, np.array(shed) * 100, color="tab:red")
    ax2.set_ylabel("503 (%)")
    ax3.step(bins, worst, where="post", color="tab:purple")
    ax3.set_yticks([t.value for t in Tier], [t.label for t in Tier], fontsize=8)
    ax3.set_ylim(4.5, -0.5)
    ax3.set_ylabel("worst tier")
    ax3.set_xlabel("time (s)")
    for ax in (ax1, ax2, ax3):
        ax.axvspan(*storm, color="orange", alpha=0.12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reload_under_load(args: argparse.Namespace, artifact: Path, port: int, requests: tuple[Any, ...],
                      rate: float) -> dict[str, Any]:
    import httpx

    proc = start_server("turborec-adaptive", args, artifact, port)
    url = f"http://127.0.0.1:{port}"
    outcome: dict[str, Any] = {}
    lead_s = 1.5 + 0.2 * len(args.load_cores) + 1.0  # the generators start ~2 s after they are called

    def reload() -> None:
        time.sleep(lead_s)
        t0 = time.perf_counter()
        r = httpx.post(f"{url}/admin/reload", json={}, headers={"authorization": f"Bearer {TOKEN}"}, timeout=120)
        outcome.update(status=r.status_code, seconds=time.perf_counter() - t0, body=r.json())

    try:
        probe(url, 100, args, requests)
        thread = threading.Thread(target=reload)
        thread.start()
        result = run(url, rate, args.reload_s, args, requests, seed=11)
        thread.join(120)
    finally:
        stop_server(proc)
    return {"rate": rate, "reload_status": outcome.get("status"), "reload_s": outcome.get("seconds"),
            "reload_within_load": (outcome.get("seconds") or 1e9) < args.reload_s - 1.0,
            "sent": len(result.status), "failed": int(np.sum((result.status != 200) & (result.status != 503))),
            "shed": int(np.sum(result.status == 503))}


# -------------------------------------------------------------------- main
def run_workload(name: str, artifact: Path, args: argparse.Namespace, port: int, plot: Path,
                 **overrides: Any) -> dict[str, Any]:
    """Both variants' sustainable rates, then overload and reload; ``overrides``: per-workload settings."""
    args = argparse.Namespace(**{**vars(args), **overrides})
    print(f"== {name}: {artifact} (SLO p99 {args.slo_ms:g} ms)", flush=True)
    requests = request_mix(artifact)
    rows = []
    for i, variant in enumerate(args.variants):
        print(f" measuring {variant} ...", flush=True)
        rows.append(measure_variant(variant, args, artifact, port + i, requests))
    by = {r["variant"]: r for r in rows}
    out: dict[str, Any] = {"workload": name, "artifact": str(artifact), "slo_ms": args.slo_ms, "variants": rows}
    if getattr(args, "turborec_artifact", None) is not None:
        out["turborec_artifact"] = str(args.turborec_artifact)
        out["index"] = args.index_spec
        out["index_recall"] = index_recall(artifact, args.turborec_artifact, requests)
        print(f"  {args.index_spec}: recall@10 vs exact {out['index_recall']['recall_at_10']:.3f}", flush=True)
    ours = by.get("turborec", {}).get("sustainable_rate", 0.0)
    naive = by.get("naive", {}).get("sustainable_rate", 0.0)
    if naive:
        out["speedup_vs_naive"] = ours / naive
    if ours and not args.skip_overload:
        print(" overload run ...", flush=True)
        out["overload"] = overload(args, artifact, port + 10, requests, ours, plot, f"Overload, {name}")
        print(" hot reload under load ...", flush=True)
        out["reload"] = reload_under_load(args, artifact, port + 11, requests, 0.5 * ours)
    return out


def machine() -> dict[str, Any]:
    import platform

    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def report(out: dict[str, Any]) -> str:
    from turborec.bench.report import markdown_table

    cores_txt = f"server on core(s) {out['server_cores']}, load on {out['load_cores']}"
    lines = [f"# Serving benchmark ({out['machine']['cpu']}; {cores_txt})", ""]
    cols = ["variant", "sustainable_rate", "median_p50_ms", "median_p99_ms", "median_achieved_rate"]
    for w in out["workloads"]:
        lines += [f"## {w['workload']}", "", f"Sustainable rate at p99 <= {w['slo_ms']:g} ms (median of "
                  f"{len(w['variants'][0]['repeats'])} runs at that rate)", "", markdown_table(w["variants"], cols), ""]
        if "index_recall" in w:
            r = w["index_recall"]
            lines.append(f"turborec serves through `{w['index']}`: recall@10 against exact scoring "
                         f"{r['recall_at_10']:.3f} on {r['requests']} requests of the mix "
                         f"({r['distinct_items_exact']} distinct items in the exact answers)")
        if "speedup_vs_naive" in w:
            lines.append(f"turborec / naive: **{w['speedup_vs_naive']:.1f}x**")
        if "overload" in w:
            o = w["overload"]
            lines.append(f"Overload at 3x ({o['storm_rate']:.0f} req/s): admitted p99 {o['admitted_p99_ms']:.1f} ms, "
                         f"503 {100 * o['shed_fraction']:.1f}% (p99 {o['shed_p99_ms']:.1f} ms), back to full tier "
                         f"{o['back_to_full_s']:.2f} s after the load drops; tiers during the storm "
                         f"{o['tiers_during_storm']} ({o['plot']})")
        if "reload" in w:
            r = w["reload"]
            lines.append(f"Hot reload at {r['rate']:.0f} req/s: HTTP {r['reload_status']} in "
                         f"{r['reload_s'] or float('nan'):.1f} s, {r['failed']} failed of {r['sent']} ({r['shed']} shed)")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--role", default="bench", choices=["bench", "server"])
    p.add_argument("--quick", action="store_true", help="short smoke run: small catalog, short probes, 1 repeat")
    p.add_argument("--workloads", default="pipeline,catalog-1m")
    p.add_argument("--pipeline", default=None, help="a saved TwoStagePipeline (default: trained here, cached)")
    p.add_argument("--catalog", default=None, help="a retrieval artifact over a large catalog (default: built here)")
    p.add_argument("--catalog-items", type=int, default=None, help="default 1,000,000 (quick: 100,000)")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--variants", default="turborec,naive")
    p.add_argument("--server-cores", default="0", help="comma-separated cores for the server under test")
    p.add_argument("--load-cores", default="1", help="comma-separated cores, one load-generator process each")
    p.add_argument("--slo-ms", type=float, default=10.0)
    p.add_argument("--catalog-slo-ms", type=float, default=10.0, help="p99 budget of the large-catalog workload")
    p.add_argument("--catalog-index", default="IVF1024,Flat|nprobe=16",
                   help="index turborec serves the large catalog through ('Exact': the same exact matmul as naive)")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=1.0)
    p.add_argument("--executor", default="thread", choices=["thread", "inline"],
                   help="where turborec runs a batch (ServeSettings.executor)")
    p.add_argument("--probe-s", type=float, default=None, help="seconds measured per probe (default 3, quick 1.5)")
    p.add_argument("--warmup-s", type=float, default=None)
    p.add_argument("--start-rate", type=float, default=None)
    p.add_argument("--max-rate", type=float, default=20000.0)
    p.add_argument("--tolerance", type=float, default=None)
    p.add_argument("--max-probes", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--skip-overload", action="store_true")
    p.add_argument("--out", default=None, help="results stem (default benchmarks/results/serving)")
    # server role
    p.add_argument("--variant", default="turborec")
    p.add_argument("--artifact", default=None)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cores", default="0")
    args = p.parse_args()
    if args.role == "server":
        serve(args)
        return
    q = args.quick

    def pick(value: Any, full: Any, quick: Any) -> Any:
        return value if value is not None else (quick if q else full)

    args.probe_s = pick(args.probe_s, 3.0, 1.5)
    args.warmup_s = pick(args.warmup_s, 1.0, 0.5)
    args.start_rate = pick(args.start_rate, 200.0, 100.0)
    args.tolerance = pick(args.tolerance, 0.1, 0.25)
    args.max_probes = pick(args.max_probes, 10, 4)
    args.repeats = pick(args.repeats, 2, 1)
    args.overload_phases = (1.5, 4.0, 9.0) if q else (3.0, 9.0, 15.0)
    args.reload_s = 5.0 if q else 8.0
    n_items = pick(args.catalog_items, 1_000_000, 100_000)
    args.server_cores, args.load_cores = cores(args.server_cores), cores(args.load_cores)
    args.variants = args.variants.split(",")
    if set(args.server_cores) & set(args.load_cores):
        raise SystemExit("--server-cores and --load-cores must not overlap")
    stem = Path(args.out) if args.out else (CACHE / "serving_quick" if q else REPO / "benchmarks" / "results" / "serving")
    plots = CACHE / "plots" if q else REPO / "docs" / "img"
    import torch

    torch.set_num_threads(max(1, min(8, len(os.sched_getaffinity(0)) - 1)))  # building artifacts only
    tag = "quick" if q else "full"
    workloads: list[tuple[str, Path, Path, dict[str, Any]]] = []
    for name in args.workloads.split(","):
        if name == "pipeline":
            art = Path(args.pipeline) if args.pipeline else build_pipeline(CACHE / f"ml-small-pipeline-{tag}", q,
                                                                            args.seed)
            workloads.append((name, art, plots / f"{stem.name}_overload.png", {}))
        elif name.startswith("catalog"):
            art = Path(args.catalog) if args.catalog else build_catalog(CACHE / f"catalog-{n_items}", n_items,
                                                                         args.seed)
            extra: dict[str, Any] = {"slo_ms": args.catalog_slo_ms, "start_rate": 2 * args.start_rate}
            if args.catalog_index != "Exact":
                extra.update(turborec_artifact=build_indexed(art, args.catalog_index), index_spec=args.catalog_index)
            workloads.append((f"catalog-{n_items // 1000}k", art, plots / f"{stem.name}_overload_catalog.png", extra))
        else:
            raise SystemExit(f"unknown workload {name!r} (pipeline, catalog-1m)")
    torch.set_num_threads(1)
    pin(args.load_cores)  # keep this orchestrator off the server's cores
    base_port = 18000 + os.getpid() % 1000
    t0 = time.perf_counter()
    out: dict[str, Any] = {"machine": machine(), "quick": q, "slo_ms": args.slo_ms, "server_cores": args.server_cores,
                           "load_cores": args.load_cores, "workloads": []}
    for i, (name, art, plot, overrides) in enumerate(workloads):
        out["workloads"].append(run_workload(name, art, args, base_port + 20 * i, plot, **overrides))
    out["wall_s"] = time.perf_counter() - t0
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(out, indent=1, default=float))
    text = report(out)
    stem.with_suffix(".md").write_text(text + "\n")
    print("\n" + text)
    print(f"wrote {stem.with_suffix('.json')} ({out['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
