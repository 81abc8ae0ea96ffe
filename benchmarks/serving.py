"""Serving benchmark: turborec against the servers users would pick instead, same model, same cores, same load.

Two workloads, each served from its own artifact (built here unless given):

- ``pipeline``: the two-stage pipeline on ml-latest-small (recbole split; two-tower
  retrieval of 200 candidates -> DLRM ranker over co-occurrence/similarity features);
- ``catalog-1m``: a two-tower over a 1,000,000-item synthetic catalog (retrieval only),
  served as ``turborec tune`` would: a tuned artifact of the same model with a FAISS IVF
  index (``--catalog-index``), whose recall@10 against exact scoring on the benchmark's own
  request mix is measured and reported beside the rates.

Servers (``--variants``), all on 127.0.0.1, pinned to ``--server-cores``:

- ``turborec``: ``turborec serve`` (httptools front end, micro-batching, admission), full tier
  only in the rate search; ``turborec-asgi``: the same service behind
  uvicorn (hot endpoints answered straight from ASGI), the other front end, in the same run
  (benchmarks/front_ends.py compares the front ends' CPU per request);
- peers (``serving_peers.py``): LitServe, NVIDIA Triton through PyTriton, Ray Serve
  (``@serve.batch``), each serving the *same model object* turborec serves
  (``load_serving_model``, one ``recommend_batch`` per batch its server forms); a missing one
  is skipped with a line saying what to install;
- ``naive``: FastAPI + uvicorn, one PyTorch call per request (exact scoring), the floor.

The open-loop Poisson generator (``turborec.bench``) runs on ``--load-cores`` after its
null-server self-check; every server gets the same mix (80% known users, 20% anonymous
users with 5 recent items, k=10). Per server: cold start (process start to the first 200),
sustainable rate (highest with p99 <= SLO and < 0.1% refused or failed, in a majority of
``--repeats`` fresh probes at it; found by ``turborec.bench.report.find_sustainable_rate``, a
probe ladder that one noisy miss does not end, within ``--max-probes``), p50/p99/p99.9 at 50%
and 100% of it, RSS of its process tree, and a 0.5x -> 3x -> 0.5x storm of its own rate
(admitted p99, 503/error share, time back to normal; turborec's with adaptive tiers on, as
``turborec serve`` runs). ``--peer-tuning``: each peer's settings (``serving_peers.TUNINGS``)
searched briefly first, the best one measured (all recorded). ``--scaling 1,2,4,8``:
``turborec serve --workers N`` on N cores.

    python benchmarks/serving.py                      # everything (a 16-core machine: ~10 min)
    python benchmarks/serving.py --quick              # smoke run, small catalog, short probes
    python benchmarks/serving.py --server-cores 0 --load-cores 8,9,10,11 --scaling 1,2,4,8 --scaling-cores 0,1,2,3,4,5,6,7
    python benchmarks/serving.py --workloads pipeline --variants turborec,naive,litserve --peer-tuning

Writes benchmarks/results/serving.json + .md, docs/img/serving_rate_p99.png and
docs/img/serving_overload*.png (``--out STEM``: STEM.json + .md, docs/img/<name of STEM>_*.png;
``--quick``: everything under .cache/serving-bench/, so a smoke run leaves the repo as it was).
"""


import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import serving_peers
from serving_measure import back_to_normal_s, plot_rate_p99, session_rss_mb, start_timed, stop_tree

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


def hold_cpu_awake() -> Any:
    """``--cpu-latency-0``: ask the kernel to keep every CPU out of deep idle states while the returned file stays
    open (PM QoS, ``/dev/cpu_dma_latency`` = 0 us, what latency benchmarks such as cyclictest do), so a p99 at a
    low rate measures the server, not an idle core's wake-up; the same for every server of the run. Returns
    the open file, or a string saying why it could not (not root, no such device: a container)."""
    import struct

    try:
        f = open("/dev/cpu_dma_latency", "wb", buffering=0)  # noqa: SIM115  (held open for the run)
        f.write(struct.pack("i", 0))
        return f
    except OSError as exc:
        return f"not held: {exc}"


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
    for body in requests[:n]:
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
def naive_app(artifact: Path, sync: bool = False) -> Any:
    """What one would write first: FastAPI, pydantic in and out, the model called once per request (``sync``:
    a plain ``def`` route, which FastAPI runs on its thread pool, instead of ``async def`` on the loop)."""
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

    def answer(req: Req) -> dict[str, Any]:
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

    if sync:
        @app.post("/v1/recommend", response_model=Resp)
        def recommend_on_a_thread(req: Req) -> dict[str, Any]:
            return answer(req)
    else:
        @app.post("/v1/recommend", response_model=Resp)
        async def recommend(req: Req) -> dict[str, Any]:
            return answer(req)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


FRONT_ENDS = {"turborec": "lean", "turborec-adaptive": "lean", "turborec-asgi": "asgi"}


def serve(args: argparse.Namespace) -> None:
    server_cores = cores(args.cores)
    pin(server_cores)
    import torch
    import uvicorn

    from turborec.serving import ServeSettings, run_server
    from turborec.serving.server import uvicorn_config

    if args.variant in serving_peers.SERVERS:
        why = serving_peers.missing(args.variant)  # also puts a side-installed PyTriton on the path
        if why:
            raise SystemExit(why)
        serving_peers.SERVERS[args.variant](Path(args.artifact), args.port, args.max_batch, args.max_wait_ms,
                                            json.loads(args.peer_options))
        return
    settings = ServeSettings(
        artifact=Path(args.artifact), port=args.port, slo_p99_ms=args.slo_ms, admin_token=TOKEN,
        adaptive_tiers=args.variant == "turborec-adaptive", torch_threads=1 if args.workers > 1 else len(server_cores),
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, executor=args.executor,
        http=FRONT_ENDS.get(args.variant, "lean"), workers=args.workers,
    )
    if args.variant == "naive":
        torch.set_num_threads(1)
        options = json.loads(args.peer_options)
        sync = options.get("handler", "async") == "sync"
        if len(server_cores) == 1:
            config = uvicorn_config(naive_app(Path(args.artifact), sync), settings)  # uvloop + httptools
            config.loop, config.http = options.get("loop", config.loop), options.get("http", config.http)
            uvicorn.Server(config).run()
        else:  # one worker process per core, as one scales a FastAPI app
            os.environ["TURBOREC_NAIVE_ARTIFACT"] = str(args.artifact)
            os.environ["TURBOREC_NAIVE_SYNC"] = "1" if sync else ""
            uvicorn.run("serving:naive_factory", factory=True, host="127.0.0.1", port=args.port,
                        workers=len(server_cores), log_level="warning", access_log=False,
                        app_dir=str(Path(__file__).parent))
    elif settings.workers > 1:
        from turborec.serving.workers import run_workers

        run_workers(settings)
    else:
        run_server(settings)


def naive_factory() -> Any:
    import torch

    torch.set_num_threads(1)
    return naive_app(Path(os.environ["TURBOREC_NAIVE_ARTIFACT"]), bool(os.environ.get("TURBOREC_NAIVE_SYNC")))


def start_server(variant: str, args: argparse.Namespace, artifact: Path, port: int,
                 requests: tuple[Any, ...] = ()) -> tuple[subprocess.Popen[bytes], float]:
    """The server for ``variant`` on ``port``, and its cold start: process start to its first 200 on a request of
    the mix (the model loaded, warmed, and answering)."""
    if variant != "naive" and getattr(args, "turborec_artifact", None) is not None:
        # the same model object turborec serves (tuned, through its index) for turborec and every peer: the
        # comparison is of servers; only the naive floor scores the catalog exactly, per request
        artifact = args.turborec_artifact
    options = args.peer_options.get(variant, {}) if isinstance(args.peer_options, dict) else {}
    batch = options.get("max_batch", args.max_batch)
    wait = options.get("max_wait_ms", args.max_wait_ms)
    cmd = [sys.executable, __file__, "--role", "server", "--variant", variant, "--artifact", str(artifact),
           "--port", str(port), "--cores", ",".join(map(str, args.server_cores)), "--slo-ms", str(args.slo_ms),
           "--max-batch", str(batch), "--max-wait-ms", str(wait), "--executor", args.executor,
           "--workers", str(getattr(args, "serve_workers", 1)), "--peer-options", json.dumps(options)]
    threads = 1 if getattr(args, "serve_workers", 1) > 1 else len(args.server_cores)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    first = requests[0] if requests else request_templates(variant, ({"user": None, "k": 10},), artifact)[0]
    return start_timed(cmd, f"http://127.0.0.1:{port}", first.path, first.body, env=env, timeout_s=300,
                       name=f"{variant} server")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    stop_tree(proc)


# -------------------------------------------------------------------- load
def request_mix(artifact: Path, n: int = 4000, seed: int = 0) -> tuple[dict[str, Any], ...]:
    """The request bodies every server gets: 80% known users, 20% anonymous users with 5 recent items; k=10."""
    from turborec._util.artifact import load_artifact

    art = load_artifact(artifact)
    vocab = "retriever/vocab" if art.kind == "pipeline" else "vocab"
    users = [str(u) for u in art.json(f"{vocab}/users.json")["ids"]]
    items = [str(i) for i in art.json(f"{vocab}/items.json")["ids"]]
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        if rng.random() < 0.8:
            out.append({"user": users[rng.integers(len(users))], "k": 10})
        else:
            out.append({"recent_items": [items[i] for i in rng.integers(0, min(len(items), 2000), 5)], "k": 10})
    return tuple(out)


def request_templates(variant: str, bodies: tuple[dict[str, Any], ...], artifact: Path) -> tuple[Any, ...]:
    """The mix on ``variant``'s wire: the same JSON to /v1/recommend, or Triton's KServe v2 tensors."""
    from turborec.bench.loadgen import RequestTemplate

    if variant == "triton":
        users, items = serving_peers.vocabularies(artifact)
        u = {x: i for i, x in enumerate(users)}
        v = {x: i for i, x in enumerate(items)}
        return tuple(RequestTemplate("POST", *serving_peers.triton_body(b, u, v)) for b in bodies)
    return tuple(RequestTemplate("POST", "/v1/recommend",
                                 json.dumps({k: x for k, x in b.items() if x is not None}).encode()) for b in bodies)


def run(url: str, rate: float, duration: float, args: argparse.Namespace, requests: tuple[Any, ...],
        phases: tuple[tuple[float, float], ...] = (), seed: int = 0, timeout_s: float = 5.0) -> Any:
    from turborec.bench.loadgen import LoadSpec, run_load_processes

    spec = LoadSpec(url=url, rate=rate, duration_s=duration, requests=requests, connections=512, timeout_s=timeout_s,
                    seed=seed, phases=phases, preopen=32)
    return run_load_processes(spec, [[c] for c in args.load_cores])


def probe(url: str, rate: float, args: argparse.Namespace, requests: tuple[Any, ...], seed: int = 0) -> Any:
    """One load window at ``rate`` (after ``--warmup-s``), summarized (p50/p99/p99.9, refused, failed)."""
    from turborec.bench.report import summarize

    # a request unanswered after 100x the SLO fails the probe whichever way it is counted: as an error then,
    # so an overloaded probe ends ~1 s after its last send rather than after the storms' 5 s timeout
    result = run(url, rate, args.warmup_s + args.probe_s, args, requests, seed=seed,
                 timeout_s=max(1.0, args.slo_ms / 10))
    s = summarize(result, rate, window=(args.warmup_s, args.warmup_s + args.probe_s))
    print(f"    {rate:7.0f} req/s: p50 {s.p50_ms:6.2f} p99 {s.p99_ms:7.2f} p99.9 {s.p999_ms:7.2f} ms, achieved "
          f"{s.achieved_rate:7.0f}, shed {s.shed}, errors {s.errors}, generator lag p99 {s.send_lag_p99_ms:.2f} ms",
          flush=True)
    if s.errors or not s.p99_ms <= 2 * args.slo_ms:
        settle(url, requests, args.slo_ms)
    return s


def settle(url: str, requests: tuple[Any, ...], slo_ms: float, limit_s: float = 20.0) -> float:
    """After an overloaded probe, wait until the server answers one request within the SLO again (at most
    ``limit_s``): a server that keeps working off requests the generator gave up on would otherwise start the
    next probe with a backlog. Returns the seconds waited."""
    import httpx

    t0 = time.perf_counter()
    with httpx.Client(timeout=limit_s) as client:
        for i in range(10_000):
            r = requests[i % len(requests)]
            t = time.perf_counter()
            try:
                answer = client.request(r.method, url + r.path, content=r.body,
                                        headers={"content-type": "application/json"})
                if answer.status_code == 200 and (time.perf_counter() - t) * 1000 <= slo_ms:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t0 > limit_s:
                break
            time.sleep(0.05)
    return time.perf_counter() - t0


def point(s: Any) -> dict[str, float]:
    """The latency figures of one summary, as the table quotes them."""
    return {"rate": s.offered_rate, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "p999_ms": s.p999_ms,
            "shed_fraction": s.shed_fraction, "error_fraction": s.error_fraction}


def search_rate(url: str, args: argparse.Namespace, requests: tuple[Any, ...], **bounds: Any) -> Any:
    """The sustainable-rate search (``turborec.bench.report.find_sustainable_rate``: a probe ladder that a
    single noisy miss does not end, then refinement, then ``--repeats`` confirming probes), every probe
    with its own seed; ``bounds`` override the run's settings."""
    from turborec.bench.report import find_sustainable_rate

    seeds = iter(range(1, 1_000_000))
    settings = {"start_rate": args.start_rate, "max_rate": args.max_rate, "growth": args.growth,
                "rel_tolerance": args.tolerance, "max_probes": args.max_probes, "repeats": args.repeats, **bounds}
    return find_sustainable_rate(lambda r: probe(url, r, args, requests, seed=next(seeds)), args.slo_ms,
                                 **settings)


def measure_variant(variant: str, args: argparse.Namespace, artifact: Path, port: int,
                    bodies: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """Cold start; sustainable rate (``search_rate``: found, then confirmed by fresh repeats); latency at 50%
    and 100% of it; RSS after load; and, for every server but turborec (whose storm runs with adaptive tiers,
    ``overload``), the 0.5x -> 3x -> 0.5x storm on the same process."""
    t0 = time.perf_counter()
    requests = request_templates(variant, bodies, artifact)
    proc, cold_s = start_server(variant, args, artifact, port, requests)
    url = f"http://127.0.0.1:{port}"
    print(f"  {variant}: first 200 after {cold_s:.1f} s", flush=True)
    if getattr(args, "serve_workers", 1) > 1:
        wait_all_workers(url, args.serve_workers)
    storm: dict[str, Any] | None = None
    same_storm: dict[str, Any] | None = None
    half: Any = None
    try:
        probe(url, 100, args, requests)  # warm the server (first calls, connections)
        search = search_rate(url, args, requests)
        rate = search.sustainable_rate
        if rate:
            half = probe(url, 0.5 * rate, args, requests, seed=5)
        rss_mb = session_rss_mb(proc.pid)
        if rate and not variant.startswith("turborec") and not args.skip_overload and rate >= 20:
            storm = peer_storm(url, rate, args, requests)
        reference = getattr(args, "storm_rate", None)
        if reference and not variant.startswith("turborec") and not args.skip_overload:
            # the same traffic turborec's storm gets: what a user swapping servers would send
            if storm is not None:
                settle(url, requests, args.slo_ms)
            same_storm = peer_storm(url, reference, args, requests)
    finally:
        stop_server(proc)
    row: dict[str, Any] = {"variant": variant, **search.to_dict(), "cold_start_s": cold_s, "rss_mb": rss_mb,
                           "repeats": [s.to_dict() for s in search.repeats]}
    if isinstance(args.peer_options, dict) and args.peer_options.get(variant):
        row["options"] = args.peer_options[variant]
    if search.repeats:
        for key in ("p50_ms", "p99_ms", "achieved_rate", "shed_fraction", "error_fraction"):
            row[f"median_{key}"] = statistics.median(getattr(s, key) for s in search.repeats)
        points = [point(s) for s in search.repeats]
        row["at_100"] = {k: statistics.median(p[k] for p in points) for k in points[0]}
        row["at_50"] = point(half)
    if storm is not None:
        row["storm"] = storm
    if same_storm is not None:
        row["turborec_storm"] = same_storm
    row["wall_s"] = time.perf_counter() - t0  # what this server's part of the run took (sizing runs)
    print(f"  {variant}: sustainable {row['sustainable_rate']:.0f} req/s ({len(search.probes)} probes), "
          f"RSS {rss_mb:.0f} MB", flush=True)
    return row


def tune_peer(variant: str, args: argparse.Namespace, artifact: Path, port: int,
              bodies: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """``--peer-tuning``: each of ``variant``'s settings (``serving_peers.TUNINGS``) started and searched briefly
    (``--tuning-probes`` probes, one confirming repeat), each search starting at the best rate found so far (a
    better setting climbs from there, a worse one steps down); the best one's options (highest confirmed rate,
    then highest rate found) and rate go to the main measurement."""
    tried: list[dict[str, Any]] = []
    requests = request_templates(variant, bodies, artifact)
    start = args.start_rate
    for i, options in enumerate(serving_peers.TUNINGS.get(variant, [{}])[: args.tuning_max]):
        sub = argparse.Namespace(**{**vars(args), "peer_options": {**args.peer_options, variant: options},
                                    "probe_s": args.tuning_probe_s, "start_rate": start})
        print(f"  tuning {variant} {json.dumps(options)} ...", flush=True)
        try:
            proc, cold_s = start_server(variant, sub, artifact, port + 3 * i, requests)
        except RuntimeError as exc:
            print(f"   failed to start: {exc}", flush=True)
            tried.append({"options": options, "failed": str(exc)[:600]})
            continue
        url = f"http://127.0.0.1:{port + 3 * i}"
        t0 = time.perf_counter()
        try:
            probe(url, 100, sub, requests)
            search = search_rate(url, sub, requests, repeats=1, max_probes=args.tuning_probes, rel_tolerance=0.25)
        finally:
            stop_server(proc)
        tried.append({"options": options, "cold_start_s": cold_s, "start_rate": start, **search.to_dict(),
                      "wall_s": time.perf_counter() - t0 + cold_s})
        print(f"   {variant} {json.dumps(options)}: {search.sustainable_rate:.0f} req/s "
              f"(found {search.search_rate:.0f})", flush=True)
        start = max(start if i else 0.0, search.search_rate) or start
    ok = [t for t in tried if "failed" not in t]
    best = max(ok, key=lambda t: (t["sustainable_rate"], t["search_rate"])) if ok else {"options": {}}
    return {"variant": variant, "tried": tried, "chosen": best["options"], "chosen_rate": best.get("search_rate", 0.0)}


def wait_all_workers(url: str, n: int, timeout_s: float = 300.0) -> None:
    """Until all ``n`` workers serve: connections opened while only some listen would stay with those."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", timeout=5).text
        pids = {s.labels.get("pid") for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "turborec_model_info" and s.value == 1}
        if len(pids) >= n:
            time.sleep(1.0)  # the last worker binds its socket just after building its service
            return
        time.sleep(0.2)
    raise RuntimeError(f"only some of the {n} workers came up in {timeout_s:.0f} s")


def peer_storm(url: str, rate: float, args: argparse.Namespace, requests: tuple[Any, ...]) -> dict[str, Any]:
    """0.5x -> 3x -> 0.5x of the server's own sustainable rate: admitted p99 during the storm, refused/failed
    share, and the time after the load drops until every 250 ms window is within the SLO again."""
    from turborec.bench.report import summarize

    calm, peak = 0.5 * rate, 3.0 * rate
    t_up, t_down, t_end = args.overload_phases
    result = run(url, calm, t_end, args, requests, phases=((0.0, calm), (t_up, peak), (t_down, calm)), seed=7)
    during = summarize(result, peak, window=(t_up, t_down))
    back = back_to_normal_s(result, t_down, t_end, args.slo_ms)
    print(f"    storm {calm:.0f} -> {peak:.0f} req/s: admitted p99 {during.p99_ms:.1f} ms, 503 "
          f"{100 * during.shed_fraction:.1f}%, errors {100 * during.error_fraction:.1f}%, back to normal "
          f"{back:.2f} s", flush=True)
    return {"calm_rate": calm, "storm_rate": peak, "admitted_p99_ms": during.p99_ms,
            "shed_fraction": during.shed_fraction, "error_fraction": during.error_fraction,
            "back_to_normal_s": back}


# ---------------------------------------------------------------- overload
def overload(args: argparse.Namespace, artifact: Path, port: int, requests: tuple[Any, ...], rate: float,
             plot: Path, title: str) -> dict[str, Any]:
    from turborec.bench.report import summarize

    calm, storm = 0.5 * rate, 3.0 * rate
    t_up, t_down, t_end = args.overload_phases
    proc, _ = start_server("turborec-adaptive", args, artifact, port, requests)
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
            "error_fraction": during.error_fraction, "back_to_normal_s": back_to_normal_s(result, t_down, t_end,
                                                                                            args.slo_ms),
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

    proc, _ = start_server("turborec-adaptive", args, artifact, port, requests)
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
                 progress: Callable[[dict[str, Any]], None] = lambda w: None, **overrides: Any) -> dict[str, Any]:
    """Every variant's sustainable rate, then overload and reload; ``overrides``: per-workload settings;
    ``progress``: called with what is measured so far after each server (a run cut short keeps it)."""
    args = argparse.Namespace(**{**vars(args), **overrides})
    print(f"== {name}: {artifact} (SLO p99 {args.slo_ms:g} ms)", flush=True)
    bodies = request_mix(artifact)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    tuning: list[dict[str, Any]] = []
    start_rates: dict[str, float] = {}
    for i, variant in enumerate(args.variants):
        if rows or tuning:
            progress({"workload": name, "slo_ms": args.slo_ms, "variants": rows, "skipped": skipped,
                      "peer_tuning": tuning, "partial": True})
        why = serving_peers.missing(variant)
        if why:
            print(f" {why}", flush=True)
            skipped.append(why)
            continue
        if args.peer_tuning and variant in serving_peers.TUNINGS and variant not in args.peer_options:
            print(f" tuning {variant} ({len(serving_peers.TUNINGS[variant][: args.tuning_max])} settings) ...",
                  flush=True)
            tuning.append(tune_peer(variant, args, artifact, port + 200 + 30 * i, bodies))
            args.peer_options = {**args.peer_options, variant: tuning[-1]["chosen"]}
            start_rates[variant] = tuning[-1]["chosen_rate"] or args.start_rate  # climb from what tuning found
        print(f" measuring {variant} ...", flush=True)
        try:
            sub = argparse.Namespace(**{**vars(args), "start_rate": start_rates.get(variant, args.start_rate)})
            rows.append(measure_variant(variant, sub, artifact, port + 3 * i, bodies))
            if variant == "turborec" and args.storm_rate is None and rows[-1]["sustainable_rate"]:
                args.storm_rate = rows[-1]["sustainable_rate"]  # the peers also get turborec's storm
        except RuntimeError as exc:  # a peer that does not come up here: say so, measure the others
            print(f"  {variant} failed: {exc}", flush=True)
            skipped.append(f"{variant} failed: {str(exc)[:600]}")
    progress({"workload": name, "slo_ms": args.slo_ms, "variants": rows, "skipped": skipped, "peer_tuning": tuning,
              "partial": True})
    by = {r["variant"]: r for r in rows}
    out: dict[str, Any] = {"workload": name, "artifact": str(artifact), "slo_ms": args.slo_ms, "variants": rows,
                           "skipped": skipped, "peer_options": args.peer_options}
    if tuning:
        out["peer_tuning"] = tuning
    if getattr(args, "turborec_artifact", None) is not None:
        out["turborec_artifact"] = str(args.turborec_artifact)
        out["index"] = args.index_spec
        out["index_recall"] = index_recall(artifact, args.turborec_artifact, bodies)
        print(f"  {args.index_spec}: recall@10 vs exact {out['index_recall']['recall_at_10']:.3f}", flush=True)
    ours = by.get("turborec", {}).get("sustainable_rate", 0.0)
    naive = by.get("naive", {}).get("sustainable_rate", 0.0)
    if naive:
        out["speedup_vs_naive"] = ours / naive
    # every other server counts as a peer, the naive endpoint too: on one core it can beat the real servers, and
    # "2x the best peer" should not be read against a peer that never held the SLO
    peers = [r for r in rows if r["variant"] != "turborec" and not r["variant"].startswith("turborec-")]
    if peers:
        best = max(peers, key=lambda r: r["sustainable_rate"])
        out["best_peer"] = best["variant"]
        out["speedup_vs_best_peer"] = ours / best["sustainable_rate"] if best["sustainable_rate"] else None
    templates = request_templates("turborec", bodies, artifact)
    if ours and not args.skip_overload:
        print(" overload run ...", flush=True)
        out["overload"] = overload(args, artifact, port + 40, templates, ours, plot, f"Overload, {name}")
        if "turborec" in by:
            by["turborec"]["storm"] = {k: out["overload"][k] for k in (
                "calm_rate", "storm_rate", "admitted_p99_ms", "shed_fraction", "error_fraction", "back_to_normal_s",
                "back_to_full_s")}
        if not args.skip_reload:
            print(" hot reload under load ...", flush=True)
            out["reload"] = reload_under_load(args, artifact, port + 41, templates, 0.5 * ours)
    return out


def generator_check(args: argparse.Namespace, rate: float) -> dict[str, Any]:
    """The generator against a server that answers at once, at ``rate`` on the load cores: it must not be the
    limit of any figure below that rate (send lag p99 <= 1 ms, everything answered)."""
    from turborec.bench.loadgen import LoadSpec, RequestTemplate
    from turborec.bench.loadtest import calibrate, generator_limited

    spec = LoadSpec(url="http://127.0.0.1:9", rate=rate, duration_s=2.0, connections=512, preopen=32,
                    requests=(RequestTemplate("POST", "/v1/recommend", b'{"user":"1","k":10}'),))
    check = calibrate(spec, [[c] for c in args.load_cores], seconds=2.0)
    out = {**check.to_dict(), "limited": generator_limited(check)}
    print(f"generator self-check at {rate:,.0f} req/s: send lag p99 {check.send_lag_p99_ms:.2f} ms, "
          f"{check.ok}/{check.sent} answered{' (LIMITED)' if out['limited'] else ''}", flush=True)
    return out


def scaling(args: argparse.Namespace, artifact: Path, port: int, rows: list[dict[str, Any]], save: Any) -> None:
    """``turborec serve --workers N`` on N server cores, N from ``--scaling``: the sustainable rate of each
    (appended to ``rows``, then ``save()``)."""
    bodies = request_mix(artifact)
    for i, n in enumerate(int(x) for x in args.scaling.split(",")):
        if n > len(args.scaling_cores):
            print(f" skipping --workers {n}: only {len(args.scaling_cores)} scaling cores", flush=True)
            continue
        sub = argparse.Namespace(**{**vars(args), "server_cores": args.scaling_cores[:n], "serve_workers": n,
                                    "start_rate": args.start_rate * n, "skip_overload": True})
        print(f" turborec --workers {n} on cores {sub.server_cores} ...", flush=True)
        row = measure_variant("turborec", sub, artifact, port + 3 * i, bodies)
        rows.append({"workers": n, "cores": sub.server_cores, **row})
        save()


def machine() -> dict[str, Any]:
    import platform

    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def _ms(x: Any) -> str:
    return "-" if x is None or x != x else ("inf" if x == float("inf") else f"{x:.1f}")


def rate_cell(row: dict[str, Any]) -> str:
    """The sustainable rate; where the confirming repeats failed everywhere the budget allowed, what the search
    found is shown beside the 0, marked unconfirmed."""
    if not row["sustainable_rate"] and row.get("search_rate"):
        return f"0 (found {row['search_rate']:,.0f}, unconfirmed)"
    return f"{row['sustainable_rate']:,.0f}"


def peer_table(w: dict[str, Any]) -> str:
    """One row per server: rate, latency at 50%/100% of it, memory, cold start, the 3x storm."""
    head = ("| server | sustainable req/s (p99 <= {slo:g} ms) | p50 / p99 / p99.9 at 50% (ms) | at 100% (ms) | "
            "RSS (MB) | cold start (s) | 3x storm: admitted p99 (ms) | 503 / errors | back to normal (s) |")
    lines = [head.format(slo=w["slo_ms"]), "|---|---|---|---|---|---|---|---|---|"]
    for r in w["variants"]:
        def trio(p: dict[str, float] | None) -> str:
            return "-" if not p else f"{_ms(p['p50_ms'])} / {_ms(p['p99_ms'])} / {_ms(p['p999_ms'])}"

        st = r.get("storm") or {}
        storm = (f"{_ms(st.get('admitted_p99_ms'))} | {100 * st.get('shed_fraction', 0):.1f}% / "
                 f"{100 * st.get('error_fraction', 0):.1f}% | {_ms(st.get('back_to_normal_s'))}"
                 + (f" (full tier {_ms(st['back_to_full_s'])})" if "back_to_full_s" in st else "")) if st else "- | - | -"
        lines.append(f"| {r['variant']} | {rate_cell(r)} | {trio(r.get('at_50'))} | "
                     f"{trio(r.get('at_100'))} | {r.get('rss_mb', float('nan')):,.0f} | "
                     f"{r.get('cold_start_s', float('nan')):.1f} | {storm} |")
    same = [r for r in w["variants"] if "turborec_storm" in r]
    if same:
        turborec = next((r.get("storm") for r in w["variants"] if r["variant"] == "turborec"), None) or {}
        calm, peak = same[0]["turborec_storm"]["calm_rate"], same[0]["turborec_storm"]["storm_rate"]
        lines += ["", f"The same traffic for every server: turborec's storm ({calm:,.0f} -> {peak:,.0f} -> "
                      f"{calm:,.0f} req/s):", "",
                  "| server | admitted p99 (ms) | 503 / errors | back to normal (s) |", "|---|---|---|---|"]
        for name, st in [("turborec", turborec), *((r["variant"], r["turborec_storm"]) for r in same)]:
            if st:
                lines.append(f"| {name} | {_ms(st.get('admitted_p99_ms'))} | {100 * st.get('shed_fraction', 0):.1f}% / "
                             f"{100 * st.get('error_fraction', 0):.1f}% | {_ms(st.get('back_to_normal_s'))} |")
    return "\n".join(lines)


def report(out: dict[str, Any]) -> str:
    cores_txt = f"server on core(s) {out['server_cores']}, load on {out['load_cores']}"
    lines = [f"# Serving benchmark ({out['machine']['cpu']}; {cores_txt})", ""]
    if "cpu_latency_0" in out:
        lines += [f"CPU idle states (/dev/cpu_dma_latency = 0): {out['cpu_latency_0']}", ""]
    if "generator_check" in out:
        g = out["generator_check"]
        lines += [f"Load generator against a null server at {g['offered_rate']:,.0f} req/s: send lag p99 "
                  f"{g['send_lag_p99_ms']:.2f} ms, {g['ok']} of {g['sent']} answered "
                  f"({'LIMITED' if g['limited'] else 'not limiting'})", ""]
    for w in out["workloads"]:
        lines += [f"## {w['workload']}", "", f"Sustainable rate: the highest with p99 <= {w['slo_ms']:g} ms and "
                  f"< 0.1% refused or failed in a majority of {out.get('repeats', 2)} fresh repeats, found by a "
                  "probe ladder that one noisy miss does not end (`turborec.bench.report.find_sustainable_rate`).",
                  "", peer_table(w), ""]
        if w.get("partial"):
            lines += ["(cut short: the servers measured before the run stopped)", ""]
        if w.get("peer_tuning"):
            lines += ["Peer tuning (short searches, one confirming repeat; the chosen setting is the table's):", "",
                      "| server | setting | rate found (req/s) | confirmed (req/s) | probes | cold start (s) |",
                      "|---|---|---|---|---|---|"]
            for t in w["peer_tuning"]:
                for tried in t["tried"]:
                    mark = " **(chosen)**" if tried["options"] == t["chosen"] else ""
                    setting = f"`{json.dumps(tried['options'])}`{mark}"
                    if "failed" in tried:
                        lines.append(f"| {t['variant']} | {setting} | failed to start | - | - | - |")
                        continue
                    lines.append(f"| {t['variant']} | {setting} | {tried['search_rate']:,.0f} | "
                                 f"{tried['sustainable_rate']:,.0f} | {len(tried['probes'])} | "
                                 f"{tried['cold_start_s']:.1f} |")
            lines.append("")
        for why in w.get("skipped", []):
            lines.append(f"- {why}")
        if "index_recall" in w:
            r = w["index_recall"]
            lines.append(f"turborec serves through `{w['index']}`: recall@10 against exact scoring "
                         f"{r['recall_at_10']:.3f} on {r['requests']} requests of the mix "
                         f"({r['distinct_items_exact']} distinct items in the exact answers)")
        if "speedup_vs_naive" in w:
            lines.append(f"turborec / naive: **{w['speedup_vs_naive']:.1f}x**")
        if w.get("speedup_vs_best_peer"):
            lines.append(f"turborec / best peer ({w['best_peer']}): **{w['speedup_vs_best_peer']:.1f}x**")
        elif "best_peer" in w:
            lines.append("turborec / best peer: no peer held the SLO at any rate")
        if "overload" in w:
            o = w["overload"]
            lines.append(f"turborec at 3x ({o['storm_rate']:.0f} req/s): tiers during the storm "
                         f"{o['tiers_during_storm']} ({o['plot']})")
        if "reload" in w:
            r = w["reload"]
            lines.append(f"Hot reload at {r['rate']:.0f} req/s: HTTP {r['reload_status']} in "
                         f"{r['reload_s'] or float('nan'):.1f} s, {r['failed']} failed of {r['sent']} ({r['shed']} shed)")
        lines.append("")
    if "scaling" in out:
        lines += ["## turborec serve --workers N", "",
                  "| workers | sustainable req/s | per worker | median p99 at it (ms) | probes (offered req/s: p99 ms, "
                  "x = missed) |", "|---|---|---|---|---|"]
        for row in out["scaling"]:
            trail = ", ".join(f"{p['rate']:,.0f}: {_ms(p['p99_ms'])}{'' if p['passed'] else 'x'}" for p in row["probes"])
            capped = " (capped)" if row.get("capped") else ""
            lines.append(f"| {row['workers']} | {rate_cell(row)}{capped} | "
                         f"{row['sustainable_rate'] / row['workers']:,.0f} | {_ms(row.get('median_p99_ms'))} | "
                         f"{trail} |")
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
    p.add_argument("--variants", default="turborec,turborec-asgi,naive,litserve,ray,triton",
                   help="servers to compare: turborec (lean front end), turborec-asgi (the same "
                        "service behind uvicorn), naive, and the peers litserve, ray, triton (skipped if missing)")
    p.add_argument("--peer-options", default="{}",
                   help='JSON per variant, e.g. {"litserve": {"max_batch": 32, "max_wait_ms": 2, "fast_queue": true}}')
    p.add_argument("--scaling", default="", help="turborec --workers counts to measure (e.g. 1,2,4,8): each on as "
                   "many server cores, from --server-cores")
    p.add_argument("--scaling-cores", default="", help="cores for --scaling (default: --server-cores)")
    p.add_argument("--check-rate", type=float, default=None, help="null-server self-check rate (default 20,000)")
    p.add_argument("--storm-s", default="", help="storm phases: start of 3x, end of 3x, end (default 3,9,15)")
    p.add_argument("--skip-reload", action="store_true")
    p.add_argument("--skip-check", action="store_true", help="skip the generator's null-server self-check")
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
    p.add_argument("--growth", type=float, default=2.0, help="ratio between the search ladder's rungs")
    p.add_argument("--max-probes", type=int, default=None,
                   help="probes per rate search, confirming repeats included (default 16, quick 8)")
    p.add_argument("--repeats", type=int, default=None,
                   help="confirming probes at the answer, a majority must meet the SLO (default 3, quick 1)")
    p.add_argument("--peer-tuning", action="store_true",
                   help="before each peer's measurement, try its settings (serving_peers.TUNINGS) with short "
                        "searches and keep the best (a peer named in --peer-options keeps those)")
    p.add_argument("--tuning-probes", type=int, default=5, help="probes per setting in --peer-tuning")
    p.add_argument("--tuning-probe-s", type=float, default=None, help="seconds per tuning probe (default --probe-s)")
    p.add_argument("--tuning-max", type=int, default=None, help="try only the first N settings of each peer")
    p.add_argument("--skip-overload", action="store_true")
    p.add_argument("--storm-rate", type=float, default=None,
                   help="every peer also gets the 0.5x -> 3x -> 0.5x storm of this rate (default: turborec's "
                        "sustainable rate of the run, when turborec is measured first)")
    p.add_argument("--cpu-latency-0", action="store_true",
                   help="hold /dev/cpu_dma_latency at 0 for the run (root): no deep idle states, so idle cores' "
                        "wake-ups do not set the p99 at low rates; recorded in the JSON")
    p.add_argument("--out", default=None, help="results stem (default benchmarks/results/serving)")
    # server role
    p.add_argument("--variant", default="turborec")
    p.add_argument("--artifact", default=None)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cores", default="0")
    p.add_argument("--workers", type=int, default=1)
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
    args.max_probes = pick(args.max_probes, 16, 8)
    args.repeats = pick(args.repeats, 3, 1)
    args.tuning_probe_s = args.tuning_probe_s or args.probe_s
    args.overload_phases = (tuple(float(x) for x in args.storm_s.split(",")) if args.storm_s
                            else (1.5, 4.0, 9.0) if q else (3.0, 9.0, 15.0))
    args.reload_s = 5.0 if q else 8.0
    n_items = pick(args.catalog_items, 1_000_000, 100_000)
    args.server_cores, args.load_cores = cores(args.server_cores), cores(args.load_cores)
    args.variants = args.variants.split(",")
    args.peer_options = json.loads(args.peer_options)
    args.scaling_cores = cores(args.scaling_cores) if args.scaling_cores else args.server_cores
    if set(args.server_cores) & set(args.load_cores):
        raise SystemExit("--server-cores and --load-cores must not overlap")
    if args.scaling and set(args.scaling_cores) & set(args.load_cores):  # a smoke run on a small box may
        print(f"warning: --scaling-cores {args.scaling_cores} overlap --load-cores {args.load_cores}: the scaling "
              "rows measure the generator's competition too", file=sys.stderr, flush=True)
    stem = Path(args.out) if args.out else (CACHE / "serving_quick" if q else REPO / "benchmarks" / "results" / "serving")
    plots = CACHE / "plots" if q else REPO / "docs" / "img"
    import torch

    torch.set_num_threads(max(1, min(8, len(os.sched_getaffinity(0)) - 1)))  # building artifacts only
    tag = "quick" if q else "full"
    workloads: list[tuple[str, Path, Path, dict[str, Any]]] = []
    for name in filter(None, args.workloads.split(",")):
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
    if not workloads and not args.scaling:
        raise SystemExit("nothing to measure")
    torch.set_num_threads(1)
    pin(args.load_cores)  # keep this orchestrator off the server's cores
    base_port = 18000 + os.getpid() % 1000
    t0 = time.perf_counter()
    out: dict[str, Any] = {"machine": machine(), "quick": q, "slo_ms": args.slo_ms, "server_cores": args.server_cores,
                           "load_cores": args.load_cores, "repeats": args.repeats, "workloads": [],
                           "variants": args.variants, "peer_options": args.peer_options}
    if args.cpu_latency_0:
        held = hold_cpu_awake()
        out["cpu_latency_0"] = held if isinstance(held, str) else "held"
        print(f"/dev/cpu_dma_latency = 0: {out['cpu_latency_0']}", flush=True)
    if not args.skip_check:
        out["generator_check"] = generator_check(args, pick(args.check_rate, 20000.0, 5000.0))
    stem.parent.mkdir(parents=True, exist_ok=True)

    def save() -> str:  # after each part: a run cut short keeps what it measured, tables included
        out["wall_s"] = time.perf_counter() - t0
        stem.with_suffix(".json").write_text(json.dumps(out, indent=1, default=float))
        text = report(out)
        stem.with_suffix(".md").write_text(text + "\n")
        return text

    def rel(path: Path) -> str:
        return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)

    for i, (name, art, plot, overrides) in enumerate(workloads):
        if args.variants != [""]:
            def progress(partial: dict[str, Any]) -> None:
                out["workloads"] = [w for w in out["workloads"] if not w.get("partial")] + [partial]
                save()

            measured = run_workload(name, art, args, base_port + 100 * i, plot, progress, **overrides)
            out["workloads"] = [w for w in out["workloads"] if not w.get("partial")] + [measured]
            save()
    if out["workloads"]:
        rate_plot = plots / f"{stem.name}_rate_p99.png"
        plot_rate_p99(out["workloads"], args.slo_ms, rate_plot)
        out["rate_plot"] = rel(rate_plot)
    if args.scaling:
        out["scaling"] = []
        # on the pipeline (--pipeline) even where this run measures other workloads
        scaling(args, Path(args.pipeline) if args.pipeline else workloads[0][1], base_port + 500, out["scaling"], save)
        scaling_plot = plots / f"{stem.name}_scaling_rate_p99.png"
        plot_rate_p99([{"workload": "turborec serve --workers N", "slo_ms": args.slo_ms,
                        "variants": [{**row, "variant": f"{row['workers']} workers"} for row in out["scaling"]]}],
                      args.slo_ms, scaling_plot)
        out["scaling_plot"] = rel(scaling_plot)
    text = save()
    print("\n" + text)
    print(f"wrote {stem.with_suffix('.json')} ({out['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
