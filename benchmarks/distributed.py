"""Distributed benchmarks: sharded-training accuracy, multi-GPU training throughput, Ray Serve scale-out.

    python benchmarks/distributed.py train                   # NDCG@10 on ml-latest-small: 1 process vs TorchRec 1, 2
    python benchmarks/distributed.py gpu [--device cuda]     # DLRM samples/s, 1 vs 2 ranks (plain torch.distributed)
    python benchmarks/distributed.py serve                   # single-process server vs Ray Serve, 1 and 2 replicas

``train`` runs, for each seed (the split's and the training's; RecBole protocol), the
default two-tower (no options unless ``--params``): the single-process estimator (what
``turborec train`` does), then the same estimator through the TorchRec job with 1 and
with 2 processes (gloo on loopback; tables table-wise sharded, Adam on the shards as
on every other parameter unless ``--embedding-optimizer``). ``gpu`` starts torchrun with 1 and 2 ranks of a
DLRM whose tables are table-wise sharded by ``turborec.distributed.tablewise``
(DDP for the dense parts, NCCL all-to-all for the lookups); per-rank batch fixed,
so throughput = ranks x batch / step time. ``serve`` deploys one artifact three
ways and offers each the same open-loop Poisson load (turborec.bench.loadgen).
Each writes benchmarks/results/distributed_<mode>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, markdown_table, median, write_results

os.environ.setdefault("OMP_NUM_THREADS", "1")


# ----------------------------------------------------------------------------- train
def _train_seed(args: argparse.Namespace, seed: int) -> list[dict[str, Any]]:
    """The three runs of one seed (the split's and the training's): the estimator, then TorchRec 1 and 2."""
    import torch

    from turborec.data import apply_protocol, load_movielens
    from turborec.distributed.launch import launch_training
    from turborec.distributed.spec import ShardedTrainSpec
    from turborec.train import load
    from turborec.train.options import make_estimator

    torch.set_num_threads(1)
    data_dir = SHARED_DATA / "ml-latest-small"
    params = dict(kv.split("=", 1) for kv in args.params.split(";") if kv.strip())
    typed: dict[str, Any] = {"epochs": args.epochs} if args.epochs else {}
    rows: list[dict[str, Any]] = []
    split = apply_protocol("recbole", load_movielens(data_dir), seed=seed)
    t0 = time.perf_counter()
    rec = make_estimator("two-tower", params, seed=seed, progress=False, **typed)
    rec.fit(split.train, split.valid)
    m = rec.evaluate(split.test, exclude=[split.valid]).metrics
    rows.append({"run": "single process (estimator)", "processes": 1, "seed": seed, "ndcg@10": m["ndcg@10"],
                 "recall@10": m["recall@10"], "best_epoch": rec.history.best_epoch + 1,
                 "epochs": len(rec.history.losses), "wall_s": time.perf_counter() - t0})
    print(rows[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in args.nproc:
            out = Path(tmp) / f"tt-{nproc}"
            spec = ShardedTrainSpec(out=str(out), data=str(data_dir), epochs=args.epochs, seed=seed,
                                    sharding=args.sharding, embedding_optimizer=args.embedding_optimizer,
                                    embedding_lr=args.embedding_lr, progress=False, params=params)
            t0 = time.perf_counter()
            code = launch_training(spec, nproc)
            if code != 0:
                raise SystemExit(f"sharded training with {nproc} processes failed ({code})")
            trained = load(out)
            info = trained.metrics["distributed"]
            rows.append({"run": f"TorchRec, {args.sharding}, {args.embedding_optimizer} tables", "processes": nproc,
                         "seed": seed, "ndcg@10": trained.metrics["test"]["ndcg@10"],
                         "recall@10": trained.metrics["test"]["recall@10"], "best_epoch": info["best_epoch"] + 1,
                         "epochs": info.get("epochs", ""), "wall_s": time.perf_counter() - t0})
            print(rows[-1], flush=True)
    return rows


def bench_train(args: argparse.Namespace) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    started = time.perf_counter()
    # seeds run side by side (--parallel-seeds), each in its own process with one torch thread per process
    with ProcessPoolExecutor(max_workers=max(1, args.parallel_seeds),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        per_seed = list(pool.map(_train_seed, [args] * len(args.seeds), args.seeds))
    rows = [r for seed_rows in per_seed for r in seed_rows]
    rows.sort(key=lambda r: (args.seeds.index(r["seed"]), r["run"] != "single process (estimator)", r["processes"]))
    summary = []
    runs = list(dict.fromkeys((r["run"], r["processes"]) for r in rows))
    base = float(np.mean([r["ndcg@10"] for r in rows if (r["run"], r["processes"]) == runs[0]]))
    for run, nproc in runs:
        ndcg = np.array([r["ndcg@10"] for r in rows if (r["run"], r["processes"]) == (run, nproc)])
        recall = np.array([r["recall@10"] for r in rows if (r["run"], r["processes"]) == (run, nproc)])
        summary.append({"run": run, "processes": nproc, "seeds": len(ndcg), "ndcg@10 mean": float(ndcg.mean()),
                        "ndcg@10 sd": float(ndcg.std(ddof=1)) if len(ndcg) > 1 else 0.0,
                        "recall@10 mean": float(recall.mean()), "vs single %": 100.0 * (ndcg.mean() / base - 1.0)})
    total = time.perf_counter() - started
    table = (markdown_table(summary) + "\n\nper seed:\n\n" + markdown_table(rows)
             + f"\n\n(all runs: {total:.0f} s wall, {args.parallel_seeds} seed(s) at a time, one torch thread per process)")
    write_results("distributed_train", {"args": vars(args), "rows": rows, "summary": summary, "seconds": total}, table)


# ------------------------------------------------------------------------------- gpu
def gpu_worker(args: argparse.Namespace) -> None:
    """One rank of the throughput run (started by torchrun)."""
    import torch
    import torch.distributed as dist
    from torch.nn import functional as F

    from turborec.distributed.env import process_group
    from turborec.distributed.tablewise import shard_ranker
    from turborec.models.rankers import DLRM, DLRMConfig

    cards = [int(c) for c in args.cards.split(",")]
    with process_group("auto", args.device) as ctx:
        torch.manual_seed(0)
        model = DLRM(DLRMConfig(embedding_dim=args.dim, bottom_mlp=(512, 256), top_mlp=(1024, 512, 256)),
                     cardinalities=cards, n_dense=13)
        wrapped, tables, dense = shard_ranker(model, rank=ctx.rank, world_size=ctx.world_size, device=ctx.device,
                                              sparse_grad=True)
        fused = ctx.device.type == "cuda"
        opt_tables = torch.optim.SparseAdam(tables, lr=1e-3) if tables else None
        opt_dense = torch.optim.Adam(dense, lr=1e-3, fused=fused)
        gen = torch.Generator(device=ctx.device).manual_seed(100 + ctx.rank)
        batches = []
        for _ in range(8):  # a few distinct batches, on the device (data loading is not what is measured)
            batches.append((
                torch.randn(args.batch, 13, device=ctx.device, generator=gen),
                torch.stack([torch.randint(0, c, (args.batch,), device=ctx.device, generator=gen) for c in cards], 1),
                torch.randint(0, 2, (args.batch,), device=ctx.device, generator=gen).float(),
            ))

        def step(i: int) -> None:
            x, s, y = batches[i % len(batches)]
            loss = F.binary_cross_entropy_with_logits(wrapped(x, s), y)
            opt_dense.zero_grad(set_to_none=True)
            if opt_tables is not None:
                opt_tables.zero_grad(set_to_none=True)
            loss.backward()
            opt_dense.step()
            if opt_tables is not None:
                opt_tables.step()

        def sync() -> None:
            if fused:
                torch.cuda.synchronize()
            dist.barrier()

        for i in range(args.warmup):
            step(i)
        times = []
        for _ in range(args.repeats):
            sync()
            t0 = time.perf_counter()
            for i in range(args.steps):
                step(i)
            sync()
            times.append(time.perf_counter() - t0)
        if ctx.is_main:
            step_s = median(times) / args.steps
            result = {"ranks": ctx.world_size, "backend": ctx.backend, "batch_per_rank": args.batch,
                      "step_ms": 1000 * step_s, "samples_per_s": ctx.world_size * args.batch / step_s,
                      "repeats_s": times, "tables_on_rank0": len(tables), "device": str(ctx.device)}
            if fused:
                result["gpu"] = torch.cuda.get_device_name(0)
            Path(args.out).write_text(json.dumps(result))


def bench_gpu(args: argparse.Namespace) -> None:
    from turborec.distributed.env import loopback_environment
    from turborec.distributed.launch import torchrun_command

    rows = []
    for nproc in args.nproc:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.json"
            cmd = torchrun_command(nproc, "", [
                "gpu-worker", "--out", str(out), "--device", args.device, "--cards", args.cards,
                "--dim", str(args.dim), "--batch", str(args.batch), "--steps", str(args.steps),
                "--warmup", str(args.warmup), "--repeats", str(args.repeats)], script=__file__)
            env = loopback_environment()
            env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
            subprocess.run(cmd, env=env, check=True)
            rows.append(json.loads(out.read_text()))
    base = rows[0]["samples_per_s"]
    table = [{"ranks": r["ranks"], "backend": r["backend"], "batch/rank": r["batch_per_rank"],
              "step_ms": r["step_ms"], "samples/s": r["samples_per_s"], "speed-up": r["samples_per_s"] / base}
             for r in rows]
    write_results(f"distributed_gpu_{args.device.split(':')[0]}", {"args": vars(args), "rows": rows},
                  markdown_table(table, floatfmt=".2f"))


# ----------------------------------------------------------------------------- serve
def bench_serve(args: argparse.Namespace) -> None:
    from turborec.bench.loadgen import LoadSpec, RequestTemplate, run_load_subprocess
    from turborec.bench.report import summarize
    from turborec.distributed import ray_serve
    from turborec.serving.server import background_server, build_service
    from turborec.serving.settings import ServeSettings

    artifact = Path(args.artifact) if args.artifact else _small_artifact()
    requests = tuple(RequestTemplate("POST", "/v1/recommend", json.dumps({"user": str(u), "k": 10}).encode())
                     for u in range(1, 200))

    def load(url: str) -> list[dict[str, Any]]:
        out = []
        for rate in args.rates:
            summaries = []
            for r in range(args.repeats):
                spec = LoadSpec(url=url, rate=rate, duration_s=args.seconds, requests=requests, seed=r, timeout_s=5.0)
                summaries.append(summarize(run_load_subprocess(spec), rate, window=(0.5, args.seconds)))
            best = sorted(summaries, key=lambda s: s.p99_ms)[len(summaries) // 2]
            out.append({"rate": rate, "achieved": median([s.achieved_rate for s in summaries]),
                        "p50_ms": median([s.p50_ms for s in summaries]), "p99_ms": median([s.p99_ms for s in summaries]),
                        "errors+503": sum(s.errors + s.shed for s in summaries), "sent": sum(s.sent for s in summaries),
                        "median_run": best.to_dict()})
        return out

    redis = subprocess.Popen(["redis-server", "--port", str(args.redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    rows: list[dict[str, Any]] = []
    try:
        url = f"redis://127.0.0.1:{args.redis_port}/0"
        settings = ServeSettings(artifact=artifact, store="redis", redis_url=url, slo_p99_ms=1000.0,
                                 adaptive_tiers=False)
        service = build_service(settings)
        with background_server(service) as srv:
            rows += [{"server": "single process (lean HTTP)", **r} for r in load(srv.url)]
        service.store.close()
        for replicas in args.replicas:
            ray_settings = settings.with_(port=args.port)
            options = ray_serve.RayServeOptions(replicas=replicas, cpus_per_replica=args.cpus_per_replica)
            t0 = time.perf_counter()
            deployment = ray_serve.deploy(ray_settings, options, num_cpus=args.ray_cpus)
            ready_s = time.perf_counter() - t0
            rows += [{"server": f"Ray Serve, {replicas} replica(s)", "deploy_s": ready_s, **r}
                     for r in load(deployment.url)]
        ray_serve.shutdown()
    finally:
        redis.terminate()
        redis.wait(10)
    table = [{k: v for k, v in r.items() if k != "median_run"} for r in rows]
    write_results("distributed_serve", {"args": vars(args), "artifact": str(artifact), "rows": rows},
                  markdown_table(table, floatfmt=".1f"))


def _small_artifact() -> Path:
    """A two-tower trained briefly on ml-latest-small (serving cost does not depend on training time)."""
    from turborec.data import apply_protocol, load_movielens
    from turborec.train import TwoTowerRecommender

    out = Path(tempfile.mkdtemp(prefix="turborec-dist-bench-")) / "tt"
    split = apply_protocol("recbole", load_movielens(SHARED_DATA / "ml-latest-small"))
    TwoTowerRecommender(epochs=2, progress=False).fit(split.train).save(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("train")
    t.add_argument("--epochs", type=int, default=None, help="epoch cap for every run (default: the model's)")
    t.add_argument("--seeds", type=int, nargs="+", default=[2020, 1, 2])
    t.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    t.add_argument("--sharding", default="table_wise")
    t.add_argument("--embedding-optimizer", default="adam", help="adam (default), adagrad, rowwise_adagrad, sgd")
    t.add_argument("--embedding-lr", type=float, default=None, help="fused table optimizers (default 0.15)")
    t.add_argument("--parallel-seeds", type=int, default=1, help="seeds run side by side (default 1)")
    t.add_argument("--params", default="", help="two-tower options for every run, KEY=VALUE;KEY=VALUE "
                                                "(default none: the net a user gets)")
    for name in ("gpu", "gpu-worker"):
        g = sub.add_parser(name)
        g.add_argument("--device", default="cuda")
        g.add_argument("--cards", default=",".join(["1000000"] * 4 + ["100000"] * 10 + ["10000"] * 12))
        g.add_argument("--dim", type=int, default=128)
        g.add_argument("--batch", type=int, default=16384)
        g.add_argument("--steps", type=int, default=50)
        g.add_argument("--warmup", type=int, default=10)
        g.add_argument("--repeats", type=int, default=3)
        g.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
        g.add_argument("--out", default="")
    s = sub.add_parser("serve")
    s.add_argument("--artifact", default="")
    s.add_argument("--rates", type=float, nargs="+", default=[100.0, 300.0])
    s.add_argument("--seconds", type=float, default=5.0)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    s.add_argument("--cpus-per-replica", type=float, default=0.5)
    s.add_argument("--ray-cpus", type=float, default=2.0)
    s.add_argument("--port", type=int, default=18300)
    s.add_argument("--redis-port", type=int, default=16390)
    args = p.parse_args()
    {"train": bench_train, "gpu": bench_gpu, "gpu-worker": gpu_worker, "serve": bench_serve}[args.mode](args)


if __name__ == "__main__":
    main()
