"""GPU backend benchmark: baselines and the new paths in one run (meant for an H200).

    python benchmarks/gpu.py                       # full sizes, writes benchmarks/results/gpu.json + gpu.md
    python benchmarks/gpu.py --smoke --no-compile  # tiny sizes, any device (checks the plumbing)

Sections: the copy roofline; pooled embedding lookup (nn.EmbeddingBag / PyTorch dequant vs the
Triton kernel, fp32 / fp16 / int8 / int4, pooling 1 / 8 / 32); exact top-100 over 10M bf16 items
(matmul + torch.topk vs blocked torch vs the two-pass Triton kernels); the DLRM ranker (eager bf16,
torch.compile, CUDA graphs vs FusedDLRM eager / graphed). Each timing is the median of ``--reps``
runs after warm-up, timed with CUDA events, rotating between input sets. Every fast path is checked
against a float64 reference on fresh random inputs, with its output poisoned with NaN beforehand
where the output buffer is ours. A section that fails records its error and the run goes on.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from turborec.backends import make_runner
from turborec.backends.gpu import (
    FloatRows,
    FusedDLRM,
    GraphedRanker,
    Int4Rows,
    Int8Rows,
    KernelConfig,
    PooledTable,
    TopKConfig,
    TopKStats,
    exact_topk,
    topk_blocked,
)
from turborec.backends.gpu.embedding import default_kernel_config
from turborec.models.rankers.dlrm import DLRM, DLRMConfig

RESULTS = Path(__file__).resolve().parent / "results"
FULL = {"emb_rows": 20_000_000, "emb_dim": 128, "emb_batch": 65_536, "poolings": (1, 8, 32), "topk_items": 10_000_000,
        "topk_dim": 64, "topk_queries": 4096, "k": 100, "rank_rows": 1_000_000, "rank_tables": 26,
        "rank_batches": (65_536, 512), "check_rows": 2048}  # fmt: skip
SMOKE = {"emb_rows": 5000, "emb_dim": 32, "emb_batch": 64, "poolings": (1, 8), "topk_items": 40_000, "topk_dim": 32,
         "topk_queries": 64, "k": 10, "rank_rows": 500, "rank_tables": 4, "rank_batches": (256, 32),
         "check_rows": 32}  # fmt: skip


def timed(fn: Callable[[int], object], reps: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn(i)`` over ``reps`` runs (CUDA events on a GPU, else a host clock)."""
    for i in range(warmup):
        fn(i)
    cuda = torch.cuda.is_available()
    times = []
    for i in range(reps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(i)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def timed_graph(fn: Callable[[int], object], reps: int, inner: int = 10) -> float:
    """Median milliseconds per call of ``fn``, from CUDA-graph replays of ``inner`` calls: the device
    time of the work without the host's launch gaps (which would dominate kernels of ~50 us)."""
    if not torch.cuda.is_available():
        return timed(fn, reps)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(2):
            fn(i)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(inner):
            fn(i)
    return timed(lambda i: graph.replay(), reps) / inner


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm())


def section(results: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # keep the run going: one broken section must not cost the others
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        print(results[name]["traceback"], flush=True)
    results[name]["seconds"] = round(time.perf_counter() - t0, 1)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    print(f"[{name}] done in {results[name]['seconds']} s", flush=True)


def bench_copy(dev: torch.device, reps: int, smoke: bool) -> dict[str, Any]:
    n = (1 << 20) if smoke else (1 << 30)  # 4 GiB of fp32, far beyond the 60 MB L2
    src = torch.randn(n, device=dev)
    dst = torch.empty_like(src)
    ms = timed(lambda i: dst.copy_(src), reps)
    assert torch.equal(dst, src)
    return {"bytes": 2 * n * 4, "ms": ms, "tb_s": 2 * n * 4 / ms / 1e9}


# ----------------------------------------------------------------------------------------------- embedding
def make_tables(
    rows: int, dim: int, dev: torch.device
) -> dict[str, tuple[PooledTable, Callable[[torch.Tensor], torch.Tensor]]]:
    """Each layout with a float64 row function computed from its raw codes (independently of the table)."""
    weight = torch.randn(rows, dim, device=dev)
    half = weight.half()
    scale = torch.rand(rows, device=dev) * 0.02 + 1e-3
    bias = torch.randn(rows, device=dev) * 0.5
    q8 = torch.randint(0, 256, (rows, dim), dtype=torch.uint8, device=dev)
    q4 = torch.randint(0, 256, (rows, (dim + 1) // 2), dtype=torch.uint8, device=dev)

    def int4_rows(i: torch.Tensor) -> torch.Tensor:
        levels = torch.stack([q4[i] & 15, q4[i] >> 4], dim=-1).flatten(-2)[..., :dim]
        return levels.double() * scale[i].double()[..., None] + bias[i].double()[..., None]

    return {
        "fp32": (FloatRows(weight), lambda i: weight[i].double()),
        "fp16": (FloatRows(half), lambda i: half[i].double()),
        "int8": (Int8Rows.from_rowwise(q8, scale, bias),
                 lambda i: q8[i].double() * scale[i].double()[..., None] + bias[i].double()[..., None]),
        "int4": (Int4Rows.from_rowwise(q4, scale, bias, dim), int4_rows),
    }  # fmt: skip


# (bags per program, indices per step, warps); the default tile is timed first
SWEEP = {1: [(16, 1, 4), (64, 1, 4), (64, 1, 8)],
         8: [(4, 8, 4), (8, 8, 4), (16, 8, 4), (16, 4, 4), (32, 8, 8)],
         32: [(4, 8, 4), (8, 8, 4), (16, 8, 4), (8, 16, 4), (16, 4, 4), (32, 8, 8)]}  # fmt: skip


def bench_embedding(dev: torch.device, sizes: dict[str, Any], reps: int, sweep: bool) -> dict[str, Any]:
    rows, dim, batch = sizes["emb_rows"], sizes["emb_dim"], sizes["emb_batch"]
    tables = make_tables(rows, dim, dev)
    out: dict[str, Any] = {"rows": rows, "dim": dim, "batch": batch, "cases": []}
    for pooling in sizes["poolings"]:
        index_sets = [torch.randint(0, rows, (batch, pooling), device=dev) for _ in range(3)]
        for name, (table, rows64) in tables.items():
            case = embedding_case(name, table, rows64, index_sets, sizes["check_rows"], reps, sweep)
            out["cases"].append(case)
            print(f"  emb {name} P={pooling}: {case['tb_s']:.2f} TB/s ({case['speedup']:.1f}x), err {case['err']:.1e}",
                  flush=True)  # fmt: skip
    return out


def embedding_case(
    name: str,
    table: PooledTable,
    rows64: Callable[[torch.Tensor], torch.Tensor],
    index_sets: list[torch.Tensor],
    check_rows: int,
    reps: int,
    sweep: bool,
) -> dict[str, Any]:
    batch, pooling = index_sets[0].shape
    dim = table.embedding_dim
    out_dtype = torch.float32 if name == "fp32" else torch.float16
    useful = batch * pooling * (table.row_bytes + 8) + batch * dim * (4 if name == "fp32" else 2)
    case: dict[str, Any] = {"format": name, "pooling": pooling, "out": str(out_dtype), "bytes": useful}
    check = index_sets[0][:check_rows]
    ref = rows64(check).sum(1)
    if isinstance(table, FloatRows):

        def base(i: int) -> torch.Tensor:
            return F.embedding_bag(index_sets[i % 3], table.weight, mode="sum")

        case["baseline"] = "nn.functional.embedding_bag"
    else:

        def base(i: int) -> torch.Tensor:
            return table._pooled_torch(index_sets[i % 3], False)

        case["baseline"] = "PyTorch gather + dequantize + sum"
    case["baseline_ms"] = timed_graph(base, reps)
    case["baseline_err"] = rel_err(base(0)[:check_rows], ref)
    dest = torch.empty((batch, dim), dtype=out_dtype, device=index_sets[0].device)
    configs = [default_kernel_config(pooling, table.row_bytes)]
    configs += [KernelConfig(*c) for c in SWEEP.get(pooling, [])] if sweep else []
    timings = []
    for cfg in configs:
        ms = timed_graph(lambda i, c=cfg: table.pooled(index_sets[i % 3], out=dest, config=c, check_bounds=False), reps)
        timings.append((ms, cfg))
        case.setdefault("configs", []).append({"config": list(vars(cfg).values()), "ms": ms})
    best_ms, best_cfg = min(timings, key=lambda t: t[0])
    dest.fill_(float("nan"))
    table.pooled(index_sets[0], out=dest, config=best_cfg, check_bounds=False)
    case["all_written"] = not bool(dest.isnan().any())
    case["err"] = rel_err(dest[:check_rows], ref)
    case.update(best_config=list(vars(best_cfg).values()), ms=best_ms, default_ms=timings[0][0])
    case["tb_s"] = useful / best_ms / 1e9
    case["baseline_tb_s"] = useful / case["baseline_ms"] / 1e9
    case["speedup"] = case["baseline_ms"] / best_ms
    return case


# ----------------------------------------------------------------------------------------------- top-K
# BN=256 tiles spill registers in the filter epilogue (ptxas -v), so the sweep stays at <=128 x 128
# the previous default (pass 1 in 64-query blocks, one tile per test) runs in every run as the reference
TOPK_ALWAYS = [TopKConfig(), TopKConfig(pass1_block_m=64, pass1_num_warps=4, tile_pairs=False),
               TopKConfig(tile_pairs=False), TopKConfig(pass1_block_m=64, pass1_num_warps=4),
               TopKConfig(pass1_num_warps=4)]  # fmt: skip
TOPK_SWEEP = [TopKConfig(64, 64, 4, 3, 4), TopKConfig(64, 64, 4, 4, 2), TopKConfig(64, 64, 4, 3, 3)]  # fmt: skip


def bench_topk(dev: torch.device, sizes: dict[str, Any], reps: int, sweep: bool) -> dict[str, Any]:
    n, dim, nq, k = sizes["topk_items"], sizes["topk_dim"], sizes["topk_queries"], sizes["k"]
    items = torch.randn(n, dim, device=dev).bfloat16()
    query_sets = [torch.randn(nq, dim, device=dev).bfloat16() for _ in range(2)]
    out: dict[str, Any] = {"items": n, "dim": dim, "queries": nq, "k": k}
    check = min(64, nq)
    ref = query_sets[0][:check].double() @ items.double().T
    ref_best = torch.topk(ref, k, dim=1).values
    atol = 1e-4 * float(ref.abs().max())

    def exactness(scores: torch.Tensor, positions: torch.Tensor) -> dict[str, Any]:
        s, p = scores[:check].double(), positions[:check]
        return {"max_score_gap": float((s - ref_best).abs().max()),
                "scores_match_positions": bool(torch.allclose(torch.gather(ref, 1, p), s, atol=atol, rtol=0)),
                "exact": bool(torch.allclose(s, ref_best, atol=atol, rtol=0)),
                "recall": float(torch.isin(p, torch.topk(ref, k, dim=1).indices).float().mean())}  # fmt: skip

    def baseline(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        parts = []
        for q in query_sets[i % 2].split(out.setdefault("baseline_query_chunk", nq)):
            parts.append(torch.topk(q @ items.T, k, dim=1))
        return torch.cat([p.values for p in parts]).float(), torch.cat([p.indices for p in parts])

    try:
        baseline(0)
    except torch.OutOfMemoryError:
        out["baseline_query_chunk"] = max(1, nq // 4)
        torch.cuda.empty_cache()
    out["baseline_ms"] = timed(baseline, max(3, reps // 2), warmup=1)
    out["baseline_exactness"] = exactness(*baseline(0))
    chunk = out["baseline_query_chunk"]
    buf = torch.empty((chunk, n), dtype=torch.bfloat16, device=dev)
    out["matmul_only_ms"] = timed(lambda i, b=buf: torch.matmul(query_sets[i % 2][:chunk], items.T, out=b), reps)
    out["matmul_only_ms"] *= -(-nq // chunk)
    del buf
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    blocked = lambda i: topk_blocked(query_sets[i % 2], items, k, item_chunk=1 << 20, score_dtype=torch.bfloat16)  # noqa: E731
    out["blocked_bf16_ms"] = timed(blocked, max(3, reps // 2), warmup=1)
    out["blocked_bf16_exactness"] = exactness(*blocked(0))
    out["variants"] = []
    for cfg in TOPK_ALWAYS + (TOPK_SWEEP if sweep else []):
        stats = TopKStats()
        run = lambda i, c=cfg: exact_topk(query_sets[i % 2], items, k, config=c)  # noqa: E731
        variant: dict[str, Any] = {"config": {k_: v for k_, v in vars(cfg).items() if k_ != "max_candidate_bytes"}}
        try:
            variant["ms"] = timed(run, reps)
            if items.is_cuda:
                variant["pass1_ms"] = timed(lambda i, c=cfg: pass1_only(query_sets[i % 2], items, k, c), reps)
            scores, positions = exact_topk(query_sets[0], items, k, config=cfg, stats=stats)
            variant.update(exactness(scores, positions), stats=vars(stats))
            fake = torch.randn((nq, stats.capacity), device=dev)  # the final selection alone, on a buffer of that size
            variant["select_ms"] = timed(lambda i, f=fake: torch.topk(f, k, dim=1), reps)
            variant["queries_per_s"] = nq / variant["ms"] * 1e3
            variant["speedup"] = out["baseline_ms"] / variant["ms"]
        except Exception as exc:
            variant["error"] = f"{type(exc).__name__}: {exc}"
        out["variants"].append(variant)
        print(f"  topk {variant}", flush=True)
    timed_variants = [v for v in out["variants"] if "ms" in v and v.get("exact")]
    if timed_variants:
        best = min(timed_variants, key=lambda v: v["ms"])
        out.update(best=best, ms=best["ms"], speedup=out["baseline_ms"] / best["ms"])
    out["baseline_queries_per_s"] = nq / out["baseline_ms"] * 1e3
    return out


def _pass2_name(config: dict[str, Any]) -> str:
    """How pass 2 ran (results/gpu.json also holds variants measured before they were removed)."""
    if config.get("deferred_emit"):
        return "detect + emit kernels"
    if "private_slots" in config and not config["private_slots"]:
        return "filter kernel with atomic counters"
    pass1 = f"pass 1 BM {config.get('pass1_block_m', config['block_m'])} / {config.get('pass1_num_warps', config['num_warps'])} warps"
    pairs = ", tiles tested in pairs" if config.get("tile_pairs") else ""
    return f"{pass1}, filter kernel, private slots{pairs}" + ("" if config.get("branch", True) else ", no tile test")


def pass1_only(queries: torch.Tensor, items: torch.Tensor, k: int, cfg: TopKConfig) -> torch.Tensor:
    """The threshold pass alone (chunk maxima over the sample + their top-k), to split the time."""
    from turborec.backends.gpu import _topk_kernels
    from turborec.backends.gpu.topk import _plan

    plan = _plan(items.shape[0], k, cfg)
    assert plan is not None
    maxima = torch.empty((queries.shape[0], plan.chunks), dtype=torch.float32, device=queries.device)
    _topk_kernels.chunk_max(queries, items, maxima, n_sample=plan.n_sample, sample_stride=plan.sample_stride,
                            tiles_per_chunk=plan.tiles_per_chunk, cfg=cfg)  # fmt: skip
    return torch.topk(maxima, k, dim=1).values


# ----------------------------------------------------------------------------------------------- ranker
def bench_ranker(dev: torch.device, sizes: dict[str, Any], reps: int, compile_baseline: bool) -> dict[str, Any]:
    cfg = DLRMConfig(embedding_dim=64, bottom_mlp=(512, 256), top_mlp=(1024, 1024, 512, 256))
    cards = [sizes["rank_rows"]] * sizes["rank_tables"]
    torch.manual_seed(0)
    with torch.device(dev):
        model = DLRM(cfg, cardinalities=cards, n_dense=13).eval()
        for table in model.embeddings.tables.values():  # wider than the 0.05 default, so the logits differ per row
            torch.nn.init.normal_(table.weight, std=0.5)
    baseline = copy.deepcopy(model).to(torch.bfloat16)
    fused = FusedDLRM(model, dtype=torch.bfloat16).to(dev).eval()
    del model
    out: dict[str, Any] = {"tables": len(cards), "rows": cards[0], "config": cfg.to_dict(), "batches": {}}
    check = sizes["check_rows"]
    feeds = {batch: [(torch.randn(batch, 13, device=dev), torch.randint(0, cards[0], (batch, len(cards)), device=dev))
                     for _ in range(3)] for batch in sizes["rank_batches"]}  # fmt: skip
    with torch.no_grad():  # the bf16 weights in float64
        model64 = copy.deepcopy(baseline).double()
        refs = {batch: model64(feed[0][0][:check].double(), feed[0][1][:check]) for batch, feed in feeds.items()}
        del model64
    for batch in sizes["rank_batches"]:
        compile_now = compile_baseline and batch == max(sizes["rank_batches"])
        out["batches"][str(batch)] = ranker_batch(baseline, fused, feeds[batch], refs[batch], reps, compile_now)
    return out


def ranker_batch(
    baseline: DLRM,
    fused: FusedDLRM,
    inputs: list[tuple[torch.Tensor, torch.Tensor]],
    ref: torch.Tensor,
    reps: int,
    compile_baseline: bool,
) -> dict[str, Any]:
    batch, n_sparse = inputs[0][1].shape
    dev = inputs[0][1].device
    check = ref.shape[0]
    ways: dict[str, Callable[[int], torch.Tensor]] = {
        "eager_bf16": lambda i: baseline(inputs[i % 3][0].bfloat16(), inputs[i % 3][1]),
        "fused_eager": lambda i: fused(*inputs[i % 3]),
    }
    if compile_baseline:
        compiled = torch.compile(baseline)
        ways["compile_bf16"] = lambda i: compiled(inputs[i % 3][0].bfloat16(), inputs[i % 3][1])
    if dev.type == "cuda":
        base_graph = GraphedRanker(lambda d, s: baseline(d.bfloat16(), s), 13, n_sparse, buckets=(batch,))
        fused_graph = GraphedRanker(fused, 13, n_sparse, buckets=(batch,))
        ways["graph_bf16"] = lambda i: base_graph.replay(*inputs[i % 3])
        ways["fused_graph"] = lambda i: fused_graph.replay(*inputs[i % 3])
    res: dict[str, Any] = {}
    with torch.no_grad():
        for name, fn in ways.items():
            t0 = time.perf_counter()
            try:
                first = fn(0).float().clone()  # a graph's output buffer is overwritten by the next replay
                spread = float((ref - ref.mean()).norm() / ref.norm())
                res[name] = {"first_call_s": round(time.perf_counter() - t0, 1), "ms": timed(fn, reps),
                             "err": rel_err(first[:check], ref), "finite": bool(first.isfinite().all()),
                             "err_centered": rel_err(first[:check], ref) / spread}  # fmt: skip
                res[name]["samples_per_s"] = batch / res[name]["ms"] * 1e3
            except Exception as exc:
                res[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
            print(f"  ranker B={batch} {name}: {res[name]}", flush=True)
    if batch <= 4096:  # the Runner end to end: numpy in, validation, copies, graph replay, numpy out
        feed = {"dense": inputs[0][0].cpu().numpy(), "sparse": inputs[0][1].cpu().numpy()}
        runner = make_runner("gpu-dlrm", baseline, feed, device=dev, buckets=(batch,))
        for _ in range(3):
            runner(feed)
        host = []
        for _ in range(reps):
            t0 = time.perf_counter()
            runner(feed)
            host.append((time.perf_counter() - t0) * 1e3)
        res["runner_numpy_ms"] = statistics.median(host)
    return res


# ----------------------------------------------------------------------------------------------- report
def markdown(results: dict[str, Any]) -> str:
    env = results["env"]
    lines = [f"GPU benchmark on {env['device']} (torch {env['torch']}, triton {env['triton']}); median of "
             f"{env['reps']} timed runs; command: `{env['command']}`", ""]  # fmt: skip
    copy_ = results.get("copy", {})
    roof = copy_.get("tb_s")
    if roof:
        lines += [f"Device-to-device copy (roofline): **{roof:.2f} TB/s** (read + write).", ""]
    emb = results.get("embedding", {})
    if emb.get("cases"):
        lines += [f"### Pooled embedding lookup ({emb['rows']:,} x {emb['dim']}, batch {emb['batch']:,}, sum)", "",
                  "| table | pooling | out | baseline | baseline TB/s | Triton TB/s | % of copy | speedup | rel. err "
                  "| tile (bags, L step, warps) |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for c in emb["cases"]:
            pct = f"{100 * c['tb_s'] / roof:.0f}%" if roof else "-"
            lines.append(f"| {c['format']} | {c['pooling']} | {c['out'].replace('torch.', '')} | {c['baseline']} | "
                         f"{c['baseline_tb_s']:.2f} | {c['tb_s']:.2f} | {pct} | {c['speedup']:.1f}x | {c['err']:.1e} | {tuple(c['best_config'])} |")  # fmt: skip
        lines.append("")
    topk = results.get("topk", {})
    if "baseline_ms" in topk:
        lines += [f"### Exact top-{topk['k']} over {topk['items']:,} x {topk['dim']} bf16 items, {topk['queries']:,} queries",
                  "", "| method | ms | queries/s | speedup | exact vs float64 | threshold pass ms | final topk ms |",
                  "|---|---|---|---|---|---|---|",
                  f"| matmul + torch.topk (baseline) | {topk['baseline_ms']:.1f} | {topk['baseline_queries_per_s']:,.0f} | 1.0x "
                  f"| {topk['baseline_exactness']['exact']} | | |",
                  f"| (matmul alone) | {topk['matmul_only_ms']:.1f} | | | | | |",
                  f"| blocked torch (1M-item tiles, bf16) | {topk['blocked_bf16_ms']:.1f} | "
                  f"{topk['queries'] / topk['blocked_bf16_ms'] * 1e3:,.0f} | {topk['baseline_ms'] / topk['blocked_bf16_ms']:.1f}x | "
                  f"{topk['blocked_bf16_exactness']['exact']} | | |"]  # fmt: skip
        for v in topk.get("variants", []):
            if "queries_per_s" in v:
                c = v["config"]
                pass2 = _pass2_name(c)
                name = f"Triton two-pass, {pass2} (BM {c['block_m']}, BN {c['block_n']}, sample 1/{c['sample_stride']}, capacity {v['stats']['capacity']})"
                lines.append(
                    f"| {name} | {v['ms']:.1f} | {v['queries_per_s']:,.0f} | {v['speedup']:.1f}x | {v['exact']} | {v.get('pass1_ms', float('nan')):.1f} | {v.get('select_ms', float('nan')):.1f} |"
                )
        lines.append("")
    ranker = results.get("ranker", {})
    if ranker.get("batches"):
        lines += [f"### DLRM ranker ({ranker['tables']} x {ranker['rows']:,} x 64; bottom 13-512-256-64; top 415-1024-1024-512-256-1)",
                  "", "| batch | method | ms | samples/s | rel. err vs float64 | err / spread of logits |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for batch, res in ranker["batches"].items():
            for name, r in res.items():
                if isinstance(r, dict) and "ms" in r:
                    lines.append(
                        f"| {int(batch):,} | {name} | {r['ms']:.3f} | {r['samples_per_s'] / 1e6:.2f}M | {r['err']:.1e} | {r['err_centered']:.1e} |"
                    )
            if "runner_numpy_ms" in res:
                lines.append(
                    f"| {int(batch):,} | GpuRankerRunner (numpy in/out, host clock) | {res['runner_numpy_ms']:.3f} | | | |"
                )
        lines.append("")
    errors = [f"- {name}: {r['error']}" for name, r in results.items() if isinstance(r, dict) and "error" in r]
    return "\n".join(lines + (["Errors:", *errors] if errors else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gpu.json and gpu.md")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (plumbing check, any device)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument(
        "--sweep",
        nargs="?",
        const="embedding,topk",
        default="",
        help="also time alternative kernel tiles (sections, default: embedding,topk)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    parser.add_argument("--sections", default="copy,embedding,topk,ranker")
    args = parser.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = SMOKE if args.smoke else FULL
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "absent"
    results: dict[str, Any] = {"env": {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
        "triton": triton_version, "reps": args.reps, "sizes": sizes,
        "command": "python benchmarks/gpu.py " + " ".join(a for a in [
            "--smoke" if args.smoke else "", f"--sweep {args.sweep}" if args.sweep else "", "--no-compile" if args.no_compile else "",
            f"--reps {args.reps}" if args.reps != 20 else ""] if a)}}  # fmt: skip
    wanted = set(args.sections.split(","))
    jobs: dict[str, Callable[[], dict[str, Any]]] = {
        "copy": lambda: bench_copy(dev, args.reps, args.smoke),
        "embedding": lambda: bench_embedding(dev, sizes, args.reps, "embedding" in args.sweep),
        "topk": lambda: bench_topk(dev, sizes, args.reps, "topk" in args.sweep),
        "ranker": lambda: bench_ranker(dev, sizes, args.reps, not args.no_compile),
    }
    for name, job in jobs.items():
        if name in wanted:
            section(results, name, job)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(results, indent=1, default=str))
    try:
        table = markdown(results)
    except Exception:  # the JSON above holds everything; a report bug must not hide it
        table = traceback.format_exc()
    (args.out / "gpu.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
