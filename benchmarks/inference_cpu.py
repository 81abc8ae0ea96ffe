"""CPU inference benchmark at one thread: Runner backends (user tower, DLRM ranker) and retrieval indexes.

    python benchmarks/inference_cpu.py           # full: batches 1/8/64/512, catalogs 10k/100k/1M/5M
    python benchmarks/inference_cpu.py --quick   # smoke (< 2 min): batches 1/8/64, no torch.compile, 10k/100k

Writes benchmarks/results/inference_cpu.json and prints markdown tables.

Runners: each backend of ``turborec.backends`` against eager PyTorch (the baseline a user would
otherwise pick) on ``TwoTowerNet``'s user tower (history of 50 items) and on a Criteo-shaped
``DLRM`` scoring 200 candidates per request; batch = requests. Each cell is timed over rotating
input sets until a time budget is spent (at least 5 calls); p50 / p99 per call, throughput =
requests / median call time (the mean, in the JSON, carries the shared machine's stalls).
``err/tol`` is the max deviation from eager over the backend's documented tolerance.

Indexes: clustered low-rank 64-d catalogs (``ClusteredSpace``), queries from the same distribution,
searched as one batch at one thread; recall@100 against exact search, queries/s as the median of
repeated runs, with our numpy ``Exact``, FAISS ``Flat`` and naive torch matmul + topk in the same run.
Build uses every core; memory is the serialized index size (~ its resident size).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one-thread search / BLAS
    os.environ.setdefault(_var, "1")
os.environ.setdefault(
    "TORCHINDUCTOR_CACHE_DIR", str(os.path.join(os.path.dirname(__file__), "..", ".cache", "inductor"))
)

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from turborec.backends import Runner, make_runner  # noqa: E402
from turborec.retrieval import make_index, recall_of_ids  # noqa: E402
from turborec.retrieval.synthetic import ClusteredSpace  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "inference_cpu.json"
K = 100
CANDIDATES = 200
HISTORY = 50
TOWER_USERS = TOWER_ITEMS = 100_000
BUILD_THREADS = os.cpu_count() or 1


# ---------------------------------------------------------------- models
def user_tower() -> tuple[str, nn.Module]:
    """TwoTowerNet's user tower (64-d, MLP 256) over 100k users and 100k items (51 MB of tables,
    exported inline)."""
    from turborec.models.two_tower import TwoTowerConfig, TwoTowerNet

    net = TwoTowerNet(
        TwoTowerConfig(dim=64, hidden=(256,), history_len=HISTORY), {"n_users": TOWER_USERS, "n_items": TOWER_ITEMS}
    )
    return "TwoTowerNet.user_tower", net.user_tower


def ranker() -> tuple[str, nn.Module]:
    """DLRM shaped like the Criteo reference: 13 dense, 26 sparse tables (sizes 10..200k), 16-d
    embeddings, bottom MLP 512-256-64, top MLP 512-256."""
    from turborec.models.rankers import DLRM, DLRMConfig

    cards = np.unique(np.geomspace(10, 200_000, 26).astype(int)).tolist()
    cards = (cards + [1000] * 26)[:26]
    config = DLRMConfig(embedding_dim=16, bottom_mlp=(512, 256, 64), top_mlp=(512, 256))
    return "DLRM(criteo-shape)", DLRM(config, cardinalities=cards, n_dense=13)


def tower_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    history = np.minimum(rng.zipf(1.3, (batch, HISTORY)) - 1, TOWER_ITEMS - 1).astype(np.int64)
    lengths = rng.integers(1, HISTORY + 1, batch)
    history[np.arange(HISTORY)[None, :] >= lengths[:, None]] = -1
    return {"users": rng.integers(0, TOWER_USERS, batch), "history": history}


def ranker_inputs(batch: int, rng: np.random.Generator, cards: list[int]) -> dict[str, np.ndarray]:
    rows = batch * CANDIDATES
    sparse = np.stack([rng.integers(0, c, rows) for c in cards], axis=1)
    return {"dense": rng.lognormal(0, 1, (rows, 13)).astype(np.float32), "sparse": sparse}


# ---------------------------------------------------------------- runner benchmark
def time_calls(call: Callable[[], object], budget_s: float, min_calls: int = 5, max_calls: int = 2000) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or (time.perf_counter() - start < budget_s and len(times) < max_calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def bench_runners(
    kinds: list[str], batches: list[int], budget_s: float, rows: list[dict[str, Any]], checkpoint: Callable[[], None]
) -> None:
    """Append one row per (model, backend, batch) to ``rows``; ``checkpoint()`` after each model."""
    torch.manual_seed(0)
    for model_name, module in (user_tower(), ranker()):
        is_ranker = hasattr(module, "cardinalities")
        cards = list(getattr(module, "cardinalities", []))

        def make(batch: int, seed: int, is_ranker: bool = is_ranker, cards: list[int] = cards) -> dict[str, np.ndarray]:
            rng = np.random.default_rng(seed)
            return ranker_inputs(batch, rng, cards) if is_ranker else tower_inputs(batch, rng)

        example = make(2, 0)
        eager = make_runner("torch-eager", module, example, threads=1)
        for kind in kinds:
            t0 = time.perf_counter()
            runner: Runner = make_runner(kind, module, example, threads=1)
            runner.warmup(batch_sizes=(1, 8))
            setup_s = time.perf_counter() - t0
            for batch in batches:
                input_sets = [make(batch, seed) for seed in range(1, 4)]
                error = (
                    max(runner.tolerance.error(runner(x), eager(x)) for x in input_sets[:1])
                    if kind != "torch-eager"
                    else 0.0
                )
                turn = iter(range(10**9))
                times = time_calls(lambda r=runner, s=input_sets, t=turn: r(s[next(t) % len(s)]), budget_s)
                row = {
                    "model": model_name, "backend": kind, "batch": batch, "rows_per_call": batch * (CANDIDATES if is_ranker else 1),
                    "p50_ms": 1e3 * float(np.percentile(times, 50)), "p99_ms": 1e3 * float(np.percentile(times, 99)),
                    "throughput_req_s": batch / float(np.median(times)), "throughput_mean_req_s": batch * len(times) / sum(times),
                    "calls": len(times),
                    "err_over_tol": error, "setup_s": setup_s,
                }  # fmt: skip
                rows.append(row)
                print(
                    f"  {model_name:24s} {kind:14s} B={batch:<4d} p50 {row['p50_ms']:9.3f} ms  {row['throughput_req_s']:10.1f} req/s",
                    flush=True,
                )
            del runner
            gc.collect()
        checkpoint()


# ---------------------------------------------------------------- index benchmark
def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed_search(search: Callable[[], np.ndarray], nq: int, repeats: int, budget_s: float) -> tuple[float, np.ndarray]:
    """Queries/s (median over up to ``repeats`` runs while within ``budget_s``) and the result ids."""
    runs: list[float] = []
    start = time.perf_counter()
    while len(runs) < repeats and (not runs or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        found = search()
        runs.append(time.perf_counter() - t0)
    return nq / statistics.median(runs), found


def torch_topk(catalog: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """The naive baseline: matmul + topk, in query blocks whose score matrix stays under 256 MiB."""
    block = max(1, (1 << 26) // catalog.shape[0])
    with torch.inference_mode():
        return torch.cat(
            [torch.topk(queries[i : i + block] @ catalog.T, k, dim=1).indices for i in range(0, len(queries), block)]
        )


Sweep = list[dict[str, int]]
VARIANTS = {
    # TwoTowerNet's default (normalize=True): unit vectors, inner product = cosine
    "two-tower": {"normalize": True},
    # MF-style factors: norms grow with popularity, the hard case for maximum-inner-product search
    "mf-popularity": {"normalize": False},
}


def index_plan(variant: str, n: int, quick: bool) -> list[tuple[str, str, Sweep]]:
    """(label, structure, runtime settings to sweep) for one catalog. HNSW builds at ~10k vectors/s per
    core, so graphs stop at 1M; the second variant gets the main families only (run time)."""
    nlist = {10_000: 128, 100_000: 512}.get(n, 2048)
    nprobes = (8, 16, 32) if quick else (4, 8, 12, 16, 24, 32, 64, 128)
    ivf: Sweep = [{"nprobe": p} for p in nprobes if p <= nlist // 2]
    hnsw: Sweep = [{"efSearch": e} for e in ((100, 128, 256) if quick else (100, 128, 192, 256, 384))]
    main = variant == "two-tower" and not quick
    plan: list[tuple[str, str, Sweep]] = []
    if n <= (1_000_000 if variant == "two-tower" else 100_000):
        plan.append(("hnsw", "HNSW32", hnsw))
    if main and n <= 100_000:
        plan.append(("hnsw-sq8", "HNSW32,SQ8", hnsw[:3]))
    plan.append(("ivf-flat", f"IVF{nlist},Flat", ivf))
    if main and n <= 1_000_000:
        plan.append(("ivf-sq8", f"IVF{nlist},SQ8", ivf))
        fast_scan: Sweep = [{"nprobe": p, "k_factor": f} for p in (8, 16, 32) for f in (4, 8)]
        plan.append(("ivf-pq-fs", f"IVF{nlist},PQ32x4fs,RFlat", fast_scan))
    if main and n <= 100_000:
        plan.append(("ivf-pq", f"IVF{nlist},PQ16", ivf[::2]))
    return plan


def index_row(
    variant: str, n: int, label: str, spec: str, qps: float, recall: float, build_s: float, mem_mb: float
) -> dict[str, Any]:
    print(
        f"  {label:10s} {spec:40s} recall {recall:.4f}  {qps:10.1f} q/s  build {build_s:6.1f} s  {mem_mb:8.1f} MB",
        flush=True,
    )
    return {"catalog": variant, "n": n, "index": label, "spec": spec, "recall_at_100": recall, "qps": qps, "build_s": build_s, "memory_mb": mem_mb}  # fmt: skip


def bench_index(
    variant: str, label: str, structure: str, sweep: Sweep, catalog: np.ndarray, queries: np.ndarray, truth: np.ndarray,
    repeats: int, budget_s: float,
) -> list[dict[str, Any]]:  # fmt: skip
    """Build one FAISS index with every core, then search it at one thread for each runtime setting."""
    gc.collect()
    rss0 = rss_mb()
    faiss.omp_set_num_threads(BUILD_THREADS)
    t0 = time.perf_counter()
    index = make_index(structure, catalog.shape[1])
    index.add(catalog)
    build = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    mem = faiss.serialize_index(index.native).nbytes / 2**20  # type: ignore[attr-defined]
    rows = []
    for params in sweep:
        index.set_params(**params)
        qps, found = timed_search(lambda: index.search(queries, K)[0], len(queries), repeats, budget_s)
        rows.append(
            index_row(variant, len(catalog), label, str(index.spec), qps, recall_of_ids(found, truth), build, mem)
        )
    rows[-1]["rss_delta_mb"] = rss_mb() - rss0
    return rows


def bench_exact(
    variant: str, catalog: np.ndarray, queries: np.ndarray, repeats: int, budget_s: float
) -> tuple[dict[str, Any], np.ndarray]:
    """Our numpy exact index: its row, and the true top-k every other method is scored against."""
    exact = make_index("Exact", catalog.shape[1])
    t0 = time.perf_counter()
    exact.add(catalog)
    build = time.perf_counter() - t0
    qps, truth = timed_search(lambda: exact.search(queries, K)[0], len(queries), repeats, budget_s)
    return index_row(variant, len(catalog), "exact", "Exact", qps, 1.0, build, catalog.nbytes / 2**20), truth


def bench_catalog(variant: str, n: int, quick: bool, repeats: int, budget_s: float) -> list[dict[str, Any]]:
    space = ClusteredSpace(dim=64, n_clusters=1024, rank=24, seed=0)
    nq = 200 if n > 1_000_000 else 500
    catalog = space.sample(n, seed=1, **VARIANTS[variant])
    queries = space.sample(nq, seed=2, vary_norms=False, **VARIANTS[variant])
    print(f"catalog {variant} {n:,}: {nq} queries", flush=True)
    faiss.omp_set_num_threads(1)
    exact_row, truth = bench_exact(variant, catalog, queries, repeats, budget_s)
    rows = [exact_row]
    t_catalog, t_queries = torch.from_numpy(catalog), torch.from_numpy(queries)
    qps, found = timed_search(lambda: torch_topk(t_catalog, t_queries, K).numpy(), nq, repeats, budget_s)
    rows.append(index_row(variant, n, "torch", "matmul+topk", qps, recall_of_ids(found, truth), 0.0, 0.0))
    for label, structure, sweep in [("faiss-flat", "Flat", [{}]), *index_plan(variant, n, quick)]:
        rows += bench_index(variant, label, structure, sweep, catalog, queries, truth, repeats, budget_s)
    return rows


def bench_indexes(
    sizes: list[int],
    quick: bool,
    repeats: int,
    budget_s: float,
    rows: list[dict[str, Any]],
    checkpoint: Callable[[], None],
) -> None:
    """Append the rows of every catalog to ``rows``; ``checkpoint()`` after each catalog."""
    second = [100_000] if quick else [n for n in sizes if n in (100_000, 1_000_000)]
    for variant, variant_sizes in (("two-tower", sizes), ("mf-popularity", second)):
        for n in variant_sizes:
            rows += bench_catalog(variant, n, quick, repeats, budget_s)
            gc.collect()
            checkpoint()


# ---------------------------------------------------------------- report
EXACT = ("exact", "faiss-flat", "torch")


def index_acceptance(rows: list[dict[str, Any]], variant: str, n: int) -> dict[str, Any] | None:
    """Fastest setting with recall@100 >= 0.95 against the fastest exact method of the same run."""
    cells = [r for r in rows if r["catalog"] == variant and r["n"] == n]
    if not cells:
        return None
    exact_qps = {r["index"]: r["qps"] for r in cells if r["index"] in EXACT}
    good = [r for r in cells if r["recall_at_100"] >= 0.95 and r["index"] not in EXACT]
    best = max(good, key=lambda r: r["qps"]) if good else None
    fastest_exact = max(exact_qps.values())
    return {
        "exact_qps": exact_qps, "best": best and {"spec": best["spec"], "recall": best["recall_at_100"], "qps": best["qps"]},
        "speedup_vs_fastest_exact": best["qps"] / fastest_exact if best else None,
        "passed": bool(best and best["qps"] >= 20 * fastest_exact),
    }  # fmt: skip


def acceptance(runner_rows: list[dict[str, Any]], index_rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        if (verdict := index_acceptance(index_rows, variant, 1_000_000)) is not None:
            out[f"index_1m_{variant}"] = verdict
    ranker_rows = [r for r in runner_rows if r["model"].startswith("DLRM") and r["batch"] <= 64]
    per_batch = {}
    for batch in sorted({r["batch"] for r in ranker_rows}):
        cells = [r for r in ranker_rows if r["batch"] == batch]
        eager = next(r["throughput_req_s"] for r in cells if r["backend"] == "torch-eager")
        fastest = max(cells, key=lambda r: r["throughput_req_s"])
        per_batch[batch] = {"fastest": fastest["backend"], "speedup_vs_eager": fastest["throughput_req_s"] / eager}
    if per_batch:
        passed = all(v["speedup_vs_eager"] >= 2 for v in per_batch.values())
        out["ranker_1_to_64"] = {"per_batch": per_batch, "passed": passed}
    return out


def markdown(runner_rows: list[dict[str, Any]], index_rows: list[dict[str, Any]], accept: dict[str, Any]) -> str:
    lines = ["## Runners (1 thread; batch = requests; ranker: 200 candidates per request)", "",
             "| model | backend | batch | p50 ms | p99 ms | req/s | x eager | err/tol |", "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    eager = {(r["model"], r["batch"]): r["throughput_req_s"] for r in runner_rows if r["backend"] == "torch-eager"}
    for r in runner_rows:
        lines.append(f"| {r['model']} | {r['backend']} | {r['batch']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['throughput_req_s']:.1f} | {r['throughput_req_s'] / eager[(r['model'], r['batch'])]:.2f} | {r['err_over_tol']:.3f} |")  # fmt: skip
    lines += ["", "## Indexes (64-d clustered catalogs, k=100, 1 search thread; x exact = vs the fastest exact method)", "",
              "| catalog | n | index | spec | recall@100 | queries/s | x exact | build s | MB |",
              "|---|---:|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for variant, n in dict.fromkeys((r["catalog"], r["n"]) for r in index_rows):
        cells = [r for r in index_rows if r["catalog"] == variant and r["n"] == n]
        exact_qps = max(r["qps"] for r in cells if r["index"] in EXACT)
        for r in cells:
            lines.append(f"| {variant} | {n:,} | {r['index']} | `{r['spec']}` | {r['recall_at_100']:.4f} | {r['qps']:.1f} | "
                         f"{r['qps'] / exact_qps:.2f} | {r['build_s']:.1f} | {r['memory_mb']:.0f} |")  # fmt: skip
    lines += ["", "## Acceptance", "", "```", json.dumps(accept, indent=1), "```"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 2 min)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sizes", type=int, nargs="*", help="catalog sizes (default 10k 100k 1M 5M; quick 10k 100k)")
    parser.add_argument("--skip-runners", action="store_true")
    parser.add_argument("--skip-indexes", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    kinds = ["torch-eager", "onnx-fp32", "onnx-int8"] + ([] if args.quick else ["torch-compile"])
    batches = [1, 8, 64] if args.quick else [1, 8, 64, 512]
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000, 5_000_000])
    started = time.perf_counter()
    runner_rows: list[dict[str, Any]] = []
    index_rows: list[dict[str, Any]] = []

    def write(complete: bool) -> dict[str, Any]:
        """Write everything measured so far (atomically): a long run killed midway still leaves its sections."""
        result = {
            "complete": complete,
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "torch": torch.__version__, "faiss": faiss.__version__, "numpy": np.__version__},
            "config": {"quick": args.quick, "threads": 1, "k": K, "candidates": CANDIDATES, "kinds": kinds,
                       "batches": batches, "sizes": sizes, "build_threads": BUILD_THREADS},
            "runners": runner_rows, "indexes": index_rows, "acceptance": acceptance(runner_rows, index_rows),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "wall_s": time.perf_counter() - started,
        }  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(args.out)
        return result

    def checkpoint() -> None:
        write(complete=False)

    if not args.skip_runners:
        bench_runners(kinds, batches, 0.3 if args.quick else 1.0, runner_rows, checkpoint)
    if not args.skip_indexes:
        budget = 1.0 if args.quick else 3.0
        bench_indexes(sizes, args.quick, 3, budget, index_rows, checkpoint)
    result = write(complete=True)
    print(markdown(runner_rows, index_rows, result["acceptance"]))
    print(f"\nwall {result['wall_s']:.0f} s, peak RSS {result['peak_rss_mb']:.0f} MB -> {args.out}")


if __name__ == "__main__":
    main()
